"""Scan-stacked layers: a factor per slice, equal to the unrolled model.

The reference is the same model with its stacked leaves unrolled into one
module per slice, run through the unstacked path (itself tested against the
NumPy reference of eq. 9 in test_transform/test_alias), plus a direct NumPy
check of the per-slice norms.
"""

import inspect

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


def _takes_stacked_axis_name():
  """Every public function with `axis_name` and `stacked_axis_name`."""
  out = []
  for name in layerlr_optax.__all__:
    fn = getattr(layerlr_optax, name)
    if callable(fn) and not isinstance(fn, type):
      try:
        params = inspect.signature(fn).parameters
      except (TypeError, ValueError):
        continue
      if 'stacked_axis_name' in params:
        out.append((name, 'axis_name' in params))
  return out


def _call(name, **kw):
  """Calls a public factory (or layer_stats) with its required arguments."""
  positional = {'layerwise': (optax.sgd(0.1),),
                'layer_stats': (stacked_params(),),
                'scale_by_layer_decay': (0.5, ['blocks', 'head'])}
  fn = getattr(layerlr_optax, name)
  if name in positional:
    return fn(*positional[name], **kw)
  needs_rate = 'learning_rate' in inspect.signature(fn).parameters
  return fn(0.1, **kw) if needs_rate else fn(**kw)


class StackedAcrossDevicesTest(parameterized.TestCase):
  """The stacked axis split over a mapped axis (issue #30): declared, never
  guessed. The 8-device shard_map checks are in sharding_check.py."""

  def test_every_public_function_takes_it(self):
    names = [name for name, _ in _takes_stacked_axis_name()]
    for want in ('scale_by_layer_gradient', 'layerwise', 'layer_stats', 'sgd',
                 'adagrad', 'lars', 'lamb', 'adalayer',
                 'scale_by_layer_trust_ratio', 'scale_by_layer_adam',
                 'scale_by_layer_decay'):
      self.assertIn(want, names)

  @parameterized.parameters(*[name for name, has_axis
                              in _takes_stacked_axis_name() if has_axis])
  def test_axis_name_with_stacked_needs_the_layout(self, name):
    # Inside shard_map the two layouts look alike; the user must say which.
    with pytest.raises(ValueError, match=(
        r"with axis_name='d' and stacked layers, say how the stacked axis is "
        r'laid out .* stacked_axis_name=\(\) if every device holds a shard '
        r"of every slice .* or stacked_axis_name='d'")):
      _call(name, axis_name='d', stacked=layerlr_optax.stacked_paths(
          '^blocks/'))
    if name != 'layer_stats':  # it computes at once: needs the map
      _call(name, axis_name='d', stacked_axis_name=(),
            stacked=layerlr_optax.stacked_paths('^blocks/'))

  @parameterized.parameters(*[name for name, _ in _takes_stacked_axis_name()])
  def test_stacked_axis_name_needs_stacked(self, name):
    with pytest.raises(ValueError, match=r"stacked_axis_name='d' says how "
                       r'stacked layers are split .* nothing is stacked'):
      _call(name, stacked_axis_name='d')

  @parameterized.parameters((['d'],), (('d', ['e']),), ({'d'},))
  def test_bad_axis_names(self, axes):
    with pytest.raises(TypeError, match='stacked_axis_name must be a mesh '
                       'axis name'):
      layerlr_optax.sgd(0.1, stacked=0, stacked_axis_name=axes)
    with pytest.raises(TypeError, match='axis_name must be a mesh axis name'):
      layerlr_optax.sgd(0.1, axis_name=axes)

  def test_update_outside_the_map_is_refused_init_is_not(self):
    opt = layerlr_optax.adalayer(1e-2, stacked={'blocks': 0, 'head': None},
                                 stacked_axis_name='stage',
                                 record_factors=True)
    state = opt.init(stacked_params())  # the whole stack, outside shard_map
    self.assertIn('blocks[3]', layerlr_optax.recorded_factors(state))
    with pytest.raises(ValueError, match="stacked_axis_name='stage' names "
                       'mapped axes .* does not run inside shard_map/pmap'):
      jax.jit(opt.update)(gradient_sequence()[0], state, stacked_params())

  @parameterized.named_parameters(*[(name, name) for name in OPTIMIZERS])
  def test_split_stack_under_vmap_equals_the_whole(self, name):
    # vmap with an axis name splits the stack as shard_map would, on one
    # device: two "devices", each holding two whole blocks; the head is the
    # same on both (not split, so no axis_name).
    make = OPTIMIZERS[name]
    spec = {'blocks': 0, 'head': None}
    params = stacked_params()
    grads = gradient_sequence()[:2]
    want, _ = run(make(stacked=spec), params, grads)
    opt = make(stacked=spec, stacked_axis_name='stage')

    def halves(tree):
      return {'blocks': jax.tree.map(
          lambda x: x.reshape((2, NUM_BLOCKS // 2) + x.shape[1:]),
          tree['blocks']), 'head': tree['head']}

    def local(blocks, head, *grad_blocks):
      tree = {'blocks': blocks, 'head': head}
      seq = [{'blocks': b, 'head': g['head']}
             for b, g in zip(grad_blocks, grads)]
      return run(opt, tree, seq)[0]

    split = [halves(g)['blocks'] for g in grads]
    got = jax.jit(jax.vmap(local, in_axes=(0, None) + (0,) * len(grads),
                           axis_name='stage'))(
        halves(params)['blocks'], params['head'], *split)
    for got_step, want_step in zip(got, want):
      blocks = jax.tree.map(
          lambda x: x.reshape((NUM_BLOCKS,) + x.shape[2:]), got_step['blocks'])
      chex.assert_trees_all_close(blocks, want_step['blocks'], rtol=1e-5,
                                  atol=1e-8)
      chex.assert_trees_all_close(
          jax.tree.map(lambda x: x[0], got_step['head']), want_step['head'],
          rtol=1e-5, atol=1e-8)

  def test_split_stack_names_the_whole_stack(self):
    # Recorded factors and layer_stats name slices by their place in the
    # whole stack, and agree with NumPy's per-slice norms.
    grads = gradient_sequence()[1]
    spec = {'blocks': 0, 'head': None}

    def local(blocks, head):
      return layerlr_optax.layer_stats({'blocks': blocks, 'head': head},
                                       stacked=spec,
                                       stacked_axis_name='stage')

    stats = jax.vmap(local, in_axes=(0, None), axis_name='stage')(
        jax.tree.map(lambda x: x.reshape((2, 2) + x.shape[1:]),
                     grads['blocks']), grads['head'])
    self.assertEqual(sorted(stats), sorted(
        [f'blocks[{i}]' for i in range(NUM_BLOCKS)] + ['head']))
    kernel = np.asarray(grads['blocks']['kernel'], np.float64)
    bias = np.asarray(grads['blocks']['bias'], np.float64)
    for i in range(NUM_BLOCKS):
      norm = np.sqrt(np.sum(kernel[i] ** 2) + np.sum(bias[i] ** 2))
      # The same on both "devices".
      np.testing.assert_allclose(stats[f'blocks[{i}]']['grad_norm'],
                                 [norm, norm], rtol=1e-5)
      np.testing.assert_allclose(stats[f'blocks[{i}]']['factor'],
                                 [reference.factor(norm)] * 2, rtol=1e-5)
