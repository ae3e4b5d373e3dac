"""CIFAR-10 / Caffe's cifar10_full: the paper's 70k-iteration schedule.

Caffe's examples/cifar10/cifar10_full_solver*.prototxt: batch 100, lr 0.001
divided by 10 at 60k and 65k, 70k iterations, momentum 0.9, weight decay
0.004 (ip1: decay_mult 250 on the weights, 0 on the bias), bias lr_mult 2,
inputs minus the training set's mean image. The paper's earlier step-down is
the cifar10_full_50k config. This schedule is meant for a GPU; the CPU
short schedule is cifar10_full_short.
"""

import ml_collections

from experiments.configs import _common


def get_config() -> ml_collections.ConfigDict:
  config = _common.base_config()
  config.experiment = 'cifar10_full'
  config.dataset = 'cifar10'
  config.model = 'cifar10_full'
  config.preprocess = 'mean'
  config.methods = 'sgd,sgd+layer,nag,nag+layer,adagrad,adagrad+layer'
  config.num_seeds = 3
  config.num_steps = 70_000
  config.eval_every = 1000
  config.log_every = 100
  config.batch_size = 100
  config.eval_batch_size = 1000
  config.base_lr = 0.001
  config.lr_policy = 'multistep'
  config.lr_gamma = 0.1
  config.lr_stepvalues = (60_000, 65_000)
  config.momentum = 0.9
  config.weight_decay = 0.004
  config.decay_mult = ml_collections.ConfigDict(
      {'ip1/kernel': 250.0, 'ip1/bias': 0.0})
  config.checkpoint_every = 5000
  return config
