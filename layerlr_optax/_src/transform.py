"""Layer-specific adaptive learning rates (Singh et al., 2015, eq. 9).

For layer ``l`` at step ``k`` with ``g_l`` the vector of all incoming updates of
that layer, the learning rate ``t`` of the base optimizer becomes::

  t_l = t * (1 + log(1 + 1 / ||g_l||_2))

Every transform here multiplies a layer's updates by that factor; where in an
optimizer the factor enters (before momentum, after AdaGrad's normalisation)
is decided by how it is composed, see `scale_by_layer_gradient` and
`layerwise`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from layerlr_optax._src import layers as layers_lib
from layerlr_optax._src import reduction
from layerlr_optax._src import validation

PyTree = Any
MaxFactor = Union[None, float, jax.typing.ArrayLike]
"""A cap on the factor (>= 1), or None for the paper's uncapped eq. 9."""


def layer_factor(norm: jax.typing.ArrayLike) -> jax.Array:
  r"""The paper's per-layer learning-rate factor, eq. 9.

  .. math::
    f(n) = 1 + \log\left(1 + \frac{1}{n}\right)

  with the natural logarithm. ``f(n) >= 1``, ``f -> 1`` for large norms and
  ``f ~ log(1/n)`` for small ones.

  Two policies complete it where eq. 9 says nothing:

  - *No gradient signal* (``n = 0``) and *non-finite norms* (inf, NaN): the
    factor is 1. A layer with no gradient this step (an unused head, an
    expert nobody routed to, a part under ``stop_gradient``) then gets
    exactly its base optimizer's update (its momentum, its weight decay),
    not that update inflated ~45x; and a guard inside `layerwise` (for
    example ``optax.apply_if_finite``) keeps the update it cleaned instead
    of multiplying it by a NaN factor.
  - Positive norms below ``sqrt(finfo(dtype).tiny)`` (about ``1.1e-19`` in
    float32, where the float32 sum of squares underflows) are raised to it,
    so the factor stays finite: at most about 44.7 in float32.

  The factor has finite derivatives everywhere (no ``0 * inf``); at a zero
  or non-finite norm its derivative is 0 (it is the constant 1 there).

  Args:
    norm: the L2 norm(s) of a layer's gradient; any shape.

  Returns:
    The factor(s), same shape, in the norm's floating dtype (at least float32).

  Example:
    >>> import layerlr_optax
    >>> print(f"{float(layerlr_optax.layer_factor(1.0)):.4f}")
    1.6931
    >>> print(f"{float(layerlr_optax.layer_factor(1e-30)):.1f}")  # the largest
    44.7
    >>> print(f"{float(layerlr_optax.layer_factor(0.0)):.1f}")  # no signal
    1.0
  """
  norm = jnp.asarray(norm)
  dtype = jnp.promote_types(norm.dtype, jnp.float32)
  norm = jnp.abs(norm.astype(dtype))
  # Raised before squaring: a small norm must not underflow to "no signal".
  floor = jnp.sqrt(jnp.finfo(dtype).tiny)
  raised = jnp.where(norm > 0, jnp.maximum(norm, floor), norm)
  return _factor_from_sq_norm(jnp.square(raised))


# Below this squared norm (a norm of 1e-10) the derivative of rsqrt,
# s^-1.5, approaches float32's range (it overflows below ~2e-26).
_SMALL_SQ_NORM = 1e-20


def _factor_from_sq_norm(sq_norm: jax.Array) -> jax.Array:
  """Eq. 9 from a squared norm, with `layer_factor`'s policies.

  Written so that value and derivative are finite for every input: each
  branch is evaluated at a safe argument (the "double where"). Squared
  norms down to `_SMALL_SQ_NORM` use ``log1p(rsqrt(s))``, the paper's form
  (bit for bit what earlier versions computed there); below it
  ``log1p(n) - log(n)``, the same value, whose derivative ``-1/(2 s)``
  stays finite down to ``tiny`` where ``rsqrt``'s (``s^-1.5``) overflows.
  """
  dtype = sq_norm.dtype
  one = jnp.ones((), dtype)
  signal = jnp.isfinite(sq_norm) & (sq_norm > 0)
  sq = jnp.where(signal, jnp.maximum(sq_norm, jnp.finfo(dtype).tiny), one)
  large = sq >= _SMALL_SQ_NORM
  sq_large = jnp.where(large, sq, one)
  sq_small = jnp.where(large, one, sq)
  factor_large = 1.0 + jnp.log1p(jax.lax.rsqrt(sq_large))
  factor_small = (1.0 + jnp.log1p(jnp.sqrt(sq_small))
                  - 0.5 * jnp.log(sq_small))
  factor = jnp.where(large, factor_large, factor_small)
  return jnp.where(signal, factor, one)


@dataclasses.dataclass(frozen=True)
class Options(reduction.PartitionOptions):
  """The partition options every rule takes, and eq. 9's cap."""
  max_factor: MaxFactor = None

  def __post_init__(self):
    super().__post_init__()
    validation.check_scalar('max_factor', self.max_factor, minimum=1.0,
                            allow_none=True)


class LayerFactorsState(NamedTuple):
  """The factors a transform applied at its latest update, by layer name.

  Present in the state only when the transform was made with
  ``record_factors=True``; read it with `recorded_factors`. Before the first
  update every factor is 1.
  """
  factors: dict[str, jax.Array]


class LayerwiseState(NamedTuple):
  """State of `layerwise` with ``record_factors=True``: `base`'s own state
  and the factors of the latest step."""
  base_state: optax.OptState
  layer_factors: LayerFactorsState


def _initial_factors(params: PyTree,
                     options: reduction.PartitionOptions,
                     value: float = 1.0) -> LayerFactorsState:
  view = reduction.LayerView(params, options, what='parameter', at_init=True)
  return LayerFactorsState(view.initial(value))


class _Factors:
  """Eq. 9's per-layer factors of one step (lives only while tracing)."""

  def __init__(self, updates: PyTree, options: Options):
    self.view = reduction.LayerView(updates, options)
    self.sq_norms = self.view.sq_norms()
    self.factors = [_factor_from_sq_norm(sq) for sq in self.sq_norms]
    if options.max_factor is not None:
      self.factors = [jnp.minimum(f, jnp.asarray(options.max_factor, f.dtype))
                      for f in self.factors]

  def recorded(self) -> LayerFactorsState:
    return LayerFactorsState(self.view.per_layer(self.factors))

  def apply(self, updates: PyTree) -> PyTree:
    # The structure check (with its message) happens in the one flatten.
    return self.view.scale(
        updates, self.factors,
        what='updates the wrapped optimizer returned')


def scale_by_layer_gradient(
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: MaxFactor = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each layer's updates by the paper's factor (eq. 9).

  For every layer :math:`l` with incoming updates :math:`g_l` (all of the
  layer's leaves together):

  .. math::
    u_l = \left(1 + \log\left(1 + \frac{1}{\|g_l\|_2}\right)\right) g_l

  The transform is stateless: no history, no per-parameter state, one scalar
  per layer per step. Placed first in a chain it acts on the raw gradient, so
  ``optax.chain(scale_by_layer_gradient(), optax.sgd(lr, momentum=0.9))`` is
  Caffe's SGD solver with a layer-specific rate entering the momentum history.
  For optimizers that precondition the gradient (AdaGrad, Adam, ...) use
  `layerwise`, which multiplies the *final* step instead.

  Norms are accumulated in float32 (or wider), the updates keep their dtype.
  A layer whose norm is zero (no gradient signal this step) or not finite
  (a NaN or inf in it) gets factor 1: its update is exactly what it would be
  without this transform (see `layer_factor`).

  Every argument is keyword-only.

  Args:
    layers: what a layer is. ``'module'`` (default): the leaves sharing a
      parent node, e.g. a Flax module's ``kernel`` and ``bias``; a leaf
      directly under the root (``[W1, W2]``, ``{'w1': ..., 'b1': ...}``)
      belongs to no module and is a layer of its own, except in a model
      that is one module (its root holds only ``kernel``, ``bias``,
      ``weight``, ``scale`` or ``embedding`` arrays: an ``eqx.nn.Linear``,
      an ``nnx.Linear``, a linen ``Dense``'s params), which is the one
      layer ``<root>`` in every framework. ``'leaf'``: every array
      on its own. Or, as for `optax.multi_transform`, a pytree of hashable
      labels (same structure as the updates, or a prefix of it) or a callable
      mapping the updates to such a pytree; leaves with equal labels form one
      layer. `layer_partition` shows the resulting grouping.
    axis_name: inside ``shard_map``/``pmap`` where every device holds a shard
      of every leaf, the mapped axis to ``psum`` the squared norms over, so the
      factor uses the global norm. Leave ``None`` under plain ``jit`` (also
      with sharded arrays, Auto or Explicit mesh axes: XLA computes global
      norms there).
    record_factors: keep the factors of the latest update in the state (a
      `LayerFactorsState`, one scalar per layer), for logging what the
      optimizer applied; read them with `recorded_factors`. Off by default,
      so the state stays empty.
    exclude: leaves to leave out of layer adaptation, as LARS/LAMB practice
      does for biases, normalisation scales and embeddings: they keep factor
      1 (their updates pass through unchanged) and do not count in any
      layer's norm; a layer whose leaves are all excluded disappears.
      `matching_paths` (a regular expression on the paths `layer_partition`
      prints) and `ndim_at_most` work on every tree type. Or, like
      `optax.masked`'s mask, a pytree of bools with the structure of the
      params (or a prefix of it), or a callable returning one from the
      params; True means excluded. None (default): nothing excluded.
    max_factor: a cap on the factor, :math:`\min(f_l, \text{max\_factor})`,
      >= 1. None (the default) is the paper's eq. 9, uncapped (at most ~44.7
      in float32). A number, a NumPy scalar or a 0-d array; a value injected
      by `optax.inject_hyperparams` is used as it is.
    stacked: leaves that hold several layers stacked along one axis, as
      ``flax.linen.scan``, ``nnx.scan``/``nnx.vmap`` or a ``jax.lax.scan``
      over a params stack make them: each slice along that axis is a layer
      of its own, with the factor of its own norm (over the slice's other
      axes, summed across the leaves of its layer). `stacked_paths` selects
      them by path on every tree type; or a pytree with the structure of the
      params (or a prefix of it) holding, per leaf or subtree, the stacked
      axis (an int) or None (not stacked); or a callable returning one.
      ``stacked=0`` stacks every leaf along its leading axis. The leaves of
      one layer must stack the same number of layers. Slices are named
      ``<layer>[i]`` in `layer_partition`, `layer_stats` and
      `recorded_factors`. Inside ``shard_map`` see `stacked_axis_name`.
    stacked_axis_name: inside ``shard_map``/``pmap`` with `stacked`, the
      mapped axis (or a tuple of them) that splits the stacked axis, each
      device holding whole slices; ``()`` if no mapped axis splits it (each
      device holds a shard of every slice). Required with `axis_name` and
      `stacked`: inside ``shard_map`` the two layouts have the same local
      shapes, so the optimizer cannot tell them apart. A slice's norm is
      summed over the `axis_name` axes that do not split the stack. Each
      slice gets the factor of its own norm and is named by its place in
      the whole stack (``<layer>[i]``); per-slice values (recorded factors,
      Adalayer's second moments) cover the whole stack and are the same on
      every device. ``init`` may run inside ``shard_map`` or outside it on
      the whole stack. Leave it None under plain ``jit``.

  Returns:
    A `optax.GradientTransformationExtraArgs` with empty state (or a
    `LayerFactorsState` with ``record_factors=True``).

  .. warning::
    The factor is at least 1 and grows as a layer's gradient vanishes, so it
    acts like a larger learning rate: at tuned rates it measured no
    significant gain, and near a minimum it can inflate the steps of
    optimizers whose step does not shrink with the gradient. See the
    documentation's guides on choosing the learning rate and on adaptive
    optimizers before adopting it.

  References:
    Singh, De, Zhang, Goldstein and Taylor, `Layer-Specific Adaptive Learning
    Rates for Deep Networks <https://arxiv.org/abs/1510.04609>`_, 2015.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import layerlr_optax
    >>> params = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> opt = optax.chain(layerlr_optax.scale_by_layer_gradient(),
    ...                   optax.sgd(0.1, momentum=0.9))
    >>> state = opt.init(params)
    >>> grads = {'dense': {'kernel': jnp.full((2, 2), 0.01),
    ...                    'bias': jnp.full(2, 0.01)}}
    >>> updates, state = opt.update(grads, state, params)
    >>> print(f"{float(updates['dense']['bias'][0]):.6f}")
    -0.004733
  """
  options = Options(layers=layers, axis_name=axis_name, exclude=exclude,
                    stacked=stacked, stacked_axis_name=stacked_axis_name,
                    max_factor=max_factor)
  validation.check_flag('record_factors', record_factors)

  def init_fn(params):
    if record_factors:
      return _initial_factors(params, options)
    return optax.EmptyState()

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    factors = _Factors(updates, options)
    if record_factors:
      state = factors.recorded()
    return factors.apply(updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_base(base: Any) -> None:
  if isinstance(base, optax.GradientTransformation):
    return
  if callable(base) and not (hasattr(base, 'init')
                             and hasattr(base, 'update')):
    name = getattr(base, '__name__', type(base).__name__)
    raise TypeError(
        f'layerlr_optax: base must be an optimizer, got the function '
        f'{name!r}. Call it first: layerwise({name}(learning_rate)), e.g. '
        'layerwise(optax.adam(1e-3)).')
  if not (hasattr(base, 'init') and hasattr(base, 'update')):
    raise TypeError(
        'layerlr_optax: base must be an optax.GradientTransformation (an '
        f'object with init and update), got {base!r} of type '
        f'{type(base).__name__}.')


# optax states of transforms that cannot run inside `layerwise`, by class
# name (stable across optax versions, and found without importing
# optax.contrib): what goes wrong there, and the nesting to write instead.
_LINE_SEARCH = ('a line search evaluates the step it proposes; the factor '
                'changes the step after the search, so the parameters never '
                'reach the point it evaluated')
_OUTSIDE_ONLY = {
    'MultiStepsState': (
        'optax.MultiSteps accumulates gradients over k calls and steps once; '
        'inside layerwise the factor would read one micro-batch and scale '
        'the zeros of the accumulating calls',
        'optax.MultiSteps(layerlr_optax.layerwise(opt), every_k_schedule=k)'),
    'LookaheadState': (
        'optax.lookahead keeps fast and slow weights (LookaheadParams) and '
        'synchronises them',
        'optax.lookahead(layerlr_optax.layerwise(fast_opt), sync_period, '
        'slow_step_size)'),
    'SAMState': (
        'SAM alternates adversarial and descent steps; the factor would '
        'scale the adversarial perturbation, which is then not fully '
        'removed from the weights',
        'optax.contrib.sam(layerlr_optax.layerwise(opt), adv_opt, ...)'),
    'ScheduleFreeState': (
        "schedule-free's update moves the parameters between its y and x "
        'sequences; scaling it breaks schedule_free_eval_params',
        'optax.contrib.schedule_free(layerlr_optax.layerwise(base_opt), '
        'learning_rate, b1)'),
    'DifferentiallyPrivateAggregateState': (
        'DP-SGD receives per-example gradients; the factor would read their '
        'raw, unclipped norms and break the privacy bound',
        'optax.chain(optax.contrib.differentially_private_aggregate(...), '
        'layerlr_optax.layerwise(opt)), so the factor reads only the '
        'privatised gradient'),
    'ScaleByZoomLinesearchState': (
        _LINE_SEARCH,
        'optax.chain(layerlr_optax.layerwise(optax.scale_by_lbfgs()), '
        'optax.scale(-1.0), optax.scale_by_zoom_linesearch('
        'max_linesearch_steps=15)), where the line search sees the scaled '
        'direction'),
    'ScaleByBacktrackingLinesearchState': (
        _LINE_SEARCH,
        'optax.chain(layerlr_optax.layerwise(direction), optax.scale(-lr), '
        'optax.scale_by_backtracking_linesearch(...)), where the line '
        'search sees the scaled direction'),
}


def _refuse_outside_only(base_state: optax.OptState) -> None:
  """Refuses a `base` holding a transform that must wrap `layerwise`."""
  is_state = lambda x: type(x).__name__ in _OUTSIDE_ONLY
  for node in jax.tree.leaves(base_state, is_leaf=is_state):
    if is_state(node):
      why, instead = _OUTSIDE_ONLY[type(node).__name__]
      raise ValueError(
          f'layerlr_optax: layerwise(base) cannot hold a transform with a '
          f'{type(node).__name__}: {why}. Put layerwise inside it instead: '
          f'{instead}. The documentation\'s composition table lists what '
          'goes inside layerwise and what outside.')


def _compose(base: optax.GradientTransformation, options: Options,
             scale_output: bool, record_factors: bool
             ) -> optax.GradientTransformationExtraArgs:
  """Runs `base` with the layer factors of the gradient it receives.

  The state is `base`'s own, unchanged, so checkpoints stay compatible with
  the plain optimizer; with `record_factors` it is a `LayerwiseState`.
  """
  _check_base(base)
  validation.check_flag('record_factors', record_factors)
  base = optax.with_extra_args_support(base)

  def init_fn(params):
    base_state = base.init(params)
    _refuse_outside_only(base_state)
    if record_factors:
      return LayerwiseState(base_state, _initial_factors(params, options))
    return base_state

  def update_fn(updates, state, params=None, **extra_args):
    factors = _Factors(updates, options)
    base_state = state.base_state if record_factors else state
    if not scale_output:
      updates = factors.apply(updates)
    updates, base_state = base.update(updates, base_state, params,
                                      **extra_args)
    if scale_output:
      updates = factors.apply(updates)
    if record_factors:
      return updates, LayerwiseState(base_state, factors.recorded())
    return updates, base_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def layerwise(
    base: optax.GradientTransformation,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: MaxFactor = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Multiplies the step of any optimizer by the layer factors of its input.

  Computes :math:`f_l = 1 + \log(1 + 1 / \|g_l\|_2)` from the gradient
  :math:`g` that `base` receives, runs `base` on :math:`g` unchanged, and
  multiplies each layer of `base`'s output by :math:`f_l`:

  .. math::
    u_l = f_l \, \mathrm{base}(g)_l

  This is how the paper puts its rate on top of AdaGrad (eq. 8 with :math:`t`
  replaced by :math:`t_l`): the accumulator sees raw gradients, the layer rate
  multiplies the final step. The state is `base`'s own.

  .. warning::
    For optimizers whose normalised step does not shrink with the gradient
    (Adam, AdamW, Yogi, ...), the uncapped factor grows near a minimum and
    can keep them from converging; ``max_factor=2`` helps on some problems
    and not on others. See the documentation's guide on adaptive optimizers
    (the measured table of the factor near a minimum) before using it there.

  Args:
    base: the optimizer (any `optax.GradientTransformation`, already made:
      ``optax.adam(1e-3)``, not ``optax.adam``).
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_gradient`.
    record_factors: keep the factors of the latest step in the state, which
      becomes a `LayerwiseState` (`base`'s state plus a `LayerFactorsState`);
      see `recorded_factors`.
    exclude: leaves that get factor 1, i.e. exactly `base`'s update; see
      `scale_by_layer_gradient`.
    max_factor: a cap on the factor; see `scale_by_layer_gradient`.
    stacked: leaves holding several stacked layers (a factor per slice); see
      `scale_by_layer_gradient`.
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    A `optax.GradientTransformationExtraArgs` whose state is `base`'s (a
    `LayerwiseState` with ``record_factors=True``).

  References:
    Singh, De, Zhang, Goldstein and Taylor, `Layer-Specific Adaptive Learning
    Rates for Deep Networks <https://arxiv.org/abs/1510.04609>`_, 2015.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import layerlr_optax
    >>> params = {'w': jnp.ones(3)}
    >>> opt = layerlr_optax.layerwise(optax.adam(1e-3))
    >>> state = opt.init(params)
    >>> updates, state = opt.update({'w': jnp.full(3, 0.1)}, state, params)
    >>> print(f"{float(updates['w'][0]):.6f}")
    -0.002913
  """
  options = Options(layers=layers, axis_name=axis_name, exclude=exclude,
                    stacked=stacked, stacked_axis_name=stacked_axis_name,
                    max_factor=max_factor)
  return _compose(base, options, scale_output=True,
                  record_factors=record_factors)


def prescaled(base: optax.GradientTransformation, options: Options,
              record_factors: bool) -> optax.GradientTransformationExtraArgs:
  """`base` fed with the layer-scaled gradient; state is `base`'s own.

  Equal to ``optax.chain(scale_by_layer_gradient(...), base)`` except that
  the state pytree is exactly `base`'s (no `optax.EmptyState` in a tuple), or
  a `LayerwiseState` with `record_factors`. Internal: the aliases use it.
  """
  return _compose(base, options, scale_output=False,
                  record_factors=record_factors)


def recorded_factors(opt_state: optax.OptState) -> dict[str, jax.Array]:
  """The layer factors an optimizer applied at its latest update.

  Finds the `LayerFactorsState` of a transform made with
  ``record_factors=True`` anywhere in `opt_state` (inside `optax.chain`,
  `optax.inject_hyperparams`, `optax.MultiSteps`, `optax.masked`, the
  ``opt_state`` of a ``flax.nnx.Optimizer``, ...), like
  `optax.inject_hyperparams` exposes its hyperparameters. Works inside and
  outside ``jit``.

  Args:
    opt_state: the state of an optimizer holding transforms that record
      their factors (what ``opt.init`` and ``opt.update`` return, not the
      optimizer itself).

  Returns:
    ``{layer_name: factor}``, the names as `layer_partition` gives them.

  Several recording transforms (one per part of a `optax.multi_transform`,
  say) are merged when they name different layers.

  Raises:
    TypeError: if given an optimizer instead of its state.
    ValueError: if `opt_state` holds no recorded factors (the message says
      what to pass instead), or two sets name the same layer.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import layerlr_optax
    >>> opt = layerlr_optax.layerwise(optax.adam(1e-3), record_factors=True)
    >>> params = {'dense': {'w': jnp.ones(3)}}
    >>> state = opt.init(params)
    >>> _, state = opt.update({'dense': {'w': jnp.full(3, 0.1)}}, state)
    >>> print(f"{float(layerlr_optax.recorded_factors(state)['dense']):.4f}")
    2.9130
  """
  if isinstance(opt_state, optax.GradientTransformation):
    raise TypeError(
        'layerlr_optax: recorded_factors takes the optimizer *state* (what '
        'opt.init(params) and opt.update(...) return), got the optimizer '
        'itself.')
  is_record = lambda x: isinstance(x, LayerFactorsState)
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_record)
           if is_record(x)]
  if not found:
    raise ValueError(
        'layerlr_optax: no recorded layer factors (a LayerFactorsState) in '
        f'the {type(opt_state).__module__}.{type(opt_state).__qualname__} '
        f'given. {_where_recorded_factors_are(opt_state)}')
  merged: dict[str, Any] = {}
  for record in found:
    clash = sorted(set(merged) & set(record.factors))
    if clash:
      raise ValueError(
          f'layerlr_optax: the optimizer state holds {len(found)} sets of '
          f'recorded layer factors, and more than one names the layers '
          f'{clash}, so which factor they had is ambiguous. Record them '
          'once per layer (record_factors=True on one of the transforms '
          'that see it), or read each part of the state separately.')
    merged.update((name, _unboxed(value))
                  for name, value in record.factors.items())
  return merged


def _where_recorded_factors_are(opt_state: Any) -> str:
  """What to pass instead, from what was passed."""
  module = type(opt_state).__module__
  if module.startswith('flax'):
    return ('A Flax object or nnx.state(...) of one was given: pass the '
            "optimizer's state itself, `optimizer.opt_state` of an "
            'nnx.Optimizer (or `state.opt_state` of a linen TrainState).')
  keys = {str(getattr(k, 'key', getattr(k, 'name', k)))
          for path, _ in jax.tree_util.tree_flatten_with_path(opt_state)[0]
          for k in path}
  if 'factors' in keys or 'layer_factors' in keys:
    return ('It holds a field named like them as plain containers: a '
            'checkpoint restored without a target loses the state types. '
            'Restore it with the optimizer\'s state as the target (orbax: '
            'checkpointer.restore(path, target) or '
            'ocp.args.StandardRestore(opt.init(params))).')
  return ('Create the layer-rate transform with record_factors=True, and '
          'pass the state that opt.init and opt.update return.')


def _unboxed(value: Any) -> Any:
  """The array inside a framework's box, or `value` itself.

  An ``nnx.Optimizer`` boxes each factor in a Variable: since Flax 0.11 a
  pytree whose one leaf is the array, before that an object holding it as
  ``.value``.
  """
  leaves = jax.tree.leaves(value)
  if len(leaves) == 1:
    value = leaves[0]
  while not isinstance(value, (jax.Array, np.ndarray)) and hasattr(
      value, 'value'):
    value = value.value
  return value


def layer_stats(
    updates: PyTree,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: MaxFactor = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> dict[str, dict[str, jax.Array]]:
  """Per-layer gradient norms and eq. 9 factors, for logging.

  Works inside and outside ``jit`` (the result is a pytree of scalars), and
  on sharded arrays with Auto or Explicit mesh axes.

  Args:
    updates: a gradient (or updates) pytree.
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_gradient`.
    exclude: see `scale_by_layer_gradient` (excluded leaves are left out).
    max_factor: report the capped factor an optimizer with this cap
      applies; see `scale_by_layer_gradient`.
    stacked: see `scale_by_layer_gradient` (one entry per stacked slice,
      named ``<layer>[i]``).
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    ``{layer_name: {'grad_norm': scalar, 'factor': scalar}}`` in layer order.
    The effective learning rate of a layer is the base rate times its factor.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> stats = layerlr_optax.layer_stats({'a': {'w': jnp.ones(4)}})
    >>> print(f"{float(stats['a']['grad_norm']):.1f}")
    2.0
    >>> print(f"{float(stats['a']['factor']):.4f}")
    1.4055
  """
  factors = _Factors(updates, Options(
      layers=layers, axis_name=axis_name, exclude=exclude, stacked=stacked,
      stacked_axis_name=stacked_axis_name, max_factor=max_factor))
  norms = factors.view.per_layer([jnp.sqrt(sq) for sq in factors.sq_norms])
  per_layer_factors = factors.view.per_layer(factors.factors)
  return {name: {'grad_norm': norms[name], 'factor': per_layer_factors[name]}
          for name in norms}


def layer_partition(
    tree: PyTree,
    *,
    layers: layers_lib.LayersSpec = 'module',
    exclude: layers_lib.ExcludeSpec = None,
    stacked: layers_lib.StackedSpec = None,
) -> dict[str, list[str]]:
  """Which leaves form which layer: ``{layer_name: [leaf paths]}``.

  Args:
    tree: params or gradients (only the structure is used, and the shapes
      for `stacked` and `ndim_at_most`): arrays or `jax.ShapeDtypeStruct`
      leaves.
    layers: what a layer is; see `scale_by_layer_gradient`.
    exclude: see `scale_by_layer_gradient`; excluded leaves are in no layer.
    stacked: see `scale_by_layer_gradient`; a stacked leaf appears in each of
      its layers as ``path[i]`` (``path[:, i]`` for axis 1, ...).

  Returns:
    A dict from readable layer names to the readable paths of their leaves.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'conv': {'kernel': jnp.ones(2), 'bias': jnp.ones(1)}}
    >>> layerlr_optax.layer_partition(params)
    {'conv': ['conv/bias', 'conv/kernel']}
    >>> layerlr_optax.layer_partition([jnp.ones((2, 2)), jnp.ones((2, 2))])
    {'0': ['0'], '1': ['1']}
    >>> stack = {'block': {'kernel': jnp.ones((2, 3, 3)), 'bias': jnp.ones((2, 3))}}
    >>> layerlr_optax.layer_partition(stack, stacked=0)
    {'block[0]': ['block/bias[0]', 'block/kernel[0]'], 'block[1]': ['block/bias[1]', 'block/kernel[1]']}
  """
  layers_lib.validate_specs(layers, exclude, stacked)
  return layers_lib.partition(tree, layers=layers, exclude=exclude,
                              stacked=stacked).as_dict()
