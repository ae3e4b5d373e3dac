"""Independent NumPy references of the paper's update rules (float64).

Written from the paper's equations and Caffe's solver source, not from the
package: layers are given explicitly as lists of leaf names.
"""

from __future__ import annotations

import numpy as np


def factor(norm: float) -> float:
  """Paper eq. 9: 1 + ln(1 + 1/||g||)."""
  return 1.0 + np.log(1.0 + 1.0 / norm)


def layer_factors(grads: dict[str, np.ndarray],
                  layers: list[list[str]]) -> dict[str, float]:
  """Per-leaf factor from the norm of the concatenation of its layer."""
  out = {}
  for layer in layers:
    flat = np.concatenate([np.ravel(grads[name]).astype(np.float64)
                           for name in layer])
    f = factor(np.sqrt(np.sum(flat**2)))
    for name in layer:
      out[name] = f
  return out


class CaffeSGD:
  """Caffe's SGDSolver / NesterovSolver with local rate lr * f_l.

  v <- mu v + lr f_l g; SGD: x <- x - v; Nesterov: x <- x - ((1+mu) v - mu v_prev).
  """

  def __init__(self, params, lr, momentum, nesterov, layers):
    self.lr, self.mu, self.nesterov, self.layers = lr, momentum, nesterov, layers
    self.v = {k: np.zeros_like(p, np.float64) for k, p in params.items()}

  def update(self, grads):
    f = layer_factors(grads, self.layers)
    step = {}
    for k, g in grads.items():
      v_prev = self.v[k]
      self.v[k] = self.mu * v_prev + self.lr * f[k] * g
      if self.nesterov:
        step[k] = -((1 + self.mu) * self.v[k] - self.mu * v_prev)
      else:
        step[k] = -self.v[k]
    return step


class OptaxConventionAdaGrad:
  """AdaGrad with optax's accumulator conventions, step times f_l.

  s <- s + g^2 (s0 = initial value); step = -lr f_l g / sqrt(s + eps)
  (0 where s == 0).
  """

  def __init__(self, params, lr, initial, eps, layers):
    self.lr, self.eps, self.layers = lr, eps, layers
    self.s = {k: np.full(np.shape(p), initial, np.float64)
              for k, p in params.items()}

  def update(self, grads):
    f = layer_factors(grads, self.layers)
    step = {}
    for k, g in grads.items():
      self.s[k] = self.s[k] + g.astype(np.float64)**2
      inv = np.where(self.s[k] > 0, 1.0 / np.sqrt(self.s[k] + self.eps), 0.0)
      step[k] = -self.lr * f[k] * g * inv
    return step


def caffe_rate(policy: str, base_lr: float, it: int, gamma: float = 0.0,
               power: float = 0.0, stepsize: int = 1,
               stepvalues: tuple[int, ...] = ()) -> float:
  """Caffe's SGDSolver::GetLearningRate for iteration `it`."""
  if policy == 'fixed':
    return base_lr
  if policy == 'inv':
    return base_lr * (1.0 + gamma * it)**(-power)
  if policy == 'step':
    return base_lr * gamma**(it // stepsize)
  if policy == 'multistep':
    return base_lr * gamma**sum(1 for v in stepvalues if it >= v)
  raise ValueError(policy)


def trust_ratio(param: np.ndarray, direction: np.ndarray,
                coefficient: float = 1.0) -> float:
  """LARS (You et al., 2017): ||w|| / ||d||, 1 where either norm is 0."""
  w, d = np.linalg.norm(param), np.linalg.norm(direction)
  return 1.0 if w == 0 or d == 0 else coefficient * w / d


class CaffeSolver:
  """Caffe's Solver::ApplyUpdate for SGD, Nesterov and AdaGrad, and the same
  order for the experiments' Adam, LARS and LAMB.

  Per blob: Regularize (g += wd * decay_mult * w); the direction of the
  solver type (g itself for SGD/Nesterov; AdaGrad's g / (sqrt(h) + delta);
  Adam's bias-corrected m / (sqrt(v) + eps) (Kingma and Ba, 2015); LARS's
  trust ratio times g; LAMB's trust ratio times Adam's direction (You et al.,
  2020)); times f_l (1 when `layers` is None; from the regularized
  gradient's layer norm, capped at `max_factor`); times rate(it) * lr_mult;
  then the momentum history for SGD, Nesterov and LARS.
  """

  def __init__(self, kind, params, rate_fn, momentum, weight_decay, lr_mult,
               decay_mult, layers=None, delta=1e-8, max_factor=None,
               trust_coefficient=1.0):
    self.kind, self.rate_fn, self.mu = kind, rate_fn, momentum
    self.wd, self.lr_mult, self.decay_mult = weight_decay, lr_mult, decay_mult
    self.layers, self.delta, self.it = layers, delta, 0
    self.max_factor, self.trust = max_factor, trust_coefficient
    self.history = {k: np.zeros_like(p, np.float64) for k, p in params.items()}
    self.m = {k: np.zeros_like(p, np.float64) for k, p in params.items()}
    self.v = {k: np.zeros_like(p, np.float64) for k, p in params.items()}

  def _adam(self, k, g, eps):
    b1, b2, t = 0.9, 0.999, self.it + 1
    self.m[k] = b1 * self.m[k] + (1 - b1) * g
    self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
    m_hat, v_hat = self.m[k] / (1 - b1**t), self.v[k] / (1 - b2**t)
    return m_hat / (np.sqrt(v_hat) + eps)

  def step(self, params, grads):
    diff = {k: grads[k] + self.wd * self.decay_mult[k] * params[k]
            for k in grads}
    f = (layer_factors(diff, self.layers) if self.layers
         else {k: 1.0 for k in diff})
    if self.max_factor is not None:
      f = {k: min(v, self.max_factor) for k, v in f.items()}
    rate = self.rate_fn(self.it)
    new = {}
    for k, g in diff.items():
      local = rate * self.lr_mult[k] * f[k]
      h = self.history[k]
      if self.kind == 'sgd':
        self.history[k] = self.mu * h + local * g
        new[k] = params[k] - self.history[k]
      elif self.kind == 'nesterov':
        self.history[k] = self.mu * h + local * g
        new[k] = params[k] - ((1 + self.mu) * self.history[k] - self.mu * h)
      elif self.kind == 'adagrad':
        self.history[k] = h + g * g
        new[k] = params[k] - local * g / (np.sqrt(self.history[k]) + self.delta)
      elif self.kind == 'adam':
        new[k] = params[k] - local * self._adam(k, g, eps=1e-8)
      elif self.kind == 'lars':
        d = trust_ratio(params[k], g, self.trust) * g
        self.history[k] = self.mu * h + local * d
        new[k] = params[k] - self.history[k]
      elif self.kind == 'lamb':
        d = self._adam(k, g, eps=1e-6)
        new[k] = params[k] - local * trust_ratio(params[k], d) * d
      else:
        raise ValueError(self.kind)
    self.it += 1
    return new


