"""The notebooks: generated from notebooks/src, committed with outputs (run
at their own sizes by ``python -m notebooks.build``), and executable top to
bottom offline (with the local data). The execution test runs every cell
with smaller run sizes, the values of each notebook's parameters cell, to
keep the suite short; the code run is the same."""

import os
import re

import nbformat
import pytest

from notebooks import build
from tests.conftest import assert_plot, real_data

# The notebooks that read MNIST ($LAYERLR_DATA/mnist, by default
# ../shared/data/mnist beside the repository, else TFDS); saddle_points
# needs no data.
NEEDS_MNIST = ('quickstart', 'vanishing_gradients')


# Small enough for seconds of training, large enough that every plot and
# summary cell has data (e.g. quickstart smooths the loss over 20 steps).
QUICK_SIZES = {
    'quickstart': {'NUM_STEPS': 60, 'EVAL_EVERY': 30, 'SEEDS': (0,)},
    'vanishing_gradients': {'NUM_STEPS': 100, 'SEEDS': (0,)},
    'saddle_points': {'MAX_STEPS': 300, 'SEEDS': 2, 'RATES': (0.1, 0.3),
                      'SCALES': (1e-1, 3e-2, 1e-2)},
}


def _assert_real_plots(outputs, folder):
  """Every image output is a drawn plot (and there is at least one)."""
  import base64
  images = [o['data']['image/png'] for o in outputs
            if 'image/png' in o.get('data', {})]
  assert images
  for i, data in enumerate(images):
    path = folder / f'plot{i}.png'
    path.write_bytes(base64.b64decode(data))
    assert_plot(path, min_size=(200, 150))


def _code(nb):
  return [(c.cell_type, c.source, c.metadata.get('tags')) for c in nb.cells]


@pytest.mark.parametrize('name', build.NOTEBOOKS)
def test_committed_notebook_is_generated_and_has_outputs(name, tmp_path):
  committed = nbformat.read(os.path.join(build.HERE, f'{name}.ipynb'), 4)
  assert _code(committed) == _code(build.build(name)), (
      f'{name}.ipynb differs from notebooks/src/{name}.py: regenerate it with '
      'python -m notebooks.build (never edit the .ipynb by hand)')
  outputs = [o for c in committed.cells if c.cell_type == 'code'
             for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  assert any('image/png' in o.get('data', {}) for o in outputs), (
      f'{name}.ipynb has no plots: it was committed without executing')
  _assert_real_plots(outputs, tmp_path)
  assert build.colab_url(name) in committed.cells[0].source


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.real_data) if n in NEEDS_MNIST else n
    for n in build.NOTEBOOKS])
def test_notebook_executes_headlessly(name, tmp_path):
  if name in NEEDS_MNIST:
    real_data('mnist')
  nb = nbformat.read(os.path.join(build.HERE, f'{name}.ipynb'), 4)
  # Raises CellExecutionError on any failing cell.
  nb = build.execute(nb, parameters=QUICK_SIZES[name])
  injected = [c for c in nb.cells
              if 'injected-parameters' in c.metadata.get('tags', [])]
  assert len(injected) == 1 and injected[0].outputs == []
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  _assert_real_plots(outputs, tmp_path)
  printed = ''.join(o.get('text', '') for o in outputs)
  if name == 'saddle_points':
    # One summary row per (rate, distance) of the run sizes given.
    sizes = QUICK_SIZES[name]
    rows = [line for line in printed.splitlines()
            if re.match(r'^\s*[\d.]+\s+[\d.e+-]+ \|', line)]
    assert len(rows) == len(sizes['RATES']) * len(sizes['SCALES']), printed
    assert 'layer faster than global:' in printed


def test_parameters_must_be_defined_by_the_parameters_cell():
  nb = build.build('quickstart')
  with pytest.raises(ValueError, match=r"does not define \['NUM_STEP'\]"):
    build.with_parameters(nb, {'NUM_STEP': 10})


def test_docs_saddle_numbers_are_the_committed_outputs():
  """The notebooks page's saddle-point sentence quotes the committed
  notebook's printed summary; recompute each quoted number from that text."""
  import re
  nb = nbformat.read(os.path.join(build.HERE, 'saddle_points.ipynb'), 4)
  text = ''.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code'
                 for o in c.outputs)
  rows = re.findall(r'^\s*([\d.]+)\s+([\d.e+-]+) \|\s+(\S+)\s+(\S+)\s+(\S+) \|'
                    r'\s+(\S+)\s+(\S+)\s+(\S+) \| (\d+), (\d+), (\d+)$', text,
                    re.M)
  stable = [r for r in rows if r[8:] == ('0', '0', '0')]
  global_gd = [float(r[5].lstrip('>')) for r in stable]
  layer_global = [float(r[7]) for r in stable if r[7] != 'n/a']
  with open(os.path.join(build.HERE, '..', 'docs', 'notebooks.md')) as f:
    readme = ' '.join(f.read().split())
  assert len(stable) == 12
  assert (f'{min(global_gd):.2f}–{max(global_gd):.2f}x sooner than plain GD'
          in readme)
  assert f'{min(layer_global):.2f}–{max(layer_global):.2f}x on top' in readme
  faster = sum(v > 1 for v in layer_global)
  slower = sum(v < 1 for v in layer_global)
  assert f'in {faster} of the {len(stable)} stable settings, later in {slower}' \
      in readme
  best = re.findall(r'GD (\d+), \+global (\d+), \+layer (\d+) iterations', text)
  columns = ['/'.join(b[i] for b in best) for i in range(3)]
  assert (f'+layer took {columns[2]} iterations, `+global` {columns[1]} and '
          f'GD {columns[0]}' in readme)
