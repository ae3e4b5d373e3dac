"""Paper-faithful optimizers with layer-specific learning rates."""

from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp
import optax

from layerlr_optax._src import layers as layers_lib
from layerlr_optax._src import transform
from layerlr_optax._src import validation


def sgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: Optional[float] = None,
    nesterov: bool = False,
    accumulator_dtype: Optional[Any] = None,
    *,
    layers: layers_lib.LayersSpec = 'module',
    axis_name: Optional[str] = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: transform.MaxFactor = None,
    stacked: layers_lib.StackedSpec = None,
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
  options = transform.Options(layers, axis_name, exclude, stacked,
                              max_factor)
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
    axis_name: Optional[str] = None,
    record_factors: bool = False,
    exclude: layers_lib.ExcludeSpec = None,
    max_factor: transform.MaxFactor = None,
    stacked: layers_lib.StackedSpec = None,
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
      exclude=exclude, max_factor=max_factor, stacked=stacked)
