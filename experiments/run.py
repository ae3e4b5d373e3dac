"""Entry point: ``python -m experiments.run EXPERIMENT --workdir DIR
[--config.KEY=VALUE ...] [--overwrite]``.

EXPERIMENT names a config file in experiments/configs/ (e.g. mnist_lenet);
``--config.KEY=VALUE`` overrides one of its keys, typed like the key's value.
"""

from __future__ import annotations

import os
import sys

from experiments.analysis import results as results_lib
from experiments.lib import cli
from experiments.lib import parallel
from experiments.lib import train


def main(argv: list[str] | None = None) -> int:
  debug = '--debug' in (argv if argv is not None else sys.argv)
  parsed = cli.user_errors_as_messages(lambda: cli.parse_args(
      'python -m experiments.run',
      'Runs one experiment: every method x seed, then the results.json, '
      'table.md, curves.png and layer_rates.png in --workdir.', argv,
      lambda p: p.add_argument(
          '--overwrite', action='store_true',
          help='start afresh; old outputs are moved to '
          'WORKDIR/previous-<time>/, never deleted')), debug)
  if parsed is None:
    return 2
  args, config = parsed
  with cli.sigterm_as_interrupt(config):
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
  return 0


if __name__ == '__main__':
  sys.exit(main())
