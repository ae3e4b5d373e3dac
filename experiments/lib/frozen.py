"""Fixed per-layer factors of the ``+frozen`` control (``config.frozen_factors``).

The file is JSON, written by ``python -m experiments.report frozen SWEEP_DIR``::

  {"factors": {BASE: {LAYER: factor, ...}, ...},   # what +frozen applies
   "source": ..., "rule": ..., "runs": {BASE: [run names]}}  # provenance

Only ``factors`` is read here; the rest says where they came from.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import optax

import layerlr_optax


# A relative config.frozen_factors is read from the repository root (where
# the configs name the committed files), so a sweep run from a worktree or
# another directory reads the same file.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def load(path: str) -> dict[str, dict[str, float]]:
  """``{base: {layer: factor}}`` from a frozen-factors file, checked."""
  if not path:
    raise ValueError(
        'a +frozen method needs config.frozen_factors, the path of a JSON '
        'file of fixed per-layer factors; write one with `python -m '
        'experiments.report frozen SWEEP_DIR` (the +layer runs at their best '
        'rate).')
  path = os.path.join(_ROOT, path)  # unchanged if absolute
  if not os.path.isfile(path):
    raise ValueError(f'config.frozen_factors={path!r} is not a file; write '
                     'it with `python -m experiments.report frozen '
                     'SWEEP_DIR`.')
  with open(path) as f:
    payload = json.load(f)
  factors = payload.get('factors') if isinstance(payload, dict) else None
  if not isinstance(factors, dict) or not factors:
    raise ValueError(f'{path!r} has no "factors" object ({{base: {{layer: '
                     'factor}}}}).')
  checked = {}
  for base, per_layer in factors.items():
    if not isinstance(per_layer, dict) or not per_layer:
      raise ValueError(f'{path!r}: factors[{base!r}] must be a non-empty '
                       '{layer: factor} object.')
    for layer, value in per_layer.items():
      if not (isinstance(value, (int, float)) and math.isfinite(value)
              and value >= 1.0):
        raise ValueError(f'{path!r}: factors[{base!r}][{layer!r}]={value!r}; '
                         'an eq. 9 factor is a finite number >= 1.')
    checked[base] = {k: float(v) for k, v in per_layer.items()}
  return checked


def factors_for(path: str, base: str) -> dict[str, float]:
  """The fixed factors of `base` (e.g. 'sgd') in the file at `path`."""
  factors = load(path)
  if base not in factors:
    raise ValueError(f'{path!r} has no factors for {base!r} (it has '
                     f'{", ".join(sorted(factors))}); a {base}+frozen method '
                     f'needs the {base}+layer runs measured.')
  return factors[base]


def scale_by_fixed_layer_factors(
    factors: dict[str, float], layers: Any) -> optax.GradientTransformation:
  """Multiplies every leaf of layer ``l`` by the constant ``factors[l]``.

  The layers are the package's (`layerlr_optax.layer_partition` with
  `layers`), so the factor of a layer lands where ``+layer`` put its eq. 9
  factor. Every layer of the parameters must have a factor and every factor
  a layer: a factor file of another model is refused, not half-applied.
  """

  def multipliers(params):
    partition = layerlr_optax.layer_partition(params, layers=layers)
    missing = sorted(set(partition) - set(factors))
    unknown = sorted(set(factors) - set(partition))
    if missing or unknown:
      raise ValueError(
          f'the frozen factors do not fit these parameters: layers without a '
          f'factor {missing}, factors without a layer {unknown}; write the '
          'file from runs of this model and config.layers.')
    of_leaf = {leaf: factors[layer]
               for layer, leaves in partition.items() for leaf in leaves}
    leaf_names = list(layerlr_optax.layer_partition(params, layers='leaf'))
    return jax.tree.unflatten(jax.tree.structure(params),
                              [of_leaf[name] for name in leaf_names])

  def init_fn(params):
    multipliers(params)  # refuses a file of another model before training
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    scale = multipliers(updates)
    return jax.tree.map(lambda u, f: u * f, updates, scale), state

  return optax.GradientTransformation(init_fn, update_fn)
