"""scale_by_layer_gradient / layerwise / layer_stats against the NumPy reference."""

import dataclasses
import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import layerlr_optax
from tests.package import reference
from tests.package.toy_tree import (MODULE_LAYERS, SHAPES, assert_tree_close,
                             expected_scaled, flatten, nest, random_grads)


class Eq9Test(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_module_layers(self):
    grads = random_grads()
    opt = layerlr_optax.scale_by_layer_gradient()
    update = self.variant(opt.update)
    out, _ = update(nest(grads), opt.init(nest(grads)))
    assert_tree_close(out, expected_scaled(grads, MODULE_LAYERS))

  @chex.variants(with_jit=True, without_jit=True)
  def test_leaf_layers(self):
    grads = random_grads(1)
    opt = layerlr_optax.scale_by_layer_gradient(layers='leaf')
    out, _ = self.variant(opt.update)(nest(grads), opt.init(nest(grads)))
    assert_tree_close(out, expected_scaled(grads, [[k] for k in grads]))

  @chex.variants(with_jit=True, without_jit=True)
  def test_label_pytree_and_prefix(self):
    grads = random_grads(2)
    # Full labels: conv1 and head together, dense alone.
    labels = nest({k: ('a' if k.split('/')[0] != 'dense' else 'b')
                   for k in grads})
    layers = [['conv1/bias', 'conv1/kernel', 'head/kernel'],
              ['dense/bias', 'dense/kernel']]
    opt = layerlr_optax.scale_by_layer_gradient(layers=labels)
    out, _ = self.variant(opt.update)(nest(grads), opt.init(nest(grads)))
    assert_tree_close(out, expected_scaled(grads, layers))
    # A prefix: one label per module, same grouping as 'module'.
    prefix = {'conv1': 1, 'dense': 2, 'head': 3}
    opt = layerlr_optax.scale_by_layer_gradient(layers=prefix)
    out, _ = self.variant(opt.update)(nest(grads), opt.init(nest(grads)))
    assert_tree_close(out, expected_scaled(grads, MODULE_LAYERS))

  @chex.variants(with_jit=True, without_jit=True)
  def test_callable_labels(self):
    grads = random_grads(3)
    label_fn = lambda tree: jax.tree_util.tree_map_with_path(
        lambda path, _: path[-1].key, tree)  # group by leaf name
    layers = [['conv1/bias', 'dense/bias'],
              ['conv1/kernel', 'dense/kernel', 'head/kernel']]
    opt = layerlr_optax.scale_by_layer_gradient(layers=label_fn)
    out, _ = self.variant(opt.update)(nest(grads), opt.init(nest(grads)))
    assert_tree_close(out, expected_scaled(grads, layers))

  def test_large_norm_factor_one_small_norm_boost(self):
    big = {'l': {'w': jnp.full((100,), 1e4)}}
    small = {'l': {'w': jnp.full((100,), 1e-6)}}
    opt = layerlr_optax.scale_by_layer_gradient()
    out_big, _ = opt.update(big, opt.init(big))
    out_small, _ = opt.update(small, opt.init(small))
    # norm 1e5 -> factor 1 + ln(1 + 1e-5) = 1.00001
    np.testing.assert_allclose(out_big['l']['w'] / big['l']['w'],
                               reference.factor(1e5), rtol=1e-6)
    self.assertLess(float(out_big['l']['w'][0] / big['l']['w'][0]), 1.0001)
    # norm 1e-5 -> factor 1 + ln(1 + 1e5) = 12.51
    np.testing.assert_allclose(out_small['l']['w'] / small['l']['w'],
                               reference.factor(1e-5), rtol=1e-5)

  def test_layer_factor_function(self):
    norms = np.array([1e-15, 1e-3, 0.5, 1.0, 10.0, 1e6])
    np.testing.assert_allclose(layerlr_optax.layer_factor(norms),
                               [reference.factor(n) for n in norms], rtol=1e-6)
    # No signal and non-finite norms: factor 1 (layer_factor's policy).
    for norm in (0.0, jnp.inf, jnp.nan):
      self.assertEqual(float(layerlr_optax.layer_factor(norm)), 1.0)
    # Positive norms below sqrt(tiny) are raised to it: the largest factor.
    cap = reference.factor(np.sqrt(np.finfo(np.float32).tiny))
    np.testing.assert_allclose(layerlr_optax.layer_factor(1e-30), cap,
                               rtol=1e-6)


class EdgeCasesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_zero_layer_gets_zero_update_others_unaffected(self):
    grads = random_grads(4)
    grads['dense/kernel'] = np.zeros_like(grads['dense/kernel'])
    grads['dense/bias'] = np.zeros_like(grads['dense/bias'])
    opt = layerlr_optax.scale_by_layer_gradient()
    out, _ = self.variant(opt.update)(nest(grads), opt.init(nest(grads)))
    flat = flatten(out)
    self.assertTrue(all(np.all(np.isfinite(v)) for v in flat.values()))
    np.testing.assert_array_equal(flat['dense/kernel'], 0.0)
    expected = expected_scaled(
        {k: v for k, v in grads.items() if not k.startswith('dense')},
        [l for l in MODULE_LAYERS if not l[0].startswith('dense')])
    for k, v in expected.items():
      np.testing.assert_allclose(flat[k], v, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_tiny_norm_stays_finite(self):
    grads = {'a': {'w': jnp.full((4,), 1e-18)}, 'b': {'w': jnp.ones(3)},
             'c': {'w': jnp.full((4,), 1e-30)}}
    opt = layerlr_optax.scale_by_layer_gradient()
    out, _ = self.variant(opt.update)(grads, opt.init(grads))
    self.assertTrue(all(np.all(np.isfinite(x)) for x in jax.tree.leaves(out)))
    # Squares still in float32's normal range: eq. 9 as it is (~41.7).
    np.testing.assert_allclose(out['a']['w'], 1e-18 * reference.factor(2e-18),
                               rtol=1e-5)
    np.testing.assert_allclose(out['b']['w'],
                               reference.factor(np.sqrt(3.0)), rtol=1e-6)
    # Squares below float32's range (1e-60): the sum of squares is 0, as
    # float32 sees it no signal (Adam's second moment underflows there too),
    # so factor 1, documented in layer_factor.
    np.testing.assert_array_equal(out['c']['w'], grads['c']['w'])

  @chex.variants(with_jit=True, without_jit=True)
  def test_nan_and_inf_stay_in_their_layer(self):
    grads = {'a': {'w': jnp.array([1.0, jnp.nan])},
             'b': {'w': jnp.array([1.0, jnp.inf])},
             'c': {'w': jnp.array([0.3, 0.4])}}
    opt = layerlr_optax.scale_by_layer_gradient()
    out, _ = self.variant(opt.update)(grads, opt.init(grads))
    # Factor 1 for both: the NaN stays where it was, nothing else is NaN.
    np.testing.assert_array_equal(out['a']['w'], [1.0, np.nan])
    np.testing.assert_array_equal(out['b']['w'], [1.0, np.inf])
    np.testing.assert_allclose(out['c']['w'],
                               np.array([0.3, 0.4]) * reference.factor(0.5),
                               rtol=1e-6)

  @parameterized.parameters(jnp.bfloat16, jnp.float16)
  def test_low_precision(self, dtype):
    grads = random_grads(5)
    low = {k: jnp.asarray(v, dtype) for k, v in grads.items()}
    opt = layerlr_optax.scale_by_layer_gradient()
    out, _ = jax.jit(opt.update)(nest(low), opt.init(nest(low)))
    for leaf in jax.tree.leaves(out):
      self.assertEqual(leaf.dtype, dtype)
    # Reference from the same low-precision values, accumulated exactly.
    exact = expected_scaled({k: np.asarray(v, np.float64)
                             for k, v in low.items()}, MODULE_LAYERS)
    # atol covers float16's subnormal range (spacing 6e-8 below 6e-5).
    assert_tree_close(out, exact, rtol=1e-2, atol=1e-6)

  def test_bf16_norm_accumulated_in_float32(self):
    # 2^16 ones: in bf16 the running sum of squares would stall at 256.
    grads = {'l': {'w': jnp.ones((1 << 16,), jnp.bfloat16)}}
    stats = layerlr_optax.layer_stats(grads)
    np.testing.assert_allclose(stats['l']['grad_norm'], 256.0, rtol=1e-6)
    self.assertEqual(stats['l']['factor'].dtype, jnp.float32)

  def test_empty_tree(self):
    opt = layerlr_optax.scale_by_layer_gradient()
    out, _ = opt.update({}, opt.init({}))
    self.assertEqual(out, {})


class StructuresTest(chex.TestCase):

  def test_none_and_masked_nodes_are_skipped(self):
    grads = {'a': {'w': jnp.ones(4), 'frozen': None},
             'b': {'w': jnp.ones(1), 'm': optax.MaskedNode()}}
    opt = layerlr_optax.scale_by_layer_gradient()
    out, _ = opt.update(grads, opt.init(grads))
    self.assertIsNone(out['a']['frozen'])
    self.assertIsInstance(out['b']['m'], optax.MaskedNode)
    np.testing.assert_allclose(out['a']['w'], reference.factor(2.0),
                               rtol=1e-6)

  def test_tuples_lists_namedtuples_dataclasses(self):

    class Layer(NamedTuple):
      w: jax.Array
      b: jax.Array

    @functools.partial(jax.tree_util.register_dataclass,
                       data_fields=['first', 'second'], meta_fields=[])
    @dataclasses.dataclass
    class Block:
      first: Layer
      second: Layer

    tree = [Block(Layer(jnp.full(3, 0.1), jnp.full(1, 0.1)),
                  Layer(jnp.full(2, 5.0), jnp.full(2, 5.0))),
            (jnp.full(4, 0.5),)]
    self.assertEqual(layerlr_optax.layer_partition(tree), {
        '0/first': ['0/first/w', '0/first/b'],
        '0/second': ['0/second/w', '0/second/b'],
        '1': ['1/0'],
    })
    opt = layerlr_optax.scale_by_layer_gradient()
    out, _ = opt.update(tree, opt.init(tree))
    np.testing.assert_allclose(out[0].first.w,
                               0.1 * reference.factor(0.2), rtol=1e-6)
    np.testing.assert_allclose(out[0].second.b,
                               5.0 * reference.factor(10.0), rtol=1e-6)
    np.testing.assert_allclose(out[1][0], 0.5 * reference.factor(1.0),
                               rtol=1e-6)


class OptaxCompositionTest(chex.TestCase):

  def setUp(self):
    super().setUp()
    self.params = nest({k: np.ones(s, np.float32) for k, s in SHAPES.items()})
    self.grads = nest(random_grads(6))

  def test_no_recompilation(self):
    traces = []
    opt = layerlr_optax.sgd(0.1, momentum=0.9)

    @jax.jit
    def step(params, state, grads):
      traces.append(1)
      updates, state = opt.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    params, state = self.params, opt.init(self.params)
    for seed in range(3):
      params, state = step(params, state, nest(random_grads(seed)))
    self.assertLen(traces, 1)

  def test_inject_hyperparams(self):
    injected = optax.inject_hyperparams(layerlr_optax.sgd)(
        learning_rate=0.1, momentum=0.9)
    plain = layerlr_optax.sgd(0.1, momentum=0.9)
    s1, s2 = injected.init(self.params), plain.init(self.params)
    for _ in range(3):
      u1, s1 = jax.jit(injected.update)(self.grads, s1, self.params)
      u2, s2 = plain.update(self.grads, s2, self.params)
      chex.assert_trees_all_close(u1, u2, rtol=1e-6)
    s1.hyperparams['learning_rate'] = jnp.asarray(0.05)
    u1, _ = injected.update(self.grads, s1, self.params)
    plain_half = layerlr_optax.sgd(0.05, momentum=0.9)
    u3, _ = plain_half.update(self.grads, s2, self.params)
    chex.assert_trees_all_close(u1, u3, rtol=1e-6)
    adagrad = optax.inject_hyperparams(layerlr_optax.adagrad)(learning_rate=0.1)
    got, _ = jax.jit(adagrad.update)(self.grads, adagrad.init(self.params),
                                     self.params)
    plain = layerlr_optax.adagrad(0.1)
    want, _ = plain.update(self.grads, plain.init(self.params), self.params)
    chex.assert_trees_all_close(got, want, rtol=1e-6)

  def test_multi_steps_averages_then_scales(self):
    opt = optax.MultiSteps(layerlr_optax.sgd(1.0), every_k_schedule=2)
    state = opt.init(self.params)
    g2 = nest(random_grads(7))
    u1, state = opt.update(self.grads, state, self.params)
    chex.assert_trees_all_close(u1, jax.tree.map(jnp.zeros_like, u1))
    u2, state = opt.update(g2, state, self.params)
    mean = {k: (flatten(self.grads)[k] + flatten(g2)[k]) / 2 for k in SHAPES}
    assert_tree_close(u2, {k: -v for k, v in
                           expected_scaled(mean, MODULE_LAYERS).items()},
                      rtol=1e-5, atol=1e-8)

  def test_masked(self):
    mask = {'conv1': {'kernel': True, 'bias': False},
            'dense': {'kernel': True, 'bias': True},
            'head': {'kernel': False}}
    opt = optax.masked(layerlr_optax.scale_by_layer_gradient(), mask)
    out, _ = opt.update(self.grads, opt.init(self.params), self.params)
    flat = flatten(self.grads)
    # conv1's layer is its kernel alone inside the mask.
    expected = expected_scaled(
        {k: flat[k] for k in ('conv1/kernel', 'dense/kernel', 'dense/bias')},
        [['conv1/kernel'], ['dense/bias', 'dense/kernel']])
    expected.update({'conv1/bias': flat['conv1/bias'],
                     'head/kernel': flat['head/kernel']})
    assert_tree_close(out, expected, rtol=1e-5)

  def test_multi_transform(self):
    labels = {'conv1': 'layer', 'dense': 'layer', 'head': 'plain'}
    opt = optax.multi_transform(
        {'layer': layerlr_optax.sgd(1.0), 'plain': optax.sgd(1.0)}, labels)
    out, _ = jax.jit(opt.update)(self.grads, opt.init(self.params),
                                 self.params)
    flat = flatten(self.grads)
    expected = expected_scaled({k: v for k, v in flat.items()
                                if not k.startswith('head')},
                               MODULE_LAYERS[:2])
    expected['head/kernel'] = flat['head/kernel']
    assert_tree_close(out, {k: -v for k, v in expected.items()}, rtol=1e-5)

  def test_extra_args_pass_through(self):
    seen = {}

    def needs_loss():

      def update_fn(updates, state, params=None, *, loss):
        seen['loss'] = loss
        return updates, state

      return optax.GradientTransformationExtraArgs(
          lambda p: optax.EmptyState(), update_fn)

    opt = optax.chain(layerlr_optax.scale_by_layer_gradient(), needs_loss())
    opt.update(self.grads, opt.init(self.params), self.params, loss=3.0)
    self.assertEqual(seen['loss'], 3.0)
    wrapped = layerlr_optax.layerwise(needs_loss())
    wrapped.update(self.grads, wrapped.init(self.params), self.params, loss=4.0)
    self.assertEqual(seen['loss'], 4.0)

  def test_tree_map_params_over_state(self):
    opt = layerlr_optax.sgd(0.1, momentum=0.9)
    state = opt.init(self.params)
    mapped = optax.tree.map_params(opt, lambda p: 'spec', state)
    self.assertEqual(jax.tree.leaves(mapped),
                     ['spec'] * len(jax.tree.leaves(self.params)))

  def test_state_is_the_base_optimizers(self):
    # Checkpoints move between optax.sgd/adagrad and the layer versions.
    for ours, theirs in ((layerlr_optax.sgd(0.1, 0.9), optax.sgd(0.1, 0.9)),
                         (layerlr_optax.adagrad(0.1), optax.adagrad(0.1))):
      self.assertEqual(jax.tree.structure(ours.init(self.params)),
                       jax.tree.structure(theirs.init(self.params)))


class RecordedFactorsTest(chex.TestCase):
  """record_factors=True keeps exactly the factors applied, per layer."""

  def setUp(self):
    super().setUp()
    self.params = nest({k: np.ones(s, np.float32) for k, s in SHAPES.items()})

  def _expected(self, grads):
    return {layer[0].split('/')[0]: reference.factor(np.sqrt(sum(
        np.sum(grads[k].astype(np.float64)**2) for k in layer)))
            for layer in MODULE_LAYERS}

  @chex.variants(with_jit=True, without_jit=True)
  def test_every_transform_records_the_factors_it_applied(self):
    makers = {
        'scale_by_layer_gradient': lambda r: optax.chain(
            layerlr_optax.scale_by_layer_gradient(record_factors=r),
            optax.sgd(0.1)),
        'layerwise': lambda r: layerlr_optax.layerwise(optax.adam(1e-2),
                                                       record_factors=r),
        'sgd': lambda r: layerlr_optax.sgd(0.1, 0.9, record_factors=r),
        'adagrad': lambda r: layerlr_optax.adagrad(0.1, record_factors=r),
    }
    for name, make in makers.items():
      recording, plain = make(True), make(False)
      s1, s2 = recording.init(self.params), plain.init(self.params)
      initial = layerlr_optax.recorded_factors(s1)
      self.assertEqual(list(initial), ['conv1', 'dense', 'head'], name)
      chex.assert_trees_all_equal(initial, {k: jnp.float32(1.0)
                                            for k in initial})
      for seed in range(3):
        grads = random_grads(seed)
        u1, s1 = self.variant(recording.update)(nest(grads), s1, self.params)
        u2, s2 = self.variant(plain.update)(nest(grads), s2, self.params)
        # Recording changes nothing about the step: the same formula, but
        # under jit another program, which XLA may fuse differently (seen
        # at jax 0.4.35: 5e-6 relative on an element 500x below the
        # largest), so equal to a few float32 ulps of the step's scale.
        eps = np.finfo(np.float32).eps
        scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(u2))
        chex.assert_trees_all_close(u1, u2, rtol=32 * eps,
                                    atol=32 * eps * scale)
        recorded = layerlr_optax.recorded_factors(s1)
        for layer, value in self._expected(grads).items():
          np.testing.assert_allclose(recorded[layer], value, rtol=1e-5,
                                     err_msg=f'{name} {layer}')

  def test_off_keeps_the_state_and_on_wraps_it(self):
    base = optax.adam(1e-3)
    self.assertEqual(
        jax.tree.structure(layerlr_optax.layerwise(base).init(self.params)),
        jax.tree.structure(base.init(self.params)))
    state = layerlr_optax.layerwise(base, record_factors=True).init(
        self.params)
    self.assertIsInstance(state, layerlr_optax.LayerwiseState)
    self.assertEqual(jax.tree.structure(state.base_state),
                     jax.tree.structure(base.init(self.params)))
    self.assertIsInstance(
        layerlr_optax.scale_by_layer_gradient().init(self.params),
        optax.EmptyState)

  def test_found_inside_wrappers(self):
    grads = random_grads(3)
    for opt in (
        optax.inject_hyperparams(layerlr_optax.sgd)(learning_rate=0.1,
                                                    record_factors=True),
        optax.MultiSteps(layerlr_optax.adagrad(0.1, record_factors=True),
                         every_k_schedule=1)):
      state = opt.init(self.params)
      _, state = opt.update(nest(grads), state, self.params)
      recorded = layerlr_optax.recorded_factors(state)
      for layer, value in self._expected(grads).items():
        np.testing.assert_allclose(recorded[layer], value, rtol=1e-5)

  def test_missing_or_ambiguous_record_is_an_error(self):
    with self.assertRaisesRegex(ValueError, 'no recorded layer factors.*'
                                'record_factors=True'):
      layerlr_optax.recorded_factors(optax.adam(1e-3).init(self.params))
    twice = optax.chain(
        layerlr_optax.scale_by_layer_gradient(record_factors=True),
        layerlr_optax.scale_by_layer_gradient(record_factors=True))
    # Two recorders of the same layers: which factor is ambiguous.
    with self.assertRaisesRegex(ValueError, 'holds 2 sets'):
      layerlr_optax.recorded_factors(twice.init(self.params))
    with self.assertRaisesRegex(TypeError, 'record_factors must be True'):
      layerlr_optax.layerwise(optax.sgd(0.1), record_factors='yes')


class ExcludeTest(chex.TestCase):
  """exclude=...: chosen leaves keep factor 1 (the base optimizer's update)
  and leave the layer norms; the other leaves scale as if they were alone."""

  def setUp(self):
    super().setUp()
    self.params = nest({k: np.ones(s, np.float32) for k, s in SHAPES.items()})
    # Biases and the whole head excluded, as a mask and as a callable.
    self.mask = {'conv1': {'kernel': False, 'bias': True},
                 'dense': {'kernel': False, 'bias': True}, 'head': True}
    self.by_name = lambda tree: jax.tree_util.tree_map_with_path(
        lambda path, _: path[-1].key == 'bias' or path[0].key == 'head',
        tree)

  def _expected(self, grads, scale_of):
    """Kernels of conv1/dense scaled by their own factor; the rest 1."""
    factors = {m: reference.factor(np.linalg.norm(
        grads[f'{m}/kernel'].astype(np.float64))) for m in ('conv1', 'dense')}
    return {k: scale_of(k, factors.get(k.split('/')[0], 1.0)
                        if k.endswith('kernel') and not k.startswith('head')
                        else 1.0) for k in grads}

  @chex.variants(with_jit=True, without_jit=True)
  def test_scale_by_layer_gradient(self):
    grads = random_grads(11)
    for exclude in (self.mask, self.by_name):
      opt = layerlr_optax.scale_by_layer_gradient(exclude=exclude)
      out, _ = self.variant(opt.update)(nest(grads), opt.init(self.params))
      factor = self._expected(grads, lambda k, f: f)
      assert_tree_close(out, {k: g.astype(np.float64) * factor[k]
                              for k, g in grads.items()}, rtol=1e-5)
      flat_out = flatten(out)
      for k in ('conv1/bias', 'dense/bias', 'head/kernel'):
        np.testing.assert_array_equal(flat_out[k], grads[k])  # exactly

  def test_excluded_leaves_get_exactly_the_base_update(self):
    pairs = {
        'layerwise(adam)': (layerlr_optax.layerwise(optax.adam(1e-2),
                                                    exclude=self.mask),
                            optax.adam(1e-2)),
        'sgd': (layerlr_optax.sgd(0.1, 0.9, exclude=self.mask),
                optax.sgd(0.1, 0.9)),
        'adagrad': (layerlr_optax.adagrad(0.1, exclude=self.by_name),
                    optax.adagrad(0.1)),
    }
    for name, (ours, theirs) in pairs.items():
      s1, s2 = ours.init(self.params), theirs.init(self.params)
      for seed in range(3):
        grads = nest(random_grads(seed))
        u1, s1 = jax.jit(ours.update)(grads, s1, self.params)
        u2, s2 = jax.jit(theirs.update)(grads, s2, self.params)
        for module, leaf in (('conv1', 'bias'), ('dense', 'bias'),
                             ('head', 'kernel')):
          np.testing.assert_array_equal(u1[module][leaf], u2[module][leaf],
                                        err_msg=f'{name} {module}/{leaf}')
        assert not np.allclose(u1['conv1']['kernel'], u2['conv1']['kernel'])

  def test_partition_stats_and_recorded_factors_leave_them_out(self):
    part = layerlr_optax.layer_partition(self.params, exclude=self.mask)
    self.assertEqual(part, {'conv1': ['conv1/kernel'],
                            'dense': ['dense/kernel']})
    grads = random_grads(2)
    stats = layerlr_optax.layer_stats(nest(grads), exclude=self.mask)
    np.testing.assert_allclose(
        stats['dense']['grad_norm'],
        np.linalg.norm(grads['dense/kernel'].astype(np.float64)), rtol=1e-5)
    opt = layerlr_optax.sgd(0.1, record_factors=True, exclude=self.mask)
    state = opt.init(self.params)
    self.assertEqual(set(layerlr_optax.recorded_factors(state)),
                     {'conv1', 'dense'})

  def test_bad_masks(self):
    with self.assertRaisesRegex(TypeError, 'exclude must hold True/False'):
      layerlr_optax.scale_by_layer_gradient(exclude={'conv1': 'bias'})
    opt = layerlr_optax.scale_by_layer_gradient(exclude={'a': True})
    with self.assertRaisesRegex(ValueError, '`exclude` mask pytree does not'):
      opt.update(nest(random_grads(0)), opt.init(self.params))


class MaxFactorTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_the_cap_applies_to_every_layer_and_is_recorded(self):
    grads = random_grads(4)
    params = nest({k: np.ones(s, np.float32) for k, s in SHAPES.items()})
    opt = layerlr_optax.scale_by_layer_gradient(max_factor=2.0,
                                                record_factors=True)
    out, state = self.variant(opt.update)(nest(grads), opt.init(params))
    factors = reference.layer_factors(grads, MODULE_LAYERS)
    assert_tree_close(out, {k: g.astype(np.float64) * min(factors[k], 2.0)
                            for k, g in grads.items()}, rtol=1e-5)
    recorded = layerlr_optax.recorded_factors(state)
    self.assertEqual(float(recorded['conv1']), 2.0)  # 1e-4 gradients: capped
    self.assertLess(float(recorded['head']), 2.0)  # large gradients: not

  def test_bad_caps(self):
    for bad, error in ((0.5, ValueError), (-1.0, ValueError),
                       (np.float32(0.9), ValueError),
                       (jnp.array(0.5), ValueError),
                       (float('nan'), ValueError), (True, TypeError),
                       ('2', TypeError), (jnp.ones(2) * 2, TypeError)):
      with self.assertRaisesRegex(error, 'max_factor must be'):
        layerlr_optax.layerwise(optax.sgd(0.1), max_factor=bad)


class BadInputTest(chex.TestCase):

  def test_unknown_layers_mode(self):
    with self.assertRaisesRegex(ValueError, "unknown layers='modules'"):
      layerlr_optax.scale_by_layer_gradient(layers='modules')

  def test_unhashable_label(self):
    with self.assertRaisesRegex(TypeError, 'not hashable'):
      layerlr_optax.scale_by_layer_gradient(layers={'a': np.ones(2)})

  def test_labels_not_matching_updates(self):
    opt = layerlr_optax.scale_by_layer_gradient(layers={'a': 0, 'b': 1})
    grads = {'a': jnp.ones(2), 'c': jnp.ones(2)}
    with self.assertRaisesRegex(ValueError, 'labels pytree does not match'):
      opt.update(grads, opt.init(grads))

  @parameterized.parameters(jnp.int32, jnp.bool_)
  def test_non_float_leaves(self, dtype):
    grads = {'a': {'w': jnp.ones(2), 'step': jnp.zeros((), dtype)}}
    opt = layerlr_optax.scale_by_layer_gradient()
    with self.assertRaisesRegex(TypeError, r"'a/step' has dtype"):
      opt.update(grads, opt.init(grads))

  def test_negative_hyperparameters(self):
    # The same refusal whatever the type a concrete value comes as.
    for bad in (-0.1, np.float32(-0.1), jnp.array(-0.1), np.array(-0.1)):
      with self.assertRaisesRegex(ValueError,
                                  'learning_rate must be a finite number'):
        layerlr_optax.sgd(bad)
      with self.assertRaisesRegex(ValueError,
                                  'momentum must be a finite number'):
        layerlr_optax.sgd(0.1, momentum=bad)
      with self.assertRaisesRegex(ValueError, 'eps must be a finite number'):
        layerlr_optax.adagrad(0.1, eps=bad)
      with self.assertRaisesRegex(
          ValueError, 'initial_accumulator_value must be a finite number'):
        layerlr_optax.adagrad(0.1, initial_accumulator_value=bad)
    with self.assertRaisesRegex(TypeError, 'learning_rate must be a number'):
      layerlr_optax.sgd('0.1')

  def test_params_missing_where_needed(self):
    opt = layerlr_optax.layerwise(optax.adamw(1e-3))
    grads = {'a': jnp.ones(2)}
    with self.assertRaisesRegex(ValueError, 'params'):
      opt.update(grads, opt.init(grads))

  def test_base_changing_structure(self):

    def bad_update(updates, state, params=None):
      return {'other': jnp.ones(1)}, state

    opt = layerlr_optax.layerwise(optax.GradientTransformation(
        lambda p: optax.EmptyState(), bad_update))
    with self.assertRaisesRegex(
        ValueError, 'updates the wrapped optimizer returned have the '
        'structure'):
      opt.update({'a': jnp.ones(2)}, optax.EmptyState())


class StatsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_layer_stats_match_reference(self):
    grads = random_grads(8)
    stats = self.variant(layerlr_optax.layer_stats)(nest(grads))
    self.assertEqual(list(stats), ['conv1', 'dense', 'head'])
    for layer in MODULE_LAYERS:
      name = layer[0].split('/')[0]
      norm = np.sqrt(sum(np.sum(grads[k].astype(np.float64)**2)
                         for k in layer))
      np.testing.assert_allclose(stats[name]['grad_norm'], norm, rtol=1e-5)
      np.testing.assert_allclose(stats[name]['factor'],
                                 reference.factor(norm), rtol=1e-5)


@pytest.mark.parametrize('make', [
    lambda: layerlr_optax.layerwise(optax.adam(1e-3)),
    lambda: layerlr_optax.adagrad(0.1),
    lambda: layerlr_optax.sgd(0.1, momentum=0.9),
])
def test_no_gradient_sized_temporaries(make):
  """The norm's g*g is fused into its reduction, never written to memory.

  Regression test: merged with AdaGrad's/Adam's own g*g by XLA's CSE, it was
  materialised as a gradient-sized buffer (2.5-4x the update time on big
  leaves, benchmarks/README.md).
  """
  params = {'dense': {'kernel': jnp.ones((512, 512)), 'bias': jnp.ones(512)}}
  opt = make()
  state = opt.init(params)

  def step(p, s, g):
    updates, s = opt.update(g, s, p)
    return optax.apply_updates(p, updates), s

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, state, params).compile()
  temp = compiled.memory_analysis().temp_size_in_bytes
  gradient = 512 * 512 * 4
  import jaxlib
  if tuple(int(x) for x in jaxlib.__version__.split('.')[:3]) >= (0, 10, 2):
    # This XLA fuses the norm's g*g into its reduction.
    assert temp < gradient // 4, temp
  else:
    # Earlier XLA (measured on 0.4.35-0.10.0) writes g*g out once, with or
    # without the barrier: never more than one gradient-sized buffer.
    assert temp <= gradient + gradient // 4, temp
