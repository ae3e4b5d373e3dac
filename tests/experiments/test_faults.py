"""Kill anywhere, corrupt the latest checkpoint: nothing lost, nothing wrong.

Every process here is a real `python -m experiments.run` subprocess; kills
are real SIGKILLs (experiments/lib/faults.py picks the point deterministically).
"""

import glob
import os
import signal

import pytest

from experiments import kill_anywhere


@pytest.fixture(scope='module')
def overrides(mnist_dir):
  return ['--config.data_source=local', f'--config.data_dir={mnist_dir}']


@pytest.fixture(scope='module')
def kill_check(tmp_path_factory, overrides):
  """One kill-anywhere check (10 SIGKILLs) and its folder. Its processes
  use no persistent compilation cache (`kill_anywhere.run_once`): loaded
  and freshly compiled executables made the uninterrupted run differ from
  the restarted ones in the full suite, never alone."""
  workdir = str(tmp_path_factory.mktemp('kill') / 'check')
  return workdir, kill_anywhere.check(workdir, 10, overrides)


@pytest.fixture(scope='module')
def reference(kill_check):
  """The uninterrupted run's outputs (timings removed)."""
  return kill_anywhere.outputs(os.path.join(kill_check[0], 'uninterrupted'))


# Tests sharing the module-scoped kill check run on one xdist worker, so it
# runs once.
@pytest.mark.xdist_group('kill_check')
def test_killed_anywhere_ten_times_gives_bit_identical_results(kill_check):
  _, report = kill_check
  assert report['kills'] >= 10, report
  killed_at = {e['kill_at'].split(':')[0] for e in report['events']
               if e['killed']}
  # Between steps, inside a checkpoint write, between a checkpoint and its
  # manifest, and inside a run's JSON write.
  assert killed_at == {'step', 'checkpoint_write', 'checkpoint_manifest',
                       'run_json'}, report['events']
  assert report['identical'], report['differing_files']
  assert any('from the last good checkpoint' in line
             for e in report['events'] for line in e['said'])


def _killed_after_step_7(workdir, overrides):
  proc = kill_anywhere.run_once(workdir, overrides, 'step:7')
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  steps = sorted(int(os.path.basename(p)) for p in glob.glob(
      os.path.join(workdir, 'checkpoints', 'sgd_seed0', '[0-9]*')))
  assert steps == [4, 6], steps
  return os.path.join(workdir, 'checkpoints', 'sgd_seed0')


def _largest_file(folder):
  files = [p for p in glob.glob(os.path.join(folder, '**'), recursive=True)
           if os.path.isfile(p)]
  return max(files, key=os.path.getsize)


@pytest.mark.xdist_group('kill_check')
def test_a_changed_latest_checkpoint_is_skipped_with_a_warning(
    tmp_path, overrides, reference):
  workdir = str(tmp_path / 'w')
  checkpoints = _killed_after_step_7(workdir, overrides)
  victim = _largest_file(os.path.join(checkpoints, '6'))
  with open(victim, 'r+b') as f:  # flip some bytes in the middle
    f.seek(os.path.getsize(victim) // 2)
    chunk = f.read(16)
    f.seek(-len(chunk), os.SEEK_CUR)
    f.write(bytes(b ^ 0xFF for b in chunk))
  proc = kill_anywhere.run_once(workdir, overrides, None)
  assert proc.returncode == 0, proc.stderr[-3000:]
  warnings = [l for l in proc.stderr.splitlines() if l.startswith('warning')]
  assert len(warnings) == 1, proc.stderr[-3000:]
  assert warnings[0].startswith(
      'warning: checkpoint step 6 of sgd_seed0 is skipped: 1 file(s) changed '
      'or cut since it was written (SHA-256 mismatch)'), warnings
  assert warnings[0].endswith('resuming from step 4.')
  assert 'sgd_seed0 from step 4' in proc.stderr
  # Nothing deleted: the bad checkpoint was moved aside.
  assert glob.glob(checkpoints + '.skipped/6-*')
  assert kill_anywhere.outputs(workdir) == reference


def test_cut_checkpoints_are_skipped_oldest_last(tmp_path, capsys):
  """In-process, on RunCheckpoints itself: a cut latest checkpoint falls back
  to the previous one; when every one is cut, none is used."""
  import jax.numpy as jnp
  from experiments.lib import workdir as workdir_lib
  directory = str(tmp_path / 'checkpoints' / 'run')
  state = {'w': jnp.arange(1000.0)}
  ckpt = workdir_lib.RunCheckpoints(directory)
  for step in (2, 4):
    ckpt.save(step, {'w': state['w'] * step}, {'step': step})
  ckpt.close()
  victim = _largest_file(os.path.join(directory, '4'))
  with open(victim, 'r+b') as f:
    f.truncate(os.path.getsize(victim) // 3)
  ckpt = workdir_lib.RunCheckpoints(directory, name='run')
  warning = capsys.readouterr().err.strip()
  assert warning.startswith('warning: checkpoint step 4 of run is skipped: 1 '
                            'file(s) changed or cut'), warning
  assert warning.endswith('resuming from step 2.')
  step, restored, record = ckpt.restore(state)
  assert step == 2 and record == {'step': 2}
  assert (restored['w'] == state['w'] * 2).all()
  ckpt.close()
  victim = _largest_file(os.path.join(directory, '2'))
  with open(victim, 'r+b') as f:
    f.truncate(0)
  ckpt = workdir_lib.RunCheckpoints(directory, name='run')
  assert ckpt.latest_step() is None
  assert capsys.readouterr().err.strip().endswith(
      'no older checkpoint, so this run starts from step 0.')
  kept = [p for p in glob.glob(directory + '.skipped/*') if os.path.isdir(p)]
  assert len(kept) == 2  # moved aside, not deleted
  ckpt.close()
