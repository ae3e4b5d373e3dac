"""Shared fixtures: where the data is, tiny configs, a command-line runner.

The real data lives at ../shared/data relative to the project root. Tests
that need it fail (never skip) with a clear message when it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'data')

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
      'markers', 'frameworks: needs Flax, Equinox or orbax (not installed in '
      'the minimum-versions environment, which deselects these)')


def pytest_unconfigure(config):
  del config
  # The process that made the cache removes it (the xdist controller; workers
  # inherit the variable, so _OWN_COMPILATION_CACHE is None there).
  if _OWN_COMPILATION_CACHE:
    shutil.rmtree(_OWN_COMPILATION_CACHE, ignore_errors=True)


def require_shared_data(path: str) -> str:
  if not os.path.exists(path):
    pytest.fail(f'the shared data is missing: expected {path!r} (the '
                "repository's ../shared/data). Tests never skip for this.")
  return path


@pytest.fixture
def mnist_dir() -> str:
  """The real MNIST IDX .gz files."""
  return require_shared_data(os.path.join(SHARED_DATA, 'mnist'))


@pytest.fixture
def cifar_dir() -> str:
  """The folder holding cifar10-jpeg.zip."""
  return require_shared_data(os.path.join(SHARED_DATA, 'cifar10-jpeg'))


@pytest.fixture(scope='session')
def _cifar_cache_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp('cifar-cache'))


@pytest.fixture
def cifar_cache(_cifar_cache_dir, cifar_dir, monkeypatch) -> str:
  """$LAYERLR_CACHE set to one folder per test session (and worker), with
  the CIFAR-10 zip decoded into it once: tests that train on CIFAR-10 share
  the decoding (tests/test_data.py tests the decoding itself, uncached)."""
  from experiments import data as data_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('LAYERLR_CACHE', _cifar_cache_dir)
  data_lib.load('cifar10', 'local', cifar_dir)
  return _cifar_cache_dir


@pytest.fixture
def mnist_config(mnist_dir):
  """A factory of tiny mnist_lenet configs on the local files:
  ``mnist_config(num_steps=6, ...)``."""
  from experiments import configs  # pylint: disable=g-import-not-at-top

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
  import gzip  # pylint: disable=g-import-not-at-top
  import struct  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
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
  import numpy as np  # pylint: disable=g-import-not-at-top
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
