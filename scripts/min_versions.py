"""The oldest versions pyproject.toml allows, as pip pins.

  python scripts/min_versions.py            # jax==... jaxlib==... optax==...
  python scripts/min_versions.py --python   # 3.10

Every `name>=X` of [project].dependencies becomes `name==X`, and jaxlib is
pinned to jax's version, so scripts/test_min_versions.sh tests exactly the
bounds the package declares.
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


def pins() -> list[str]:
  out = []
  for requirement in project()['dependencies']:
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


def python_version() -> str:
  match = re.fullmatch(r'>=\s*(3\.\d+)', project()['requires-python'].strip())
  if not match:
    raise SystemExit('min_versions: requires-python must be ">=3.X".')
  return match.group(1)


if __name__ == '__main__':
  print(python_version() if sys.argv[1:] == ['--python'] else ' '.join(pins()))
