"""The notebooks: generated from notebooks/src, committed with outputs, and
executable top to bottom offline (with the local data)."""

import os

import nbformat
import pytest

from notebooks import build
from tests.conftest import SHARED_DATA, require_shared_data


def _code(nb):
  return [(c.cell_type, c.source) for c in nb.cells]


@pytest.mark.parametrize('name', build.NOTEBOOKS)
def test_committed_notebook_is_generated_and_has_outputs(name):
  committed = nbformat.read(os.path.join(build.HERE, f'{name}.ipynb'), 4)
  assert _code(committed) == _code(build.build(name)), (
      f'{name}.ipynb differs from notebooks/src/{name}.py: regenerate it with '
      'python -m notebooks.build (never edit the .ipynb by hand)')
  outputs = [o for c in committed.cells if c.cell_type == 'code'
             for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  assert any('image/png' in o.get('data', {}) for o in outputs), (
      f'{name}.ipynb has no plots: it was committed without executing')
  assert build.colab_url(name) in committed.cells[0].source


@pytest.mark.parametrize('name', build.NOTEBOOKS)
def test_notebook_executes_headlessly(name):
  require_shared_data(os.path.join(SHARED_DATA, "mnist"))
  nb = nbformat.read(os.path.join(build.HERE, f'{name}.ipynb'), 4)
  build.execute(nb)  # raises CellExecutionError on any failing cell
