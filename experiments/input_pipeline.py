"""Batches for training and evaluation: one interface for every experiment.

A *train source* yields ``(images uint8 NHWC, labels int32)`` numpy batches
for steps ``[start, stop)`` of a run with a given seed, reproducibly: the same
seed and step always give the same batch, so a run resumed from a checkpoint
at step k sees exactly the batches an uninterrupted run sees. An *eval
source* yields the whole evaluation split in batches.

- `InMemoryTrain` / `InMemoryEval`: MNIST and CIFAR-10 (TFDS or local files,
  see experiments/data.py), a fresh shuffle every epoch from the seed.
- `ImageNetTrain` / `ImageNetEval`: TFDS ``imagenet2012`` through tf.data
  (parallel JPEG decoding and cropping on the host CPUs, prefetching), Caffe's
  AlexNet transform: resize to 256x256, random 227 crop + mirror for
  training, centre crop for validation.
- `SyntheticTrain` / `SyntheticEval`: random images, for throughput.

tf.data is used for ImageNet rather than grain over ``tfds.data_source``
because it needs no array_record re-preparation of a manually downloaded
ILSVRC-2012 and its C++ decode/crop keeps a GPU fed with a few host cores.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

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

  def batches(self, seed: int, start: int, stop: int) -> Iterator[Batch]:
    orders = epoch_orders(seed, len(self.labels), stop, self.batch_size)
    for idx in orders[start:stop]:
      yield self.images[idx], self.labels[idx]


class InMemoryEval:
  """The evaluation split in order (the first `max_examples` if given)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
               max_examples: int | None = None):
    if max_examples:
      images, labels = images[:max_examples], labels[:max_examples]
    self.images, self.labels, self.batch_size = images, labels, batch_size
    self.num_examples = len(labels)

  def batches(self) -> Iterator[Batch]:
    for start in range(0, self.num_examples, self.batch_size):
      yield (self.images[start:start + self.batch_size],
             self.labels[start:start + self.batch_size])


class SyntheticTrain:
  """Random uint8 images (fixed per step), no decoding: model throughput."""

  def __init__(self, shape: tuple[int, int, int], num_classes: int,
               batch_size: int):
    self.shape, self.num_classes, self.batch_size = shape, num_classes, batch_size

  def batches(self, seed: int, start: int, stop: int) -> Iterator[Batch]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (self.batch_size, *self.shape), np.uint8)
    labels = rng.integers(0, self.num_classes, self.batch_size).astype(np.int32)
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
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; JAX owns the GPU.
  return tf


def _decode_resize(tf, encoded):
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.image.resize(image, (IMAGENET_RESIZE, IMAGENET_RESIZE),
                          method='bilinear', antialias=False)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _load_imagenet(split: str, data_dir: str | None, seed: int | None):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  read_config = tfds.ReadConfig(shuffle_seed=seed) if seed is not None else None
  try:
    return tfds.load('imagenet2012', split=split, data_dir=data_dir,
                     shuffle_files=seed is not None, read_config=read_config,
                     decoders={'image': tfds.decode.SkipDecoding()})
  except Exception as e:  # TFDS raises several types for missing files.
    raise RuntimeError(
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

  def batches(self, seed: int, start: int, stop: int) -> Iterator[Batch]:
    tf = _tf()
    ds = _load_imagenet('train', self.data_dir, seed)
    ds = ds.repeat().shuffle(self.shuffle_buffer, seed=seed,
                             reshuffle_each_iteration=True)
    ds = ds.enumerate().skip(start * self.batch_size)

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
          .batch(self.batch_size, drop_remainder=True)
          .take(stop - start).prefetch(tf.data.AUTOTUNE)
          .with_options(options))
    yield from ds.as_numpy_iterator()


class ImageNetEval:
  """The 50k validation split, centre 227 crops of 256x256 resizes."""

  def __init__(self, data_dir: str | None, batch_size: int,
               max_examples: int | None = None):
    self.data_dir, self.batch_size = data_dir, batch_size
    self.max_examples = max_examples

  def batches(self) -> Iterator[Batch]:
    tf = _tf()
    ds = _load_imagenet('validation', self.data_dir, None)
    if self.max_examples:
      ds = ds.take(self.max_examples)
    margin = (IMAGENET_RESIZE - IMAGENET_CROP) // 2

    def transform(example):
      image = _decode_resize(tf, example['image'])
      image = tf.image.crop_to_bounding_box(image, margin, margin,
                                            IMAGENET_CROP, IMAGENET_CROP)
      return image, tf.cast(example['label'], tf.int32)

    ds = (ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
          .batch(self.batch_size).prefetch(tf.data.AUTOTUNE))
    yield from ds.as_numpy_iterator()
