"""The Python examples of the README and the docs pages, run and compared.

A page's ```python blocks run in order in one namespace (as a notebook's
cells do); a block followed by a ```text block must print exactly that
text. ``python -m tests.repository.docs_examples --write PAGE...`` rewrites the text
blocks from a run (then read the diff: it is what a user would see).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_BLOCK = re.compile(r'```python\n(.*?)```(\n\n```text\n(.*?)```)?', re.S)


def pages() -> list[str]:
  """The README and every Markdown page of the docs, relative to ROOT."""
  out = ['README.md']
  for folder, dirs, files in os.walk(os.path.join(ROOT, 'docs')):
    dirs[:] = [d for d in dirs if not d.startswith(('_', '.'))]
    out += [os.path.relpath(os.path.join(folder, f), ROOT)
            for f in sorted(files) if f.endswith('.md')]
  return sorted(out)


def examples(page: str) -> list[tuple[str, str | None, re.Match]]:
  """(code, expected output or None, match) of every python block."""
  with open(os.path.join(ROOT, page)) as f:
    text = f.read()
  return [(m.group(1), m.group(3), m) for m in _BLOCK.finditer(text)]


def run(page: str) -> list[tuple[str, str | None, str]]:
  """Runs the page's blocks; (code, expected, printed) for each."""
  namespace: dict = {'__name__': '__docs__'}
  results = []
  for code, expected, _ in examples(page):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
      exec(compile(code, page, 'exec'), namespace)  # noqa: S102
    results.append((code, expected, printed.getvalue()))
  return results


def write(page: str) -> None:
  """Rewrites the page's text blocks from a run of its code."""
  path = os.path.join(ROOT, page)
  with open(path) as f:
    text = f.read()
  outputs = iter(printed for _, expected, printed in run(page)
                 if expected is not None)

  def replace(match):
    if match.group(3) is None:
      return match.group(0)
    return (f'```python\n{match.group(1)}```\n\n```text\n'
            f'{next(outputs)}```')

  with open(path, 'w') as f:
    f.write(_BLOCK.sub(replace, text))


if __name__ == '__main__':
  if sys.argv[1:2] != ['--write'] or len(sys.argv) < 3:
    sys.exit('usage: python -m tests.repository.docs_examples --write PAGE.md ...')
  for name in sys.argv[2:]:
    write(name)
    print(f'rewrote the outputs of {name}')
