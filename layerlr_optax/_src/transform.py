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

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from layerlr_optax._src import layers as layers_lib

PyTree = Any


def layer_factor(norm: jax.typing.ArrayLike) -> jax.Array:
  r"""The paper's per-layer learning-rate factor, eq. 9.

  .. math::
    f(n) = 1 + \log\left(1 + \frac{1}{n}\right)

  with the natural logarithm. ``f(n) >= 1``, ``f -> 1`` for large norms and
  ``f ~ log(1/n)`` for small ones. ``f(inf) = 1``; ``f(nan) = nan``.

  Norms below ``sqrt(finfo(dtype).tiny)`` (about ``1.1e-19`` in float32) are
  raised to it: that is where the float32 sum of squares underflows, and it
  keeps ``f`` finite (at most about 44.7 in float32) for all-zero layers, whose
  update is zero whatever the factor.

  Args:
    norm: the L2 norm(s) of a layer's gradient; any shape.

  Returns:
    The factor(s), same shape, in the norm's floating dtype (at least float32).

  Example:
    >>> import layerlr_optax
    >>> print(f"{float(layerlr_optax.layer_factor(1.0)):.4f}")
    1.6931
  """
  norm = jnp.asarray(norm)
  dtype = jnp.promote_types(norm.dtype, jnp.float32)
  sq = jnp.square(norm.astype(dtype))
  return _factor_from_sq_norm(sq)


def _factor_from_sq_norm(sq_norm: jax.Array) -> jax.Array:
  tiny = jnp.finfo(sq_norm.dtype).tiny
  return 1.0 + jnp.log1p(jax.lax.rsqrt(jnp.maximum(sq_norm, tiny)))


def _check_leaves(updates: PyTree) -> tuple[list[jax.Array], Any]:
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(updates)
  leaves = []
  for path, leaf in paths_and_leaves:
    dtype = getattr(leaf, 'dtype', None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
      raise TypeError(
          f'layerlr_optax: the update at {layers_lib.path_name(path)!r} has '
          f'dtype {dtype} (type {type(leaf).__name__}); layer-specific rates '
          'need floating-point updates. Leave non-trainable leaves (step '
          'counters, integer buffers, ...) out of the optimised pytree, or '
          'exclude them with optax.masked(...).')
    leaves.append(leaf)
  return leaves, treedef


def _accumulation_dtype(leaves: list[jax.Array]) -> Any:
  """float32, or wider if a leaf's real part is (float64 under x64)."""
  # From the dtypes alone: creating an array per leaf took ~0.2 s of the
  # lowering time of a 2,000-leaf step.
  dtype = jnp.dtype(jnp.float32)
  for leaf_dtype in {jnp.dtype(leaf.dtype) for leaf in leaves}:
    dtype = jnp.promote_types(dtype, jnp.finfo(leaf_dtype).dtype)
  return dtype


def _sq_norm(leaf: jax.Array, dtype,
             stack_axis: Optional[int] = None) -> jax.Array:
  # The barrier keeps XLA from merging this `g * g` with the base optimizer's
  # own square of the same gradient (AdaGrad's and Adam's accumulators). Once
  # merged, the square has two users, cannot be fused into this reduction,
  # and XLA:CPU writes it out as a gradient-sized temporary: 2.5-4x the update
  # time of layerwise(adam) on AlexNet/ResNet-50 (benchmarks/README.md).
  leaf = jax.lax.optimization_barrier(leaf)
  magnitude = jnp.abs(leaf) if jnp.iscomplexobj(leaf) else leaf
  squares = jnp.square(magnitude.astype(dtype))
  if stack_axis is None:
    return jnp.sum(squares)
  # Stacked layers: one reduction over all other axes, a norm per slice.
  return jnp.sum(squares, axis=tuple(a for a in range(leaf.ndim)
                                     if a != stack_axis))


def _layer_sq_norms(leaves, part: layers_lib.Partition, dtype,
                    axis_name: Optional[str]) -> list[jax.Array]:
  """Squared L2 norm of every layer: one scalar per layer (a vector, one
  entry per slice, for a group of stacked layers).

  Kept as separate scalars rather than one stacked vector: each layer's
  update then depends only on its own reduction, which lets XLA schedule the
  two back to back (the gradient is still in cache) and keeps the program
  small. Stacking and slicing a vector of all layers compiled ~6x slower on
  XLA:CPU for 100+ layers (benchmarks/README.md).
  """
  per_layer: list[Any] = [None] * part.num_layers
  for leaf, layer, axis in zip(leaves, part.leaf_layer, part.leaf_stack_axis):
    if layer == layers_lib.EXCLUDED:
      continue
    sq = _sq_norm(leaf, dtype, axis)
    per_layer[layer] = sq if per_layer[layer] is None else per_layer[layer] + sq
  if axis_name is not None:
    # Each device holds a shard of every leaf: one all-reduce of all layers.
    per_layer = jax.lax.psum(per_layer, axis_name)
  return per_layer


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


def _initial_factors(params: PyTree, layers, exclude,
                     stacked) -> LayerFactorsState:
  leaves, _ = _check_leaves(params)
  dtype = _accumulation_dtype(leaves)
  names = layers_lib.partition(params, layers, exclude,
                               stacked).expanded_layer_names
  return LayerFactorsState({name: jnp.ones([], dtype) for name in names})


class _Factors:
  """Per-layer factors of one step (plain Python; lives only while tracing)."""

  def __init__(self, updates: PyTree, layers, axis_name: Optional[str],
               exclude: layers_lib.ExcludeSpec = None,
               max_factor: Optional[float] = None,
               stacked: layers_lib.StackedSpec = None):
    leaves, self.treedef = _check_leaves(updates)
    self.partition = layers_lib.partition(updates, layers, exclude, stacked)
    self.dtype = _accumulation_dtype(leaves)
    self.sq_norms = _layer_sq_norms(leaves, self.partition, self.dtype,
                                    axis_name)
    self.factors = [_factor_from_sq_norm(sq) for sq in self.sq_norms]
    if max_factor is not None:
      self.factors = [jnp.minimum(f, jnp.asarray(max_factor, f.dtype))
                      for f in self.factors]

  def per_layer(self, values: list[jax.Array]) -> dict[str, jax.Array]:
    """One scalar per layer name, a stacked group's vector split by slice."""
    out = {}
    for layer, value in enumerate(values):
      names = self.partition.slice_names(layer)
      if self.partition.layer_stack_size[layer] is None:
        out[names[0]] = value
      else:
        out.update((name, value[i]) for i, name in enumerate(names))
    return out

  def recorded(self) -> LayerFactorsState:
    return LayerFactorsState(self.per_layer(self.factors))

  def _factor_for(self, leaf: jax.Array, layer: int,
                  axis: Optional[int]) -> jax.Array:
    factor = self.factors[layer].astype(
        jnp.promote_types(leaf.dtype, self.dtype))
    if axis is None:
      return factor
    return factor.reshape([-1 if a == axis else 1 for a in range(leaf.ndim)])

  def apply(self, updates: PyTree) -> PyTree:
    try:
      leaves = self.treedef.flatten_up_to(updates)
    except (ValueError, TypeError) as e:
      raise ValueError(
          'layerlr_optax: the wrapped optimizer returned updates whose '
          f'structure {jax.tree.structure(updates)} differs from the '
          f'gradients it was given, {self.treedef}.') from e
    scaled = [
        leaf if layer == layers_lib.EXCLUDED else
        (leaf * self._factor_for(leaf, layer, axis)).astype(leaf.dtype)
        for leaf, layer, axis in zip(leaves, self.partition.leaf_layer,
                                     self.partition.leaf_stack_axis)
    ]
    return self.treedef.unflatten(scaled)


def scale_by_layer_gradient(
    layers: layers_lib.LayersSpec = 'module',
    *,
    axis_name: Optional[str] = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: Optional[float] = None,
    stacked: layers_lib.StackedSpec = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each layer's updates by the paper's factor (eq. 9).

  For every layer ``l`` with incoming updates ``g_l`` (all of the layer's
  leaves together)::

    u_l = (1 + log(1 + 1 / ||g_l||_2)) * g_l

  The transform is stateless: no history, no per-parameter state, one scalar
  per layer per step. Placed first in a chain it acts on the raw gradient, so
  ``optax.chain(scale_by_layer_gradient(), optax.sgd(lr, momentum=0.9))`` is
  Caffe's SGD solver with a layer-specific rate entering the momentum history.
  For optimizers that precondition the gradient (AdaGrad, Adam, ...) use
  `layerwise`, which multiplies the *final* step instead.

  Norms are accumulated in float32 (or wider), the updates keep their dtype.
  Policy for non-finite gradients: a NaN makes the whole layer's update NaN
  (its norm is NaN) and leaves other layers untouched; an inf gives that layer
  factor 1 (its norm is inf). A layer of zeros gets a zero update.

  Args:
    layers: what a layer is. ``'module'`` (default): the leaves sharing a
      parent node, e.g. a Flax module's ``kernel`` and ``bias``. ``'leaf'``:
      every array on its own. Or, as for `optax.multi_transform`, a pytree of
      hashable labels (same structure as the updates, or a prefix of it) or a
      callable mapping the updates to such a pytree; leaves with equal labels
      form one layer. `layer_partition` shows the resulting grouping.
    axis_name: inside ``shard_map``/``pmap`` where every device holds a shard
      of every leaf, the mapped axis to ``psum`` the squared norms over, so the
      factor uses the global norm. Leave ``None`` under plain ``jit`` (also
      with sharded arrays: XLA computes global norms there).
    record_factors: keep the factors of the latest update in the state (a
      `LayerFactorsState`, one scalar per layer), for logging what the
      optimizer applied; read them with `recorded_factors`. Off by default,
      so the state stays empty.
    exclude: leaves to leave out of layer adaptation, as LARS/LAMB practice
      does for biases, normalisation scales and embeddings: they keep factor
      1 (their updates pass through unchanged) and do not count in any
      layer's norm; a layer whose leaves are all excluded disappears. Like
      `optax.masked`'s mask: a pytree of bools with the structure of the
      params (or a prefix of it), or a callable returning one from the
      params; True means excluded. None (default): nothing excluded.
    max_factor: a cap on the factor, ``min(f_l, max_factor)``. None (the
      default) is the paper's eq. 9, uncapped (at most ~44.7 in float32).
      The factor grows without bound as a layer's gradient vanishes, which
      is harmless when the step shrinks with the gradient (SGD, momentum,
      AdaGrad late in training) but inflates the step near a minimum for
      optimizers whose step does not shrink with it (Adam, sign methods,
      ...): see the README's "near a minimum" table for measurements.
    stacked: leaves that hold several layers stacked along one axis, as
      ``flax.linen.scan``, ``nnx.scan``/``nnx.vmap`` or a ``jax.lax.scan``
      over a params stack make them: each slice along that axis is a layer
      of its own, with the factor of its own norm (over the slice's other
      axes, summed across the leaves of its layer). A pytree with the
      structure of the params (or a prefix of it) holding, per leaf or
      subtree, the stacked axis (an int) or None (not stacked); or a
      callable returning one from the params. ``stacked=0`` stacks every
      leaf along its leading axis. The leaves of one layer must stack the
      same number of layers. Slices are named ``<layer>[i]`` in
      `layer_partition`, `layer_stats` and `recorded_factors`. Cost: one
      reduction per leaf, as without stacking. With `axis_name`, the
      devices must hold shards of every slice (the stacked axis itself not
      split over `axis_name`).

  Returns:
    A `optax.GradientTransformationExtraArgs` with empty state (or a
    `LayerFactorsState` with ``record_factors=True``).

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
  layers_lib.validate_layers(layers)
  layers_lib.validate_exclude(exclude)
  layers_lib.validate_stacked(stacked)
  _check_max_factor(max_factor)
  _check_flag('record_factors', record_factors)

  def init_fn(params):
    if record_factors:
      return _initial_factors(params, layers, exclude, stacked)
    return optax.EmptyState()

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    factors = _Factors(updates, layers, axis_name, exclude, max_factor,
                       stacked)
    if record_factors:
      state = factors.recorded()
    return factors.apply(updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_max_factor(max_factor: Any) -> None:
  if max_factor is None:
    return
  if (isinstance(max_factor, bool) or not isinstance(max_factor, (int, float))
      or not max_factor >= 1.0):
    raise ValueError(
        f'layerlr_optax: max_factor must be None (no cap, the paper) or a '
        f'number >= 1 (eq. 9 is never below 1), got {max_factor!r}.')


def _check_flag(name: str, value: Any) -> None:
  if not isinstance(value, bool):
    raise TypeError(f'layerlr_optax: {name} must be True or False, got '
                    f'{value!r}.')


def _compose(base: optax.GradientTransformation, layers, axis_name,
             scale_output: bool, record_factors: bool,
             exclude: layers_lib.ExcludeSpec, max_factor: Optional[float],
             stacked: layers_lib.StackedSpec
             ) -> optax.GradientTransformationExtraArgs:
  """Runs `base` with the layer factors of the gradient it receives.

  The state is `base`'s own, unchanged, so checkpoints stay compatible with
  the plain optimizer; with `record_factors` it is a `LayerwiseState`.
  """
  layers_lib.validate_layers(layers)
  layers_lib.validate_exclude(exclude)
  layers_lib.validate_stacked(stacked)
  _check_max_factor(max_factor)
  _check_flag('record_factors', record_factors)
  base = optax.with_extra_args_support(base)

  def init_fn(params):
    if record_factors:
      return LayerwiseState(base.init(params),
                            _initial_factors(params, layers, exclude, stacked))
    return base.init(params)

  def update_fn(updates, state, params=None, **extra_args):
    factors = _Factors(updates, layers, axis_name, exclude, max_factor,
                       stacked)
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
    layers: layers_lib.LayersSpec = 'module',
    *,
    axis_name: Optional[str] = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: Optional[float] = None,
    stacked: layers_lib.StackedSpec = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Multiplies the step of any optimizer by the layer factors of its input.

  Computes ``f_l = 1 + log(1 + 1 / ||g_l||_2)`` from the gradient ``g``
  `base` receives, runs `base` on ``g`` unchanged, and multiplies each layer
  of `base`'s output by ``f_l``::

    u_l = f_l * base(g)_l

  This is how the paper puts its rate on top of AdaGrad (eq. 8 with ``t``
  replaced by ``t_l``): the accumulator sees raw gradients, the layer rate
  multiplies the final step.

  When the factor is safe as is: it is >= 1 and grows (to ~44.7 in float32)
  as a layer's gradient vanishes. Measured by
  ``python -m experiments.near_minimum`` (parabola and Rosenbrock, float32
  and complex64, 10,000 steps; table in the README):

  - optimizers whose step shrinks with the gradient (SGD, Nesterov,
    AdaGrad, AMSGrad, RMSProp) still converge, but the factor multiplies the
    base rate by ~2-3 on average, so a rate tuned at the edge of stability
    for the plain optimizer can become unstable (momentum SGD at 1e-3 on
    Rosenbrock, with or without a cap): lower the base rate instead;
  - Adam, AdamW and Yogi, whose normalised step does not shrink with the
    gradient, failed to converge with the uncapped factor (parabola and/or
    Rosenbrock); ``max_factor=2`` restored it on the parabola, and for Yogi
    on both problems, but not for Adam on Rosenbrock in float32;
  - sign-based steps (Lion, sign SGD) converged with the uncapped factor
    (plain sign SGD did not, on Rosenbrock at its rate).

  Args:
    base: the optimizer (any `optax.GradientTransformation`).
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

  Returns:
    A `optax.GradientTransformationExtraArgs` whose state is `base`'s (a
    `LayerwiseState` with ``record_factors=True``).

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
  return _compose(base, layers, axis_name, scale_output=True,
                  record_factors=record_factors, exclude=exclude,
                  max_factor=max_factor, stacked=stacked)


def prescaled(
    base: optax.GradientTransformation,
    layers: layers_lib.LayersSpec = 'module',
    *,
    axis_name: Optional[str] = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: Optional[float] = None,
    stacked: layers_lib.StackedSpec = None,
) -> optax.GradientTransformationExtraArgs:
  """`base` fed with the layer-scaled gradient; state is `base`'s own.

  Equal to ``optax.chain(scale_by_layer_gradient(layers), base)`` except that
  the state pytree is exactly `base`'s (no `optax.EmptyState` in a tuple), or
  a `LayerwiseState` with `record_factors`.
  """
  return _compose(base, layers, axis_name, scale_output=False,
                  record_factors=record_factors, exclude=exclude,
                  max_factor=max_factor, stacked=stacked)


def recorded_factors(opt_state: optax.OptState) -> dict[str, jax.Array]:
  """The layer factors an optimizer applied at its latest update.

  Finds the `LayerFactorsState` of a transform made with
  ``record_factors=True`` anywhere in `opt_state` (inside `optax.chain`,
  `optax.inject_hyperparams`, `optax.MultiSteps`, `optax.masked`, ...), like
  `optax.inject_hyperparams` exposes its hyperparameters. Works inside and
  outside ``jit``.

  Args:
    opt_state: the state of an optimizer holding exactly one transform that
      records its factors.

  Returns:
    ``{layer_name: factor}``, the names as `layer_partition` gives them.

  Raises:
    ValueError: if `opt_state` holds no recorded factors, or more than one set.

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
  is_record = lambda x: isinstance(x, LayerFactorsState)
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_record)
           if is_record(x)]
  if len(found) != 1:
    raise ValueError(
        f'layerlr_optax: the optimizer state holds {len(found)} sets of '
        'recorded layer factors; expected exactly one. Create the layer-rate '
        'transform with record_factors=True (once per optimizer).')
  return dict(found[0].factors)


def layer_stats(
    updates: PyTree,
    layers: layers_lib.LayersSpec = 'module',
    *,
    axis_name: Optional[str] = None,
    exclude: layers_lib.ExcludeSpec = None,
    stacked: layers_lib.StackedSpec = None,
) -> dict[str, dict[str, jax.Array]]:
  """Per-layer gradient norms and eq. 9 factors, for logging.

  Works inside and outside ``jit`` (the result is a pytree of scalars).

  Args:
    updates: a gradient (or updates) pytree.
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_gradient`.
    exclude: see `scale_by_layer_gradient` (excluded leaves are left out).
    stacked: see `scale_by_layer_gradient` (one entry per stacked slice,
      named ``<layer>[i]``).

  Returns:
    ``{layer_name: {'grad_norm': scalar, 'factor': scalar}}`` in layer order.
    The effective learning rate of a layer is the base rate times its factor.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> stats = layerlr_optax.layer_stats({'a': {'w': jnp.ones(4)}})
    >>> print(f"{float(stats['a']['grad_norm']):.1f}")
    2.0
  """
  factors = _Factors(updates, layers, axis_name, exclude, stacked=stacked)
  norms = factors.per_layer([jnp.sqrt(sq) for sq in factors.sq_norms])
  per_layer_factors = factors.per_layer(factors.factors)
  return {name: {'grad_norm': norms[name], 'factor': per_layer_factors[name]}
          for name in norms}


def layer_partition(
    tree: PyTree,
    layers: layers_lib.LayersSpec = 'module',
    *,
    exclude: layers_lib.ExcludeSpec = None,
    stacked: layers_lib.StackedSpec = None,
) -> dict[str, list[str]]:
  """Which leaves form which layer: ``{layer_name: [leaf paths]}``.

  Args:
    tree: params or gradients (only the structure is used).
    layers: what a layer is; see `scale_by_layer_gradient`.
    exclude: see `scale_by_layer_gradient`; excluded leaves are in no layer.
    stacked: see `scale_by_layer_gradient`; a stacked leaf appears in each of
      its layers as ``path[i]`` (``path[:, i]`` for axis 1, ...). Needs the
      shapes, so pass arrays or `jax.ShapeDtypeStruct` leaves.

  Returns:
    A dict from readable layer names to the readable paths of their leaves.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'conv': {'kernel': jnp.ones(2), 'bias': jnp.ones(1)}}
    >>> layerlr_optax.layer_partition(params)
    {'conv': ['conv/bias', 'conv/kernel']}
    >>> stack = {'block': {'kernel': jnp.ones((2, 3, 3)), 'bias': jnp.ones((2, 3))}}
    >>> layerlr_optax.layer_partition(stack, stacked=0)
    {'block[0]': ['block/bias[0]', 'block/kernel[0]'], 'block[1]': ['block/bias[1]', 'block/kernel[1]']}
  """
  return layers_lib.partition(tree, layers, exclude, stacked).as_dict()
