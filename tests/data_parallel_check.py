"""Run by test_scale.py with 8 simulated CPU devices: a few LeNet steps give
the same parameters on 1 device and data-parallel on 8 (replicated or FSDP)."""

import os
import sys

assert 'xla_force_host_platform_device_count=8' in os.environ.get(
    'XLA_FLAGS', '')

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from experiments import run as run_lib
from experiments import train

mnist_dir = sys.argv[1]
assert len(jax.devices()) == 8


def final_params(devices, param_sharding):
  config = run_lib.get_config('mnist_lenet')
  config.update(dict(data_source='local', data_dir=mnist_dir, batch_size=64,
                     param_sharding=param_sharding, methods='sgd+layer'))
  sources = train.Sources(config)
  runner = train.Runner(config, sources, 'sgd+layer', train.make_mesh(devices))
  params, opt_state = runner.init(0)
  step = runner._compiled_step(params, opt_state)  # pylint: disable=protected-access
  for i, batch in enumerate(sources.train.batches(0, 0, 5)):
    images, labels = runner.put_batch(*batch)
    params, opt_state, _, _ = step(params, opt_state, images, labels,
                                   np.uint32(0), np.uint32(i))
  return params


single = final_params(jax.devices()[:1], 'replicated')
for mode in ('replicated', 'fsdp'):
  sharded = final_params(jax.devices(), mode)
  kernel = sharded['ip1']['kernel']
  if mode == 'fsdp':
    assert not kernel.sharding.is_fully_replicated, kernel.sharding
  assert len(kernel.sharding.device_set) == 8
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(single)[0],
                          jax.tree.leaves(sharded)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5,
                               atol=1e-6, err_msg=f'{mode} {path}')
  print(f'{mode}: 8 devices == 1 device')
print('DATA PARALLEL OK')
