"""The records an experiment writes: what to train (`RunSpec`), one typed
record per run (`RunRecord`), one for the results of an experiment
(`Results`), and the one naming of run files (`run_name`)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from experiments.lib.methods import Method

# A run's metrics lists are aligned with these keys' schedule: evaluations
# (`Results.eval_steps`) for the first five, `factor_steps` for the factors.
# What differs between two runs of the same computation: wall-clock
# measurements (left out when results are compared for equality).
TIMING_KEYS = ('wall_seconds', 'session_wall_seconds', 'steps_per_second')


def without_timing(obj: Any) -> Any:
  """A results/run JSON object without its `TIMING_KEYS`, at any depth."""
  if isinstance(obj, dict):
    return {k: without_timing(v) for k, v in obj.items()
            if k not in TIMING_KEYS}
  if isinstance(obj, list):
    return [without_timing(v) for v in obj]
  return obj


EVAL_KEYS = ('test_error', 'test_top5_error', 'test_loss', 'train_loss',
             'learning_rate')


@dataclasses.dataclass
class RunRecord:
  """One (method, seed[, base_lr]) run: its metrics over training.

  Attributes:
    method: the method's name (`experiments.lib.methods.Method.name`).
    seed: the seed (initialisation, data order, dropout).
    base_lr: the base learning rate the run used.
    test_error, test_top5_error: % on the evaluation split, per evaluation.
    test_loss: mean cross-entropy on the evaluation split, per evaluation.
    train_loss: mean mini-batch loss since the previous evaluation.
    learning_rate: Caffe's rate(k) at each evaluation (before multipliers).
    factor_steps: the steps at which `layer_factors` were logged.
    layer_factors: per layer, the eq. 9 factor of the gradient the optimizer
      saw, averaged over each logging interval (applied by `+layer` and
      `+global` methods, only observed otherwise).
    wall_seconds: training time of this run.
    steps_per_second: training steps per second of this run's program
      after its first logging window (which includes compilation),
      evaluations and checkpoints included; for vmapped seeds, steps of
      all of them together; of the session that finished a resumed run.
      None where one window or less ran, and in runs recorded before it
      was.
    diverged_at: the first step whose loss was not finite (None: never).
      Evaluations after it are None.
    commit: the git commit of the code that trained the run.
    device: the accelerator that trained it (e.g. 'cpu x1', 'NVIDIA H200
      x1'); None in runs recorded before it was.
    versions: jax, optax, flax and layerlr_optax versions that trained it;
      None in runs recorded before they were.
  """
  method: str
  seed: int
  base_lr: float | None = None
  test_error: list[float | None] = dataclasses.field(default_factory=list)
  test_top5_error: list[float | None] = dataclasses.field(default_factory=list)
  test_loss: list[float | None] = dataclasses.field(default_factory=list)
  train_loss: list[float | None] = dataclasses.field(default_factory=list)
  learning_rate: list[float] = dataclasses.field(default_factory=list)
  factor_steps: list[int] = dataclasses.field(default_factory=list)
  layer_factors: dict[str, list[float]] = dataclasses.field(
      default_factory=dict)
  wall_seconds: float = 0.0
  steps_per_second: float | None = None
  diverged_at: int | None = None
  commit: str | None = None
  device: str | None = None
  versions: dict[str, str] | None = None

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> RunRecord:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
      raise ValueError(f'a run record with unknown keys {unknown}; it was '
                       'written by another version of the experiments.')
    return cls(**data)


@dataclasses.dataclass
class Results:
  """Everything ``results.json`` holds: the runs of one experiment."""
  experiment: str
  eval_steps: list[int]
  runs: list[RunRecord]
  config: dict[str, Any]
  wall_seconds: float
  session_wall_seconds: float
  backend: str
  device: str
  versions: dict[str, str]
  seeds_vmapped: bool = False
  commit: str | None = None
  data: dict[str, Any] | None = None  # `experiments.lib.data.identity`

  def to_json(self) -> dict[str, Any]:
    data = dataclasses.asdict(self)
    data['runs'] = [run.to_json() for run in self.runs]
    return data

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> Results:
    data = dict(data)
    data['runs'] = [RunRecord.from_json(r) for r in data['runs']]
    return cls(**data)

  def by_method(self) -> dict[str, list[RunRecord]]:
    grouped: dict[str, list[RunRecord]] = {}
    for run in self.runs:
      grouped.setdefault(run.method, []).append(run)
    return grouped


def load_results(path: str) -> Results:
  """Reads a results.json, including those written before `RunRecord`."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no results.json at {path!r}')
  with open(path) as f:
    return Results.from_json(json.load(f))


def run_name(method: str, seed: int, base_lr: float | None = None) -> str:
  """The file name stem of a run: ``sgd+layer_seed3``, or with a base
  learning rate (sweeps) ``sgd+layer_lr0.01_seed3``."""
  if base_lr is None:
    return f'{method}_seed{seed}'
  return f'{method}_lr{base_lr!r}_seed{seed}'


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run to train: a method, a seed and (sweeps) a base learning rate.

  `base_lr` None means the config's rate for the method, and the run is
  stored as ``<method>_seed<k>``; otherwise as ``<method>_lr<x>_seed<k>``.
  """
  method: Method
  seed: int
  base_lr: float | None = None

  @property
  def name(self) -> str:
    return run_name(self.method.name, self.seed, self.base_lr)
