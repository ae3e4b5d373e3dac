"""layerlr_optax.sgd / adagrad against Caffe's solvers (NumPy reference)."""

import jax
import numpy as np
from absl.testing import parameterized

import layerlr_optax
from tests.package import reference
from tests.package.toy_tree import MODULE_LAYERS, SHAPES, flatten, nest, random_grads

NUM_STEPS = 30
EPS32 = float(np.finfo(np.float32).eps)


def run_both(opt, ref, jit):
  """Parameters after NUM_STEPS updates by `opt` (float32) and by the NumPy
  reference (float64), and the float32 error each element may carry."""
  params = nest({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})
  ref_params = {k: np.zeros(s, np.float64) for k, s in SHAPES.items()}
  magnitude = {k: np.zeros(s, np.float64) for k, s in SHAPES.items()}
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  for step in range(NUM_STEPS):
    grads = random_grads(100 + step)
    updates, state = update(nest(grads), state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    for k, u in ref.update({k: g.astype(np.float64)
                            for k, g in grads.items()}).items():
      ref_params[k] = ref_params[k] + u
      magnitude[k] = magnitude[k] + np.abs(u) + np.abs(ref_params[k])
  # Each step's update carries a relative float32 error of a few ulps (the
  # layer norm, the factor, the momentum or accumulator arithmetic; which
  # ulps depends on the CPU's vectorisation), and each addition to the
  # parameter rounds once more. Summed over the steps, an element's error is
  # bounded by a multiple of eps times the magnitudes it accumulated, not by
  # its final value, which may be a near-cancellation (a 2e-5 relative
  # tolerance failed there on another x86-64 CPU, #31).
  bound = {k: 2e-5 * np.abs(ref_params[k]) + 16 * EPS32 * magnitude[k]
           for k in SHAPES}
  return flatten(params), ref_params, bound


def assert_within(ours, theirs, bound, name):
  excess = np.abs(ours - theirs) - bound
  worst = np.unravel_index(np.argmax(excess), excess.shape)
  assert np.all(excess <= 0), (
      f'{name}: element {worst} is {ours[worst]!r} (float32) vs '
      f'{theirs[worst]!r} (float64), beyond the float32 bound '
      f'{bound[worst]:.3g}')


class CaffeSolversTest(parameterized.TestCase):

  @parameterized.product(
      momentum_nesterov=[(None, False), (0.9, False), (0.9, True)],
      jit=[True, False])
  def test_sgd_equals_caffe_solver(self, momentum_nesterov, jit):
    momentum, nesterov = momentum_nesterov
    lr = 0.01
    opt = layerlr_optax.sgd(lr, momentum=momentum, nesterov=nesterov)
    ref = reference.CaffeSGD(
        {k: np.zeros(s) for k, s in SHAPES.items()}, lr, momentum or 0.0,
        nesterov, MODULE_LAYERS)
    ours, theirs, bound = run_both(opt, ref, jit)
    for k in SHAPES:
      assert_within(ours[k], theirs[k], bound[k], k)

  @parameterized.parameters(True, False)
  def test_adagrad_equals_reference(self, jit):
    opt = layerlr_optax.adagrad(0.05, initial_accumulator_value=0.1, eps=1e-7)
    ref = reference.OptaxConventionAdaGrad(
        {k: np.zeros(s) for k, s in SHAPES.items()}, 0.05, 0.1, 1e-7,
        MODULE_LAYERS)
    ours, theirs, bound = run_both(opt, ref, jit)
    for k in SHAPES:
      assert_within(ours[k], theirs[k], bound[k], k)

  def test_leaf_mode_sgd(self):
    opt = layerlr_optax.sgd(0.01, momentum=0.9, layers='leaf')
    ref = reference.CaffeSGD({k: np.zeros(s) for k, s in SHAPES.items()}, 0.01,
                             0.9, False, [[k] for k in SHAPES])
    ours, theirs, bound = run_both(opt, ref, True)
    for k in SHAPES:
      assert_within(ours[k], theirs[k], bound[k], k)

  def test_schedule_accepted(self):
    opt = layerlr_optax.sgd(lambda count: 0.1 / (1 + count), momentum=0.9)
    params = nest({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})
    state = opt.init(params)
    grads = nest(random_grads(0))
    u0, state = opt.update(grads, state, params)
    u1, state = opt.update(grads, state, params)
    f = reference.layer_factors(random_grads(0), MODULE_LAYERS)
    g = random_grads(0)['head/kernel'] * f['head/kernel']
    np.testing.assert_allclose(u0['head']['kernel'], -0.1 * g, rtol=1e-5)
    # optax order: the rate multiplies the trace, (1.9 g) * 0.05.
    np.testing.assert_allclose(u1['head']['kernel'], -0.05 * 1.9 * g,
                               rtol=1e-5)
