"""The per-layer family beyond eq. 9: trust ratio (LARS, LAMB), layer-wise
rate decay, one second moment per layer (Adalayer).

References: optax's own per-array implementations (with every array a layer
and nothing stacked the package's rules must equal them), NumPy
transcriptions of each update, a hand-written `optax.multi_transform` LLRD,
and the same model unrolled (a stacked model must get the same updates).
"""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import layerlr_optax
from tests.package import reference
from tests.package.test_stacked import NUM_BLOCKS
from tests.package.test_stacked import gradient_sequence
from tests.package.test_stacked import run
from tests.package.test_stacked import stacked_params
from tests.package.test_stacked import unrolled


class Pair(tuple):
  """A tuple subclass: a pytree node type of its own (as users define)."""


def _battery():
  """Trees of the shapes users optimise: nested dicts, lists, tuples, a
  NamedTuple, scalars, a zero-initialised leaf, very different scales."""
  rng = np.random.default_rng(0)
  arr = lambda *s, scale=1.0: jnp.asarray(
      rng.standard_normal(s) * scale, jnp.float32)
  state_type = optax.ScaleByAdamState  # any NamedTuple
  return {
      'dict': {'conv': {'kernel': arr(3, 3, 2, 4), 'bias': arr(4)},
               'dense': {'kernel': arr(8, 5, scale=1e-3),
                         'bias': jnp.zeros(5)}},
      'list': [arr(4, 3), arr(3), arr(2, 2, scale=30.0)],
      'tuple_scalars': (arr(), arr(5), {'s': arr(scale=1e-4)}),
      'namedtuple': state_type(count=arr(2), mu={'w': arr(3, 3)},
                               nu=[arr(6)]),
  }


TREES = _battery()


def _grads_like(tree, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32)
      * (0.5 + seed), tree)


def _train(opt, params, steps=4, seed=1, jit=False):
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  for k in range(steps):
    grads = _grads_like(params, seed + k)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _close(a, b, rtol, atol=0.0, what=''):
  chex.assert_trees_all_equal_structs(a, b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x, np.float64),
                               np.asarray(y, np.float64), rtol=rtol,
                               atol=atol, err_msg=what)


# Several float32 steps, each a handful of roundings apart between two
# implementations (different reduction orders), then applied to the params.
# Bound, not this machine's digits: a norm of n float32 terms summed in
# another order differs by up to n * eps32 (relative); a ratio of two norms
# by twice that, per step, over the 4 steps of `_train`. n: the battery's
# largest leaf.
_LARGEST = max(int(np.size(x)) for tree in TREES.values()
               for x in jax.tree.leaves(tree))
RTOL = 4 * 2 * _LARGEST * float(np.finfo(np.float32).eps)
ATOL = 1e-7


class TrustRatioEqualsOptaxPerArray(chex.TestCase):
  """layers='leaf', nothing stacked: optax's rules, to float32 rounding."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(tree=list(TREES), hyper=[
      (0.0, 1.0, 0.0), (0.5, 0.3, 1e-3), (1e-3, 2.0, 1e-8)])
  def test_scale_by_trust_ratio(self, tree, hyper):
    params = TREES[tree]
    mine = layerlr_optax.scale_by_layer_trust_ratio(*hyper, layers='leaf')
    peer = optax.scale_by_trust_ratio(*hyper)
    grads = _grads_like(params, 3)
    got, _ = self.variant(mine.update)(grads, mine.init(params), params)
    want, _ = peer.update(grads, peer.init(params), params)
    _close(got, want, RTOL, ATOL)

  @parameterized.product(tree=list(TREES), jit=[False, True])
  def test_lars(self, tree, jit):
    params = TREES[tree]
    wd_mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    tr_mask = lambda p: jax.tree.map(lambda x: x.size > 3, p)
    kwargs = dict(weight_decay=1e-2, weight_decay_mask=wd_mask,
                  trust_coefficient=0.02, eps=1e-9, trust_ratio_mask=tr_mask,
                  momentum=0.8, nesterov=True)
    got, _ = _train(layerlr_optax.lars(0.1, layers='leaf', **kwargs), params,
                    jit=jit)
    want, _ = _train(optax.lars(0.1, **kwargs), params, jit=jit)
    _close(got, want, RTOL, ATOL)

  @parameterized.product(tree=list(TREES), jit=[False, True])
  def test_lamb(self, tree, jit):
    params = TREES[tree]
    mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    kwargs = dict(b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-9,
                  weight_decay=1e-2, mask=mask)
    got, _ = _train(layerlr_optax.lamb(0.05, layers='leaf', **kwargs),
                    params, jit=jit)
    want, _ = _train(optax.lamb(0.05, **kwargs), params, jit=jit)
    _close(got, want, RTOL, ATOL)

  def test_zero_norms_as_the_peer_and_non_finite_norms_give_one(self):
    params = {'zero': {'w': jnp.zeros(3)}, 'live': {'w': jnp.ones(3)},
              'nan': {'w': jnp.ones(2)}}
    grads = {'zero': {'w': jnp.ones(3)}, 'live': {'w': jnp.zeros(3)},
             'nan': {'w': jnp.array([jnp.nan, 1.0])}}
    mine = layerlr_optax.scale_by_layer_trust_ratio(record_factors=True)
    got, state = mine.update(grads, mine.init(params), params)
    want, _ = optax.scale_by_trust_ratio().update(grads, None, params)
    for layer in ('zero', 'live'):  # optax: ratio 1 where a norm is zero
      np.testing.assert_array_equal(got[layer]['w'], want[layer]['w'])
    ratios = layerlr_optax.recorded_factors(state)
    assert {k: float(v) for k, v in ratios.items()} == {
        'live': 1.0, 'nan': 1.0, 'zero': 1.0}
    assert np.isnan(np.asarray(want['nan']['w'])).all()  # optax: all NaN
    assert np.isnan(got['nan']['w'][0]) and got['nan']['w'][1] == 1.0

  def test_derivatives_finite_at_a_zero_layer(self):
    """A zero-initialised layer (ReZero): the meta-gradient through the
    update is finite, and equals finite differences where smooth."""
    tx = layerlr_optax.scale_by_layer_trust_ratio(min_norm=0.0)

    def loss(params, grads):
      updates, _ = tx.update(grads, tx.init(params), params)
      return sum(jnp.sum(u ** 2) for u in jax.tree.leaves(updates))

    params = {'a': {'w': jnp.zeros(3)}, 'b': {'w': jnp.array([1.0, 2.0])}}
    grads = {'a': {'w': jnp.ones(3)}, 'b': {'w': jnp.array([0.5, -1.0])}}
    dp, dg = jax.grad(loss, argnums=(0, 1))(params, grads)
    for leaf in jax.tree.leaves((dp, dg)):
      assert np.isfinite(np.asarray(leaf)).all()
    # d/dw of ||w||^2 (the ratio^2 ||g||^2 of layer b) = 2 w.
    np.testing.assert_allclose(dp['b']['w'], 2 * params['b']['w'], rtol=1e-5)


def _module_norms(tree, layer):
  return np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2)
                     for x in jax.tree.leaves(tree[layer])))


class TrustRatioPerLayer(chex.TestCase):

  def test_weight_and_bias_share_one_ratio(self):
    params = TREES['dict']
    grads = _grads_like(params, 5)
    tx = layerlr_optax.scale_by_layer_trust_ratio(trust_coefficient=0.5)
    got, _ = tx.update(grads, tx.init(params), params)
    for layer in params:
      ratio = 0.5 * _module_norms(params, layer) / _module_norms(grads, layer)
      if _module_norms(params, layer) == 0:
        ratio = 1.0
      for leaf in params[layer]:
        np.testing.assert_allclose(got[layer][leaf],
                                   ratio * np.asarray(grads[layer][leaf]),
                                   rtol=1e-6)

  def test_exclude_keeps_leaves_out_of_the_norms(self):
    params, grads = TREES['dict'], _grads_like(TREES['dict'], 6)
    tx = layerlr_optax.scale_by_layer_trust_ratio(
        exclude=layerlr_optax.matching_paths(r'/bias$'))
    got, _ = tx.update(grads, tx.init(params), params)
    for layer in params:
      np.testing.assert_array_equal(got[layer]['bias'], grads[layer]['bias'])
      w, g = (np.asarray(t[layer]['kernel'], np.float64)
              for t in (params, grads))
      ratio = reference.trust_ratio(w, g)
      np.testing.assert_allclose(got[layer]['kernel'], ratio * g, rtol=1e-6)

  def test_needs_params(self):
    tx = layerlr_optax.scale_by_layer_trust_ratio()
    with self.assertRaisesRegex(ValueError, 'needs the parameters'):
      tx.update({'w': jnp.ones(2)}, tx.init({'w': jnp.ones(2)}))

  @parameterized.parameters('min_norm', 'trust_coefficient', 'eps')
  def test_bad_hyperparameters(self, name):
    with self.assertRaisesRegex(ValueError, name):
      layerlr_optax.scale_by_layer_trust_ratio(**{name: -1.0})


STACKED = {'blocks': 0, 'head': None}
FAMILY = {
    'trust_ratio': lambda **kw: optax.chain(
        layerlr_optax.scale_by_layer_trust_ratio(**kw), optax.scale(-0.1)),
    'lars': lambda **kw: layerlr_optax.lars(0.1, weight_decay=1e-3, **kw),
    'lamb': lambda **kw: layerlr_optax.lamb(1e-2, weight_decay=1e-3, **kw),
    'adalayer': lambda **kw: layerlr_optax.adalayer(1e-2, **kw),
    'llrd': lambda **kw: optax.chain(optax.adamw(1e-2), (
        layerlr_optax.scale_by_layer_decay(
            0.5, ['block', 'head'] if 'stacked' not in kw else
            ['blocks', 'head'], **kw) if 'stacked' in kw else
        layerlr_optax.scale_by_layer_decay(
            0.5, [r'block_(\d+)', 'head'], **kw))),
}


class StackedEqualsUnrolled(chex.TestCase):
  """Each member on a scan-stacked model equals the model unrolled; optax's
  per-array peers do not."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(name, name) for name in FAMILY])
  def test_updates_equal_unrolled(self, name):
    make = FAMILY[name]
    grads = gradient_sequence()
    got, _ = run(make(stacked=STACKED), stacked_params(), grads,
                 self.variant)
    want, _ = run(make(), unrolled(stacked_params()),
                  [unrolled(g) for g in grads])
    for a, b in zip(got, want):
      chex.assert_trees_all_close(unrolled(a), b, rtol=1e-5, atol=1e-8)

  @parameterized.parameters(
      ('lars', lambda: optax.lars(0.1, weight_decay=1e-3)),
      ('lamb', lambda: optax.lamb(1e-2, weight_decay=1e-3)))
  def test_optax_per_array_peer_does_not(self, name, peer):
    """optax's one ratio per array is one ratio for the whole stack: the
    blocks' gradients are 10x apart per block, so the stacked run differs
    from the unrolled one by far more than rounding."""
    grads = gradient_sequence()
    got, _ = run(peer(), stacked_params(), grads)
    want, _ = run(peer(), unrolled(stacked_params()),
                  [unrolled(g) for g in grads])
    a = np.asarray(unrolled(got[-1])['block_3']['kernel'])
    b = np.asarray(want[-1]['block_3']['kernel'])
    assert np.max(np.abs(a - b)) > 100 * np.max(np.abs(b)) * 1e-5, name

  def test_trust_ratio_per_slice_matches_numpy(self):
    params, grads = stacked_params(), gradient_sequence()[1]
    tx = layerlr_optax.scale_by_layer_trust_ratio(stacked=STACKED,
                                                  record_factors=True)
    _, state = tx.update(grads, tx.init(params), params)
    ratios = layerlr_optax.recorded_factors(state)
    for i in range(NUM_BLOCKS):
      w = np.concatenate([np.asarray(params['blocks'][k][i]).ravel()
                          for k in ('bias', 'kernel')])
      g = np.concatenate([np.asarray(grads['blocks'][k][i]).ravel()
                          for k in ('bias', 'kernel')])
      np.testing.assert_allclose(ratios[f'blocks[{i}]'],
                                 reference.trust_ratio(w, g), rtol=1e-6)


# ---------------------------------------------------------------------------
# Layer-wise learning-rate decay.


def _bert_like(num_layers=3, seed=0):
  rng = np.random.default_rng(seed)
  arr = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  tree = {'embeddings': {'word': {'embedding': arr(11, 4)},
                         'norm': {'scale': arr(4), 'bias': arr(4)}},
          'encoder': {f'layer_{i}': {'attention': {'kernel': arr(4, 4)},
                                     'mlp': {'kernel': arr(4, 8),
                                             'bias': arr(8)}}
                      for i in range(num_layers)},
          'pooler': {'kernel': arr(4, 4)},
          'classifier': {'kernel': arr(4, 2), 'bias': arr(2)}}
  return tree


def _hand_written_llrd(lr, decay, num_layers):
  """The LLRD users write by hand (flax#756): one adamw per depth."""
  top = num_layers + 1

  def label(path, _):
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    if name.startswith('embeddings'):
      return 'd0'
    match = re.search(r'layer_(\d+)', name)
    if match:
      return f'd{int(match.group(1)) + 1}'
    return f'd{top}'

  transforms = {f'd{d}': optax.adamw(lr * decay ** (top - d),
                                     weight_decay=1e-2)
                for d in range(top + 1)}
  return optax.multi_transform(
      transforms, lambda p: jax.tree_util.tree_map_with_path(label, p))


class LayerDecayTest(chex.TestCase):

  @parameterized.product(num_layers=[3, 12], jit=[False, True])
  def test_equals_hand_written_multi_transform(self, num_layers, jit):
    params = _bert_like(num_layers)
    mine = optax.chain(
        optax.adamw(1e-2, weight_decay=1e-2),
        layerlr_optax.scale_by_layer_decay(
            0.65, ['^embeddings/', r'^encoder/layer_(\d+)/',
                   '^(?:pooler|classifier)$']))
    got, _ = _train(mine, params, jit=jit)
    want, _ = _train(_hand_written_llrd(1e-2, 0.65, num_layers), params,
                     jit=jit)
    _close(got, want, RTOL, ATOL)

  def test_numbers_rank_numerically_and_modules_of_a_block_share_a_depth(
      self):
    params = _bert_like(12)
    tx = layerlr_optax.scale_by_layer_decay(
        0.5, ['^embeddings/', r'layer_(\d+)', '.*'], record_factors=True)
    _, state = tx.update(params, tx.init(params))
    f = {k: float(v) for k, v in layerlr_optax.recorded_factors(state).items()}
    assert f['classifier'] == f['pooler'] == 1.0
    assert f['encoder/layer_11/mlp'] == f['encoder/layer_11/attention'] == 0.5
    assert f['encoder/layer_2/mlp'] == 0.5 ** 10
    assert f['encoder/layer_10/mlp'] == 0.5 ** 2
    assert f['embeddings/word'] == f['embeddings/norm'] == 0.5 ** 13

  def test_callable_depth_and_exclude(self):
    params = {'a': {'w': jnp.ones(2)}, 'b': {'w': jnp.ones(2)},
              'c': {'w': jnp.ones(2)}}
    tx = layerlr_optax.scale_by_layer_decay(
        0.1, lambda name: {'a': 0, 'b': 1}[name],
        exclude=layerlr_optax.matching_paths('^c/'))
    got, _ = tx.update(params, tx.init(params))
    np.testing.assert_allclose(got['a']['w'], 0.1, rtol=1e-6)
    np.testing.assert_array_equal(got['b']['w'], 1.0)
    np.testing.assert_array_equal(got['c']['w'], 1.0)

  def test_injected_decay_does_not_recompile(self):
    params = _bert_like(2)
    opt = optax.inject_hyperparams(
        lambda decay: optax.chain(optax.sgd(0.1), layerlr_optax.
                                  scale_by_layer_decay(decay, ['emb', '.*'])),
        static_args=())(decay=0.5)
    state = opt.init(params)
    traces = []

    @jax.jit
    def step(g, s):
      traces.append(1)
      return opt.update(g, s, params)

    grads = jax.tree.map(jnp.ones_like, params)
    u1, state = step(grads, state)
    state.hyperparams['decay'] = jnp.asarray(0.25, jnp.float32)
    u2, state = step(grads, state)
    assert len(traces) == 1
    np.testing.assert_allclose(u1['embeddings']['word']['embedding'], -0.05)
    np.testing.assert_allclose(u2['embeddings']['word']['embedding'], -0.025)

  @parameterized.named_parameters(
      ('unmatched', ['emb'], 'no depth pattern matches'),
      ('not_a_number', ['(emb)', '.*'], 'non-capturing group'),
      ('a_string', 'emb', 'non-empty list'),
  )
  def test_bad_depths_are_refused(self, depth, message):
    params = _bert_like(2)
    with self.assertRaisesRegex((ValueError, TypeError), message):
      tx = layerlr_optax.scale_by_layer_decay(0.5, depth)
      tx.update(params, tx.init(params))

  def test_a_stacked_layer_with_a_numbered_pattern_is_ambiguous(self):
    tx = layerlr_optax.scale_by_layer_decay(0.5, [r'block(s)', '.*'],
                                            stacked=STACKED)
    with self.assertRaisesRegex(ValueError, 'captured'):
      tx.update(stacked_params(), tx.init(stacked_params()))
    tx = layerlr_optax.scale_by_layer_decay(0.5, [r'(\d)', '.*'],
                                            stacked=STACKED, layers={
                                                'blocks': 'b1', 'head': 'h'})
    with self.assertRaisesRegex(ValueError, 'ambiguous'):
      tx.update(stacked_params(), tx.init(stacked_params()))

  @parameterized.parameters(0.0, -0.5, float('nan'))
  def test_decay_must_be_positive(self, decay):
    with self.assertRaisesRegex(ValueError, 'decay'):
      layerlr_optax.scale_by_layer_decay(decay, ['.*'])

  def test_callable_must_return_a_depth(self):
    tx = layerlr_optax.scale_by_layer_decay(0.5, lambda name: 'top')
    with self.assertRaisesRegex(ValueError, 'non-negative int'):
      tx.update({'a': {'w': jnp.ones(1)}}, optax.EmptyState())


# ---------------------------------------------------------------------------
# One second moment per layer.


class NumpyAdalayer:
  """An independent transcription of the update (Zhao et al., 2024, with
  the blocks' mean square; optax's conventions for bias correction)."""

  def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0):
    self.lr, self.b1, self.b2 = lr, b1, b2
    self.eps, self.eps_root = eps, eps_root
    self.m, self.v, self.k = {}, {}, 0

  def step(self, params, grads, blocks):
    """`blocks`: block name -> list of (leaf name, index or None)."""
    self.k += 1
    out = dict(params)
    for name, g in grads.items():
      self.m[name] = (1 - self.b1) * g + self.b1 * self.m.get(name, 0.0)
    for block, members in blocks.items():
      values = np.concatenate([
          (grads[leaf] if i is None else grads[leaf][i]).ravel()
          for leaf, i in members])
      self.v[block] = ((1 - self.b2) * np.mean(values ** 2)
                       + self.b2 * self.v.get(block, 0.0))
      v_hat = self.v[block] / (1 - self.b2 ** self.k)
      denom = np.sqrt(v_hat + self.eps_root) + self.eps
      for leaf, i in members:
        m_hat = self.m[leaf] / (1 - self.b1 ** self.k)
        step = -self.lr * m_hat / denom
        if i is None:
          out[leaf] = out[leaf] + step
        else:
          out[leaf] = out[leaf].copy()
          out[leaf][i] = out[leaf][i] + step[i]
    return out


class AdalayerTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_equals_numpy_transcription_with_stacked_blocks(self):
    params = stacked_params()
    grads = gradient_sequence()
    opt = layerlr_optax.adalayer(1e-2, b1=0.8, b2=0.95, eps=1e-7,
                                 eps_root=1e-12, stacked=STACKED)
    state = opt.init(params)
    flat = lambda t: {'blocks/bias': np.asarray(t['blocks']['bias'],
                                                np.float64),
                      'blocks/kernel': np.asarray(t['blocks']['kernel'],
                                                  np.float64),
                      'head/w': np.asarray(t['head']['w'], np.float64)}
    blocks = {f'blocks[{i}]': [('blocks/bias', i), ('blocks/kernel', i)]
              for i in range(NUM_BLOCKS)}
    blocks['head'] = [('head/w', None)]
    ref = NumpyAdalayer(1e-2, b1=0.8, b2=0.95, eps=1e-7, eps_root=1e-12)
    want = flat(params)
    update = self.variant(opt.update)
    for g in grads:
      updates, state = update(g, state, params)
      params = optax.apply_updates(params, updates)
      want = ref.step(want, flat(g), blocks)
      for k, v in flat(params).items():
        np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-9,
                                   err_msg=k)

  def test_one_entry_per_layer_is_adam(self):
    params = {'a': jnp.asarray(1.0), 'b': jnp.asarray(-2.0),
              'c': jnp.asarray(0.5)}
    got, got_state = _train(layerlr_optax.adalayer(0.1, layers='leaf'),
                            params, steps=6)
    want, _ = _train(optax.adam(0.1), params, steps=6)
    _close(got, want, RTOL, ATOL)
    assert {k: v.shape for k, v in got_state[0].nu.items()} == {
        'a': (), 'b': (), 'c': ()}

  def test_excluded_leaves_are_adam(self):
    params = TREES['dict']
    opt = layerlr_optax.adalayer(
        0.1, exclude=layerlr_optax.matching_paths('^dense/'))
    got, _ = _train(opt, params)
    want, _ = _train(optax.adam(0.1), params)
    _close(got['dense'], want['dense'], RTOL, ATOL)
    assert not np.allclose(got['conv']['kernel'], want['conv']['kernel'])

  def test_state_is_about_half_of_adams(self):
    params = stacked_params()
    size = lambda s: sum(np.size(x) for x in jax.tree.leaves(s))
    mine = size(layerlr_optax.adalayer(1e-3, stacked=STACKED).init(params))
    adam = size(optax.adam(1e-3).init(params))
    num_params = size(params)
    # count + mu (one per parameter) + one scalar per layer and slice.
    assert mine == 1 + num_params + NUM_BLOCKS + 1
    assert adam == 1 + 2 * num_params

  def test_mu_dtype_and_recorded_multipliers(self):
    params = TREES['dict']
    opt = layerlr_optax.adalayer(0.1, mu_dtype=jnp.bfloat16,
                                 record_factors=True)
    _, state = _train(opt, params, steps=2)
    assert all(x.dtype == jnp.bfloat16
               for x in jax.tree.leaves(state[0][0].mu))
    recorded = layerlr_optax.recorded_factors(state)
    nu = state[0][0].nu
    # 1 - b2**k in float32 carries a relative error up to eps32 / (1 -
    # b2**k), halved by the square root; float64 here.
    correction = 1 - 0.999 ** 2
    rtol = 2 * np.finfo(np.float32).eps / correction
    for layer, value in recorded.items():
      v_hat = np.float64(nu[layer]) / correction
      np.testing.assert_allclose(value, 1 / (np.sqrt(v_hat) + 1e-8),
                                 rtol=rtol)

  def test_inject_hyperparams(self):
    params = TREES['dict']
    opt = optax.inject_hyperparams(layerlr_optax.adalayer)(
        learning_rate=0.1, b1=0.9, b2=0.99)
    got, _ = _train(opt, params, jit=True)
    want, _ = _train(layerlr_optax.adalayer(0.1, b1=0.9, b2=0.99), params)
    # Injected, b2 is a float32 array: 1 - b2 and 1 - b2**k then round
    # differently from the Python float's, a relative error up to
    # eps32 / (1 - b2) in the second moment, per step.
    _close(got, want, 4 * np.finfo(np.float32).eps / (1 - 0.99), ATOL)


class FamilyCompositionTest(chex.TestCase):
  """What every member shares with eq. 9: inject_hyperparams, MultiSteps,
  masked, layerwise around them, and the exclusion/partition rules."""

  @parameterized.named_parameters(*[(name, name) for name in FAMILY])
  def test_multisteps_masked_and_jit(self, name):
    params = unrolled(stacked_params())
    make = FAMILY[name]
    opt = optax.MultiSteps(make(), every_k_schedule=2)
    got, _ = _train(opt, params, steps=4, jit=True)
    assert all(np.isfinite(np.asarray(x)).all()
               for x in jax.tree.leaves(got))
    # optax.masked passes the masked-out leaves' gradients through as they
    # are; the member sees (and partitions) only the others.
    masked = optax.masked(make(), lambda p: {k: k != 'head' for k in p})
    got_masked, _ = _train(masked, params, steps=2)
    passed_through = np.asarray(params['head']['w']) + sum(
        np.asarray(_grads_like(params, 1 + k)['head']['w']) for k in range(2))
    np.testing.assert_allclose(got_masked['head']['w'], passed_through,
                               rtol=1e-6)

  def test_eq9_on_top_of_a_per_layer_rule(self):
    params = TREES['dict']
    opt = layerlr_optax.layerwise(layerlr_optax.lars(0.1),
                                  record_factors=True)
    _, state = _train(opt, params, steps=2)
    assert set(layerlr_optax.recorded_factors(state)) == {'conv', 'dense'}

  def test_partition_is_the_same_for_every_member(self):
    params = stacked_params()
    names = set(layerlr_optax.layer_partition(params, stacked=STACKED))
    for name in ('trust_ratio', 'adalayer'):
      kw = dict(stacked=STACKED, record_factors=True)
      make = FAMILY[name]
      _, state = _train(make(**kw), params, steps=1)
      assert set(layerlr_optax.recorded_factors(state)) == names, name


@pytest.mark.parametrize('make', [
    lambda: layerlr_optax.scale_by_layer_trust_ratio(record_factors=1),
    lambda: layerlr_optax.scale_by_layer_adam(b1=-0.1),
    # A decay rate of 1 divides by a zero bias correction: NaN, silently.
    lambda: layerlr_optax.scale_by_layer_adam(b2=1.0),
    lambda: layerlr_optax.adalayer(0.1, b1=1.5),
    lambda: layerlr_optax.lamb(0.1, b2=1.0),
    lambda: layerlr_optax.lamb(0.1, eps=-1e-6),
    lambda: layerlr_optax.lars(0.1, momentum='high'),
    lambda: layerlr_optax.scale_by_layer_decay(0.5, [3]),
    lambda: layerlr_optax.adalayer(0.1, layers='block'),
])
def test_bad_input_is_refused_at_construction(make):
  with pytest.raises((TypeError, ValueError), match='layerlr_optax'):
    make()


@pytest.mark.parametrize('name', sorted(FAMILY))
def test_empty_tree_is_a_no_op(name):
  # A model part with no trainable leaves (optax.partition, a frozen
  # module) reaches every member as an empty tree.
  tx = FAMILY[name]()
  updates, _ = tx.update({}, tx.init({}), {})
  assert updates == {}
