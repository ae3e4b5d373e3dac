"""What a "layer" is: partitioning a pytree's leaves into layers.

The partition depends only on the pytree *structure* (and on shapes, for
stacking and `ndim_at_most`), never on array values, so it is computed in
Python at trace time and costs nothing at run time.

Each rule is one small function: naming a leaf (`leaf_paths`), grouping by
module, by leaf or by label (`_group_keys`), exclusion (`_excluded_per_leaf`)
and stacking (`_stack_axes`, `_stack_sizes`). `partition` composes them.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import sys
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Optional, Union

import jax
import numpy as np

PyTree = Any
LayersSpec = Union[str, PyTree, Callable[[PyTree], PyTree]]
"""What a layer is: ``'module'``, ``'leaf'``, a pytree of hashable labels (the
tree's structure or a prefix of it), or a callable returning one."""
ExcludeSpec = Union[None, PyTree, Callable[[PyTree], PyTree]]
"""Leaves left out of layer adaptation: None, a pytree of bools (the tree's
structure or a prefix, as `optax.masked` takes), a callable returning one, or
a rule such as `matching_paths` or `ndim_at_most`. True: excluded."""
StackedSpec = Union[None, int, PyTree, Callable[[PyTree], PyTree]]
"""Leaves holding several layers stacked along one axis (``nn.scan``,
``nnx.scan``, a ``jax.lax.scan`` over a params stack): None, an int axis for
every leaf, a pytree of axes or None per leaf (the tree's structure or a
prefix), a callable returning one, or `stacked_paths`."""
# The layer index of an excluded leaf.
EXCLUDED = -1

LAYER_MODES = ('module', 'leaf')
ROOT_NAME = '<root>'

# Value boxes around a parameter (flax.nnx.Variable / VariableState,
# flax.linen.Partitioned and the other flax.core.meta.AxisMetadata) are part
# of the parameter, not a module level, so their own keys are left out of a
# leaf's path. Recognised by type only: a user's field that happens to be
# called `value` (hand-written attention: query, key, value) keeps its name.
_BOX_CLASSES = (('flax.nnx', 'Variable'), ('flax.nnx', 'VariableState'),
                ('flax.core.meta', 'AxisMetadata'))


# ---------------------------------------------------------------- naming --

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


def _box_types() -> tuple[type, ...]:
  """The parameter box classes of the flax modules imported so far (a tree
  can only hold boxes of a module that is imported; never imports flax)."""
  found = []
  for module_name, class_name in _BOX_CLASSES:
    module = sys.modules.get(module_name)
    # vars(): a name only present through a deprecation shim is not a box.
    cls = vars(module).get(class_name) if module is not None else None
    if isinstance(cls, type):
      found.append(cls)
  return tuple(found)


def leaf_paths(tree: PyTree) -> tuple[list[tuple[Any, ...]], list[Any]]:
  """The key path of every leaf (parameter boxes looked through) and the
  leaves, in `jax.tree.leaves` order."""
  boxes = _box_types()
  if not boxes:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [tuple(p) for p, _ in flat], [leaf for _, leaf in flat]
  is_box = lambda x: isinstance(x, boxes)
  paths, leaves = [], []
  for path, node in jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=is_box)[0]:
    inner = jax.tree.leaves(node) if is_box(node) else [node]
    # A box holds one array; it is named by the box's own path.
    paths.extend([tuple(path)] * len(inner))
    leaves.extend(inner)
  return paths, leaves


# ------------------------------------------------------------ validation --

def validate_layers(layers: LayersSpec) -> None:
  """Fails early on a `layers` argument that can never be valid."""
  if isinstance(layers, str):
    if layers not in LAYER_MODES:
      raise ValueError(
          f'layerlr_optax: unknown layers={layers!r}. Use one of '
          f'{", ".join(repr(m) for m in LAYER_MODES)}, a pytree of hashable '
          'labels (one per leaf, or a prefix of the updates tree), or a '
          'callable mapping the updates/params pytree to such labels.'
          + _INJECTED_HINT.format(name='layers'))
    return
  if callable(layers):
    return
  if isinstance(layers, (numbers.Number, np.ndarray, jax.Array)):
    raise TypeError(
        f'layerlr_optax: layers={layers!r} is a number, which would make the '
        'whole tree one layer labelled by it. `layers` names what a layer '
        "is ('module', 'leaf', labels or a callable); if you meant a "
        'learning rate, give it to the optimizer (e.g. optax.sgd(0.1)).'
        + _INJECTED_HINT.format(name='layers'))
  for label in jax.tree.leaves(layers):
    if not isinstance(label, Hashable):
      raise TypeError(
          f'layerlr_optax: layer label {label!r} of type {type(label).__name__}'
          ' is not hashable. Labels must be hashable (str, int, tuple, ...), '
          'like the labels of optax.multi_transform.')


def _as_flag(flag: Any) -> bool:
  """A Python bool from what `optax.masked` accepts as a mask entry."""
  if isinstance(flag, (bool, np.bool_)):
    return bool(flag)
  if isinstance(flag, jax.core.Tracer):
    raise TypeError(
        'layerlr_optax: an exclude mask entry is a traced value. The layer '
        'partition is fixed at trace time, so the mask must be concrete: '
        'Python or NumPy bools, or concrete 0-d boolean arrays.')
  if (isinstance(flag, (np.ndarray, jax.Array)) and flag.shape == ()
      and flag.dtype == np.bool_):
    return bool(flag)
  raise TypeError(
      f'layerlr_optax: exclude must hold True/False per leaf or subtree '
      f'(True: factor 1, left out of the layer norms), got {flag!r} of '
      f'type {type(flag).__name__}. Bools, NumPy bools and 0-d boolean '
      'arrays are accepted, as by optax.masked.')


_INJECTED_HINT = (
    ' If optax.inject_hyperparams made this optimizer, it called your '
    'function as a learning-rate schedule (with the step count): name the '
    "argument in static_args, e.g. optax.inject_hyperparams(opt, "
    "static_args=('{name}',)), or use the package's rules (matching_paths, "
    'stacked_paths, ndim_at_most), which it leaves alone.')


def validate_exclude(exclude: ExcludeSpec) -> None:
  """Fails early on an `exclude` argument that can never be valid."""
  if isinstance(exclude, _StackedPaths):
    raise TypeError(f'layerlr_optax: exclude={exclude!r} is a stacked= rule; '
                    'use matching_paths or ndim_at_most for exclude=.')
  if exclude is None or callable(exclude) or isinstance(exclude, _LeafRule):
    return
  if isinstance(exclude, (bool, np.bool_, np.ndarray, jax.Array)):
    # A whole-tree True would exclude every leaf (the transform would do
    # nothing); what a schedule-called mask function returns looks like it.
    if np.ndim(exclude) == 0 and (isinstance(exclude, jax.core.Tracer)
                                  or bool(exclude)):
      raise TypeError(
          f'layerlr_optax: exclude={exclude!r} excludes every leaf, so '
          'nothing would be adapted. Give a mask per leaf or subtree, or a '
          'rule.' + _INJECTED_HINT.format(name='exclude'))
  for flag in jax.tree.leaves(exclude):
    _as_flag(flag)


def _as_axis(axis: Any) -> Optional[int]:
  if axis is None:
    return None
  if isinstance(axis, (int, np.integer)) and not isinstance(
      axis, (bool, np.bool_)):
    return int(axis)
  hint = ''
  if isinstance(axis, jax.Array):
    hint = _INJECTED_HINT.format(name='stacked')
  raise TypeError(
      'layerlr_optax: stacked must hold, per leaf or subtree, the axis '
      'along which the leaf stacks its layers (an int, e.g. 0 for '
      'flax.linen.scan) or None (not stacked); got '
      f'{axis!r} of type {type(axis).__name__}.{hint}')


def validate_stacked(stacked: StackedSpec) -> None:
  """Fails early on a `stacked` argument that can never be valid."""
  if isinstance(stacked, _LeafRule) and not isinstance(stacked,
                                                       _StackedPaths):
    raise TypeError(f'layerlr_optax: stacked={stacked!r} is an exclude= '
                    'rule; use stacked_paths(pattern, axis) for stacked=.')
  if stacked is None or callable(stacked) or isinstance(stacked, _LeafRule):
    return
  for axis in jax.tree.leaves(stacked):
    _as_axis(axis)


def validate_specs(layers: LayersSpec, exclude: ExcludeSpec,
                   stacked: StackedSpec) -> None:
  """Validates the three partition arguments of a public function."""
  validate_layers(layers)
  validate_exclude(exclude)
  validate_stacked(stacked)


# ------------------------------------------------------------ path rules --

class _LeafRule:
  """A rule evaluated per leaf from its readable path, shape and stacked
  axis; `partition` evaluates it on the flattened leaves, so it works on any
  tree type, boxed or not.

  Deliberately not callable: `optax.inject_hyperparams` treats every
  callable argument as a schedule and would call the rule with the step
  count, silently replacing it. Rules compare and hash by value, so a
  function jitted with one as a static argument does not retrace for an
  equal rule. `evaluate` shows what a rule selects.
  """

  def per_leaf(self, names: Sequence[str], leaves: Sequence[Any],
               stack_axes: Sequence[Optional[int]]) -> list[Any]:
    raise NotImplementedError

  def _key(self) -> tuple[Any, ...]:
    raise NotImplementedError

  def __eq__(self, other: Any) -> bool:
    return type(self) is type(other) and self._key() == other._key()

  def __hash__(self) -> int:
    return hash((type(self).__name__, self._key()))

  def evaluate(self, tree: PyTree) -> PyTree:
    """The rule's value for every leaf of `tree`, as a tree of its shape."""
    paths, leaves = leaf_paths(tree)
    values = self.per_leaf([path_name(p) for p in paths], leaves,
                           [None] * len(leaves))
    return jax.tree.unflatten(jax.tree.structure(tree), values)


def _compile(pattern: Union[str, re.Pattern]) -> re.Pattern:
  if isinstance(pattern, re.Pattern):
    return pattern
  if not isinstance(pattern, str):
    raise TypeError(
        'layerlr_optax: a path pattern must be a regular expression (str or '
        f're.Pattern), got {pattern!r} of type {type(pattern).__name__}.')
  try:
    return re.compile(pattern)
  except re.error as e:
    raise ValueError(f'layerlr_optax: {pattern!r} is not a valid regular '
                     f'expression: {e}.') from e


class _MatchingPaths(_LeafRule):

  def __init__(self, pattern):
    self.pattern = _compile(pattern)

  def per_leaf(self, names, leaves, stack_axes):
    return [self.pattern.search(name) is not None for name in names]

  def _key(self):
    return (self.pattern.pattern, self.pattern.flags)

  def __repr__(self):
    return f'matching_paths({self.pattern.pattern!r})'


class _StackedPaths(_LeafRule):

  def __init__(self, pattern, axis):
    self.pattern = _compile(pattern)
    self.axis = _as_axis(axis)
    if self.axis is None:
      raise TypeError('layerlr_optax: stacked_paths needs the stacked axis '
                      '(an int), got None.')

  def per_leaf(self, names, leaves, stack_axes):
    axes = [self.axis if self.pattern.search(name) else None
            for name in names]
    if names and all(a is None for a in axes):
      # A typo ('^Blocks/' for 'Blocks') would leave the stack one layer.
      shown = ', '.join(repr(n) for n in names[:8])
      more = f', ... ({len(names)} in all)' if len(names) > 8 else ''
      raise ValueError(
          f'layerlr_optax: {self!r} matches no path, so no leaf would be '
          f'stacked. The paths are: {shown}{more}. Match the scanned '
          "module's name as it appears there (re.search, e.g. "
          "stacked_paths('layers')).")
    return axes

  def _key(self):
    return (self.pattern.pattern, self.pattern.flags, self.axis)

  def __repr__(self):
    return f'stacked_paths({self.pattern.pattern!r}, axis={self.axis})'


class _NdimAtMost(_LeafRule):

  def __init__(self, ndim):
    if (isinstance(ndim, bool) or not isinstance(ndim, (int, np.integer))
        or ndim < 0):
      raise ValueError(f'layerlr_optax: ndim_at_most needs an int >= 0, got '
                       f'{ndim!r}.')
    self.ndim = int(ndim)

  def per_leaf(self, names, leaves, stack_axes):
    return [len(np.shape(leaf)) - (axis is not None) <= self.ndim
            for leaf, axis in zip(leaves, stack_axes)]

  def _key(self):
    return (self.ndim,)

  def __repr__(self):
    return f'ndim_at_most({self.ndim})'


def matching_paths(pattern: Union[str, re.Pattern]) -> _LeafRule:
  r"""Selects the leaves whose readable path matches a regular expression.

  The path is the one `layer_partition` prints (``params/Dense_0/bias``,
  ``hidden/kernel``): dict keys, attribute names and sequence indices joined
  by ``/``, with a parameter box (``nnx.Param``, ``nn.Partitioned``,
  recognised by its type) looked through, so one pattern works on plain dicts,
  Flax linen params (boxed or not), ``nnx.State`` and Equinox modules. The
  pattern is searched (`re.search`), so ``'bias'`` matches any path that
  contains it; anchor it (``r'/bias$'``) to match only whole names.

  Args:
    pattern: a regular expression (str or compiled).

  Returns:
    A rule for ``exclude=``: True (excluded) where the path matches.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)},
    ...           'norm': {'scale': jnp.ones(2)}}
    >>> layerlr_optax.layer_partition(
    ...     params, exclude=layerlr_optax.matching_paths(r'bias|scale'))
    {'dense': ['dense/kernel']}
  """
  return _MatchingPaths(pattern)


def stacked_paths(pattern: Union[str, re.Pattern], axis: int = 0
                  ) -> _LeafRule:
  """Marks the leaves whose readable path matches as stacked along `axis`.

  For ``stacked=``: the leaves of a ``nn.scan``/``nnx.scan`` stack hold one
  layer per slice along `axis`; the others hold one layer. Paths are matched
  as by `matching_paths`.

  Args:
    pattern: a regular expression (str or compiled), e.g. the scanned
      module's name.
    axis: the axis that indexes the stacked layers (0 for ``nn.scan`` with
      ``variable_axes={'params': 0}``).

  Returns:
    A rule for ``stacked=``.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'ScanBlock': {'kernel': jnp.ones((2, 3, 3))},
    ...           'head': {'kernel': jnp.ones((3, 1))}}
    >>> layerlr_optax.layer_partition(
    ...     params, stacked=layerlr_optax.stacked_paths('ScanBlock'))
    {'ScanBlock[0]': ['ScanBlock/kernel[0]'], 'ScanBlock[1]': ['ScanBlock/kernel[1]'], 'head': ['head/kernel']}
  """
  return _StackedPaths(pattern, axis)


def ndim_at_most(ndim: int) -> _LeafRule:
  """Selects the leaves with at most `ndim` dimensions per layer.

  ``exclude=ndim_at_most(1)`` is the LARS/LAMB practice of leaving biases
  and normalisation scales (vectors) out of layer adaptation. A stacked
  leaf's stacked axis does not count: the bias stack ``(L, d)`` of a scanned
  block is a vector per layer and is selected too.

  Args:
    ndim: the largest number of dimensions selected.

  Returns:
    A rule for ``exclude=``.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> layerlr_optax.layer_partition(
    ...     params, exclude=layerlr_optax.ndim_at_most(1))
    {'dense': ['dense/kernel']}
  """
  return _NdimAtMost(ndim)


# -------------------------------------------------------------- partition --

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
  leaf_stack_axis: tuple[Optional[int], ...]
  layer_stack_size: tuple[Optional[int], ...]

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


def _per_leaf(spec: PyTree, tree: PyTree, what: str,
              is_leaf: Optional[Callable[[Any], bool]] = None) -> list[Any]:
  """Broadcasts a pytree of values (same structure or a prefix) over the
  leaves of `tree`."""
  # Typed Any: jaxlib's PyTreeDef stub lacks flatten_up_to.
  spec_def: Any = jax.tree.structure(spec, is_leaf=is_leaf)
  try:
    subtrees = spec_def.flatten_up_to(tree)
  except (ValueError, TypeError) as e:
    raise ValueError(
        f'layerlr_optax: the {what} pytree does not match the updates.'
        ' It must have the same structure as the updates (one value per '
        'leaf) or be a prefix of it (one value per subtree).\n'
        f'  {what} structure:  {spec_def}\n'
        f'  updates structure: {jax.tree.structure(tree)}\n'
        'Build it from the same params you optimise, e.g. with '
        'jax.tree.map(lambda _: value, params), pass a callable, or use '
        'layerlr_optax.matching_paths / stacked_paths, which work on any '
        'tree.') from e
  values = jax.tree.leaves(spec, is_leaf=is_leaf)
  per_leaf = []
  for value, subtree in zip(values, subtrees):
    per_leaf.extend([value] * len(jax.tree.leaves(subtree)))
  return per_leaf


# The parameter names of a single framework module (Flax Dense/Conv/
# LayerNorm/Embed, Equinox Linear/Conv/LayerNorm/Embedding): a tree whose
# root holds only leaves with these names *is* one module, not a list of
# layers, in every framework.
_ONE_MODULE_NAMES = frozenset({'kernel', 'bias', 'weight', 'scale',
                               'embedding'})


def _is_one_module(paths: Sequence[tuple[Any, ...]]) -> bool:
  """Whether the whole tree is the parameters of one module: every leaf
  sits directly under the root and is named as one module's parameters
  (an ``eqx.nn.Linear``, an ``nnx.Linear``'s state, a linen ``Dense``'s
  ``params``)."""
  return bool(paths) and all(
      len(p) == 1 and _key_name(p[0]) in _ONE_MODULE_NAMES for p in paths)


def _module_key(path: tuple[Any, ...]) -> tuple[Any, ...]:
  """A leaf's module: its parent node; a leaf directly under the root (a
  list of matrices, a flat dict of arrays) belongs to no module and is a
  layer of its own (unless the whole tree is one module, `_is_one_module`)."""
  return path if len(path) <= 1 else path[:-1]


def _group_keys(layers: LayersSpec, tree: PyTree,
                paths: Sequence[tuple[Any, ...]]
                ) -> tuple[list[Hashable], list[str]]:
  """For every leaf the key that groups it into a layer, and that layer's
  name."""
  if isinstance(layers, str) and layers == 'leaf':
    return list(range(len(paths))), [path_name(p) for p in paths]
  if isinstance(layers, str):  # 'module'
    if _is_one_module(paths):
      return [()] * len(paths), [ROOT_NAME] * len(paths)
    keys = [_module_key(p) for p in paths]
    return list(keys), [path_name(k) for k in keys]
  labels = layers(tree) if callable(layers) else layers
  if callable(layers):
    validate_layers(labels)
  per_leaf = _per_leaf(labels, tree, '`layers` labels')
  return per_leaf, [label if isinstance(label, str) else repr(label)
                    for label in per_leaf]


def _stack_axes(stacked: StackedSpec, tree: PyTree, names: Sequence[str],
                leaves: Sequence[Any]) -> list[Optional[int]]:
  if stacked is None:
    return [None] * len(leaves)
  if isinstance(stacked, _LeafRule):
    axes = stacked.per_leaf(names, leaves, [None] * len(leaves))
  else:
    spec = stacked(tree) if callable(stacked) else stacked
    if callable(stacked):
      validate_stacked(spec)
    axes = [_as_axis(a) for a in _per_leaf(spec, tree, '`stacked` axes',
                                           is_leaf=lambda x: x is None)]
  normalised: list[Optional[int]] = []
  for axis, leaf, name in zip(axes, leaves, names):
    if axis is None:
      normalised.append(None)
      continue
    ndim = len(np.shape(leaf))
    if not -ndim <= axis < ndim:
      raise ValueError(
          f'layerlr_optax: stacked axis {axis} is out of range for the leaf '
          f'{name!r} of shape {tuple(np.shape(leaf))}. Give the axis that '
          'indexes its stacked layers, or None for a leaf that holds one '
          'layer.')
    normalised.append(axis % ndim)
  return normalised


def _excluded_per_leaf(exclude: ExcludeSpec, tree: PyTree,
                       names: Sequence[str], leaves: Sequence[Any],
                       stack_axes: Sequence[Optional[int]]) -> list[bool]:
  if exclude is None:
    return [False] * len(leaves)
  if isinstance(exclude, _LeafRule):
    return [bool(x) for x in exclude.per_leaf(names, leaves, stack_axes)]
  mask = exclude(tree) if callable(exclude) else exclude
  return [_as_flag(x) for x in _per_leaf(mask, tree, '`exclude` mask')]


def _group(keys: Sequence[Hashable], names: Sequence[str],
           excluded: Sequence[bool]) -> tuple[list[int], list[str]]:
  index: dict[Hashable, int] = {}
  layer_names: list[str] = []
  leaf_layer = []
  for key, name, out in zip(keys, names, excluded):
    if out:
      leaf_layer.append(EXCLUDED)
      continue
    if key not in index:
      index[key] = len(layer_names)
      layer_names.append(name)
    leaf_layer.append(index[key])
  return leaf_layer, layer_names


def _stack_sizes(leaf_layer: Sequence[int], num_layers: int,
                 layer_names: Sequence[str], leaf_names: Sequence[str],
                 leaves: Sequence[Any], stack_axes: Sequence[Optional[int]]
                 ) -> list[Optional[int]]:
  """Each group's number of stacked layers; its leaves must agree."""
  sizes: list[Any] = ['unset'] * num_layers
  first_leaf: list[str] = [''] * num_layers
  describe = lambda n: 'is not stacked' if n is None else f'stacks {n} layers'
  for leaf, name, layer, axis in zip(leaves, leaf_names, leaf_layer,
                                     stack_axes):
    if layer == EXCLUDED:
      continue
    size = None if axis is None else np.shape(leaf)[axis]
    if sizes[layer] == 'unset':
      sizes[layer], first_leaf[layer] = size, name
    elif sizes[layer] != size:
      raise ValueError(
          f'layerlr_optax: layer {layer_names[layer]!r} mixes leaves '
          f'with different stacking: {first_leaf[layer]!r} '
          f'{describe(sizes[layer])}, {name!r} {describe(size)}. All '
          'leaves of a layer must stack the same number of layers along '
          'their stacked axis (or none); check `stacked` and `layers`.')
  return [None if s == 'unset' else s for s in sizes]


def partition(tree: PyTree, *, layers: LayersSpec = 'module',
              exclude: ExcludeSpec = None,
              stacked: StackedSpec = None) -> Partition:
  """Assigns each leaf of `tree` to a layer.

  The arguments are validated by the public functions when they are made;
  what a callable returns is validated here.

  Args:
    tree: any pytree of arrays or `jax.ShapeDtypeStruct` (`None` and
      `optax.MaskedNode` are empty subtrees and therefore skipped).
    layers: ``'module'`` (leaves sharing a parent node form one layer; a
      leaf directly under the root is a layer of its own, except in a tree
      that is one module's parameters, e.g. ``{'kernel', 'bias'}``, which
      is the one layer ``<root>``; a trailing
      parameter box such as ``flax.nnx.Variable`` (by its type) is looked
      through), ``'leaf'`` (each leaf is its own layer), a pytree of hashable
      labels with the structure of `tree` or a prefix of it, or a callable
      returning such labels from `tree`.
    exclude: see `ExcludeSpec`.
    stacked: see `StackedSpec`.

  Returns:
    The static `Partition`.
  """
  paths, leaves = leaf_paths(tree)
  names = [path_name(p) for p in paths]
  stack_axes = _stack_axes(stacked, tree, names, leaves)
  excluded = _excluded_per_leaf(exclude, tree, names, leaves, stack_axes)
  keys, key_names = _group_keys(layers, tree, paths)
  leaf_layer, layer_names = _group(keys, key_names, excluded)
  sizes = _stack_sizes(leaf_layer, len(layer_names), layer_names, names,
                       leaves, stack_axes)
  return Partition(tuple(leaf_layer), tuple(layer_names), tuple(names),
                   tuple(stack_axes), tuple(sizes))
