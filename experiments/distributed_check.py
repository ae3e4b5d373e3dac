"""Same results on any process layout: the multi-process check.

  python -m experiments.distributed_check --workdir DIR [--results_dir DIR]
      [--layouts 1x1,1x8,2x4,4x2] [--workloads lenet,cifar10_fsdp]
      [--mnist_dir DIR] [--cifar_dir DIR]

Trains each small workload once per layout PROCESSESxDEVICES (processes
started by `experiments.launch` on this host, each with that many simulated
CPU devices; 1x1 is a plain single-device run) and compares every layout's
``results.json`` with the 1x8 one: training losses, test errors and losses,
and the per-layer factors. Equal factors across layouts are what "the
factor's norms are global" means: each layer's gradient norm is taken over
the whole global gradient, whichever process holds which shard. Writes
``distributed_check.json`` and ``table.md`` into --results_dir (default:
--workdir, which holds the runs) and prints the table. Finished layouts are
kept and not rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from experiments.lib import fileio
from experiments.lib import provenance

WORKLOADS = {
    'lenet': ['mnist_lenet', '--config.num_steps=24', '--config.eval_every=12',
              '--config.log_every=4', '--config.methods=sgd+layer',
              '--config.num_seeds=1', '--config.max_eval_examples=2000',
              '--config.eval_batch_size=1000'],
    'cifar10_fsdp': ['cifar10_full', '--config.num_steps=8',
                     '--config.eval_every=4', '--config.log_every=4',
                     '--config.methods=sgd+layer', '--config.num_seeds=1',
                     '--config.max_eval_examples=1000',
                     '--config.eval_batch_size=500', '--config.batch_size=64',
                     '--config.param_sharding=fsdp'],
    # Two seeds as one vmapped program (the default on accelerators).
    'lenet_vmapped_seeds': [
        'mnist_lenet', '--config.num_steps=24', '--config.eval_every=12',
        '--config.log_every=4', '--config.methods=sgd+layer',
        '--config.num_seeds=2', '--config.seed_parallelism=vmap',
        '--config.max_eval_examples=2000', '--config.eval_batch_size=1000',
        '--config.param_sharding=fsdp'],
}
REFERENCE = '1x8'
COMPARED = ('train_loss', 'test_error', 'test_loss')


def _data_args(workload: str, args) -> list[str]:
  folder = args.cifar_dir if workload.startswith('cifar') else args.mnist_dir
  if not folder:
    return []
  return ['--config.data_source=local', f'--config.data_dir={folder}']


def _train(workload: str, layout: str, workdir: str, args) -> None:
  processes, devices = (int(x) for x in layout.split('x'))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      [root] + [p for p in [os.environ.get('PYTHONPATH')] if p])
  run_args = [*WORKLOADS[workload], *_data_args(workload, args),
              '--workdir', workdir]
  if layout == '1x1':
    env['JAX_PLATFORMS'] = 'cpu'
    command = [sys.executable, '-m', 'experiments.run', *run_args]
  else:
    command = [sys.executable, '-m', 'experiments.launch',
               f'--num_processes={processes}',
               f'--cpu_devices_per_process={devices}', '--', *run_args]
  proc = subprocess.run(command, env=env, cwd=root, capture_output=True,
                        text=True)
  if proc.returncode:
    raise SystemExit(f'{workload} {layout} failed ({proc.returncode}):\n'
                     + proc.stderr[-3000:])


def _series(run: dict) -> dict[str, list[float]]:
  out = {key: run[key] for key in COMPARED}
  for name, values in run['layer_factors'].items():
    out[f'factor {name}'] = values
  return out


def compare(runs: list[dict], references: list[dict]) -> dict:
  """Largest relative difference of any series of any seed, and whether
  all are bit-identical."""
  worst, identical = 0.0, True
  for run, reference in zip(runs, references, strict=True):
    a, b = _series(run), _series(reference)
    identical = identical and a == b
    for key in b:
      for x, y in zip(a[key], b[key], strict=True):
        worst = max(worst, abs(x - y) / max(abs(y), 1e-12))
  return {'identical': identical, 'max_relative_difference': worst}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m experiments.distributed_check',
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
  parser.add_argument('--workdir', required=True,
                      help='where the runs go, one folder per layout')
  parser.add_argument('--results_dir', default='',
                      help='where distributed_check.json and table.md go '
                      '(default: --workdir)')
  parser.add_argument('--layouts', default='1x1,1x8,2x4,4x2')
  parser.add_argument('--workloads', default=','.join(WORKLOADS))
  parser.add_argument('--mnist_dir', default='',
                      help='IDX .gz folder (default: TFDS mnist)')
  parser.add_argument('--cifar_dir', default='',
                      help='folder of cifar10-jpeg.zip (default: TFDS)')
  args = parser.parse_args(argv)
  layouts = args.layouts.split(',')
  workloads = args.workloads.split(',')
  for layout in layouts:
    parts = layout.split('x')
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
      parser.error(f'layout {layout!r}: use PROCESSESxDEVICES, e.g. 2x4.')
  unknown = sorted(set(workloads) - set(WORKLOADS))
  if unknown:
    parser.error(f'unknown workloads {unknown}; choose from {list(WORKLOADS)}')
  if REFERENCE not in layouts:
    layouts.insert(0, REFERENCE)

  results_dir = args.results_dir or args.workdir
  os.makedirs(results_dir, exist_ok=True)
  out = os.path.join(results_dir, 'distributed_check.json')
  rows = []
  for workload in workloads:
    runs = {}
    for layout in layouts:
      workdir = os.path.join(args.workdir, workload, layout)
      if not os.path.exists(os.path.join(workdir, 'results.json')):
        _train(workload, layout, workdir, args)
      with open(os.path.join(workdir, 'results.json')) as f:
        results = json.load(f)
      runs[layout] = results['runs']
      rows.append({'workload': workload, 'layout': layout,
                   'seeds': len(results['runs']),
                   'commit': results['commit']})
    for row in rows:
      if row['workload'] == workload:
        row.update(compare(runs[row['layout']], runs[REFERENCE]))
        row['final_test_error'] = [r['test_error'][-1]
                                   for r in runs[row['layout']]]
  # Each row's commit is that of its runs (a layout finished earlier is
  # kept, not rerun).
  fileio.write_json(out, {'rows': rows, 'reference': REFERENCE,
                           'versions': provenance.versions()})
  lines = ['| workload | processes x devices | final test error (%) | '
           f'bit-identical to {REFERENCE} | largest relative difference |',
           '|---|---|---|---|---|']
  for row in rows:
    errors = ', '.join(f'{e:.2f}' for e in row['final_test_error'])
    lines.append(f'| {row["workload"]} | {row["layout"]} | {errors} | '
                 f'{"yes" if row["identical"] else "no"} | '
                 f'{row["max_relative_difference"]:.1e} |')
  table = '\n'.join(lines) + '\n'
  fileio.write_atomic(os.path.join(results_dir, 'table.md'), table)
  print(table)
  return 0


if __name__ == '__main__':
  sys.exit(main())
