"""What every command line of the experiments shares: parsing
``EXPERIMENT --workdir DIR --config.KEY=VALUE``, user errors as one line,
SIGTERM as Ctrl-C. Used by the entry points; imports only the framework."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from experiments import configs
from experiments.lib import data as data_lib
from experiments.lib import interrupts
from experiments.lib import workdir as workdir_lib
from experiments.lib import workdir_lock


def _shown(value) -> str:
  """A value as one would type it after --config.KEY=."""
  if hasattr(value, 'keys'):
    return '{}'
  if isinstance(value, str):
    return value if value else "''  (empty)"
  if isinstance(value, tuple):
    return '(' + ','.join(str(v) for v in value) + ')'
  return str(value).lower() if isinstance(value, bool) else str(value)


def _keys_help(argv: list[str]) -> str:
  """The --help epilog: how overrides work and the keys of the experiment
  named on the command line (or of mnist_lenet), with their values."""
  named = [a for a in argv if a in configs.available()]
  experiment = named[0] if named else 'mnist_lenet'
  config = configs.get_config(experiment)
  lines = ['Overrides: --config.KEY=VALUE, typed like the current value '
           '(numbers, true/false, (a,b) tuples, nested keys as '
           '--config.sweep.grid_seeds=2). Keys of '
           f'{experiment}{"" if named else " (name an experiment before --help for its own)"}:']

  def walk(node, prefix):
    for key in sorted(node.keys()):
      value = node[key]
      if key == 'paper_table':
        lines.append(f'  --config.{prefix}{key}=... (the paper\'s numbers)')
      elif hasattr(value, 'keys') and len(value.keys()):
        walk(value, f'{prefix}{key}.')
      else:
        lines.append(f'  --config.{prefix}{key}={_shown(value)}')
  walk(config, '')
  return '\n'.join(lines)


def parse_args(prog: str, description: str, argv: list[str] | None,
               extra=None):
  """(args, config) from ``EXPERIMENT --workdir DIR [--config.K=V ...]``."""
  parser = argparse.ArgumentParser(
      prog=prog, description=description,
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=_keys_help(argv if argv is not None else sys.argv[1:]))
  parser.add_argument('experiment', help='one of: ' +
                      ', '.join(configs.available()))
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--debug', action='store_true',
                      help='show the Python traceback of a user error')
  if extra:
    extra(parser)
  args, overrides = parser.parse_known_args(argv)
  config = configs.apply_overrides(configs.get_config(args.experiment),
                                   overrides)
  return args, config


@contextlib.contextmanager
def sigterm_as_interrupt(config):
  """Within: SIGTERM (a scheduler's pre-emption, GNU timeout, ``kill``)
  stops this process as Ctrl-C does, so that it says what it kept and exits
  130 instead of dying mid-line.

  Not SIGTERM for a multi-process run (config.distributed): a process
  blocked in a collective on a dead peer runs no Python handler, and its
  launcher's SIGTERM must stop it at once. Ctrl-C (SIGINT) raises
  KeyboardInterrupt as always; both are also recorded (`interrupts`), so
  that one Python drops inside a gc callback still stops training.
  """
  def recorded_interrupt(signum, frame):
    del frame
    interrupts.request()
    raise KeyboardInterrupt(signum)

  signums = [signal.SIGINT] + ([] if config.get('distributed')
                               else [signal.SIGTERM])
  previous = {s: signal.signal(s, recorded_interrupt) for s in signums}
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    interrupts.clear()  # the request belonged to this command


def user_errors_as_messages(fn, debug: bool = False):
  """Runs `fn`; a user error (bad config, missing data, refused workdir)
  prints one line naming the problem and returns None, without a
  traceback unless `debug`. Bugs still raise."""
  try:
    return fn()
  except (configs.ConfigError, data_lib.DataError,
          workdir_lib.WorkdirError, workdir_lock.WorkdirBusy) as e:
    if debug:
      raise
    print(f'error: {e}', file=sys.stderr)
    return None
  except (OSError, ValueError) as e:
    # A write the disk refused anywhere else (plots, TensorBoard files).
    if debug or not workdir_lib.is_storage_error(e):
      raise
    print(f'error: {e}; free space or choose a writable --workdir, then '
          'run the same command to resume (finished runs are kept).',
          file=sys.stderr)
    return None
  except KeyboardInterrupt:
    print('interrupted: every finished run is saved (in --workdir/runs/, '
          'with checkpoints of unfinished ones when checkpoint_every > 0); '
          'run the same command again to resume.', file=sys.stderr)
    raise SystemExit(130) from None
