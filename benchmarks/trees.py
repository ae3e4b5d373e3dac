"""Realistic parameter pytrees generated from shapes (no model needed)."""

from __future__ import annotations

import numpy as np


def _conv(k, cin, cout, bias=True):
  leaves = {'kernel': (k, k, cin, cout)}
  if bias:
    leaves['bias'] = (cout,)
  return leaves


def _dense(cin, cout):
  return {'kernel': (cin, cout), 'bias': (cout,)}


def lenet():
  return {'conv1': _conv(5, 1, 20), 'conv2': _conv(5, 20, 50),
          'ip1': _dense(800, 500), 'ip2': _dense(500, 10)}


def cifar10_full():
  return {'conv1': _conv(5, 3, 32), 'conv2': _conv(5, 32, 32),
          'conv3': _conv(5, 32, 64), 'ip1': _dense(1024, 10)}


def alexnet():
  """Caffe's bvlc_alexnet: grouped conv2/4/5 halve their input channels."""
  return {'conv1': _conv(11, 3, 96), 'conv2': _conv(5, 48, 256),
          'conv3': _conv(3, 256, 384), 'conv4': _conv(3, 192, 384),
          'conv5': _conv(3, 192, 256), 'fc6': _dense(9216, 4096),
          'fc7': _dense(4096, 4096), 'fc8': _dense(4096, 1000)}


def resnet50():
  """ResNet-50 v1.5 with BatchNorm scale/bias: 161 leaves."""
  tree = {'conv_init': _conv(7, 3, 64, bias=False),
          'bn_init': {'scale': (64,), 'bias': (64,)}}
  cin = 64
  for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3),
                                              (64, 128, 256, 512))):
    for block in range(blocks):
      name = f'stage{stage + 1}_block{block + 1}'
      cout = 4 * width
      for i, (k, a, b) in enumerate(((1, cin, width), (3, width, width),
                                     (1, width, cout))):
        tree[f'{name}_conv{i + 1}'] = _conv(k, a, b, bias=False)
        tree[f'{name}_bn{i + 1}'] = {'scale': (b,), 'bias': (b,)}
      if block == 0:
        tree[f'{name}_proj_conv'] = _conv(1, cin, cout, bias=False)
        tree[f'{name}_proj_bn'] = {'scale': (cout,), 'bias': (cout,)}
      cin = cout
  tree['head'] = _dense(2048, 1000)
  return tree


def deep_mlp(depth: int, total: int = 4_000_000):
  """`depth` dense layers of equal width, about `total` parameters in all."""
  width = int(round((total / depth) ** 0.5))
  return {f'dense{i}': _dense(width, width) for i in range(depth)}


def stacked(depth: int = 48, width: int = 256):
  """`depth` equal dense blocks stacked along a leading axis, as
  ``flax.linen.scan`` stores them, and a head."""
  return {'blocks': {'kernel': (depth, width, width), 'bias': (depth, width)},
          'head': _dense(width, 10)}


def unrolled(depth: int = 48, width: int = 256):
  """The same parameters as `stacked`, one module per block."""
  tree = {f'block{i}': _dense(width, width) for i in range(depth)}
  tree['head'] = _dense(width, 10)
  return tree


TREES = {
    'lenet': lenet,
    'cifar10_full': cifar10_full,
    'alexnet': alexnet,
    'resnet50': resnet50,
    'deep_mlp_10': lambda: deep_mlp(10),
    'deep_mlp_100': lambda: deep_mlp(100),
    'deep_mlp_1000': lambda: deep_mlp(1000),
    'stacked_48': stacked,
    'unrolled_48': unrolled,
}


def make(name: str, seed: int = 0, dtype=np.float32):
  """(params, grads) of tree `name` as float arrays."""
  import jax
  import jax.numpy as jnp
  rng = np.random.default_rng(seed)
  shapes = TREES[name]()
  is_shape = lambda x: isinstance(x, tuple)
  params = jax.tree.map(
      lambda s: jnp.asarray(rng.standard_normal(s, np.float32) * 0.05, dtype),
      shapes, is_leaf=is_shape)
  grads = jax.tree.map(
      lambda s: jnp.asarray(rng.standard_normal(s, np.float32) * 1e-3, dtype),
      shapes, is_leaf=is_shape)
  return params, grads


def count(name: str) -> tuple[int, int]:
  """(number of parameters, number of leaves)."""
  leaves = []

  def walk(node):
    if isinstance(node, tuple):
      leaves.append(node)
    else:
      for v in node.values():
        walk(v)

  walk(TREES[name]())
  return sum(int(np.prod(s)) for s in leaves), len(leaves)
