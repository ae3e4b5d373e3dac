"""What a "layer" is: partitioning a pytree's leaves into layers.

The partition depends only on the pytree *structure* (and, for label pytrees
or callables, on the labels), never on array values, so it is computed in
Python at trace time and costs nothing at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Optional, Union

import jax

PyTree = Any
LayersSpec = Union[str, PyTree, Callable[[PyTree], PyTree]]
# Like `optax.masked`'s mask: a pytree of bools (the tree's structure or a
# prefix of it), or a callable returning one from the tree. True: excluded.
ExcludeSpec = Union[None, PyTree, Callable[[PyTree], PyTree]]
# Which leaves hold several layers stacked along one axis (`flax.linen.scan`,
# `nnx.scan`, `jax.lax.scan` over a params stack): a pytree of axes (int) or
# None (not stacked), the tree's structure or a prefix of it, or a callable
# returning one from the tree.
StackedSpec = Union[None, int, PyTree, Callable[[PyTree], PyTree]]
# The layer index of an excluded leaf.
EXCLUDED = -1

LAYER_MODES = ('module', 'leaf')
ROOT_NAME = '<root>'

# Value boxes around a parameter (flax.nnx.Variable / VariableState,
# flax.linen.Partitioned) flatten with a trailing attribute key `value`. The
# box is part of the parameter, not a module level, so it is looked through.
_BOX_ATTRIBUTE = 'value'


def validate_layers(layers: LayersSpec) -> None:
  """Fails early on a `layers` argument that can never be valid."""
  if isinstance(layers, str):
    if layers not in LAYER_MODES:
      raise ValueError(
          f'layerlr_optax: unknown layers={layers!r}. Use one of '
          f'{", ".join(repr(m) for m in LAYER_MODES)}, a pytree of hashable '
          'labels (one per leaf, or a prefix of the updates tree), or a '
          'callable mapping the updates/params pytree to such labels.')
    return
  if callable(layers):
    return
  for label in jax.tree.leaves(layers):
    if not isinstance(label, Hashable):
      raise TypeError(
          f'layerlr_optax: layer label {label!r} of type {type(label).__name__}'
          ' is not hashable. Labels must be hashable (str, int, tuple, ...), '
          'like the labels of optax.multi_transform.')


def _key_name(key: Any) -> str:
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return key.name
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(key)


def path_name(path: Sequence[Any]) -> str:
  """A readable name for a key path: ``params/Conv_0/kernel``."""
  return '/'.join(_key_name(k) for k in path) or ROOT_NAME


def _strip_box(path: tuple[Any, ...]) -> tuple[Any, ...]:
  if (path and isinstance(path[-1], jax.tree_util.GetAttrKey)
      and path[-1].name == _BOX_ATTRIBUTE):
    return path[:-1]
  return path


@dataclasses.dataclass(frozen=True)
class Partition:
  """Static assignment of a pytree's leaves to layers.

  A *group* is what `layers` makes of the tree; a group whose leaves are
  stacked (`stacked`) holds one layer per slice along the stacked axis, so
  its norm and factor are vectors of that length.

  Attributes:
    leaf_layer: for each leaf (in `jax.tree.leaves` order) its group index,
      or `EXCLUDED` for a leaf excluded from layer adaptation.
    layer_names: the name of each group, in order of first appearance.
    leaf_names: the readable path of each leaf.
    leaf_stack_axis: for each leaf its stacked axis (non-negative), or None.
    layer_stack_size: for each group the number of stacked layers, or None
      for an unstacked group (one layer).
  """
  leaf_layer: tuple[int, ...]
  layer_names: tuple[str, ...]
  leaf_names: tuple[str, ...]
  leaf_stack_axis: tuple[Optional[int], ...] = ()
  layer_stack_size: tuple[Optional[int], ...] = ()

  def __post_init__(self):
    if not self.leaf_stack_axis:
      object.__setattr__(self, 'leaf_stack_axis',
                         (None,) * len(self.leaf_layer))
    if not self.layer_stack_size:
      object.__setattr__(self, 'layer_stack_size',
                         (None,) * len(self.layer_names))

  @property
  def num_layers(self) -> int:
    """The number of groups (a stacked group counts once)."""
    return len(self.layer_names)

  def slice_names(self, layer: int) -> list[str]:
    """The names of the layers in group `layer`: ``name`` when unstacked,
    ``name[0]``, ``name[1]``, ... when stacked."""
    name, size = self.layer_names[layer], self.layer_stack_size[layer]
    if size is None:
      return [name]
    return [f'{name}[{i}]' for i in range(size)]

  @property
  def expanded_layer_names(self) -> tuple[str, ...]:
    """Every layer's name, a stacked group's slices one by one."""
    return tuple(name for layer in range(self.num_layers)
                 for name in self.slice_names(layer))

  def as_dict(self) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {
        name: [] for name in self.expanded_layer_names}
    for leaf, layer, axis in zip(self.leaf_names, self.leaf_layer,
                                 self.leaf_stack_axis):
      if layer == EXCLUDED:
        continue
      for i, name in enumerate(self.slice_names(layer)):
        groups[name].append(leaf if axis is None else
                            f'{leaf}[{":, " * axis}{i}]')
    return groups

  @property
  def excluded(self) -> tuple[str, ...]:
    """The readable paths of the excluded leaves."""
    return tuple(leaf for leaf, layer in zip(self.leaf_names, self.leaf_layer)
                 if layer == EXCLUDED)


def _group(keys: Sequence[Hashable], names: Sequence[str],
           leaf_names: Sequence[str],
           excluded: Sequence[bool] | None = None) -> Partition:
  index: dict[Hashable, int] = {}
  layer_names: list[str] = []
  leaf_layer = []
  excluded = excluded or [False] * len(leaf_names)
  for key, name, out in zip(keys, names, excluded):
    if out:
      leaf_layer.append(EXCLUDED)
      continue
    if key not in index:
      index[key] = len(layer_names)
      layer_names.append(name)
    leaf_layer.append(index[key])
  return Partition(tuple(leaf_layer), tuple(layer_names), tuple(leaf_names))


def _labels_per_leaf(labels: PyTree, tree: PyTree,
                     what: str = '`layers` labels',
                     is_leaf: Optional[Callable[[Any], bool]] = None
                     ) -> list[Hashable]:
  """Broadcasts a labels pytree (same structure or a prefix) over `tree`."""
  labels_def = jax.tree.structure(labels, is_leaf=is_leaf)
  try:
    subtrees = labels_def.flatten_up_to(tree)
  except (ValueError, TypeError) as e:
    raise ValueError(
        f'layerlr_optax: the {what} pytree does not match the updates.'
        ' It must have the same structure as the updates (one value per '
        'leaf) or be a prefix of it (one value per subtree).\n'
        f'  {what} structure:  {labels_def}\n'
        f'  updates structure: {jax.tree.structure(tree)}\n'
        'Build it from the same params you optimise, e.g. with '
        'jax.tree.map(lambda _: value, params), or pass a callable.') from e
  per_leaf = []
  for label, subtree in zip(labels_def.flatten_up_to(labels), subtrees):
    per_leaf.extend([label] * len(jax.tree.leaves(subtree)))
  return per_leaf


def validate_exclude(exclude: ExcludeSpec) -> None:
  """Fails early on an `exclude` argument that can never be valid."""
  if exclude is None or callable(exclude):
    return
  for flag in jax.tree.leaves(exclude):
    if not isinstance(flag, bool):
      raise TypeError(
          f'layerlr_optax: exclude must hold True/False per leaf or subtree '
          f'(True: factor 1, left out of the layer norms), got {flag!r} of '
          f'type {type(flag).__name__}.')


def _excluded_per_leaf(exclude: ExcludeSpec, tree: PyTree) -> list[bool]:
  if exclude is None:
    return [False] * len(jax.tree.leaves(tree))
  mask = exclude(tree) if callable(exclude) else exclude
  validate_exclude(mask)
  return [bool(x) for x in _labels_per_leaf(mask, tree, '`exclude` mask')]


def validate_stacked(stacked: StackedSpec) -> None:
  """Fails early on a `stacked` argument that can never be valid."""
  if stacked is None or callable(stacked):
    return
  for axis in jax.tree.leaves(stacked):
    if isinstance(axis, bool) or not isinstance(axis, int):
      raise TypeError(
          'layerlr_optax: stacked must hold, per leaf or subtree, the axis '
          'along which the leaf stacks its layers (an int, e.g. 0 for '
          'flax.linen.scan) or None (not stacked); got '
          f'{axis!r} of type {type(axis).__name__}.')


def _stack_axes(stacked: StackedSpec, tree: PyTree, leaves: Sequence[Any],
                leaf_names: Sequence[str]) -> list[Optional[int]]:
  if stacked is None:
    return [None] * len(leaves)
  spec = stacked(tree) if callable(stacked) else stacked
  validate_stacked(spec)
  axes = _labels_per_leaf(spec, tree, '`stacked` axes',
                          is_leaf=lambda x: x is None)
  normalised = []
  for axis, leaf, name in zip(axes, leaves, leaf_names):
    if axis is None:
      normalised.append(None)
      continue
    ndim = len(getattr(leaf, 'shape', ()))
    if not -ndim <= axis < ndim:
      raise ValueError(
          f'layerlr_optax: stacked axis {axis} is out of range for the leaf '
          f'{name!r} of shape {tuple(getattr(leaf, "shape", ()))}. Give the '
          'axis that indexes its stacked layers, or None for a leaf that '
          'holds one layer.')
    normalised.append(axis % ndim)
  return normalised


def _stack_sizes(part: Partition, leaves: Sequence[Any]) -> Partition:
  """Checks that each group's leaves stack the same number of layers."""
  sizes: list[Any] = ['unset'] * part.num_layers
  first_leaf: list[str] = [''] * part.num_layers
  for leaf, name, layer, axis in zip(leaves, part.leaf_names, part.leaf_layer,
                                     part.leaf_stack_axis):
    if layer == EXCLUDED:
      continue
    size = None if axis is None else leaf.shape[axis]
    if sizes[layer] == 'unset':
      sizes[layer], first_leaf[layer] = size, name
    elif sizes[layer] != size:
      describe = lambda n: ('is not stacked' if n is None else
                            f'stacks {n} layers')
      raise ValueError(
          f'layerlr_optax: layer {part.layer_names[layer]!r} mixes leaves '
          f'with different stacking: {first_leaf[layer]!r} '
          f'{describe(sizes[layer])}, {name!r} {describe(size)}. All '
          'leaves of a layer must stack the same number of layers along '
          'their stacked axis (or none); check `stacked` and `layers`.')
  return dataclasses.replace(
      part, layer_stack_size=tuple(None if s == 'unset' else s for s in sizes))


def partition(tree: PyTree, layers: LayersSpec = 'module',
              exclude: ExcludeSpec = None,
              stacked: StackedSpec = None) -> Partition:
  """Assigns each leaf of `tree` to a layer according to `layers`.

  Args:
    tree: any pytree of arrays (`None` and `optax.MaskedNode` are empty
      subtrees and therefore skipped).
    layers: ``'module'`` (leaves sharing a parent node form one layer; a
      trailing ``.value`` attribute of a parameter box such as
      ``flax.nnx.Variable`` is looked through), ``'leaf'`` (each leaf is its
      own layer), a pytree of hashable labels with the structure of `tree` or
      a prefix of it, or a callable returning such labels from `tree`.
    exclude: leaves left out of layer adaptation (`EXCLUDED`): None, a
      pytree of bools (the structure of `tree` or a prefix), or a callable
      returning one from `tree`.
    stacked: leaves that hold several layers stacked along one axis: None,
      a pytree of axes (int) or None per leaf (the structure of `tree` or a
      prefix), or a callable returning one from `tree`.

  Returns:
    The static `Partition` (it depends on shapes only through `stacked`).
  """
  validate_layers(layers)
  validate_stacked(stacked)
  paths_and_leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  paths = [_strip_box(tuple(p)) for p, _ in paths_and_leaves]
  leaves = [leaf for _, leaf in paths_and_leaves]
  leaf_names = [path_name(p) for p in paths]
  excluded = _excluded_per_leaf(exclude, tree)
  if isinstance(layers, str):
    if layers == 'leaf':
      part = _group(range(len(paths)), leaf_names, leaf_names, excluded)
    else:
      parents = [p[:-1] for p in paths]
      part = _group(parents, [path_name(p) for p in parents], leaf_names,
                    excluded)
  else:
    labels = layers(tree) if callable(layers) else layers
    validate_layers(labels)
    per_leaf = _labels_per_leaf(labels, tree)
    names = [label if isinstance(label, str) else repr(label)
             for label in per_leaf]
    part = _group(per_leaf, names, leaf_names, excluded)
  if stacked is None:
    return part
  part = dataclasses.replace(
      part, leaf_stack_axis=tuple(_stack_axes(stacked, tree, leaves,
                                              leaf_names)))
  return _stack_sizes(part, leaves)

