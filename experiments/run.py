"""Entry point: ``python -m experiments.run EXPERIMENT --workdir DIR
[--config.KEY=VALUE ...] [--overwrite] [--parallel N]``.

EXPERIMENT names a config file in experiments/configs/ (e.g. mnist_lenet);
``--config.KEY=VALUE`` overrides one of its keys, typed like the key's value.
``--parallel N`` trains the methods in N worker processes on this machine
(each runs this command with ``--only METHODS``), e.g. to fill one GPU.
"""

from __future__ import annotations

import os
import sys

from experiments.analysis import results as results_lib
from experiments.lib import cli
from experiments.lib import parallel
from experiments.lib import train
from experiments.lib import workers as workers_lib


def _add_arguments(parser) -> None:
  parser.add_argument(
      '--overwrite', action='store_true',
      help='start afresh; old outputs are moved to '
      'WORKDIR/previous-<time>/, never deleted')
  workers_lib.add_arguments(
      parser, 'config.methods',
      'writes no outputs: what each worker of --parallel runs')


def main(argv: list[str] | None = None) -> int:
  debug = '--debug' in (argv if argv is not None else sys.argv)
  parsed = cli.user_errors_as_messages(lambda: cli.parse_args(
      'python -m experiments.run',
      'Runs one experiment: every method x seed, then the results.json, '
      'table.md, curves.png and layer_rates.png in --workdir.', argv,
      _add_arguments), debug)
  if parsed is None:
    return 2
  args, config = parsed
  problem = workers_lib.parallel_error(args.parallel,
                                       bool(config.get('distributed')))
  if problem:
    print(f'error: {problem}', file=sys.stderr)
    return 2
  with cli.sigterm_as_interrupt(config):
    if args.only is not None:
      trained = cli.user_errors_as_messages(
          lambda: train.train_methods(config, args.workdir, args.only),
          args.debug)
      return 2 if trained is None else 0
    if args.parallel > 1:
      os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
      worker_argv = list(sys.argv[1:] if argv is None else argv)
      try:
        results = cli.user_errors_as_messages(
            lambda: train.train_in_workers(config, args.workdir, worker_argv,
                                           args.parallel,
                                           overwrite=args.overwrite),
            args.debug)
      except workers_lib.Unfinished as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    else:
      results = cli.user_errors_as_messages(
          lambda: train.train_and_evaluate(config, args.workdir,
                                           overwrite=args.overwrite),
          args.debug)
  if results is None:
    return 2
  if not parallel.is_writer():
    return 0  # process 0 of a multi-process run reports
  results_lib.write_all(results, args.workdir)
  print(f'wrote {os.path.join(args.workdir, "results.json")} '
        f'({len(results.runs)} runs)')
  with open(os.path.join(args.workdir, 'table.md')) as f:
    print(f.read())
  print(results_lib.summary_line(results))
  return 0


if __name__ == '__main__':
  sys.exit(main())
