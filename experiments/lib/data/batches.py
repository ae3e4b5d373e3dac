"""In-memory and synthetic batches, a function of (seed, step)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


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


def batch_sizes_of(num_examples: int, batch_size: int) -> list[int]:
  return [min(batch_size, num_examples - start)
          for start in range(0, num_examples, batch_size)]


def real_rows(rows_of: RowsOf | None, size: int) -> tuple[int, int]:
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
    return batch_sizes_of(self.num_examples, self.batch_size)

  def batches(self, rows_of: RowsOf | None = None) -> Iterator[Batch]:
    """Every batch of the split; with `rows_of`, only this process's rows."""
    for start, size in zip(range(0, self.num_examples, self.batch_size),
                           self.batch_sizes()):
      lo, hi = real_rows(rows_of, size)
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
