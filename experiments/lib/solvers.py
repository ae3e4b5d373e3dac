"""Caffe-faithful solvers as optax chains, with and without layer-specific rates.

Caffe's ``Solver::ApplyUpdate`` does, for every parameter blob and step k::

  g <- g + weight_decay * decay_mult * w            (Regularize, L2)
  local_rate = rate(k) * lr_mult
  SGD:      v <- momentum * v + local_rate * g;  w <- w - v
  Nesterov: v' <- momentum * v + local_rate * g;  w <- w - ((1+momentum) v' - momentum v)
  AdaGrad:  h <- h + g^2;  w <- w - local_rate * g / (sqrt(h) + delta)
  Adam:     m, v moments;  w <- w - local_rate * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)

so the learning rate (schedule and per-blob multiplier) enters *before* the
momentum history. Every method here is the chain::

  regularize -> direction -> [layer factor] -> local rate -> [trace] -> negate

where ``direction`` is the identity (SGD, NAG), AdaGrad's or Adam's
normalisation, or LARS/LAMB's trust ratio. The layer factor of the paper is
computed from the regularised gradient entering the direction (the gradient
Caffe's ComputeUpdateValue sees) and multiplies the direction's output through
`layerlr_optax.layerwise`; for SGD/NAG that is the raw gradient entering the
momentum history, for AdaGrad the final step, as the paper prescribes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import layerlr_optax
from experiments.lib import frozen
from experiments.lib import models
from experiments.lib.methods import GLOBAL_LAYER
from experiments.lib.methods import Method

LR_POLICIES = ('fixed', 'inv', 'step', 'multistep')


def caffe_lr(policy: str, base_lr: float, *, gamma: float = 0.0,
             power: float = 0.0, stepsize: int = 0,
             stepvalues: tuple[int, ...] = ()) -> optax.Schedule:
  """Caffe's ``SGDSolver::GetLearningRate`` as an optax schedule of the step.

  fixed: base_lr; inv: base_lr * (1 + gamma k)^-power; step: base_lr *
  gamma^floor(k / stepsize); multistep: base_lr * gamma^(#stepvalues <= k).
  """
  if base_lr < 0:
    raise ValueError(f'base_lr must be >= 0, got {base_lr}.')
  if policy == 'fixed':
    return lambda k: jnp.asarray(base_lr, jnp.float32)
  if policy == 'inv':
    return lambda k: base_lr * (1.0 + gamma * k) ** (-power)
  if policy == 'step':
    if stepsize <= 0:
      raise ValueError(f'lr_policy=step needs stepsize > 0, got {stepsize}.')
    return lambda k: base_lr * gamma ** (k // stepsize)
  if policy == 'multistep':
    if list(stepvalues) != sorted(stepvalues) or not stepvalues:
      raise ValueError('lr_policy=multistep needs increasing stepvalues, got '
                       f'{stepvalues}.')
    bounds = jnp.asarray(stepvalues)
    return lambda k: base_lr * gamma ** jnp.sum(k >= bounds)
  raise ValueError(f'unknown lr_policy {policy!r}; expected one of '
                   f'{LR_POLICIES}.')


class CaffeRateState(NamedTuple):
  count: jax.Array


def scale_by_caffe_rate(schedule: optax.Schedule,
                        lr_mult: Any) -> optax.GradientTransformation:
  """Multiplies each blob by ``rate(k) * lr_mult`` (Caffe's local_rate)."""

  def init_fn(params):
    del params
    return CaffeRateState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    rate = schedule(state.count)
    updates = jax.tree.map(lambda g, m: g * (rate * m).astype(g.dtype),
                           updates, lr_mult)
    return updates, CaffeRateState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def caffe_regularize(weight_decay: float,
                     decay_mult: Any) -> optax.GradientTransformation:
  """Caffe's L2 Regularize: g <- g + weight_decay * decay_mult * w."""

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(optax.NO_PARAMS_MSG)
    updates = jax.tree.map(
        lambda g, w, m: g + (weight_decay * m) * w, updates, params, decay_mult)
    return updates, state

  return optax.GradientTransformation(
      lambda params: optax.EmptyState(), update_fn)


class CaffeAdaGradState(NamedTuple):
  history: Any


def caffe_adagrad_direction(delta: float = 1e-8) -> optax.GradientTransformation:
  """Caffe's AdaGrad normalisation: h <- h + g^2; g / (sqrt(h) + delta)."""

  def init_fn(params):
    return CaffeAdaGradState(history=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    history = jax.tree.map(lambda h, g: h + g * g, state.history, updates)
    updates = jax.tree.map(lambda g, h: g / (jnp.sqrt(h) + delta), updates,
                           history)
    return updates, CaffeAdaGradState(history=history)

  return optax.GradientTransformation(init_fn, update_fn)


@dataclasses.dataclass(frozen=True)
class Solver:
  """A method's optimizer, the rate it follows, and what a layer is for it.

  The optimizer records the eq. 9 factors of the gradient its direction sees
  (`layerlr_optax.recorded_factors(opt_state)`): the factors it applied for
  a `+layer`/`+global` method, the ones it would apply otherwise.
  """
  method: Method
  optimizer: optax.GradientTransformation
  schedule: optax.Schedule  # Caffe's rate(k) before lr multipliers
  base_lr: float
  layers: Any  # the `layers` argument of the layer-rate transforms
  stacked: Any = None  # their `stacked` argument


def observe_layer_factors(layers,
                          stacked=None) -> optax.GradientTransformation:
  """Records the eq. 9 factors of the updates without changing them."""

  def init_fn(params):
    return layerlr_optax.LayerFactorsState(
        {name: jnp.ones([], jnp.float32)
         for name in layerlr_optax.layer_partition(params, layers=layers,
                                                   stacked=stacked)})

  def update_fn(updates, state, params=None):
    del params, state
    stats = layerlr_optax.layer_stats(updates, layers=layers,
                                      stacked=stacked)
    return updates, layerlr_optax.LayerFactorsState(
        {name: s['factor'] for name, s in stats.items()})

  return optax.GradientTransformation(init_fn, update_fn)


def with_linear_warmup(schedule: optax.Schedule,
                       warmup_steps: int) -> optax.Schedule:
  """`schedule` times min(1, (k + 1) / warmup_steps)."""
  def warmed(k):
    ramp = jnp.minimum(1.0, (jnp.asarray(k, jnp.float32) + 1.0) / warmup_steps)
    return schedule(k) * ramp
  return warmed


def _global_layers(tree):
  return jax.tree.map(lambda _: GLOBAL_LAYER, tree)


def method_base_lr(method: Method, config) -> float:
  """config.method_base_lr[method], else [base], else config.base_lr."""
  overrides = dict(config.method_base_lr)
  return float(overrides.get(method.name, overrides.get(method.base,
                                                        config.base_lr)))


def _leaf_paths(params) -> list[str]:
  """Every leaf's readable path (``Conv_0/kernel``), as the package names it
  in `layerlr_optax.layer_partition` (each leaf a layer of its own)."""
  return list(layerlr_optax.layer_partition(params, layers='leaf'))


def _multiplier_tree(params, defaults: dict[str, float],
                     overrides: dict[str, float]) -> Any:
  """Per-leaf multiplier: overrides['layer/leaf'] or defaults[leaf name]."""
  multipliers = [float(overrides[path]) if path in overrides
                 else float(defaults.get(path.rsplit('/', 1)[-1], 1.0))
                 for path in _leaf_paths(params)]
  return jax.tree.unflatten(jax.tree.structure(params), multipliers)


def check_multiplier_keys(params, overrides: dict[str, float], what: str):
  names = set(_leaf_paths(params))
  unknown = sorted(set(overrides) - names)
  if unknown:
    raise ValueError(f'config.{what} names {unknown}, which are not '
                     f'parameters of the model; parameters: {sorted(names)}.')


def make_solver(method: Method, config, params,
                base_lr: float | None = None) -> Solver:
  """Builds `method` with the solver settings of `config` for `params`.

  Args:
    method: the method.
    config: the experiment config (solver keys, `layers`, `warmup_fraction`).
    params: the parameters (or their shapes): multipliers are per leaf.
    base_lr: the base learning rate; None: `method_base_lr(method, config)`.

  Returns:
    The `Solver`.
  """
  if not isinstance(method, Method):
    raise TypeError(f'make_solver takes a Method, got {method!r}; use '
                    'Method.parse(name).')
  base = method.base
  base_lr = method_base_lr(method, config) if base_lr is None else base_lr
  schedule = caffe_lr(config.lr_policy, base_lr, gamma=config.lr_gamma,
                      power=config.lr_power, stepsize=config.lr_stepsize,
                      stepvalues=tuple(config.lr_stepvalues))
  if method.variant == 'warmup':
    schedule = with_linear_warmup(
        schedule, max(1, round(config.warmup_fraction * config.num_steps)))
  check_multiplier_keys(params, dict(config.decay_mult), 'decay_mult')
  check_multiplier_keys(params, dict(config.lr_mult), 'lr_mult')
  lr_mult = _multiplier_tree(params, {'bias': config.bias_lr_mult},
                             dict(config.lr_mult))
  decay_mult = _multiplier_tree(params, {}, dict(config.decay_mult))
  layers = _global_layers if method.variant == 'global' else config.layers
  # A stacked model (nn.scan): one layer per slice for every per-layer rule.
  stacked = (layerlr_optax.stacked_paths(config.stacked)
             if config.get('stacked') and method.variant != 'global'
             else None)
  partition = dict(layers=layers, stacked=stacked)

  momentum = None
  if base in ('sgd', 'nag', 'lars', 'layer_lars'):
    momentum = config.momentum
    direction = optax.identity()
    if base == 'lars':
      direction = optax.scale_by_trust_ratio(
          trust_coefficient=config.lars_trust_coefficient)
    elif base == 'layer_lars':
      direction = layerlr_optax.scale_by_layer_trust_ratio(
          trust_coefficient=config.lars_trust_coefficient, **partition)
  elif base == 'adagrad':
    direction = caffe_adagrad_direction(config.adagrad_delta)
  elif base == 'adam':
    direction = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)
  elif base in ('lamb', 'layer_lamb'):
    direction = optax.chain(
        optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-6),
        optax.scale_by_trust_ratio() if base == 'lamb' else
        layerlr_optax.scale_by_layer_trust_ratio(**partition))
  elif base == 'adalayer':
    direction = layerlr_optax.scale_by_layer_adam(
        b1=0.9, b2=0.999, eps=1e-8, **partition)
  else:  # pragma: no cover - methods.BASES and this switch are kept in step.
    raise AssertionError(method)
  if method.applies_factor:
    direction = layerlr_optax.layerwise(
        direction, record_factors=True,
        max_factor=(config.layer_max_factor if method.variant == 'layercap'
                    else None), **partition)
  elif method.variant == 'frozen':
    if stacked is not None:
      raise ValueError('the +frozen variant keeps one factor per layer name '
                       'and does not split stacked layers; run it with '
                       "config.stacked = ''.")
    # The eq. 9 factor observed (as for the plain methods), a fixed one
    # applied where +layer applies its own.
    direction = optax.chain(
        observe_layer_factors(layers), direction,
        frozen.scale_by_fixed_layer_factors(
            frozen.factors_for(config.frozen_factors, base), layers))
  elif method.variant == 'llrd':
    depth = tuple(config.llrd_depth) or models.LLRD_DEPTH.get(config.model)
    if not depth:
      raise ValueError(
          f'{method.name} needs the order of the layers of model '
          f'{config.model!r}: set config.llrd_depth to bottom-to-top patterns '
          "on layer names, e.g. ('conv1', 'conv2', 'ip1', 'ip2') (depth= of "
          'layerlr_optax.scale_by_layer_decay), or add the model to '
          'LLRD_DEPTH in experiments/lib/models.py.')
    direction = optax.chain(
        observe_layer_factors(**partition), direction,
        layerlr_optax.scale_by_layer_decay(
            config.llrd_decay, depth, **partition))
  else:
    direction = optax.chain(observe_layer_factors(**partition), direction)

  optimizer = optax.chain(
      caffe_regularize(config.weight_decay, decay_mult),
      direction,
      scale_by_caffe_rate(schedule, lr_mult),
      (optax.trace(decay=momentum, nesterov=(base == 'nag'))
       if momentum else optax.identity()),
      optax.scale(-1.0),
  )
  return Solver(method, optimizer, schedule, base_lr, layers, stacked)
