"""Ctrl-C and SIGTERM that cannot be lost.

Python drops an exception that a signal handler raises while a gc callback
runs (XLA registers one: "Exception ignored in: _xla_gc_callback ...
KeyboardInterrupt"), and the process then carries on as if no signal had
come. So the entry points' handlers also record the request here, and the
training loop calls `check` after every step.
"""

from __future__ import annotations

_requested = False


def request() -> None:
  """Records a stop request (called by a signal handler)."""
  global _requested
  _requested = True


def check() -> None:
  """Raises KeyboardInterrupt if a stop was requested and got lost."""
  if _requested:
    raise KeyboardInterrupt


def clear() -> None:
  """Forgets a handled request (after the handler's exception arrived)."""
  global _requested
  _requested = False
