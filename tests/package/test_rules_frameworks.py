"""The per-layer family as each framework's users write it: a Flax NNX
``nnx.Optimizer`` (with an ``nnx.vmap``-stacked block), a linen
``TrainState`` with boxed (``nn.Partitioned``) and unboxed params and an
``nn.scan`` stack, an Equinox model with a ``filter_vmap`` stack.

The reference for each is the same member on a plain nested dict of the same
arrays (that path is tested against optax and NumPy in test_rules.py): the
framework's boxes, node types and names must change nothing.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import layerlr_optax

pytestmark = pytest.mark.frameworks

STACK = layerlr_optax.stacked_paths(r'^blocks/')
EXCLUDE = layerlr_optax.ndim_at_most(1)


def members(stacked):
  """Every member, with the partition options users pass."""
  kw = dict(stacked=stacked, exclude=EXCLUDE)
  return {
      'lars': layerlr_optax.lars(0.1, weight_decay=1e-3, **kw),
      'lamb': layerlr_optax.lamb(1e-2, weight_decay=1e-3, **kw),
      'adalayer': layerlr_optax.adalayer(1e-2, **kw),
      'llrd': optax.chain(optax.adamw(1e-2), layerlr_optax.scale_by_layer_decay(
          0.5, ['^blocks/', '.*'], stacked=stacked)),
      'trust_ratio': optax.chain(
          layerlr_optax.scale_by_layer_trust_ratio(record_factors=True, **kw),
          optax.sgd(0.1)),
  }


def _plain(tree):
  """The arrays of `tree` as a nested dict keyed by their readable paths."""
  out = {}
  for path, leaf in zip(*_paths(tree)):
    node = out
    parts = path.split('/')
    for part in parts[:-1]:
      node = node.setdefault(part, {})
    node[parts[-1]] = np.asarray(leaf)
  return out


def _paths(tree):
  part = layerlr_optax.layer_partition(tree, layers='leaf')
  return list(part), jax.tree.leaves(tree)


def _plain_updates(make, params, grads, steps=2):
  """The member on plain dicts: the reference."""
  opt = make()
  params = jax.tree.map(jnp.asarray, params)
  state = opt.init(params)
  out = []
  for g in grads[:steps]:
    updates, state = opt.update(jax.tree.map(jnp.asarray, g), state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return params


def _assert_same(framework_params, plain_params, what):
  got = _plain(framework_params)
  flat_got = dict(zip(*_paths(got)))
  flat_want = dict(zip(*_paths(plain_params)))
  assert set(flat_got) == set(flat_want), what
  for k in flat_want:
    np.testing.assert_allclose(flat_got[k], flat_want[k], rtol=2e-6,
                               atol=1e-7, err_msg=f'{what}: {k}')


@pytest.mark.parametrize('name', list(members(None)))
def test_nnx_optimizer_with_a_vmapped_stack(name):
  from flax import nnx

  from tests.package.test_user_code import _nnx_update

  @nnx.vmap(in_axes=0, out_axes=0)
  def make_blocks(key):
    return nnx.Linear(4, 4, rngs=nnx.Rngs(key))

  class Net(nnx.Module):

    def __init__(self):
      self.blocks = make_blocks(jax.random.split(jax.random.key(0), 3))
      self.norm = nnx.LayerNorm(4, rngs=nnx.Rngs(2))
      self.head = nnx.Linear(4, 2, rngs=nnx.Rngs(1))

    def __call__(self, x):
      # The stacked blocks one after the other.
      kernel, bias = self.blocks.kernel[...], self.blocks.bias[...]
      for i in range(3):
        x = jnp.tanh(x @ kernel[i] + bias[i])
      return self.head(self.norm(x))

  model = Net()
  x = jax.random.normal(jax.random.key(3), (8, 4))
  y = jax.random.normal(jax.random.key(4), (8, 2))
  before = _plain(nnx.state(model, nnx.Param))
  optimizer = nnx.Optimizer(model, members(STACK)[name], wrt=nnx.Param)
  grads_seen = []

  @nnx.jit
  def step(model, optimizer):
    grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    _nnx_update(optimizer, model, grads)
    return grads

  for _ in range(2):
    grads_seen.append(_plain(step(model, optimizer)))
  want = _plain_updates(lambda: members(STACK)[name], before, grads_seen)
  _assert_same(nnx.state(model, nnx.Param), want, f'nnx {name}')
  if name == 'trust_ratio':
    ratios = layerlr_optax.recorded_factors(optimizer.opt_state)
    assert sorted(ratios) == ['blocks[0]', 'blocks[1]', 'blocks[2]', 'head']


@pytest.mark.parametrize('boxed', [False, True])
@pytest.mark.parametrize('name', list(members(None)))
def test_linen_train_state_with_a_scanned_stack(name, boxed):
  import flax.linen as nn
  from flax.training import train_state

  class Block(nn.Module):

    @nn.compact
    def __call__(self, x, _):
      init = (nn.with_partitioning(nn.initializers.lecun_normal(),
                                   (None, 'model'))
              if boxed else nn.initializers.lecun_normal())
      return jnp.tanh(nn.Dense(4, kernel_init=init)(x)), None

  class Net(nn.Module):

    @nn.compact
    def __call__(self, x):
      stack = nn.scan(Block, variable_axes={'params': 0},
                      split_rngs={'params': True}, length=3,
                      metadata_params={nn.PARTITION_NAME: None})
      x = stack(name='blocks')(x, None)[0]
      return nn.Dense(2, name='head')(nn.LayerNorm(name='norm')(x))

  x = jax.random.normal(jax.random.key(3), (8, 4))
  y = jax.random.normal(jax.random.key(4), (8, 2))
  params = Net().init(jax.random.key(0), x)['params']
  if boxed:
    assert isinstance(params['blocks']['Dense_0']['kernel'], nn.Partitioned)
  state = train_state.TrainState.create(apply_fn=Net().apply, params=params,
                                        tx=members(STACK)[name])

  @jax.jit
  def step(state):
    grads = jax.grad(lambda p: jnp.mean(
        (state.apply_fn({'params': p}, x) - y) ** 2))(state.params)
    return state.apply_gradients(grads=grads), grads

  grads_seen = []
  for _ in range(2):
    state, grads = step(state)
    grads_seen.append(_plain(nn.unbox(grads)))
  want = _plain_updates(lambda: members(STACK)[name], _plain(
      nn.unbox(params)), grads_seen)
  _assert_same(nn.unbox(state.params), want, f'linen {name} boxed={boxed}')


@pytest.mark.parametrize('name', list(members(None)))
def test_equinox_filter_vmap_stack(name):
  import equinox as eqx
  keys = jax.random.split(jax.random.key(0), 3)
  blocks = eqx.filter_vmap(lambda k: eqx.nn.Linear(4, 4, key=k))(keys)
  model = {'blocks': blocks, 'head': eqx.nn.Linear(4, 2, key=keys[0])}
  params, static = eqx.partition(model, eqx.is_array)
  x = jax.random.normal(jax.random.key(3), (8, 4))
  y = jax.random.normal(jax.random.key(4), (8, 2))

  def loss(p):
    m = eqx.combine(p, static)
    h = x
    for i in range(3):
      h = jnp.tanh(h @ m['blocks'].weight[i].T + m['blocks'].bias[i])
    return jnp.mean((jax.vmap(m['head'])(h) - y) ** 2)

  opt = members(STACK)[name]
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    return eqx.apply_updates(params, updates), state, grads

  before = _plain(params)
  grads_seen = []
  for _ in range(2):
    params, state, grads = step(params, state)
    grads_seen.append(_plain(grads))
  want = _plain_updates(lambda: members(STACK)[name], before, grads_seen)
  _assert_same(params, want, f'equinox {name}')
