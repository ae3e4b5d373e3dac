"""Run by test_sharding.py in a subprocess with 8 simulated CPU devices."""

import os
import sys

assert 'xla_force_host_platform_device_count=8' in os.environ.get(
    'XLA_FLAGS', ''), 'run me with XLA_FLAGS=--xla_force_host_platform_device_count=8'

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

try:
  shard_map = jax.shard_map
except AttributeError:  # jax < 0.6: the minimum-version environment
  from jax.experimental.shard_map import shard_map

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

# axis_name on every public function inside shard_map: each device holds a
# shard of every leaf; the result equals the same function on the full
# arrays without axis_name.
full_grads, full_params = grad_seq[2], params
spec = jax.tree.map(lambda _: P('fsdp'), full_grads)
for name, make in (
    ('sgd', lambda **kw: layerlr_optax.sgd(0.1, momentum=0.9, **kw)),
    ('adagrad', lambda **kw: layerlr_optax.adagrad(0.1, **kw)),
    ('layerwise', lambda **kw: layerlr_optax.layerwise(optax.adam(1e-2),
                                                        **kw)),
    # The per-layer family: norms of updates and params (trust ratio),
    # mean squares over global element counts (Adalayer).
    ('trust_ratio', lambda **kw: layerlr_optax.scale_by_layer_trust_ratio(
        trust_coefficient=0.1, **kw)),
    ('lars', lambda **kw: layerlr_optax.lars(0.1, weight_decay=1e-3, **kw)),
    ('lamb', lambda **kw: layerlr_optax.lamb(1e-2, **kw)),
    ('adalayer', lambda **kw: layerlr_optax.adalayer(1e-2, **kw))):
  whole = make()
  want, _ = whole.update(full_grads, whole.init(full_params), full_params)
  local = make(axis_name='fsdp')

  def per_device(g, p, local=local):
    return local.update(g, local.init(p), p)[0]

  got = jax.jit(shard_map(per_device, mesh=mesh, in_specs=(spec, spec),
                          out_specs=spec))(shard(full_grads),
                                           shard(full_params))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-8, err_msg=f'shard_map {name}')
  print(f'shard_map axis_name {name}: equals the full arrays')

want_stats = layerlr_optax.layer_stats(full_grads)
stats_spec = jax.tree.map(lambda _: P(), want_stats)
got_stats = jax.jit(shard_map(
    lambda g: layerlr_optax.layer_stats(g, axis_name='fsdp'), mesh=mesh,
    in_specs=(spec,), out_specs=stats_spec))(shard(full_grads))
for layer in want_stats:
  for key in ('grad_norm', 'factor'):
    np.testing.assert_allclose(np.asarray(got_stats[layer][key]),
                               np.asarray(want_stats[layer][key]), rtol=1e-5)
print('shard_map axis_name layer_stats: equals the full arrays')

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
local = layerlr_optax.scale_by_layer_gradient(
    axis_name='fsdp', stacked=STACKED, stacked_axis_name=())
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

# shard_map with the stacked axis itself split (issue #30): each device holds
# whole slices, named by their place in the whole stack. Layouts: the stack
# over 'stage' with each slice split over 'fsdp'; the same with the sums
# over the whole mesh; every slice on its own device, nothing else split.
mesh_sf = Mesh(np.array(jax.devices()).reshape(4, 2), ('stage', 'fsdp'))
SPLIT_LAYOUTS = {
    'stack over stage, slices over fsdp': (
        'fsdp', 'stage',
        {'blocks': {'kernel': P('stage', None, 'fsdp'),
                    'bias': P('stage', 'fsdp')},
         'head': {'w': P('fsdp', None)}}),
    'stack over stage, sums over the mesh': (
        ('stage', 'fsdp'), 'stage',
        {'blocks': {'kernel': P('stage', None, 'fsdp'),
                    'bias': P('stage', 'fsdp')},
         'head': {'w': P(('stage', 'fsdp'), None)}}),
    'one slice per device': (
        None, ('stage', 'fsdp'),
        {'blocks': {'kernel': P(('stage', 'fsdp'), None, None),
                    'bias': P(('stage', 'fsdp'), None)},
         'head': {'w': P()}}),
}
SPLIT_RULES = {
    'eq. 9': lambda **kw: layerlr_optax.scale_by_layer_gradient(
        record_factors=True, **kw),
    'layerwise adagrad': lambda **kw: layerlr_optax.layerwise(
        optax.adagrad(0.1), record_factors=True, **kw),
    'lamb': lambda **kw: layerlr_optax.lamb(1e-2, record_factors=True, **kw),
    'adalayer': lambda **kw: layerlr_optax.adalayer(1e-2, record_factors=True,
                                                    **kw),
    'llrd': lambda **kw: layerlr_optax.scale_by_layer_decay(
        0.5, ['blocks', 'head'], record_factors=True,
        **{k: v for k, v in kw.items() if k != 'axis_name'}),
}


def two_steps(opt, params, grads_list):
  """Two updates from a fresh state: the updates and factors of the last."""
  state = opt.init(params)
  for grads in grads_list:
    updates, state = opt.update(grads, state, params)
  return updates, layerlr_optax.recorded_factors(state)


for layout, (sum_axes, stack_axes, specs) in SPLIT_LAYOUTS.items():
  put = lambda t, specs=specs: jax.device_put(t, jax.tree.map(
      lambda spec: NamedSharding(mesh_sf, spec), specs))
  for rule, make in SPLIT_RULES.items():
    want_u, want_f = two_steps(make(stacked=STACKED), stack_params,
                               stack_grads[1:3])
    opt = make(axis_name=sum_axes, stacked=STACKED,
               stacked_axis_name=stack_axes)
    mapped = jax.jit(shard_map(
        lambda p, g1, g2, opt=opt: two_steps(opt, p, [g1, g2]),
        mesh=mesh_sf, in_specs=(specs, specs, specs),
        out_specs=(specs, P())))
    got_u, got_f = mapped(put(stack_params), put(stack_grads[1]),
                          put(stack_grads[2]))
    what = f'stacked axis split, {layout}, {rule}'
    assert list(got_f) == list(want_f), (what, list(got_f), list(want_f))
    for layer in want_f:
      np.testing.assert_allclose(np.asarray(got_f[layer]),
                                 np.asarray(want_f[layer]), rtol=1e-5,
                                 err_msg=f'{what}, {layer}')
    for a, b in zip(jax.tree.leaves(got_u), jax.tree.leaves(want_u)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                 atol=1e-8, err_msg=what)
  # layer_stats, and a state made by init outside shard_map on the whole
  # stack, continued inside it.
  want_stats = layerlr_optax.layer_stats(stack_grads[1], stacked=STACKED)
  got_stats = jax.jit(shard_map(
      lambda g, sum_axes=sum_axes, stack_axes=stack_axes:
      layerlr_optax.layer_stats(g, axis_name=sum_axes, stacked=STACKED,
                                stacked_axis_name=stack_axes),
      mesh=mesh_sf, in_specs=(specs,), out_specs=P()))(put(stack_grads[1]))
  assert list(got_stats) == list(want_stats), layout
  for layer in want_stats:
    for key in ('grad_norm', 'factor'):
      np.testing.assert_allclose(np.asarray(got_stats[layer][key]),
                                 np.asarray(want_stats[layer][key]),
                                 rtol=1e-5, err_msg=f'{layout} {layer}')
  whole = layerlr_optax.scale_by_layer_gradient(
      record_factors=True, axis_name=sum_axes, stacked=STACKED,
      stacked_axis_name=stack_axes)
  outside_state = whole.init(stack_params)
  got_state = jax.jit(shard_map(
      lambda g, state, whole=whole: whole.update(g, state)[1], mesh=mesh_sf,
      in_specs=(specs, P()), out_specs=P()))(put(stack_grads[1]),
                                            outside_state)
  assert (jax.tree.structure(got_state)
          == jax.tree.structure(outside_state)), layout
  want_f = layerlr_optax.layer_stats(stack_grads[1], stacked=STACKED)
  for layer, factor in layerlr_optax.recorded_factors(got_state).items():
    np.testing.assert_allclose(np.asarray(factor),
                               np.asarray(want_f[layer]['factor']),
                               rtol=1e-5, err_msg=f'{layout} {layer}')
  print(f'shard_map, {layout}: every rule equals one device')

# The same with pmap, the older API: it drops the mapped axis, so each of 4
# devices gets its 2 whole blocks as a stack of 2 (the leading axis split
# off by a reshape); the head is replicated (in_axes None).
def by_device(tree):
  return {'blocks': jax.tree.map(lambda x: x.reshape((4, 2) + x.shape[1:]),
                                 tree['blocks']), 'head': tree['head']}


def whole_stack(tree):
  return {'blocks': jax.tree.map(lambda x: x.reshape((8,) + x.shape[2:]),
                                 tree['blocks']),
          'head': jax.tree.map(lambda x: x[0], tree['head'])}


pmap_in = ({'blocks': 0, 'head': None},) * 3
for rule, make in SPLIT_RULES.items():
  want_u, want_f = two_steps(make(stacked=STACKED), stack_params,
                             stack_grads[1:3])
  opt = make(axis_name=None, stacked=STACKED, stacked_axis_name='stage')
  got_u, got_f = jax.pmap(
      lambda p, g1, g2, opt=opt: two_steps(opt, p, [g1, g2]),
      axis_name='stage', in_axes=pmap_in, devices=jax.devices()[:4])(
          by_device(stack_params), by_device(stack_grads[1]),
          by_device(stack_grads[2]))
  what = f'pmap, stacked axis split, {rule}'
  assert list(got_f) == list(want_f), (what, list(got_f), list(want_f))
  for layer in want_f:
    for device in range(4):  # the same on every device
      np.testing.assert_allclose(np.asarray(got_f[layer][device]),
                                 np.asarray(want_f[layer]), rtol=1e-5,
                                 err_msg=f'{what}, {layer}')
  for a, b in zip(jax.tree.leaves(whole_stack(got_u)),
                  jax.tree.leaves(want_u)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-8, err_msg=what)
print('pmap, stacked axis split: every rule equals one device')

# The per-layer family on the stacked model (issue #32).
FAMILY = {
    'lars': lambda: layerlr_optax.lars(0.1, stacked=STACKED),
    'lamb': lambda: layerlr_optax.lamb(1e-2, stacked=STACKED),
    'adalayer': lambda: layerlr_optax.adalayer(1e-2, stacked=STACKED),
    'llrd': lambda: optax.chain(optax.adam(1e-2),
                                layerlr_optax.scale_by_layer_decay(
                                    0.5, ['blocks', 'head'],
                                    stacked=STACKED)),
}


# Meshes as today's jax makes them (issue #22): jax.make_mesh's default axis
# types (Explicit in jax >= 0.7), and Auto. Every public function, with the
# stacked axis sharded and not, against the same computation on one device.
def mesh_checks(axis_types, label):
  kwargs = {} if axis_types is None else {'axis_types': axis_types}
  mesh2 = jax.make_mesh((4, 2), ('data', 'model'), **kwargs)
  specs = {
      'stacked axis sharded': {'blocks': {'kernel': P('data', None, 'model'),
                                          'bias': P('data', 'model')},
                               'head': {'w': P('model', None)}},
      'stacked axis replicated': {'blocks': {'kernel': P(None, None,
                                                         'model'),
                                             'bias': P(None, 'model')},
                                  'head': {'w': P('data', None)}},
  }
  grads = stack_grads[1]
  want_stats = layerlr_optax.layer_stats(grads, stacked=STACKED,
                                         max_factor=5.0)
  make = lambda: layerlr_optax.sgd(0.1, momentum=0.9, stacked=STACKED,
                                   record_factors=True)
  want_params, want_state = None, None
  opt = make()
  state = opt.init(stack_params)
  updates, want_state = opt.update(grads, state, stack_params)
  want_params = optax.apply_updates(stack_params, updates)
  want_lw, _ = layerlr_optax.layerwise(optax.adam(1e-3), stacked=STACKED
                                       ).update(grads, optax.adam(1e-3).init(
                                           stack_params), stack_params)
  want_family = {}
  for member, make_member in FAMILY.items():
    tx = make_member()
    want_family[member] = tx.update(grads, tx.init(stack_params),
                                    stack_params)[0]
  for name, spec in specs.items():
    put = lambda t, spec=spec: jax.device_put(t, jax.tree.map(
        lambda s: NamedSharding(mesh2, s), spec))
    with (jax.set_mesh(mesh2) if hasattr(jax, 'set_mesh') else mesh2):
      g, p = put(grads), put(stack_params)
      stats = layerlr_optax.layer_stats(g, stacked=STACKED, max_factor=5.0)
      jit_stats = jax.jit(lambda g: layerlr_optax.layer_stats(
          g, stacked=STACKED, max_factor=5.0))(g)
      for got in (stats, jit_stats):
        assert list(got) == list(want_stats), (label, name, list(got))
        for layer in want_stats:
          for key in ('grad_norm', 'factor'):
            np.testing.assert_allclose(np.asarray(got[layer][key]),
                                       np.asarray(want_stats[layer][key]),
                                       rtol=1e-6, err_msg=f'{label} {name}')
      assert (layerlr_optax.layer_partition(p, stacked=STACKED)
              == layerlr_optax.layer_partition(stack_params, stacked=STACKED))
      opt = make()

      @jax.jit
      def step(p, state, g, opt=opt):
        updates, state = opt.update(g, state, p)
        return optax.apply_updates(p, updates), state

      new_p, new_state = step(p, opt.init(p), g)
      for a, b in zip(jax.tree.leaves(new_p), jax.tree.leaves(want_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6,
                                   atol=1e-7, err_msg=f'{label} {name}')
      got_f = layerlr_optax.recorded_factors(new_state)
      want_f = layerlr_optax.recorded_factors(want_state)
      assert list(got_f) == list(want_f)
      for layer in want_f:
        np.testing.assert_allclose(np.asarray(got_f[layer]),
                                   np.asarray(want_f[layer]), rtol=1e-6)
      jit_f = jax.jit(layerlr_optax.recorded_factors)(new_state)
      for layer in want_f:
        np.testing.assert_allclose(np.asarray(jit_f[layer]),
                                   np.asarray(want_f[layer]), rtol=1e-6)
      lw = layerlr_optax.layerwise(optax.adam(1e-3), stacked=STACKED)
      got_lw, _ = jax.jit(lw.update)(g, lw.init(p), p)
      for a, b in zip(jax.tree.leaves(got_lw), jax.tree.leaves(want_lw)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6,
                                   atol=1e-9, err_msg=f'{label} {name}')
      for member, make_member in FAMILY.items():
        tx = make_member()
        got_m, _ = jax.jit(tx.update)(g, tx.init(p), p)
        for a, b in zip(jax.tree.leaves(got_m),
                        jax.tree.leaves(want_family[member])):
          np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                     rtol=1e-6, atol=1e-9,
                                     err_msg=f'{label} {name} {member}')
    print(f'{label} mesh, {name}: every public function equals one device')


if hasattr(jax.sharding, 'AxisType'):
  AxisType = jax.sharding.AxisType
  default_types = jax.make_mesh((4, 2), ('data', 'model')).axis_types
  print(f'jax.make_mesh default axis types: {default_types}')
  mesh_checks(None, 'default (' + ', '.join(str(t).split('.')[-1]
                                          for t in default_types) + ')')
  mesh_checks((AxisType.Explicit,) * 2, 'Explicit')
  mesh_checks((AxisType.Auto,) * 2, 'Auto')
else:  # jax < 0.6 (the minimum-version run): every mesh axis is Auto.
  mesh_checks(None, 'Auto (this jax has no axis types)')
print('SHARDING OK')
sys.exit(0)
