"""The composition contract (#30), written as users write the code.

What goes inside `layerwise` (the factor scales its final step) is checked
against an independent expectation: the plain optax optimizer's update times
the NumPy eq. 9 factor of the raw gradient, with factor 1 for a layer with
no gradient signal or a non-finite norm. What must go outside is refused
with the nesting to write, and that nesting is checked the same way.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import layerlr_optax
from tests.package import reference


def _params():
  return {'body': {'kernel': jnp.asarray([[0.5, -0.2], [0.1, 0.3]]),
                   'bias': jnp.asarray([0.05, -0.1])},
          'head': {'kernel': jnp.asarray([[0.4], [-0.6]]),
                   'bias': jnp.asarray([0.2])}}


def _grads(seed, scale=1.0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda p: jnp.asarray(scale * rng.normal(size=p.shape), jnp.float32),
      _params())


def _factor(layer_grads) -> float:
  """Eq. 9 of a layer (NumPy, float64), with the package's policy: 1 for
  a zero or non-finite norm."""
  flat = np.concatenate([np.ravel(np.asarray(x, np.float64))
                         for x in jax.tree.leaves(layer_grads)])
  norm = np.sqrt(np.sum(flat ** 2))
  return 1.0 if not np.isfinite(norm) or norm == 0 else reference.factor(norm)


def _times(tree, factor):
  return jax.tree.map(lambda x: x * factor, tree)


def _scaled(updates, grads):
  """Each module's `updates` times the factor of its raw gradient."""
  return {layer: _times(updates[layer], _factor(grads[layer]))
          for layer in updates}


def _enable_x64():
  # jax.enable_x64 is newer than the oldest supported jax (0.4.35).
  context = getattr(jax, 'enable_x64', None)
  if context is None:
    from jax.experimental import enable_x64 as context
  return context(True)


def _norm(tree):
  return jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(tree)))


def _assert_tree_close(got, want, rtol=2e-6, atol=0.0):
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(got)[0],
                          jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol,
                               atol=atol, err_msg=jax.tree_util.keystr(path))


STATEFUL_BASES = {
    'adamw': lambda: optax.adamw(1e-2, weight_decay=0.1),
    'adam': lambda: optax.adam(1e-2),
    'sgd_momentum': lambda: optax.sgd(0.1, momentum=0.9),
    'nesterov': lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
    'adagrad': lambda: optax.adagrad(0.1),
    'rmsprop': lambda: optax.rmsprop(1e-2, momentum=0.9),
    'lion': lambda: optax.lion(1e-3, weight_decay=0.1),
    'lamb': lambda: optax.lamb(1e-3),
}


# ----------------------------------------------- 1. no gradient this step --

@pytest.mark.parametrize('name', sorted(STATEFUL_BASES))
@pytest.mark.parametrize('jit', [False, True])
def test_a_layer_without_gradient_gets_the_base_update(name, jit):
  """An unused head (all-zero gradient) after a step with gradient: it moves
  exactly as under the plain base (momentum, weight decay), and every other
  layer by the factor of its gradient."""
  make = STATEFUL_BASES[name]
  params = _params()
  ours, plain = layerlr_optax.layerwise(make()), make()
  s_ours, s_plain = ours.init(params), plain.init(params)
  upd_ours = jax.jit(ours.update) if jit else ours.update
  upd_plain = jax.jit(plain.update) if jit else plain.update
  first = _grads(0)
  u_ours, s_ours = upd_ours(first, s_ours, params)
  u_plain, s_plain = upd_plain(first, s_plain, params)
  _assert_tree_close(u_ours, _scaled(u_plain, first))
  # The trajectories now differ; the second step is compared at the same
  # parameters and base state, so only the factor can make a difference.
  second = _grads(1)
  second['head'] = jax.tree.map(jnp.zeros_like, second['head'])
  u_ours, _ = upd_ours(second, s_ours, params)
  u_plain, _ = ours_base_update(make, first, second, params, jit)
  # Factor 1: the base's own update, up to a few float32 ulps of the step
  # (under jit the two optimizers are two programs, which XLA may fuse
  # differently); the old factor of a zero layer was ~45.
  eps = float(np.finfo(np.float32).eps)
  scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(u_plain))
  _assert_tree_close(u_ours['head'], u_plain['head'], rtol=32 * eps,
                     atol=32 * eps * scale)
  _assert_tree_close(u_ours['body'], _scaled(u_plain, second)['body'])


def ours_base_update(make, first, second, params, jit):
  """The plain base's second update after the same first gradient."""
  plain = make()
  update = jax.jit(plain.update) if jit else plain.update
  _, state = update(first, plain.init(params), params)
  return update(second, state, params)


def test_the_reported_adamw_case_moves_as_plain_adamw():
  """The issue's numbers: plain adamw moves the idle layer by ~0.0077."""
  params = _params()
  moved = {}
  for label, opt in (('plain', optax.adamw(1e-2, weight_decay=0.1)),
                     ('layerwise', layerlr_optax.layerwise(
                         optax.adamw(1e-2, weight_decay=0.1)))):
    state = opt.init(params)
    p = params
    u, state = opt.update(_grads(0), state, p)
    p = optax.apply_updates(p, u)
    idle = _grads(1)
    idle['head'] = jax.tree.map(jnp.zeros_like, idle['head'])
    u, state = opt.update(idle, state, p)
    moved[label] = float(_norm(u['head']))
  assert 0 < moved['plain'] < 0.02
  # Not equal: the first step differed by the factor, so the momentum does.
  assert moved['layerwise'] < 3 * moved['plain']


# ------------------------------------------------------ 2. NaN and guards --

NAN_AT_HEAD = {'body': None, 'head': jnp.nan}


def _with_nan(grads):
  grads = jax.tree.map(lambda x: x, grads)
  grads['head']['kernel'] = grads['head']['kernel'].at[0, 0].set(jnp.nan)
  return grads


@pytest.mark.parametrize('nesting', ['inside', 'outside'])
def test_apply_if_finite_protects_the_parameters(nesting):
  params = _params()
  adam = optax.adam(1e-2)
  opt = (layerlr_optax.layerwise(optax.apply_if_finite(adam, 3))
         if nesting == 'inside' else
         optax.apply_if_finite(layerlr_optax.layerwise(adam), 3))
  state = opt.init(params)
  u, state = jax.jit(opt.update)(_with_nan(_grads(0)), state, params)
  after = optax.apply_updates(params, u)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(after))
  _assert_tree_close(after, params, rtol=0)
  # The next finite step is the first adam step times the factors.
  g = _grads(1)
  u, state = jax.jit(opt.update)(g, state, params)
  want, _ = adam.update(g, adam.init(params), params)
  _assert_tree_close(u, _scaled(want, g), rtol=1e-5)


def test_zero_nans_inside_layerwise_keeps_the_cleaned_update():
  params = _params()
  base = optax.chain(optax.zero_nans(), optax.adam(1e-2))
  opt = layerlr_optax.layerwise(base)
  g = _with_nan(_grads(0))
  u, _ = opt.update(g, opt.init(params), params)
  want, _ = base.update(g, base.init(params), params)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(u))
  # The NaN layer: factor 1, the update zero_nans + adam made.
  _assert_tree_close(u['head'], want['head'], rtol=0)
  _assert_tree_close(u['body'], _scaled(want, g)['body'], rtol=1e-6)


# ---------------------------------------------------- 3. derivatives --

def _meta_loss(make, alpha, live_scale):
  """A ReZero-style model at step 0: the block behind `alpha` (zero at
  initialisation) has an exactly zero gradient; one inner update, then the
  loss at the updated parameters."""
  x = jnp.asarray([[1.0, -2.0], [0.5, 0.3]], alpha.dtype)
  y = jnp.asarray([0.3, -0.1], alpha.dtype)
  params = {'block': {'kernel': jnp.asarray([[0.4, 0.1], [-0.3, 0.2]],
                                            alpha.dtype)},
            'gate': {'alpha': alpha},
            'head': {'kernel': live_scale * jnp.asarray([0.7, -0.5],
                                                        alpha.dtype)}}

  def loss(p):
    h = x + p['gate']['alpha'] * jnp.tanh(x @ p['block']['kernel'])
    return jnp.mean((h @ p['head']['kernel'] - y) ** 2)

  opt = make()
  grads = jax.grad(loss)(params)
  updates, _ = opt.update(grads, opt.init(params), params)
  return loss(optax.apply_updates(params, updates))


DIFFERENTIABLE = {
    'scale_by_layer_gradient': lambda: optax.chain(
        layerlr_optax.scale_by_layer_gradient(), optax.sgd(0.1)),
    'sgd': lambda: layerlr_optax.sgd(0.1, momentum=0.9),
    'adagrad': lambda: layerlr_optax.adagrad(0.1),
    # eps_root: plain optax.adam's own meta-gradient at a zero gradient is
    # NaN without it (d sqrt(v)/dv at v = 0), as optax documents.
    'layerwise_adam': lambda: layerlr_optax.layerwise(
        optax.adam(0.1, eps_root=1e-16)),
    'capped': lambda: layerlr_optax.sgd(0.1, max_factor=2.0),
}


@pytest.mark.parametrize('name', sorted(DIFFERENTIABLE))
def test_meta_gradient_at_a_zero_initialised_layer(name):
  """Finite at alpha = 0 (the block's gradient exactly zero), and equal to
  central finite differences in float64 along `live_scale`, a direction
  that keeps the block's gradient zero (where the update is smooth)."""
  make = DIFFERENTIABLE[name]
  with _enable_x64():
    alpha = jnp.zeros((), jnp.float64)
    scale = jnp.ones((), jnp.float64)
    grad = jax.grad(lambda a, s: _meta_loss(make, a, s), argnums=(0, 1))(
        alpha, scale)
    assert all(np.isfinite(float(g)) for g in grad), grad
    h = 1e-6
    fd = (_meta_loss(make, alpha, scale + h)
          - _meta_loss(make, alpha, scale - h)) / (2 * h)
    np.testing.assert_allclose(float(grad[1]), float(fd), rtol=1e-6,
                               atol=1e-10)


@pytest.mark.parametrize('name', sorted(DIFFERENTIABLE))
def test_meta_gradient_matches_finite_differences_near_zero(name):
  """Away from an exact zero (alpha small but not 0) the whole derivative,
  the factor's included, matches finite differences."""
  make = DIFFERENTIABLE[name]
  with _enable_x64():
    alpha = jnp.asarray(1e-3, jnp.float64)
    scale = jnp.ones((), jnp.float64)
    grad = jax.grad(lambda a: _meta_loss(make, a, scale))(alpha)
    h = 1e-8
    fd = (_meta_loss(make, alpha + h, scale)
          - _meta_loss(make, alpha - h, scale)) / (2 * h)
    np.testing.assert_allclose(float(grad), float(fd), rtol=1e-5)


def test_derivative_of_the_transform_at_zero_is_finite():
  """The issue's case: jax.grad through scale_by_layer_gradient().update
  with a zero layer. Factor 1 there, so the Jacobian is the identity."""
  opt = layerlr_optax.scale_by_layer_gradient()

  def first(g):
    u, _ = opt.update({'a': {'w': g}}, opt.init({'a': {'w': g}}))
    return u['a']['w'][0]

  grad = jax.grad(first)(jnp.zeros(3))
  np.testing.assert_array_equal(grad, [1.0, 0.0, 0.0])


# ------------------------------------ 4. what goes inside, what outside --

INSIDE = {
    'adam': lambda: optax.adam(1e-2),
    'clip_then_sgd': lambda: optax.chain(optax.clip_by_global_norm(0.5),
                                         optax.sgd(0.1)),
    'masked': lambda: optax.masked(optax.adam(1e-2),
                                   {'body': True, 'head': False}),
    'zero_nans_adam': lambda: optax.chain(optax.zero_nans(),
                                          optax.adam(1e-2)),
    'apply_if_finite': lambda: optax.apply_if_finite(optax.adam(1e-2), 3),
    'scale_by_lbfgs': lambda: optax.scale_by_lbfgs(),
    'muon': lambda: optax.contrib.muon(1e-2),
}


@pytest.mark.parametrize('name', sorted(INSIDE))
def test_inside_the_factor_scales_the_final_step(name):
  params = _params()
  make = INSIDE[name]
  opt, plain = layerlr_optax.layerwise(make()), make()
  s, s_plain = opt.init(params), plain.init(params)
  for step in range(3):
    g = _grads(step)
    u, s = jax.jit(opt.update)(g, s, params)
    want, s_plain = plain.update(g, s_plain, params)
    _assert_tree_close(u, _scaled(want, g), rtol=1e-5, atol=1e-7)


OUTSIDE = {
    'MultiSteps': (lambda: optax.MultiSteps(optax.sgd(0.1), 2),
                   'optax.MultiSteps(layerlr_optax.layerwise(opt)'),
    'lookahead': (lambda: optax.lookahead(optax.sgd(0.1), 2, 0.5),
                  'optax.lookahead(layerlr_optax.layerwise(fast_opt)'),
    'sam': (lambda: optax.contrib.sam(optax.sgd(0.1), optax.sgd(0.1),
                                      sync_period=2),
            'optax.contrib.sam(layerlr_optax.layerwise(opt)'),
    'schedule_free': (lambda: optax.contrib.schedule_free_sgd(0.5),
                      'optax.contrib.schedule_free(layerlr_optax.layerwise('),
    'dpsgd': (lambda: optax.contrib.dpsgd(0.1, 1.0, 0.1, 0),
              'optax.contrib.differentially_private_aggregate'),
    'lbfgs': (lambda: optax.lbfgs(),
              'optax.chain(layerlr_optax.layerwise(optax.scale_by_lbfgs())'),
    'backtracking': (lambda: optax.chain(
        optax.sgd(0.1), optax.scale_by_backtracking_linesearch(15)),
                     'optax.scale_by_backtracking_linesearch'),
}


@pytest.mark.parametrize('name', sorted(OUTSIDE))
def test_outside_only_is_refused_naming_the_nesting(name):
  make, nesting = OUTSIDE[name]
  params = _params()
  if name == 'lookahead':
    params = optax.LookaheadParams.init_synced(params)
  # Nested deeper too: inside a chain and under inject_hyperparams.
  for base in (make(), optax.chain(optax.identity(), make())):
    with pytest.raises(ValueError, match=re.escape(nesting)):
      layerlr_optax.layerwise(base).init(params)
  with pytest.raises(ValueError, match=re.escape(nesting)):
    layerlr_optax.layerwise(make(), record_factors=True).init(params)


def test_multisteps_outside_reads_the_accumulated_gradient():
  params = _params()
  opt = optax.MultiSteps(layerlr_optax.layerwise(optax.adam(1e-2)), 2)
  state = opt.init(params)
  g0, g1 = _grads(0), _grads(1)
  u, state = opt.update(g0, state, params)
  assert not any(np.any(x) for x in jax.tree.leaves(u))
  u, state = opt.update(g1, state, params)
  mean = jax.tree.map(lambda a, b: (a + b) / 2, g0, g1)
  adam = optax.adam(1e-2)
  want, _ = adam.update(mean, adam.init(params), params)
  _assert_tree_close(u, _scaled(want, mean), rtol=1e-5)


def _fixed_sgd_reference(grads_fn, params, steps, lr, wrap):
  """`wrap(optax.sgd(lr))` fed with each gradient times its factors: for a
  stateless linear base that is what wrap(layerwise(sgd)) must compute."""
  opt = wrap(optax.sgd(lr))
  state = opt.init(params)
  for _ in range(steps):
    g = grads_fn(params)
    g = _scaled(g, g)
    u, state = opt.update(g, state, params)
    params = optax.apply_updates(params, u)
  return params, state


def _quadratic_grads(params):
  target = _grads(7)
  return jax.tree.map(lambda p, t: p - t, params, target)


def test_lookahead_outside():
  params = optax.LookaheadParams.init_synced(_params())
  opt = optax.lookahead(layerlr_optax.layerwise(optax.sgd(0.1)), 2, 0.5)
  ref = optax.lookahead(optax.sgd(0.1), 2, 0.5)
  s, s_ref, p, p_ref = opt.init(params), ref.init(params), params, params
  for _ in range(4):
    g = _quadratic_grads(p.fast)
    u, s = opt.update(g, s, p)
    p = optax.apply_updates(p, u)
    g_ref = _quadratic_grads(p_ref.fast)
    g_ref = _scaled(g_ref, g_ref)
    u, s_ref = ref.update(g_ref, s_ref, p_ref)
    p_ref = optax.apply_updates(p_ref, u)
  _assert_tree_close(p, p_ref, rtol=1e-5)


def test_schedule_free_outside_keeps_its_bookkeeping():
  params = _params()
  opt = optax.contrib.schedule_free(layerlr_optax.layerwise(optax.sgd(0.5)),
                                    learning_rate=0.5, b1=0.9)
  state, p = opt.init(params), params
  for _ in range(3):
    u, state = opt.update(_quadratic_grads(p), state, p)
    p = optax.apply_updates(p, u)
  want, _ = _fixed_sgd_reference(
      _quadratic_grads, params, 3, 0.5,
      lambda sgd: optax.contrib.schedule_free(sgd, learning_rate=0.5, b1=0.9))
  _assert_tree_close(p, want, rtol=1e-5)
  _assert_tree_close(optax.contrib.schedule_free_eval_params(state, p),
                     optax.contrib.schedule_free_eval_params(
                         _fixed_sgd_reference(
                             _quadratic_grads, params, 3, 0.5,
                             lambda sgd: optax.contrib.schedule_free(
                                 sgd, learning_rate=0.5, b1=0.9))[1], want),
                     rtol=1e-5)


def test_sam_outside_removes_the_perturbation():
  """sam(layerwise(opt), adv): after each cycle the weights are the
  descent step from the start of the cycle (no adversarial residue)."""
  params = _params()
  opt = optax.contrib.sam(layerlr_optax.layerwise(optax.sgd(0.1)),
                          optax.sgd(0.05), sync_period=2)
  state, p = opt.init(params), params
  start = params
  for _ in range(2):
    u, state = opt.update(_quadratic_grads(p), state, p)
    p = optax.apply_updates(p, u)
  # The descent gradient was taken at the adversarial point.
  g = _quadratic_grads(start)
  adv = jax.tree.map(lambda x, gx: x + 0.05 * gx, start, g)
  g_adv = _quadratic_grads(adv)
  step = _scaled(g_adv, g_adv)
  want = jax.tree.map(lambda x, d: x - 0.1 * d, start, step)
  _assert_tree_close(p, want, rtol=1e-5)


def test_dp_aggregate_then_layerwise_reads_only_the_private_gradient():
  params = _params()
  per_example = jax.tree.map(
      lambda p: jnp.stack([p * (i + 1) for i in range(4)]), _grads(3))
  dp = optax.contrib.differentially_private_aggregate(
      l2_norm_clip=0.5, noise_multiplier=0.0, seed=0)
  opt = optax.chain(dp, layerlr_optax.layerwise(optax.sgd(0.1)))
  u, _ = opt.update(per_example, opt.init(params), params)
  private, _ = dp.update(per_example, dp.init(params), params)
  want = _times(_scaled(private, private), -0.1)
  _assert_tree_close(u, want, rtol=1e-5)


def test_linesearch_outside_reaches_the_point_it_evaluated():
  params = _params()
  value_fn = lambda p: 0.5 * sum(jnp.sum(g ** 2) for g in
                                 jax.tree.leaves(_quadratic_grads(p)))
  opt = optax.chain(layerlr_optax.layerwise(optax.scale_by_lbfgs()),
                    optax.scale(-1.0),
                    optax.scale_by_zoom_linesearch(max_linesearch_steps=15))
  state, p = opt.init(params), params
  values = [float(value_fn(p))]
  for _ in range(5):
    value, grad = optax.value_and_grad_from_state(value_fn)(p, state=state)
    u, state = opt.update(grad, state, p, value=value, grad=grad,
                          value_fn=value_fn)
    p = optax.apply_updates(p, u)
    values.append(float(value_fn(p)))
    # The value the line search accepted is the value where we are.
    np.testing.assert_allclose(
        float(optax.tree_utils.tree_get(state, 'value')), values[-1],
        rtol=1e-5, atol=1e-9)
  assert all(b <= a + 1e-7 for a, b in zip(values, values[1:]))
  assert values[-1] < 1e-3 * values[0]


# --------------------------------------------- 5. inject_hyperparams --

def test_injected_alias_keeps_its_exclusion_rule():
  params = _params()
  g = _grads(0)
  opt = optax.inject_hyperparams(layerlr_optax.sgd)(
      learning_rate=0.1, exclude=layerlr_optax.matching_paths('/bias$'))
  u, _ = jax.jit(opt.update)(g, opt.init(params), params)
  for layer in g:
    # Biases excluded: plain SGD; kernels: the factor of the kernel alone.
    np.testing.assert_allclose(u[layer]['bias'], -0.1 * g[layer]['bias'],
                               rtol=1e-6)
    np.testing.assert_allclose(
        u[layer]['kernel'],
        -0.1 * _factor(g[layer]['kernel']) * g[layer]['kernel'], rtol=1e-5)


def test_injected_stacked_rule_keeps_one_factor_per_slice():
  stack = {'blocks': {'kernel': jnp.stack([jnp.full((2, 2), 1e-3),
                                           jnp.full((2, 2), 5.0)])}}
  opt = optax.inject_hyperparams(layerlr_optax.sgd)(
      learning_rate=1.0, stacked=layerlr_optax.stacked_paths('blocks'))
  u, _ = opt.update(stack, opt.init(stack), stack)
  for i in range(2):
    want = -_factor(stack['blocks']['kernel'][i]) * stack['blocks']['kernel'][i]
    np.testing.assert_allclose(u['blocks']['kernel'][i], want, rtol=1e-5)


def test_injected_user_function_is_refused_naming_static_args():
  params = _params()
  mask_fn = lambda p: jax.tree.map(lambda x: x.ndim <= 1, p)
  opt = optax.inject_hyperparams(layerlr_optax.sgd)(learning_rate=0.1,
                                                    exclude=mask_fn)
  with pytest.raises(TypeError, match='static_args'):
    opt.init(params)
  # With static_args it is the user's mask.
  opt = optax.inject_hyperparams(layerlr_optax.sgd, static_args=('exclude',))(
      learning_rate=0.1, exclude=mask_fn)
  g = _grads(0)
  u, _ = opt.update(g, opt.init(params), params)
  np.testing.assert_allclose(u['head']['bias'], -0.1 * g['head']['bias'],
                             rtol=1e-6)


def test_rules_compare_by_value_and_do_not_retrace():
  rules = (layerlr_optax.matching_paths('/bias$'),
           layerlr_optax.stacked_paths('blocks', 0),
           layerlr_optax.ndim_at_most(1))
  for rule in rules:
    twin = type(rule).__new__(type(rule))
    twin.__dict__.update(rule.__dict__)
    assert rule == twin and hash(rule) == hash(twin)
    assert not callable(rule)
  assert layerlr_optax.matching_paths('a') != layerlr_optax.matching_paths('b')
  assert layerlr_optax.stacked_paths('a', 0) != layerlr_optax.stacked_paths(
      'a', 1)
  traces = []

  def step(grads, exclude):
    traces.append(1)
    opt = layerlr_optax.sgd(0.1, exclude=exclude)
    return opt.update(grads, opt.init(grads))[0]

  step = jax.jit(step, static_argnums=1)
  for _ in range(4):
    step(_grads(0), layerlr_optax.matching_paths('/bias$'))
  assert len(traces) == 1


# ------------------------------------------- 6. fields called `value` --

def _attention_partition(params):
  return layerlr_optax.layer_partition(params)


def test_equinox_attention_with_a_value_field():
  eqx = pytest.importorskip('equinox')

  class Attention(eqx.Module):
    query: jax.Array
    key: jax.Array
    value: jax.Array

  class Model(eqx.Module):
    attention: Attention
    head: jax.Array

  model = Model(Attention(jnp.ones((2, 2)), jnp.ones((2, 2)),
                          jnp.ones((2, 2))), jnp.ones(2))
  assert _attention_partition(model) == {
      'attention': ['attention/query', 'attention/key', 'attention/value'],
      'head': ['head']}
  excluded = layerlr_optax.layer_partition(
      model, exclude=layerlr_optax.matching_paths('/value$'))
  assert excluded['attention'] == ['attention/query', 'attention/key']


def test_namedtuple_and_struct_attention_with_a_value_field():
  from typing import NamedTuple

  class Attention(NamedTuple):
    query: jax.Array
    key: jax.Array
    value: jax.Array

  tree = {'attn': Attention(jnp.ones(2), jnp.ones(2), jnp.ones(2))}
  assert _attention_partition(tree) == {
      'attn': ['attn/query', 'attn/key', 'attn/value']}
  struct = pytest.importorskip('flax.struct')

  @struct.dataclass
  class Projections:
    query: jax.Array
    value: jax.Array

  tree = {'attn': Projections(jnp.ones(2), jnp.ones(2))}
  assert _attention_partition(tree) == {'attn': ['attn/query', 'attn/value']}


def test_nnx_attention_with_a_value_param():
  nnx = pytest.importorskip('flax.nnx')

  class Attention(nnx.Module):
    def __init__(self):
      self.query = nnx.Param(jnp.ones((2, 2)))
      self.value = nnx.Param(jnp.ones((2, 2)))

  class Model(nnx.Module):
    def __init__(self):
      self.attention = Attention()

  state = nnx.state(Model(), nnx.Param)
  assert layerlr_optax.layer_partition(state) == {
      'attention': ['attention/query', 'attention/value']}
  # The Param box itself is still looked through, by its type.
  linear = nnx.state(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Param)
  assert layerlr_optax.layer_partition(linear, layers='leaf') == {
      'bias': ['bias'], 'kernel': ['kernel']}


def test_linen_boxed_params_are_looked_through():
  nn = pytest.importorskip('flax.linen')

  class Model(nn.Module):
    @nn.compact
    def __call__(self, x):
      v = self.param('value', nn.with_partitioning(
          nn.initializers.ones, (None, 'model')), (2, 2))
      return nn.Dense(2, name='out')(x @ v)

  variables = Model().init(jax.random.key(0), jnp.ones((1, 2)))
  assert layerlr_optax.layer_partition(variables['params'], layers='leaf') == {
      'out/bias': ['out/bias'], 'out/kernel': ['out/kernel'],
      'value': ['value']}


# ---------------------------------------------- 8. messages that lead --

def test_two_recorders_with_disjoint_layers_merge():
  params = _params()
  opt = optax.multi_transform(
      {'a': layerlr_optax.sgd(0.1, record_factors=True),
       'b': layerlr_optax.layerwise(optax.adam(1e-2), record_factors=True)},
      {'body': 'a', 'head': 'b'})
  g = _grads(0)
  _, state = opt.update(g, opt.init(params), params)
  got = layerlr_optax.recorded_factors(state)
  assert sorted(got) == ['body', 'head']
  for layer in got:
    np.testing.assert_allclose(got[layer], _factor(g[layer]), rtol=1e-5)


def test_two_recorders_of_one_layer_are_refused_naming_it():
  params = _params()
  opt = optax.chain(layerlr_optax.sgd(0.1, record_factors=True),
                    layerlr_optax.layerwise(optax.sgd(0.1),
                                            record_factors=True))
  _, state = opt.update(_grads(0), opt.init(params), params)
  with pytest.raises(ValueError, match="'body'"):
    layerlr_optax.recorded_factors(state)


def test_nnx_state_of_an_optimizer_says_what_to_pass():
  nnx = pytest.importorskip('flax.nnx')
  model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(
      model, layerlr_optax.layerwise(optax.adam(1e-2), record_factors=True),
      wrt=nnx.Param)
  assert layerlr_optax.recorded_factors(optimizer.opt_state)
  with pytest.raises(ValueError, match=r'opt_state'):
    layerlr_optax.recorded_factors(nnx.state(optimizer))


def test_state_restored_without_a_target_says_so():
  params = _params()
  opt = layerlr_optax.sgd(0.1, record_factors=True)
  state = opt.init(params)
  # What a checkpointer returns without a target: plain containers.
  restored = jax.tree.map(np.asarray, jax.tree_util.tree_map(
      lambda x: x, state, is_leaf=lambda x: False))
  as_dicts = {'base_state': list(restored[0]) if isinstance(restored[0], tuple)
              else restored[0], 'layer_factors': {'factors': dict(
                  restored.layer_factors.factors)}}
  with pytest.raises(ValueError, match='target'):
    layerlr_optax.recorded_factors(as_dicts)


def test_stacked_pattern_matching_nothing_is_refused():
  stack = {'blocks': {'kernel': jnp.ones((3, 2, 2))}}
  opt = layerlr_optax.sgd(0.1, stacked=layerlr_optax.stacked_paths('^Blocks/'))
  with pytest.raises(ValueError, match=r"'blocks/kernel'"):
    opt.update(stack, opt.init(stack), stack)
  with pytest.raises(ValueError, match=r"'blocks/kernel'"):
    layerlr_optax.layer_partition(
        stack, stacked=layerlr_optax.stacked_paths('^Blocks/'))


# ---------------------------------------------- 7. a one-module model --

def test_a_one_module_model_is_one_layer_in_every_framework():
  """The weights and biases of a model that is one module are one layer,
  whichever framework made it (#30)."""
  eqx = pytest.importorskip('equinox')
  nnx = pytest.importorskip('flax.nnx')
  nn = pytest.importorskip('flax.linen')
  trees = {
      'equinox': eqx.nn.Linear(4, 1, key=jax.random.key(0)),
      'nnx': nnx.state(nnx.Linear(4, 1, rngs=nnx.Rngs(0)), nnx.Param),
      'linen variables': nn.Dense(1).init(jax.random.key(0), jnp.ones((1, 4))),
      'linen params': nn.Dense(1).init(jax.random.key(0),
                                       jnp.ones((1, 4)))['params'],
      'layer norm': {'scale': jnp.ones(4), 'bias': jnp.zeros(4)},
  }
  for name, tree in trees.items():
    partition = layerlr_optax.layer_partition(tree)
    assert len(partition) == 1, (name, partition)
    # One factor from the norm of weight and bias together.
    g = jax.tree.map(lambda x: jnp.full(x.shape, 0.1, x.dtype), tree)
    u, _ = layerlr_optax.sgd(1.0).update(g, layerlr_optax.sgd(1.0).init(g))
    want = -_factor(g) * 0.1
    for leaf in jax.tree.leaves(u):
      np.testing.assert_allclose(leaf, want, rtol=1e-5, err_msg=name)
  # Still a layer per array: flat dicts and lists of a plain-JAX model.
  assert len(layerlr_optax.layer_partition(
      {'w1': jnp.ones(2), 'b1': jnp.ones(2), 'w2': jnp.ones(2)})) == 3
  assert len(layerlr_optax.layer_partition([jnp.ones(2), jnp.ones(2)])) == 2


def test_injected_layers_function_is_refused_naming_static_args():
  params = _params()
  by_module = lambda tree: jax.tree.map(lambda _: 'all', tree)
  opt = optax.inject_hyperparams(layerlr_optax.sgd)(learning_rate=0.1,
                                                    layers=by_module)
  with pytest.raises((TypeError, ValueError), match='static_args'):
    opt.init(params)
  opt = optax.inject_hyperparams(layerlr_optax.sgd, static_args=('layers',))(
      learning_rate=0.1, layers=by_module)
  g = _grads(0)
  u, _ = opt.update(g, opt.init(params), params)
  _assert_tree_close(u, _times(g, -0.1 * _factor(g)), rtol=1e-5)
