"""Trees seen layer by layer: the one mechanism every per-layer rule uses.

A rule (eq. 9, the trust ratio, layer-wise rate decay, one second moment
per layer) needs the same few things: which leaves form which layer (one
layer per slice of a stacked group, excluded leaves in none), per-layer sums
of squares of a tree (its gradient, its parameters, its update), summed
across devices with ``axis_name``, and a way to put one value per layer back
on the leaves. `LayerView` does these once, for every rule: no rule
partitions, validates, excludes, reduces or names layers on its own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Hashable
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from layerlr_optax._src import layers as layers_lib

PyTree = Any


AxisNames = Union[None, Hashable, tuple[Hashable, ...]]
"""Mapped axes inside ``shard_map``/``pmap``: a mesh axis name (a str), a
tuple of them, or None (``()`` for none, where None means "not given")."""


def _axis_tuple(axes: AxisNames) -> tuple[Hashable, ...]:
  if axes is None:
    return ()
  return tuple(axes) if isinstance(axes, tuple) else (axes,)


def _check_axis_names(name: str, axes: AxisNames) -> None:
  if not all(isinstance(a, Hashable) and not isinstance(a, tuple)
             for a in _axis_tuple(axes)):
    raise TypeError(f'layerlr_optax: {name} must be a mesh axis name (str), '
                    f'a tuple of them, or None, got {axes!r}.')


def _mapped_size(axes: tuple[Hashable, ...]) -> Optional[int]:
  """The number of devices along `axes` where they are bound (inside
  ``shard_map``/``pmap`` over them), None where they are not."""
  try:
    # psum of a Python constant is evaluated at trace time: a static int.
    return int(jax.lax.psum(1, axes))
  except NameError:  # "unbound axis name": not mapped over them here
    return None


@dataclasses.dataclass(frozen=True)
class PartitionOptions:
  """What a layer is (`layers`, `exclude`, `stacked`) and, inside
  ``shard_map``/``pmap``, the mapped axes its sums run over (`axis_name`)
  and the mapped axes that split the stacked axis (`stacked_axis_name`)."""
  layers: layers_lib.LayersSpec = 'module'
  axis_name: AxisNames = None
  exclude: layers_lib.ExcludeSpec = None
  stacked: layers_lib.StackedSpec = None
  stacked_axis_name: AxisNames = None

  def __post_init__(self):
    layers_lib.validate_specs(self.layers, self.exclude, self.stacked)
    _check_axis_names('axis_name', self.axis_name)
    _check_axis_names('stacked_axis_name', self.stacked_axis_name)
    if self.stacked_axis_name is not None and self.stacked is None:
      raise ValueError(
          'layerlr_optax: stacked_axis_name='
          f'{self.stacked_axis_name!r} says how stacked layers are split '
          'across devices, but nothing is stacked (stacked=None). Pass '
          'stacked= as well (e.g. stacked=layerlr_optax.stacked_paths('
          "'^blocks/')), or leave stacked_axis_name out.")
    if (self.axis_name is not None and self.stacked is not None
        and self.stacked_axis_name is None):
      # Inside shard_map a leaf split along its stacked axis and one split
      # along another axis have the same local shape and the same type:
      # nothing at trace or run time tells them apart, so the user says.
      raise ValueError(
          f'layerlr_optax: with axis_name={self.axis_name!r} and stacked '
          'layers, say how the stacked axis is laid out across devices '
          '(inside shard_map it cannot be seen): stacked_axis_name=() if '
          'every device holds a shard of every slice (the stacked axis is '
          f'not split), or stacked_axis_name={self.axis_name!r} (a mesh '
          'axis, or a tuple of them) if the devices split the stacked axis '
          'itself, each holding whole slices. Under plain jit with sharded '
          'arrays pass neither: norms are global there.')

  @property
  def sum_axes(self) -> tuple[Hashable, ...]:
    return _axis_tuple(self.axis_name)

  @property
  def stack_axes(self) -> tuple[Hashable, ...]:
    return _axis_tuple(self.stacked_axis_name)

  def partition(self, tree: PyTree) -> layers_lib.Partition:
    return layers_lib.partition(tree, layers=self.layers,
                                exclude=self.exclude, stacked=self.stacked)


def _check_leaves(leaves: list[Any], part: layers_lib.Partition,
                  what: str) -> None:
  """Refuses non-float leaves that take part in layer adaptation (excluded
  leaves are the user's business, as with `optax.masked`)."""
  for leaf, layer, name in zip(leaves, part.leaf_layer, part.leaf_names):
    if layer == layers_lib.EXCLUDED:
      continue
    dtype = getattr(leaf, 'dtype', None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
      raise TypeError(
          f'layerlr_optax: the {what} at {name!r} has dtype {dtype} (type '
          f'{type(leaf).__name__}); layer-specific rates need floating-point '
          f'{what}s. Leave non-trainable leaves (step counters, integer '
          'buffers, ...) out of the tree you optimise, or give them no '
          'update with optax.multi_transform({..., "frozen": '
          'optax.set_to_zero()}, labels).')


def _accumulation_dtype(leaves: list[Any], part: layers_lib.Partition) -> Any:
  """float32, or wider if a leaf's real part is (float64 under x64)."""
  # From the dtypes alone: creating an array per leaf took ~0.2 s of the
  # lowering time of a 2,000-leaf step.
  dtype = jnp.dtype(jnp.float32)
  dtypes = {jnp.dtype(leaf.dtype) for leaf, layer in zip(leaves,
                                                         part.leaf_layer)
            if layer != layers_lib.EXCLUDED}
  for leaf_dtype in dtypes:
    dtype = jnp.promote_types(dtype, jnp.finfo(leaf_dtype).dtype)
  return dtype


@functools.cache
def _barrier_transforms() -> bool:
  """Whether this jax can vmap and differentiate an optimization barrier.

  jax 0.4.35 (the oldest supported) has neither rule, so a barrier there
  would break `vmap` over seeds and differentiating through an update. The
  barrier only matters for speed on newer XLA (see `_sq_norm`), so it is
  left out where jax cannot transform it. Checked abstractly, once.
  """
  spec = jax.ShapeDtypeStruct((2,), jnp.float32)
  barrier = jax.lax.optimization_barrier
  try:
    jax.eval_shape(jax.vmap(barrier), spec)
    jax.eval_shape(lambda x: jax.jvp(barrier, (x,), (x,)), spec)
  except NotImplementedError:
    return False
  return True


def _sq_norm(leaf: jax.Array, dtype,
             stack_axis: Optional[int] = None) -> jax.Array:
  # The barrier keeps XLA from merging this `g * g` with the base optimizer's
  # own square of the same gradient (AdaGrad's and Adam's accumulators). Once
  # merged, the square has two users, cannot be fused into this reduction,
  # and XLA:CPU writes it out as a gradient-sized temporary: 2.5-4x the update
  # time of layerwise(adam) on AlexNet/ResNet-50 (benchmarks/README.md).
  if _barrier_transforms():
    leaf = jax.lax.optimization_barrier(leaf)
  magnitude = jnp.abs(leaf) if jnp.iscomplexobj(leaf) else leaf
  squares = jnp.square(magnitude.astype(dtype))
  if stack_axis is None:
    return jnp.sum(squares)
  # Stacked layers: one reduction over all other axes, a norm per slice.
  return jnp.sum(squares, axis=tuple(a for a in range(leaf.ndim)
                                     if a != stack_axis))


def _entry(vector: jax.Array, i: int) -> jax.Array:
  """`vector[i]` as a reduction rather than a gather: a gather from a vector
  sharded over an explicit-axes mesh has no unambiguous output sharding
  (jax raises ShardingTypeError), a masked sum is replicated on any mesh."""
  return jnp.sum(jnp.where(jnp.arange(vector.shape[0]) == i, vector,
                           jnp.zeros((), vector.dtype)))


class LayerView:
  """A tree's leaves grouped into the layers `options` defines.

  Plain Python that lives only while a step is traced. A *group* is one
  entry of the partition: an unstacked layer, whose per-layer values are
  scalars, or a stacked group, whose values are vectors with one entry per
  slice. Values are kept per group rather than stacked into one vector of
  all layers: each layer's update then depends only on its own reduction,
  which lets XLA schedule the two back to back (the gradient is still in
  cache) and keeps the program small. Stacking and slicing a vector of all
  layers compiled ~6x slower on XLA:CPU for 100+ layers
  (benchmarks/README.md).
  """

  def __init__(self, tree: PyTree, options: PartitionOptions,
               what: str = 'update', at_init: bool = False):
    leaves, treedef = jax.tree.flatten(tree)
    self.leaves = leaves
    # Typed Any: jaxlib's PyTreeDef stub lacks flatten_up_to/unflatten.
    self.treedef: Any = treedef
    self.sum_axes = options.sum_axes
    self.what = what
    partition = options.partition(tree)
    _check_leaves(leaves, partition, what)
    self.dtype = _accumulation_dtype(leaves, partition)
    # With the stacked axis split over `stack_axes`, this device holds block
    # `slice_block` of each stacked group's slices: per-slice values are
    # kept for all slices (the whole stack's names, identical on every
    # device) and each leaf takes its block of them.
    self.slice_block: Optional[jax.Array] = None
    self.stack_axes = options.stack_axes
    if self.stack_axes and any(
        size is not None for size in partition.layer_stack_size):
      devices = _mapped_size(self.stack_axes)
      if devices is None and not at_init:
        raise ValueError(
            'layerlr_optax: stacked_axis_name='
            f'{options.stacked_axis_name!r} names mapped axes that split '
            'the stacked layers, but this update does not run inside '
            'shard_map/pmap over them (or a name is misspelt). Pass '
            'stacked_axis_name only to optimizers that run inside shard_map '
            'over that axis; under plain jit the arrays are whole and it is '
            'not needed.')
      if devices is not None:
        self.slice_block = jax.lax.axis_index(self.stack_axes)
        partition = dataclasses.replace(partition, layer_stack_size=tuple(
            None if size is None else size * devices
            for size in partition.layer_stack_size))
      # else: `init` outside shard_map, on the whole stack.
    self.partition = partition

  @property
  def num_groups(self) -> int:
    return self.partition.num_layers

  def _layer_leaves(self):
    return zip(self.partition.leaf_layer, self.partition.leaf_stack_axis)

  def _split(self, layer: int) -> bool:
    """Whether this device holds only a block of group `layer`'s slices."""
    return (self.slice_block is not None
            and self.partition.layer_stack_size[layer] is not None)

  def _within_slice_axes(self, layer: int) -> tuple[Hashable, ...]:
    """The mapped axes that split each layer (each slice) of a group."""
    if not self._split(layer):
      return self.sum_axes
    return tuple(a for a in self.sum_axes if a not in self.stack_axes)

  def leaves_of(self, tree: PyTree, what: str) -> list[Any]:
    """The leaves of another tree with this one's structure (the params of
    these updates, a base optimizer's output), with a readable error."""
    try:
      return self.treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as e:
      raise ValueError(
          f'layerlr_optax: the {what} have the structure '
          f'{jax.tree.structure(tree)}, which differs from the '
          f'{self.what}s\' {self.treedef}; they must match leaf for '
          'leaf.') from e

  def sq_norms(self, tree: Optional[PyTree] = None,
               what: str = 'update') -> list[Any]:
    """Squared L2 norm of each group of `tree` (this view's tree if None):
    a scalar per unstacked layer, a vector (one entry per slice, of the
    whole stack) per stacked group, summed over the mapped axes. None for a
    group with no leaves (cannot happen for partitions built here)."""
    if tree is None:
      leaves = self.leaves
    else:
      leaves = self.leaves_of(tree, what)
      _check_leaves(leaves, self.partition, what)
    per_group: list[Any] = [None] * self.num_groups
    for leaf, (layer, axis) in zip(leaves, self._layer_leaves()):
      if layer == layers_lib.EXCLUDED:
        continue
      sq = _sq_norm(leaf, self.dtype, axis)
      per_group[layer] = sq if per_group[layer] is None else (
          per_group[layer] + sq)
    # Groups summed over the same mapped axes share one all-reduce; with
    # nothing split that is one all-reduce of all layers.
    by_axes: dict[tuple[Hashable, ...], list[int]] = {}
    for layer, sq in enumerate(per_group):
      if sq is None:
        continue
      axes = self.sum_axes
      if self._split(layer):
        # This device's block of slices, in place in a vector of all of
        # them: summing over the splitting axes fills in the other blocks
        # (a psum, unlike an all_gather, leaves it replicated).
        whole = jnp.zeros([self.partition.layer_stack_size[layer]], sq.dtype)
        per_group[layer] = jax.lax.dynamic_update_slice_in_dim(
            whole, sq, self.slice_block * sq.shape[0], axis=0)
        axes = self._within_slice_axes(layer) + self.stack_axes
      if axes:
        by_axes.setdefault(axes, []).append(layer)
    for axes, group in by_axes.items():
      summed = jax.lax.psum([per_group[g] for g in group], axes)
      for g, value in zip(group, summed):
        per_group[g] = value
    return per_group

  def sizes(self) -> list[Any]:
    """The number of elements of each layer (of each slice of a stacked
    group), across the devices that split it: a float per group."""
    counts = [0] * self.num_groups
    for leaf, (layer, axis) in zip(self.leaves, self._layer_leaves()):
      if layer == layers_lib.EXCLUDED:
        continue
      size = int(leaf.size) if axis is None else (
          int(leaf.size) // int(leaf.shape[axis]))
      counts[layer] += size
    sizes = []
    for layer, count in enumerate(counts):
      axes = self._within_slice_axes(layer)
      # A static count: psum of a Python constant is the number of devices.
      devices = int(jax.lax.psum(1, axes)) if axes else 1
      sizes.append(jnp.asarray(float(count * devices), self.dtype))
    return sizes

  def per_layer(self, values: Sequence[Any]) -> dict[str, jax.Array]:
    """One scalar per layer name, a stacked group's vector split by slice."""
    out = {}
    for layer, value in enumerate(values):
      names = self.partition.slice_names(layer)
      if self.partition.layer_stack_size[layer] is None:
        out[names[0]] = value
      else:
        out.update((name, _entry(value, i)) for i, name in enumerate(names))
    return out

  def broadcast(self, value: jax.Array, leaf: jax.Array,
                axis: Optional[int]) -> jax.Array:
    """A group's value (scalar, or one entry per slice) shaped to broadcast
    against one of its leaves, whose stacked axis is `axis`."""
    value = value.astype(jnp.promote_types(leaf.dtype, value.dtype))
    if axis is None:
      return value
    if (self.slice_block is not None and value.ndim == 1
        and value.shape[0] != leaf.shape[axis]):
      # A value of the whole stack, a leaf holding this device's block.
      block = leaf.shape[axis]
      value = jax.lax.dynamic_slice_in_dim(value, self.slice_block * block,
                                           block)
    return value.reshape([-1 if a == axis else 1 for a in range(leaf.ndim)])

  def map(self, fn: Callable[..., Any], values: Optional[Sequence[Any]],
          *trees: PyTree, what: str = 'updates',
          excluded: Optional[Callable[..., jax.Array]] = None) -> PyTree:
    """``fn(leaf, ..., value)`` on every leaf of a layer, with the leaves of
    `trees` (this view's structure, or a prefix of it where a leaf position
    holds a placeholder such as `optax.MaskedNode`) and its group's value
    broadcast to the leaf; excluded leaves get ``excluded(leaf, ...)``, or
    the first tree's leaf unchanged. With `values` None, ``fn(leaf, ...)``
    alone."""
    columns = [self.leaves_of(tree, what) for tree in trees]
    out = []
    for i, (layer, axis) in enumerate(self._layer_leaves()):
      args = [column[i] for column in columns]
      if layer == layers_lib.EXCLUDED:
        out.append(excluded(*args) if excluded is not None else args[0])
      else:
        out.append(fn(*args) if values is None else
                   fn(*args, self.broadcast(values[layer], args[0], axis)))
    return self.treedef.unflatten(out)

  def scale(self, tree: PyTree, values: Sequence[Any],
            what: str = 'updates') -> PyTree:
    """`tree` with each layer's leaves multiplied by its value (its slice's
    entry for stacked leaves), in each leaf's dtype; excluded leaves as
    they are."""
    return self.map(lambda leaf, v: (leaf * v).astype(leaf.dtype), values,
                    tree, what=what)

  def initial(self, value: float) -> dict[str, jax.Array]:
    """`value` for every layer name, for state before the first update."""
    return {name: jnp.full([], value, self.dtype)
            for name in self.partition.expanded_layer_names}
