"""A workdir that never loses results: finished runs on disk, resumable."""

from __future__ import annotations

import contextlib
import datetime
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import ml_collections

from experiments.lib import faults
from experiments.lib import fileio
from experiments.lib import records
from experiments.lib import workdir_lock
from experiments.configs import _common
from experiments.lib import parallel

# Keys that may change between a run and its resumption: they select *which*
# runs to do or where data comes from, not what one run computes.
RESUMABLE_KEYS = frozenset({
    'methods', 'num_seeds', 'seed_offset', 'data_source', 'data_dir',
    'eval_batch_size', 'paper_table', 'checkpoint_every', 'param_sharding',
    'distributed', 'on_divergence', 'sweep',
    # Read only by +frozen methods, whose file is never rewritten with other
    # factors (`python -m experiments.report frozen` refuses).
    'frozen_factors',
})


def default_config() -> dict[str, Any]:
  """Every config key at its default (base_config), as plain JSON."""
  return fileio.json_ready(_common.base_config().to_dict())


class NoCheckpoint(Exception):
  """Every checkpoint of a run was skipped: it starts from step 0."""


class WorkdirError(RuntimeError):
  """The workdir holds something we must not overwrite or mix with."""


# Errors that mean "this folder cannot take more data": the user's to fix.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES,
                             errno.EPERM, errno.EDQUOT, errno.EFBIG})


def is_storage_error(e: BaseException) -> bool:
  if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
    return True
  # Orbax/TensorStore report a full disk as ValueError('RESOURCE_EXHAUSTED:
  # ...') or ('PERMISSION_DENIED: ...').
  return isinstance(e, ValueError) and str(e).startswith(
      ('RESOURCE_EXHAUSTED', 'PERMISSION_DENIED'))


def storage_error(workdir: str, what: str, e: BaseException) -> 'WorkdirError':
  """The one-line error for a write the workdir refused."""
  reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
  code = re.search(r"os_error_code='?(\d+)", reason)
  if code:  # TensorStore's long message ends in the OS error: say that.
    reason = os.strerror(int(code.group(1)))
  return WorkdirError(
      f'could not write {what} in --workdir {workdir!r}: '
      f'{reason.splitlines()[0][:200]}. '
      'Nothing already there was changed: finished runs stay in its runs/ '
      'folder and the last complete checkpoint stays usable. Free space or '
      'choose a writable folder, then run the same command to resume.')


class RunCheckpoints:
  """Orbax checkpoints of one run: the train state and the partial record
  (a JSON dict), so a resumed run continues bit for bit.

  Every checkpoint gets an integrity manifest (the SHA-256 of each of its
  files) in ``<directory>.integrity/<step>.json``, written after orbax
  finished it. On opening, checkpoints are checked newest first: one whose
  files changed, were cut or are missing is moved to
  ``<directory>.skipped/`` (never deleted) with a warning saying which and
  why, and the run resumes from the newest good one (or from the start).
  A checkpoint without a manifest (killed between orbax's finish and the
  manifest, or written before manifests existed) is complete by orbax's
  atomic rename and is used; if orbax cannot read it, it is skipped too.
  """

  def __init__(self, directory: str, max_to_keep: int = 2,
               workdir: str | None = None, name: str | None = None,
               verify: bool = True):
    import orbax.checkpoint as ocp
    self._ocp = ocp
    self._writer = parallel.is_writer()
    self._workdir = workdir or directory
    self._max_to_keep = max_to_keep
    self.directory = os.path.abspath(directory)
    self.name = name or os.path.basename(self.directory)
    self._integrity = self.directory + '.integrity'
    if verify:  # (False: this process verified them already, nothing since)
      self._skip_bad_checkpoints()
    self._open()

  def _open(self):
    ocp = self._ocp
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep,
                                             create=True))

  def _steps(self) -> list[int]:
    if not os.path.isdir(self.directory):
      return []
    return sorted((int(n) for n in os.listdir(self.directory) if n.isdigit()),
                  reverse=True)

  def _digest(self, step: int) -> dict[str, str]:
    root = os.path.join(self.directory, str(step))
    digests = {}
    for folder, _, files in os.walk(root):
      for fname in files:
        path = os.path.join(folder, fname)
        h = hashlib.sha256()
        with open(path, 'rb') as f:
          for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
        digests[os.path.relpath(path, root)] = h.hexdigest()
    return digests

  def _problem(self, step: int) -> str | None:
    """Why checkpoint `step` cannot be trusted, or None."""
    manifest = os.path.join(self._integrity, f'{step}.json')
    if not os.path.exists(manifest):
      return None
    try:
      with open(manifest) as f:
        expected = json.load(f)['files']
    except (OSError, ValueError, KeyError) as e:
      return f'its integrity manifest is unreadable ({e})'
    actual = self._digest(step)
    missing = sorted(set(expected) - set(actual))
    if missing:
      return f'{len(missing)} file(s) missing, e.g. {missing[0]}'
    changed = sorted(k for k in expected if expected[k] != actual[k])
    if changed:
      return (f'{len(changed)} file(s) changed or cut since it was written '
              f'(SHA-256 mismatch), e.g. {changed[0]}')
    return None

  def _move_aside(self, step: int, why: str) -> None:
    skipped = self.directory + '.skipped'
    os.makedirs(skipped, exist_ok=True)
    target = os.path.join(skipped, f'{step}-{time.strftime("%Y%m%d-%H%M%S")}')
    os.replace(os.path.join(self.directory, str(step)), target)
    manifest = os.path.join(self._integrity, f'{step}.json')
    if os.path.exists(manifest):
      os.replace(manifest, target + '.integrity.json')
    older = [s for s in self._steps() if s < step]
    print(f'warning: checkpoint step {step} of {self.name} is skipped: '
          f'{why}. Moved to {target}; '
          + (f'resuming from step {older[0]}.' if older else
             'no older checkpoint, so this run starts from step 0.'),
          file=sys.stderr, flush=True)

  def _skip_bad_checkpoints(self) -> None:
    """Process 0 checks and moves bad checkpoints aside; the others wait."""
    if parallel.is_writer():
      for step in self._steps():
        why = self._problem(step)
        if why is None:
          break
        self._move_aside(step, why)
    parallel.barrier('layerlr_checkpoints_checked')

  def _write_manifest(self, step: int) -> None:
    os.makedirs(self._integrity, exist_ok=True)
    fileio.write_atomic(
        os.path.join(self._integrity, f'{step}.json'),
        json.dumps({'step': step, 'files': self._digest(step)}))
    for name in os.listdir(self._integrity):  # of steps orbax removed
      stem = name.split('.')[0]
      if stem.isdigit() and not os.path.isdir(
          os.path.join(self.directory, stem)):
        os.remove(os.path.join(self._integrity, name))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state, record: dict) -> None:
    ocp = self._ocp
    try:
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          record=ocp.args.JsonSave(record)))
      faults.kill_point('checkpoint_write')
      self.manager.wait_until_finished()
      faults.kill_point('checkpoint_manifest')
      if self._writer:
        self._write_manifest(step)
    except Exception as e:
      if is_storage_error(e):
        # The unfinished step's temporary folder would only fill the disk.
        for partial in glob.glob(os.path.join(
            self.manager.directory, f'{step}.orbax-checkpoint-tmp*')):
          shutil.rmtree(partial, ignore_errors=True)
        raise storage_error(self._workdir, f'the checkpoint of step {step}',
                            e) from e
      raise

  def restore(self, like, step: int | None = None):
    """(step, state, record); arrays placed like those of the state `like`."""
    import jax
    ocp = self._ocp
    step = self.manager.latest_step() if step is None else step
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        like)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          record=ocp.args.JsonRestore()))
    except Exception as e:
      # Unreadable although it passed the manifest check (or had none).
      self.manager.close()
      if self._writer:
        self._move_aside(step, f'orbax cannot read it ({type(e).__name__}: '
                         f'{str(e).splitlines()[0][:200]})')
      parallel.barrier('layerlr_checkpoint_moved_aside')
      self._skip_bad_checkpoints()
      self._open()
      if self.manager.latest_step() is None:
        raise NoCheckpoint(self.name) from e
      return self.restore(like)
    return step, restored['state'], dict(restored['record'])

  def close(self) -> None:
    self.manager.close()


def _remove_stale_temporaries(*folders: str) -> None:
  """Removes the temporary files of writers that were killed mid-write
  (`fileio.write_atomic`'s ``NAME.tmp<pid>`` of a process no longer
  running): the file they were replacing is intact."""
  for folder in folders:
    for name in os.listdir(folder):
      match = re.search(r'\.tmp(\d+)$', name)
      if not match:
        continue
      try:
        os.kill(int(match.group(1)), 0)
        continue  # its writer is still running
      except ProcessLookupError:
        pass
      except OSError:
        continue
      with contextlib.suppress(OSError):
        os.remove(os.path.join(folder, name))


def _check_writable(workdir: str) -> None:
  """Fails before anything is claimed if `workdir` cannot be written."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix='.write-probe-'):
      pass
  except OSError as e:
    raise WorkdirError(
        f'--workdir {workdir!r} cannot be written ({e.strerror or e}); '
        'choose a writable folder (nothing was changed).') from e


class RunStore:
  """``workdir/config.json`` + ``workdir/runs/<method>_seed<k>.json``."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict,
               overwrite: bool = False,
               resumable_keys: frozenset[str] = frozenset(),
               finished_marker: str | None = 'results.json',
               methods: Iterable[str] | None = None):
    """Claims `workdir` for `config`.

    The claim is exclusive (`workdir_lock`): a second process on the same
    workdir is refused, naming the holder; `close` (or the process's exit)
    releases it.

    Args:
      workdir: the folder.
      config: the experiment config; runs of another config are refused.
      overwrite: move a finished or partial experiment aside and start afresh.
      resumable_keys: config keys beyond `RESUMABLE_KEYS` that may change
        between sessions (e.g. a sweep's grid, whose runs name their rate).
      finished_marker: the file whose presence means "finished" (None: a
        workdir that is never finished, e.g. a sweep that can always grow).
      methods: for a worker inside its parent's claim (``sweep
        --parallel``), the methods it trains: it locks only those.
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      raise WorkdirError(f'--workdir {workdir!r} exists and is not a folder.')
    self.workdir = workdir
    self.runs_dir = os.path.join(workdir, 'runs')
    self.config = fileio.json_ready(config.to_dict())
    self._verified: set[str] = set()
    # Every process checks (reading only, so all see the same folder and
    # fail alike); process 0 alone then writes, and the others wait for it.
    _check_writable(workdir)
    self.claim = (workdir_lock.WorkdirClaim(workdir, methods)
                  if parallel.is_writer() else None)
    try:
      self._claim(workdir, config_path=os.path.join(workdir, 'config.json'),
                  overwrite=overwrite, resumable_keys=resumable_keys,
                  finished_marker=finished_marker)
    except BaseException:
      self.close()
      raise

  def close(self) -> None:
    """Releases the workdir to other processes."""
    if self.claim is not None:
      self.claim.release()

  def _claim(self, workdir: str, config_path: str, overwrite: bool,
             resumable_keys: frozenset[str],
             finished_marker: str | None) -> None:
    finished = bool(finished_marker) and os.path.exists(
        os.path.join(workdir, finished_marker))
    if finished and not overwrite:
      raise WorkdirError(
          f'{workdir!r} already holds a finished experiment '
          f'({finished_marker}).'
          ' Use a new --workdir, or pass --overwrite to move the old outputs '
          f'to {workdir}/previous-<time>/ and start afresh.')
    move_aside = finished or (overwrite and (
        self._holds_runs() or os.path.exists(config_path)))
    if not move_aside:
      self._refuse_other_config(config_path, resumable_keys)
    if parallel.is_writer():
      os.makedirs(self.runs_dir, exist_ok=True)
      _remove_stale_temporaries(workdir, self.runs_dir)
      if move_aside:
        self._move_aside()
      fileio.write_atomic(config_path, json.dumps(self.config, indent=1))
    parallel.barrier('layerlr_workdir_claimed')

  def _refuse_other_config(self, config_path: str,
                           resumable_keys: frozenset[str]) -> None:
    """Refuses runs of another config (a stale config.json without runs, of
    a run that failed before any finished, is simply replaced)."""
    if not (os.path.exists(config_path) and self._holds_runs()):
      return
    with open(config_path) as f:
      previous = json.load(f)
    defaults = default_config()
    # A key added to the configs after these runs were made, at its
    # default, does not change what they computed.
    changed = sorted(
        k for k in set(previous) | set(self.config)
        if k not in RESUMABLE_KEYS | resumable_keys
        and previous.get(k, defaults.get(k)) != self.config.get(k))
    if changed:
      raise WorkdirError(
          f'{self.workdir!r} holds runs of a different configuration '
          f'(changed: {", ".join(changed)}); resuming would mix them. Use a '
          'new --workdir, or pass --overwrite to move the old runs aside.')

  def _holds_runs(self) -> bool:
    """Finished runs or checkpoints: what a config change must not mix
    with. Without them a stale config.json (a run that failed before any
    run finished) is simply replaced."""
    checkpoints = os.path.join(self.workdir, 'checkpoints')
    return (os.path.isdir(self.runs_dir) and bool(os.listdir(self.runs_dir))) or (
        os.path.isdir(checkpoints) and bool(os.listdir(checkpoints)))

  def _move_aside(self) -> None:
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    backup = os.path.join(self.workdir, f'previous-{stamp}')
    os.makedirs(backup)
    keep = (workdir_lock.LOCK_NAME, workdir_lock.METHOD_LOCKS)
    for name in os.listdir(self.workdir):
      if not name.startswith('previous-') and name not in keep:
        os.replace(os.path.join(self.workdir, name),
                   os.path.join(backup, name))
    os.makedirs(self.runs_dir, exist_ok=True)

  def _run_path(self, name: str) -> str:
    return os.path.join(self.runs_dir, f'{name}.json')

  def has_run(self, name: str) -> bool:
    return os.path.exists(self._run_path(name))

  def save_run(self, name: str, record: records.RunRecord) -> None:
    """Writes a finished run (process 0; every process has the same)."""
    if not parallel.is_writer():
      return
    try:
      fileio.write_atomic(self._run_path(name), json.dumps(record.to_json()),
                          kill_point='run_json')
    except OSError as e:
      if is_storage_error(e):
        raise storage_error(self.workdir, f'runs/{name}.json', e) from e
      raise

  def load_run(self, name: str) -> records.RunRecord:
    with open(self._run_path(name)) as f:
      return records.RunRecord.from_json(json.load(f))

  def write_json(self, name: str, obj: Any) -> None:
    if not parallel.is_writer():
      return
    try:
      fileio.write_json(os.path.join(self.workdir, name), obj)
    except OSError as e:
      if is_storage_error(e):
        raise storage_error(self.workdir, name, e) from e
      raise

  def _checkpoint_dir(self, name: str) -> str:
    return os.path.join(self.workdir, 'checkpoints', name)

  def checkpoints(self, name: str) -> RunCheckpoints:
    """The checkpoints of run `name`, verified against their manifests the
    first time this store opens them (hashing is the slow part of resuming
    a large model; later openings see what this process wrote)."""
    checkpoints = RunCheckpoints(self._checkpoint_dir(name),
                                 workdir=self.workdir, name=name,
                                 verify=name not in self._verified)
    self._verified.add(name)
    return checkpoints

  def checkpoint_step(self, name: str) -> int | None:
    """The step a run would resume from (None: no checkpoint yet)."""
    if not os.path.isdir(self._checkpoint_dir(name)):
      return None
    checkpoints = self.checkpoints(name)
    try:
      return checkpoints.latest_step()
    finally:
      checkpoints.close()

  def tensorboard(self, name: str):
    """A TensorBoard event-file writer for one run (tensorboardX); one that
    writes nothing on processes other than 0."""
    if not parallel.is_writer():
      return _NoWriter()
    from tensorboardX import SummaryWriter
    return SummaryWriter(os.path.join(self.workdir, 'tensorboard', name))


class _NoWriter:
  """The TensorBoard writer of processes that do not write."""

  def add_scalar(self, *args, **kwargs):
    pass

  def flush(self):
    pass

  def close(self):
    pass
