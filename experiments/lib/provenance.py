"""Where a result came from: the code's commit, the software versions and
the device. Light to import (jax, optax, flax, the package): the studies and
benchmarks read these without importing the training loop."""

from __future__ import annotations

import os
import subprocess

import flax
import jax
import optax

import layerlr_optax


def versions_text(versions: dict[str, str] | None) -> str:
  """'jax 0.10.2, optax 0.2.8, ...', or 'versions not recorded'."""
  if not versions:
    return 'versions not recorded'
  return ', '.join(f'{k} {v}' for k, v in sorted(versions.items()))


def git_commit(path: str = '.') -> str | None:
  """The commit of the checkout holding `path`, '+dirty' if it has changes
  to tracked files outside experiments/results/ (outputs, not code: a sweep
  writing its tables does not make the code that trains it dirty); None
  outside git."""
  try:
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=path, text=True,
                          capture_output=True, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain',
                            '--untracked-files=no', '--', ':(top)',
                            ':(top,exclude)experiments/results'], cwd=path,
                           text=True, capture_output=True,
                           check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return head + ('+dirty' if dirty else '')


def code_commit() -> str | None:
  """The commit of this code (with '+dirty' for uncommitted changes)."""
  return git_commit(os.path.dirname(os.path.abspath(__file__)))


def device_description() -> str:
  return f'{jax.devices()[0].device_kind} x{len(jax.devices())}'


def versions() -> dict[str, str]:
  return {'jax': jax.__version__, 'optax': optax.__version__,
          'flax': flax.__version__,
          'layerlr_optax': layerlr_optax.__version__}


def cpu() -> str:
  """The CPU model and a digest of its instruction-set flags: XLA:CPU
  compiles for the features it finds, so float results can differ in the
  last bits between CPUs of one architecture (seen: 1e-7 relative)."""
  import hashlib
  import platform
  model, flags = platform.processor() or platform.machine(), ''
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name' and not flags:
          model = value.strip()
        elif key.strip() == 'flags':
          flags = ' '.join(sorted(value.split()))
          break
  except OSError:
    pass
  digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
  return f'{model} (flags {digest})'
