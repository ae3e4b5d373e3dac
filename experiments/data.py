"""Datasets for the experiments: one interface, two sources.

``tfds`` (the default, what users with internet have) and ``local`` (the
standard files on disk, used offline and by the tests) return the same
`ImageDataset` of uint8 NHWC images and int32 labels; the model-specific
preprocessing (Caffe's input scaling or mean subtraction) happens afterwards,
identically for both sources, inside the jitted step.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import struct
import zipfile

import numpy as np

SOURCES = ('tfds', 'local')
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')
MNIST_FILES = {
    'train_images': 'train-images-idx3-ubyte.gz',
    'train_labels': 'train-labels-idx1-ubyte.gz',
    'test_images': 't10k-images-idx3-ubyte.gz',
    'test_labels': 't10k-labels-idx1-ubyte.gz',
}
CIFAR10_ZIP = 'cifar10-jpeg.zip'


class DataError(RuntimeError):
  """Missing or corrupt data, with what was expected where."""


@dataclasses.dataclass(frozen=True)
class ImageDataset:
  """An in-memory image classification dataset (uint8 NHWC, int32 labels)."""
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int

  def __post_init__(self):
    for split in ('train', 'test'):
      images = getattr(self, f'{split}_images')
      labels = getattr(self, f'{split}_labels')
      if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(f'{self.name}: {split} images must be uint8 NHWC, got '
                        f'{images.dtype} {images.shape}.')
      if labels.shape != (images.shape[0],):
        raise DataError(f'{self.name}: {len(labels)} {split} labels for '
                        f'{images.shape[0]} images.')
      if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
        raise DataError(f'{self.name}: {split} labels outside '
                        f'[0, {self.num_classes}).')


def load(name: str, source: str, data_dir: str | None) -> ImageDataset:
  """Loads dataset `name` ('mnist' or 'cifar10') from `source`.

  Args:
    name: 'mnist' or 'cifar10'.
    source: 'tfds' (downloads/prepares through tensorflow_datasets; `data_dir`
      is TFDS's data dir, None for its default) or 'local' (`data_dir` holds
      the four MNIST IDX .gz files, or cifar10-jpeg.zip).
    data_dir: see `source`.

  Returns:
    The `ImageDataset`.
  """
  if source not in SOURCES:
    raise ValueError(f'data_source={source!r}; expected one of {SOURCES}.')
  loaders = {'mnist': _load_local_mnist, 'cifar10': _load_local_cifar10}
  if name not in loaders:
    raise ValueError(f'unknown dataset {name!r}; expected one of '
                     f'{sorted(loaders)}.')
  if source == 'tfds':
    return _load_tfds(name, data_dir)
  if not data_dir:
    raise DataError(
        f'data_source=local needs --config.data_dir: the folder holding '
        f'{"the four MNIST IDX .gz files" if name == "mnist" else CIFAR10_ZIP}'
        ' (in this repository: ../shared/data/mnist or '
        '../shared/data/cifar10-jpeg).')
  return loaders[name](data_dir)


def _load_tfds(name: str, data_dir: str | None) -> ImageDataset:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  splits = {}
  for split in ('train', 'test'):
    try:
      ds = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir)
    except Exception as e:  # TFDS raises many types for "cannot download".
      raise DataError(
          f'TFDS could not load {name!r} ({type(e).__name__}: {e}). Without '
          'internet, use the local files: --config.data_source=local '
          '--config.data_dir=PATH.') from e
    images, labels = [], []
    for x, y in tfds.as_numpy(ds.batch(10_000)):
      images.append(x)
      labels.append(y)
    splits[split] = (np.concatenate(images).astype(np.uint8),
                     np.concatenate(labels).astype(np.int32))
  return ImageDataset(name, *splits['train'], *splits['test'], num_classes=10)


def _require(path: str, what: str) -> None:
  if not os.path.isfile(path):
    raise DataError(f'expected {what} at {path!r}, but there is no such file. '
                    'Point --config.data_dir at the folder that holds it, or '
                    'use --config.data_source=tfds.')


def read_idx(path: str) -> np.ndarray:
  """Reads a gzip-compressed IDX file (the MNIST format) into a uint8 array."""
  _require(path, 'an MNIST IDX .gz file')
  try:
    with gzip.open(path, 'rb') as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f'{path!r} is not a readable gzip file ({e}).') from e
  if len(data) < 4:
    raise DataError(f'{path!r} is too short to be an IDX file.')
  zero, dtype_code, ndim = struct.unpack('>HBB', data[:4])
  if zero != 0 or dtype_code != 0x08:
    raise DataError(f'{path!r} is not an unsigned-byte IDX file '
                    f'(magic {data[:4].hex()}).')
  shape = struct.unpack(f'>{ndim}I', data[4:4 + 4 * ndim])
  body = data[4 + 4 * ndim:]
  if len(body) != int(np.prod(shape)):
    raise DataError(f'{path!r}: header says shape {shape} '
                    f'({int(np.prod(shape))} bytes) but holds {len(body)} '
                    'bytes; the file is truncated or corrupt.')
  return np.frombuffer(body, np.uint8).reshape(shape)


def _load_local_mnist(data_dir: str) -> ImageDataset:
  arrays = {key: read_idx(os.path.join(data_dir, fname))
            for key, fname in MNIST_FILES.items()}
  return ImageDataset(
      'mnist',
      train_images=arrays['train_images'][..., None],
      train_labels=arrays['train_labels'].astype(np.int32),
      test_images=arrays['test_images'][..., None],
      test_labels=arrays['test_labels'].astype(np.int32),
      num_classes=10)


def _decode_cifar_zip(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  _require(path, f'the CIFAR-10 JPEG zip ({CIFAR10_ZIP})')
  try:
    archive = zipfile.ZipFile(path)
  except zipfile.BadZipFile as e:
    raise DataError(f'{path!r} is not a valid zip file ({e}).') from e
  class_index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
  out = {}
  with archive:
    names = sorted(n for n in archive.namelist() if n.endswith('.jpg'))
    for split in ('train', 'test'):
      members = [n for n in names if n.split('/')[-3:-2] == [split]]
      if not members:
        raise DataError(f'{path!r} has no {split}/<class>/*.jpg images.')
      images = np.empty((len(members), 32, 32, 3), np.uint8)
      labels = np.empty((len(members),), np.int32)
      for i, member in enumerate(members):
        cls = member.split('/')[-2]
        if cls not in class_index:
          raise DataError(f'{path!r}: unknown class folder {cls!r} in '
                          f'{member!r}.')
        with Image.open(io.BytesIO(archive.read(member))) as img:
          images[i] = np.asarray(img.convert('RGB'))
        labels[i] = class_index[cls]
      out[split] = (images, labels)
  return out


def _load_local_cifar10(data_dir: str) -> ImageDataset:
  """Decodes the JPEG zip once per machine and caches the arrays.

  The cache is an .npz in ``$LAYERLR_CACHE`` (default
  ``~/.cache/layerlr_optax``), keyed by the zip's path, size and mtime, so the
  60k JPEGs are decoded once, not per run or epoch. The zip is never written.
  """
  path = os.path.join(data_dir, CIFAR10_ZIP)
  _require(path, f'the CIFAR-10 JPEG zip ({CIFAR10_ZIP})')
  stat = os.stat(path)
  key = hashlib.sha256(
      f'{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}'.encode()
  ).hexdigest()[:16]
  cache_dir = os.environ.get(
      'LAYERLR_CACHE', os.path.join(os.path.expanduser('~'), '.cache',
                                    'layerlr_optax'))
  cache = os.path.join(cache_dir, f'cifar10-jpeg-{key}.npz')
  if os.path.isfile(cache):
    with np.load(cache) as f:
      arrays = {k: f[k] for k in f.files}
  else:
    decoded = _decode_cifar_zip(path)
    arrays = {'train_images': decoded['train'][0],
              'train_labels': decoded['train'][1],
              'test_images': decoded['test'][0],
              'test_labels': decoded['test'][1]}
    os.makedirs(cache_dir, exist_ok=True)
    tmp = cache + f'.tmp{os.getpid()}.npz'
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
  return ImageDataset('cifar10', num_classes=10, **arrays)
