"""Entry point: one accelerator loan in a fixed time box.

  python -m experiments.accelerator OUT_DIR SECONDS --cifar-dir DIR
      [--results-dir DIR] [--train-args ARGS] [--train-step-args ARGS]
      [--overhead-args ARGS] [--seeds N] [--probe-steps N]
      [--bench-seconds S] [--bench-repetitions N]

(``bash scripts/accelerator.sh ...`` is the wrapper a loan runs.) The
paper's CIFAR-10 Table II at its full schedules, then the benchmarks. First every
program (cifar10_full: sgd, sgd+layer, adagrad, adagrad+layer;
cifar10_full_50k: sgd, sgd+layer) trains ``--probe-steps`` steps, all at once
as they will run, ``--seeds`` seeds vmapped, one worker process per method;
their steps per second plan the rest: the comparisons (sgd vs sgd+layer at
70k, the same at 60k, then adagrad vs adagrad+layer) that fit before the
benchmarks' share (``--bench-seconds``) are trained with ``experiments.run
--parallel``, the others deferred (``plan.json`` says which and why; the
first always runs, resumable from its checkpoints). Then the benchmarks:
``train_step`` (cifar10_full and AlexNet at batch 256, images/s) and
``overhead`` (every tree), each repeated in ``--bench-repetitions`` fresh
processes (``benchmarks.repeated``), with optax's ``clip_by_global_norm``
chain as the anchor.

Training stops at SECONDS minus the benchmarks' share, as Ctrl-C stops it
(every finished run kept; checkpoints of unfinished ones; the same command
continues them). OUT_DIR receives, as they come: ``device.log``
(everything printed), ``code.sha256`` (the code's file hashes, to compare
with a commit's when the machine's copy of .git cannot be trusted),
``plan.json``, ``table2.md`` (the paper's claims against what finished,
``experiments.report table2``), ``results.tgz`` (the experiments' folders as named in the
repository, without TensorBoard files, refreshed every 30 s so that a
command killed at its time limit still returns what finished; it unpacks in
the repository root) and ``bench.tgz``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

from experiments.lib import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT_EVERY_S = 30
GRACE_S = 60
# Table II's comparisons in the order they are planned: each pair is one
# paper claim (docs/PAPER.md), trained whole or deferred whole.
TABLE2 = (('cifar10_full', ('sgd', 'sgd+layer')),
          ('cifar10_full_50k', ('sgd', 'sgd+layer')),
          ('cifar10_full', ('adagrad', 'adagrad+layer')))
# Evaluations on the whole 10k test set, as the issue asks.
TABLE2_EVAL_EVERY = 10_000
# The plan's projection is from a short probe; the full runs also evaluate
# 10k examples 6-7 times and checkpoint.
MARGIN = 1.15
OVERHEAD_TREES = ('lenet,alexnet,resnet50,stacked_48,deep_mlp_1000,'
                  'cifar10_full,deep_mlp_10,deep_mlp_100,unrolled_48')
OVERHEAD_OPTIMIZERS = ('optax.sgd,layerlr_optax.sgd,layerlr_optax.sgd[stacked],'
                       'optax.clip_by_global_norm+sgd')


class _Tee(io.TextIOBase):
  """Writes to the terminal and to device.log."""

  def __init__(self, *streams):
    self.streams = streams

  def write(self, text):
    for stream in self.streams:
      stream.write(text)
      stream.flush()
    return len(text)


@dataclasses.dataclass
class Job:
  """One training command of a plan, in its own process group."""
  name: str
  argv: list[str]
  workdir: str


def code_hashes() -> str:
  """``sha256  path`` of every .py and .sh of the package, the experiments,
  the benchmarks and the scripts, as ``sha256sum`` prints them."""
  lines = []
  for top in ('layerlr_optax', 'experiments', 'benchmarks', 'scripts'):
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


def snapshot(folders: list[str], out: str) -> None:
  """results.tgz of `folders` (no TensorBoard files), each named
  ``experiments/results/<folder name>``; written whole or not at all.

  It runs while the jobs write into the folders: a checkpoint being saved
  (orbax's ``*.orbax-checkpoint-tmp*`` folders, incomplete, ignored on
  restore) is left out, and a file deleted after it was listed (an older
  checkpoint replaced by a newer one) is skipped, not an error."""
  part = os.path.join(out, 'results.tgz.part')
  with tarfile.open(part, 'w:gz') as tar:
    for folder in folders:
      if not os.path.isdir(folder):
        continue
      root = f'experiments/results/{os.path.basename(folder)}'
      for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != 'tensorboard'
                         and '.orbax-checkpoint-tmp' not in d)
        name = os.path.normpath(os.path.join(root,
                                             os.path.relpath(here, folder)))
        for path, arcname in [(here, name)] + [
            (os.path.join(here, f), f'{name}/{f}') for f in sorted(files)]:
          try:
            tar.add(path, arcname, recursive=False)
          except FileNotFoundError:
            continue
  os.replace(part, os.path.join(out, 'results.tgz'))


def _stop(proc: subprocess.Popen, grace: float = GRACE_S) -> int:
  """SIGTERM to the job's process group (it stops as on Ctrl-C, keeping
  what finished), SIGKILL after `grace` seconds."""
  if proc.poll() is None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
      return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
  return proc.wait()


def _finished_runs(workdir: str) -> int:
  runs = os.path.join(workdir, 'runs')
  return len([n for n in os.listdir(runs) if n.endswith('.json')]
             ) if os.path.isdir(runs) else 0


def run_jobs(jobs: list[Job], out: str, deadline: float, start: float,
             snapshot_to: str | None) -> dict[str, int]:
  """Runs `jobs` side by side until they finish or `deadline`; snapshots
  their workdirs into `snapshot_to` (None: no snapshots) as they go.
  Returns each job's exit status."""
  procs = {}
  for job in jobs:
    log = open(os.path.join(out, f'{job.name}.log'), 'w')
    procs[job.name] = subprocess.Popen(
        [sys.executable, '-m', *job.argv], cwd=ROOT, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
  folders = sorted({job.workdir for job in jobs})
  next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
  codes: dict[str, int] = {}
  while len(codes) < len(procs):
    time.sleep(1)  # a loan is short: notice a finished job at once
    for name, proc in procs.items():
      if name in codes:
        continue
      if proc.poll() is not None:
        codes[name] = proc.returncode
      elif time.monotonic() >= deadline:
        codes[name] = _stop(proc)
    if time.monotonic() >= next_snapshot:
      if snapshot_to:
        snapshot(folders, snapshot_to)
      next_snapshot += SNAPSHOT_EVERY_S
      counts = ', '.join(f'{_finished_runs(j.workdir)} {j.name} runs'
                         for j in jobs)
      print(f't={time.monotonic() - start:.0f}s: {counts}')
  for job in jobs:
    print(f'{job.name} exit {codes[job.name]}')
  if snapshot_to:
    snapshot(folders, snapshot_to)
  for job in jobs:
    with open(os.path.join(out, f'{job.name}.log')) as f:
      print(f'==> {job.name}.log <==\n' + ''.join(f.readlines()[-20:]))
  return codes


def _data_args(data_dir: str) -> list[str]:
  return ['--config.data_source=local', f'--config.data_dir={data_dir}']


def probe_table2(args) -> dict[str, dict]:
  """Every Table II program for `args.probe_steps` steps, all at once as
  they will run; ``{experiment: {'startup_s', 'steps_per_second': {method:
  rate}}}`` from their results."""
  methods: dict[str, list[str]] = {}
  for experiment, pair in TABLE2:
    methods.setdefault(experiment, []).extend(pair)
  steps = args.probe_steps
  with tempfile.TemporaryDirectory() as tmp:
    jobs = [Job(f'probe_{experiment}', [
        'experiments.run', experiment, '--workdir',
        os.path.join(tmp, experiment), *_data_args(args.cifar_dir),
        f'--config.num_seeds={args.seeds}',
        f'--config.eval_every={TABLE2_EVAL_EVERY}',
        *shlex.split(args.train_args),
        f'--config.methods={",".join(names)}',
        f'--config.num_steps={steps}', f'--config.eval_every={steps}',
        f'--config.log_every={max(1, steps // 4)}',
        '--config.max_eval_examples=1000', '--config.checkpoint_every=0',
        '--parallel', str(len(names))], os.path.join(tmp, experiment))
            for experiment, names in methods.items()]
    # The probe's own time: its steps and compilation, at most a fifth.
    codes = run_jobs(jobs, args.out, time.monotonic() + args.seconds / 5,
                     args.start, snapshot_to=None)
    probe: dict[str, dict] = {}
    for job in jobs:
      experiment = job.name.removeprefix('probe_')
      path = os.path.join(job.workdir, 'results.json')
      if codes[job.name] or not os.path.exists(path):
        raise SystemExit(f'the probe of {experiment} failed (exit '
                         f'{codes[job.name]}); see {job.name}.log')
      with open(path) as f:
        results = json.load(f)
      os.makedirs(os.path.join(args.out, 'probe'), exist_ok=True)
      _write_json(os.path.join(args.out, 'probe'), f'{experiment}.json',
                  results)
      rates = {r['method']: r['steps_per_second'] for r in results['runs']}
      slowest = min(rates.values())
      probe[experiment] = {
          'startup_s': max(0.0, results['session_wall_seconds']
                           - steps / slowest),
          'steps_per_second': rates,
          'seeds_vmapped': results['seeds_vmapped']}
  return probe


def plan_table2(args, probe: dict[str, dict], seconds: float) -> dict:
  """Which comparisons fit in `seconds` of training, from the probe."""
  chosen, deferred = [], []
  for experiment, pair in TABLE2:
    _, config = cli.parse_args('plan', '', [
        experiment, '--workdir', args.out, *shlex.split(args.train_args)])
    rates = probe[experiment]['steps_per_second']
    projected = MARGIN * (probe[experiment]['startup_s'] + max(
        config.num_steps / rates[m] for m in pair))
    entry = {'experiment': experiment, 'methods': list(pair),
             'num_steps': config.num_steps,
             'projected_s': round(projected, 1)}
    (chosen if projected <= seconds or not chosen else deferred).append(entry)
  return {'seconds_for_training': round(seconds, 1), 'seeds': args.seeds,
          'probe_steps': args.probe_steps, 'probe': probe,
          'train': chosen, 'deferred': deferred}


def table2_jobs(args, plan: dict, results: str) -> list[Job]:
  methods: dict[str, list[str]] = {}
  for entry in plan['train']:
    methods.setdefault(entry['experiment'], []).extend(entry['methods'])
  return [Job(experiment, [
      'experiments.run', experiment, '--workdir',
      os.path.join(results, experiment), *_data_args(args.cifar_dir),
      f'--config.num_seeds={args.seeds}',
      f'--config.eval_every={TABLE2_EVAL_EVERY}',
      *shlex.split(args.train_args), f'--config.methods={",".join(names)}',
      '--parallel', str(len(names))], os.path.join(results, experiment))
              for experiment, names in methods.items()]


def run_benchmarks(args) -> None:
  """The benchmarks, each alone on the device, in the time left."""
  import jax
  backend = jax.default_backend()
  bench = os.path.join(args.out, 'bench')
  os.makedirs(bench, exist_ok=True)
  repeated = ['benchmarks.repeated', '--times', str(args.bench_repetitions),
              '--json']
  jobs = [('train_step', [
      *repeated, os.path.join(bench, f'train_step_{backend}.json'), '--',
      'train_step', '--models', 'cifar10_full,alexnet', '--seeds', '8',
      *shlex.split(args.train_step_args)], 2),
          ('overhead', [
              *repeated, os.path.join(bench, f'overhead_{backend}.json'),
              '--', 'overhead', '--trees', OVERHEAD_TREES, '--optimizers',
              OVERHEAD_OPTIMIZERS, '--repeats', '10',
              *shlex.split(args.overhead_args)], 1)]
  for name, module_args, share in jobs:
    left = args.start + args.seconds - time.monotonic() - 10
    if left <= 20:
      print(f'skipped {name}: {left:.0f}s left')
      continue
    proc = subprocess.Popen([sys.executable, '-m', *module_args], cwd=ROOT,
                            start_new_session=True)
    try:
      proc.wait(timeout=left / share)
    except subprocess.TimeoutExpired:
      # The whole group: the repetition running too, which keeps its JSON.
      _stop(proc, grace=20)
      print(f'{name} stopped at its time limit; kept what finished')
    with tarfile.open(os.path.join(args.out, 'bench.tgz'), 'w:gz') as tar:
      tar.add(bench, 'bench')


def _write_json(out: str, name: str, payload: dict) -> None:
  with open(os.path.join(out, name), 'w') as f:
    json.dump(payload, f, indent=1)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m experiments.accelerator',
      description=__doc__.split('\n\n')[1].strip())
  parser.add_argument('out')
  parser.add_argument('seconds', type=int)
  parser.add_argument('--cifar-dir', required=True)
  parser.add_argument('--results-dir',
                      default=os.path.join(ROOT, 'experiments', 'results'))
  parser.add_argument('--train-args', default='',
                      help='extra arguments for every training command (a '
                      'rehearsal: --config.num_steps=20 ...)')
  parser.add_argument('--train-step-args', default='')
  parser.add_argument('--overhead-args', default='')
  parser.add_argument('--seeds', type=int, default=5,
                      help='seeds per method, vmapped')
  parser.add_argument('--probe-steps', type=int, default=200)
  parser.add_argument('--bench-seconds', type=int, default=0,
                      help='the benchmarks\' share (default: a fifth)')
  parser.add_argument('--bench-repetitions', type=int, default=3,
                      help='fresh processes per benchmark, for the spread')
  args = parser.parse_args(argv)
  if args.seeds < 1 or args.probe_steps < 2 or args.bench_repetitions < 1:
    parser.error('--seeds and --bench-repetitions must be >= 1, '
                 '--probe-steps >= 2')
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
  commit = _git('rev-parse', 'HEAD')
  print(f'commit: {commit} {changed} changed tracked files')
  with open(os.path.join(args.out, 'code.sha256'), 'w') as f:
    f.write(code_hashes())
  from experiments.lib import data
  decoded = data.load('cifar10', 'local', args.cifar_dir)  # once, cached
  print('cifar10', decoded.train_images.shape)
  bench_seconds = args.bench_seconds or args.seconds // 5
  probe = probe_table2(args)
  deadline = args.start + args.seconds - bench_seconds
  plan = plan_table2(args, probe, deadline - time.monotonic())
  plan.update(commit=commit, changed_files=changed)
  _write_json(args.out, 'plan.json', plan)
  print('plan:', json.dumps({k: plan[k] for k in ('train', 'deferred')}))
  jobs = table2_jobs(args, plan, results)
  print(f'training: {deadline - time.monotonic():.0f}s')
  run_jobs(jobs, args.out, deadline, args.start, snapshot_to=args.out)
  # The paper's claims from what finished (also after a stop at the box).
  subprocess.run([sys.executable, '-m', 'experiments.report', 'table2',
                  results], cwd=ROOT, check=False)
  if os.path.exists(os.path.join(results, 'table2.md')):
    shutil.copy(os.path.join(results, 'table2.md'), args.out)
  run_benchmarks(args)
  print(f'done at t={time.monotonic() - args.start:.0f}s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
