"""Property tests (hypothesis) of the invariants eq. 9 promises."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
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
