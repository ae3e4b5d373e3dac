"""Paper-faithful optimizers with layer-specific learning rates."""

from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp
import optax

from layerlr_optax._src import layers as layers_lib
from layerlr_optax._src import reduction
from layerlr_optax._src import rules
from layerlr_optax._src import transform
from layerlr_optax._src import validation


def sgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: Optional[float] = None,
    nesterov: bool = False,
    accumulator_dtype: Optional[Any] = None,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: transform.MaxFactor = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""`optax.sgd` with the paper's layer-specific learning rate.

  The layer factor :math:`f_l = 1 + \log(1 + 1/\|g_l\|_2)` of the raw
  gradient multiplies the gradient *before* the momentum trace, so a layer's
  rate enters the history as in Caffe's solvers. With momentum :math:`\mu`
  and learning rate :math:`t`:

  .. math::
    v \leftarrow \mu v + f_l g_l, \qquad
    u_l = -t\, v \;\;\text{(nesterov=False)}, \qquad
    u_l = -t\,(f_l g_l + \mu v) \;\;\text{(nesterov=True)}.

  With a constant ``t`` this equals Caffe's SGDSolver (``v <- mu v + t f_l g;
  x <- x - v``) and NesterovSolver (``x <- x - ((1 + mu) v - mu v_prev)``) with
  local rate ``t * f_l``. As in `optax.sgd` the learning rate multiplies the
  trace's output, so a *changing* schedule acts immediately rather than
  through the history; the experiments' Caffe solver reproduces Caffe's order
  for schedules too. The state is exactly `optax.sgd`'s.

  Args:
    learning_rate: a float or an `optax.Schedule`.
    momentum: decay of the momentum trace, or None for plain SGD.
    nesterov: Nesterov's accelerated gradient.
    accumulator_dtype: dtype of the momentum trace (see `optax.sgd`).
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_gradient`.
    record_factors: keep the applied factors in the state; see
      `recorded_factors`.
    exclude: leaves that keep the plain optimizer's update (factor 1), e.g.
      biases; see `scale_by_layer_gradient`.
    max_factor: a cap on the factor (None: the paper's, uncapped); see
      `scale_by_layer_gradient`.
    stacked: leaves holding several stacked layers (``nn.scan``), each slice
      with its own factor; see `scale_by_layer_gradient`.
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    The optimizer, a `optax.GradientTransformationExtraArgs`.

  References:
    Singh, De, Zhang, Goldstein and Taylor, `Layer-Specific Adaptive Learning
    Rates for Deep Networks <https://arxiv.org/abs/1510.04609>`_, 2015.

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import layerlr_optax
    >>> loss = lambda p: jnp.sum((p['l1']['w'] * p['l2']['w'] - 1.0) ** 2)
    >>> params = {'l1': {'w': jnp.full(3, 0.1)}, 'l2': {'w': jnp.full(3, 2.0)}}
    >>> opt = layerlr_optax.sgd(0.01, momentum=0.9, nesterov=True)
    >>> state = opt.init(params)
    >>> for _ in range(50):
    ...   updates, state = opt.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(f"{float(loss(params)):.4f}")
    0.0000
  """
  validation.check_scalar('learning_rate', learning_rate,
                          allow_schedule=True)
  validation.check_scalar('momentum', momentum, allow_none=True)
  validation.check_flag('nesterov', nesterov)
  _check_accumulator_dtype(accumulator_dtype)
  options = transform.Options(
      layers=layers, axis_name=axis_name, exclude=exclude, stacked=stacked,
      stacked_axis_name=stacked_axis_name, max_factor=max_factor)
  return transform.prescaled(
      optax.sgd(learning_rate, momentum, nesterov, accumulator_dtype),
      options, record_factors)


def _check_accumulator_dtype(dtype: Any) -> None:
  if dtype is None:
    return
  try:
    floating = jnp.issubdtype(jnp.dtype(dtype), jnp.floating)
  except TypeError:
    floating = False
  if not floating:
    raise TypeError('layerlr_optax: accumulator_dtype must be None (the '
                    'parameters\' dtype) or a floating dtype such as '
                    f'jnp.float32 or jnp.bfloat16, got {dtype!r}.')


def adagrad(
    learning_rate: optax.ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: transform.MaxFactor = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""`optax.adagrad` with the paper's layer-specific learning rate.

  Paper eq. 8 with :math:`t` replaced by :math:`t_l`: the accumulator sums
  the raw squared gradients (optax's conventions; :math:`s` starts at
  `initial_accumulator_value`), and the factor of the raw gradient's layer
  norm multiplies the final step:

  .. math::
    s \leftarrow s + g^2, \qquad
    u_l = -t\, f_l\, \frac{g_l}{\sqrt{s_l + \epsilon}} .

  Equal to ``layerwise(optax.adagrad(...))``; the state is `optax.adagrad`'s.

  Args:
    learning_rate: a float or an `optax.Schedule`.
    initial_accumulator_value: starting value of the accumulator, >= 0.
    eps: added inside the square root, >= 0.
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_gradient`.
    record_factors: keep the applied factors in the state; see
      `recorded_factors`.
    exclude: leaves that keep the plain optimizer's update (factor 1), e.g.
      biases; see `scale_by_layer_gradient`.
    max_factor: a cap on the factor (None: the paper's, uncapped); see
      `scale_by_layer_gradient`.
    stacked: leaves holding several stacked layers (``nn.scan``), each slice
      with its own factor; see `scale_by_layer_gradient`.
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    The optimizer, a `optax.GradientTransformationExtraArgs`.

  References:
    Singh, De, Zhang, Goldstein and Taylor, `Layer-Specific Adaptive Learning
    Rates for Deep Networks <https://arxiv.org/abs/1510.04609>`_, 2015.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'w': jnp.ones(2)}
    >>> opt = layerlr_optax.adagrad(0.1)
    >>> state = opt.init(params)
    >>> updates, state = opt.update({'w': jnp.full(2, 0.5)}, state, params)
    >>> print(f"{float(updates['w'][0]):.4f}")
    -0.1590
  """
  validation.check_scalar('learning_rate', learning_rate,
                          allow_schedule=True)
  validation.check_scalar('initial_accumulator_value',
                          initial_accumulator_value)
  validation.check_scalar('eps', eps)
  return transform.layerwise(
      optax.adagrad(learning_rate, initial_accumulator_value, eps),
      layers=layers, axis_name=axis_name, record_factors=record_factors,
      exclude=exclude, max_factor=max_factor, stacked=stacked,
      stacked_axis_name=stacked_axis_name)


def lars(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: Any = 0.001,
    eps: Any = 0.0,
    trust_ratio_mask: Any = True,
    momentum: Any = 0.9,
    nesterov: bool = False,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""`optax.lars` with one trust ratio per layer (and per stacked slice).

  The same chain as `optax.lars` (weight decay, trust ratio, learning rate,
  momentum trace) with `scale_by_layer_trust_ratio` in place of
  `optax.scale_by_trust_ratio`:

  .. math::
    u_l = -t\, \mathrm{trace}\!\left(c\,
      \frac{\|w_l\|}{\|g_l + \lambda w_l\| + \epsilon}\,(g_l + \lambda w_l)
    \right)

  With ``layers='leaf'`` and nothing stacked it is `optax.lars` (to float32
  rounding); by default a module's weight and bias share one ratio and a
  scan-stacked model gets one ratio per layer, as its unrolled twin would.

  Args:
    learning_rate: a float or an `optax.Schedule`.
    weight_decay: strength of the weight decay, added to the gradient.
    weight_decay_mask: as in `optax.lars`: True (all leaves), a pytree of
      bools or a callable returning one; True means decayed.
    trust_coefficient: the multiplier of the trust ratio.
    eps: added to the update norm in the ratio's denominator.
    trust_ratio_mask: as in `optax.lars` (True means the ratio applies);
      applied with `optax.masked` as optax does. `exclude` does the same
      with the package's rules, which also work on stacked models.
    momentum: decay of the momentum trace.
    nesterov: Nesterov's momentum.
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_trust_ratio`.
    record_factors: keep the ratios in the state; see `recorded_factors`.
    exclude: leaves without a ratio (biases, normalisation scales, ...);
      see `scale_by_layer_trust_ratio`.
    stacked: leaves holding several stacked layers; see
      `scale_by_layer_gradient`.
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    The optimizer, a `optax.GradientTransformationExtraArgs`.

  References:
    You, Gitman and Ginsburg, `Large Batch Training of Convolutional
    Networks <https://arxiv.org/abs/1708.03888>`_, 2017.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'dense': {'kernel': jnp.full((2, 2), 3.0), 'bias': jnp.zeros(2)}}
    >>> opt = layerlr_optax.lars(0.1, trust_coefficient=1.0, momentum=0.0)
    >>> grads = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> updates, _ = opt.update(grads, opt.init(params), params)
    >>> print(f"{float(updates['dense']['bias'][0]):.4f}")  # -0.1 * 6 / sqrt(6)
    -0.2449
  """
  validation.check_scalar('learning_rate', learning_rate,
                          allow_schedule=True)
  validation.check_scalar('weight_decay', weight_decay, allow_schedule=True)
  validation.check_scalar('momentum', momentum)
  validation.check_flag('nesterov', nesterov)
  trust_ratio = rules.scale_by_layer_trust_ratio(
      trust_coefficient=trust_coefficient, eps=eps, layers=layers,
      axis_name=axis_name, record_factors=record_factors, exclude=exclude,
      stacked=stacked, stacked_axis_name=stacked_axis_name)
  if trust_ratio_mask is not True:
    trust_ratio = optax.masked(trust_ratio, trust_ratio_mask)
  return optax.chain(
      optax.add_decayed_weights(weight_decay, mask=weight_decay_mask),
      trust_ratio,
      optax.scale_by_learning_rate(learning_rate),
      optax.trace(decay=momentum, nesterov=nesterov),
  )


def lamb(
    learning_rate: optax.ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-6,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
    mask: Any = None,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""`optax.lamb` with one trust ratio per layer (and per stacked slice).

  The same chain as `optax.lamb` (Adam, decoupled weight decay, trust
  ratio, learning rate) with `scale_by_layer_trust_ratio` in place of
  `optax.scale_by_trust_ratio`. optax's LAMB has no trust-ratio mask, so
  biases and normalisation scales get a ratio of their own there; here
  ``exclude=`` leaves them out, as the LAMB paper's implementation does.

  .. math::
    r = \frac{\hat m}{\sqrt{\hat v + \epsilon_{root}} + \epsilon} + \lambda w,
    \qquad u_l = -t\, \frac{\|w_l\|}{\|r_l\|}\, r_l

  With ``layers='leaf'`` and nothing stacked or excluded it is
  `optax.lamb` (to float32 rounding).

  Args:
    learning_rate: a float or an `optax.Schedule`.
    b1: decay of Adam's first moment.
    b2: decay of Adam's second moment.
    eps: added to the root of the second moment.
    eps_root: added inside the root.
    weight_decay: strength of the decoupled weight decay.
    mask: as in `optax.lamb`, which leaves are decayed (True: decayed).
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_trust_ratio`.
    record_factors: keep the ratios in the state; see `recorded_factors`.
    exclude: leaves without a ratio; see `scale_by_layer_trust_ratio`.
    stacked: leaves holding several stacked layers; see
      `scale_by_layer_gradient`.
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    The optimizer, a `optax.GradientTransformationExtraArgs`.

  References:
    You et al., `Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes <https://arxiv.org/abs/1904.00962>`_, 2020.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> opt = layerlr_optax.lamb(0.1)
    >>> grads = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> updates, _ = opt.update(grads, opt.init(params), params)
    >>> print(f"{float(updates['dense']['bias'][0]):.4f}")  # Adam's step 1, ratio 1
    -0.1000
  """
  validation.check_scalar('learning_rate', learning_rate,
                          allow_schedule=True)
  validation.check_scalar('weight_decay', weight_decay, allow_schedule=True)
  validation.check_adam(b1, b2, eps, eps_root)
  return optax.chain(
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
      optax.add_decayed_weights(weight_decay, mask=mask),
      rules.scale_by_layer_trust_ratio(
          layers=layers, axis_name=axis_name, record_factors=record_factors,
          exclude=exclude, stacked=stacked,
          stacked_axis_name=stacked_axis_name),
      optax.scale_by_learning_rate(learning_rate),
  )


def adalayer(
    learning_rate: optax.ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Optional[Any] = None,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: reduction.AxisNames = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    stacked: layers_lib.StackedSpec = None,
    stacked_axis_name: reduction.AxisNames = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adalayer: Adam with one second moment per layer (and stacked slice).

  ``optax.chain(scale_by_layer_adam(...), optax.scale_by_learning_rate(lr))``,
  the way `optax.adam` chains `optax.scale_by_adam`; see
  `scale_by_layer_adam` for the update and its state (about half of Adam's).

  Args:
    learning_rate: a float or an `optax.Schedule`.
    b1: decay of the first moment.
    b2: decay of the per-layer second moment.
    eps: added to the root of the second moment.
    eps_root: added inside the root.
    mu_dtype: dtype of the first moment (None: the parameters').
    layers: what a layer is; see `scale_by_layer_gradient`.
    axis_name: see `scale_by_layer_adam`.
    record_factors: keep each layer's step multiplier in the state; see
      `recorded_factors`.
    exclude: leaves updated by plain Adam (Zhao et al.'s Adalayer* keeps the
      last layer and normalisation scales adaptive per entry).
    stacked: leaves holding several stacked layers, one second moment per
      slice; see `scale_by_layer_gradient`.
    stacked_axis_name: the mapped axis that splits the stacked axis
      inside ``shard_map``, or ``()``; see `scale_by_layer_gradient`.

  Returns:
    The optimizer, a `optax.GradientTransformationExtraArgs`.

  References:
    Zhao, Morwani, Brandfonbrener, Vyas and Kakade, `Deconstructing What
    Makes a Good Optimizer for Language Models
    <https://arxiv.org/abs/2407.07972>`_, 2024.

  Example:
    >>> import jax.numpy as jnp
    >>> import layerlr_optax
    >>> params = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> opt = layerlr_optax.adalayer(0.1)
    >>> grads = {'dense': {'kernel': jnp.full((2, 2), 2.0),
    ...                    'bias': jnp.full(2, 0.5)}}
    >>> updates, _ = opt.update(grads, opt.init(params))
    >>> print(f"{float(updates['dense']['kernel'][0, 0]):.4f}")  # -0.1 * 2 / sqrt(2.75)
    -0.1206
  """
  validation.check_scalar('learning_rate', learning_rate,
                          allow_schedule=True)
  return optax.chain(
      rules.scale_by_layer_adam(
          b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
          layers=layers, axis_name=axis_name, record_factors=record_factors,
          exclude=exclude, stacked=stacked,
          stacked_axis_name=stacked_axis_name),
      optax.scale_by_learning_rate(learning_rate),
  )
