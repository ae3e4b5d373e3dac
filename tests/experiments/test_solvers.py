"""The Caffe solvers (experiments/lib/solvers.py) and the method names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import layerlr_optax
from experiments.lib import solvers
from experiments.lib.methods import Method
from experiments.lib.methods import comparisons
from experiments.lib.methods import parse_methods
from tests.package import reference
from tests.package.toy_tree import nest

TOY_SHAPES = {'conv1/kernel': (3, 2), 'conv1/bias': (2,), 'ip1/kernel': (2, 4),
              'ip1/bias': (4,)}
TOY_LAYERS = [['conv1/bias', 'conv1/kernel'], ['ip1/bias', 'ip1/kernel']]


def _toy_grads(flat, step):
  """A gradient that depends on the params (so the order of updates matters)."""
  rng = np.random.default_rng(step)
  return {k: 0.3 * flat[k] + rng.standard_normal(flat[k].shape) * (
      0.01 if 'conv' in k else 1.0) for k in sorted(flat)}


def _run_solver(method, config, steps=25, reference_layers='module',
                rtol=1e-4, atol=1e-6):
  config.decay_mult = {'ip1/bias': 0.0, 'ip1/kernel': 3.0}
  rng = np.random.default_rng(0)
  flat = {k: rng.standard_normal(s) for k, s in TOY_SHAPES.items()}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), nest(flat))
  solver = solvers.make_solver(Method.parse(method), config, params)
  state = solver.optimizer.init(params)
  kind = {'sgd': 'sgd', 'nag': 'nesterov', 'adagrad': 'adagrad',
          'adam': 'adam', 'lars': 'lars', 'lamb': 'lamb'}[
              Method.parse(method).base]
  momentum = config.momentum if kind in ('sgd', 'nesterov', 'lars') else 0.0
  lr_mult = {k: (2.0 if k.endswith('bias') else 1.0) for k in TOY_SHAPES}
  decay_mult = {k: 1.0 for k in TOY_SHAPES}
  decay_mult.update({'ip1/bias': 0.0, 'ip1/kernel': 3.0})
  layers = {'module': TOY_LAYERS, 'global': [sorted(TOY_SHAPES)],
            None: None}[reference_layers]
  ref = reference.CaffeSolver(
      kind, flat, lambda it: reference.caffe_rate(
          'inv', solvers.method_base_lr(Method.parse(method), config), it,
      gamma=1e-4, power=0.75)
      * _warmup(method, it),
      momentum, 5e-3, lr_mult, decay_mult, layers=layers,
      max_factor=(config.layer_max_factor if method.endswith('+layercap')
                  else None),
      trust_coefficient=config.lars_trust_coefficient)
  ref_params = dict(flat)
  update = jax.jit(solver.optimizer.update)
  for step in range(steps):
    flat_now = {f'{m}/{l}': np.asarray(v, np.float64)
                for m, d in params.items() for l, v in d.items()}
    grads = _toy_grads(flat_now, step)
    updates, state = update(
        jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), nest(grads)),
        state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    ref_params = ref.step(ref_params, _toy_grads(ref_params, step))
  for k in TOY_SHAPES:
    m, leaf = k.split('/')
    np.testing.assert_allclose(params[m][leaf], ref_params[k], rtol=rtol,
                               atol=atol, err_msg=k)
  return state


WARMUP_STEPS = 10  # warmup_fraction 0.5 of num_steps 20 in the tests below


def _warmup(method, it):
  if method.endswith('+warmup'):
    return min(1.0, (it + 1) / WARMUP_STEPS)
  return 1.0


@pytest.mark.parametrize('method,layers', [
    ('sgd', None), ('sgd+layer', 'module'), ('nag', None),
    ('nag+layer', 'module'), ('adagrad', None), ('adagrad+layer', 'module'),
    ('sgd+global', 'global'), ('adagrad+global', 'global'),
    ('sgd+warmup', None), ('nag+warmup', None)])
def test_solver_equals_caffe_update_order(mnist_config, method, layers):
  config = mnist_config(lr_policy='inv', base_lr=0.05, weight_decay=5e-3,
                        num_steps=20, warmup_fraction=0.5)
  _run_solver(method, config, reference_layers=layers)


@pytest.mark.parametrize('method,layers', [
    ('adam', None), ('adam+layer', 'module'), ('adam+layercap', 'module'),
    ('adam+global', 'global'), ('adam+warmup', None), ('lars', None),
    ('lars+layer', 'module'), ('lamb', None), ('lamb+layer', 'module')])
def test_adam_lars_lamb_equal_their_transcription(mnist_config, method,
                                                  layers):
  """The rows of the published verdict beyond the paper's three solvers,
  against a NumPy transcription of Adam, LARS and LAMB in Caffe's order
  (lr_mult, decay_mult, the 'inv' schedule and warm-up included)."""
  config = mnist_config(lr_policy='inv', base_lr=0.002, weight_decay=5e-3,
                        num_steps=20, warmup_fraction=0.5,
                        layer_max_factor=1.5)
  _run_solver(method, config, reference_layers=layers, rtol=2e-4)


def test_solver_records_the_factors_of_the_regularised_gradient(
    mnist_config):
  config = mnist_config(weight_decay=0.0)
  params = {'conv1': {'kernel': jnp.full((3, 2), 0.5),
                      'bias': jnp.zeros(2)},
            'ip1': {'kernel': jnp.ones((2, 4)), 'bias': jnp.zeros(4)}}
  grads = {'conv1': {'kernel': jnp.full((3, 2), 1e-3), 'bias': jnp.zeros(2)},
           'ip1': {'kernel': jnp.full((2, 4), 2.0), 'bias': jnp.ones(4)}}
  for name in ('sgd', 'sgd+layer', 'adam+layer', 'lamb', 'sgd+global',
               'adam+layercap'):
    solver = solvers.make_solver(Method.parse(name), config, params)
    _, state = solver.optimizer.update(grads, solver.optimizer.init(params),
                                       params)
    recorded = layerlr_optax.recorded_factors(state)
    if name.endswith('+global'):
      norm = np.sqrt(6e-6 + 8 * 4.0 + 4.0)
      np.testing.assert_allclose(recorded['all'], reference.factor(norm),
                                 rtol=1e-6)
      continue
    if name.endswith('+layercap'):  # conv1's factor (~6.7) is capped at 2
      np.testing.assert_allclose(recorded['conv1'], config.layer_max_factor)
      np.testing.assert_allclose(recorded['ip1'],
                                 reference.factor(np.sqrt(36.0)), rtol=1e-6)
      continue
    np.testing.assert_allclose(recorded['conv1'],
                               reference.factor(np.sqrt(6e-6)), rtol=1e-5)
    np.testing.assert_allclose(recorded['ip1'],
                               reference.factor(np.sqrt(36.0)), rtol=1e-6)


def _frozen_file(tmp_path, factors):
  import json
  path = tmp_path / 'frozen_factors.json'
  path.write_text(json.dumps({'factors': {
      base: dict(factors) for base in ('sgd', 'nag', 'adagrad', 'adam',
                                       'lars', 'lamb')}}))
  return str(path)


def test_every_base_and_variant_scales_its_base_as_documented(mnist_config,
                                                              tmp_path):
  """All 30 (base, variant) solvers: at the first step (empty histories)
  each variant's update is its plain base's times what the variant
  promises: f_l (+layer), min(f_l, cap) (+layercap), the whole gradient's
  factor (+global), 1/warm-up steps (+warmup)."""
  config = mnist_config(weight_decay=0.0, warmup_fraction=0.5, num_steps=8,
                        layer_max_factor=1.5)
  config.frozen_factors = _frozen_file(tmp_path, {'conv1': 2.5, 'ip1': 1.25})
  params = {'conv1': {'kernel': jnp.full((3, 2), 0.5), 'bias': jnp.zeros(2)},
            'ip1': {'kernel': jnp.ones((2, 4)), 'bias': jnp.full(4, 0.1)}}
  grads = {'conv1': {'kernel': jnp.full((3, 2), 0.01), 'bias': jnp.zeros(2)},
           'ip1': {'kernel': jnp.full((2, 4), 2.0), 'bias': jnp.ones(4)}}
  norms = {'conv1': np.sqrt(6e-4), 'ip1': np.sqrt(36.0)}
  whole = reference.factor(np.sqrt(6e-4 + 36.0))
  expected = {
      'layer': {m: reference.factor(n) for m, n in norms.items()},
      'layercap': {m: min(reference.factor(n), 1.5) for m, n in norms.items()},
      'global': {m: whole for m in norms},
      'warmup': {m: 1.0 / 4 for m in norms},  # 0.5 of 8 steps
      'frozen': {'conv1': 2.5, 'ip1': 1.25},  # the file's, whatever g is
  }

  def first_update(method):
    solver = solvers.make_solver(method, config, params)
    updates, _ = jax.jit(solver.optimizer.update)(
        grads, solver.optimizer.init(params), params)
    return updates

  for base in ('sgd', 'nag', 'adagrad', 'adam', 'lars', 'lamb'):
    plain = first_update(Method(base))
    for variant, factors in expected.items():
      got = first_update(Method(base, variant))
      for module, factor in factors.items():
        for leaf in ('kernel', 'bias'):
          np.testing.assert_allclose(
              got[module][leaf], factor * plain[module][leaf], rtol=2e-5,
              atol=1e-9, err_msg=f'{base}+{variant} {module}/{leaf}')


@pytest.mark.parametrize('base', ['sgd', 'nag', 'adagrad', 'adam', 'lars',
                                  'lamb'])
def test_frozen_with_one_factor_is_the_base_at_a_scaled_rate(mnist_config,
                                                             tmp_path, base):
  """Over many steps (histories filled): every layer frozen at c is the
  plain method at c times its rate, since the factor multiplies the
  direction where the rate does."""
  config = mnist_config(lr_policy='inv', base_lr=0.01, weight_decay=5e-3,
                        num_steps=20)
  config.frozen_factors = _frozen_file(tmp_path, {'conv1': 1.7, 'ip1': 1.7})
  rng = np.random.default_rng(0)
  flat = {k: rng.standard_normal(s) for k, s in TOY_SHAPES.items()}
  start = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), nest(flat))
  final = {}
  for method, rate in ((Method(base, 'frozen'), 0.01),
                       (Method(base), 0.017)):
    solver = solvers.make_solver(method, config, start, base_lr=rate)
    params, state = start, solver.optimizer.init(start)
    update = jax.jit(solver.optimizer.update)
    for step in range(15):
      flat_now = {f'{m}/{l}': np.asarray(v, np.float64)
                  for m, d in params.items() for l, v in d.items()}
      grads = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32),
                           nest(_toy_grads(flat_now, step)))
      updates, state = update(grads, state, params)
      params = jax.tree.map(lambda p, u: p + u, params, updates)
    final[method.variant] = params
  for a, b in zip(jax.tree.leaves(final['frozen']), jax.tree.leaves(final[None])):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_frozen_factors_file_is_checked(mnist_config, tmp_path):
  import json
  from experiments.lib import frozen
  params = {'conv1': {'kernel': jnp.ones((3, 2))}, 'ip1': {'kernel': jnp.ones(2)}}
  config = mnist_config()
  with pytest.raises(ValueError, match='report frozen'):
    frozen.load('')
  with pytest.raises(ValueError, match='is not a file'):
    frozen.load(str(tmp_path / 'missing.json'))
  bad = tmp_path / 'bad.json'
  bad.write_text(json.dumps({'factors': {'sgd': {'conv1': 0.5}}}))
  with pytest.raises(ValueError, match='>= 1'):
    frozen.load(str(bad))
  only_sgd = tmp_path / 'only_sgd.json'
  only_sgd.write_text(json.dumps({'factors': {'sgd': {'conv1': 2.0}}}))
  with pytest.raises(ValueError, match="no factors for 'adam'"):
    frozen.factors_for(str(only_sgd), 'adam')
  config.frozen_factors = _frozen_file(tmp_path, {'conv1': 2.0, 'other': 2.0})
  solver = solvers.make_solver(Method('sgd', 'frozen'), config, params)
  with pytest.raises(ValueError, match=r"without a factor \['ip1'\].*"
                     r"without a layer \['other'\]"):
    solver.optimizer.init(params)


def test_method_base_lr_precedence(mnist_config):
  config = mnist_config(base_lr=0.01)
  config.method_base_lr = {'adam': 0.001, 'sgd+layer': 0.006}
  assert solvers.method_base_lr(Method.parse('adam+layer'), config) == 0.001
  assert solvers.method_base_lr(Method.parse('sgd+layer'), config) == 0.006
  assert solvers.method_base_lr(Method.parse('sgd'), config) == 0.01
  params = {'a': {'kernel': jnp.ones(2)}}
  assert solvers.make_solver(Method.parse('sgd'), config, params,
                             base_lr=0.5).base_lr == 0.5


@pytest.mark.parametrize('policy,kwargs', [
    ('fixed', {}), ('inv', dict(gamma=1e-4, power=0.75)),
    ('step', dict(gamma=0.1, stepsize=3)),
    ('multistep', dict(gamma=0.1, stepvalues=(2, 5)))])
def test_lr_policies_match_caffe(policy, kwargs):
  schedule = solvers.caffe_lr(policy, 0.01, **kwargs)
  for it in [0, 1, 2, 3, 5, 6, 1000]:
    np.testing.assert_allclose(
        float(schedule(jnp.asarray(it))),
        reference.caffe_rate(policy, 0.01, it, **kwargs), rtol=1e-6)


def test_bad_solver_config(mnist_config):
  with pytest.raises(ValueError, match='unknown lr_policy'):
    solvers.caffe_lr('cosine', 0.1)
  with pytest.raises(ValueError, match='increasing stepvalues'):
    solvers.caffe_lr('multistep', 0.1, gamma=0.1, stepvalues=(5, 2))
  params = {'conv1': {'kernel': jnp.ones(2)}}
  config = mnist_config()
  config.decay_mult = {'conv9/kernel': 1.0}
  with pytest.raises(ValueError, match='not parameters of the model'):
    solvers.make_solver(Method('sgd'), config, params)
  with pytest.raises(TypeError, match='takes a Method'):
    solvers.make_solver('sgd', mnist_config(), params)


def test_methods_parse_once():
  assert Method.parse('sgd') == Method('sgd')
  assert Method.parse(' adagrad+layer ') == Method('adagrad', 'layer')
  assert Method.parse('lamb+global').name == 'lamb+global'
  assert Method('nag', 'warmup').plain == Method('nag')
  assert Method('sgd', 'layer').applies_factor
  assert Method('sgd', 'global').applies_factor
  assert not Method('sgd', 'warmup').applies_factor
  methods = parse_methods('sgd,sgd+layer,adam+layer,sgd+global')
  assert [(a.name, b.name) for a, b in comparisons(methods)] == [
      ('sgd', 'sgd+layer'), ('sgd', 'sgd+global')]
  for bad, message in (('sdg', 'unknown method'),
                       ('sgd+layers', 'unknown method variant'),
                       ('sgd+layer+global', 'BASE or BASE\\+VARIANT'),
                       ('+layer', 'BASE or BASE\\+VARIANT')):
    with pytest.raises(ValueError, match=message):
      Method.parse(bad)
  with pytest.raises(ValueError, match='lists a method twice'):
    parse_methods('sgd,sgd')
  with pytest.raises(ValueError, match='is empty'):
    parse_methods(' , ')
