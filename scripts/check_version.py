"""Checks that a release tag names the package's version.

  python scripts/check_version.py v0.2.0

The version lives in one place, ``layerlr_optax/__init__.py``
(``__version__``); pyproject.toml reads it from there. Read here without
importing the package (whose dependencies a release job has not installed).
"""

from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_version() -> str:
  with open(os.path.join(ROOT, 'layerlr_optax', '__init__.py')) as f:
    tree = ast.parse(f.read())
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
        getattr(t, 'id', None) == '__version__' for t in node.targets):
      return ast.literal_eval(node.value)
  raise SystemExit('layerlr_optax/__init__.py defines no __version__')


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
    return 2
  tag, version = argv[1], package_version()
  if tag != f'v{version}':
    print(f'error: the tag {tag!r} does not name the package version '
          f'{version!r}: tag v{version}, or change __version__ in '
          'layerlr_optax/__init__.py first.', file=sys.stderr)
    return 1
  print(f'tag {tag} matches version {version}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
