"""Every data source (experiments/lib/data/): local files, TFDS, synthetic."""

import gzip
import os

import ml_collections
import numpy as np
import pytest

from experiments.lib import data as data_lib
from experiments.lib.data import tfds_source
from tests.conftest import write_idx


def test_local_mnist_is_the_real_dataset(real_mnist_dir):
  ds = data_lib.load('mnist', 'local', real_mnist_dir)
  assert ds.train_images.shape == (60000, 28, 28, 1)
  assert ds.test_images.shape == (10000, 28, 28, 1)
  assert np.bincount(ds.test_labels).tolist() == [
      980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_missing_and_corrupt_mnist_files(tmp_path):
  with pytest.raises(data_lib.DataError, match='train-images-idx3-ubyte.gz'):
    data_lib.load('mnist', 'local', str(tmp_path))
  with pytest.raises(data_lib.DataError, match='needs --config.data_dir'):
    data_lib.load('mnist', 'local', None)
  with gzip.open(tmp_path / 'bad.gz', 'wb') as f:
    f.write(bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]) + b'x')
  with pytest.raises(data_lib.DataError, match='truncated or corrupt'):
    data_lib.read_idx(str(tmp_path / 'bad.gz'))
  (tmp_path / 'notgz.gz').write_bytes(b'hello world')
  with pytest.raises(data_lib.DataError, match='not a readable gzip'):
    data_lib.read_idx(str(tmp_path / 'notgz.gz'))
  with pytest.raises(data_lib.DataError, match='unknown dataset'):
    data_lib.load('fashion', 'local', str(tmp_path))


def test_any_mnist_format_folder(other_idx_dir):
  """Prefixed names, .idx3, 'test' for 't10k', an uncompressed file: all
  found; the classes and image size come from the files."""
  dataset = data_lib.load('mnist', 'local', other_idx_dir)
  assert dataset.num_classes == 12
  assert dataset.train_images.shape == (240, 16, 16, 1)
  assert dataset.test_images.shape == (60, 16, 16, 1)
  np.testing.assert_array_equal(dataset.test_labels, np.arange(60) % 12)
  config = ml_collections.ConfigDict(dict(
      dataset='mnist', data_source='local', data_dir=other_idx_dir))
  identity = data_lib.identity(config)
  assert identity['paper_data'] is False
  assert set(identity['sha256']) == set(data_lib.MNIST_FILES)


def test_the_real_mnist_is_recognised_by_its_content(real_mnist_dir,
                                                     tmp_path):
  """The paper's MNIST under other names (and uncompressed) is still the
  paper's data: the check is on the content."""
  for path in data_lib.mnist_files(real_mnist_dir).values():
    write_idx(str(tmp_path / f'copy-{os.path.basename(path)[:-3]}'),
              data_lib.read_idx(path))
  config = ml_collections.ConfigDict(dict(
      dataset='mnist', data_source='local', data_dir=str(tmp_path)))
  assert data_lib.identity(config)['paper_data'] is True


def test_ambiguous_mnist_format_folders_are_refused(other_idx_dir, tmp_path):
  import shutil
  # A second complete dataset with another prefix.
  for name in os.listdir(other_idx_dir):
    shutil.copy(os.path.join(other_idx_dir, name),
                os.path.join(other_idx_dir, name.replace('toy-', 'more-')))
  with pytest.raises(data_lib.DataError,
                     match=r"several MNIST-format datasets .*'more-', 'toy-'"):
    data_lib.load('mnist', 'local', other_idx_dir)
  # The same file twice under two names ('t10k' and 'test').
  folder = tmp_path / 'twice'
  folder.mkdir()
  images, labels = np.zeros((3, 4, 4)), np.arange(3)
  write_idx(str(folder / 'train-images-idx3-ubyte.gz'), images)
  write_idx(str(folder / 'train-labels-idx1-ubyte.gz'), labels)
  write_idx(str(folder / 't10k-images-idx3-ubyte.gz'), images)
  write_idx(str(folder / 't10k-labels-idx1-ubyte.gz'), labels)
  write_idx(str(folder / 'test-labels-idx1-ubyte.gz'), labels)
  with pytest.raises(data_lib.DataError, match='for the same file; keep one'):
    data_lib.load('mnist', 'local', str(folder))
  # A file next to its own .gz (as torchvision keeps them) is fine.
  os.remove(folder / 'test-labels-idx1-ubyte.gz')
  write_idx(str(folder / 't10k-labels-idx1-ubyte'), labels)
  assert data_lib.load('mnist', 'local', str(folder)).num_classes == 3
  # Three of four files: says what it found.
  os.remove(folder / 't10k-labels-idx1-ubyte.gz')
  os.remove(folder / 't10k-labels-idx1-ubyte')
  with pytest.raises(data_lib.DataError, match='but found .*t10k-images'):
    data_lib.load('mnist', 'local', str(folder))
  with pytest.raises(data_lib.DataError, match='is not a folder'):
    data_lib.load('mnist', 'local', str(folder / 'nothing'))


def _offline(monkeypatch):
  """No network, whatever the machine has: every connection fails as DNS
  does on a machine without internet."""
  import socket
  attempts = []

  def refuse(address, *args, **kwargs):
    attempts.append(address)
    raise socket.gaierror(-2, f'Name or service not known ({address[0]})')

  monkeypatch.setattr(socket, 'create_connection', refuse)
  return attempts


def test_tfds_offline_fails_fast_with_one_line_and_leaves_nothing(
    tmp_path, monkeypatch, capsys):
  """The README's default (TFDS) without internet, typed as a user would."""
  from experiments import run
  attempts = _offline(monkeypatch)
  tfds_dir = tmp_path / 'tensorflow_datasets'
  tfds_dir.mkdir()
  (tfds_dir / 'users_file').write_text('kept')
  workdir = tmp_path / 'workdir'
  code = run.main(['mnist_lenet', '--workdir', str(workdir),
                   f'--config.data_dir={tfds_dir}'])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2
  assert err[0].startswith("error: TFDS has no prepared 'mnist' in "), err
  assert 'storage.googleapis.com is unreachable' in err[0]
  assert ('--config.data_source=local --config.data_dir=DIR, where DIR '
          'holds train-images-idx3-ubyte.gz') in err[0]
  assert len(err) == 1, err
  # One probe of the download host, not TFDS's minutes of retries.
  assert [host for host, _ in attempts] == ['storage.googleapis.com']
  assert sorted(os.listdir(tfds_dir)) == ['users_file']
  assert not workdir.exists()


def test_a_failed_tfds_download_removes_only_what_it_added(tmp_path,
                                                           monkeypatch):
  import tensorflow_datasets as tfds
  tfds_dir = tmp_path / 'tfds'
  (tfds_dir / 'downloads').mkdir(parents=True)
  (tfds_dir / 'downloads' / 'earlier.zip').write_text('kept')
  monkeypatch.setattr(tfds_source, '_unreachable', lambda host: None)

  def half_download(self, *args, **kwargs):
    (tfds_dir / 'downloads' / 'mnist_partial.tmp').write_text('x')
    (tfds_dir / 'mnist' / '3.0.1.incomplete').mkdir(parents=True)
    raise ConnectionError('connection reset after 3 MB')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare',
                      half_download)
  with pytest.raises(data_lib.DataError,
                     match='partial download was removed.*data_source=local'):
    data_lib.load('mnist', 'tfds', str(tfds_dir))
  assert os.listdir(tfds_dir / 'downloads') == ['earlier.zip']
  assert not (tfds_dir / 'mnist').exists()


def test_cifar10_local_zip(cifar_dir, tmp_path, monkeypatch):
  """The generated zip (12 train, 4 test images per class) decodes to its
  classes in TFDS label order, cached after the first decoding."""
  monkeypatch.setenv('LAYERLR_CACHE', str(tmp_path / 'cache'))
  ds = data_lib.load('cifar10', 'local', cifar_dir)
  assert ds.train_images.shape == (120, 32, 32, 3)
  assert np.bincount(ds.test_labels).tolist() == [4] * 10
  # Class k's block is bright in channel k % 3 (tests/conftest.py): the
  # labels come from the folder names, the pixels from the JPEGs.
  block = ds.train_images[:, :8, :8, :].reshape(-1, 64, 3).mean(axis=1)
  zero = ds.train_labels == 0
  assert (block[zero, 0] > 200).all() and (block[~zero, 0] < 200).all()
  # Decoded once, then read from the cache.
  assert len(os.listdir(tmp_path / 'cache')) == 1
  again = data_lib.load('cifar10', 'local', cifar_dir)
  np.testing.assert_array_equal(again.test_images, ds.test_images)


def test_cifar10_real_zip(real_cifar_dir, tmp_path, monkeypatch):
  monkeypatch.setenv('LAYERLR_CACHE', str(tmp_path / 'cache'))
  ds = data_lib.load('cifar10', 'local', real_cifar_dir)
  assert ds.train_images.shape == (50000, 32, 32, 3)
  assert np.bincount(ds.test_labels).tolist() == [1000] * 10


def test_cifar10_missing_zip(tmp_path):
  with pytest.raises(data_lib.DataError, match='cifar10-jpeg.zip'):
    data_lib.load('cifar10', 'local', str(tmp_path))


def test_in_memory_batches_are_a_function_of_seed_and_step():
  images = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)
  labels = np.arange(10, dtype=np.int32)
  train = data_lib.InMemoryTrain(images, labels, batch_size=4)
  full = list(train.batches(seed=3, start=0, stop=6))
  resumed = list(train.batches(seed=3, start=4, stop=6))
  for (a, la), (b, lb) in zip(full[4:], resumed):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
  # Every epoch (10 examples) is a permutation.
  first_epoch = np.concatenate([l for _, l in full])[:8]
  assert len(set(first_epoch.tolist())) == 8
  other = list(train.batches(seed=4, start=0, stop=1))
  assert not np.array_equal(other[0][1], full[0][1])


def test_imagenet_pipeline_is_reproducible_and_resumable():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12):
    train = data_lib.ImageNetTrain(None, batch_size=3, shuffle_buffer=12)
    full = list(train.batches(seed=1, start=0, stop=4))
    again = list(train.batches(seed=1, start=0, stop=4))
    resumed = list(train.batches(seed=1, start=2, stop=4))
  assert full[0][0].shape == (3, 227, 227, 3) and full[0][0].dtype == np.uint8
  for (a, la), (b, lb) in zip(full, again):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
  for (a, la), (b, lb) in zip(full[2:], resumed):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)


def _rows_concatenate_to_the_global_batches(train, seed, start, stop,
                                           splits):
  """Each process's rows (`rows=`), concatenated in process order, are the
  global batches: what a multi-process run assembles."""
  full = list(train.batches(seed, start, stop))
  parts = [list(train.batches(seed, start, stop, rows=r)) for r in splits]
  assert len(full) == stop - start
  for step, (images, labels) in enumerate(full):
    np.testing.assert_array_equal(
        np.concatenate([p[step][0] for p in parts]), images)
    np.testing.assert_array_equal(
        np.concatenate([p[step][1] for p in parts]), labels)


def test_process_rows_make_up_the_global_batch():
  images = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)
  labels = np.arange(10, dtype=np.int32)
  train = data_lib.InMemoryTrain(images, labels, batch_size=4)
  _rows_concatenate_to_the_global_batches(train, 3, 1, 6,
                                          [(0, 2), (2, 4)])
  _rows_concatenate_to_the_global_batches(train, 3, 0, 3,
                                          [(0, 1), (1, 2), (2, 3), (3, 4)])
  synthetic = data_lib.SyntheticTrain((4, 4, 3), 10, 4)
  _rows_concatenate_to_the_global_batches(synthetic, 0, 0, 2,
                                          [(0, 2), (2, 4)])
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12):
    imagenet = data_lib.ImageNetTrain(None, batch_size=4, shuffle_buffer=12)
    _rows_concatenate_to_the_global_batches(imagenet, 1, 1, 4,
                                            [(0, 2), (2, 4)])


def _eval_rows_make_up_the_split(evaluation, devices, processes):
  """Each process's eval rows (what `Trainer` asks for: its share of every
  batch padded to `devices`), concatenated in process order, are the batches
  of the split; a process may hold only padding of the last batch."""
  full = list(evaluation.batches())
  sizes = evaluation.batch_sizes()
  assert [len(labels) for _, labels in full] == sizes

  def rows_of(process):
    def rows(num_real):
      padded = -(-num_real // devices) * devices
      share = padded // processes
      return process * share, (process + 1) * share
    return rows

  parts = [list(evaluation.batches(rows_of(p))) for p in range(processes)]
  for i, (images, labels) in enumerate(full):
    np.testing.assert_array_equal(
        np.concatenate([part[i][0] for part in parts]), images)
    np.testing.assert_array_equal(
        np.concatenate([part[i][1] for part in parts]), labels)
  return parts


def test_process_eval_rows_make_up_the_split():
  images = np.arange(11 * 2 * 2 * 1, dtype=np.uint8).reshape(11, 2, 2, 1)
  labels = np.arange(11, dtype=np.int32)
  in_memory = data_lib.InMemoryEval(images, labels, batch_size=4)
  assert in_memory.batch_sizes() == [4, 4, 3]
  _eval_rows_make_up_the_split(in_memory, devices=2, processes=2)
  # 8 devices in 2 processes: the last batch (3 examples, padded to 8) has
  # no data in process 1's rows 4..8.
  parts = _eval_rows_make_up_the_split(in_memory, devices=8, processes=2)
  assert parts[1][-1][0].shape == (0, 2, 2, 1)
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=11):
    imagenet = data_lib.ImageNetEval(None, batch_size=4)
    assert imagenet.batch_sizes() == [4, 4, 3]
    parts = _eval_rows_make_up_the_split(imagenet, devices=8, processes=2)
    assert parts[1][-1][0].shape == (0, 227, 227, 3)
    assert parts[0][0][0].shape == (4, 227, 227, 3)
    limited = data_lib.ImageNetEval(None, batch_size=4, max_examples=6)
    assert limited.batch_sizes() == [4, 2]
    _eval_rows_make_up_the_split(limited, devices=2, processes=2)


def test_synthetic_batches_and_bad_combinations(mnist_config):
  train = data_lib.SyntheticTrain((227, 227, 3), 1000, 2)
  images, labels = next(train.batches(0, 0, 1))
  assert images.shape == (2, 227, 227, 3) and labels.shape == (2,)
  with pytest.raises(data_lib.DataError, match='synthetic is for imagenet2012'):
    data_lib.make_pipeline(mnist_config(data_source='synthetic'))


def test_pipeline_of_a_config(mnist_config):
  pipeline = data_lib.make_pipeline(mnist_config(max_eval_examples=300,
                                                 eval_batch_size=128))
  assert pipeline.input_shape == (28, 28, 1) and pipeline.num_classes == 10
  sizes = [len(l) for _, l in pipeline.eval.batches()]
  assert sizes == [128, 128, 44]


def test_an_eval_subset_is_a_fixed_sample_not_the_first_examples():
  # A split stored by class, as the local CIFAR-10 zip is.
  labels = np.repeat(np.arange(10, dtype=np.int32), 100)
  images = np.arange(1000, dtype=np.uint8)[:, None, None, None] % 251
  subset = data_lib.InMemoryEval(images, labels, 64, max_examples=200)
  again = data_lib.InMemoryEval(images, labels, 64, max_examples=200)
  chosen = np.concatenate([l for _, l in subset.batches()])
  assert len(chosen) == 200 and set(chosen.tolist()) == set(range(10))
  assert np.all(np.diff(chosen) >= 0)  # split order kept
  np.testing.assert_array_equal(
      chosen, np.concatenate([l for _, l in again.batches()]))
  whole = data_lib.InMemoryEval(images, labels, 64, max_examples=5000)
  assert whole.num_examples == 1000


@pytest.mark.parametrize('num_examples,batch_size', [(10, 3), (12, 4), (7, 7)])
def test_every_epoch_is_a_fresh_permutation(num_examples, batch_size):
  """The reshuffle the reproduction page describes (#31): each epoch visits
  every example once, in an order of its own; the same seed gives the same
  orders, another seed others."""
  from experiments.lib.data import batches
  epochs = 6
  steps = epochs * num_examples // batch_size
  orders = batches.epoch_orders(3, num_examples, steps, batch_size).ravel()
  blocks = [orders[i * num_examples:(i + 1) * num_examples]
            for i in range(len(orders) // num_examples)]
  assert len(blocks) >= epochs - 1
  for block in blocks:
    assert sorted(block.tolist()) == list(range(num_examples))
  assert len({tuple(b.tolist()) for b in blocks}) == len(blocks)
  again = batches.epoch_orders(3, num_examples, steps, batch_size).ravel()
  np.testing.assert_array_equal(orders, again)
  other = batches.epoch_orders(4, num_examples, steps, batch_size).ravel()
  assert not np.array_equal(orders, other)


# A Python where TensorFlow and TFDS cannot be imported, as after
# `pip install "layerlr-optax[experiments]"` without the tfds extra.
_WITHOUT_TENSORFLOW = '''
import importlib.abc, runpy, sys
class _NoTensorFlow(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets'):
      raise ModuleNotFoundError(f'No module named {name!r}')
    return None
sys.meta_path.insert(0, _NoTensorFlow())
sys.argv = ['experiments.run'] + sys.argv[1:]
runpy.run_module('experiments.run', run_name='__main__')
'''


def _run_without_tensorflow(args, tmp_path):
  import subprocess
  import sys
  from tests.conftest import ROOT
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-c', _WITHOUT_TENSORFLOW, *args],
                        cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=900)


def test_local_data_needs_no_tensorflow(tmp_path, mnist_dir):
  """The experiments extra alone runs the main job on local files."""
  import json
  workdir = tmp_path / 'w'
  proc = _run_without_tensorflow(
      ['mnist_lenet', '--workdir', str(workdir), '--config.data_source=local',
       f'--config.data_dir={mnist_dir}', '--config.num_seeds=1',
       '--config.num_steps=4', '--config.eval_every=2',
       '--config.log_every=2', '--config.methods=sgd,sgd+layer'], tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / 'results.json').read_text())
  assert {r['method'] for r in results['runs']} == {'sgd', 'sgd+layer'}


def test_tfds_without_tensorflow_says_what_to_install(tmp_path):
  proc = _run_without_tensorflow(
      ['mnist_lenet', '--workdir', str(tmp_path / 'w')], tmp_path)
  assert proc.returncode == 2
  err = proc.stderr.strip().splitlines()
  assert len(err) == 1, err
  assert 'pip install "layerlr-optax[tfds]"' in err[0], err
  assert '--config.data_source=local --config.data_dir=DIR' in err[0]
  assert not (tmp_path / 'w').exists()


def test_the_experiments_extra_has_no_tensorflow():
  import tomllib
  from tests.conftest import ROOT
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    extras = tomllib.load(f)['project']['optional-dependencies']
  names = lambda extra: {r.split('>')[0].split(';')[0].strip()
                         for r in extras[extra]}
  assert not {n for n in names('experiments') if 'tensorflow' in n}
  assert {'tensorflow-datasets', 'tensorflow-cpu'} <= names('tfds')
