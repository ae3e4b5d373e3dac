"""Layer-specific adaptive learning rates (Singh et al., 2015) for optax.

``t_l = t * (1 + log(1 + 1 / ||g_l||_2))`` for every layer ``l``, on top of
any optax optimizer.
"""

from layerlr_optax._src.alias import adagrad
from layerlr_optax._src.alias import sgd
from layerlr_optax._src.layers import ExcludeSpec
from layerlr_optax._src.layers import LayersSpec
from layerlr_optax._src.layers import matching_paths
from layerlr_optax._src.layers import ndim_at_most
from layerlr_optax._src.layers import StackedSpec
from layerlr_optax._src.layers import stacked_paths
from layerlr_optax._src.transform import layer_factor
from layerlr_optax._src.transform import layer_partition
from layerlr_optax._src.transform import layer_stats
from layerlr_optax._src.transform import LayerFactorsState
from layerlr_optax._src.transform import layerwise
from layerlr_optax._src.transform import LayerwiseState
from layerlr_optax._src.transform import MaxFactor
from layerlr_optax._src.transform import recorded_factors
from layerlr_optax._src.transform import scale_by_layer_gradient

__version__ = '0.1.0'

__all__ = (
    'adagrad',
    'ExcludeSpec',
    'LayerFactorsState',
    'LayersSpec',
    'LayerwiseState',
    'layer_factor',
    'layer_partition',
    'layer_stats',
    'layerwise',
    'matching_paths',
    'MaxFactor',
    'ndim_at_most',
    'recorded_factors',
    'scale_by_layer_gradient',
    'sgd',
    'StackedSpec',
    'stacked_paths',
)
