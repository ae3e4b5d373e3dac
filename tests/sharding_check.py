"""Run by test_sharding.py in a subprocess with 8 simulated CPU devices."""

import os
import sys

assert 'xla_force_host_platform_device_count=8' in os.environ.get(
    'XLA_FLAGS', ''), 'run me with XLA_FLAGS=--xla_force_host_platform_device_count=8'

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

try:
  shard_map = jax.shard_map
except AttributeError:  # jax < 0.6: the minimum-version environment
  from jax.experimental.shard_map import shard_map  # pylint: disable=g-import-not-at-top

import layerlr_optax

assert len(jax.devices()) == 8, jax.devices()
rng = np.random.default_rng(0)
SHAPES = {'conv': {'kernel': (8, 3, 4), 'bias': (8,)},
          'dense': {'kernel': (16, 5), 'bias': (16,)}, 'head': {'w': (24,)}}
params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s),
                                            jnp.float32),
                      SHAPES, is_leaf=lambda x: isinstance(x, tuple))
grad_seq = [jax.tree.map(lambda p, i=i: p * (0.1 ** i) + 0.01 * i, params)
            for i in range(5)]


def train(opt, params, grads_list, put=lambda t: t):
  state = opt.init(params)
  params = put(params)

  @jax.jit
  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for grads in grads_list:
    params, state = step(params, state, put(grads))
  return params


optimizers = {
    'sgd': layerlr_optax.sgd(0.1, momentum=0.9, nesterov=True),
    'adagrad': layerlr_optax.adagrad(0.1),
    'leaf': layerlr_optax.sgd(0.1, layers='leaf'),
}
mesh = Mesh(np.array(jax.devices()), ('fsdp',))
fsdp = NamedSharding(mesh, P('fsdp'))  # every leaf's first axis over 8 devices


def shard(tree):
  return jax.tree.map(lambda x: jax.device_put(x, fsdp), tree)


for name, opt in optimizers.items():
  single = train(opt, params, grad_seq)
  sharded = train(opt, params, grad_seq, put=shard)
  leaf = jax.tree.leaves(sharded)[0]
  assert leaf.sharding.spec == P('fsdp'), leaf.sharding
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6,
                               atol=1e-7, err_msg=f'NamedSharding {name}')
  print(f'NamedSharding {name}: equal to single device')

# shard_map: every device sees a shard of every leaf; axis_name makes the
# norm global. Without it, each device would use its shard's norm.
full = layerlr_optax.scale_by_layer_gradient()
expected, _ = full.update(grad_seq[1], full.init(params))
for axis_name, should_match in (('fsdp', True), (None, False)):
  local = layerlr_optax.scale_by_layer_gradient(axis_name=axis_name)

  def per_device(grads, local=local):
    return local.update(grads, local.init(grads))[0]

  spec = jax.tree.map(lambda _: P('fsdp'), grad_seq[1])
  mapped = jax.jit(shard_map(per_device, mesh=mesh, in_specs=(spec,),
                                 out_specs=spec))
  got = mapped(shard(grad_seq[1]))
  close = all(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-8)
              for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)))
  assert close == should_match, (axis_name, close)
  print(f'shard_map axis_name={axis_name}: matches global norm = {close}')

# pmap with axis_name, the older API.
pmapped = jax.pmap(
    lambda g: layerlr_optax.scale_by_layer_gradient(axis_name='i').update(
        g, optax.EmptyState())[0], axis_name='i')
split = jax.tree.map(lambda x: x.reshape(8, -1, *x.shape[1:]), grad_seq[1])
got = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), pmapped(split))
for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6,
                             atol=1e-8)
print('pmap axis_name: matches global norm')

# Scan-stacked layers (issue #11): 8 blocks stacked along axis 0, each with
# its own factor, equal to the same blocks unrolled into 8 modules.
STACK = {'blocks': {'kernel': (8, 5, 8), 'bias': (8, 8)},
         'head': {'w': (8, 3)}}
STACKED = {'blocks': 0, 'head': None}
stack_params = jax.tree.map(
    lambda s: jnp.asarray(rng.standard_normal(s), jnp.float32), STACK,
    is_leaf=lambda x: isinstance(x, tuple))
stack_grads = [jax.tree.map(lambda p, i=i: p * (0.1 ** i), stack_params)
               for i in range(4)]
for grads in stack_grads:  # blocks 10x apart, so their factors differ
  grads['blocks'] = jax.tree.map(
      lambda g: g * (10.0 ** -jnp.arange(8.0)).reshape(
          (8,) + (1,) * (g.ndim - 1)), grads['blocks'])


def unroll(tree):
  out = {f'block_{i}': jax.tree.map(lambda a, i=i: a[i], tree['blocks'])
         for i in range(8)}
  out['head'] = tree['head']
  return out


def assert_unrolled_equal(stacked_tree, unrolled_tree, what):
  for a, b in zip(jax.tree.leaves(unroll(stacked_tree)),
                  jax.tree.leaves(unrolled_tree)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-7, err_msg=what)


stack_sharding = {
    'blocks': jax.tree.map(lambda _: fsdp, stack_params['blocks']),
    'head': {'w': NamedSharding(mesh, P())},
}
stack_optimizers = {
    'nag': lambda **kw: layerlr_optax.sgd(0.1, momentum=0.9, nesterov=True,
                                          **kw),
    'layerwise_adagrad': lambda **kw: layerlr_optax.layerwise(
        optax.adagrad(0.1), **kw),
}
for name, make in stack_optimizers.items():
  want = train(make(), unroll(stack_params), [unroll(g) for g in stack_grads])
  got = train(make(stacked=STACKED), stack_params, stack_grads,
              put=lambda t: jax.device_put(t, stack_sharding))
  assert got['blocks']['kernel'].sharding.spec == P('fsdp')
  assert_unrolled_equal(got, want, f'stacked axis sharded, {name}')
  print(f'NamedSharding of the stacked axis, {name}: equal to unrolled')

# shard_map: the devices split the blocks' other axes (each holds a shard of
# every slice); axis_name sums the per-slice norms across them.
full = layerlr_optax.scale_by_layer_gradient()
want, _ = full.update(unroll(stack_grads[1]), optax.EmptyState())
local = layerlr_optax.scale_by_layer_gradient(axis_name='fsdp',
                                              stacked=STACKED)
map_specs = {'blocks': {'kernel': P(None, None, 'fsdp'),
                        'bias': P(None, 'fsdp')},
             'head': {'w': P('fsdp')}}
mapped = jax.jit(shard_map(
    lambda g: local.update(g, local.init(g))[0], mesh=mesh,
    in_specs=(map_specs,), out_specs=map_specs))
got = mapped(jax.device_put(stack_grads[1], jax.tree.map(
    lambda spec: NamedSharding(mesh, spec), map_specs)))
assert_unrolled_equal(got, want, 'shard_map with stacked layers')
print('shard_map axis_name with stacked layers: equal to unrolled')
print('SHARDING OK')
sys.exit(0)
