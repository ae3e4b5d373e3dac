"""The near-minimum study (experiments/near_minimum.py)."""

import jax.numpy as jnp
import optax
from absl.testing import parameterized

import layerlr_optax


class NearMinimumTest(parameterized.TestCase):

  def test_cap_restores_adam_at_a_minimum(self):
    """Near a minimum the uncapped factor inflates Adam's step (issue #11)."""
    from experiments import near_minimum
    for cap, converged in ((None, False), (2.0, True)):
      opt = layerlr_optax.layerwise(optax.adam(0.1), max_factor=cap)
      x = near_minimum.run('parabola', opt, jnp.dtype('float32'), 10_000)
      self.assertEqual(near_minimum.distance('parabola', x) < 3e-2,
                       converged, cap)
