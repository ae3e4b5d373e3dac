"""One owner per workdir: a lock file naming the process that holds it.

A second command on a busy workdir refuses with one line naming the holder
(pid, host, command). A lock left by a dead process (SIGKILL, a crash, a lost
machine on the same host) is taken over with a note. A process checks its own
host only: a lock held from another host is refused (remove the file by hand
once that job is known to be gone).

``experiments.run`` locks the whole workdir. A sweep locks the methods it
trains (``locks/<method>.lock``), so processes with disjoint ``--only``
share a sweep as documented, while two that would train the same method
cannot. The workers of ``sweep --parallel`` run inside their parent's claim:
the parent, which holds every method, passes its token in
``$LAYERLR_WORKDIR_LEASE``, and a lock held under that token counts as the
worker's own. Multi-process (jax distributed) runs lock from process 0,
which writes the workdir.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterable

LOCK_NAME = '.owner.lock'
METHOD_LOCKS = 'locks'
LEASE_ENV = 'LAYERLR_WORKDIR_LEASE'


class WorkdirBusy(RuntimeError):
  """The workdir (or a method in it) is held by another live process."""


def _start_time(pid: int) -> str | None:
  """The process's start time in clock ticks since boot (Linux), which with
  the pid names a process uniquely (pids are reused)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(pid: int, start: str | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  now = _start_time(pid)
  return start is None or now is None or now == start


def _describe(holder: dict) -> str:
  return (f"pid {holder.get('pid')} on {holder.get('host')} since "
          f"{holder.get('since')} ({holder.get('command', '?')})")


class Lock:
  """An exclusive, process-owned lock file; `release` (or exit) frees it."""

  def __init__(self, path: str, what: str, token: str | None = None):
    self.path = path
    self.what = what
    self.token = token or uuid.uuid4().hex
    self.lease = os.environ.get(LEASE_ENV)
    self.took_over: dict | None = None
    self._held = False
    self._acquire()
    atexit.register(self.release)

  def _record(self) -> dict:
    return {'pid': os.getpid(), 'start': _start_time(os.getpid()),
            'host': socket.gethostname(), 'token': self.token,
            'since': time.strftime('%Y-%m-%d %H:%M:%S'),
            'command': ' '.join(os.path.basename(a) if i == 0 else a
                                for i, a in enumerate(sys.argv))[:200]}

  def _read(self) -> dict | None:
    try:
      with open(self.path) as f:
        return json.load(f)
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}  # half-written by a process killed mid-write: stale

  def _acquire(self) -> None:
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    for _ in range(3):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = self._read()
        if holder is None:
          continue  # released meanwhile: try again
        if self._is_mine(holder):
          self.token, self._held = holder['token'], True
          return
        if self.lease and holder.get('token') == self.lease:
          return  # the parent's claim, which this worker runs inside
        if self._is_live(holder):
          raise WorkdirBusy(
              f'{self.what} is in use by {_describe(holder)}; wait for it to '
              f'finish or stop it, or choose another --workdir (lock: '
              f'{self.path}).') from None
        self.took_over = holder
        try:
          os.remove(self.path)
        except FileNotFoundError:
          pass
        continue
      with os.fdopen(fd, 'w') as f:
        json.dump(self._record(), f)
      self._held = True
      if self.took_over is not None:
        print(f'note: took over {self.what} from a process that is gone '
              f'({_describe(self.took_over)}).', file=sys.stderr)
      return
    raise WorkdirBusy(f'{self.what}: could not take the lock {self.path} '
                      '(it changed hands repeatedly); try again.')

  @staticmethod
  def _is_mine(holder: dict) -> bool:
    return (holder.get('pid') == os.getpid()
            and holder.get('host') == socket.gethostname()
            and holder.get('start') == _start_time(os.getpid()))

  @staticmethod
  def _is_live(holder: dict) -> bool:
    if not holder or 'pid' not in holder:
      return False
    if holder.get('host') != socket.gethostname():
      return True  # cannot tell from here: refuse rather than share
    return _alive(int(holder['pid']), holder.get('start'))

  def release(self) -> None:
    if not self._held:
      return
    self._held = False
    holder = self._read()
    if holder and holder.get('token') == self.token and self._is_mine(holder):
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass


class WorkdirClaim:
  """The locks a process holds on a workdir: the whole workdir, or, for a
  sweep, the methods it trains."""

  def __init__(self, workdir: str, methods: Iterable[str] | None = None):
    self.token = uuid.uuid4().hex
    self.locks: list[Lock] = []
    try:
      if methods is None:
        self.locks.append(Lock(os.path.join(workdir, LOCK_NAME),
                               f'--workdir {workdir!r}', self.token))
        return
      for method in sorted(methods):
        self.locks.append(Lock(
            os.path.join(workdir, METHOD_LOCKS,
                         method.replace('/', '_') + '.lock'),
            f'method {method!r} of --workdir {workdir!r}', self.token))
    except BaseException:
      self.release()
      raise

  def lease_env(self) -> dict[str, str]:
    """The environment that lets child workers run inside this claim."""
    return {LEASE_ENV: self.token}

  def release(self) -> None:
    for lock in reversed(self.locks):
      lock.release()
