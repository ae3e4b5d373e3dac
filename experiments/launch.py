"""Runs an experiment (or sweep) as N `jax.distributed` processes on this host:

  python -m experiments.launch --num_processes 2 [--cpu_devices_per_process 4]
      -- mnist_lenet --workdir DIR [--config.KEY=VALUE ...]

Everything after ``--`` is what ``python -m experiments.run`` (or, with
``--module sweep``, ``experiments.sweep``) takes. Each process gets its id,
the process count and a local coordinator address in its environment, plus
``--config.distributed=true``; `jax.distributed` then joins them into one
program over a mesh of all their devices. Process 0's output is shown here;
the others' go to ``--log_dir``. If one process fails (or is killed), the
others are stopped and its exit code is returned: a job never hangs on a
collective that cannot finish. Ctrl-C stops all of them; rerunning the same
command resumes from the last checkpoint.

On a cluster there is no launcher to run: start the same
``python -m experiments.run ... --config.distributed=true`` once per host
(``srun`` on SLURM, ``gcloud compute tpus tpu-vm ssh --worker=all`` on a
Cloud TPU pod slice); `jax.distributed.initialize()` reads the process id,
count and coordinator from the cluster (README, "Scale and faults").
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from experiments.lib import parallel

MODULES = {'run': 'experiments.run', 'sweep': 'experiments.sweep'}


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  if '--' in argv:
    i = argv.index('--')
    own, forwarded = argv[:i], argv[i + 1:]
  else:
    own, forwarded = argv, []
  parser = argparse.ArgumentParser(
      prog='python -m experiments.launch',
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
  parser.add_argument('--num_processes', type=int, required=True,
                      help='processes to start on this host (>= 1)')
  parser.add_argument('--cpu_devices_per_process', type=int, default=0,
                      help='run on the CPU with this many simulated devices '
                      'per process (0: the default backend and devices)')
  parser.add_argument('--accelerators_per_process', type=int, default=0,
                      help='give process i GPUs i*K..i*K+K-1 of this host '
                      '($JAX_LOCAL_DEVICE_IDS); 0: every process sees every '
                      'accelerator (right for one process per host)')
  parser.add_argument('--module', choices=sorted(MODULES), default='run',
                      help='experiments.run (default) or experiments.sweep')
  parser.add_argument('--port', type=int, default=0,
                      help='coordinator port on localhost (0: a free one)')
  parser.add_argument('--log_dir', default='',
                      help='where the output of processes 1.. goes '
                      '(default: a new temporary folder)')
  args = parser.parse_args(own)
  if args.num_processes < 1:
    parser.error(f'--num_processes must be >= 1, not {args.num_processes}.')
  if args.cpu_devices_per_process < 0 or args.accelerators_per_process < 0:
    parser.error('--cpu_devices_per_process and --accelerators_per_process '
                 'must be >= 0.')
  if args.cpu_devices_per_process and args.accelerators_per_process:
    parser.error('choose --cpu_devices_per_process (CPU) or '
                 '--accelerators_per_process (GPUs), not both.')
  if not forwarded:
    parser.error('nothing to run: put the experiment\'s arguments after '
                 '"--", e.g. -- mnist_lenet --workdir DIR')
  return args, forwarded


def _environment(args, process_id: int, port: int) -> dict[str, str]:
  env = dict(os.environ)
  env[parallel.PROCESS_ID_ENV] = str(process_id)
  env[parallel.NUM_PROCESSES_ENV] = str(args.num_processes)
  env[parallel.COORDINATOR_ENV] = f'localhost:{port}'
  if args.cpu_devices_per_process:
    env['JAX_PLATFORMS'] = 'cpu'
    flags = [f for f in env.get('XLA_FLAGS', '').split()
             if not f.startswith('--xla_force_host_platform_device_count')]
    flags.append('--xla_force_host_platform_device_count='
                 f'{args.cpu_devices_per_process}')
    env['XLA_FLAGS'] = ' '.join(flags)
  if args.accelerators_per_process:
    k = args.accelerators_per_process
    env['JAX_LOCAL_DEVICE_IDS'] = ','.join(
        str(i) for i in range(process_id * k, (process_id + 1) * k))
  return env


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
  for p in procs:
    if p.poll() is None:
      p.send_signal(signal.SIGTERM)
  deadline = time.monotonic() + grace
  for p in procs:
    try:
      p.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def _exit_code(returncode: int) -> int:
  return 128 - returncode if returncode < 0 else returncode


def _tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, errors='replace') as f:
      return ''.join(f.readlines()[-lines:])
  except OSError:
    return ''


def main(argv: list[str] | None = None) -> int:
  args, forwarded = _parse(sys.argv[1:] if argv is None else argv)
  port = args.port or _free_port()
  log_dir = args.log_dir or tempfile.mkdtemp(prefix='layerlr-launch-')
  os.makedirs(log_dir, exist_ok=True)
  command = [sys.executable, '-m', MODULES[args.module], *forwarded,
             '--config.distributed=true']
  procs, logs = [], []

  def terminated(signum, frame):  # a scheduler pre-empting the launcher
    raise SystemExit(128 + signum)

  signal.signal(signal.SIGTERM, terminated)
  try:
    for i in range(args.num_processes):
      env = _environment(args, i, port)
      if i == 0:
        procs.append(subprocess.Popen(command, env=env))
        logs.append(None)
        continue
      logs.append(os.path.join(log_dir, f'process-{i}.log'))
      with open(logs[-1], 'w') as log:
        procs.append(subprocess.Popen(command, env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
    if args.num_processes > 1:
      print(f'launch: {args.num_processes} processes, coordinator '
            f'localhost:{port}; output of processes 1-'
            f'{args.num_processes - 1} in {log_dir}', file=sys.stderr,
            flush=True)
    while True:
      codes = [p.poll() for p in procs]
      failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        i = failed[0]
        _stop(procs)
        print(f'launch: process {i} exited with code {codes[i]}; stopped '
              'the others.' + (f' Its last lines ({logs[i]}):\n' +
                               _tail(logs[i]) if logs[i] else ''),
              file=sys.stderr, flush=True)
        return _exit_code(codes[i])
      if all(c == 0 for c in codes):
        return 0
      time.sleep(0.2)
  except KeyboardInterrupt:
    # The terminal sent SIGINT to every process of the group already; each
    # says what it saved. Give them time to finish that before any SIGTERM.
    deadline = time.monotonic() + 30.0
    for p in procs:
      try:
        p.wait(timeout=max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        pass
    # Said here too: a process blocked in a collective when its peer stops
    # fails with the collective's error instead of saying it.
    print('launch: interrupted; every finished run is saved in --workdir '
          '(with checkpoints of unfinished ones when checkpoint_every > 0); '
          'run the same command again to resume.', file=sys.stderr,
          flush=True)
    return 130
  finally:
    _stop(procs)  # never leave a process behind, whatever stopped us


if __name__ == '__main__':
  sys.exit(main())
