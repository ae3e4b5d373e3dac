"""Writes docs/_inventories/*.inv: small intersphinx inventories of the
optax, jax, flax and Python objects these pages name.

  python docs/inventories.py

Read the Docs fetches each project's full inventory online; this machine
cannot, so the offline build (``sphinx-build -W``, run by the tests) links
these names through the local files instead (docs/conf.py). Each entry is the
object's page in that project's own documentation.
"""

from __future__ import annotations

import os
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '_inventories')

OPTAX = 'https://optax.readthedocs.io/en/latest/'
JAX = 'https://docs.jax.dev/en/latest/'
FLAX = 'https://flax.readthedocs.io/en/latest/'
PYTHON = 'https://docs.python.org/3/'

# project -> (base URL, {(role, name): page relative to the base})
OBJECTS = {
    'optax': (OPTAX, {
        **{('function', f'optax.{n}'): f'api/optimizers.html#optax.{n}'
           for n in ('sgd', 'adagrad', 'adam', 'adamw', 'lars', 'lamb',
                     'lion', 'rmsprop', 'yogi', 'amsgrad')},
        **{('function', f'optax.{n}'): f'api/transformations.html#optax.{n}'
           for n in ('chain', 'masked', 'multi_transform', 'set_to_zero',
                     'scale_by_adam', 'trace', 'identity',
                     'with_extra_args_support', 'clip_by_global_norm',
                     'add_decayed_weights', 'inject_hyperparams')},
        **{('class', f'optax.{n}'): f'api/transformations.html#optax.{n}'
           for n in ('GradientTransformation',
                     'GradientTransformationExtraArgs', 'EmptyState',
                     'MultiSteps', 'MaskedNode')},
        **{('data', f'optax.{n}'): f'api/transformations.html#optax.{n}'
           for n in ('OptState', 'Params', 'Updates')},
        ('data', 'optax.ScalarOrSchedule'):
            'api/optimizer_schedules.html#optax.ScalarOrSchedule',
        ('data', 'optax.Schedule'):
            'api/optimizer_schedules.html#optax.Schedule',
        ('function', 'optax.contrib.reduce_on_plateau'):
            'api/contrib.html#optax.contrib.reduce_on_plateau',
        ('function', 'optax.apply_updates'):
            'api/apply_updates.html#optax.apply_updates',
    }),
    'jax': (JAX, {
        **{('function', f'jax.{n}'): f'_autosummary/jax.{n}.html'
           for n in ('jit', 'vmap', 'grad', 'pmap', 'shard_map',
                     'make_mesh', 'set_mesh', 'device_put', 'eval_shape')},
        ('class', 'jax.Array'): '_autosummary/jax.Array.html',
        ('class', 'jax.ShapeDtypeStruct'):
            '_autosummary/jax.ShapeDtypeStruct.html',
        ('function', 'jax.lax.psum'): '_autosummary/jax.lax.psum.html',
        ('function', 'jax.lax.scan'): '_autosummary/jax.lax.scan.html',
        ('function', 'jax.lax.optimization_barrier'):
            '_autosummary/jax.lax.optimization_barrier.html',
        ('class', 'jax.sharding.NamedSharding'):
            'jax.sharding.html#jax.sharding.NamedSharding',
        ('data', 'jax.typing.ArrayLike'):
            'jax.typing.html#jax.typing.ArrayLike',
    }),
    'flax': (FLAX, {
        ('class', 'flax.nnx.Optimizer'):
            'api_reference/flax.nnx/training/optimizer.html'
            '#flax.nnx.optimizer.Optimizer',
        ('function', 'flax.nnx.scan'):
            'api_reference/flax.nnx/transforms.html#flax.nnx.scan',
        ('function', 'flax.nnx.vmap'):
            'api_reference/flax.nnx/transforms.html#flax.nnx.vmap',
        ('function', 'flax.linen.scan'):
            'api_reference/flax.linen/transformations.html'
            '#flax.linen.scan',
        ('class', 'flax.linen.Partitioned'):
            'api_reference/flax.linen/spmd.html#flax.linen.Partitioned',
        ('class', 'flax.training.train_state.TrainState'):
            'api_reference/flax.training.html'
            '#flax.training.train_state.TrainState',
    }),
    'python': (PYTHON, {
        ('function', 're.search'): 'library/re.html#re.search',
        ('class', 're.Pattern'): 'library/re.html#re.Pattern',
        ('class', 'typing.NamedTuple'): 'library/typing.html#typing.NamedTuple',
    }),
}


def inventory(project: str, base: str, objects: dict) -> bytes:
  """The bytes of a Sphinx v2 inventory (objects.inv) of `objects`."""
  del base
  header = ('# Sphinx inventory version 2\n'
            f'# Project: {project}\n'
            '# Version: \n'
            '# The remainder of this file is compressed using zlib.\n')
  lines = [f'{name} py:{role} 1 {page} -\n'
           for (role, name), page in sorted(objects.items(),
                                            key=lambda kv: kv[0][1])]
  return header.encode() + zlib.compress(''.join(lines).encode(), 9)


def main() -> int:
  os.makedirs(OUT, exist_ok=True)
  for project, (base, objects) in OBJECTS.items():
    path = os.path.join(OUT, f'{project}.inv')
    with open(path, 'wb') as f:
      f.write(inventory(project, base, objects))
    print(f'wrote {path} ({len(objects)} objects)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
