"""Sharded execution equals single-device execution (8 simulated devices)."""

import os
import subprocess
import sys


def test_sharded_equals_single_device():
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      ' --xla_force_host_platform_device_count=8').strip()
  env['JAX_PLATFORMS'] = 'cpu'
  here = os.path.dirname(os.path.abspath(__file__))
  proc = subprocess.run(
      [sys.executable, os.path.join(here, 'sharding_check.py')],
      env=env, capture_output=True, text=True, timeout=600,
      cwd=os.path.dirname(os.path.dirname(here)))
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert 'SHARDING OK' in proc.stdout
