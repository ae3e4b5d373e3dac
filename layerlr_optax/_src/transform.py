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

from typing import Any, Optional

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


def _sq_norm(leaf: jax.Array, dtype) -> jax.Array:
  # The barrier keeps XLA from merging this `g * g` with the base optimizer's
  # own square of the same gradient (AdaGrad's and Adam's accumulators). Once
  # merged, the square has two users, cannot be fused into this reduction,
  # and XLA:CPU writes it out as a gradient-sized temporary: 2.5-4x the update
  # time of layerwise(adam) on AlexNet/ResNet-50 (benchmarks/README.md).
  leaf = jax.lax.optimization_barrier(leaf)
  magnitude = jnp.abs(leaf) if jnp.iscomplexobj(leaf) else leaf
  return jnp.sum(jnp.square(magnitude.astype(dtype)))


def _layer_sq_norms(leaves, part: layers_lib.Partition, dtype,
                    axis_name: Optional[str]) -> list[jax.Array]:
  """Squared L2 norm of every layer: one scalar per layer.

  Kept as separate scalars rather than one stacked vector: each layer's
  update then depends only on its own reduction, which lets XLA schedule the
  two back to back (the gradient is still in cache) and keeps the program
  small. Stacking and slicing a vector of all layers compiled ~6x slower on
  XLA:CPU for 100+ layers (benchmarks/README.md).
  """
  per_layer: list[Any] = [None] * part.num_layers
  for leaf, layer in zip(leaves, part.leaf_layer):
    sq = _sq_norm(leaf, dtype)
    per_layer[layer] = sq if per_layer[layer] is None else per_layer[layer] + sq
  if axis_name is not None:
    # Each device holds a shard of every leaf: one all-reduce of all layers.
    per_layer = jax.lax.psum(per_layer, axis_name)
  return per_layer


class _Factors:
  """Per-layer factors of one step (plain Python; lives only while tracing)."""

  def __init__(self, updates: PyTree, layers, axis_name: Optional[str]):
    leaves, self.treedef = _check_leaves(updates)
    self.partition = layers_lib.partition(updates, layers)
    self.dtype = _accumulation_dtype(leaves)
    self.sq_norms = _layer_sq_norms(leaves, self.partition, self.dtype,
                                    axis_name)
    self.factors = [_factor_from_sq_norm(sq) for sq in self.sq_norms]

  def apply(self, updates: PyTree) -> PyTree:
    try:
      leaves = self.treedef.flatten_up_to(updates)
    except (ValueError, TypeError) as e:
      raise ValueError(
          'layerlr_optax: the wrapped optimizer returned updates whose '
          f'structure {jax.tree.structure(updates)} differs from the '
          f'gradients it was given, {self.treedef}.') from e
    scaled = [
        (leaf * self.factors[layer].astype(
            jnp.promote_types(leaf.dtype, self.dtype))).astype(leaf.dtype)
        for leaf, layer in zip(leaves, self.partition.leaf_layer)
    ]
    return self.treedef.unflatten(scaled)


def scale_by_layer_gradient(
    layers: layers_lib.LayersSpec = 'module',
    *,
    axis_name: Optional[str] = None,
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

  Returns:
    A `optax.GradientTransformationExtraArgs` with empty state.

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

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    return _Factors(updates, layers, axis_name).apply(updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _compose(base: optax.GradientTransformation, layers, axis_name,
             scale_output: bool) -> optax.GradientTransformationExtraArgs:
  """Runs `base` with the layer factors of the gradient it receives.

  The state is `base`'s own, unchanged, so checkpoints stay compatible with
  the plain optimizer.
  """
  layers_lib.validate_layers(layers)
  base = optax.with_extra_args_support(base)

  def update_fn(updates, state, params=None, **extra_args):
    factors = _Factors(updates, layers, axis_name)
    if not scale_output:
      updates = factors.apply(updates)
    updates, state = base.update(updates, state, params, **extra_args)
    if scale_output:
      updates = factors.apply(updates)
    return updates, state

  return optax.GradientTransformationExtraArgs(base.init, update_fn)


def layerwise(
    base: optax.GradientTransformation,
    layers: layers_lib.LayersSpec = 'module',
    *,
    axis_name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Multiplies the step of any optimizer by the layer factors of its input.

  Computes ``f_l = 1 + log(1 + 1 / ||g_l||_2)`` from the gradient ``g``
  `base` receives, runs `base` on ``g`` unchanged, and multiplies each layer
  of `base`'s output by ``f_l``::

    u_l = f_l * base(g)_l

  This is how the paper puts its rate on top of AdaGrad (eq. 8 with ``t``
  replaced by ``t_l``): the accumulator sees raw gradients, the layer rate
  multiplies the final step. It applies as is to Adam, RMSProp, etc.

  Args:
    base: the optimizer (any `optax.GradientTransformation`).
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_gradient`.

  Returns:
    A `optax.GradientTransformationExtraArgs` whose state is `base`'s.

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
  return _compose(base, layers, axis_name, scale_output=True)


def prescaled(
    base: optax.GradientTransformation,
    layers: layers_lib.LayersSpec = 'module',
    *,
    axis_name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  """`base` fed with the layer-scaled gradient; state is `base`'s own.

  Equal to ``optax.chain(scale_by_layer_gradient(layers), base)`` except that
  the state pytree is exactly `base`'s (no `optax.EmptyState` in a tuple).
  """
  return _compose(base, layers, axis_name, scale_output=False)


def layer_stats(
    updates: PyTree,
    layers: layers_lib.LayersSpec = 'module',
    *,
    axis_name: Optional[str] = None,
) -> dict[str, dict[str, jax.Array]]:
  """Per-layer gradient norms and eq. 9 factors, for logging.

  Works inside and outside ``jit`` (the result is a pytree of scalars).

  Args:
    updates: a gradient (or updates) pytree.
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_gradient`.

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
  factors = _Factors(updates, layers, axis_name)
  return {
      name: {'grad_norm': jnp.sqrt(sq), 'factor': factor}
      for name, sq, factor in zip(factors.partition.layer_names,
                                  factors.sq_norms, factors.factors)
  }


def layer_partition(
    tree: PyTree,
    layers: layers_lib.LayersSpec = 'module',
) -> dict[str, list[str]]:
  """Which leaves form which layer: ``{layer_name: [leaf paths]}``.

  Args:
    tree: params or gradients (only the structure is used).
    layers: what a layer is; see `scale_by_layer_gradient`.

  Returns:
    A dict from readable layer names to the readable paths of their leaves.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'conv': {'kernel': jnp.ones(2), 'bias': jnp.ones(1)}}
    >>> layerlr_optax.layer_partition(params)
    {'conv': ['conv/bias', 'conv/kernel']}
  """
  return layers_lib.partition(tree, layers).as_dict()
