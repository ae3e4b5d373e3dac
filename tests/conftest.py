"""Shared fixtures: data, tiny configs, a command-line runner.

Two kinds of data:
- `mnist_dir` and `cifar_dir`: small datasets generated here in the real
  on-disk formats (MNIST IDX .gz files under their standard names; a zip of
  JPEG class folders like the CIFAR-10 copy). Every data path of the
  experiments is tested on these, so the suite passes on a fresh clone with
  nothing beside it.
- `real_mnist_dir` and `real_cifar_dir`: the real files, for the tests that
  check real content (the golden regression, committed results, the
  notebooks' published numbers). They live in ``$LAYERLR_DATA`` (a folder
  holding ``mnist/`` and ``cifar10-jpeg/``), by default ``../shared/data``
  beside the repository. Found, the tests run; missing, they skip with the
  reason, except where ``LAYERLR_REQUIRE_REAL_DATA=1`` (set by ``.ci/run``):
  then a missing folder is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_DATA = os.environ.get('LAYERLR_DATA') or os.path.join(ROOT, '..',
                                                           'shared', 'data')
REQUIRE_REAL_DATA = os.environ.get('LAYERLR_REQUIRE_REAL_DATA') == '1'
_REAL_DATA_FIXTURES = ('real_mnist_dir', 'real_cifar_dir')

# One XLA compilation cache per test session, shared by the xdist workers and
# every subprocess (they inherit the environment): most of the suite's time is
# compiling the same small programs again, in restarts (kill-anywhere, resume,
# multi-process) and in tests that train the same configuration. Cached
# executables are the same code, so no result changes; the cache starts empty
# and is removed at the end, so nothing carries over between sessions.
# Set JAX_COMPILATION_CACHE_DIR yourself to keep one, or to '' for none.
_OWN_COMPILATION_CACHE = None
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _OWN_COMPILATION_CACHE = tempfile.mkdtemp(prefix='layerlr-test-xla-cache-')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _OWN_COMPILATION_CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')


def pytest_configure(config):
  # Known without pytest-xdist too (e.g. -p no:xdist): tests/test.sh's
  # --dist loadgroup keeps a group's tests on one worker.
  config.addinivalue_line(
      'markers', 'xdist_group(name): tests sharing a module-scoped fixture')
  config.addinivalue_line(
      'markers', 'frameworks: needs Flax, Equinox or orbax (not dependencies '
      'of the package; the minimum-versions run installs their lower bounds)')
  config.addinivalue_line(
      'markers', 'real_data: needs the real MNIST/CIFAR-10 files '
      '($LAYERLR_DATA, default ../shared/data)')


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if any(f in getattr(item, 'fixturenames', ()) for f in
           _REAL_DATA_FIXTURES):
      item.add_marker(pytest.mark.real_data)


def pytest_unconfigure(config):
  del config
  # The process that made the cache removes it (the xdist controller; workers
  # inherit the variable, so _OWN_COMPILATION_CACHE is None there).
  if _OWN_COMPILATION_CACHE:
    shutil.rmtree(_OWN_COMPILATION_CACHE, ignore_errors=True)


def real_data(name: str) -> str:
  """The folder `name` of the real data; skips (fails in CI) if missing."""
  path = os.path.join(REAL_DATA, name)
  if os.path.isdir(path):
    return path
  message = (f'the real data is missing: expected {path!r}. Set '
             'LAYERLR_DATA to a folder holding mnist/ (the four IDX .gz '
             'files) and cifar10-jpeg/ (cifar10-jpeg.zip).')
  if REQUIRE_REAL_DATA:
    pytest.fail(message + ' LAYERLR_REQUIRE_REAL_DATA=1: required here.')
  pytest.skip(message)


@pytest.fixture
def real_mnist_dir() -> str:
  """The real MNIST IDX .gz files."""
  return real_data('mnist')


@pytest.fixture
def real_cifar_dir() -> str:
  """The folder holding the real cifar10-jpeg.zip."""
  return real_data('cifar10-jpeg')


MNIST_STANDARD_NAMES = {
    'train_images': 'train-images-idx3-ubyte.gz',
    'train_labels': 'train-labels-idx1-ubyte.gz',
    'test_images': 't10k-images-idx3-ubyte.gz',
    'test_labels': 't10k-labels-idx1-ubyte.gz',
}


def _class_images(rng, labels, size: int, channels: int):
  """Learnable toy images: class k is a bright block at its own place (and,
  with colour, its own hue) on noise."""
  import numpy as np
  # Mostly dark, like MNIST's strokes on black (blocks at 255 on bright noise
  # gave gradients large enough to make 8-device reductions drift by 1e-5).
  images = rng.integers(0, 40, (len(labels), size, size, channels))
  images[rng.random(images.shape) < 0.8] = 0
  block = size // 4
  for i, label in enumerate(labels):
    r, c = divmod(int(label), 4)
    rows = slice(r * block, r * block + block)
    cols = slice(c * block, c * block + block)
    if channels == 1:
      images[i, rows, cols, 0] = 200
    else:
      images[i, rows, cols, int(label) % 3] = 220
  return images.astype(np.uint8)


def make_mnist_dir(folder: str, num_train: int = 1200,
                   num_test: int = 300, seed: int = 0) -> str:
  """A small 10-class MNIST-format folder: 28x28 grey images, the four
  standard IDX .gz file names."""
  import numpy as np
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  for split, n in (('train', num_train), ('test', num_test)):
    labels = rng.permutation(np.arange(n) % 10)
    images = _class_images(rng, labels, 28, 1)[..., 0]
    write_idx(os.path.join(folder, MNIST_STANDARD_NAMES[f'{split}_images']),
              images)
    write_idx(os.path.join(folder, MNIST_STANDARD_NAMES[f'{split}_labels']),
              labels)
  return folder


def make_cifar_dir(folder: str, per_class_train: int = 12,
                   per_class_test: int = 4, seed: int = 0) -> str:
  """A small CIFAR-10-format folder: cifar10-jpeg.zip of
  train|test/<class>/NNNN.jpg, 32x32 RGB JPEG at quality 75."""
  import io as io_lib
  import zipfile
  import numpy as np
  from PIL import Image
  from experiments.lib import data as data_lib
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  with zipfile.ZipFile(os.path.join(folder, data_lib.CIFAR10_ZIP), 'w') as z:
    for split, n in (('train', per_class_train), ('test', per_class_test)):
      for label, name in enumerate(data_lib.CIFAR10_CLASSES):
        images = _class_images(rng, [label] * n, 32, 3)
        for i, image in enumerate(images):
          buffer = io_lib.BytesIO()
          Image.fromarray(image).save(buffer, format='JPEG', quality=75)
          z.writestr(f'{split}/{name}/{i:04d}.jpg', buffer.getvalue())
  return folder


@pytest.fixture(scope='session')
def mnist_dir(tmp_path_factory) -> str:
  """A generated MNIST-format folder (see `make_mnist_dir`)."""
  return make_mnist_dir(str(tmp_path_factory.mktemp('mnist')))


@pytest.fixture(scope='session')
def cifar_dir(tmp_path_factory) -> str:
  """A generated folder holding a small cifar10-jpeg.zip."""
  return make_cifar_dir(str(tmp_path_factory.mktemp('cifar10-jpeg')))


@pytest.fixture(scope='session')
def _cifar_cache_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp('cifar-cache'))


@pytest.fixture
def cifar_cache(_cifar_cache_dir, cifar_dir, monkeypatch) -> str:
  """$LAYERLR_CACHE set to one folder per test session (and worker), with
  the CIFAR-10 zip decoded into it once: tests that train on CIFAR-10 share
  the decoding (tests/experiments/test_data.py tests the decoding itself, uncached)."""
  from experiments.lib import data as data_lib
  monkeypatch.setenv('LAYERLR_CACHE', _cifar_cache_dir)
  data_lib.load('cifar10', 'local', cifar_dir)
  return _cifar_cache_dir


@pytest.fixture
def mnist_config(mnist_dir):
  """A factory of tiny mnist_lenet configs on the local files:
  ``mnist_config(num_steps=6, ...)``."""
  from experiments import configs

  def make(**overrides):
    config = configs.get_config('mnist_lenet')
    config.update(dict(num_seeds=1, num_steps=4, eval_every=2, log_every=2,
                       eval_batch_size=5000, data_source='local',
                       data_dir=mnist_dir, methods='sgd,sgd+layer'))
    config.update(overrides)
    return config

  return make


@pytest.fixture
def run_module():
  """Runs ``python -m MODULE ARGS...`` from the project root as a user
  would; returns the CompletedProcess (text output)."""

  def run(module: str, *args: str, env: dict | None = None,
          timeout: float = 900) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    full_env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT,
                          env=full_env, capture_output=True, text=True,
                          timeout=timeout)

  return run


def write_idx(path: str, array, compress: bool | None = None) -> str:
  """Writes a uint8 array as an IDX file (gzip-compressed when `path` ends
  in .gz, or when `compress`)."""
  import gzip
  import struct
  import numpy as np
  array = np.asarray(array, np.uint8)
  data = (struct.pack('>HBB', 0, 8, array.ndim)
          + struct.pack(f'>{array.ndim}I', *array.shape) + array.tobytes())
  if path.endswith('.gz') if compress is None else compress:
    with gzip.open(path, 'wb') as f:
      f.write(data)
  else:
    with open(path, 'wb') as f:
      f.write(data)
  return path


@pytest.fixture
def other_idx_dir(tmp_path) -> str:
  """An MNIST-format folder that is not MNIST: 12 classes of 16x16 images
  (each class a bright square at its own place, plus noise), 240 train and
  60 test examples, EMNIST-style prefixed names, one file uncompressed."""
  import numpy as np
  rng = np.random.default_rng(7)
  folder = tmp_path / 'other-idx'
  folder.mkdir()

  def split(n):
    labels = np.arange(n) % 12
    images = rng.integers(0, 60, (n, 16, 16))
    for i, label in enumerate(labels):
      r, c = divmod(int(label), 4)
      images[i, 1 + 5 * r:5 + 5 * r, 1 + 4 * c:4 + 4 * c] = 255
    return images, labels

  (train_x, train_y), (test_x, test_y) = split(240), split(60)
  write_idx(str(folder / 'toy-train-images-idx3-ubyte.gz'), train_x)
  write_idx(str(folder / 'toy-train-labels-idx1-ubyte.gz'), train_y)
  write_idx(str(folder / 'toy-test-images.idx3-ubyte'), test_x)
  write_idx(str(folder / 'toy-test-labels-idx1-ubyte.gz'), test_y)
  return str(folder)


def assert_plot(path, min_size=(300, 200), min_colours=8) -> None:
  """`path` is a PNG with a drawn plot: at least `min_size` pixels and more
  than a handful of distinct colours (not blank, not one flat colour)."""
  from PIL import Image
  with Image.open(path) as image:
    assert image.format == 'PNG', (path, image.format)
    assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], (
        path, image.size)
    colours = image.convert('RGB').getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) >= min_colours, (path, colours)
