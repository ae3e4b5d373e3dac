"""Kill a run anywhere, restart it, lose nothing: the fault-injection check.

  python -m experiments.kill_anywhere --workdir DIR [--kills 10]
      [--config.KEY=VALUE ...]

Trains a small `mnist_lenet` configuration (two methods, frequent
checkpoints) once without interruption, then again in a second folder where
every process is SIGKILLed at a different point (`experiments.lib.faults`):
between steps, in the middle of an orbax checkpoint write, between a finished
checkpoint and its integrity manifest, and in the middle of a finished run's
JSON write. After each kill the same command is started again, as a user (or
a cluster's pre-emption handler) would. When the interrupted run finishes,
its results must be bit-identical to the uninterrupted ones: every number in
``results.json`` and ``runs/*.json`` except the wall-clock measurements
(``records.TIMING_KEYS``). Writes
``DIR/kill_anywhere.json`` (every kill: point, exit status, what the restart
said) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from experiments.lib import fileio
from experiments.lib import provenance
from experiments.lib import records
from experiments.lib import faults

# Kill schedules, cycled: (point, N-th passage in that process).
SCHEDULE = (('step', 3), ('checkpoint_write', 1), ('step', 7),
            ('checkpoint_manifest', 1), ('run_json', 1), ('step', 2),
            ('checkpoint_write', 2), ('step', 5), ('checkpoint_manifest', 2),
            ('step', 9), ('checkpoint_write', 3), ('step', 4))


def _args(workdir: str, overrides: list[str]) -> list[str]:
  return [sys.executable, '-m', 'experiments.run', 'mnist_lenet', '--workdir',
          workdir, '--config.methods=sgd,sgd+layer', '--config.num_seeds=1',
          '--config.num_steps=24', '--config.log_every=2',
          '--config.eval_every=8', '--config.checkpoint_every=2',
          '--config.max_eval_examples=1000',
          '--config.eval_batch_size=5000', *overrides]


def run_once(workdir: str, overrides: list[str], kill_at: str | None):
  """``python -m experiments.run`` of the check's config into `workdir`,
  SIGKILLed at `kill_at` (``POINT:N``, see `experiments.lib.faults`) or
  run to the end (None); returns the finished process."""
  env = dict(os.environ)
  env.pop(faults.ENV, None)
  # Every process compiles its own program. With a persistent compilation
  # cache, whether a process loads an executable or compiles one depends on
  # how long compiling took (JAX caches only compiles above a second), i.e.
  # on the machine's load: under the full test suite the restarted runs
  # then differed from the uninterrupted one in the last bits, never alone.
  env['JAX_ENABLE_COMPILATION_CACHE'] = 'false'
  if kill_at:
    env[faults.ENV] = kill_at
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env['PYTHONPATH'] = os.pathsep.join(
      [root] + [p for p in [os.environ.get('PYTHONPATH')] if p])
  return subprocess.run(_args(workdir, overrides), env=env, cwd=root,
                        capture_output=True, text=True, timeout=900)


def outputs(workdir: str) -> dict:
  """results.json and every runs/*.json, without timing."""
  out = {}
  for rel in ['results.json'] + sorted(
      os.path.join('runs', n) for n in os.listdir(os.path.join(workdir,
                                                               'runs'))):
    with open(os.path.join(workdir, rel)) as f:
      out[rel] = records.without_timing(json.load(f))
  return out


def check(workdir: str, kills: int, overrides: list[str]) -> dict:
  """Runs the check; returns the report (also written as JSON)."""
  os.makedirs(workdir, exist_ok=True)
  reference_dir = os.path.join(workdir, 'uninterrupted')
  killed_dir = os.path.join(workdir, 'interrupted')
  for folder in (reference_dir, killed_dir):
    if os.path.exists(folder):
      raise SystemExit(f'error: {folder} exists; use a new --workdir (this '
                       'check never overwrites).')
  start = time.perf_counter()
  reference = run_once(reference_dir, overrides, None)
  if reference.returncode != 0:
    raise SystemExit('error: the uninterrupted run failed:\n'
                     + reference.stderr[-3000:])
  events = []
  restarts = 0
  finished = False
  while sum(e['killed'] for e in events) < kills:
    point, count = SCHEDULE[restarts % len(SCHEDULE)]
    restarts += 1
    proc = run_once(killed_dir, overrides, f'{point}:{count}')
    killed = proc.returncode == -signal.SIGKILL
    said = [line for line in proc.stderr.splitlines()
            if line.startswith(('resuming', 'warning', 'error'))]
    events.append({'kill_at': f'{point}:{count}', 'killed': killed,
                   'exit_status': proc.returncode, 'said': said})
    if not killed and proc.returncode != 0:
      raise SystemExit(f'error: restart {restarts} failed (exit '
                       f'{proc.returncode}):\n' + proc.stderr[-3000:])
    if not killed:
      finished = True  # the run finished before reaching this kill point
      break
    if restarts > 4 * kills:
      raise SystemExit('error: the run makes no progress between kills.')
  if not finished:
    final = run_once(killed_dir, overrides, None)
    if final.returncode != 0:
      raise SystemExit('error: the final restart failed:\n'
                       + final.stderr[-3000:])
    events.append({'kill_at': None, 'killed': False,
                   'exit_status': final.returncode,
                   'said': [line for line in final.stderr.splitlines()
                            if line.startswith(('resuming', 'warning'))]})
  expected, got = outputs(reference_dir), outputs(killed_dir)
  report = {
      'kills': sum(e['killed'] for e in events),
      'restarts': len(events),
      'identical': expected == got,
      'differing_files': sorted(k for k in set(expected) | set(got)
                                if expected.get(k) != got.get(k)),
      'events': events,
      'seconds': time.perf_counter() - start,
      'commit': provenance.git_commit(os.path.dirname(os.path.abspath(
          __file__))),
  }
  fileio.write_json(os.path.join(workdir, 'kill_anywhere.json'), report)
  return report


def markdown(report: dict) -> str:
  lines = [f'{report["kills"]} kills, {report["restarts"]} restarts; '
           f'results bit-identical to the uninterrupted run (timings '
           f'aside): **{report["identical"]}**.', '',
           '| # | killed at (point:N-th passage) | killed | the restart said |',
           '|---|---|---|---|']
  for i, event in enumerate(report['events'], 1):
    said = '; '.join(event['said']) or '-'
    lines.append(f'| {i} | {event["kill_at"] or "(no kill: finish)"} | '
                 f'{"yes" if event["killed"] else "no"} | {said} |')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m experiments.kill_anywhere',
                                   description=__doc__.split('\n\n')[1])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--kills', type=int, default=10)
  args, overrides = parser.parse_known_args(argv)
  report = check(args.workdir, args.kills, overrides)
  print(markdown(report))
  return 0 if report['identical'] else 1


if __name__ == '__main__':
  sys.exit(main())
