"""Builds the notebooks from notebooks/src/*.py and executes them.

  python -m notebooks.build [NAME ...]

Each source is a Python file in "percent" format: cells start with ``# %%``
(code) or ``# %% [markdown]`` (markdown, every line prefixed with ``# ``).
One ``# %% [parameters]`` cell holds the run sizes; it is tagged
``parameters`` as papermill expects, and ``execute(nb, parameters={...})``
runs the notebook with other values (assigned in a cell right after it).
The .ipynb files are generated, executed top to bottom at their own sizes
(outputs and plots kept, so GitHub shows them) and never edited by hand.
"""

from __future__ import annotations

import copy
import os
import re
import sys

import nbformat

from experiments.lib import fileio

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
      kind = ('markdown' if '[markdown]' in line else
              'parameters' if '[parameters]' in line else 'code')
      cells.append((kind, []))
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
  nb.cells = []
  for kind, src in cells:
    if kind == 'markdown':
      nb.cells.append(nbformat.v4.new_markdown_cell(src))
    else:
      cell = nbformat.v4.new_code_cell(src)
      if kind == 'parameters':
        cell.metadata['tags'] = ['parameters']
      nb.cells.append(cell)
  return nb


def with_parameters(nb: nbformat.NotebookNode,
                    parameters: dict[str, object]) -> nbformat.NotebookNode:
  """A copy of ``nb`` whose ``parameters`` cell is followed by one assigning
  ``parameters`` (names it defines, values with a Python literal repr)."""
  nb = copy.deepcopy(nb)
  tagged = [i for i, c in enumerate(nb.cells)
            if 'parameters' in c.metadata.get('tags', [])]
  if len(tagged) != 1:
    raise ValueError(f'expected one cell tagged "parameters", found '
                     f'{len(tagged)}')
  defined = nb.cells[tagged[0]].source
  unknown = [k for k in parameters
             if not re.search(rf'^\s*(\w+\s*,\s*)*{k}\b[\w\s,]*=', defined,
                              re.M)]
  if unknown:
    raise ValueError(f'the parameters cell does not define {unknown}; it '
                     f'reads:\n{defined}')
  injected = nbformat.v4.new_code_cell(
      '\n'.join(f'{k} = {v!r}' for k, v in parameters.items()))
  injected.metadata['tags'] = ['injected-parameters']
  nb.cells.insert(tagged[0] + 1, injected)
  return nb


def execute(nb: nbformat.NotebookNode, cwd: str = HERE, timeout: int = 900,
            parameters: dict[str, object] | None = None
            ) -> nbformat.NotebookNode:
  """Runs ``nb`` top to bottom in a fresh kernel (in place, and returns it);
  ``parameters`` replace the values of the parameters cell."""
  from nbclient import NotebookClient
  if parameters:
    nb = with_parameters(nb, parameters)
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
    fileio.write_atomic(path, nbformat.writes(nb))
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
