"""The near-minimum study (experiments/near_minimum.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import parameterized

import layerlr_optax


class NearMinimumTest(parameterized.TestCase):

  def test_cap_restores_adam_at_a_minimum(self):
    """Near a minimum the uncapped factor inflates Adam's step (issue #11).

    Where an oscillating run stands at its last step is chaotic (one CPU
    ended inside the tolerance, #31), so the test reads what holds over 32
    starting points: the RMS distance over the last 1,000 of 10,000 steps.
    Measured here: uncapped 0.021-0.077 (median 0.029); capped and plain
    Adam exactly 0. The thresholds leave a factor of ~3 and ~1e3."""
    from experiments import near_minimum
    starts = 1.0 + 0.2 * jax.random.normal(jax.random.key(0), (32, 3))

    def tail_rms(opt, x0):
      def step(carry, _):
        params, state = carry
        grads = jax.grad(lambda p: near_minimum.parabola(p['x']))(params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), jnp.max(jnp.abs(params['x']))
      params = {'x': x0}
      _, distances = jax.lax.scan(step, (params, opt.init(params)), None,
                                  length=10_000)
      return jnp.sqrt(jnp.mean(distances[-1_000:] ** 2))

    rms = {}
    for cap in (None, 2.0):
      opt = layerlr_optax.layerwise(optax.adam(0.1), max_factor=cap)
      rms[cap] = np.asarray(jax.jit(jax.vmap(
          lambda x, opt=opt: tail_rms(opt, x)))(starts))
    self.assertGreater(np.median(rms[None]), 1e-2)
    self.assertLess(np.max(rms[2.0]), 1e-5)
