"""The oldest versions pyproject.toml allows, as pip pins.

  python scripts/min_versions.py            # jax==... jaxlib==... optax==...
  python scripts/min_versions.py --python   # 3.10
  python scripts/min_versions.py --extra test   # chex==... pytest==... of [test]
  python scripts/min_versions.py --frameworks   # flax==... equinox==... chex==...

Every `name>=X` of [project].dependencies becomes `name==X`, and jaxlib is
pinned to jax's version, so scripts/test_min_versions.sh tests exactly the
bounds the package declares. `--frameworks` pins, from whichever extra
declares them, what the tests marked `frameworks` import (Flax, orbax,
Equinox) and chex, so that those tests run at their lower bounds too.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LOWER = re.compile(r'^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)$')


def project() -> dict:
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)['project']


def pins(extra: str | None = None) -> list[str]:
  """Pins of the runtime dependencies, or of the optional `extra`'s entries
  that are plain lower bounds (chex, pytest, ... of `test`)."""
  out = []
  requirements = (project()['dependencies'] if extra is None else
                  [r for r in project()['optional-dependencies'][extra]
                   if _LOWER.match(r.strip())])
  for requirement in requirements:
    match = _LOWER.match(requirement.strip())
    if not match:
      raise SystemExit(
          f'min_versions: cannot pin {requirement!r}; every dependency must '
          'be a plain lower bound "name>=X" so its minimum can be tested.')
    name, version = match.groups()
    out.append(f'{name}=={version}')
    if name == 'jax':
      out.append(f'jaxlib=={version}')
  return out


# What the package's tests import beyond jax and optax, by their names in
# the extras.
FRAMEWORKS = ('chex', 'flax', 'orbax-checkpoint', 'equinox')


def framework_pins() -> list[str]:
  """``name==X`` for each of FRAMEWORKS, X its lower bound in the extra
  that declares it."""
  bounds = {}
  for requirements in project()['optional-dependencies'].values():
    for requirement in requirements:
      match = _LOWER.match(requirement.strip())
      if match:
        bounds.setdefault(match.group(1), match.group(2))
  missing = [name for name in FRAMEWORKS if name not in bounds]
  if missing:
    raise SystemExit(
        f'min_versions: no extra declares a lower bound "name>=X" for '
        f'{", ".join(missing)}.')
  return [f'{name}=={bounds[name]}' for name in FRAMEWORKS]


def python_version() -> str:
  match = re.fullmatch(r'>=\s*(3\.\d+)', project()['requires-python'].strip())
  if not match:
    raise SystemExit('min_versions: requires-python must be ">=3.X".')
  return match.group(1)


if __name__ == '__main__':
  if sys.argv[1:] == ['--python']:
    print(python_version())
  elif sys.argv[1:] == ['--frameworks']:
    print(' '.join(framework_pins()))
  elif sys.argv[1:2] == ['--extra']:
    print(' '.join(pins(sys.argv[2])))
  else:
    print(' '.join(pins()))
