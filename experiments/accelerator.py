"""Entry point: one accelerator loan in a fixed time box.

  python -m experiments.accelerator OUT_DIR SECONDS --cifar-dir DIR
      --mnist-dir DIR [--results-dir DIR] [--sweep-args ARGS]
      [--train-step-args ARGS] [--overhead-args ARGS]

(``bash scripts/accelerator_sweeps.sh`` is the wrapper a loan runs.) The two
sweeps too slow for 2 CPU cores, cifar10_full_short and mnist_transformer,
train side by side, each with one worker per method (``experiments.sweep
--parallel``, all sharing the device), until SECONDS minus the benchmarks'
share (a fifth); then they are stopped as Ctrl-C stops them (every finished
run kept; the same command continues them), and the two benchmarks that fit
in about a minute each run alone on the device.

OUT_DIR receives, as they come: ``device.log`` (everything printed),
``code.sha256`` (the code's file hashes, to compare with a commit's when the
machine's copy of .git cannot be trusted), ``sweeps.tgz`` (both sweeps'
runs, outputs and worker logs, refreshed every 30 s, so a command killed at
its time limit still returns what finished; it unpacks in the repository
root to ``experiments/results/<experiment>_sweep/``) and ``bench.tgz``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (experiment, workers, data, label in the log)
SWEEPS = (('cifar10_full_short', 5, 'cifar', 'cifar'),
          ('mnist_transformer', 7, 'mnist', 'transformer'))
SNAPSHOT_EVERY_S = 30
GRACE_S = 60


class _Tee(io.TextIOBase):
  """Writes to the terminal and to device.log."""

  def __init__(self, *streams):
    self.streams = streams

  def write(self, text):
    for stream in self.streams:
      stream.write(text)
      stream.flush()
    return len(text)


def code_hashes() -> str:
  """``sha256  path`` of every .py and .sh of the package, the experiments
  and the scripts, as ``sha256sum`` prints them."""
  lines = []
  for top in ('layerlr_optax', 'experiments', 'scripts'):
    for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
      dirs[:] = sorted(d for d in dirs if d not in ('results', '__pycache__'))
      for name in sorted(files):
        if name.endswith(('.py', '.sh')):
          path = os.path.join(folder, name)
          with open(path, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
          lines.append(f'{digest}  {os.path.relpath(path, ROOT)}')
  return '\n'.join(sorted(lines, key=lambda l: l.split('  ', 1)[1])) + '\n'


def _git(*args: str) -> str:
  proc = subprocess.run(['git', *args], cwd=ROOT, capture_output=True,
                        text=True, check=False)
  return (proc.stdout or proc.stderr).strip()


def snapshot(results: str, out: str) -> None:
  """sweeps.tgz of both sweeps (no TensorBoard files), named as in the
  repository; written whole or not at all."""
  part = os.path.join(out, 'sweeps.tgz.part')
  with tarfile.open(part, 'w:gz') as tar:
    for experiment, _, _, _ in SWEEPS:
      folder = os.path.join(results, f'{experiment}_sweep')
      if os.path.isdir(folder):
        tar.add(folder, f'experiments/results/{experiment}_sweep',
                filter=lambda info: None if '/tensorboard' in info.name
                else info)
  os.replace(part, os.path.join(out, 'sweeps.tgz'))


def _stop(proc: subprocess.Popen) -> int:
  """SIGTERM to the sweep's process group (it stops as on Ctrl-C, writing
  what finished), SIGKILL after a grace period."""
  if proc.poll() is None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
      return proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
  return proc.wait()


def run_sweeps(args, results: str, deadline: float) -> None:
  data_dirs = {'cifar': args.cifar_dir, 'mnist': args.mnist_dir}
  procs = {}
  for experiment, workers, data, _ in SWEEPS:
    log = open(os.path.join(args.out, f'{experiment}.log'), 'w')
    procs[experiment] = subprocess.Popen(
        [sys.executable, '-m', 'experiments.sweep', experiment, '--workdir',
         os.path.join(results, f'{experiment}_sweep'),
         '--config.data_source=local',
         f'--config.data_dir={data_dirs[data]}', '--parallel', str(workers),
         *shlex.split(args.sweep_args)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
  next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
  codes: dict[str, int] = {}
  while len(codes) < len(procs):
    time.sleep(1)  # a loan is short: notice a finished sweep at once
    for experiment, proc in procs.items():
      if experiment in codes:
        continue
      if proc.poll() is not None:
        codes[experiment] = proc.returncode
      elif time.monotonic() >= deadline:
        codes[experiment] = _stop(proc)
    if time.monotonic() >= next_snapshot:
      snapshot(results, args.out)
      next_snapshot += SNAPSHOT_EVERY_S
      counts = ', '.join(
          f'{len(os.listdir(os.path.join(results, f"{e}_sweep", "runs")))} '
          f'{e} runs' for e, _, _, _ in SWEEPS
          if os.path.isdir(os.path.join(results, f'{e}_sweep', 'runs')))
      print(f't={time.monotonic() - args.start:.0f}s: {counts}')
  for experiment, _, _, label in SWEEPS:
    print(f'{label} sweep exit {codes[experiment]}')
  snapshot(results, args.out)
  for experiment, _, _, _ in SWEEPS:
    with open(os.path.join(args.out, f'{experiment}.log')) as f:
      print(f'==> {experiment}.log <==\n' + ''.join(f.readlines()[-40:]))


def run_benchmarks(args) -> None:
  import jax
  backend = jax.default_backend()
  bench = os.path.join(args.out, 'bench')
  os.makedirs(bench, exist_ok=True)
  jobs = [(['benchmarks.train_step', '--models', 'lenet,cifar10_full',
            '--seeds', '8', '--json',
            os.path.join(bench, f'train_step_{backend}.json'),
            *shlex.split(args.train_step_args)], 2),
          (['benchmarks.overhead', '--trees', 'lenet,alexnet,resnet50',
            '--json', os.path.join(bench, f'overhead_{backend}.json'),
            *shlex.split(args.overhead_args)], 1)]
  for module_args, share in jobs:
    left = args.start + args.seconds - time.monotonic() - 10
    if left <= 20:
      print(f'skipped {module_args[0]}: {left:.0f}s left')
      continue
    try:
      subprocess.run([sys.executable, '-m', *module_args], cwd=ROOT,
                     timeout=left / share, check=False)
    except subprocess.TimeoutExpired:
      print(f'{module_args[0]} stopped at its time limit')
  with tarfile.open(os.path.join(args.out, 'bench.tgz'), 'w:gz') as tar:
    tar.add(bench, 'bench')


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m experiments.accelerator',
      description=__doc__.split('\n\n')[1].strip())
  parser.add_argument('out')
  parser.add_argument('seconds', type=int)
  parser.add_argument('--cifar-dir', required=True)
  parser.add_argument('--mnist-dir', required=True)
  parser.add_argument('--results-dir',
                      default=os.path.join(ROOT, 'experiments', 'results'))
  parser.add_argument('--sweep-args', default='',
                      help='extra arguments for both sweeps (a rehearsal: '
                      '--config.num_steps=20 ...)')
  parser.add_argument('--train-step-args', default='')
  parser.add_argument('--overhead-args', default='')
  args = parser.parse_args(argv)
  args.start = time.monotonic()
  args.out = os.path.abspath(args.out)
  os.makedirs(args.out, exist_ok=True)
  results = os.path.abspath(args.results_dir)
  os.makedirs(results, exist_ok=True)
  log = open(os.path.join(args.out, 'device.log'), 'a')
  sys.stdout = sys.stderr = _Tee(sys.__stdout__, log)
  os.environ['PYTHONUNBUFFERED'] = '1'
  import flax
  import jax
  import optax
  print('jax', jax.__version__, 'optax', optax.__version__, 'flax',
        flax.__version__, jax.devices())
  changed = len([line for line in _git('status', '--porcelain',
                                       '--untracked-files=no').splitlines()
                 if line.strip()])
  print(f'commit: {_git("rev-parse", "HEAD")} {changed} changed tracked '
        'files')
  with open(os.path.join(args.out, 'code.sha256'), 'w') as f:
    f.write(code_hashes())
  from experiments.lib import data
  decoded = data.load('cifar10', 'local', args.cifar_dir)  # once, cached
  print('cifar10', decoded.train_images.shape)
  deadline = args.start + args.seconds - args.seconds // 5
  print(f'sweeps: {deadline - time.monotonic():.0f}s')
  run_sweeps(args, results, deadline)
  run_benchmarks(args)
  print(f'done at t={time.monotonic() - args.start:.0f}s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
