"""The package with Flax and Equinox trees (scanned and unrolled).

These need libraries that are not dependencies of `layerlr_optax`: marked
`frameworks` (deselect them where those are not installed); the
minimum-versions run (scripts/test_min_versions.sh) runs them at the lower
bounds the extras declare.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import layerlr_optax
from tests.package import reference

pytestmark = pytest.mark.frameworks


class FrameworkTreesTest(parameterized.TestCase):

  def test_flax_linen_params(self):
    import flax.linen as nn

    class Net(nn.Module):

      @nn.compact
      def __call__(self, x):
        return nn.Dense(2, name='out')(nn.relu(nn.Dense(3, name='hidden')(x)))

    params = Net().init(jax.random.key(0), jnp.ones((1, 4)))
    self.assertEqual(layerlr_optax.layer_partition(params), {
        'params/hidden': ['params/hidden/bias', 'params/hidden/kernel'],
        'params/out': ['params/out/bias', 'params/out/kernel'],
    })

  def test_flax_nnx_state_groups_kernel_and_bias(self):
    from flax import nnx

    class Net(nnx.Module):

      def __init__(self, rngs):
        self.hidden = nnx.Linear(4, 3, rngs=rngs)
        self.out = nnx.Linear(3, 2, rngs=rngs)

    state = nnx.state(Net(nnx.Rngs(0)), nnx.Param)
    grads = jax.tree.map(jnp.ones_like, state)
    self.assertEqual(layerlr_optax.layer_partition(grads), {
        'hidden': ['hidden/bias', 'hidden/kernel'],
        'out': ['out/bias', 'out/kernel'],
    })
    opt = layerlr_optax.sgd(1.0)
    updates, _ = opt.update(grads, opt.init(state))
    # hidden: 3 + 12 ones -> norm sqrt(15).
    np.testing.assert_allclose(
        jax.tree.leaves(updates)[0], -reference.factor(np.sqrt(15.0)),
        rtol=1e-6)

  def test_equinox_filtered_model(self):
    import equinox as eqx
    mlp = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.key(0))
    params = eqx.filter(mlp, eqx.is_array)
    part = layerlr_optax.layer_partition(params)
    self.assertEqual(list(part), ['layers/0', 'layers/1', 'layers/2'])
    self.assertEqual(part['layers/0'], ['layers/0/weight', 'layers/0/bias'])
    opt = layerlr_optax.sgd(0.1, momentum=0.9)
    state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = jax.jit(opt.update)(grads, state, params)
    self.assertEqual(jax.tree.structure(updates), jax.tree.structure(params))

  def test_linen_scan_equals_unrolled_modules(self):
    """nn.scan stacks 4 blocks into one (4, ...) kernel: each block must
    still get its own factor, exactly as when unrolled (issue #11)."""
    import flax.linen as nn

    class Block(nn.Module):

      @nn.compact
      def __call__(self, x, _):
        return jnp.tanh(nn.Dense(8, name='Dense_0')(x)), None

    class Scanned(nn.Module):

      @nn.compact
      def __call__(self, x):
        stack = nn.scan(Block, variable_axes={'params': 0},
                        split_rngs={'params': True}, length=4)
        x, _ = stack(name='ScanBlock_0')(x, None)
        return nn.Dense(2, name='head')(x)

    class Unrolled(nn.Module):

      @nn.compact
      def __call__(self, x):
        for i in range(4):
          x, _ = Block(name=f'block_{i}')(x, None)
        return nn.Dense(2, name='head')(x)

    x = jax.random.normal(jax.random.key(1), (16, 8))
    y = jax.random.normal(jax.random.key(2), (16, 2))
    scanned = Scanned().init(jax.random.key(0), x)
    stack = scanned['params']['ScanBlock_0']['Dense_0']
    self.assertEqual(stack['kernel'].shape, (4, 8, 8))
    # The same initial values, one module per slice.
    unrolled = {'params': {
        f'block_{i}': {'Dense_0': jax.tree.map(lambda a, i=i: a[i], stack)}
        for i in range(4)}}
    unrolled['params']['head'] = scanned['params']['head']

    def loss_fn(model):
      return lambda p: jnp.mean((model.apply(p, x) - y) ** 2)

    stacked_spec = lambda params: jax.tree_util.tree_map_with_path(
        lambda path, _: 0 if 'ScanBlock' in jax.tree_util.keystr(path)
        else None, params)
    self.assertEqual(
        sorted(layerlr_optax.layer_partition(scanned, stacked=stacked_spec)),
        sorted([f'params/ScanBlock_0/Dense_0[{i}]' for i in range(4)]
               + ['params/head']))

    def to_unrolled(tree):
      block = tree['params']['ScanBlock_0']['Dense_0']
      out = {'params': {
          f'block_{i}': {'Dense_0': jax.tree.map(lambda a, i=i: a[i], block)}
          for i in range(4)}}
      out['params']['head'] = tree['params']['head']
      return out

    makers = {
        'sgd': lambda **kw: layerlr_optax.sgd(0.05, **kw),
        'nag': lambda **kw: layerlr_optax.sgd(0.05, momentum=0.9,
                                              nesterov=True, **kw),
        'layerwise_adagrad': lambda **kw: layerlr_optax.layerwise(
            optax.adagrad(0.05), **kw),
    }
    for name, make in makers.items():
      runs = []
      for model, params, kw in (
          (Scanned(), scanned, {'stacked': stacked_spec}),
          (Unrolled(), unrolled, {})):
        opt = make(**kw)
        state = opt.init(params)
        grad_fn = jax.jit(jax.grad(loss_fn(model)))
        update = jax.jit(opt.update)
        history = []
        for _ in range(5):
          updates, state = update(grad_fn(params), state, params)
          params = optax.apply_updates(params, updates)
          history.append(updates)
        runs.append(history)
      for got, want in zip(*runs):
        for a, b in zip(jax.tree.leaves(to_unrolled(got)),
                        jax.tree.leaves(want)):
          np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7,
                                     err_msg=name)
    # Without `stacked` the four blocks would share one factor.
    self.assertLen(layerlr_optax.layer_stats(scanned), 2)
