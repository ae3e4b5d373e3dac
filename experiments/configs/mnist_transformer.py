"""MNIST / a small row-by-row transformer with LayerNorm (workload 4).

The reviewer's question: does the layer factor help on a modern block with
normalisation layers and attention, where Adam is the usual optimizer? 28
tokens (the rows), width 64, 2 pre-LN blocks, 4 heads (104,394 parameters);
batch 64, 2,000 iterations, constant rate (`fixed` policy) so that the
warm-up control is meaningful, no weight decay. Reduced budget: one run is
a few minutes on 2 CPU cores; the sweep (7 methods x 7 rates x 3 seeds plus
the reruns) is several hours there. Any MNIST-format directory works as
data_dir.
"""

import ml_collections

from experiments.configs import _common


def get_config() -> ml_collections.ConfigDict:
  config = _common.base_config()
  config.experiment = 'mnist_transformer'
  config.dataset = 'mnist'
  config.model = 'row_transformer'
  config.preprocess = 'scale'

  config.methods = 'adam,adam+layer'
  config.num_seeds = 3
  config.num_steps = 2000
  config.eval_every = 250
  config.log_every = 25
  config.batch_size = 64
  config.eval_batch_size = 1000

  config.base_lr = 0.01
  config.method_base_lr = ml_collections.ConfigDict(
      {'adam': 0.001, 'lars': 1.0, 'lamb': 0.001})
  config.lr_policy = 'fixed'
  config.momentum = 0.9
  config.weight_decay = 0.0
  config.bias_lr_mult = 1.0

  config.sweep.methods = ('adam,adam+layer,adam+global,adam+warmup,sgd,'
                          'sgd+layer,lamb')
  return config
