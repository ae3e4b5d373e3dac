"""What a "layer" is: partitioning a pytree's leaves into layers.

The partition depends only on the pytree *structure* (and, for label pytrees
or callables, on the labels), never on array values, so it is computed in
Python at trace time and costs nothing at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Union

import jax

PyTree = Any
LayersSpec = Union[str, PyTree, Callable[[PyTree], PyTree]]

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

  Attributes:
    leaf_layer: for each leaf (in `jax.tree.leaves` order) its layer index.
    layer_names: the name of each layer, in order of first appearance.
    leaf_names: the readable path of each leaf.
  """
  leaf_layer: tuple[int, ...]
  layer_names: tuple[str, ...]
  leaf_names: tuple[str, ...]

  @property
  def num_layers(self) -> int:
    return len(self.layer_names)

  def as_dict(self) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {name: [] for name in self.layer_names}
    for leaf, layer in zip(self.leaf_names, self.leaf_layer):
      groups[self.layer_names[layer]].append(leaf)
    return groups


def _group(keys: Sequence[Hashable], names: Sequence[str],
           leaf_names: Sequence[str]) -> Partition:
  index: dict[Hashable, int] = {}
  layer_names: list[str] = []
  leaf_layer = []
  for key, name in zip(keys, names):
    if key not in index:
      index[key] = len(layer_names)
      layer_names.append(name)
    leaf_layer.append(index[key])
  return Partition(tuple(leaf_layer), tuple(layer_names), tuple(leaf_names))


def _labels_per_leaf(labels: PyTree, tree: PyTree) -> list[Hashable]:
  """Broadcasts a labels pytree (same structure or a prefix) over `tree`."""
  labels_def = jax.tree.structure(labels)
  try:
    subtrees = labels_def.flatten_up_to(tree)
  except (ValueError, TypeError) as e:
    raise ValueError(
        'layerlr_optax: the `layers` labels pytree does not match the updates.'
        ' It must have the same structure as the updates (one label per '
        'leaf) or be a prefix of it (one label per subtree).\n'
        f'  labels structure:  {labels_def}\n'
        f'  updates structure: {jax.tree.structure(tree)}\n'
        'Build the labels from the same params you optimise, e.g. with '
        'jax.tree.map(lambda _: label, params), or pass a callable.') from e
  per_leaf = []
  for label, subtree in zip(labels_def.flatten_up_to(labels), subtrees):
    per_leaf.extend([label] * len(jax.tree.leaves(subtree)))
  return per_leaf


def partition(tree: PyTree, layers: LayersSpec = 'module') -> Partition:
  """Assigns each leaf of `tree` to a layer according to `layers`.

  Args:
    tree: any pytree of arrays (`None` and `optax.MaskedNode` are empty
      subtrees and therefore skipped).
    layers: ``'module'`` (leaves sharing a parent node form one layer; a
      trailing ``.value`` attribute of a parameter box such as
      ``flax.nnx.Variable`` is looked through), ``'leaf'`` (each leaf is its
      own layer), a pytree of hashable labels with the structure of `tree` or
      a prefix of it, or a callable returning such labels from `tree`.

  Returns:
    The static `Partition`.
  """
  validate_layers(layers)
  paths_and_leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  paths = [_strip_box(tuple(p)) for p, _ in paths_and_leaves]
  leaf_names = [path_name(p) for p in paths]
  if isinstance(layers, str):
    if layers == 'leaf':
      return _group(range(len(paths)), leaf_names, leaf_names)
    parents = [p[:-1] for p in paths]
    return _group(parents, [path_name(p) for p in parents], leaf_names)
  labels = layers(tree) if callable(layers) else layers
  validate_layers(labels)
  per_leaf = _labels_per_leaf(labels, tree)
  names = [label if isinstance(label, str) else repr(label)
           for label in per_leaf]
  return _group(per_leaf, names, leaf_names)

