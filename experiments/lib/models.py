"""The paper's networks in Flax linen, as Caffe's published prototxts define them.

Layer names follow the prototxts (conv1, ip1, ...) so that a layer of the
paper is a Flax module and `layerlr_optax`'s default ``layers='module'`` groups
each layer's weights and biases together.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Caffe's "xavier" filler: uniform in [-a, a], a = sqrt(3 / fan_in).
caffe_xavier = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')


def caffe_gaussian(std: float):
  return nn.initializers.normal(stddev=std)


def caffe_pool(x: jax.Array, kind: str, size: int, stride: int,
               pad: int = 0) -> jax.Array:
  """Caffe pooling (NHWC): output ceil((H + 2 pad - size) / stride) + 1.

  Caffe rounds up, so the last window may hang over the bottom/right edge.
  MAX ignores the overhang; AVE divides by the number of cells of the window
  inside the padded input (with pad=0: the valid cells), as Caffe does.
  """
  if kind not in ('max', 'avg'):
    raise ValueError(f'pooling kind must be max or avg, got {kind!r}.')
  extents = []
  for dim in x.shape[1:3]:
    out = int(math.ceil((dim + 2 * pad - size) / stride)) + 1
    if pad and (out - 1) * stride >= dim + pad:
      out -= 1  # Caffe: the last window must start inside the image.
    extents.append(out)
  pads = [(pad, (o - 1) * stride + size - d - pad)
          for o, d in zip(extents, x.shape[1:3])]
  window, strides = (1, size, size, 1), (1, stride, stride, 1)
  padding = ((0, 0), *pads, (0, 0))
  if kind == 'max':
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides,
                                 padding)
  summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
  # Window sizes count the symmetric `pad` cells but not the ceil overhang.
  inside = np.ones((1, x.shape[1] + 2 * pad, x.shape[2] + 2 * pad, 1),
                   np.float32)
  overhang = [(0, p[1] - pad) for p in pads]
  counts = jax.lax.reduce_window(
      jnp.asarray(inside), 0.0, jax.lax.add, window, strides,
      ((0, 0), *overhang, (0, 0)))
  return summed / counts


def caffe_lrn(x: jax.Array, local_size: int, alpha: float, beta: float,
              region: str, k: float = 1.0) -> jax.Array:
  """Caffe's LRN layer (NHWC).

  ACROSS_CHANNELS: x / (k + alpha / n * sum_{n nearby channels} x^2)^beta.
  WITHIN_CHANNEL: x / (1 + alpha * avg_{n x n window, zero padded} x^2)^beta,
  the average counting padding cells as Caffe's AVE pooling does.
  """
  sq = jnp.square(x)
  half = (local_size - 1) // 2
  if region == 'across_channels':
    summed = jax.lax.reduce_window(sq, 0.0, jax.lax.add,
                                   (1, 1, 1, local_size), (1, 1, 1, 1),
                                   ((0, 0), (0, 0), (0, 0), (half, half)))
    return x * (k + alpha / local_size * summed) ** (-beta)
  if region == 'within_channel':
    summed = jax.lax.reduce_window(sq, 0.0, jax.lax.add,
                                   (1, local_size, local_size, 1),
                                   (1, 1, 1, 1),
                                   ((0, 0), (half, half), (half, half), (0, 0)))
    return x * (1.0 + alpha * summed / local_size**2) ** (-beta)
  raise ValueError(f'unknown LRN region {region!r}.')


class LeNet(nn.Module):
  """Caffe's examples/mnist/lenet_train_test.prototxt (431,080 parameters)."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = nn.Conv(20, (5, 5), padding='VALID', kernel_init=caffe_xavier,
                name='conv1')(x)
    x = caffe_pool(x, 'max', 2, 2)
    x = nn.Conv(50, (5, 5), padding='VALID', kernel_init=caffe_xavier,
                name='conv2')(x)
    x = caffe_pool(x, 'max', 2, 2)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(500, kernel_init=caffe_xavier, name='ip1')(x))
    return nn.Dense(self.num_classes, kernel_init=caffe_xavier, name='ip2')(x)


class Cifar10Full(nn.Module):
  """Caffe's examples/cifar10/cifar10_full_train_test.prototxt (89,578 params).

  conv1 32@5x5 pad 2 -> max-pool 3/2 -> ReLU -> LRN(3, within) -> conv2 32@5x5
  pad 2 -> ReLU -> avg-pool 3/2 -> LRN(3, within) -> conv3 64@5x5 pad 2 ->
  ReLU -> avg-pool 3/2 -> ip1 10. Gaussian fillers (std 1e-4 for conv1, 1e-2
  elsewhere), zero biases.
  """
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    lrn = dict(local_size=3, alpha=5e-5, beta=0.75, region='within_channel')
    x = nn.Conv(32, (5, 5), padding=2, kernel_init=caffe_gaussian(1e-4),
                name='conv1')(x)
    x = caffe_lrn(nn.relu(caffe_pool(x, 'max', 3, 2)), **lrn)
    x = nn.Conv(32, (5, 5), padding=2, kernel_init=caffe_gaussian(1e-2),
                name='conv2')(x)
    x = caffe_lrn(caffe_pool(nn.relu(x), 'avg', 3, 2), **lrn)
    x = nn.Conv(64, (5, 5), padding=2, kernel_init=caffe_gaussian(1e-2),
                name='conv3')(x)
    x = caffe_pool(nn.relu(x), 'avg', 3, 2)
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, kernel_init=caffe_gaussian(1e-2),
                    name='ip1')(x)


class AlexNet(nn.Module):
  """Caffe's models/bvlc_alexnet/train_val.prototxt (60,965,224 params).

  conv1 96@11x11/4 -> ReLU -> LRN(5) -> max-pool 3/2 -> conv2 256@5x5 pad 2,
  2 groups -> ReLU -> LRN(5) -> max-pool 3/2 -> conv3 384@3x3 pad 1 -> ReLU ->
  conv4 384@3x3 pad 1, 2 groups -> ReLU -> conv5 256@3x3 pad 1, 2 groups ->
  ReLU -> max-pool 3/2 -> fc6 4096 -> ReLU -> dropout 0.5 -> fc7 4096 -> ReLU
  -> dropout 0.5 -> fc8. Gaussian fillers (std 0.01; 0.005 for fc6/fc7),
  biases 0 (conv1, conv3, fc8) or 0.1 (the others). Input 227x227.
  """
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x, train: bool = False):
    lrn = dict(local_size=5, alpha=1e-4, beta=0.75, region='across_channels')
    g01, g005 = caffe_gaussian(0.01), caffe_gaussian(0.005)
    b0, b1 = nn.initializers.zeros, nn.initializers.constant(0.1)

    def conv(features, size, name, stride=1, pad=0, groups=1, bias=b0):
      return nn.Conv(features, (size, size), strides=stride, padding=pad,
                     feature_group_count=groups, kernel_init=g01,
                     bias_init=bias, name=name)

    x = nn.relu(conv(96, 11, 'conv1', stride=4)(x))
    x = caffe_pool(caffe_lrn(x, **lrn), 'max', 3, 2)
    x = nn.relu(conv(256, 5, 'conv2', pad=2, groups=2, bias=b1)(x))
    x = caffe_pool(caffe_lrn(x, **lrn), 'max', 3, 2)
    x = nn.relu(conv(384, 3, 'conv3', pad=1)(x))
    x = nn.relu(conv(384, 3, 'conv4', pad=1, groups=2, bias=b1)(x))
    x = nn.relu(conv(256, 3, 'conv5', pad=1, groups=2, bias=b1)(x))
    x = caffe_pool(x, 'max', 3, 2)
    x = x.reshape((x.shape[0], -1))
    for name in ('fc6', 'fc7'):
      x = nn.relu(nn.Dense(4096, kernel_init=g005, bias_init=b1, name=name)(x))
      x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=g01, name='fc8')(x)


class DeepMLP(nn.Module):
  """A deep fully connected network: the vanishing-gradient case.

  `depth` hidden layers of `width` units (``fc1`` .. ``fcN``) with a
  saturating `activation` (sigmoid or tanh), then ``out``; Caffe's Xavier
  filler (uniform, fan-in) and zero biases. Each hidden layer is one Flax
  module, so the layer factor is per layer.
  """
  num_classes: int = 10
  depth: int = 10
  width: int = 256
  activation: str = 'sigmoid'

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    act = {'sigmoid': nn.sigmoid, 'tanh': nn.tanh}[self.activation]
    x = x.reshape((x.shape[0], -1))
    for i in range(self.depth):
      x = act(nn.Dense(self.width, kernel_init=caffe_xavier,
                       name=f'fc{i + 1}')(x))
    return nn.Dense(self.num_classes, kernel_init=caffe_xavier,
                    name='out')(x)


def _pre_ln_block(h: jax.Array, width: int, heads: int,
                  prefix: str = '') -> jax.Array:
  """LayerNorm -> self-attention -> residual, LayerNorm -> MLP (4x, GELU)
  -> residual; its modules are created in the calling compact module, named
  `prefix` + ln1, attention, ln2, mlp_in, mlp_out."""
  y = nn.LayerNorm(name=f'{prefix}ln1')(h)
  y = nn.MultiHeadDotProductAttention(
      num_heads=heads, kernel_init=caffe_xavier,
      name=f'{prefix}attention')(y, y)
  h = h + y
  y = nn.LayerNorm(name=f'{prefix}ln2')(h)
  y = nn.gelu(nn.Dense(4 * width, kernel_init=caffe_xavier,
                       name=f'{prefix}mlp_in')(y))
  return h + nn.Dense(width, kernel_init=caffe_xavier,
                      name=f'{prefix}mlp_out')(y)


class RowTransformer(nn.Module):
  """A small pre-LayerNorm transformer reading an image row by row.

  Each of the H rows (W x C values) is a token: a Dense embedding to
  `width`, learned position embeddings, `depth` blocks of LayerNorm ->
  multi-head self-attention -> residual, LayerNorm -> MLP (4x, GELU) ->
  residual, then LayerNorm, mean over tokens and a Dense head. The reviewer's
  workload with normalisation layers: every LayerNorm scale/bias is its own
  Flax module (so its own "layer" for the factor, and a natural candidate
  for ``exclude=``).

  With ``scan=True`` the blocks are one ``nn.scan`` over a stacked block
  (parameters under ``blocks/``, each with a leading axis of size `depth`),
  as large models are written: from the same parameters (the unrolled
  ``block{i}_*`` stacked) it computes the same function; its own
  initialisation draws other values from the same distributions.
  """
  num_classes: int = 10
  depth: int = 2
  width: int = 64
  heads: int = 4
  scan: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    tokens = x.reshape((x.shape[0], x.shape[1], -1))
    h = nn.Dense(self.width, kernel_init=caffe_xavier, name='embed')(tokens)
    position = self.param('position', nn.initializers.normal(0.02),
                          (tokens.shape[1], self.width))
    h = h + position
    if self.scan:
      blocks = nn.scan(_ScannedBlock, variable_axes={'params': 0},
                       split_rngs={'params': True}, length=self.depth)
      h, _ = blocks(self.width, self.heads, name='blocks')(h, None)
    else:
      for i in range(self.depth):
        h = _pre_ln_block(h, self.width, self.heads, prefix=f'block{i}_')
    h = nn.LayerNorm(name='final_ln')(h).mean(axis=1)
    return nn.Dense(self.num_classes, kernel_init=caffe_xavier,
                    name='head')(h)


class _ScannedBlock(nn.Module):
  """One pre-LN block as `nn.scan` needs it: (carry, x) -> (carry, y)."""
  width: int
  heads: int

  @nn.compact
  def __call__(self, h, _):
    return _pre_ln_block(h, self.width, self.heads), None


def _deep_mlp(depth: int, activation: str):
  return lambda num_classes: DeepMLP(num_classes=num_classes, depth=depth,
                                     activation=activation)


MODELS: dict[str, Callable[..., nn.Module]] = {
    'lenet': LeNet,
    'cifar10_full': Cifar10Full,
    'alexnet': AlexNet,
    **{f'mlp{depth}_{act}': _deep_mlp(depth, act)
       for depth in (5, 10, 20) for act in ('sigmoid', 'tanh')},
    'row_transformer': RowTransformer,
    'row_transformer_scan': lambda num_classes: RowTransformer(
        num_classes=num_classes, scan=True),
}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
  """Adds a model of your own to `MODELS`, for ``config.model = name``.

  Call it in your config file (it runs when the file is loaded, in every
  process of a run). `factory(num_classes)` returns a Flax linen module
  whose ``__call__(x, train=False)`` maps a batch of images to logits.
  Registering a name twice with another factory is refused (a sweep's runs
  must all train the same model).
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f'a model name must be a non-empty str, got {name!r}.')
  if not callable(factory):
    raise TypeError(f'the factory of model {name!r} must be callable '
                    f'(num_classes -> flax module), got {factory!r}.')
  known = MODELS.get(name)
  if known is not None and getattr(known, '__qualname__', known) != getattr(
      factory, '__qualname__', factory):
    raise ValueError(f'model {name!r} is registered already (by {known!r}); '
                     'choose another name.')
  MODELS[name] = factory


# Each model's layers from the bottom to the top, as patterns on the layer
# names of layerlr_optax.layer_partition (depth= of
# layerlr_optax.scale_by_layer_decay): the +llrd variant's default when
# config.llrd_depth is empty.
LLRD_DEPTH: dict[str, tuple[str, ...]] = {
    'lenet': ('conv1', 'conv2', 'ip1', 'ip2'),
    'cifar10_full': ('conv1', 'conv2', 'conv3', 'ip1'),
    'row_transformer': ('^(?:embed|position)$', r'^block(\d+)_',
                        '^(?:final_ln|head)$'),
    'row_transformer_scan': ('^(?:embed|position)$', '^blocks/',
                             '^(?:final_ln|head)$'),
}


# ILSVRC-2012 per-channel RGB mean of the training set (the usual stand-in for
# Caffe's 256x256 mean image, whose crop varies by less than a grey level).
IMAGENET_RGB_MEAN = np.array([123.68, 116.78, 103.94], np.float32)


def make_preprocess(kind: str, train_images: np.ndarray | None
                    ) -> Callable[[jax.Array], jax.Array]:
  """Caffe's data transform on uint8 images.

  'scale': x / 256 (MNIST); 'mean': x - mean image of the training set
  (CIFAR-10's mean.binaryproto); 'imagenet_mean': x - per-channel mean.
  """
  if kind == 'scale':
    return lambda x: x.astype(jnp.float32) * 0.00390625
  if kind == 'imagenet_mean':
    return lambda x: x.astype(jnp.float32) - IMAGENET_RGB_MEAN
  if kind == 'mean':
    if train_images is None:
      raise ValueError("preprocess='mean' needs the training images.")
    mean = train_images.astype(np.float64).mean(axis=0).astype(np.float32)
    return lambda x: x.astype(jnp.float32) - mean
  raise ValueError(f'unknown preprocess {kind!r}; expected scale, mean or '
                   'imagenet_mean.')


def param_count(params) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
