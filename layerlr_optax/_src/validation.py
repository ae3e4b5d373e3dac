"""Checks of user-given hyperparameters, shared by the transforms and aliases.

A hyperparameter may come as a Python number, a NumPy scalar, a 0-d array
(`optax.inject_hyperparams` passes arrays), a tracer (an injected value under
``jit``), or, for learning rates, a schedule. Concrete values are validated
the same way whatever their type; traced values and schedules are used as
they are, since their values are unknown until run time.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import jax
import numpy as np


def is_traced(value: Any) -> bool:
  return isinstance(value, jax.core.Tracer)


def _real_scalar(value: Any) -> Optional[float]:
  """`value` as a float if it is a concrete real scalar, else None."""
  if isinstance(value, (bool, np.bool_)):
    return None
  if isinstance(value, numbers.Real):
    return float(value)
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    dtype = np.dtype(value.dtype)
    if value.shape == () and (np.issubdtype(dtype, np.floating)
                              or np.issubdtype(dtype, np.integer)):
      return float(value)
  return None


def check_scalar(name: str, value: Any, *, minimum: float = 0.0,
                 below: Optional[float] = None,
                 allow_none: bool = False,
                 allow_schedule: bool = False) -> None:
  """Rejects a concrete hyperparameter that is not a finite real scalar
  >= `minimum` (and < `below` where given): bools, strings, complex
  numbers, arrays of more than one value, NaN, negative values, ..."""
  if value is None and allow_none:
    return
  if is_traced(value) or (allow_schedule and callable(value)):
    return
  number = _real_scalar(value)
  kinds = ['a number (float, NumPy scalar or 0-d array)']
  if allow_schedule:
    kinds.append('a schedule')
  if allow_none:
    kinds.append('None')
  if number is None:
    raise TypeError(f'layerlr_optax: {name} must be {" or ".join(kinds)}, '
                    f'got {value!r} of type {type(value).__name__}.')
  if not math.isfinite(number) or number < minimum:
    raise ValueError(f'layerlr_optax: {name} must be a finite number >= '
                     f'{minimum:g}, got {value!r}.')
  if below is not None and number >= below:
    raise ValueError(f'layerlr_optax: {name} must be below {below:g} (a '
                     f'decay rate in [{minimum:g}, {below:g})), got '
                     f'{value!r}.')


def check_adam(b1: Any, b2: Any, eps: Any, eps_root: Any) -> None:
  """Adam's hyperparameters: decay rates in [0, 1) (a rate of 1 divides by
  a zero bias correction), non-negative epsilons."""
  check_scalar('b1', b1, below=1.0)
  check_scalar('b2', b2, below=1.0)
  check_scalar('eps', eps)
  check_scalar('eps_root', eps_root)


def check_flag(name: str, value: Any) -> None:
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f'layerlr_optax: {name} must be True or False, got '
                    f'{value!r} of type {type(value).__name__}.')
