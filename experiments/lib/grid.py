"""The learning-rate grid of a sweep, as pure bookkeeping over finished runs.

`Grid` knows, for every method, the grid of ``log2_steps`` k (rates
``rate(method) * 2**k``), the statistics of a grid point over seeds
(`GridPoint`), the best point, when the grid extends, and how robust the best
is. It reads runs through a lookup function and trains nothing, so the
driver (``experiments.sweep``) and the analysis (`experiments.analysis.sweeps`,
which rebuilds an unfinished sweep's grid from its files) share it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import ml_collections
import numpy as np

from experiments import configs
from experiments.lib import records
from experiments.lib import solvers
from experiments.lib import stats
from experiments.lib.methods import Method
from experiments.lib.methods import parse_methods

METRIC = 'final test error (%), mean over the grid seeds'
# Keys that choose which runs a sweep holds, not what one run computes: a
# run's rate is part of its name, so the grid may change between sessions.
SWEEP_RESUMABLE_KEYS = frozenset({'sweep', 'base_lr', 'method_base_lr'})

RunLookup = Callable[[records.RunSpec], 'records.RunRecord | None']


def sweep_methods(config: ml_collections.ConfigDict) -> tuple[Method, ...]:
  return parse_methods(config.sweep.methods or config.methods)


def validate(config: ml_collections.ConfigDict) -> tuple[Method, ...]:
  """The sweep's own keys, then the experiment's; returns the methods."""
  sweep = config.sweep
  steps = list(sweep.lr_log2_steps)
  if len(steps) < 2 or steps != sorted(set(steps)) or any(
      int(k) != k for k in steps):
    raise configs.ConfigError(
        'config.sweep.lr_log2_steps must be increasing integers (the grid is '
        f'rate * 2**k), at least 2 of them; got {tuple(steps)}.')
  if steps != list(range(steps[0], steps[-1] + 1)):
    raise configs.ConfigError(
        'config.sweep.lr_log2_steps must be consecutive (factor-2 spacing, '
        f'so that "interior" and robustness are well defined); got '
        f'{tuple(steps)}.')
  if sweep.grid_seeds < 1 or sweep.best_seeds < sweep.grid_seeds:
    raise configs.ConfigError(
        'config.sweep needs 1 <= grid_seeds <= best_seeds; got '
        f'grid_seeds={sweep.grid_seeds}, best_seeds={sweep.best_seeds}.')
  if sweep.max_extensions < 0:
    raise configs.ConfigError('config.sweep.max_extensions must be >= 0, got '
                              f'{sweep.max_extensions}.')
  if not 0 < sweep.tolerance < 1:
    raise configs.ConfigError('config.sweep.tolerance must be in (0, 1) (the '
                              'relative distance to the best error that '
                              f'counts as robust), got {sweep.tolerance}.')
  experiment = config.copy_and_resolve_references()
  try:
    experiment.methods = ','.join(m.name for m in sweep_methods(config))
  except ValueError as e:
    raise configs.ConfigError(f'config.sweep.methods: {e}') from None
  configs.validate(experiment)
  return sweep_methods(config)


def final_error(run: records.RunRecord) -> float:
  """The selection metric of one run; inf if it diverged."""
  if run.diverged_at is not None or run.test_error[-1] is None:
    return math.inf
  return float(run.test_error[-1])



class GridPoint(NamedTuple):
  """One (method, rate) over some seeds: the mean and sample std of the
  final error, how many seeds have finished, how many diverged (mean inf)."""
  mean: float
  std: float
  seeds: int
  diverged: int


class Grid:
  """Every method's grid of rates, and what its finished runs say."""

  def __init__(self, config: ml_collections.ConfigDict,
               methods: Sequence[Method], run_lookup: RunLookup):
    self.config = config
    self.methods = tuple(methods)
    self._lookup = run_lookup
    self.center = {m: solvers.method_base_lr(m, config) for m in self.methods}
    self.log2_steps = {m: list(config.sweep.lr_log2_steps)
                       for m in self.methods}

  def rate(self, method: Method, k: int) -> float:
    return self.center[method] * 2.0 ** k

  def spec(self, method: Method, k: int, seed: int) -> records.RunSpec:
    return records.RunSpec(method, seed, self.rate(method, k))

  def run_of(self, method: Method, k: int, seed: int):
    """The finished run, or None."""
    return self._lookup(self.spec(method, k, seed))

  def point(self, method: Method, k: int, seeds: Sequence[int]) -> GridPoint:
    runs = [self.run_of(method, k, s) for s in seeds]
    finals = [final_error(r) for r in runs if r is not None]
    diverged = sum(math.isinf(f) for f in finals)
    if not finals:
      return GridPoint(math.nan, math.nan, 0, 0)
    if diverged:
      return GridPoint(math.inf, math.nan, len(finals), diverged)
    values = np.array(finals)
    return GridPoint(float(values.mean()), float(stats.sample_std(values)),
                     len(finals), 0)

  def best_step(self, method: Method, seeds: Sequence[int]) -> int | None:
    """The grid step with the lowest mean final error (None: none finite)."""
    scores = {k: self.point(method, k, seeds).mean
              for k in self.log2_steps[method]}
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
      return None
    return min(finite, key=lambda k: (finite[k], k))

  def extend(self, method: Method, seeds: Sequence[int]) -> bool:
    """Extends `method`'s grid by one step on the edge holding its best
    point (below all, if every point diverged); True if it did."""
    limit = self.config.sweep.max_extensions
    initial = list(self.config.sweep.lr_log2_steps)
    steps = self.log2_steps[method]
    best = self.best_step(method, seeds)
    low_ext, high_ext = initial[0] - steps[0], steps[-1] - initial[-1]
    # Everything diverged (best None): only smaller rates can help.
    if best in (None, steps[0]) and low_ext < limit:
      steps.insert(0, steps[0] - 1)
      return True
    if best is not None and best == steps[-1] and high_ext < limit:
      steps.append(steps[-1] + 1)
      return True
    return False

  def wave_done(self, method: Method, wave: int) -> bool:
    """Every grid point has seeds 0..wave (a point added in a later wave
    gets the earlier waves' seeds too)."""
    return all(self.run_of(method, k, s) for k in self.log2_steps[method]
               for s in range(wave + 1))

  def wave_specs(self, method: Method, wave: int) -> list[records.RunSpec]:
    """The runs of wave `wave`: seeds 0..wave at every grid point (a point
    the grid gained in this wave is compared on as many seeds as the
    others; finished runs are skipped by the trainer)."""
    return [self.spec(method, k, s) for s in range(wave + 1)
            for k in self.log2_steps[method]]

  def replay(self, methods: Sequence[Method] | None = None) -> None:
    """Rebuilds each method's grid from finished runs alone, as the sweep
    extended it.

    A method's grid depends only on its own runs, so each is replayed on
    its own: wave by wave, stopping at its first wave that is not complete.
    A report of an interrupted (or running) sweep thus shows exactly the
    grid each method is working on.
    """
    for m in self.methods if methods is None else methods:
      for wave in range(self.config.sweep.grid_seeds):
        while self.wave_done(m, wave) and self.extend(m, range(wave + 1)):
          pass
        if not self.wave_done(m, wave):
          break

  def robust_width(self, method: Method, seeds) -> int:
    """Width, in factors of 2, of the contiguous range of rates around the
    best whose mean final error is within `tolerance` (relative) of it."""
    k_best = self.best_step(method, seeds)
    if k_best is None:
      return 0
    best = self.point(method, k_best, seeds).mean
    limit = best * (1 + self.config.sweep.tolerance)
    steps = self.log2_steps[method]
    i = j = steps.index(k_best)
    while i > 0 and self.point(method, steps[i - 1], seeds).mean <= limit:
      i -= 1
    while j < len(steps) - 1 and self.point(method, steps[j + 1],
                                            seeds).mean <= limit:
      j += 1
    return steps[j] - steps[i]
