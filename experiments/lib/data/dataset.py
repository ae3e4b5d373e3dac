"""What every source returns: an `ImageDataset`, or a `DataError`."""

from __future__ import annotations

import dataclasses
import re

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
IDX_NAME = re.compile(
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
