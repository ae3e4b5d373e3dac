"""The TFDS source (the default): prepares or downloads, and says plainly when
it cannot (no internet), leaving no partial download behind."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket

import numpy as np

from experiments.lib.data.dataset import (CIFAR10_ZIP, DataError, ImageDataset,
                                          MNIST_FILES)


# Where TFDS downloads each dataset from: checked (seconds) before TFDS
# retries for minutes and leaves partial downloads behind.
TFDS_DOWNLOAD_HOSTS = {'mnist': 'storage.googleapis.com',
                       'cifar10': 'www.cs.toronto.edu'}
LOCAL_FILES = {
    'mnist': ', '.join(MNIST_FILES.values()) + " (MNIST's IDX .gz files)",
    'cifar10': f'{CIFAR10_ZIP} (train/<class>/*.jpg and test/<class>/*.jpg)',
}


def _offline_hint(name: str) -> str:
  return (f'To run without internet: --config.data_source=local '
          f'--config.data_dir=DIR, where DIR holds {LOCAL_FILES[name]}.')


def _unreachable(host: str, timeout: float = 5.0) -> str | None:
  """Why `host` cannot be reached on port 443, or None if it can."""
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return None
  except OSError as e:
    return f'{type(e).__name__}: {e}'


def _entries(folder: str) -> set[str]:
  return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def _remove_new_entries(folder: str, before: set[str]) -> None:
  """Removes what a failed TFDS preparation added under `folder` (never
  what was there before)."""
  for entry in _entries(folder) - before:
    path = os.path.join(folder, entry)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      with contextlib.suppress(OSError):
        os.remove(path)


def _prepare_tfds(builder, name: str) -> None:
  """Downloads and prepares `name`, failing fast and cleanly offline."""
  root = os.path.dirname(os.path.dirname(builder.data_dir))  # DATA_DIR
  host = TFDS_DOWNLOAD_HOSTS.get(name)
  why = _unreachable(host) if host else None
  if why:
    raise DataError(
        f'TFDS has no prepared {name!r} in {root} and cannot download it '
        f'({host} is unreachable: {why}). {_offline_hint(name)}')
  watched = [root, os.path.join(root, 'downloads'),
             os.path.join(root, name)]
  before = {folder: _entries(folder) for folder in watched}
  created_root = not os.path.isdir(root)
  try:
    builder.download_and_prepare()
  except Exception as e:  # TFDS raises many types for "cannot download".
    for folder in reversed(watched):
      _remove_new_entries(folder, before[folder])
    if created_root:
      shutil.rmtree(root, ignore_errors=True)
    raise DataError(
        f'TFDS could not download and prepare {name!r} into {root} '
        f'({type(e).__name__}: {str(e)[:300]}); the partial download was '
        f'removed. {_offline_hint(name)}') from e


def _downloads_for_real(builder) -> bool:
  """False under `tfds.testing.mock_data`, which replaces TFDS's own
  download_and_prepare (and downloads nothing)."""
  method = type(builder).download_and_prepare
  module = getattr(method, '__module__', None) or ''
  return not module.startswith('tensorflow_datasets.testing')


def load_tfds(name: str, data_dir: str | None) -> ImageDataset:
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise DataError(
        f'data_source=tfds (the default) needs TensorFlow Datasets, which '
        f'this environment lacks ({e}): pip install "layerlr-optax[tfds]" '
        '(TensorFlow and TFDS, ~2.8 GB). Or, without them: '
        f'{_offline_hint(name)}') from None
  # TFDS logs a warning for every dataset it has not prepared yet; the
  # outcome (prepared, downloaded, or a DataError) says it better.
  absl_logger = logging.getLogger('absl')
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    prepared = builder.is_prepared()
  finally:
    absl_logger.setLevel(level)
  if not prepared:
    if _downloads_for_real(builder):
      _prepare_tfds(builder, name)
    else:
      builder.download_and_prepare()
  splits = {}
  for split in ('train', 'test'):
    ds = builder.as_dataset(split=split, as_supervised=True)
    images, labels = [], []
    for x, y in tfds.as_numpy(ds.batch(10_000)):
      images.append(x)
      labels.append(y)
    splits[split] = (np.concatenate(images).astype(np.uint8),
                     np.concatenate(labels).astype(np.int32))
  return ImageDataset(name, *splits['train'], *splits['test'], num_classes=10)
