"""Run by tests/experiments/test_train.py with 8 simulated CPU devices: a few LeNet steps give
the same parameters on 1 device and data-parallel on 8 (replicated or FSDP),
and two seeds vmapped on 8 devices equal each seed alone on 1 device."""

import os
import sys

assert 'xla_force_host_platform_device_count=8' in os.environ.get(
    'XLA_FLAGS', '')

import jax
import numpy as np

from experiments import configs
from experiments.lib import data as data_lib
from experiments.lib import parallel
from experiments.lib import train
from experiments.lib.methods import Method

mnist_dir = sys.argv[1]
assert len(jax.devices()) == 8


def make_trainer(devices, param_sharding, vmapped=False):
  config = configs.get_config('mnist_lenet')
  config.update(dict(data_source='local', data_dir=mnist_dir, batch_size=64,
                     param_sharding=param_sharding, methods='sgd+layer'))
  pipeline = data_lib.make_pipeline(config)
  trainer = train.Trainer(config, pipeline, Method('sgd', 'layer'),
                          parallel.make_mesh(devices), vmapped=vmapped)
  return trainer, pipeline


def final_params(devices, param_sharding, seed=0):
  trainer, pipeline = make_trainer(devices, param_sharding)
  state = trainer.init(seed)
  step = trainer.train_step(state)
  for i, batch in enumerate(pipeline.train.batches(seed, 0, 5)):
    images, labels = trainer.put_batch(*batch)
    state, _ = step(state, images, labels, np.uint32(seed), np.uint32(i))
  return state.params


def final_params_vmapped(devices, param_sharding, seeds):
  trainer, pipeline = make_trainer(devices, param_sharding, vmapped=True)
  state = parallel.stack_seeds([trainer.init(s) for s in seeds], trainer.mesh)
  step = trainer.train_step(state)
  batches = zip(*[pipeline.train.batches(s, 0, 5) for s in seeds])
  for i, per_seed in enumerate(batches):
    images, labels = trainer.put_batch(np.stack([b[0] for b in per_seed]),
                                       np.stack([b[1] for b in per_seed]))
    state, _ = step(state, images, labels, np.asarray(seeds, np.uint32),
                    np.uint32(i))
  return state.params


def assert_close(single, sharded, what):
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(single)[0],
                          jax.tree.leaves(sharded)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5,
                               atol=1e-6, err_msg=f'{what} {path}')


single = final_params(jax.devices()[:1], 'replicated')
for mode in ('replicated', 'fsdp'):
  sharded = final_params(jax.devices(), mode)
  kernel = sharded['ip1']['kernel']
  if mode == 'fsdp':
    assert not kernel.sharding.is_fully_replicated, kernel.sharding
  assert len(kernel.sharding.device_set) == 8
  assert_close(single, sharded, mode)
  print(f'{mode}: 8 devices == 1 device')

vmapped = final_params_vmapped(jax.devices(), 'fsdp', [0, 1])
assert len(vmapped['ip1']['kernel'].sharding.device_set) == 8
for i, seed in enumerate([0, 1]):
  alone = single if seed == 0 else final_params(jax.devices()[:1],
                                                'replicated', seed)
  assert_close(alone, jax.tree.map(lambda x, i=i: x[i], vmapped),
               f'vmapped seed {seed}')
print('vmapped seeds on 8 devices (fsdp) == each seed on 1 device')
print('DATA PARALLEL OK')
