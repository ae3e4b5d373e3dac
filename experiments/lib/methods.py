"""The methods an experiment compares: a base optimizer and a variant.

A method is written ``BASE`` or ``BASE+VARIANT`` (``sgd``, ``sgd+layer``,
``adagrad+global``, ...) and parsed once into a `Method`; solvers, reports
and sweeps use its fields instead of string operations.

Bases (Caffe-faithful, see experiments/lib/solvers.py): ``sgd``, ``nag``
(Nesterov), ``adagrad``, ``adam``, ``lars``, ``lamb`` (optax's trust ratio,
one per array), and the package's per-layer rules, each compared with its
per-array peer (`PEERS`): ``layer_lars`` and ``layer_lamb`` (one trust ratio
per layer and stacked slice), ``adalayer`` (Adam with one second moment per
layer).

Variants:
- none: the plain optimizer.
- ``layer``: the paper's eq. 9 factor per layer (a Flax module's kernel and
  bias together, or what ``config.layers`` says).
- ``global``: the same factor computed from the norm of the *whole* gradient
  (one "layer" holding every parameter): a control that separates an adaptive
  global rate from the per-layer allocation.
- ``layercap``: ``layer`` with the factor capped at
  ``config.layer_max_factor`` (2 by default; `layerlr_optax`'s
  ``max_factor``): the remedy for optimizers whose step does not shrink with
  the gradient, where the uncapped factor inflates the step near a minimum
  (README, "The factor near a minimum").
- ``warmup``: the plain optimizer with a linear learning-rate warm-up over
  the first ``config.warmup_fraction`` of training: a control for the
  factor's growth during training.
- ``frozen``: each layer's step multiplied by a *fixed* factor, that layer's
  eq. 9 factor averaged over the ``+layer`` runs it was measured on
  (``config.frozen_factors``, written by ``python -m experiments.report
  frozen``): the control that separates eq. 9's adaptivity (a factor that
  follows the gradient step by step) from a fixed per-layer rescaling.
- ``llrd``: layer-wise learning-rate decay, each layer's step times
  ``config.llrd_decay ** (top - depth)`` with depths from
  ``config.llrd_depth`` (bottom-to-top patterns; stacked slices by index).
  Not an eq. 9 variant: one of the package's other per-layer rules.
"""

from __future__ import annotations

import dataclasses

BASES = ('sgd', 'nag', 'adagrad', 'adam', 'lars', 'lamb', 'layer_lars',
         'layer_lamb', 'adalayer')
VARIANTS = ('layer', 'layercap', 'global', 'warmup', 'frozen', 'llrd')
# The package's per-layer rules and the optax per-array method each is
# judged against.
PEERS = {'layer_lars': 'lars', 'layer_lamb': 'lamb', 'adalayer': 'adam'}
# Variants that multiply the step by an eq. 9 factor.
FACTOR_VARIANTS = ('layer', 'layercap', 'global')
# The label of the single "layer" of the +global variant.
GLOBAL_LAYER = 'all'


@dataclasses.dataclass(frozen=True, order=True)
class Method:
  """A base optimizer and an optional variant (None: the plain optimizer)."""
  base: str
  variant: str | None = None

  def __post_init__(self):
    if self.base not in BASES:
      raise ValueError(f'unknown method base {self.base!r}; known: '
                       f'{", ".join(BASES)}.')
    if self.variant is not None and self.variant not in VARIANTS:
      raise ValueError(f'unknown method variant {self.variant!r}; known: '
                       f'{", ".join(VARIANTS)} (written BASE+VARIANT).')

  @classmethod
  def parse(cls, name: str) -> Method:
    """``'sgd'`` -> Method('sgd'); ``'sgd+layer'`` -> Method('sgd', 'layer')."""
    parts = name.strip().split('+')
    if len(parts) > 2 or not all(parts):
      raise ValueError(
          f'unknown method {name!r}: write BASE or BASE+VARIANT with BASE in '
          f'{", ".join(BASES)} and VARIANT in {", ".join(VARIANTS)}.')
    try:
      return cls(*parts)
    except ValueError as e:
      raise ValueError(f'unknown method {name!r}: {e}') from None

  @property
  def name(self) -> str:
    return self.base if self.variant is None else f'{self.base}+{self.variant}'

  @property
  def applies_factor(self) -> bool:
    """Whether the step is multiplied by an eq. 9 factor."""
    return self.variant in FACTOR_VARIANTS

  @property
  def plain(self) -> Method:
    """The base optimizer without variant: what this method is compared to."""
    return Method(self.base)

  def __str__(self) -> str:
    return self.name


def parse_methods(text: str) -> tuple[Method, ...]:
  """A comma-separated list of method names, each once, in order."""
  names = [m.strip() for m in text.split(',') if m.strip()]
  if not names:
    raise ValueError('config.methods is empty; give a comma-separated list '
                     f'such as sgd,sgd+layer (bases: {", ".join(BASES)}; '
                     f'variants: {", ".join(VARIANTS)}).')
  methods = tuple(Method.parse(n) for n in names)
  if len(set(methods)) != len(methods):
    raise ValueError(f'config.methods lists a method twice: {text!r}.')
  return methods


def comparisons(methods) -> list[tuple[Method, Method]]:
  """(reference, method) pairs present in `methods`, in the order given: a
  variant against its plain base, a per-layer rule against its per-array
  peer."""
  present = set(methods)
  pairs = []
  for m in methods:
    if m.variant is not None and m.plain in present:
      pairs.append((m.plain, m))
    elif m.variant is None and m.base in PEERS and Method(
        PEERS[m.base]) in present:
      pairs.append((Method(PEERS[m.base]), m))
  return pairs
