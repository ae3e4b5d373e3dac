"""The package as users write it: Flax NNX and linen, Equinox, hand-written
pytrees, optax's wrappers, orbax, jit/vmap/scan (issue #22).

Each test builds what a user would and compares the result with an
independent NumPy expectation (tests/package/reference.py), never with the package's
own output. The Explicit/Auto mesh and shard_map scenarios need 8 devices and
run in tests/package/sharding_check.py.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import optax
import pytest

import layerlr_optax
from tests.package import reference

# ------------------------------------------------------- NumPy expectations --


def _expected_sgd(grads_by_layer: dict[str, list[np.ndarray]], lr: float,
                  cap: float | None = None) -> dict[str, list[np.ndarray]]:
  """Plain SGD with eq. 9: -lr * f(||g_l||) * g, layer by layer."""
  out = {}
  for layer, grads in grads_by_layer.items():
    norm = np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in grads))
    f = reference.factor(norm)
    if cap is not None:
      f = min(f, cap)
    out[layer] = [-lr * f * np.asarray(g, np.float64) for g in grads]
  return out


def _rng_tree(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s),
                                            jnp.float32),
                      shapes, is_leaf=lambda x: isinstance(x, tuple))


# --------------------------------------------- hand-written pytrees (#22.2) --

W_SHAPES = [(4, 3), (3, 3), (3, 2)]
W_SCALES = [1e-3, 1.0, 30.0]


def _matrices(seed=0):
  rng = np.random.default_rng(seed)
  return [np.asarray(rng.standard_normal(s) * c, np.float32)
          for s, c in zip(W_SHAPES, W_SCALES)]


@pytest.mark.parametrize('kind', ['list', 'tuple', 'flat dict', 'nested'])
@pytest.mark.parametrize('jit', [False, True])
def test_root_leaves_are_layers_of_their_own(kind, jit):
  g = _matrices()
  if kind == 'list':
    tree, names = [jnp.asarray(x) for x in g], ['0', '1', '2']
  elif kind == 'tuple':
    tree, names = tuple(jnp.asarray(x) for x in g), ['0', '1', '2']
  elif kind == 'flat dict':
    tree = {f'w{i + 1}': jnp.asarray(x) for i, x in enumerate(g)}
    names = ['w1', 'w2', 'w3']
  else:
    # A module-level node and root leaves side by side.
    tree = {'w1': jnp.asarray(g[0]),
            'block': {'w2': jnp.asarray(g[1]), 'w3': jnp.asarray(g[2])}}
    names = ['block', 'w1']
  part = layerlr_optax.layer_partition(tree)
  if kind == 'nested':
    assert part == {'block': ['block/w2', 'block/w3'], 'w1': ['w1']}
    want = _expected_sgd({'w1': [g[0]], 'block': [g[1], g[2]]}, 0.1)
    want_leaves = [want['block'][0], want['block'][1], want['w1'][0]]
  else:
    assert part == {n: [n] for n in names}
    want = _expected_sgd({n: [x] for n, x in zip(names, g)}, 0.1)
    want_leaves = [want[n][0] for n in names]
  opt = layerlr_optax.sgd(0.1)
  update = jax.jit(opt.update) if jit else opt.update
  updates, _ = update(tree, opt.init(tree))
  for got, expected in zip(jax.tree.leaves(updates), want_leaves):
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_single_array_is_one_layer():
  g = jnp.full((3,), 0.5)
  assert layerlr_optax.layer_partition(g) == {'<root>': ['<root>']}
  stats = layerlr_optax.layer_stats(g)
  np.testing.assert_allclose(stats['<root>']['factor'],
                             reference.factor(np.sqrt(0.75)), rtol=1e-6)


# ----------------------------------------------- keyword-only layers (#22.3) --

@pytest.mark.parametrize('call', [
    lambda g: layerlr_optax.scale_by_layer_gradient(0.1),
    lambda g: layerlr_optax.layerwise(optax.adam(1e-3), 'leaf'),
    lambda g: layerlr_optax.layer_stats(g, 0.01),
    lambda g: layerlr_optax.layer_partition(g, 'leaf'),
])
def test_layers_is_keyword_only(call):
  with pytest.raises(TypeError, match='positional'):
    call({'a': {'w': jnp.ones(2)}})


def test_a_number_as_layers_is_refused():
  with pytest.raises(TypeError, match='learning rate'):
    layerlr_optax.scale_by_layer_gradient(layers=0.1)


# ------------------------------------------------ framework trees (#22.4) --

def _linen_mlp():
  import flax.linen as nn

  class Net(nn.Module):
    boxed: bool = False

    @nn.compact
    def __call__(self, x):
      init = nn.initializers.lecun_normal()
      if self.boxed:
        init = nn.with_partitioning(init, (None, 'model'))
      x = nn.Dense(3, kernel_init=init, name='hidden')(x)
      x = nn.LayerNorm(name='norm')(nn.relu(x))
      return nn.Dense(2, kernel_init=init, name='out')(x)

  return Net


def _data():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((8, 4)),
                  jnp.float32)
  y = jnp.asarray(np.random.default_rng(2).standard_normal((8, 2)),
                  jnp.float32)
  return x, y


def _named_leaves(tree) -> dict[str, np.ndarray]:
  """``{'hidden/kernel': array}``: dict keys and attribute names joined by
  '/', a box's trailing ``value`` dropped (written here, not imported, so the
  package's naming is checked against it)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    parts = [str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
             for k in path]
    if parts and parts[-1] == 'value':
      parts = parts[:-1]
    out['/'.join(parts)] = np.asarray(leaf)
  return out


def _by_layer(tree, exclude=None):
  """Leaves grouped by their module in a framework's tree, as NumPy."""
  part = layerlr_optax.layer_partition(tree, exclude=exclude)
  flat = _named_leaves(tree)
  return {layer: {n: flat[n] for n in names} for layer, names in part.items()}


def _check_sgd_step(grads_tree, updates_tree, lr, exclude=None):
  """The package's update equals eq. 9 SGD on the named layers, and leaves
  outside every layer get exactly -lr * g."""
  layers = _by_layer(grads_tree, exclude)
  got, g_all = _named_leaves(updates_tree), _named_leaves(grads_tree)
  want = {}
  for layer, leaves in layers.items():
    scaled = _expected_sgd({layer: list(leaves.values())}, lr)[layer]
    want.update(zip(leaves, scaled))
  for name, g in g_all.items():
    np.testing.assert_allclose(got[name], want.get(name, -lr * g), rtol=2e-5,
                               atol=1e-8, err_msg=name)
  return set(g_all) - set(want)


@pytest.mark.parametrize('boxed', [False, True])
@pytest.mark.frameworks
def test_linen_train_state(boxed):
  import flax.linen as nn
  from flax.training import train_state
  model = _linen_mlp()(boxed=boxed)
  x, y = _data()
  variables = model.init(jax.random.key(0), x)
  if boxed:
    assert isinstance(variables['params']['hidden']['kernel'],
                      nn.Partitioned)
  exclude = layerlr_optax.matching_paths(r'bias|scale')
  state = train_state.TrainState.create(
      apply_fn=model.apply, params=variables['params'],
      tx=layerlr_optax.sgd(0.1, exclude=exclude))
  assert list(layerlr_optax.layer_partition(state.params, exclude=exclude)
              ) == ['hidden', 'out']

  @jax.jit
  def step(state):
    loss = lambda p: jnp.mean((state.apply_fn({'params': p}, x) - y) ** 2)
    grads = jax.grad(loss)(state.params)
    return state.apply_gradients(grads=grads), grads

  new_state, grads = step(state)
  updates = jax.tree.map(lambda a, b: a - b, nn.unbox(new_state.params),
                         nn.unbox(state.params))
  excluded = _check_sgd_step(nn.unbox(grads), updates, 0.1, exclude)
  assert excluded == {'hidden/bias', 'norm/bias', 'norm/scale', 'out/bias'}


@pytest.mark.frameworks
def test_linen_scan_stacked_by_path_boxed_and_unboxed():
  import flax.linen as nn

  class Block(nn.Module):

    @nn.compact
    def __call__(self, x, _):
      init = nn.with_partitioning(nn.initializers.lecun_normal(),
                                  (None, 'model'))
      return jnp.tanh(nn.Dense(4, kernel_init=init)(x)), None

  class Net(nn.Module):

    @nn.compact
    def __call__(self, x):
      stack = nn.scan(Block, variable_axes={'params': 0},
                      split_rngs={'params': True}, length=3,
                      metadata_params={nn.PARTITION_NAME: None})
      return stack(name='ScanBlock')(x, None)[0]

  x = jnp.ones((2, 4))
  params = Net().init(jax.random.key(0), x)['params']
  grads = jax.grad(lambda p: jnp.sum(Net().apply({'params': p}, x) ** 3))(
      params)
  stacked = layerlr_optax.stacked_paths('ScanBlock', axis=0)
  for tree in (grads, nn.unbox(grads)):
    stats = layerlr_optax.layer_stats(tree, stacked=stacked)
    assert list(stats) == [f'ScanBlock/Dense_0[{i}]' for i in range(3)]
    kernel = np.asarray(nn.unbox(grads)['ScanBlock']['Dense_0']['kernel'])
    bias = np.asarray(nn.unbox(grads)['ScanBlock']['Dense_0']['bias'])
    for i in range(3):
      norm = np.sqrt(np.sum(kernel[i] ** 2) + np.sum(bias[i] ** 2))
      np.testing.assert_allclose(stats[f'ScanBlock/Dense_0[{i}]']['factor'],
                                 reference.factor(norm), rtol=1e-5)
    # ndim_at_most ignores the stacked axis: the (3, 4) bias stack is out.
    part = layerlr_optax.layer_partition(
        tree, stacked=stacked, exclude=layerlr_optax.ndim_at_most(1))
    assert part['ScanBlock/Dense_0[1]'] == ['ScanBlock/Dense_0/kernel[1]']


def _nnx_net():
  from flax import nnx

  class Net(nnx.Module):

    def __init__(self, rngs):
      self.hidden = nnx.Linear(4, 3, rngs=rngs)
      self.norm = nnx.LayerNorm(3, rngs=rngs)
      self.out = nnx.Linear(3, 2, rngs=rngs)

    def __call__(self, x):
      return self.out(self.norm(nnx.relu(self.hidden(x))))

  return Net(nnx.Rngs(0))


def _nnx_update(optimizer, model, grads):
  """`optimizer.update` as the installed Flax spells it.

  Flax 0.11 made the model an argument (`update(model, grads)`); Flax 0.10,
  the newest release on Python 3.10 and the declared lower bound, takes
  `update(grads)`. Users of each write it their version's way.
  """
  import flax
  major, minor = (int(part) for part in flax.__version__.split('.')[:2])
  if (major, minor) < (0, 11):
    optimizer.update(grads)
  else:
    optimizer.update(model, grads)


@pytest.mark.parametrize('make', ['sgd', 'layerwise_adamw'])
@pytest.mark.frameworks
def test_nnx_optimizer(make):
  from flax import nnx
  model = _nnx_net()
  x, y = _data()
  exclude = layerlr_optax.ndim_at_most(1)
  tx = (layerlr_optax.sgd(0.1, exclude=exclude, record_factors=True)
        if make == 'sgd' else
        layerlr_optax.layerwise(optax.adamw(1e-2), exclude=exclude,
                                record_factors=True))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))

  @nnx.jit
  def step(model, optimizer):
    grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    _nnx_update(optimizer, model, grads)
    return grads

  grads = step(model, optimizer)
  after = nnx.state(model, nnx.Param)
  factors = layerlr_optax.recorded_factors(optimizer.opt_state)
  assert sorted(factors) == ['hidden', 'out']
  assert all(isinstance(f, jax.Array) for f in factors.values())
  layers = _by_layer(grads, exclude)
  for layer, leaves in layers.items():
    norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2)
                       for g in leaves.values()))
    np.testing.assert_allclose(factors[layer], reference.factor(norm),
                               rtol=1e-5)
  updates = jax.tree.map(lambda a, b: np.asarray(a) - b, after, before)
  if make == 'sgd':
    assert _check_sgd_step(grads, updates, 0.1, exclude) == {
        'hidden/bias', 'norm/bias', 'norm/scale', 'out/bias'}
  else:
    # AdamW's first step is -lr * (sign(g) + wd * p) for every entry with
    # g != 0; eq. 9 multiplies the kernels' steps only.
    # Flax 0.10's State leaves hold their array as `.value`.
    value = lambda tree, *keys: np.asarray(
        getattr(tree[keys[0]][keys[1]], 'value', tree[keys[0]][keys[1]]))
    p = value(before, 'hidden', 'kernel')
    want = -1e-2 * (np.sign(value(grads, 'hidden', 'kernel')) + 1e-4 * p
                    ) * np.asarray(factors['hidden'])
    np.testing.assert_allclose(value(updates, 'hidden', 'kernel'), want,
                               rtol=1e-4, atol=1e-7)
    p = value(before, 'norm', 'scale')
    np.testing.assert_allclose(
        value(updates, 'norm', 'scale'),
        -1e-2 * (np.sign(value(grads, 'norm', 'scale')) + 1e-4 * p),
        rtol=1e-4, atol=1e-7)


@pytest.mark.frameworks
def test_nnx_scan_stacked_by_path():
  from flax import nnx

  @nnx.vmap(in_axes=0, out_axes=0)
  def make_blocks(key):
    return nnx.Linear(4, 4, rngs=nnx.Rngs(key))

  class Net(nnx.Module):

    def __init__(self):
      self.blocks = make_blocks(jax.random.split(jax.random.key(0), 3))
      self.head = nnx.Linear(4, 1, rngs=nnx.Rngs(1))

  model = Net()
  grads = jax.tree.map(lambda a: jnp.ones_like(a) * 0.1,
                       nnx.state(model, nnx.Param))
  stats = layerlr_optax.layer_stats(
      grads, stacked=layerlr_optax.stacked_paths(r'^blocks/'))
  assert list(stats) == ['blocks[0]', 'blocks[1]', 'blocks[2]', 'head']
  np.testing.assert_allclose(stats['blocks[2]']['factor'],
                             reference.factor(0.1 * np.sqrt(20.0)),
                             rtol=1e-6)


@pytest.mark.frameworks
def test_equinox_model():
  import equinox as eqx
  model = eqx.nn.MLP(4, 2, 3, 2, key=jax.random.key(0))
  params, static = eqx.partition(model, eqx.is_array)
  x, y = _data()
  exclude = layerlr_optax.matching_paths(r'/bias$')
  opt = layerlr_optax.sgd(0.1, exclude=exclude)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    def loss(p):
      m = eqx.combine(p, static)
      return jnp.mean((jax.vmap(m)(x) - y) ** 2)
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    return eqx.apply_updates(params, updates), state, grads, updates

  _, _, grads, updates = step(params, state)
  assert list(layerlr_optax.layer_partition(grads, exclude=exclude)) == [
      'layers/0', 'layers/1', 'layers/2']
  assert _check_sgd_step(grads, updates, 0.1, exclude) == {
      'layers/0/bias', 'layers/1/bias', 'layers/2/bias'}


@pytest.mark.frameworks
def test_equinox_stacked_by_path():
  import equinox as eqx
  keys = jax.random.split(jax.random.key(0), 3)
  blocks = eqx.filter_vmap(lambda k: eqx.nn.Linear(4, 4, key=k))(keys)
  model = {'blocks': blocks, 'head': eqx.nn.Linear(4, 1, key=keys[0])}
  grads = jax.tree.map(lambda a: jnp.full_like(a, 0.1),
                       eqx.filter(model, eqx.is_array))
  stacked = layerlr_optax.stacked_paths('^blocks/')
  stats = layerlr_optax.layer_stats(grads, stacked=stacked)
  assert list(stats) == ['blocks[0]', 'blocks[1]', 'blocks[2]', 'head']
  np.testing.assert_allclose(stats['blocks[1]']['factor'],
                             reference.factor(0.1 * np.sqrt(20.0)), rtol=1e-6)
  opt = layerlr_optax.sgd(1.0, stacked=stacked,
                          exclude=layerlr_optax.ndim_at_most(1))
  out, _ = opt.update(grads, opt.init(grads))
  np.testing.assert_allclose(out['blocks'].bias, -0.1, rtol=1e-6)
  np.testing.assert_allclose(out['blocks'].weight,
                             -0.1 * reference.factor(0.4), rtol=1e-6)


# ---------------------------------------- masks and hyperparameters (#22.5) --

@pytest.mark.parametrize('flag', [True, np.bool_(True), jnp.array(True),
                                  np.array(True)])
def test_exclude_accepts_what_optax_masked_accepts(flag):
  g = {'a': {'w': jnp.full(3, 0.1)}, 'b': {'w': jnp.full(3, 0.2)}}
  opt = layerlr_optax.scale_by_layer_gradient(
      exclude={'a': flag, 'b': np.bool_(False)})
  out, _ = opt.update(g, opt.init(g))
  np.testing.assert_array_equal(out['a']['w'], g['a']['w'])
  np.testing.assert_allclose(out['b']['w'],
                             0.2 * reference.factor(0.2 * np.sqrt(3)),
                             rtol=1e-6)


def test_exclude_refuses_non_bools():
  for bad in ('bias', 1, jnp.ones(2, bool)):
    with pytest.raises(TypeError, match='exclude must hold True/False'):
      layerlr_optax.sgd(0.1, exclude={'a': bad})


@pytest.mark.parametrize('cap', [2.0, np.float32(2.0), jnp.array(2.0), 2])
def test_max_factor_types(cap):
  g = {'a': {'w': jnp.full(4, 1e-4)}}
  opt = layerlr_optax.sgd(1.0, max_factor=cap)
  out, _ = opt.update(g, opt.init(g))
  np.testing.assert_allclose(out['a']['w'], -2e-4, rtol=1e-6)
  stats = layerlr_optax.layer_stats(g, max_factor=cap)
  assert float(stats['a']['factor']) == 2.0
  assert float(layerlr_optax.layer_stats(g)['a']['factor']) == pytest.approx(
      reference.factor(2e-4), rel=1e-6)


def test_inject_hyperparams_without_static_args():
  g = {'a': {'w': jnp.full(4, 1e-4)}, 'b': {'w': jnp.full(4, 3.0)}}
  opt = optax.inject_hyperparams(layerlr_optax.sgd)(learning_rate=0.1,
                                                    max_factor=2.0)
  state = opt.init(g)
  update = jax.jit(opt.update)
  want = _expected_sgd({'a': [g['a']['w']], 'b': [g['b']['w']]}, 0.1, cap=2.0)
  out, state = update(g, state)
  np.testing.assert_allclose(out['a']['w'], want['a'][0], rtol=1e-6)
  np.testing.assert_allclose(out['b']['w'], want['b'][0], rtol=1e-6)
  compiled = update._cache_size()
  # Change the rate and the cap mid-run: same compiled program, new values.
  hyperparams = state.hyperparams
  hyperparams['learning_rate'] = hyperparams['learning_rate'] * 0 + 0.05
  hyperparams['max_factor'] = hyperparams['max_factor'] * 0 + 3.0
  out, state = update(g, state)
  want = _expected_sgd({'a': [g['a']['w']]}, 0.05, cap=3.0)
  np.testing.assert_allclose(out['a']['w'], want['a'][0], rtol=1e-6)
  state.hyperparams['learning_rate'] = state.hyperparams['learning_rate'] * 0
  out, _ = update(g, state)
  assert update._cache_size() == compiled
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(out))


def test_injected_rate_validated_when_concrete():
  with pytest.raises(ValueError, match='learning_rate'):
    optax.inject_hyperparams(layerlr_optax.sgd)(learning_rate=-0.1).init(
        {'a': jnp.ones(2)})


def test_schedule():
  schedule = optax.linear_schedule(0.1, 0.0, 4)
  opt = layerlr_optax.sgd(schedule)
  g = {'a': {'w': jnp.full(2, 0.5)}}
  state = opt.init(g)
  update = jax.jit(opt.update)
  for step in range(5):
    out, state = update(g, state)
    want = -schedule(step) * reference.factor(0.5 * np.sqrt(2)) * 0.5
    np.testing.assert_allclose(out['a']['w'], want, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------ messages (#22.6) --

def test_excluded_int_leaf_is_not_type_checked():
  g = {'a': {'w': jnp.full(2, 0.5)}, 'step': jnp.zeros((), jnp.int32)}
  opt = layerlr_optax.scale_by_layer_gradient(
      exclude=layerlr_optax.matching_paths('^step$'), record_factors=True)
  out, state = opt.update(g, opt.init(g))
  assert out['step'].dtype == jnp.int32
  assert list(layerlr_optax.recorded_factors(state)) == ['a']


def test_int_leaf_message_names_what_works():
  g = {'a': {'w': jnp.ones(2), 'count': jnp.zeros((), jnp.int32)}}
  opt = layerlr_optax.sgd(0.1, record_factors=True)
  with pytest.raises(TypeError, match='parameter at .a/count.') as info:
    opt.init(g)
  assert 'multi_transform' in str(info.value)
  assert 'optax.masked' not in str(info.value)
  opt = layerlr_optax.sgd(0.1)
  with pytest.raises(TypeError, match='update at .a/count.'):
    opt.update(g, opt.init(g))


def test_uncalled_factory_is_named():
  with pytest.raises(TypeError, match=r"'adam'.*layerwise\(adam\("):
    layerlr_optax.layerwise(optax.adam)
  with pytest.raises(TypeError, match='GradientTransformation'):
    layerlr_optax.layerwise(3)


def test_recorded_factors_of_an_optimizer_says_so():
  opt = layerlr_optax.sgd(0.1, record_factors=True)
  with pytest.raises(TypeError, match='state'):
    layerlr_optax.recorded_factors(opt)


def test_bad_rules():
  with pytest.raises(ValueError, match='regular expression'):
    layerlr_optax.matching_paths('(')
  with pytest.raises(TypeError, match='regular expression'):
    layerlr_optax.matching_paths(3)
  with pytest.raises(ValueError, match='int >= 0'):
    layerlr_optax.ndim_at_most(-1)
  with pytest.raises(TypeError, match='inject_hyperparams'):
    layerlr_optax.sgd(0.1, stacked=jnp.array(0))


# ------------------------------------------- optax wrappers and jax programs --

def _two_layer():
  return {'a': {'w': jnp.full(3, 1e-3)}, 'b': {'w': jnp.full(3, 2.0)}}


def _want(g, lr, scale=1.0):
  out = _expected_sgd({k: [v['w'] * scale] for k, v in g.items()}, lr)
  return {k: v[0] for k, v in out.items()}


def test_multisteps_applies_mean_of_k():
  g = _two_layer()
  opt = optax.MultiSteps(layerlr_optax.sgd(0.1), every_k_schedule=2)
  state = opt.init(g)
  out, state = opt.update(g, state)
  assert all(not np.any(x) for x in jax.tree.leaves(out))
  out, _ = opt.update(jax.tree.map(lambda x: 3 * x, g), state)
  want = _want(g, 0.1, scale=2.0)  # the mean of g and 3g
  for k in g:
    np.testing.assert_allclose(out[k]['w'], want[k], rtol=1e-5)


def test_multi_transform_with_a_frozen_part():
  g = {'a': {'w': jnp.full(3, 1e-3)}, 'b': {'w': jnp.full(3, 2.0)},
       'frozen': {'w': jnp.ones(3)}}
  labels = {'a': 'train', 'b': 'train', 'frozen': 'frozen'}
  opt = optax.multi_transform({'train': layerlr_optax.sgd(0.1),
                               'frozen': optax.set_to_zero()}, labels)
  out, _ = jax.jit(opt.update)(g, opt.init(g))
  want = _want({'a': g['a'], 'b': g['b']}, 0.1)
  np.testing.assert_allclose(out['a']['w'], want['a'], rtol=1e-5)
  np.testing.assert_allclose(out['b']['w'], want['b'], rtol=1e-5)
  np.testing.assert_array_equal(out['frozen']['w'], 0.0)


def test_clip_chain_sees_the_clipped_gradient():
  g = _two_layer()
  opt = optax.chain(optax.clip_by_global_norm(1.0),
                    layerlr_optax.scale_by_layer_gradient(), optax.sgd(0.1))
  out, _ = opt.update(g, opt.init(g))
  total = np.sqrt(sum(np.sum(np.asarray(v['w']) ** 2) for v in g.values()))
  want = _want(g, 0.1, scale=1.0 / total)
  for k in g:
    np.testing.assert_allclose(out[k]['w'], want[k], rtol=1e-5)


def test_reduce_on_plateau_scales_the_layer_step():
  g = _two_layer()
  opt = optax.chain(layerlr_optax.sgd(0.1),
                    optax.contrib.reduce_on_plateau(patience=0, factor=0.5,
                                                    cooldown=0))
  state = opt.init(g)
  for loss in (1.0, 2.0, 3.0):
    out, state = opt.update(g, state, value=jnp.asarray(loss))
  scale = float(optax.tree_utils.tree_get(state, 'scale'))
  assert scale < 1.0
  want = _want(g, 0.1 * scale)
  for k in g:
    np.testing.assert_allclose(out[k]['w'], want[k], rtol=1e-5)


def test_jit_with_donation():
  g = _two_layer()
  params = jax.tree.map(jnp.zeros_like, g)
  opt = layerlr_optax.sgd(0.1, momentum=0.9)

  @jax.jit
  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step, donate_argnums=(0, 1))
  params, state = step(params, opt.init(params), g)
  want = _want(g, 0.1)
  for k in g:
    np.testing.assert_allclose(params[k]['w'], want[k], rtol=1e-5)


def test_vmap_over_seeds_inside_scan():
  opt = layerlr_optax.sgd(0.05)
  target = jnp.asarray([1.0, -2.0, 0.5])

  def loss(p):
    return jnp.sum((p['l1']['w'] * p['l2']['w'] - target) ** 2)

  def train(key):
    p = {'l1': {'w': jax.random.normal(key, (3,))}, 'l2': {'w': jnp.ones(3)}}
    state = opt.init(p)

    def body(carry, _):
      p, state = carry
      updates, state = opt.update(jax.grad(loss)(p), state, p)
      return (optax.apply_updates(p, updates), state), None

    return jax.lax.scan(body, (p, state), None, length=5)[0][0]

  keys = jax.random.split(jax.random.key(0), 3)
  got = jax.jit(jax.vmap(train))(keys)
  for seed in range(3):
    p = {'l1': np.asarray(jax.random.normal(keys[seed], (3,)), np.float64),
         'l2': np.ones(3)}
    for _ in range(5):
      r = p['l1'] * p['l2'] - np.asarray(target)
      g = {'l1': 2 * r * p['l2'], 'l2': 2 * r * p['l1']}
      p = {k: p[k] - 0.05 * reference.factor(np.linalg.norm(g[k])) * g[k]
           for k in p}
    for k in p:
      np.testing.assert_allclose(got[k]['w'][seed], p[k], rtol=2e-4,
                                 atol=1e-6)


@pytest.mark.frameworks
def test_orbax_round_trip_continues_bit_identically(tmp_path):
  import orbax.checkpoint as ocp
  rng = np.random.default_rng(0)
  params = {'a': {'w': jnp.asarray(rng.standard_normal(4), jnp.float32)},
            'b': {'w': jnp.asarray(rng.standard_normal(3), jnp.float32)}}
  grads = [jax.tree.map(lambda p, i=i: p * 0.1 ** i, params)
           for i in range(4)]
  opt = layerlr_optax.layerwise(optax.adam(1e-2), record_factors=True)
  update = jax.jit(opt.update)

  def run(params, state, grads):
    for g in grads:
      updates, state = update(g, state, params)
      params = optax.apply_updates(params, updates)
    return params, state

  straight, _ = run(params, opt.init(params), grads)
  half, state = run(params, opt.init(params), grads[:2])
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / 'ckpt', {'params': half, 'opt_state': state})
  checkpointer.wait_until_finished()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          {'params': half, 'opt_state': state})
  restored = checkpointer.restore(tmp_path / 'ckpt', abstract)
  resumed, _ = run(restored['params'], restored['opt_state'], grads[2:])
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)


def test_differentiating_through_an_update():
  """Meta-learning differentiates an update with respect to its inputs:
  d u / d lr = -f(||g||) g."""
  g = {'a': {'w': jnp.asarray([0.3, -0.4])}}

  def first_entry(lr):
    opt = layerlr_optax.sgd(lr)
    return opt.update(g, opt.init(g))[0]['a']['w'][0]

  np.testing.assert_allclose(jax.grad(first_entry)(0.1),
                             -reference.factor(0.5) * 0.3, rtol=1e-6)


def test_params_of_another_structure_are_named():
  g = {'a': {'w': jnp.ones(2), 'b': jnp.ones(1)}}
  opt = layerlr_optax.scale_by_layer_trust_ratio()
  with pytest.raises(ValueError, match='parameters have the structure .*'
                                       'differs from the updates'):
    opt.update(g, opt.init(g), {'a': {'w': jnp.ones(2)}})
