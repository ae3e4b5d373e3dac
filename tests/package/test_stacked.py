"""Scan-stacked layers: a factor per slice, equal to the unrolled model.

The reference is the same model with its stacked leaves unrolled into one
module per slice, run through the unstacked path (itself tested against the
NumPy reference of eq. 9 in test_transform/test_alias), plus a direct NumPy
check of the per-slice norms.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import layerlr_optax
from tests.package import reference

NUM_BLOCKS = 4


def stacked_params(seed=0, axis=0):
  """Four blocks stacked along `axis`, a bias stacked along 0, and a head."""
  rng = np.random.default_rng(seed)
  kernel = rng.standard_normal((NUM_BLOCKS, 6, 5)).astype(np.float32)
  return {
      'blocks': {'kernel': jnp.asarray(np.moveaxis(kernel, 0, axis)),
                 'bias': jnp.asarray(rng.standard_normal(
                     (NUM_BLOCKS, 5)).astype(np.float32))},
      'head': {'w': jnp.asarray(rng.standard_normal((5, 3)).astype(
          np.float32))},
  }


def unrolled(tree, axis=0):
  """The same parameters with one module per stacked slice."""
  out = {f'block_{i}': {
      'kernel': jnp.take(tree['blocks']['kernel'], i, axis=axis),
      'bias': tree['blocks']['bias'][i]} for i in range(NUM_BLOCKS)}
  out['head'] = tree['head']
  return out


def gradient_sequence(axis=0, steps=4):
  """Gradients whose scale changes per step and per block."""
  out = []
  for step in range(steps):
    grads = stacked_params(seed=10 + step, axis=axis)
    scale = jnp.asarray([10.0 ** (-b - step) for b in range(NUM_BLOCKS)])
    shape = [1] * grads['blocks']['kernel'].ndim
    shape[axis] = NUM_BLOCKS
    grads['blocks']['kernel'] = grads['blocks']['kernel'] * scale.reshape(shape)
    grads['blocks']['bias'] = grads['blocks']['bias'] * scale[:, None]
    out.append(grads)
  return out


OPTIMIZERS = {
    'sgd': lambda **kw: layerlr_optax.sgd(0.1, **kw),
    'nag': lambda **kw: layerlr_optax.sgd(0.1, momentum=0.9, nesterov=True,
                                          **kw),
    'layerwise_adagrad': lambda **kw: layerlr_optax.layerwise(
        optax.adagrad(0.1), **kw),
    'layerwise_adam': lambda **kw: layerlr_optax.layerwise(
        optax.adam(1e-2), **kw),
    'chain': lambda **kw: optax.chain(
        layerlr_optax.scale_by_layer_gradient(**kw), optax.sgd(0.1, 0.9)),
    'adagrad_alias': lambda **kw: layerlr_optax.adagrad(0.1, **kw),
}


def run(opt, params, grad_seq, wrap=lambda f: f):
  state = opt.init(params)
  update = wrap(opt.update)
  out = []
  for grads in grad_seq:
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out, state


class StackedEqualsUnrolledTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(name, name) for name in OPTIMIZERS])
  def test_updates_equal_unrolled(self, name):
    make = OPTIMIZERS[name]
    grads = gradient_sequence()
    opt = make(stacked={'blocks': 0, 'head': None})
    stacked_updates, _ = run(opt, stacked_params(), grads, self.variant)
    plain_updates, _ = run(make(), unrolled(stacked_params()),
                           [unrolled(g) for g in grads])
    for got, want in zip(stacked_updates, plain_updates):
      chex.assert_trees_all_close(unrolled(got), want, rtol=1e-5, atol=1e-8)

  @parameterized.parameters(1, 2, -1)
  def test_any_stacked_axis(self, axis):
    grads = gradient_sequence(axis=axis % 3)
    spec = {'blocks': {'kernel': axis, 'bias': 0}, 'head': None}
    got, _ = run(layerlr_optax.sgd(0.1, momentum=0.9, stacked=spec),
                 stacked_params(axis=axis % 3), grads, jax.jit)
    want, _ = run(layerlr_optax.sgd(0.1, momentum=0.9),
                  unrolled(stacked_params(axis=axis % 3), axis % 3),
                  [unrolled(g, axis % 3) for g in grads])
    for a, b in zip(got, want):
      chex.assert_trees_all_close(unrolled(a, axis % 3), b, rtol=1e-5,
                                  atol=1e-8)

  def test_factor_per_slice_matches_numpy(self):
    grads = gradient_sequence()[1]
    stats = layerlr_optax.layer_stats(grads,
                                      stacked={'blocks': 0, 'head': None})
    for i in range(NUM_BLOCKS):
      norm = np.sqrt(np.sum(np.square(np.asarray(grads['blocks']['kernel'][i],
                                                 np.float64)))
                     + np.sum(np.square(np.asarray(grads['blocks']['bias'][i],
                                                   np.float64))))
      got = stats[f'blocks[{i}]']
      np.testing.assert_allclose(got['grad_norm'], norm, rtol=1e-5)
      np.testing.assert_allclose(got['factor'], reference.factor(norm),
                                 rtol=1e-5)
    # The slices differ by orders of magnitude, so must their factors.
    factors = [float(stats[f'blocks[{i}]']['factor'])
               for i in range(NUM_BLOCKS)]
    self.assertEqual(factors, sorted(factors))
    self.assertGreater(factors[-1] - factors[0], 5.0)

  def test_one_factor_without_stacked(self):
    grads = gradient_sequence()[1]
    stats = layerlr_optax.layer_stats(grads)
    self.assertEqual(list(stats), ['blocks', 'head'])

  def test_label_pytree_and_leaf_modes(self):
    grads = gradient_sequence()[2]
    spec = {'blocks': 0, 'head': None}
    labels = {'blocks': {'kernel': 'stack', 'bias': 'stack'},
              'head': {'w': 'head'}}
    by_label = layerlr_optax.layer_stats(grads, layers=labels, stacked=spec)
    by_module = layerlr_optax.layer_stats(grads, stacked=spec)
    self.assertEqual(list(by_label), [f'stack[{i}]' for i in range(4)]
                     + ['head'])
    for i in range(NUM_BLOCKS):
      np.testing.assert_allclose(by_label[f'stack[{i}]']['factor'],
                                 by_module[f'blocks[{i}]']['factor'])
    by_leaf = layerlr_optax.layer_partition(grads, layers='leaf', stacked=spec)
    self.assertEqual(by_leaf['blocks/kernel[3]'], ['blocks/kernel[3]'])
    self.assertEqual(len(by_leaf), 2 * NUM_BLOCKS + 1)

  def test_callable_rule_over_paths(self):
    def rule(tree):
      return jax.tree_util.tree_map_with_path(
          lambda path, _: 0 if 'blocks' in jax.tree_util.keystr(path)
          else None, tree)
    params = stacked_params()
    self.assertEqual(layerlr_optax.layer_partition(params, stacked=rule),
                     layerlr_optax.layer_partition(
                         params, stacked={'blocks': 0, 'head': None}))

  def test_partition_names_slices(self):
    part = layerlr_optax.layer_partition(
        stacked_params(axis=1), stacked={'blocks': {'kernel': 1, 'bias': 0},
                                         'head': None})
    self.assertEqual(part['blocks[2]'],
                     ['blocks/bias[2]', 'blocks/kernel[:, 2]'])
    self.assertEqual(part['head'], ['head/w'])

  def test_recorded_factors_per_slice(self):
    grads = gradient_sequence()[0]
    spec = {'blocks': 0, 'head': None}
    opt = layerlr_optax.layerwise(optax.adam(1e-3), stacked=spec,
                                  record_factors=True)
    state = opt.init(stacked_params())
    self.assertEqual(sorted(layerlr_optax.recorded_factors(state)),
                     sorted([f'blocks[{i}]' for i in range(4)] + ['head']))
    _, state = jax.jit(opt.update)(grads, state)
    recorded = layerlr_optax.recorded_factors(state)
    stats = layerlr_optax.layer_stats(grads, stacked=spec)
    # Independently, per slice in NumPy: block i is kernel[i] and bias[i].
    kernel = np.asarray(grads['blocks']['kernel'], np.float64)
    bias = np.asarray(grads['blocks']['bias'], np.float64)
    want = {f'blocks[{i}]': reference.factor(np.sqrt(
        np.sum(kernel[i] ** 2) + np.sum(bias[i] ** 2)))
            for i in range(NUM_BLOCKS)}
    want['head'] = reference.factor(np.linalg.norm(
        np.asarray(grads['head']['w'], np.float64)))
    self.assertEqual(sorted(recorded), sorted(want))
    for name, value in want.items():
      np.testing.assert_allclose(recorded[name], value, rtol=1e-5)
      np.testing.assert_allclose(stats[name]['factor'], value, rtol=1e-5)

  def test_exclude_and_stacked(self):
    grads = gradient_sequence()[0]
    exclude = {'blocks': {'kernel': False, 'bias': True}, 'head': False}
    opt = layerlr_optax.sgd(1.0, stacked={'blocks': 0, 'head': None},
                            exclude=exclude)
    updates, _ = opt.update(grads, opt.init(grads))
    np.testing.assert_array_equal(updates['blocks']['bias'],
                                  -grads['blocks']['bias'])
    kernel = np.asarray(grads['blocks']['kernel'])
    for i in range(NUM_BLOCKS):
      np.testing.assert_allclose(
          updates['blocks']['kernel'][i],
          -kernel[i] * reference.factor(np.linalg.norm(kernel[i])),
          rtol=1e-5)

  def test_whole_tree_stacked_with_an_int(self):
    grads = {'m': {'k': jnp.ones((3, 2)), 'b': jnp.ones((3,))}}
    stats = layerlr_optax.layer_stats(grads, stacked=0)
    self.assertEqual(list(stats), ['m[0]', 'm[1]', 'm[2]'])
    np.testing.assert_allclose(stats['m[1]']['grad_norm'], np.sqrt(3.0),
                               rtol=1e-6)
    # Leaves directly under the root are layers of their own, each stacked.
    flat = layerlr_optax.layer_stats(grads['m'], stacked=0)
    self.assertEqual(list(flat), ['b[0]', 'b[1]', 'b[2]',
                                  'k[0]', 'k[1]', 'k[2]'])
    np.testing.assert_allclose(flat['k[1]']['grad_norm'], np.sqrt(2.0),
                               rtol=1e-6)

  def test_works_with_inject_hyperparams_and_multisteps(self):
    spec = {'blocks': 0, 'head': None}
    grads = gradient_sequence()
    opt = optax.MultiSteps(optax.inject_hyperparams(layerlr_optax.sgd)(
        learning_rate=0.1, momentum=0.9, stacked=spec), every_k_schedule=1)
    got, _ = run(opt, stacked_params(), grads, jax.jit)
    want, _ = run(layerlr_optax.sgd(0.1, 0.9), unrolled(stacked_params()),
                  [unrolled(g) for g in grads])
    for a, b in zip(got, want):
      chex.assert_trees_all_close(unrolled(a), b, rtol=1e-5, atol=1e-8)

  def test_no_recompilation_and_one_reduction_per_leaf(self):
    spec = {'blocks': 0, 'head': None}
    opt = layerlr_optax.sgd(0.1, stacked=spec)
    grads = gradient_sequence()
    traces = []

    def update(g, s):
      traces.append(1)
      return opt.update(g, s)

    update = jax.jit(update)
    state = opt.init(grads[0])
    for g in grads:
      _, state = update(g, state)
    self.assertLen(traces, 1)
    # One reduce per leaf (3 leaves), not one per slice.
    hlo = jax.jit(opt.update).lower(grads[0], state).as_text()
    self.assertEqual(hlo.count('stablehlo.reduce'), 3, hlo)


class StackedBadInputTest(parameterized.TestCase):

  def test_bool_is_not_an_axis(self):
    with pytest.raises(TypeError, match='stacked must hold'):
      layerlr_optax.sgd(0.1, stacked=True)

  def test_axis_out_of_range(self):
    with pytest.raises(ValueError, match="out of range for the leaf "
                       "'blocks/bias'"):
      layerlr_optax.layer_partition(stacked_params(),
                                    stacked={'blocks': 2, 'head': None})

  def test_structure_mismatch(self):
    with pytest.raises(ValueError, match='`stacked` axes pytree does not'):
      layerlr_optax.layer_partition(stacked_params(),
                                    stacked={'blocks': 0, 'other': None})

  def test_layer_mixing_stacked_and_unstacked(self):
    labels = jax.tree.map(lambda _: 'all', stacked_params())
    with pytest.raises(ValueError, match="mixes leaves with different "
                       "stacking: 'blocks/bias' stacks 4 layers, 'head/w' is "
                       'not stacked'):
      layerlr_optax.layer_stats(stacked_params(), layers=labels,
                                stacked={'blocks': 0, 'head': None})

  def test_layer_mixing_stack_sizes(self):
    tree = {'m': {'a': jnp.ones((3, 2)), 'b': jnp.ones((4, 2))}}
    with pytest.raises(ValueError, match="'m/a' stacks 3 layers, 'm/b' "
                       'stacks 4 layers'):
      layerlr_optax.layer_partition(tree, stacked=0)
