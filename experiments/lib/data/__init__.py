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

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable
from typing import Any

from experiments.lib import models
from experiments.lib.data.batches import (Batch, InMemoryEval, InMemoryTrain,
                                          RowsOf, SyntheticEval,
                                          SyntheticTrain, epoch_orders)
from experiments.lib.data.dataset import (CIFAR10_CLASSES, CIFAR10_ZIP,
                                          MNIST_FILES, MNIST_SHA256, SOURCES,
                                          DataError, ImageDataset)
from experiments.lib.data.imagenet import (IMAGENET_CROP, IMAGENET_RESIZE,
                                           ImageNetEval, ImageNetTrain)
from experiments.lib.data.local import (read_bytes, load_local_cifar10,
                                        load_local_mnist, mnist_files,
                                        read_idx)
from experiments.lib.data.tfds_source import load_tfds

__all__ = ('Batch', 'CIFAR10_CLASSES', 'CIFAR10_ZIP', 'DataError',
           'IMAGENET_CROP', 'IMAGENET_RESIZE', 'ImageDataset', 'ImageNetEval',
           'ImageNetTrain', 'InMemoryEval', 'InMemoryTrain', 'MNIST_FILES',
           'MNIST_SHA256', 'Pipeline', 'RowsOf', 'SOURCES', 'SyntheticEval',
           'SyntheticTrain', 'epoch_orders', 'identity', 'load',
           'make_pipeline', 'mnist_files', 'read_idx')


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
  loaders = {'mnist': load_local_mnist, 'cifar10': load_local_cifar10}
  if name not in loaders:
    raise DataError(f'unknown dataset {name!r}; expected one of '
                     f'{sorted(loaders)}.')
  if source == 'tfds':
    return load_tfds(name, data_dir)
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
  return hashlib.sha256(read_bytes(path)).hexdigest()


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
