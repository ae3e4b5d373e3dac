"""The paper's networks (experiments/lib/models.py) against Caffe's prototxts."""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.lib import models


def test_lenet_matches_caffe_parameter_count():
  params = models.LeNet().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  assert models.param_count(params) == 431_080
  shapes = jax.tree.map(jnp.shape, params['params'])
  assert shapes['conv1']['kernel'] == (5, 5, 1, 20)
  assert shapes['ip1']['kernel'] == (800, 500)


def test_cifar10_full_matches_caffe_parameter_count():
  params = models.Cifar10Full().init(jax.random.key(0),
                                     jnp.zeros((1, 32, 32, 3)))
  assert models.param_count(params) == 89_578
  # conv3 output 4x4x64 feeds ip1: Caffe's ceil-mode pooling 32->16->8->4.
  assert params['params']['ip1']['kernel'].shape == (1024, 10)


def test_alexnet_matches_caffe_parameter_count():
  params = jax.eval_shape(
      lambda: models.AlexNet().init(jax.random.key(0),
                                    np.zeros((1, 227, 227, 3), np.float32)))
  assert models.param_count(params) == 60_965_224
  assert params['params']['conv2']['kernel'].shape == (5, 5, 48, 256)
  assert params['params']['fc6']['kernel'].shape == (9216, 4096)


def test_caffe_pool_ceil_mode_and_average_counts():
  x = jnp.arange(25.0).reshape(1, 5, 5, 1)
  out = models.caffe_pool(x, 'max', 3, 2)
  assert out.shape == (1, 2, 2, 1)
  x = jnp.ones((1, 4, 4, 1))
  # ceil((4 - 3) / 2) + 1 = 2: the second window hangs over the edge and
  # averages only its valid cells.
  out = models.caffe_pool(x, 'avg', 3, 2)
  assert out.shape == (1, 2, 2, 1)
  np.testing.assert_allclose(out, 1.0)
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  out = models.caffe_pool(x, 'avg', 3, 2)
  np.testing.assert_allclose(out[0, 1, 1, 0], np.mean([10, 11, 14, 15]))


def test_deep_mlp_layers_are_modules():
  model = models.MODELS['mlp20_tanh'](num_classes=10)
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
  assert list(params) == [f'fc{i}' for i in range(1, 21)] + ['out']
  assert params['fc1']['kernel'].shape == (784, 256)
  assert params['out']['kernel'].shape == (256, 10)
  # Xavier (uniform, fan-in): bound sqrt(3 / fan_in).
  assert float(jnp.abs(params['fc2']['kernel']).max()) <= np.sqrt(3 / 256)


def test_row_transformer_has_normalisation_layers_as_modules():
  model = models.MODELS['row_transformer'](num_classes=10)
  params = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))['params']
  assert {'block0_ln1', 'block1_ln2', 'final_ln', 'block0_attention',
          'embed', 'head', 'position'} <= set(params)
  assert set(params['block0_ln1']) == {'scale', 'bias'}
  logits = model.apply({'params': params}, jnp.zeros((2, 28, 28, 1)))
  assert logits.shape == (2, 10)


def test_scanned_row_transformer_is_the_unrolled_function():
  """row_transformer_scan computes what row_transformer computes from the
  same parameters (the blocks stacked under blocks/), so the sweeps on the
  two compare optimizers on one function; its layers are one per slice
  with config.stacked."""
  import layerlr_optax
  x = jax.random.uniform(jax.random.key(3), (4, 28, 28, 1))
  unrolled_model = models.MODELS['row_transformer'](10)
  scanned_model = models.MODELS['row_transformer_scan'](10)
  unrolled = unrolled_model.init(jax.random.key(0), x)['params']
  scanned = scanned_model.init(jax.random.key(0), x)['params']
  names = ('ln1', 'attention', 'ln2', 'mlp_in', 'mlp_out')
  stacked = dict(scanned)
  stacked['blocks'] = {name: jax.tree.map(
      lambda *a: jnp.stack(a), *[unrolled[f'block{i}_{name}']
                                 for i in range(2)]) for name in names}
  for key in ('embed', 'position', 'final_ln', 'head'):
    stacked[key] = unrolled[key]
  assert (jax.tree.structure(stacked) == jax.tree.structure(scanned))
  np.testing.assert_allclose(
      scanned_model.apply({'params': stacked}, x),
      unrolled_model.apply({'params': unrolled}, x), rtol=2e-5, atol=2e-6)
  assert models.param_count(scanned) == models.param_count(unrolled)
  part = layerlr_optax.layer_partition(
      scanned, stacked=layerlr_optax.stacked_paths('^blocks/'))
  assert 'blocks/mlp_in[1]' in part and 'blocks/mlp_in' not in part
