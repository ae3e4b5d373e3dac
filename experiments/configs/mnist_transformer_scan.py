"""MNIST / the row-by-row transformer with its blocks scan-stacked (issue #32).

The same workload as mnist_transformer (the same function of the same
parameters, initialised from the same distributions; same data and budget)
written as large models are: one ``nn.scan`` over the blocks, every block parameter stacked along a leading axis of size 2
(``blocks/...``). optax's per-array rules (``lamb``'s trust ratio, Adam's
moments) then see one array per stack; the package's rules (``config.stacked``)
one layer per slice. The sweep judges each per-layer rule against its
per-array peer, with the same protocol and seeds as the other sweeps.
About 100 s a run on one CPU core, 28 runs a method.
"""

import ml_collections

from experiments.configs import mnist_transformer


def get_config() -> ml_collections.ConfigDict:
  config = mnist_transformer.get_config()
  config.experiment = 'mnist_transformer_scan'
  config.model = 'row_transformer_scan'
  config.stacked = '^blocks/'
  config.methods = 'lamb,layer_lamb'
  config.sweep.methods = 'lamb,layer_lamb,adam,adalayer,adam+llrd'
  return config
