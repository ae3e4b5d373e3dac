"""The records an experiment writes: one typed record per run, one for the
results of an experiment, and the one atomic writer for every file."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
from typing import Any

from experiments import faults

# A run's metrics lists are aligned with these keys' schedule: evaluations
# (`Results.eval_steps`) for the first five, `factor_steps` for the factors.
EVAL_KEYS = ('test_error', 'test_top5_error', 'test_loss', 'train_loss',
             'learning_rate')


@dataclasses.dataclass
class RunRecord:
  """One (method, seed[, base_lr]) run: its metrics over training.

  Attributes:
    method: the method's name (`experiments.methods.Method.name`).
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
  data: dict[str, Any] | None = None  # `experiments.data.identity`

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


def write_atomic(path: str, data: str | bytes) -> None:
  """Writes `path` whole or not at all (a temporary file, then a rename)."""
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    with open(tmp, 'wb' if isinstance(data, bytes) else 'w') as f:
      f.write(data)
    if os.path.basename(os.path.dirname(path)) == 'runs':
      faults.kill_point('run_json')
    os.replace(tmp, path)
  except BaseException:
    # A full disk or a kill mid-write leaves the old `path` as it was.
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def write_figure(fig, path: str, dpi: int = 110) -> None:
  """Saves a matplotlib figure atomically (PNG by `path`'s extension)."""
  import io
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=dpi, format=os.path.splitext(path)[1][1:] or 'png')
  write_atomic(path, buffer.getvalue())


def json_ready(obj: Any) -> Any:
  """Plain JSON types (config dicts, numpy scalars, tuples as lists)."""
  return json.loads(json.dumps(obj, default=_to_plain))


def _to_plain(obj: Any) -> Any:
  if hasattr(obj, 'to_json'):
    return obj.to_json()
  if hasattr(obj, 'tolist'):
    return obj.tolist()
  return str(obj)


def write_json(path: str, obj: Any, indent: int | None = 1) -> None:
  write_atomic(path, json.dumps(json_ready(obj), indent=indent))


def versions_text(versions: dict[str, str] | None) -> str:
  """'jax 0.10.2, optax 0.2.8, ...', or 'versions not recorded'."""
  if not versions:
    return 'versions not recorded'
  return ', '.join(f'{k} {v}' for k, v in sorted(versions.items()))


def git_commit(path: str = '.') -> str | None:
  """The commit of the checkout holding `path`, '+dirty' if it has changes
  to tracked files outside experiments/results/ (outputs, not code: a sweep
  writing its tables does not make the code that trains it dirty); None
  outside git."""
  try:
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=path, text=True,
                          capture_output=True, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain',
                            '--untracked-files=no', '--', ':(top)',
                            ':(top,exclude)experiments/results'], cwd=path,
                           text=True, capture_output=True,
                           check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return head + ('+dirty' if dirty else '')
