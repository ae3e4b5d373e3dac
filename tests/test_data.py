"""Every data source (experiments/data.py): local files, TFDS, synthetic."""

import gzip
import os

import numpy as np
import pytest

from experiments import data as data_lib


def test_local_mnist_is_the_real_dataset(mnist_dir):
  ds = data_lib.load('mnist', 'local', mnist_dir)
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


def test_tfds_source_fails_clearly_without_network(tmp_path, monkeypatch):
  import importlib_resources  # noqa: F401  TFDS needs it to download.
  import tensorflow_datasets as tfds

  def offline(*args, **kwargs):
    raise ConnectionError('Failed to resolve storage.googleapis.com')

  monkeypatch.setattr(tfds, 'load', offline)
  with pytest.raises(data_lib.DataError, match='data_source=local'):
    data_lib.load('mnist', 'tfds', str(tmp_path))


def test_cifar10_local_zip(cifar_dir, tmp_path, monkeypatch):
  monkeypatch.setenv('LAYERLR_CACHE', str(tmp_path / 'cache'))
  ds = data_lib.load('cifar10', 'local', cifar_dir)
  assert ds.train_images.shape == (50000, 32, 32, 3)
  assert np.bincount(ds.test_labels).tolist() == [1000] * 10
  # Decoded once, then read from the cache.
  assert len(os.listdir(tmp_path / 'cache')) == 1
  again = data_lib.load('cifar10', 'local', cifar_dir)
  np.testing.assert_array_equal(again.test_images, ds.test_images)


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
