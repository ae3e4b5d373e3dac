"""Property tests (hypothesis) of the invariants eq. 9 promises."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import layerlr_optax

finite_norms = st.floats(min_value=1e-18, max_value=1e18, allow_nan=False,
                         allow_infinity=False)


# No deadline: on a loaded machine the first (compiling) example takes
# seconds, which says nothing about the property.
@settings(deadline=None)
@given(finite_norms)
def test_factor_at_least_one(norm):
  assert float(layerlr_optax.layer_factor(norm)) >= 1.0


@settings(deadline=None)
@given(finite_norms, finite_norms)
def test_factor_monotone_decreasing_in_norm(a, b):
  lo, hi = sorted((a, b))
  f_lo, f_hi = (float(layerlr_optax.layer_factor(n)) for n in (lo, hi))
  assert f_lo >= f_hi


layer_arrays = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
    elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(layer_arrays, min_size=1, max_size=3), min_size=1,
                max_size=4),
       st.sampled_from(['module', 'leaf']))
def test_every_layer_keeps_its_direction(layers, mode):
  grads = {f'layer{i}': {f'w{j}': jnp.asarray(a) for j, a in enumerate(arrays)}
           for i, arrays in enumerate(layers)}
  opt = layerlr_optax.scale_by_layer_gradient(layers=mode)
  updates, _ = opt.update(grads, opt.init(grads))
  part = layerlr_optax.layer_partition(grads, layers=mode)
  # layer_partition names leaves 'layer0/w1'.
  name = lambda path: '/'.join(k.key for k in path)
  flat_g = {name(p): v for p, v in jax.tree_util.tree_flatten_with_path(grads)[0]}
  flat_u = {name(p): v for p, v in
            jax.tree_util.tree_flatten_with_path(updates)[0]}
  for leaves in part.values():
    g = np.concatenate([np.ravel(flat_g[k]) for k in leaves]).astype(np.float64)
    u = np.concatenate([np.ravel(flat_u[k]) for k in leaves]).astype(np.float64)
    assert np.all(np.isfinite(u))
    if not np.any(g):
      assert not np.any(u)
      continue
    # u = c g with one scalar c >= 1 per layer: same direction, longer step.
    c = np.dot(u, g) / np.dot(g, g)
    assert c >= 1.0 - 1e-6
    np.testing.assert_allclose(u, c * g, rtol=1e-5, atol=1e-30)


# ------------------------------------------- the per-layer family (#32) --

def _tree(layers):
  return {f'layer{i}': {f'w{j}': jnp.asarray(a) for j, a in enumerate(arrays)}
          for i, arrays in enumerate(layers)}


nested_layers = st.lists(st.lists(layer_arrays, min_size=1, max_size=3),
                         min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(nested_layers, st.floats(0.0, 1e-2), st.floats(0.1, 3.0))
def test_leaf_trust_ratio_is_optax_on_any_tree(layers, min_norm, coefficient):
  """With every array its own layer, optax's per-array rule, on trees of
  any shapes (zeros and huge norms included)."""
  params = _tree(layers)
  # Not where an array's nonzero entries are all below sqrt(float32 tiny):
  # their squares underflow, and optax's norm then depends on the array's
  # size (a one-element array keeps |x|, a longer one gets 0), so it is no
  # reference there; the package's policy is tested on its own below.
  assume(not any(0 < np.max(np.abs(np.asarray(x, np.float64)))
                 < np.sqrt(np.finfo(np.float32).tiny)
                 for x in jax.tree.leaves(params)))
  grads = jax.tree.map(lambda p: jnp.flip(p) * 0.5 - 0.25, params)
  mine = layerlr_optax.scale_by_layer_trust_ratio(
      min_norm=min_norm, trust_coefficient=coefficient, layers='leaf')
  peer = optax.scale_by_trust_ratio(min_norm=min_norm,
                                    trust_coefficient=coefficient)
  got, _ = mine.update(grads, mine.init(params), params)
  want, _ = peer.update(grads, peer.init(params), params)
  # Two norms of up to n float32 terms, summed in another order: up to
  # 2 n eps32 apart (relative), n the largest leaf.
  n = max(int(np.size(x)) for x in jax.tree.leaves(params))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                               rtol=2 * n * float(np.finfo(np.float32).eps),
                               atol=1e-30)


@pytest.mark.parametrize('size', [1, 3])
def test_trust_ratio_of_an_underflowing_layer_is_one(size):
  # Entries of 1e-23 square to 1e-46, below float32's smallest subnormal:
  # the norm is 0 on any machine, whatever the array's size, so the ratio
  # is 1 and the update passes unchanged (optax's norm of one element
  # would keep 1e-23 and give a ratio of ~4e-23).
  params = {'layer': {'w': jnp.full((size,), 1e-23, jnp.float32)}}
  grads = {'layer': {'w': jnp.full((size,), -0.25, jnp.float32)}}
  tx = layerlr_optax.scale_by_layer_trust_ratio(layers='leaf')
  got, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(got['layer']['w']),
                                np.asarray(grads['layer']['w']))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2), st.integers(1, 4),
       st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_any_stack_equals_its_unrolled_twin(size, axis, rows, cols, seed):
  """Trust ratio and one second moment per layer: a stack of any size,
  along any axis, gets what the same layers unrolled get."""
  rng = np.random.default_rng(seed)
  shape = [rows, cols]
  shape.insert(axis, size)
  kernel = rng.standard_normal(shape).astype(np.float32)
  scales = (10.0 ** rng.uniform(-3, 1, size)).astype(np.float32)
  scales = scales.reshape([-1 if a == axis else 1 for a in range(3)])
  bias = rng.standard_normal((size, cols)).astype(np.float32)
  stacked = {'blocks': {'kernel': jnp.asarray(kernel),
                        'bias': jnp.asarray(bias)}}
  grads = {'blocks': {'kernel': jnp.asarray(kernel * scales),
                      'bias': jnp.asarray(bias * 0.1)}}
  unroll = lambda t: {f'b{i}': {
      'kernel': jnp.take(t['blocks']['kernel'], i, axis=axis),
      'bias': t['blocks']['bias'][i]} for i in range(size)}
  spec = {'blocks': {'kernel': axis, 'bias': 0}}
  for make in (layerlr_optax.scale_by_layer_trust_ratio,
               layerlr_optax.scale_by_layer_adam):
    tx = make(stacked=spec)
    got, _ = tx.update(grads, tx.init(stacked), stacked)
    plain = make()
    want, _ = plain.update(unroll(grads), plain.init(unroll(stacked)),
                           unroll(stacked))
    for a, b in zip(jax.tree.leaves(unroll(got)), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                 atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=12),
       st.floats(0.05, 1.0))
def test_layer_decay_is_decay_to_the_distance_from_the_top(depths, decay):
  params = {f'layer_{i}': {'w': jnp.ones(2)} for i in range(len(depths))}
  depth_of = dict(zip(params, depths))
  tx = layerlr_optax.scale_by_layer_decay(decay, lambda name: depth_of[name],
                                          record_factors=True)
  _, state = tx.update(params, tx.init(params))
  got = layerlr_optax.recorded_factors(state)
  top = max(depths)
  for name, d in depth_of.items():
    np.testing.assert_allclose(float(got[name]), decay ** (top - d),
                               rtol=1e-5)
