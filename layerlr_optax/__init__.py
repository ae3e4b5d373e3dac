"""Layer-specific adaptive learning rates (Singh et al., 2015) for optax.

``t_l = t * (1 + log(1 + 1 / ||g_l||_2))`` for every layer ``l``, on top of
any optax optimizer.
"""

from layerlr_optax._src.alias import adagrad
from layerlr_optax._src.alias import sgd
from layerlr_optax._src.transform import layer_factor
from layerlr_optax._src.transform import layer_partition
from layerlr_optax._src.transform import layer_stats
from layerlr_optax._src.transform import layerwise
from layerlr_optax._src.transform import scale_by_layer_gradient

__version__ = '0.1.0'

__all__ = (
    'adagrad',
    'layer_factor',
    'layer_partition',
    'layer_stats',
    'layerwise',
    'scale_by_layer_gradient',
    'sgd',
)
