"""Deterministic fault injection for the kill-anywhere test.

``LAYERLR_KILL_AT=POINT:N`` makes the process SIGKILL itself the N-th time it
passes `POINT` (1-based), like a pre-emption landing exactly there. Unset
(always, outside tests), `kill_point` costs one dict lookup. The points:

- ``step``: after a training step (between steps);
- ``checkpoint_write``: while orbax writes a checkpoint (the save started, not
  yet finished: its temporary folder is on disk);
- ``checkpoint_manifest``: after orbax finished a checkpoint, before its
  integrity manifest is written;
- ``run_json``: while a finished run's JSON is written (temporary file
  written, not yet renamed).
"""

from __future__ import annotations

import collections
import os
import signal

ENV = 'LAYERLR_KILL_AT'
POINTS = ('step', 'checkpoint_write', 'checkpoint_manifest', 'run_json')
_passed: collections.Counter = collections.Counter()


def kill_point(point: str) -> None:
  """SIGKILLs this process if `LAYERLR_KILL_AT` names this passage."""
  spec = os.environ.get(ENV)
  if not spec:
    return
  target, _, count = spec.partition(':')
  if target not in POINTS:
    raise ValueError(f'{ENV}={spec!r}: unknown point; use one of {POINTS}.')
  if target != point:
    return
  _passed[point] += 1
  if _passed[point] == int(count or 1):
    os.kill(os.getpid(), signal.SIGKILL)
