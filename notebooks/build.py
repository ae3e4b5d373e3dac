"""Builds the notebooks from notebooks/src/*.py and executes them.

  python -m notebooks.build [NAME ...]

Each source is a Python file in "percent" format: cells start with ``# %%``
(code) or ``# %% [markdown]`` (markdown, every line prefixed with ``# ``).
The .ipynb files are generated, executed top to bottom (outputs and plots
kept, so GitHub shows them) and never edited by hand.
"""

from __future__ import annotations

import os
import sys

import nbformat

from experiments import records  # the project's one atomic writer

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, 'src')
NOTEBOOKS = ('quickstart', 'vanishing_gradients', 'saddle_points')
REPOSITORY = 'layerlr-optax/layerlr-optax'  # GitHub owner/name for the badges
KERNEL = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}


def colab_url(name: str) -> str:
  return (f'https://colab.research.google.com/github/{REPOSITORY}/blob/main/'
          f'notebooks/{name}.ipynb')


def parse_cells(text: str) -> list[tuple[str, str]]:
  """[(kind, source)] from a percent-format file."""
  cells: list[tuple[str, list[str]]] = []
  for line in text.splitlines():
    if line.startswith('# %%'):
      cells.append(('markdown' if '[markdown]' in line else 'code', []))
    elif cells:
      cells[-1][1].append(line)
  out = []
  for kind, lines in cells:
    if kind == 'markdown':
      lines = [l[2:] if l.startswith('# ') else l.lstrip('#') for l in lines]
    source = '\n'.join(lines).strip('\n')
    if source:
      out.append((kind, source))
  return out


def build(name: str) -> nbformat.NotebookNode:
  with open(os.path.join(SRC, f'{name}.py')) as f:
    cells = parse_cells(f.read().replace('{{COLAB_URL}}', colab_url(name)))
  nb = nbformat.v4.new_notebook()
  nb.metadata['kernelspec'] = KERNEL
  nb.metadata['language_info'] = {'name': 'python'}
  nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == 'markdown'
              else nbformat.v4.new_code_cell(src) for kind, src in cells]
  return nb


def execute(nb: nbformat.NotebookNode, cwd: str = HERE,
            timeout: int = 900) -> nbformat.NotebookNode:
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
  NotebookClient(nb, timeout=timeout, kernel_name='python3',
                 resources={'metadata': {'path': cwd}}).execute()
  return nb


def main(argv: list[str]) -> int:
  names = argv[1:] or list(NOTEBOOKS)
  for name in names:
    if name not in NOTEBOOKS:
      print(f'unknown notebook {name!r}; known: {NOTEBOOKS}', file=sys.stderr)
      return 2
    print(f'building and executing {name} ...', flush=True)
    nb = execute(build(name))
    path = os.path.join(HERE, f'{name}.ipynb')
    records.write_atomic(path, nbformat.writes(nb))
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
