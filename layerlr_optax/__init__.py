"""Layer-specific learning rates for optax.

At its centre Singh et al. (2015), eq. 9: ``t_l = t * (1 + log(1 + 1 /
||g_l||_2))`` for every layer ``l``, on top of any optax optimizer. On the
same partition of a model into layers (modules, slices of scan-stacked
layers, exclusion rules): the trust ratio of LARS/LAMB, layer-wise
learning-rate decay and one second moment per layer (Adalayer).
"""

from layerlr_optax._src.alias import adagrad
from layerlr_optax._src.alias import adalayer
from layerlr_optax._src.alias import lamb
from layerlr_optax._src.alias import lars
from layerlr_optax._src.alias import sgd
from layerlr_optax._src.layers import ExcludeSpec
from layerlr_optax._src.layers import LayersSpec
from layerlr_optax._src.layers import matching_paths
from layerlr_optax._src.layers import ndim_at_most
from layerlr_optax._src.layers import StackedSpec
from layerlr_optax._src.layers import stacked_paths
from layerlr_optax._src.reduction import AxisNames
from layerlr_optax._src.rules import DepthSpec
from layerlr_optax._src.rules import scale_by_layer_adam
from layerlr_optax._src.rules import scale_by_layer_decay
from layerlr_optax._src.rules import scale_by_layer_trust_ratio
from layerlr_optax._src.rules import ScaleByLayerAdamState
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
    'adalayer',
    'AxisNames',
    'DepthSpec',
    'ExcludeSpec',
    'LayerFactorsState',
    'lamb',
    'lars',
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
    'scale_by_layer_adam',
    'scale_by_layer_decay',
    'scale_by_layer_gradient',
    'scale_by_layer_trust_ratio',
    'ScaleByLayerAdamState',
    'sgd',
    'StackedSpec',
    'stacked_paths',
)
