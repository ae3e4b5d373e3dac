"""The one atomic writer of the experiments, the benchmarks and the
notebooks: a file is written whole or not at all, so a kill or a full disk
never leaves a half-written result."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from experiments.lib import faults


def write_atomic(path: str, data: str | bytes,
                 kill_point: str | None = None) -> None:
  """Writes `path` whole or not at all (a temporary file, then a rename).

  `kill_point` names the `faults` point passed between the two (the
  kill-anywhere check's ``run_json``); None for every other file.
  """
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    with open(tmp, 'wb' if isinstance(data, bytes) else 'w') as f:
      f.write(data)
    if kill_point is not None:
      faults.kill_point(kill_point)
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


def write_json(path: str, obj: Any, indent: int | None = 1,
               kill_point: str | None = None) -> None:
  write_atomic(path, json.dumps(json_ready(obj), indent=indent), kill_point)
