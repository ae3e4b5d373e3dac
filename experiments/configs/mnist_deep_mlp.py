"""MNIST / a 20-layer tanh MLP: the deep-network case that motivates eq. 9.

20 hidden layers of 256 tanh units, Caffe's Xavier filler, Caffe's LeNet
solver (batch 64, lr 0.01, momentum 0.9, weight decay 5e-4, `inv` policy),
3,000 iterations. Why this depth and activation (exploratory 1-seed runs
of 1,500 iterations, listed in the README): sigmoid nets of 5, 10 and 20
layers stayed at chance for SGD, SGD+layer and Adam at every rate tried,
so there is nothing to compare; tanh nets of 10 and 20 layers train, and at
20 layers plain SGD is at 5.2% error after 1,500 iterations where LeNet is
at ~1.5%: a deep net that trains slowly. Any MNIST-format directory works
as data_dir.
"""

import ml_collections

from experiments.configs import _common


def get_config() -> ml_collections.ConfigDict:
  config = _common.base_config()
  config.experiment = 'mnist_deep_mlp'
  config.dataset = 'mnist'
  # mlp{5,10,20}_{sigmoid,tanh} are available (experiments/lib/models.py).
  config.model = 'mlp20_tanh'
  config.preprocess = 'scale'

  config.methods = 'sgd,sgd+layer'
  config.num_seeds = 3
  config.num_steps = 3000
  config.eval_every = 300
  config.log_every = 20
  config.batch_size = 64
  config.eval_batch_size = 1000

  _common.caffe_lenet_solver(config)

  config.sweep.methods = ('sgd,sgd+layer,sgd+global,sgd+warmup,adagrad,'
                          'adagrad+layer,nag,nag+layer,adam,adam+layer,'
                          'adam+layercap,lars,lamb,sgd+frozen,adagrad+frozen')
  # The +frozen control (issue #31): each layer's eq. 9 factor of the
  # +layer runs at their best rate, mean over the grid seeds (selection
  # seeds only) and the logged steps, held fixed; written by `python -m
  # experiments.report frozen experiments/results/mnist_deep_mlp_sweep`.
  config.frozen_factors = (
      'experiments/results/mnist_deep_mlp_sweep/frozen_factors.json')
  return config
