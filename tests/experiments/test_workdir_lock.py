"""One owner per workdir, through the command line (issue #23)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from experiments.lib import workdir_lock
from tests.conftest import ROOT


def _start(mnist_dir, workdir, *extra, steps=100_000):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.run', 'mnist_lenet', '--workdir',
       str(workdir), '--config.data_source=local',
       f'--config.data_dir={mnist_dir}', '--config.num_seeds=1',
       f'--config.num_steps={steps}', '--config.eval_every=2',
       '--config.log_every=2', '--config.methods=sgd', *extra],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)


def _wait_for_lock(proc, path, guard_s=300):
  """Waits until `proc` holds the lock (an event; the time is only a guard
  against a hang)."""
  deadline = time.monotonic() + guard_s
  while time.monotonic() < deadline:
    if os.path.exists(path):
      with open(path) as f:
        try:
          if json.load(f).get('pid') == proc.pid:
            return
        except ValueError:
          pass  # being written
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.05)
  raise AssertionError(f'{path} never appeared')


def test_second_command_is_refused_then_a_killed_owner_is_taken_over(
    mnist_dir, tmp_path):
  workdir = tmp_path / 'w'
  lock = workdir / workdir_lock.LOCK_NAME
  first = _start(mnist_dir, workdir)
  try:
    _wait_for_lock(first, str(lock))
    second = _start(mnist_dir, workdir, steps=4)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert f'pid {first.pid} on {socket.gethostname()}' in lines[0]
    assert 'in use' in lines[0]
    assert not (workdir / 'results.json').exists()
  finally:
    first.send_signal(signal.SIGKILL)
    first.communicate()
  # The SIGKILLed owner left its lock behind; the next command takes it over
  # with a note and finishes (a fresh workdir: the killed run had none done).
  assert lock.exists()
  third = _start(mnist_dir, workdir, steps=4)
  out, err = third.communicate(timeout=600)
  assert third.returncode == 0, err
  assert 'took over --workdir' in err and f'pid {first.pid}' in err
  assert (workdir / 'results.json').exists()
  assert not lock.exists()  # released at the end


def test_lock_from_another_host_is_refused(tmp_path):
  path = tmp_path / workdir_lock.LOCK_NAME
  path.write_text(json.dumps({'pid': 1, 'host': 'elsewhere', 'token': 'x',
                              'since': 'then', 'command': 'run'}))
  with pytest.raises(workdir_lock.WorkdirBusy, match='pid 1 on elsewhere'):
    workdir_lock.WorkdirClaim(str(tmp_path))


def test_methods_lock_separately_and_a_lease_shares_them(tmp_path,
                                                         monkeypatch):
  parent = workdir_lock.WorkdirClaim(str(tmp_path), ['sgd', 'nag'])
  # Another process would be refused on an overlapping method ...
  for lock in parent.locks:
    with open(lock.path) as f:
      record = json.load(f)
    record['pid'], record['start'] = os.getppid(), None
    with open(lock.path, 'w') as f:
      json.dump(record, f)
  with pytest.raises(workdir_lock.WorkdirBusy, match="method 'nag'"):
    workdir_lock.WorkdirClaim(str(tmp_path), ['nag', 'adam'])
  assert not (tmp_path / 'locks' / 'adam.lock').exists()  # nothing kept
  # ... but not on a disjoint one, nor inside the parent's lease.
  other = workdir_lock.WorkdirClaim(str(tmp_path), ['adam'])
  monkeypatch.setenv(workdir_lock.LEASE_ENV, parent.token)
  worker = workdir_lock.WorkdirClaim(str(tmp_path), ['nag'])
  worker.release()
  assert (tmp_path / 'locks' / 'nag.lock').exists()  # still the parent's
  other.release()
  assert not (tmp_path / 'locks' / 'adam.lock').exists()
