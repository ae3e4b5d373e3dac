"""Data for the experiments: every dataset and source in one module.

A *source* is where data comes from (``config.data_source``):
- ``tfds`` (the default, what users with internet have): TFDS ``mnist``,
  ``cifar10`` and ``imagenet2012``;
- ``local``: the standard files on disk, used offline and by the tests (the
  four MNIST IDX ``.gz`` files of any MNIST-format dataset, or
  ``cifar10-jpeg.zip``);
- ``synthetic``: random images, for throughput (ImageNet-shaped).

Every source gives the same uint8 NHWC images and int32 labels; the
model-specific preprocessing (Caffe's input scaling or mean subtraction)
happens afterwards, identically for every source, inside the jitted step.
Every failure to find or read data is a `DataError`.

`make_pipeline(config)` returns the `Pipeline` of an experiment: its training
batches (``train.batches(seed, start, stop)``: the same seed and step always
give the same batch, so a run resumed at step k sees exactly the batches an
uninterrupted run sees), its evaluation batches (``eval.batches()``, the
split in batches of ``eval.batch_size``, the last one shorter:
``eval.batch_sizes()``), input shape, number of classes and preprocessing.

In a multi-process run each process reads only its rows of every batch:
``train.batches(..., rows=(lo, hi))`` and ``eval.batches(rows_of)``, where
``rows_of(n)`` is the process's ``[lo, hi)`` of a batch of ``n`` examples
padded to the device count (rows past ``n`` are padding the caller adds).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import struct
import zipfile

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

# The sources of MNIST and CIFAR-10 (ImageNet: tfds or synthetic).
SOURCES = ('tfds', 'local')
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')
MNIST_FILES = {
    'train_images': 'train-images-idx3-ubyte.gz',
    'train_labels': 'train-labels-idx1-ubyte.gz',
    'test_images': 't10k-images-idx3-ubyte.gz',
    'test_labels': 't10k-labels-idx1-ubyte.gz',
}
# MNIST-format datasets name their files the same way, some with a prefix
# (EMNIST: 'emnist-balanced-train-images-idx3-ubyte.gz'), some with a dot
# ('train-images.idx3-ubyte'), some uncompressed.
_IDX_NAME = re.compile(
    r'^(?P<prefix>.*?)(?P<split>train|t10k|test)-(?P<kind>images|labels)'
    r'[-.]idx(?P<ndim>[13])-ubyte(?P<gz>\.gz)?$')
CIFAR10_ZIP = 'cifar10-jpeg.zip'
# SHA-256 of the *decompressed* IDX files of the original MNIST release (the
# .gz wrappers vary with the compressor; the bytes inside do not). A local
# directory whose files hash to these holds the paper's data.
MNIST_SHA256 = {
    'train_images':
        'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db',
    'train_labels':
        '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5',
    'test_images':
        '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7',
    'test_labels':
        'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2',
}


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
    raise DataError(f'data_source={source!r}; expected one of {SOURCES}.')
  loaders = {'mnist': _load_local_mnist, 'cifar10': _load_local_cifar10}
  if name not in loaders:
    raise DataError(f'unknown dataset {name!r}; expected one of '
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


def identity(config) -> dict:
  """What data an experiment ran on, and whether it is the paper's.

  ``paper_data`` is True for TFDS's ``mnist``/``cifar10``/``imagenet2012``
  (the standard releases) and for a local MNIST directory whose decompressed
  files have the original release's SHA-256 (`MNIST_SHA256`); False for any
  other local data (another MNIST-format dataset, the JPEG copy of CIFAR-10)
  and synthetic data. Reports compare with the paper's numbers only when it
  is True.
  """
  info = {'dataset': config.dataset, 'source': config.data_source,
          'sha256': None, 'paper_data': False}
  if config.data_source == 'tfds':
    info['paper_data'] = True
  elif config.data_source == 'local' and config.dataset == 'mnist':
    digests = {}
    for key, path in mnist_files(config.data_dir).items():
      stat = os.stat(path)
      digests[key] = _content_sha256(os.path.abspath(path), stat.st_size,
                                     stat.st_mtime_ns)
    info['sha256'] = digests
    info['paper_data'] = digests == MNIST_SHA256
  return info


@functools.lru_cache(maxsize=16)
def _content_sha256(path: str, size: int, mtime_ns: int) -> str:
  """SHA-256 of an IDX file's (decompressed) bytes, once per file version
  and process (a sweep asks after every wave)."""
  del size, mtime_ns  # part of the cache key only
  return hashlib.sha256(_read_bytes(path)).hexdigest()


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


def _load_tfds(name: str, data_dir: str | None) -> ImageDataset:
  import tensorflow_datasets as tfds
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


def _require(path: str, what: str) -> None:
  if not os.path.isfile(path):
    raise DataError(f'expected {what} at {path!r}, but there is no such file. '
                    'Point --config.data_dir at the folder that holds it, or '
                    'use --config.data_source=tfds.')


def mnist_files(data_dir: str) -> dict[str, str]:
  """The paths of the four IDX files of the MNIST-format dataset in
  `data_dir` (keys as `MNIST_FILES`).

  MNIST's own names, or the same names with a common prefix
  (``emnist-letters-train-images-idx3-ubyte.gz``), ``.idx3`` for ``-idx3``,
  ``test`` for ``t10k``, gzip-compressed or not. A folder holding several
  such datasets (several prefixes) is refused: which one is meant is not
  for us to guess.
  """
  if not os.path.isdir(data_dir):
    raise DataError(f'--config.data_dir {data_dir!r} is not a folder; it '
                    'must hold the four MNIST-format IDX files '
                    f'({", ".join(MNIST_FILES.values())}).')
  found: dict[str, dict[str, list[str]]] = {}
  for name in sorted(os.listdir(data_dir)):
    match = _IDX_NAME.match(name)
    if not match or (match['kind'] == 'images') != (match['ndim'] == '3'):
      continue
    key = ('train' if match['split'] == 'train' else 'test') + '_' + match[
        'kind']
    found.setdefault(match['prefix'], {}).setdefault(key, []).append(name)
  complete = {prefix: files for prefix, files in found.items()
              if set(files) == set(MNIST_FILES)}
  if not complete:
    have = sorted(n for files in found.values() for names in files.values()
                  for n in names)
    raise DataError(
        f'expected the four MNIST-format IDX files in {data_dir!r} '
        f'({", ".join(MNIST_FILES.values())}; a common prefix, .idx3 or no '
        f'.gz are fine), but found {have or "none of them"}. Point '
        '--config.data_dir at the folder that holds them, or use '
        '--config.data_source=tfds.')
  if len(complete) > 1:
    raise DataError(
        f'{data_dir!r} holds several MNIST-format datasets (file prefixes '
        f'{sorted(complete)}); point --config.data_dir at a folder with '
        'just one (e.g. a new folder with links to its four files).')
  (files,) = complete.values()
  for key, names in files.items():
    # A file next to its own .gz (torchvision keeps both) is the same data.
    names = [n for n in names if f'{n}.gz' not in names]
    if len(names) > 1:
      raise DataError(f'{data_dir!r} holds {names} for the same file; keep '
                      'one of them.')
    files[key] = names
  return {key: os.path.join(data_dir, files[key][0]) for key in MNIST_FILES}


def _read_bytes(path: str) -> bytes:
  """A file's bytes, decompressed if its name ends in .gz."""
  _require(path, 'an MNIST-format IDX file')
  try:
    if path.endswith('.gz'):
      with gzip.open(path, 'rb') as f:
        return f.read()
    with open(path, 'rb') as f:
      return f.read()
  except (OSError, EOFError) as e:
    raise DataError(f'{path!r} is not a readable gzip file ({e}).' if
                    path.endswith('.gz') else f'{path!r}: {e}') from e


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (the MNIST format; gzip-compressed if its name ends
  in .gz) into a uint8 array."""
  data = _read_bytes(path)
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
  """Any MNIST-format dataset: grey images of any size, as many classes as
  its largest label + 1 (EMNIST letters, labelled 1-26, gets an unused
  class 0)."""
  arrays = {key: read_idx(path) for key, path in mnist_files(data_dir).items()}
  for split in ('train', 'test'):
    images, labels = arrays[f'{split}_images'], arrays[f'{split}_labels']
    if images.ndim != 3 or labels.ndim != 1:
      raise DataError(
          f'{data_dir!r}: the {split} IDX files hold arrays of shape '
          f'{images.shape} and {labels.shape}; expected (N, height, width) '
          'images and (N,) labels.')
  num_classes = int(max(arrays['train_labels'].max(initial=0),
                        arrays['test_labels'].max(initial=0))) + 1
  return ImageDataset(
      'mnist',
      train_images=arrays['train_images'][..., None],
      train_labels=arrays['train_labels'].astype(np.int32),
      test_images=arrays['test_images'][..., None],
      test_labels=arrays['test_labels'].astype(np.int32),
      num_classes=num_classes)


def _decode_cifar_zip(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  from PIL import Image
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
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    from experiments import records
    records.write_atomic(cache, buffer.getvalue())
  return ImageDataset('cifar10', num_classes=10, **arrays)


# Batches --------------------------------------------------------------------
#
# A train-batches object yields ``(images uint8 NHWC, labels int32)`` numpy
# batches for steps ``[start, stop)`` of a run with a given seed,
# reproducibly (``rows=(lo, hi)``: only those rows of every global batch, the
# part one process of a multi-process run loads); an eval-batches object
# yields the evaluation split in order.
# - `InMemoryTrain` / `InMemoryEval`: MNIST and CIFAR-10, a fresh shuffle
#   every epoch from the seed.
# - `ImageNetTrain` / `ImageNetEval`: TFDS imagenet2012 through tf.data
#   (parallel JPEG decoding and cropping on the host CPUs, prefetching),
#   Caffe's AlexNet transform: resize to 256x256, random 227 crop + mirror for
#   training, centre crop for validation. tf.data rather than grain over
#   ``tfds.data_source``: it needs no array_record re-preparation of a
#   manually downloaded ILSVRC-2012, and its C++ decode/crop keeps a GPU fed
#   with a few host cores.
# - `SyntheticTrain` / `SyntheticEval`: random images, for throughput.

Batch = tuple[np.ndarray, np.ndarray]


def epoch_orders(seed: int, num_examples: int, num_steps: int,
                 batch_size: int) -> np.ndarray:
  """(num_steps, batch_size) example indices: a fresh shuffle every epoch."""
  rng = np.random.default_rng(seed)
  needed = num_steps * batch_size
  chunks = [rng.permutation(num_examples)
            for _ in range(-(-needed // num_examples))]
  return np.concatenate(chunks)[:needed].reshape(num_steps, batch_size)


class InMemoryTrain:
  """Shuffled batches of an in-memory dataset."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int):
    self.images, self.labels, self.batch_size = images, labels, batch_size

  def batches(self, seed: int, start: int, stop: int,
              rows: tuple[int, int] | None = None) -> Iterator[Batch]:
    orders = epoch_orders(seed, len(self.labels), stop, self.batch_size)
    if rows is not None:
      orders = orders[:, rows[0]:rows[1]]
    for idx in orders[start:stop]:
      yield self.images[idx], self.labels[idx]


RowsOf = Callable[[int], tuple[int, int]]


def _batch_sizes(num_examples: int, batch_size: int) -> list[int]:
  return [min(batch_size, num_examples - start)
          for start in range(0, num_examples, batch_size)]


def _real_rows(rows_of: RowsOf | None, size: int) -> tuple[int, int]:
  """This process's rows of a batch of `size` examples that hold data (the
  rest of its rows, if any, are padding)."""
  if rows_of is None:
    return 0, size
  lo, hi = rows_of(size)
  return min(lo, size), min(hi, size)


class InMemoryEval:
  """The evaluation split in order, or a fixed random subset of
  `max_examples` of it (seed 0, kept in split order): not the first ones,
  which in a split stored by class (the local CIFAR-10 zip; any IDX folder
  a user brings may be) would all be of one class."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
               max_examples: int | None = None):
    if max_examples and max_examples < len(labels):
      subset = np.sort(np.random.default_rng(0).choice(
          len(labels), max_examples, replace=False))
      images, labels = images[subset], labels[subset]
    self.images, self.labels, self.batch_size = images, labels, batch_size
    self.num_examples = len(labels)

  def batch_sizes(self) -> list[int]:
    return _batch_sizes(self.num_examples, self.batch_size)

  def batches(self, rows_of: RowsOf | None = None) -> Iterator[Batch]:
    """Every batch of the split; with `rows_of`, only this process's rows."""
    for start, size in zip(range(0, self.num_examples, self.batch_size),
                           self.batch_sizes()):
      lo, hi = _real_rows(rows_of, size)
      yield (self.images[start + lo:start + hi],
             self.labels[start + lo:start + hi])


class SyntheticTrain:
  """Random uint8 images (fixed per step), no decoding: model throughput."""

  def __init__(self, shape: tuple[int, int, int], num_classes: int,
               batch_size: int):
    self.shape, self.num_classes, self.batch_size = shape, num_classes, batch_size

  def batches(self, seed: int, start: int, stop: int,
              rows: tuple[int, int] | None = None) -> Iterator[Batch]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (self.batch_size, *self.shape), np.uint8)
    labels = rng.integers(0, self.num_classes, self.batch_size).astype(np.int32)
    if rows is not None:
      images, labels = images[rows[0]:rows[1]], labels[rows[0]:rows[1]]
    for _ in range(start, stop):
      yield images, labels


class SyntheticEval(InMemoryEval):

  def __init__(self, shape, num_classes: int, num_examples: int,
               batch_size: int):
    rng = np.random.default_rng(12345)
    super().__init__(
        rng.integers(0, 256, (num_examples, *shape), np.uint8),
        rng.integers(0, num_classes, num_examples).astype(np.int32),
        batch_size)


# ImageNet (tf.data) ----------------------------------------------------------

IMAGENET_RESIZE = 256
IMAGENET_CROP = 227


def _tf():
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; JAX owns the GPU.
  return tf


def _decode_resize(tf, encoded):
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.image.resize(image, (IMAGENET_RESIZE, IMAGENET_RESIZE),
                          method='bilinear', antialias=False)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _load_imagenet(split: str, data_dir: str | None, seed: int | None):
  import tensorflow_datasets as tfds
  read_config = tfds.ReadConfig(shuffle_seed=seed) if seed is not None else None
  try:
    return tfds.load('imagenet2012', split=split, data_dir=data_dir,
                     shuffle_files=seed is not None, read_config=read_config,
                     decoders={'image': tfds.decode.SkipDecoding()})
  except Exception as e:  # TFDS raises several types for missing files.
    raise DataError(
        f'TFDS could not load imagenet2012/{split} ({type(e).__name__}: {e}).'
        ' ILSVRC-2012 must be downloaded by hand into TFDS\'s manual dir '
        '(<data_dir>/downloads/manual/: ILSVRC2012_img_train.tar and '
        'ILSVRC2012_img_val.tar) and prepared once; or use '
        '--config.data_source=synthetic for throughput.') from e


class ImageNetTrain:
  """Caffe's AlexNet training transform on TFDS imagenet2012, reproducibly.

  Random crops and mirrors are stateless functions of (seed, example index),
  and the shuffle is seeded, so a resumed run skips the records it already
  consumed (before decoding them) and continues on the same batches.
  """

  def __init__(self, data_dir: str | None, batch_size: int,
               shuffle_buffer: int = 16_384):
    self.data_dir, self.batch_size = data_dir, batch_size
    self.shuffle_buffer = shuffle_buffer

  def batches(self, seed: int, start: int, stop: int,
              rows: tuple[int, int] | None = None) -> Iterator[Batch]:
    tf = _tf()
    ds = _load_imagenet('train', self.data_dir, seed)
    ds = ds.repeat().shuffle(self.shuffle_buffer, seed=seed,
                             reshuffle_each_iteration=True)
    ds = ds.enumerate().skip(start * self.batch_size)
    local_batch = self.batch_size
    if rows is not None:
      # This process decodes only its rows of each global batch: the
      # records' positions in the (identical) shuffled stream say which.
      lo, hi = rows
      local_batch = hi - lo
      ds = ds.filter(lambda index, _: tf.logical_and(
          index % self.batch_size >= lo, index % self.batch_size < hi))

    def transform(index, example):
      image = _decode_resize(tf, example['image'])
      key = tf.stack([tf.cast(seed, tf.int64), index])
      offsets = tf.random.stateless_uniform(
          [2], key, 0, IMAGENET_RESIZE - IMAGENET_CROP + 1, dtype=tf.int32)
      image = tf.image.crop_to_bounding_box(image, offsets[0], offsets[1],
                                            IMAGENET_CROP, IMAGENET_CROP)
      image = tf.image.stateless_random_flip_left_right(image, key + 1)
      return image, tf.cast(example['label'], tf.int32)

    options = tf.data.Options()
    options.deterministic = True
    ds = (ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
          .batch(local_batch, drop_remainder=True)
          .take(stop - start).prefetch(tf.data.AUTOTUNE)
          .with_options(options))
    yield from ds.as_numpy_iterator()


class ImageNetEval:
  """The 50k validation split, centre 227 crops of 256x256 resizes."""

  def __init__(self, data_dir: str | None, batch_size: int,
               max_examples: int | None = None):
    self.data_dir, self.batch_size = data_dir, batch_size
    self.max_examples = max_examples
    self._num_examples = None

  def _records(self):
    ds = _load_imagenet('validation', self.data_dir, None)
    return ds.take(self.max_examples) if self.max_examples else ds

  @property
  def num_examples(self) -> int:
    if self._num_examples is None:
      ds = self._records()
      count = int(ds.cardinality())
      if count < 0:  # unknown: count the (undecoded) records once
        count = int(ds.reduce(0, lambda n, _: n + 1))
      self._num_examples = count
    return self._num_examples

  def batch_sizes(self) -> list[int]:
    return _batch_sizes(self.num_examples, self.batch_size)

  def batches(self, rows_of: RowsOf | None = None) -> Iterator[Batch]:
    """Every batch of the split; with `rows_of`, only this process's rows,
    selected by position before decoding (a process decodes only what it
    evaluates)."""
    tf = _tf()
    sizes = self.batch_sizes()
    if not sizes:
      return
    full_rows = _real_rows(rows_of, sizes[0])
    last_rows = _real_rows(rows_of, sizes[-1])
    # Only the last batch can be shorter, so two row ranges say it all.
    full_batches = (len(sizes) - 1 if sizes[-1] < self.batch_size
                    else len(sizes))
    margin = (IMAGENET_RESIZE - IMAGENET_CROP) // 2

    def mine(index, _):
      position = index % self.batch_size
      in_full = index // self.batch_size < full_batches
      lo = tf.where(in_full, tf.constant(full_rows[0], tf.int64),
                    tf.constant(last_rows[0], tf.int64))
      hi = tf.where(in_full, tf.constant(full_rows[1], tf.int64),
                    tf.constant(last_rows[1], tf.int64))
      return tf.logical_and(position >= lo, position < hi)

    def transform(_, example):
      image = _decode_resize(tf, example['image'])
      image = tf.image.crop_to_bounding_box(image, margin, margin,
                                            IMAGENET_CROP, IMAGENET_CROP)
      return image, tf.cast(example['label'], tf.int32)

    ds = self._records().enumerate()
    if rows_of is not None:
      ds = ds.filter(mine)
    examples = (ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE).as_numpy_iterator())
    for i in range(len(sizes)):
      lo, hi = full_rows if i < full_batches else last_rows
      batch = [next(examples) for _ in range(hi - lo)]
      if not batch:  # this process holds only padding rows of this batch
        yield (np.zeros((0, IMAGENET_CROP, IMAGENET_CROP, 3), np.uint8),
               np.zeros((0,), np.int32))
        continue
      yield (np.stack([image for image, _ in batch]),
             np.array([label for _, label in batch], np.int32))


# The pipeline of an experiment ---------------------------------------------

@dataclasses.dataclass(frozen=True)
class Pipeline:
  """Train and eval batches, input shape, classes and preprocessing."""
  train: Any
  eval: Any
  input_shape: tuple[int, ...]
  num_classes: int
  preprocess: Callable[[Any], Any]


def make_pipeline(config) -> Pipeline:
  """The `Pipeline` of `config` (dataset, data_source, data_dir, batch sizes,
  max_eval_examples, preprocess)."""
  from experiments import models
  batch, eval_batch = config.batch_size, config.eval_batch_size
  max_eval = config.get('max_eval_examples', 0) or None
  if config.dataset == 'imagenet2012':
    shape = (IMAGENET_CROP,) * 2 + (3,)
    if config.data_source == 'synthetic':
      train = SyntheticTrain(shape, 1000, batch)
      evaluation = SyntheticEval(shape, 1000, max_eval or eval_batch,
                                 eval_batch)
    elif config.data_source == 'tfds':
      train = ImageNetTrain(config.data_dir or None, batch)
      evaluation = ImageNetEval(config.data_dir or None, eval_batch, max_eval)
    else:
      raise DataError('imagenet2012 reads from data_source=tfds (the '
                      'manually downloaded ILSVRC-2012) or synthetic.')
    return Pipeline(train, evaluation, shape, 1000,
                    models.make_preprocess(config.preprocess, None))
  if config.data_source == 'synthetic':
    raise DataError('data_source=synthetic is for imagenet2012 only.')
  dataset = load(config.dataset, config.data_source, config.data_dir or None)
  return Pipeline(
      InMemoryTrain(dataset.train_images, dataset.train_labels, batch),
      InMemoryEval(dataset.test_images, dataset.test_labels, eval_batch,
                   max_eval),
      dataset.train_images.shape[1:], dataset.num_classes,
      models.make_preprocess(config.preprocess, dataset.train_images))
