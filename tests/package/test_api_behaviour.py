"""Public behaviour the other tests leave out (issue #26.3), each against an
independent expectation (NumPy, tests/package/reference.py)."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import layerlr_optax
from tests.package import reference


def _tree(seed=0):
  rng = np.random.default_rng(seed)
  return {'a': {'w': jnp.asarray(rng.standard_normal((3, 4)) * 1e-3,
                                 jnp.float32),
                'b': jnp.asarray(rng.standard_normal(4) * 1e-3, jnp.float32)},
          'c': {'w': jnp.asarray(rng.standard_normal((4, 2)) * 5.0,
                                 jnp.float32)}}


def _factors(tree):
  out = {}
  for module, leaves in tree.items():
    norm = np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2)
                       for v in leaves.values()))
    out[module] = reference.factor(norm)
  return out


def test_sgd_accumulator_dtype():
  g = _tree()
  opt = layerlr_optax.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)
  state = opt.init(g)
  assert {leaf.dtype for leaf in jax.tree.leaves(state)} == {
      jnp.dtype(jnp.bfloat16)}
  updates, _ = opt.update(g, state, g)
  f = _factors(g)
  for module in g:
    for name, grad in g[module].items():
      want = -0.1 * f[module] * np.asarray(grad, np.float64)
      np.testing.assert_allclose(np.asarray(updates[module][name], np.float64),
                                 want, rtol=2e-2)  # bfloat16's 8 bits
  for bad in ('int32', jnp.int8, 'nonsense'):
    with pytest.raises(TypeError, match='accumulator_dtype'):
      layerlr_optax.sgd(0.1, momentum=0.9, accumulator_dtype=bad)


def test_adagrad_initial_accumulator_and_eps():
  g = _tree(1)
  opt = layerlr_optax.adagrad(0.1, initial_accumulator_value=0.5, eps=1e-3)
  state = opt.init(g)
  u1, state = opt.update(g, state, g)
  u2, _ = opt.update(g, state, g)
  f = _factors(g)
  for module in g:
    for name, grad in g[module].items():
      x = np.asarray(grad, np.float64)
      s1 = 0.5 + x ** 2
      s2 = s1 + x ** 2
      np.testing.assert_allclose(u1[module][name],
                                 -0.1 * f[module] * x / np.sqrt(s1 + 1e-3),
                                 rtol=1e-5)
      np.testing.assert_allclose(u2[module][name],
                                 -0.1 * f[module] * x / np.sqrt(s2 + 1e-3),
                                 rtol=1e-5)


@pytest.mark.parametrize('name,value', [
    ('initial_accumulator_value', -1.0), ('eps', -1e-3),
    ('initial_accumulator_value', float('nan')), ('eps', 'small')])
def test_adagrad_rejects_invalid_values(name, value):
  with pytest.raises((TypeError, ValueError), match=name):
    layerlr_optax.adagrad(0.1, **{name: value})


@pytest.mark.parametrize('make', [
    lambda **kw: layerlr_optax.sgd(0.1, **kw),
    lambda **kw: layerlr_optax.adagrad(0.1, **kw),
    lambda **kw: layerlr_optax.layerwise(optax.adam(0.1), **kw),
    lambda **kw: layerlr_optax.scale_by_layer_gradient(**kw),
])
def test_bool_hyperparameters_are_refused(make):
  with pytest.raises(TypeError):
    make(max_factor=True)
  with pytest.raises(TypeError, match='record_factors'):
    make(record_factors='yes')


def test_bool_rates_are_refused():
  with pytest.raises(TypeError, match='learning_rate'):
    layerlr_optax.sgd(True)
  with pytest.raises(TypeError, match='momentum'):
    layerlr_optax.sgd(0.1, momentum=False)
  with pytest.raises(TypeError, match='nesterov'):
    layerlr_optax.sgd(0.1, momentum=0.9, nesterov='yes')


def test_max_factor_on_sgd_adagrad_and_stacked():
  g = _tree(2)
  cap = 2.0
  f = {m: min(v, cap) for m, v in _factors(g).items()}
  sgd = layerlr_optax.sgd(1.0, max_factor=cap)
  sgd_updates, _ = sgd.update(g, sgd.init(g))
  ada = layerlr_optax.adagrad(1.0, initial_accumulator_value=0.0, eps=0.0,
                              max_factor=cap)
  ada_updates, _ = ada.update(g, ada.init(g))
  for module in g:
    for name, grad in g[module].items():
      x = np.asarray(grad, np.float64)
      np.testing.assert_allclose(sgd_updates[module][name], -f[module] * x,
                                 rtol=1e-5)
      np.testing.assert_allclose(ada_updates[module][name],
                                 -f[module] * np.sign(x), rtol=1e-5)
  stack = {'blocks': {'w': jnp.stack([jnp.full(3, 1e-4), jnp.full(3, 10.0)])}}
  stacked_sgd = layerlr_optax.sgd(1.0, max_factor=cap, stacked=0)
  out, _ = stacked_sgd.update(stack, stacked_sgd.init(stack))
  np.testing.assert_allclose(out['blocks']['w'][0], -cap * 1e-4, rtol=1e-5)
  np.testing.assert_allclose(out['blocks']['w'][1],
                             -reference.factor(10 * np.sqrt(3)) * 10.0,
                             rtol=1e-5)


def test_complex_gradients_use_the_modulus():
  rng = np.random.default_rng(3)
  z = (rng.standard_normal((4, 3)) + 1j * rng.standard_normal((4, 3))) * 1e-2
  g = {'layer': {'w': jnp.asarray(z, jnp.complex64)}}
  out, _ = layerlr_optax.scale_by_layer_gradient().update(
      g, optax.EmptyState())
  factor = reference.factor(np.sqrt(np.sum(np.abs(z) ** 2)))
  assert out['layer']['w'].dtype == jnp.complex64
  np.testing.assert_allclose(out['layer']['w'], factor * z, rtol=1e-5)


def test_float64_under_x64_and_the_factor_dtype():
  """In a fresh process with jax_enable_x64 (the flag is process-wide)."""
  code = '''
import jax
jax.config.update('jax_enable_x64', True)
import jax.numpy as jnp, numpy as np, optax, layerlr_optax
g = {'a': {'w': jnp.full(3, 1e-9, jnp.float64)}}
out, _ = layerlr_optax.scale_by_layer_gradient().update(g, optax.EmptyState())
assert out['a']['w'].dtype == jnp.float64
want = 1 + np.log1p(1 / (1e-9 * np.sqrt(3)))
np.testing.assert_allclose(np.asarray(out['a']['w'] / g['a']['w']), want,
                           rtol=1e-12)
assert layerlr_optax.layer_factor(jnp.float64(2.0)).dtype == jnp.float64
assert layerlr_optax.layer_factor(jnp.float16(2.0)).dtype == jnp.float32
assert layerlr_optax.layer_factor(2).dtype == jnp.float32
print('X64 OK')
'''
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0 and 'X64 OK' in proc.stdout, proc.stderr


def test_factor_dtype_without_x64():
  assert layerlr_optax.layer_factor(jnp.bfloat16(1.0)).dtype == jnp.float32
  g = {'a': {'w': jnp.full(3, 0.1, jnp.bfloat16)}}
  out, _ = layerlr_optax.scale_by_layer_gradient().update(
      g, optax.EmptyState())
  assert out['a']['w'].dtype == jnp.bfloat16


def test_layer_partition_on_shape_dtype_structs():
  tree = {'blocks': {'kernel': jax.ShapeDtypeStruct((3, 4, 4), jnp.float32),
                     'bias': jax.ShapeDtypeStruct((3, 4), jnp.float32)},
          'head': {'kernel': jax.ShapeDtypeStruct((4, 2), jnp.float32)}}
  stacked = layerlr_optax.stacked_paths('^blocks/')
  assert layerlr_optax.layer_partition(tree, stacked=stacked) == {
      'blocks[0]': ['blocks/bias[0]', 'blocks/kernel[0]'],
      'blocks[1]': ['blocks/bias[1]', 'blocks/kernel[1]'],
      'blocks[2]': ['blocks/bias[2]', 'blocks/kernel[2]'],
      'head': ['head/kernel']}
  assert layerlr_optax.layer_partition(
      tree, exclude=layerlr_optax.ndim_at_most(1), stacked=stacked)[
          'blocks[1]'] == ['blocks/kernel[1]']


def test_recorded_factors_inside_masked_and_under_jit():
  g = _tree(4)
  mask = {'a': True, 'c': False}
  opt = optax.masked(layerlr_optax.sgd(0.1, record_factors=True), mask)
  state = opt.init(g)
  _, state = jax.jit(opt.update)(g, state, g)
  got = jax.jit(layerlr_optax.recorded_factors)(state)
  # The masked transform saw only module 'a'.
  assert list(got) == ['a']
  np.testing.assert_allclose(got['a'], _factors(g)['a'], rtol=1e-5)


@pytest.mark.parametrize('make,plain', [
    (lambda: layerlr_optax.scale_by_layer_gradient(), optax.identity),
    (lambda: layerlr_optax.sgd(1.0), lambda: optax.sgd(1.0)),
    (lambda: layerlr_optax.sgd(1.0, momentum=0.9, nesterov=True),
     lambda: optax.sgd(1.0, momentum=0.9, nesterov=True)),
    (lambda: layerlr_optax.adagrad(1.0), lambda: optax.adagrad(1.0)),
    (lambda: layerlr_optax.layerwise(optax.sgd(1.0)), lambda: optax.sgd(1.0)),
])
def test_nan_and_inf_policy_on_every_transform(make, plain):
  """A layer with a NaN or an inf, and a layer of zeros, get factor 1: their
  update is exactly the plain optimizer's (NaN stays NaN, nothing new is
  poisoned); other layers are untouched by them."""
  finite = jnp.asarray([0.3, -0.4])
  for bad in (jnp.nan, jnp.inf, -jnp.inf):
    g = {'bad': {'w': jnp.asarray([bad, 1.0])}, 'good': {'w': finite},
         'zero': {'w': jnp.zeros(2)}}
    opt = make()
    updates, _ = opt.update(g, opt.init(g), g)
    good_alone = make()
    want_good, _ = good_alone.update({'good': {'w': finite}},
                                     good_alone.init({'good': {'w': finite}}),
                                     {'good': {'w': finite}})
    np.testing.assert_allclose(updates['good']['w'], want_good['good']['w'],
                               rtol=1e-6)
    reference = plain()
    want, _ = reference.update(g, reference.init(g), g)
    # NaN compares equal to NaN here.
    np.testing.assert_array_equal(updates['bad']['w'], want['bad']['w'])
    np.testing.assert_array_equal(updates['zero']['w'], want['zero']['w'])
    stats = layerlr_optax.layer_stats({'bad': g['bad'], 'zero': g['zero']})
    assert float(stats['bad']['factor']) == 1.0
    assert float(stats['zero']['factor']) == 1.0
