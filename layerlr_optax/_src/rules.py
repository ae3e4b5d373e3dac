"""Per-layer rules beyond eq. 9, on the same partition: the trust ratio of
LARS/LAMB, layer-wise learning-rate decay, one second moment per layer.

Each rule reads and writes its layers through `reduction.LayerView`, so a
layer means the same thing for every rule (a module, a slice of a stacked
group, a label), ``exclude=`` leaves the same leaves out, ``axis_name``
sums across the same devices, and ``record_factors`` names the same layers.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from layerlr_optax._src import layers as layers_lib
from layerlr_optax._src import reduction
from layerlr_optax._src import transform
from layerlr_optax._src import validation

PyTree = Any


def _recorded_init(options: reduction.PartitionOptions, record: bool,
                   value: float = 1.0) -> Callable[[PyTree], Any]:
  def init_fn(params):
    if record:
      return transform._initial_factors(params, options, value)  # pylint: disable=protected-access
    return optax.EmptyState()
  return init_fn


# ---------------------------------------------------------------------------
# Trust ratio (LARS, LAMB) per layer.


def _safe_norm(sq: jax.Array, min_norm: Any) -> jax.Array:
  """``max(sqrt(sq), min_norm)`` as `optax.safe_norm` computes it (a norm at
  or below `min_norm` becomes `min_norm`), with finite derivatives at 0."""
  positive = sq > 0
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
  min_norm = jnp.asarray(min_norm, sq.dtype)
  return jnp.where(norm <= min_norm, min_norm, norm)


def _trust_ratio(param_sq: jax.Array, update_sq: jax.Array, min_norm: Any,
                 trust_coefficient: Any, eps: Any) -> jax.Array:
  """``trust_coefficient * ||w|| / (||u|| + eps)``, 1 where either norm is
  zero (as `optax.scale_by_trust_ratio`) or not finite (the package's
  policy for non-finite norms, see `layer_factor`)."""
  param_norm = _safe_norm(param_sq, min_norm)
  update_norm = _safe_norm(update_sq, min_norm)
  dtype = param_norm.dtype
  unusable = ((param_norm == 0) | (update_norm == 0)
              | ~jnp.isfinite(param_norm) | ~jnp.isfinite(update_norm))
  # Double where: the discarded branch must not divide by zero either, or
  # its derivative (0 * inf) would poison the gradient of the update.
  denominator = jnp.where(unusable, jnp.ones((), dtype),
                          update_norm + jnp.asarray(eps, dtype))
  ratio = jnp.asarray(trust_coefficient, dtype) * param_norm / denominator
  return jnp.where(unusable, jnp.ones((), dtype), ratio)


def scale_by_layer_trust_ratio(
    min_norm: jax.typing.ArrayLike = 0.0,
    trust_coefficient: jax.typing.ArrayLike = 1.0,
    eps: jax.typing.ArrayLike = 0.0,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each layer's updates by its trust ratio (LARS, LAMB), per layer.

  For every layer :math:`l` with parameters :math:`w_l` and incoming updates
  :math:`u_l` (all of the layer's leaves together, one slice of a stacked
  group):

  .. math::
    u_l \leftarrow c\,\frac{\|w_l\|_2}{\|u_l\|_2 + \epsilon}\, u_l

  with the norms raised to `min_norm`, and ratio 1 where either norm is
  zero, exactly as `optax.scale_by_trust_ratio` does for each array. Norms
  are square roots of float32 sums of squares, so a layer whose entries
  are all below ~1e-19 in magnitude has norm 0 whatever its size (optax's
  own norm of a one-element array keeps such a value). The
  difference is what a layer is: optax's ratio is per array, so a weight
  and its bias get two ratios, and a scan-stacked model (``nn.scan``,
  ``nnx.scan``, Equinox ``filter_vmap``) gets **one ratio for the whole
  stack of layers**; here a layer is what `layer_partition` shows (a
  module by default, one per slice with ``stacked=``), so a stacked model
  gets the same updates as the same model unrolled. With ``layers='leaf'``
  and nothing stacked this is `optax.scale_by_trust_ratio` (to float32
  rounding).

  A norm that is not finite (a NaN or inf in the layer) gives ratio 1, the
  package's policy (`layer_factor`); optax's ratio is NaN there.

  Args:
    min_norm: norms below it are raised to it (as in `optax.safe_norm`).
    trust_coefficient: the multiplier :math:`c` of the ratio.
    eps: added to the update norm in the denominator.
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: inside ``shard_map``/``pmap``, the mapped axis to sum the
      norms over; see `scale_by_layer_gradient`.
    record_factors: keep the ratios of the latest update in the state (a
      `LayerFactorsState`); read them with `recorded_factors`.
    exclude: leaves that keep their update unchanged (ratio 1) and do not
      count in any layer's norms, as LARS/LAMB practice does for biases and
      normalisation scales; see `scale_by_layer_gradient`.
    stacked: leaves holding several stacked layers, each slice with its own
      ratio; see `scale_by_layer_gradient`.
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    A `optax.GradientTransformationExtraArgs` with empty state (or a
    `LayerFactorsState` with ``record_factors=True``). Its ``update`` needs
    ``params``.

  References:
    You, Gitman and Ginsburg, `Large Batch Training of Convolutional
    Networks <https://arxiv.org/abs/1708.03888>`_, 2017.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'dense': {'kernel': jnp.full((2, 2), 3.0), 'bias': jnp.zeros(2)}}
    >>> grads = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> tx = layerlr_optax.scale_by_layer_trust_ratio()
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> print(f"{float(updates['dense']['bias'][0]):.4f}")  # 6 / sqrt(6)
    2.4495
  """
  for name, value in (('min_norm', min_norm),
                      ('trust_coefficient', trust_coefficient),
                      ('eps', eps)):
    validation.check_scalar(name, value)
  validation.check_flag('record_factors', record_factors)
  options = reduction.PartitionOptions(
      layers=layers, axis_name=axis_name, exclude=exclude, stacked=stacked,
      stacked_axis_name=stacked_axis_name)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(
          'layerlr_optax: scale_by_layer_trust_ratio needs the parameters: '
          'call opt.update(grads, opt_state, params).')
    view = reduction.LayerView(updates, options)
    ratios = [
        _trust_ratio(p, u, min_norm, trust_coefficient, eps)
        for p, u in zip(view.sq_norms(params, what='parameters'),
                        view.sq_norms())]
    if record_factors:
      state = transform.LayerFactorsState(view.per_layer(ratios))
    return view.scale(updates, ratios), state

  return optax.GradientTransformationExtraArgs(
      _recorded_init(options, record_factors), update_fn)


# ---------------------------------------------------------------------------
# Layer-wise learning-rate decay.

DepthSpec = Union[Sequence[Union[str, 're.Pattern[str]']],
                  Callable[[str], int]]
"""Bottom-to-top regular expressions on layer names, or a callable from a
layer's name to its depth."""


def _validate_depth(depth: Any) -> Any:
  if callable(depth):
    return depth
  if isinstance(depth, (str, re.Pattern)) or not isinstance(
      depth, (list, tuple)) or not depth:
    raise TypeError(
        'layerlr_optax: depth must be a non-empty list of regular '
        'expressions on layer names, ordered from the bottom of the network '
        "to the top (e.g. ['embed', r'layer_(\\d+)', 'head']), or a "
        f'callable from a layer name to its depth; got {depth!r}.')
  compiled = []
  for pattern in depth:
    if not isinstance(pattern, (str, re.Pattern)):
      raise TypeError('layerlr_optax: each depth pattern must be a str or a '
                      f're.Pattern, got {pattern!r}.')
    try:
      compiled.append(re.compile(pattern))
    except re.error as e:
      raise ValueError(f'layerlr_optax: depth pattern {pattern!r} is not a '
                       f'valid regular expression: {e}.') from e
  return tuple(compiled)


def _depths_from_patterns(part: layers_lib.Partition,
                          patterns: Sequence[re.Pattern]
                          ) -> list[list[int]]:
  """Each group's depth per slice (one entry for an unstacked group).

  A group belongs to the first pattern that finds its name. Within a
  pattern, groups whose match captures a number (``layer_(\\d+)``) are
  ranked by it, and the slices of a stacked group by their index; groups
  without a number or stack share the pattern's first level. Patterns take
  consecutive levels, the first pattern's from depth 0.
  """
  owner: list[int] = []
  unmatched = []
  numbers: list[Optional[int]] = []
  for g, name in enumerate(part.layer_names):
    found, match = next(((j, m) for j, m in enumerate(
        p.search(name) for p in patterns) if m is not None), (None, None))
    if found is None or match is None:
      unmatched.append(name)
      owner.append(-1)
      numbers.append(None)
      continue
    owner.append(found)
    number = None
    if patterns[found].groups:
      text = match.group(1)
      if text is None or not text.isdigit():
        raise ValueError(
            f'layerlr_optax: depth pattern {patterns[found].pattern!r} has a '
            f'group, which must capture the layer\'s number, but for layer '
            f'{name!r} it captured {text!r}. Write alternatives as a '
            "non-capturing group, (?:embed|position).")
      number = int(text)
      if part.layer_stack_size[g] is not None:
        raise ValueError(
            f'layerlr_optax: layer {name!r} is stacked and its depth pattern '
            f'{patterns[found].pattern!r} captures a number too, so its '
            'depth is ambiguous. Number either the modules or the slices, or '
            'pass depth as a callable from layer names (slices are named '
            "'name[i]') to depths.")
    numbers.append(number)
  if unmatched:
    raise ValueError(
        f'layerlr_optax: no depth pattern matches the layers {unmatched}. '
        'Every layer needs a depth: add a pattern for them (a final '
        "'.*' puts all the rest at the top), or leave them out with "
        'exclude=.')
  depths: list[list[int]] = [[] for _ in part.layer_names]
  base = 0
  for j in range(len(patterns)):
    members = [g for g in range(part.num_layers) if owner[g] == j]
    present = {n for n in (numbers[g] for g in members) if n is not None}
    ranks = {n: r for r, n in enumerate(sorted(present))}
    top = 0
    for g in members:
      number = numbers[g]
      first = 0 if number is None else ranks[number]
      size = part.layer_stack_size[g]
      offsets = [first] if size is None else [first + i for i in range(size)]
      depths[g] = [base + o for o in offsets]
      top = max(top, offsets[-1])
    base += top + 1
  return depths


def _depths_from_callable(part: layers_lib.Partition,
                          depth: Callable[[str], int]) -> list[list[int]]:
  depths = []
  for g in range(part.num_layers):
    row = []
    for name in part.slice_names(g):
      value = depth(name)
      if isinstance(value, (bool, np.bool_)) or not isinstance(
          value, (int, np.integer)) or value < 0:
        raise ValueError(
            f'layerlr_optax: depth({name!r}) returned {value!r}; it must '
            'return a non-negative int (0 for the bottom layer).')
      row.append(int(value))
    depths.append(row)
  return depths


def scale_by_layer_decay(
    decay: jax.typing.ArrayLike,
    depth: DepthSpec,
    *,
    layers: layers_lib.LayersSpec = 'module',
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Layer-wise learning-rate decay (LLRD): lower layers take smaller steps.

  Each layer :math:`l` at depth :math:`d_l` (0 at the bottom) has its
  updates multiplied by

  .. math::
    \text{decay}^{\,d_{\max} - d_l},

  so the top layer keeps its step and each layer below takes ``decay``
  times the step of the one above, as in BERT/ELECTRA/BEiT fine-tuning.
  Put it after the optimizer, ``optax.chain(optax.adamw(lr),
  scale_by_layer_decay(0.65, depth))``: that equals the hand-written
  `optax.multi_transform` with one ``adamw(lr * decay ** k)`` per depth.

  Depth comes from the partition: the slices of a stacked group (``nn.scan``,
  ``nnx.scan``) are consecutive depths by slice index, so a scanned model
  gets the same multipliers as its unrolled twin (``layer_(\d+)``).

  Args:
    decay: the factor between consecutive depths, > 0 (usually 0.6-0.95).
      May be injected by `optax.inject_hyperparams`.
    depth: a list of regular expressions on layer names (as
      `layer_partition` prints them), ordered from the bottom of the network
      to the top, e.g. ``['embed', r'encoder/layer_(\d+)', 'pooler|head']``.
      A layer belongs to the first pattern that finds its name; the patterns
      take consecutive depths. Within a pattern, layers whose match captures
      a number are ranked by it (``layer_2`` below ``layer_10``), the slices
      of a stacked layer by their index, and layers with neither share one
      depth (attention and MLP of one block). Every layer must match a
      pattern; a pattern no layer matches takes no depth. Depths count the
      layers this transform sees: inside `optax.masked` or
      `optax.multi_transform`, the unmasked ones. Or a callable from each
      layer's name (a slice is ``name[i]``) to its depth (an int >= 0).
    layers: what a layer is; see `scale_by_layer_gradient`.
    record_factors: keep the multipliers in the state (a
      `LayerFactorsState`); read them with `recorded_factors`.
    exclude: leaves that keep their update unchanged (multiplier 1, as the
      top layer); see `scale_by_layer_gradient`.
    stacked: leaves holding several stacked layers, one depth per slice; see
      `scale_by_layer_gradient`.
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    A `optax.GradientTransformationExtraArgs` with empty state (or a
    `LayerFactorsState` with ``record_factors=True``). It reads no norms,
    so it needs no ``axis_name`` and costs one multiplication per leaf.

  References:
    Clark, Luong, Le and Manning, `ELECTRA: Pre-training Text Encoders as
    Discriminators Rather Than Generators
    <https://arxiv.org/abs/2003.10555>`_, 2020 (layer-wise learning-rate
    decay in fine-tuning).

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'embed': {'w': jnp.ones(2)}, 'layer_0': {'w': jnp.ones(2)},
    ...           'layer_1': {'w': jnp.ones(2)}, 'head': {'w': jnp.ones(2)}}
    >>> tx = layerlr_optax.scale_by_layer_decay(
    ...     0.5, depth=['embed', r'layer_(\d+)', 'head'], record_factors=True)
    >>> _, state = tx.update(params, tx.init(params))
    >>> {k: float(v) for k, v in layerlr_optax.recorded_factors(state).items()}
    {'embed': 0.125, 'head': 1.0, 'layer_0': 0.25, 'layer_1': 0.5}
  """
  if not validation.is_traced(decay):
    validation.check_scalar('decay', decay)
    if float(np.asarray(decay)) <= 0:
      raise ValueError(f'layerlr_optax: decay must be > 0, got {decay!r}.')
  depth_rule: Any = _validate_depth(depth)
  validation.check_flag('record_factors', record_factors)
  options = reduction.PartitionOptions(
      layers=layers, exclude=exclude, stacked=stacked,
      stacked_axis_name=stacked_axis_name)

  def multipliers(view: reduction.LayerView) -> list[jax.Array]:
    part = view.partition
    if callable(depth_rule):
      depths = _depths_from_callable(part, depth_rule)
    else:
      depths = _depths_from_patterns(part, depth_rule)
    # No layers (an empty tree, every leaf excluded): nothing to scale.
    top = max((d for row in depths for d in row), default=0)
    base = jnp.asarray(decay, view.dtype)
    out = []
    for g, row in enumerate(depths):
      exponent = np.asarray([top - d for d in row], np.float64)
      exponent = exponent[0] if part.layer_stack_size[g] is None else exponent
      out.append(base ** jnp.asarray(exponent, view.dtype))
    return out

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    view = reduction.LayerView(updates, options)
    values = multipliers(view)
    if record_factors:
      state = transform.LayerFactorsState(view.per_layer(values))
    return view.scale(updates, values), state

  return optax.GradientTransformationExtraArgs(
      _recorded_init(options, record_factors), update_fn)


# ---------------------------------------------------------------------------
# One second moment per layer (Adalayer).


class ScaleByLayerAdamState(NamedTuple):
  """State of `scale_by_layer_adam`.

  Attributes:
    count: the number of updates so far (int32).
    mu: the first moment, one per parameter (as `optax.scale_by_adam`).
    nu: the second moment, one scalar per layer (a vector, one entry per
      slice, for a stacked group), keyed by layer name.
    nu_excluded: the per-parameter second moment of excluded leaves (which
      are updated as by Adam); `optax.MaskedNode` elsewhere.
  """
  count: jax.Array  # type: ignore[assignment]  # a field, as in optax's states
  mu: optax.Updates
  nu: dict[str, jax.Array]
  nu_excluded: optax.Updates


def scale_by_layer_adam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Optional[Any] = None,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adam with one second moment per layer (Adalayer).

  The first moment is Adam's, one per parameter; the second moment is one
  scalar per layer :math:`l` (per slice of a stacked group), the moving
  average of the mean square of the layer's gradient over its
  :math:`n_l` entries:

  .. math::
    m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad
    v_l \leftarrow \beta_2 v_l + (1-\beta_2)\,\frac{\|g_l\|_2^2}{n_l},
    \qquad
    u_l = \frac{\hat m_l}{\sqrt{\hat v_l + \epsilon_{root}} + \epsilon}

  with Adam's bias corrections :math:`\hat m = m / (1-\beta_1^k)`,
  :math:`\hat v = v / (1-\beta_2^k)`. The state holds one scalar per layer
  in place of Adam's second moment per parameter, so it is about half of
  `optax.scale_by_adam`'s. When every layer is one number
  (``layers='leaf'`` on scalars) it is `optax.scale_by_adam`.

  Excluded leaves are updated as by Adam, with a second moment per entry:
  Zhao et al. found Adam's per-parameter adaptivity matters most for the
  last layer and the normalisation scales, so ``exclude=`` gives them that.

  Args:
    b1: decay of the first moment.
    b2: decay of the per-layer second moment.
    eps: added to the root of the second moment.
    eps_root: added inside the root.
    mu_dtype: dtype of the first moment (None: the parameters').
    layers: what a layer (a block sharing one second moment) is; see
      `scale_by_layer_gradient`.
    axis_name: inside ``shard_map``/``pmap``, the mapped axis to sum the
      squares and counts over; see `scale_by_layer_gradient`.
    record_factors: keep each layer's step multiplier
      :math:`1/(\sqrt{\hat v_l + \epsilon_{root}} + \epsilon)` of the latest
      update in the state; read them with `recorded_factors`.
    exclude: leaves updated by plain Adam; see `scale_by_layer_gradient`.
    stacked: leaves holding several stacked layers, one second moment per
      slice; see `scale_by_layer_gradient`.
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    A `optax.GradientTransformationExtraArgs` whose state is a
    `ScaleByLayerAdamState` (in a tuple with a `LayerFactorsState` when
    ``record_factors=True``).

  References:
    Zhao, Morwani, Brandfonbrener, Vyas and Kakade, `Deconstructing What
    Makes a Good Optimizer for Language Models
    <https://arxiv.org/abs/2407.07972>`_, 2024 (Adalayer); Zhang et al.,
    `Adam-mini: Use Fewer Learning Rates To Gain More
    <https://arxiv.org/abs/2406.16793>`_, 2024 (the same rule on finer
    blocks).

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> tx = layerlr_optax.scale_by_layer_adam()
    >>> state = tx.init(params)
    >>> {k: v.shape for k, v in state.nu.items()}  # one scalar per layer
    {'dense': ()}
    >>> grads = {'dense': {'kernel': jnp.full((2, 2), 2.0),
    ...                    'bias': jnp.full(2, 0.5)}}
    >>> updates, state = tx.update(grads, state)
    >>> print(f"{float(updates['dense']['bias'][0]):.4f}")  # 0.5 / sqrt(2.75)
    0.3015
  """
  validation.check_adam(b1, b2, eps, eps_root)
  validation.check_flag('record_factors', record_factors)
  options = reduction.PartitionOptions(
      layers=layers, axis_name=axis_name, exclude=exclude, stacked=stacked,
      stacked_axis_name=stacked_axis_name)
  if mu_dtype is not None:
    mu_dtype = jnp.dtype(mu_dtype)

  def init_fn(params):
    view = reduction.LayerView(params, options, what='parameter',
                               at_init=True)
    mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype), params)
    nu = {name: jnp.zeros([] if size is None else [size], view.dtype)
          for name, size in zip(view.partition.layer_names,
                                view.partition.layer_stack_size)}
    state = ScaleByLayerAdamState(
        count=jnp.zeros([], jnp.int32), mu=mu, nu=nu,
        nu_excluded=view.map(lambda p: optax.MaskedNode(), None, params,
                             what='parameters', excluded=jnp.zeros_like))
    if record_factors:
      return state, transform._initial_factors(params, options)  # pylint: disable=protected-access
    return state

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    if record_factors:
      state = state[0]
    view = reduction.LayerView(updates, options)
    names = view.partition.layer_names
    count = optax.safe_int32_increment(state.count)
    mu = jax.tree.map(lambda g, t: (1 - b1) * g + b1 * t, updates, state.mu)
    mean_sq = [sq / n for sq, n in zip(view.sq_norms(), view.sizes())]
    nu = {name: ((1 - b2) * ms + b2 * state.nu[name]).astype(
        state.nu[name].dtype) for name, ms in zip(names, mean_sq)}
    mu_hat = optax.tree_utils.tree_bias_correction(mu, b1, count)
    # optax's own bias correction (jitted there: computing 1 - b2**k another
    # way rounds differently in float32, ~1e-5 relative at k = 3).
    nu_hat = optax.tree_utils.tree_bias_correction(nu, b2, count)
    denominators = [jnp.sqrt(nu_hat[name] + eps_root) + eps for name in names]

    def adam_nu(g, nu_leaf):
      # An excluded leaf: Adam's own second moment, per entry.
      return ((1 - b2) * jnp.square(g) + b2 * nu_leaf).astype(nu_leaf.dtype)

    nu_excluded = view.map(lambda g, nu_leaf: optax.MaskedNode(), None,
                           updates, state.nu_excluded, excluded=adam_nu)

    def adam_step(m_hat, nu_leaf):
      nu_leaf_hat = optax.tree_utils.tree_bias_correction(nu_leaf, b2, count)
      return m_hat / (jnp.sqrt(nu_leaf_hat + eps_root) + eps)

    new_updates = view.map(lambda m_hat, _, d: (m_hat / d).astype(m_hat.dtype),
                           denominators,
                           mu_hat, nu_excluded, excluded=adam_step)
    if mu_dtype is not None:
      mu = jax.tree.map(lambda t: t.astype(mu_dtype), mu)
    new_state = ScaleByLayerAdamState(count=count, mu=mu, nu=nu,
                                      nu_excluded=nu_excluded)
    if record_factors:
      record = transform.LayerFactorsState(
          view.per_layer([1 / d for d in denominators]))
      return new_updates, (new_state, record)
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
