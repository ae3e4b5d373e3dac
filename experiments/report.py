"""Entry point: tables and plots from finished (or running) experiments.

  python -m experiments.report WORKDIR
      re-makes table.md, curves.png and layer_rates.png from
      WORKDIR/results.json;
  python -m experiments.report compare WORKDIR_A METHOD_A WORKDIR_B METHOD_B
      prints the test error of METHOD_A in WORKDIR_A against METHOD_B in
      WORKDIR_B, per evaluation;
  python -m experiments.report sweep SWEEP_DIR
      re-makes sweep.json, best.md and tuning.png of a learning-rate sweep
      (also an unfinished or running one) from its runs, and prints best.md;
  python -m experiments.report frozen SWEEP_DIR|WORKDIR
      writes DIR/frozen_factors.json: the fixed per-layer factors of the
      +frozen control, from a sweep's +layer runs at their best rate (grid
      seeds only), or from an experiment's +layer runs (results.json, all
      seeds); never replaces a file with other factors;
  python -m experiments.report verdict [RESULTS_DIR]
      the corrected verdict over every sweep (Holm, confirmation seeds),
      rebuilt from the sweeps' runs: RESULTS_DIR/verdict.{json,md};
  python -m experiments.report table2 [RESULTS_DIR]
      the paper's CIFAR-10 claims against RESULTS_DIR/cifar10_full and
      RESULTS_DIR/cifar10_full_50k (default experiments/results), written to
      RESULTS_DIR/table2.md and printed.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments.analysis import results as results_lib
from experiments.analysis import sweeps as sweeps_lib
from experiments.analysis import verdict as verdict_lib
from experiments.lib import records


def _load(workdir: str) -> records.Results:
  return records.load_results(os.path.join(workdir, 'results.json'))


def _results(args) -> None:
  """The tables and plots of WORKDIR: from results.json when the run has
  finished, else from the runs finished so far (a running experiment)."""
  path = os.path.join(args.workdir, 'results.json')
  if os.path.exists(path):
    results = _load(args.workdir)
  else:
    results = results_lib.partial_results(args.workdir)
    done, total = len(results.runs), results_lib.planned_runs(results)
    print(f'{args.workdir}: no results.json yet; {done} of {total} runs '
          'finished, reported below (the same command again reports more).')
  for written in results_lib.write_all(results, args.workdir):
    print(f'wrote {written}')
  print(results_lib.summary_line(results))


def _compare(args) -> None:
  print(results_lib.compare_markdown(
      _load(args.workdir_a), args.method_a, _load(args.workdir_b),
      args.method_b, args.workdir_a, args.workdir_b))


def _sweep(args) -> None:
  payload = sweeps_lib.summary(sweeps_lib.load(args.sweep_dir),
                               sweeps_lib.data_of(args.sweep_dir))
  sweeps_lib.write_outputs(payload, args.sweep_dir)
  print(sweeps_lib.best_markdown(payload), end='')


def _frozen(args) -> None:
  if os.path.isdir(os.path.join(args.sweep_dir, 'runs')) and os.path.exists(
      os.path.join(args.sweep_dir, 'results.json')):
    # The runs of one rate (experiments.run), e.g. Table I's protocol.
    payload = sweeps_lib.frozen_factors_of_runs(_load(args.sweep_dir))
  else:
    payload = sweeps_lib.frozen_factors(sweeps_lib.load(args.sweep_dir))
  path = os.path.join(args.sweep_dir, 'frozen_factors.json')
  written = sweeps_lib.write_frozen_factors(payload, path)
  print(f'{"wrote" if written else "unchanged:"} {path}')


def _verdict(args) -> None:
  for path in verdict_lib.write(args.results_dir):
    print(f'wrote {path}')
  with open(os.path.join(args.results_dir, 'verdict.md')) as f:
    print(f.read(), end='')


def _table2(args) -> None:
  by_experiment = {}
  for experiment in ('cifar10_full', 'cifar10_full_50k'):
    path = os.path.join(args.results_dir, experiment, 'results.json')
    by_experiment[experiment] = (records.load_results(path)
                                 if os.path.exists(path) else None)
  if not any(by_experiment.values()):
    raise FileNotFoundError(
        f'neither {args.results_dir}/cifar10_full/results.json nor '
        f'{args.results_dir}/cifar10_full_50k/results.json exists; train '
        'them first (bash scripts/accelerator.sh, experiments/README.md).')
  path = results_lib.write_table2(
      by_experiment, os.path.join(args.results_dir, 'table2.md'))
  with open(path) as f:
    print(f.read(), end='')


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m experiments.report', description=__doc__.split('\n')[0],
      epilog='\n'.join(__doc__.split('\n')[2:]),
      formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest='command', required=True)
  results = commands.add_parser('results', help='tables and plots of a run')
  results.add_argument('workdir')
  results.set_defaults(handler=_results)
  compare = commands.add_parser('compare', help='one method against another')
  for name in ('workdir_a', 'method_a', 'workdir_b', 'method_b'):
    compare.add_argument(name)
  compare.set_defaults(handler=_compare)
  sweep = commands.add_parser('sweep', help="a sweep's outputs from its runs")
  sweep.add_argument('sweep_dir')
  sweep.set_defaults(handler=_sweep)
  frozen = commands.add_parser(
      'frozen', help="the +frozen control's factors from a sweep's +layer runs")
  frozen.add_argument('sweep_dir')
  frozen.set_defaults(handler=_frozen)
  results_dir = os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      'experiments', 'results')
  verdict = commands.add_parser(
      'verdict', help='the corrected verdict over every sweep')
  verdict.add_argument('results_dir', nargs='?', default=results_dir)
  verdict.set_defaults(handler=_verdict)
  table2 = commands.add_parser('table2', help="the paper's CIFAR-10 claims")
  table2.add_argument('results_dir', nargs='?', default=results_dir)
  table2.set_defaults(handler=_table2)
  return parser


def main(argv: list[str]) -> int:
  args = list(argv[1:])
  # `report WORKDIR` (no subcommand) is the results of one experiment.
  if args and args[0] not in ('results', 'compare', 'sweep', 'frozen',
                              'verdict', 'table2', '-h', '--help'):
    args.insert(0, 'results')
  parser = _parser()
  try:
    parsed = parser.parse_args(args)
  except SystemExit as e:
    return int(e.code or 0)
  try:
    parsed.handler(parsed)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    print(e, file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
