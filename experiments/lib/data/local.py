"""The local-file source: MNIST-format IDX folders and the CIFAR-10 JPEG zip."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import zipfile

import numpy as np

from experiments.lib import fileio
from experiments.lib.data.dataset import (CIFAR10_CLASSES, CIFAR10_ZIP, DataError,
                                          ImageDataset, MNIST_FILES,
                                          IDX_NAME)


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
    match = IDX_NAME.match(name)
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


def read_bytes(path: str) -> bytes:
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
  data = read_bytes(path)
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


def load_local_mnist(data_dir: str) -> ImageDataset:
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


def load_local_cifar10(data_dir: str) -> ImageDataset:
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
    fileio.write_atomic(cache, buffer.getvalue())
  return ImageDataset('cifar10', num_classes=10, **arrays)
