"""Timing helpers: warm-up, interleaved repetitions, medians, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import jax


def device_info() -> dict[str, str]:
  device = jax.devices()[0]
  return {'backend': jax.default_backend(),
          'device': f'{device.device_kind} x{len(jax.devices())}',
          'host': f'{platform.machine()} {os.cpu_count()} cpus',
          'jax': jax.__version__}


def interleaved_medians(fns: Sequence[Callable[[], object]], repeats: int,
                        min_seconds: float = 0.0) -> list[float]:
  """Median seconds per call of each fn, measured A B C A B C ...

  Each fn must block until its result is ready. Interleaving spreads drifts of
  the machine (other processes, thermal, caches) evenly over the candidates,
  so ratios measured in one process are fair even on a busy machine.
  """
  for fn in fns:  # warm-up (caches, allocator)
    fn()
  times: list[list[float]] = [[] for _ in fns]
  start = time.perf_counter()
  rounds = 0
  while rounds < repeats or time.perf_counter() - start < min_seconds:
    for i, fn in enumerate(fns):
      t0 = time.perf_counter()
      fn()
      times[i].append(time.perf_counter() - t0)
    rounds += 1
  return [statistics.median(t) for t in times]


def write_json(path: str | None, payload: dict) -> None:
  if not path:
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(payload, f, indent=1)
  os.replace(tmp, path)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = ['| ' + ' | '.join(headers) + ' |',
           '|' + '---|' * len(headers)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines)
