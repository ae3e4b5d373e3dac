"""The workdir (experiments/lib/workdir.py): nothing lost, runs resumed."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from experiments.lib import records
from experiments import run as run_lib
from experiments.lib import cli
from experiments.lib import train
from experiments.lib import workdir as workdir_lib


def test_finished_workdir_is_never_overwritten(mnist_dir, tmp_path, capsys):
  workdir = str(tmp_path / 'w')
  args = ['mnist_lenet', '--workdir', workdir, '--config.data_source=local',
          f'--config.data_dir={mnist_dir}', '--config.num_seeds=1',
          '--config.num_steps=2', '--config.eval_every=2',
          '--config.log_every=2', '--config.methods=sgd']
  assert run_lib.main(args) == 0
  # A user error: one line naming the problem and the fix, exit status 2.
  assert run_lib.main(args) == 2
  assert '--overwrite' in capsys.readouterr().err
  with pytest.raises(workdir_lib.WorkdirError, match='--overwrite'):
    run_lib.main(args + ['--debug'])
  # With --overwrite the old outputs are moved aside, not deleted.
  run_lib.main(args + ['--overwrite'])
  backups = [d for d in os.listdir(workdir) if d.startswith('previous-')]
  assert len(backups) == 1
  assert os.path.exists(os.path.join(workdir, backups[0], 'results.json'))


def test_resume_after_interruption_reuses_finished_runs(mnist_config, tmp_path,
                                                        monkeypatch, capsys):
  workdir = str(tmp_path / 'w')
  config = mnist_config(num_seeds=2, methods='sgd')
  calls = []
  original = train.Trainer.train

  def flaky_train(self, specs, store, progress):
    calls.extend(s.seed for s in specs)
    if [s.seed for s in specs] == [1] and len(calls) == 2:
      raise KeyboardInterrupt  # interrupted during the second seed
    return original(self, specs, store, progress)

  monkeypatch.setattr(train.Trainer, 'train', flaky_train)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, workdir)
  assert os.listdir(os.path.join(workdir, 'runs')) == ['sgd_seed0.json']
  # Resuming with a different protocol is refused, not mixed.
  with pytest.raises(workdir_lib.WorkdirError, match='changed: num_steps'):
    train.train_and_evaluate(mnist_config(num_seeds=2, methods='sgd',
                                          num_steps=6), workdir)
  capsys.readouterr()
  train.train_and_evaluate(config, workdir)
  assert calls == [0, 1, 1]  # seed 0 was not rerun
  assert '1 of 2 runs are finished and kept' in capsys.readouterr().err


def test_checkpoint_resume_is_bit_exact(mnist_config, tmp_path, monkeypatch):
  # The step-4 checkpoint falls inside the evaluation interval (3, 6] and
  # between logs of layer factors: a resume that lost the losses or factors
  # accumulated since the last evaluation would change train_loss[1] (#31;
  # with checkpoints on evaluation steps it could not show).
  config = mnist_config(num_steps=6, eval_every=3, log_every=1,
                        checkpoint_every=2, methods='nag+layer',
                        eval_batch_size=5000, max_eval_examples=2000)
  straight = str(tmp_path / 'straight')
  train.train_and_evaluate(config, straight)

  interrupted = str(tmp_path / 'interrupted')
  original_save = workdir_lib.RunCheckpoints.save

  def save_then_stop(self, step, *args):
    original_save(self, step, *args)
    if step == 4:
      raise KeyboardInterrupt('stopped after the step-4 checkpoint')

  monkeypatch.setattr(workdir_lib.RunCheckpoints, 'save', save_then_stop)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, interrupted)
  monkeypatch.setattr(workdir_lib.RunCheckpoints, 'save', original_save)
  assert not os.path.exists(os.path.join(interrupted, 'runs',
                                         'nag+layer_seed0.json'))
  # Resuming verifies (hashes) each checkpoint once, not once per opening.
  checked = []
  original_problem = workdir_lib.RunCheckpoints._problem

  def counted_problem(self, step):
    checked.append((self.name, step))
    return original_problem(self, step)

  monkeypatch.setattr(workdir_lib.RunCheckpoints, '_problem', counted_problem)
  train.train_and_evaluate(config, interrupted)
  assert ('nag+layer_seed0', 4) in checked
  assert len(checked) == len(set(checked)), checked

  def final(workdir):
    checkpoints = workdir_lib.RunCheckpoints(
        os.path.join(workdir, 'checkpoints', 'nag+layer_seed0'))
    from experiments.lib import data as data_lib
    from experiments.lib import parallel
    from experiments.lib.methods import Method
    trainer = train.Trainer(config, data_lib.make_pipeline(config),
                            Method('nag', 'layer'), parallel.make_mesh())
    like = trainer.init(0)
    step, state, _ = checkpoints.restore(
        {'params': like.params, 'opt_state': like.opt_state})
    checkpoints.close()
    return step, state

  step_a, state_a = final(straight)
  step_b, state_b = final(interrupted)
  assert step_a == step_b == 6
  for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  run_a = json.load(open(os.path.join(straight, 'runs',
                                      'nag+layer_seed0.json')))
  run_b = json.load(open(os.path.join(interrupted, 'runs',
                                      'nag+layer_seed0.json')))
  for key in ('test_error', 'test_loss', 'train_loss', 'layer_factors'):
    assert run_a[key] == run_b[key], key
  # TensorBoard event files were written for the run.
  assert glob.glob(os.path.join(straight, 'tensorboard', 'nag+layer_seed0',
                                'events.out.tfevents.*'))


def test_run_names():
  assert records.run_name('sgd+layer', 3) == 'sgd+layer_seed3'
  assert records.run_name('sgd', 0, 0.01) == 'sgd_lr0.01_seed0'
  assert records.run_name('sgd', 0, 1.0) == 'sgd_lr1.0_seed0'


def test_a_failed_start_leaves_nothing_that_blocks_the_next(mnist_config,
                                                           tmp_path):
  """A config.json without runs (a run that failed before finishing any) is
  replaced by the next config; --overwrite always works."""
  workdir = str(tmp_path / 'w')
  workdir_lib.RunStore(workdir, mnist_config(num_steps=4))
  workdir_lib.RunStore(workdir, mnist_config(num_steps=6))  # no error
  os.makedirs(os.path.join(workdir, 'runs'), exist_ok=True)
  with open(os.path.join(workdir, 'runs', 'sgd_seed0.json'), 'w') as f:
    f.write('{}')
  with pytest.raises(workdir_lib.WorkdirError, match='changed: num_steps'):
    workdir_lib.RunStore(workdir, mnist_config(num_steps=8))
  workdir_lib.RunStore(workdir, mnist_config(num_steps=8), overwrite=True)
  assert os.listdir(os.path.join(workdir, 'runs')) == []
  backups = [d for d in os.listdir(workdir) if d.startswith('previous-')]
  assert len(backups) == 1


def test_keys_added_later_at_their_default_do_not_block_resume(
    mnist_config, tmp_path):
  workdir = str(tmp_path / 'w')
  store = workdir_lib.RunStore(workdir, mnist_config())
  store.save_run('sgd_seed0', records.RunRecord(method='sgd', seed=0))
  with open(os.path.join(workdir, 'config.json')) as f:
    old = json.load(f)
  del old['warmup_fraction']  # as written before the key existed
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump(old, f)
  workdir_lib.RunStore(workdir, mnist_config())  # the default: resumable
  with pytest.raises(workdir_lib.WorkdirError, match='warmup_fraction'):
    workdir_lib.RunStore(workdir, mnist_config(warmup_fraction=0.5))


def test_user_errors_are_one_line_and_leave_nothing(mnist_dir, tmp_path,
                                                   run_module):
  workdir = tmp_path / 'w'
  for args, message in (
      (['--config.data_source=local', f'--config.data_dir={tmp_path}/none'],
       'train-images-idx3-ubyte.gz'),
      (['--config.num_stpes=3'], 'no such key'),
      (['--config.methods=sgd,sdg'], 'unknown method'),
  ):
    proc = run_module('experiments.run', 'mnist_lenet', '--workdir',
                      str(workdir), *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith('error: ') and message in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not workdir.exists()  # nothing claimed, nothing to clean up


def test_ctrl_c_says_what_was_saved_and_how_to_resume(capsys):
  def interrupted():
    raise KeyboardInterrupt
  with pytest.raises(SystemExit) as exit_info:
    cli.user_errors_as_messages(interrupted)
  assert exit_info.value.code == 130
  assert 'run the same command again to resume' in capsys.readouterr().err


def _tiny_run_args(mnist_dir, workdir, *extra):
  return ['mnist_lenet', '--workdir', str(workdir),
          '--config.data_source=local', f'--config.data_dir={mnist_dir}',
          '--config.num_steps=4', '--config.num_seeds=1', '--config.methods=sgd',
          '--config.eval_every=2', '--config.log_every=2', *extra]


def test_a_read_only_workdir_is_refused_before_training(mnist_dir, tmp_path,
                                                         monkeypatch, capsys):
  """Read-only as a file system makes it (EROFS), whoever the user is; also
  tried on a read-only tmpfs mount (README, "Scale and faults")."""
  import errno
  import tempfile
  workdir = tmp_path / 'w'
  workdir.mkdir()
  (workdir / 'users_notes.txt').write_text('kept')

  def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, 'Read-only file system')

  monkeypatch.setattr(tempfile, 'NamedTemporaryFile', read_only)
  assert run_lib.main(_tiny_run_args(mnist_dir, workdir)) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"error: --workdir '{workdir}' cannot be written (Read-only "
                 'file system); choose a writable folder (nothing was '
                 'changed).']
  assert os.listdir(workdir) == ['users_notes.txt']


def test_a_full_disk_at_a_checkpoint_is_one_line_and_loses_nothing(
    mnist_dir, tmp_path, monkeypatch, capsys):
  """What orbax raises when the disk fills mid-checkpoint (as measured on a
  1 MB tmpfs): the run stops with one line; what was saved stays."""
  workdir = tmp_path / 'w'
  args = _tiny_run_args(mnist_dir, workdir, '--config.checkpoint_every=2',
                        '--config.methods=sgd,sgd+layer')
  import orbax.checkpoint as ocp
  real_save = ocp.CheckpointManager.save
  saves = []

  def save_until_full(self, step, *a, **kw):
    saves.append(step)
    if len(saves) > 2:  # sgd's checkpoints fit, sgd+layer's first does not
      raise ValueError(
          'RESOURCE_EXHAUSTED: Error writing "params" in OCDBT database: '
          "Failed to write 2202225 bytes: No space left on device "
          "[os_error_code='28']")
    return real_save(self, step, *a, **kw)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save_until_full)
  assert run_lib.main(args) == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert err.startswith('error: could not write the checkpoint of step 2 in '
                        f"--workdir '{workdir}': No space left on device. "
                        'Nothing already there was changed'), err
  assert 'run the same command to resume' in err
  assert os.listdir(workdir / 'runs') == ['sgd_seed0.json']
  # With space again, the same command finishes, keeping the finished run.
  monkeypatch.setattr(ocp.CheckpointManager, 'save', real_save)
  finished = (workdir / 'runs' / 'sgd_seed0.json').read_text()
  assert run_lib.main(args) == 0
  assert (workdir / 'runs' / 'sgd_seed0.json').read_text() == finished
  assert sorted(os.listdir(workdir / 'runs')) == ['sgd+layer_seed0.json',
                                                  'sgd_seed0.json']
