"""ImageNet through TFDS and tf.data, with Caffe's AlexNet transform."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from experiments.lib.data.batches import Batch, RowsOf, batch_sizes_of, real_rows
from experiments.lib.data.dataset import DataError


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
    return batch_sizes_of(self.num_examples, self.batch_size)

  def batches(self, rows_of: RowsOf | None = None) -> Iterator[Batch]:
    """Every batch of the split; with `rows_of`, only this process's rows,
    selected by position before decoding (a process decodes only what it
    evaluates)."""
    tf = _tf()
    sizes = self.batch_sizes()
    if not sizes:
      return
    full_rows = real_rows(rows_of, sizes[0])
    last_rows = real_rows(rows_of, sizes[-1])
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
