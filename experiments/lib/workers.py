"""Worker processes on this machine that share one workdir (``--parallel``).

The parent claims the workdir, deals the methods out round-robin, and starts
one ``python -m MODULE ... --only METHODS`` per group inside its claim (the
lease in the environment, `workdir_lock`). The workers share the machine's
accelerator, so none preallocates most of its memory. Ctrl-C (or SIGTERM
turned into one) reaches every worker as its own Ctrl-C: each saves what it
finished and stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from experiments import configs
from experiments.lib.methods import Method

# Flags of the parent's command line that a worker must not repeat: the
# parent already moved an old workdir aside and chose the methods.
_PARENT_FLAGS = ('--parallel', '--only')
_PARENT_SWITCHES = ('--overwrite',)


class Unfinished(RuntimeError):
  """A worker failed: some runs are not finished (the others are kept)."""


def add_arguments(parser, methods_key: str, only_writes: str) -> None:
  """``--parallel N`` and ``--only METHODS`` on an entry point's parser.

  Args:
    parser: the argparse parser.
    methods_key: the config key the methods come from (for the help).
    only_writes: what a process with ``--only`` writes (for the help).
  """
  parser.add_argument(
      '--parallel', type=int, default=1, metavar='N',
      help='train the methods in N worker processes on this machine (one '
      'accelerator shared, or N x the CPU threads); each trains whole '
      'methods and logs to WORKDIR/workers/; the outputs are written when '
      'they stop')
  parser.add_argument(
      '--only', metavar='METHODS',
      help=f'train only these methods of {methods_key} (comma separated); '
      f'{only_writes}')


def parallel_error(workers: int, distributed: bool) -> str | None:
  """What is wrong with ``--parallel workers`` (None: nothing)."""
  if workers < 1:
    return f'--parallel must be >= 1, got {workers}.'
  if workers > 1 and distributed:
    return ('--parallel starts its own processes on this machine; it cannot '
            'be combined with config.distributed (one multi-process JAX '
            'job). Use one or the other.')
  return None


def worker_argv(argv: Sequence[str], methods: Sequence[Method]) -> list[str]:
  """The parent's arguments for a worker training `methods`."""
  out, skip = [], False
  for arg in argv:
    if skip:
      skip = False
      continue
    if arg in _PARENT_FLAGS or arg in _PARENT_SWITCHES:
      skip = arg in _PARENT_FLAGS
      continue
    if arg.startswith(tuple(f'{flag}=' for flag in _PARENT_FLAGS)):
      continue
    out.append(arg)
  return out + ['--only', ','.join(m.name for m in methods)]


def select(methods: Sequence[Method], only, what: str) -> tuple[Method, ...]:
  """The methods named in `only` (a list or 'a,b'), in `methods`' order.

  Args:
    methods: the config's methods.
    only: the names given (None: all of `methods`).
    what: the config key `methods` come from, for the message.
  """
  if only is None:
    return tuple(methods)
  names = [n.strip() for n in (only.split(',') if isinstance(only, str)
                               else only) if n.strip()]
  known = {m.name: m for m in methods}
  unknown = [n for n in names if n not in known]
  if unknown or not names:
    raise configs.ConfigError(
        f'--only {",".join(names) or "(nothing)"}: '
        + (f'{", ".join(unknown)} not in' if unknown else 'name methods of')
        + f' {what} ({", ".join(known)}); --only chooses which of them this '
        'process trains.')
  return tuple(m for m in methods if m.name in names)


def run(module: str, argv: Sequence[str], methods: Sequence[Method],
        workers: int, logs: str, lease_env: dict[str, str]
        ) -> tuple[list[int], bool]:
  """Trains `methods` in `workers` subprocesses of ``python -m module``.

  Args:
    module: the entry point the workers run (its `--only` picks methods).
    argv: the parent's command line (without the program name).
    methods: the methods to deal out.
    workers: how many processes (fewer if there are fewer methods).
    logs: the folder for ``worker<i>.log``.
    lease_env: the parent's claim, for the workers' environment.

  Returns:
    (each worker's exit status, whether Ctrl-C stopped them).
  """
  groups = [list(methods[i::workers]) for i in range(workers)]
  groups = [g for g in groups if g]
  os.makedirs(logs, exist_ok=True)
  env = dict(os.environ, **lease_env)
  env.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  procs: list[subprocess.Popen] = []
  try:
    for i, group in enumerate(groups):
      path = os.path.join(logs, f'worker{i}.log')
      with open(path, 'w') as log:
        procs.append(subprocess.Popen(
            [sys.executable, '-m', module, *worker_argv(argv, group)],
            stdout=log, stderr=subprocess.STDOUT, env=env))
      print(f'worker {i}: {",".join(m.name for m in group)} (log: {path})',
            flush=True)
    codes = [p.wait() for p in procs]
    interrupted = False
  except KeyboardInterrupt:
    interrupted = True
    for p in procs:
      if p.poll() is None:
        p.send_signal(signal.SIGINT)
    codes = [p.wait() for p in procs]
  for i, code in enumerate(codes):
    if code:
      print(f'worker {i} stopped with exit status {code}; see '
            f'{os.path.join(logs, f"worker{i}.log")}', file=sys.stderr)
  return codes, interrupted
