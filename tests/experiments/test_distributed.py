"""Multi-process training on `jax.distributed`, on this machine's CPU.

`python -m experiments.launch` starts the processes, each with simulated CPU
devices; their all-reduces go over gloo. 2 processes x 4 devices must give
the results of 1 process x 8 devices (same global mesh, same global
batches; each process loads only its rows). Measured: bit for bit, so the
comparison is exact. A checkpoint written by either layout resumes in the
other (orbax restores onto the new processes' devices) and gives the
uninterrupted run's results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.lib import records
from tests.conftest import ROOT

LENET = ['mnist_lenet', '--config.data_source=local',
         '--config.num_steps=12', '--config.eval_every=6',
         '--config.log_every=3', '--config.methods=sgd+layer',
         '--config.num_seeds=1', '--config.max_eval_examples=1000',
         '--config.eval_batch_size=300', '--config.checkpoint_every=6',
         '--config.param_sharding=fsdp']


def results(workdir: str) -> list[dict]:
  """The runs of results.json without their timings."""
  with open(os.path.join(workdir, 'results.json')) as f:
    runs = json.load(f)['runs']
  return records.without_timing(runs)


@pytest.fixture(scope='module')
def launch(tmp_path_factory):
  """``launch(processes, devices_per_process, workdir, *run_args, env=)``
  -> CompletedProcess of ``python -m experiments.launch``."""
  logs = tmp_path_factory.mktemp('launch-logs')

  def run(processes, devices, workdir, *args, env=None):
    full_env = dict(os.environ, **(env or {}))
    full_env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    return subprocess.run(
        [sys.executable, '-m', 'experiments.launch',
         f'--num_processes={processes}',
         f'--cpu_devices_per_process={devices}', f'--log_dir={logs}', '--',
         *args, '--workdir', str(workdir)],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=900)

  return run


def _job_id_with_a_free_port() -> int:
  """A SLURM job id whose coordinator port (jax derives it: the id modulo
  2**12 in the top 4,096 ports) is free on this host now."""
  import socket
  for job_id in range(10**5, 10**5 + 2**12):
    port = job_id % 2**12 + (65535 - 2**12 + 1)
    with socket.socket() as s:
      try:
        s.bind(('localhost', port))
      except OSError:
        continue
    return job_id
  raise AssertionError('no free port in 61440-65535')


@pytest.fixture(scope='module')
def lenet_1x8(launch, tmp_path_factory, mnist_dir):
  workdir = tmp_path_factory.mktemp('lenet') / '1x8'
  proc = launch(1, 8, workdir, *LENET, f'--config.data_dir={mnist_dir}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  return results(workdir)


# Tests sharing the module-scoped 1x8 reference run on one xdist worker.
@pytest.mark.xdist_group('lenet_1x8')
def test_two_processes_equal_one_process_lenet(launch, lenet_1x8, mnist_dir,
                                               tmp_path):
  proc = launch(2, 4, tmp_path / '2x4', *LENET,
                f'--config.data_dir={mnist_dir}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'launch: 2 processes' in proc.stderr
  # Process 0 alone wrote the outputs and printed the table.
  assert proc.stdout.count('wrote ') == 1, proc.stdout
  assert results(tmp_path / '2x4') == lenet_1x8
  run, = lenet_1x8
  assert len(run['test_error']) == 2 and run['test_error'][-1] < 60


@pytest.mark.xdist_group('lenet_1x8')
def test_slurm_srun_layout_equals_one_process(lenet_1x8, mnist_dir,
                                              tmp_path):
  """What `srun --ntasks=2 python -m experiments.run ...
  --config.distributed=true` gives each task, simulated on this host: no
  launcher, only SLURM's variables, from which `jax.distributed.initialize()`
  finds the process id, count and coordinator (the first node of the step,
  a port from the job id). The result is the 1x8 run's."""
  workdir = tmp_path / 'slurm'
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=4',
             PYTHONPATH=ROOT, SLURM_JOB_ID=str(_job_id_with_a_free_port()),
             SLURM_STEP_NODELIST='localhost', SLURM_NTASKS='2',
             SLURM_STEP_NUM_NODES='1')
  for name in ('LAYERLR_PROCESS_ID', 'LAYERLR_NUM_PROCESSES',
               'JAX_COORDINATOR_ADDRESS'):
    env.pop(name, None)
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'experiments.run', *LENET,
       f'--config.data_dir={mnist_dir}', '--config.distributed=true',
       '--workdir', str(workdir)],
      cwd=ROOT, env=dict(env, SLURM_PROCID=str(i), SLURM_LOCALID=str(i)),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  try:
    outputs = [p.communicate(timeout=600) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  # Task 0 alone wrote the outputs.
  assert outputs[0][0].count('wrote ') == 1, outputs[0][0]
  assert 'wrote ' not in outputs[1][0], outputs[1][0]
  assert results(workdir) == lenet_1x8


@pytest.mark.xdist_group('lenet_1x8')
def test_layer_norms_are_global_one_device_gives_the_same_factors(
    lenet_1x8, run_module, mnist_dir, tmp_path):
  """The factor of each layer comes from the norm of its whole gradient:
  on one device, where nothing is split, the factors (and losses) are those
  of 8 devices in 1 or 2 processes, up to float32 summation order (measured
  2e-7 relative; asserted 1e-5)."""
  proc = run_module('experiments.run', *LENET,
                    f'--config.data_dir={mnist_dir}', '--workdir',
                    str(tmp_path / '1x1'), env={'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  single, = results(tmp_path / '1x1')
  multi, = lenet_1x8
  assert set(single['layer_factors']) == {'conv1', 'conv2', 'ip1', 'ip2'}
  for name, factors in single['layer_factors'].items():
    np.testing.assert_allclose(factors, multi['layer_factors'][name],
                               rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(single['train_loss'], multi['train_loss'],
                             rtol=1e-5)


def test_cifar10_fsdp_two_processes_equal_one_process(launch, cifar_dir,
                                                      cifar_cache, tmp_path):
  # The zip is decoded once (cifar_cache), not in each process at the same
  # time: the processes inherit $LAYERLR_CACHE.
  args = ['cifar10_full', '--config.data_source=local',
          f'--config.data_dir={cifar_dir}', '--config.num_steps=4',
          '--config.eval_every=2', '--config.log_every=2',
          '--config.methods=sgd+layer', '--config.num_seeds=1',
          '--config.max_eval_examples=200', '--config.eval_batch_size=100',
          '--config.batch_size=32', '--config.param_sharding=fsdp']
  outputs = {}
  for processes, devices in ((1, 8), (2, 4)):
    workdir = tmp_path / f'{processes}x{devices}'
    proc = launch(processes, devices, workdir, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs[processes] = results(workdir)
  assert outputs[1] == outputs[2]
  assert set(outputs[1][0]['layer_factors']) == {'conv1', 'conv2', 'conv3',
                                                 'ip1'}


@pytest.mark.xdist_group('lenet_1x8')
@pytest.mark.parametrize('first,then', [((2, 4), (1, 8)), ((1, 8), (2, 4))],
                         ids=['2x4-then-1x8', '1x8-then-2x4'])
def test_a_checkpoint_resumes_in_the_other_layout(launch, lenet_1x8,
                                                  mnist_dir, tmp_path, first,
                                                  then):
  workdir = tmp_path / 'w'
  args = [*LENET, f'--config.data_dir={mnist_dir}']
  # Pre-empted after step 9: the newest checkpoint is step 6's.
  killed = launch(*first, workdir, *args, env={'LAYERLR_KILL_AT': 'step:9'})
  assert killed.returncode == 137, killed.stderr[-3000:]
  assert 'stopped the others' in killed.stderr
  assert not os.path.exists(workdir / 'results.json')
  resumed = launch(*then, workdir, *args)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'sgd+layer_seed0 from step 6' in resumed.stderr
  assert results(workdir) == lenet_1x8


def test_a_failing_process_stops_the_launch_with_its_error(launch, tmp_path):
  proc = launch(2, 1, tmp_path / 'w', 'mnist_lenet', '--config.data_source=local',
                f'--config.data_dir={tmp_path / "nowhere"}')
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert 'error:' in proc.stderr and 'nowhere' in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_launch_usage_errors(run_module):
  proc = run_module('experiments.launch', '--num_processes', '0', '--',
                    'mnist_lenet', '--workdir', 'x')
  assert proc.returncode == 2 and '--num_processes must be >= 1' in proc.stderr
  proc = run_module('experiments.launch', '--num_processes', '2')
  assert proc.returncode == 2 and 'nothing to run' in proc.stderr
  proc = run_module('experiments.launch', '--help')
  assert proc.returncode == 0 and 'srun' in proc.stdout


def _parent(pid: str) -> int | None:
  try:
    with open(f'/proc/{pid}/stat') as f:
      return int(f.read().rsplit(')', 1)[1].split()[1])
  except (OSError, IndexError, ValueError):
    return None


# `python -m experiments.launch` with Ctrl-C's default handling, as from a
# terminal: a test run started in the background (e.g. `nohup ... &`) hands
# SIGINT down ignored, and Python then never raises KeyboardInterrupt.
# (Resetting it in the launcher itself, not in a preexec_fn: forking a
# multithreaded test process to run Python code can deadlock.)
_LAUNCH_WITH_DEFAULT_SIGINT = [
    sys.executable, '-c',
    'import runpy, signal; '
    'signal.signal(signal.SIGINT, signal.default_int_handler); '
    'runpy.run_module("experiments.launch", run_name="__main__", '
    'alter_sys=True)']


def _start_long_launch(mnist_dir, tmp_path, **popen_kwargs):
  """A 2-process LeNet launch long enough to be stopped while it trains."""
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.Popen(
      [*_LAUNCH_WITH_DEFAULT_SIGINT, '--num_processes=2',
       '--cpu_devices_per_process=1', f'--log_dir={tmp_path / "logs"}', '--',
       *LENET, f'--config.data_dir={mnist_dir}', '--config.num_steps=3000',
       '--config.eval_every=1500', '--workdir', str(tmp_path / 'w')],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, **popen_kwargs)


def test_a_terminated_launcher_leaves_no_process_behind(mnist_dir, tmp_path):
  """SIGTERM to the launcher (a scheduler pre-empting it) stops every
  process it started."""
  import signal
  import time
  launcher = _start_long_launch(mnist_dir, tmp_path)
  try:
    # Wait until both processes have been started (a guard against a hang).
    deadline = time.monotonic() + 900
    children = []
    while len(children) < 2:
      assert time.monotonic() < deadline and launcher.poll() is None, children
      time.sleep(0.2)
      children = [pid for pid in os.listdir('/proc') if pid.isdigit()
                  and _parent(pid) == launcher.pid]
    launcher.send_signal(signal.SIGTERM)
    launcher.communicate(timeout=60)
  finally:
    if launcher.poll() is None:  # never leave a job training behind
      launcher.terminate()
      launcher.wait(timeout=60)
  assert launcher.returncode == 128 + signal.SIGTERM
  assert len(children) == 2, children
  for pid in children:
    assert not os.path.exists(f'/proc/{pid}') or open(
        f'/proc/{pid}/stat').read().split()[2] == 'Z', pid


def test_distributed_without_a_cluster_is_one_line(run_module, mnist_dir,
                                                   tmp_path, monkeypatch):
  for name in list(os.environ):
    if name.startswith(('SLURM_', 'OMPI_', 'JAX_COORDINATOR', 'LAYERLR_')):
      monkeypatch.delenv(name)
  proc = run_module('experiments.run', *LENET,
                    f'--config.data_dir={mnist_dir}',
                    '--config.distributed=true', '--workdir',
                    str(tmp_path / 'w'))
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert 'no cluster was found' in proc.stderr
  assert 'experiments.launch' in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_distributed_check_compares_every_series_of_every_seed():
  from experiments import distributed_check
  run = {'train_loss': [2.0, 1.0], 'test_error': [50.0, 20.0],
         'test_loss': [1.5, 0.5], 'layer_factors': {'a': [2.0, 3.0]}}
  other = json.loads(json.dumps(run))
  assert distributed_check.compare([run, run], [run, other]) == {
      'identical': True, 'max_relative_difference': 0.0}
  other['layer_factors']['a'][1] = 3.0 * (1 + 1e-6)
  result = distributed_check.compare([run, run], [run, other])
  assert not result['identical']
  assert abs(result['max_relative_difference'] - 1e-6) < 1e-9


def test_launch_gives_each_process_its_ids_and_devices():
  from experiments import launch
  args, forwarded = launch._parse(
      ['--num_processes=2', '--accelerators_per_process=4', '--',
       'mnist_lenet', '--workdir', 'w'])
  assert forwarded == ['mnist_lenet', '--workdir', 'w']
  env = launch._environment(args, 1, 1234)
  assert env['LAYERLR_PROCESS_ID'] == '1'
  assert env['LAYERLR_NUM_PROCESSES'] == '2'
  assert env['JAX_COORDINATOR_ADDRESS'] == 'localhost:1234'
  assert env['JAX_LOCAL_DEVICE_IDS'] == '4,5,6,7'
  args, _ = launch._parse(
      ['--num_processes=2', '--cpu_devices_per_process=3', '--', 'x'])
  env = launch._environment(args, 0, 1)
  assert env['JAX_PLATFORMS'] == 'cpu'
  assert '--xla_force_host_platform_device_count=3' in env['XLA_FLAGS']
  with pytest.raises(SystemExit):
    launch._parse(['--num_processes=2', '--cpu_devices_per_process=2',
                   '--accelerators_per_process=2', '--', 'x'])


def test_ctrl_c_stops_every_process_and_says_how_to_resume(mnist_dir,
                                                          tmp_path):
  """Ctrl-C in a terminal sends SIGINT to the launcher's whole process
  group: each process stops, the launcher says what was saved and how to
  resume (process 0 may too, unless it was blocked in a collective its peer
  left), exits 130 and leaves nothing running."""
  import signal
  import time
  launcher = _start_long_launch(mnist_dir, tmp_path, start_new_session=True)
  try:
    # A guard against a hang only: what is awaited are events.
    deadline = time.monotonic() + 900
    # Training has started once process 0 has claimed the workdir and both
    # processes exist.
    children = []
    while not (os.path.exists(tmp_path / 'w' / 'config.json')
               and len(children) == 2):
      assert time.monotonic() < deadline and launcher.poll() is None
      time.sleep(0.2)
      children = [pid for pid in os.listdir('/proc') if pid.isdigit()
                  and _parent(pid) == launcher.pid]
    os.killpg(launcher.pid, signal.SIGINT)
    _, stderr = launcher.communicate(timeout=120)
  finally:
    if launcher.poll() is None:  # never leave a job training behind
      os.killpg(launcher.pid, signal.SIGKILL)
      launcher.wait()
  assert launcher.returncode == 130, stderr[-3000:]
  assert 'launch: interrupted; every finished run is saved' in stderr, (
      stderr[-4000:])
  assert 'run the same command again to resume' in stderr
  assert len(children) == 2, children
  for pid in children:
    assert not os.path.exists(f'/proc/{pid}') or open(
        f'/proc/{pid}/stat').read().split()[2] == 'Z', pid
