"""Training and evaluation: the step functions and the loop over runs.

- `make_train_step` / `make_eval_step`: pure, jittable functions of
  ``(state, batch, ...)``, as in Flax's examples.
- `Trainer`: one method at one base learning rate on one mesh, compiled once
  and shared by all its seeds; trains a group of seeds (one, or several
  vmapped) with checkpoints, TensorBoard files and evaluation.
- `train_runs`: trains a list of `RunSpec` into a `RunStore`, skipping
  finished runs and resuming unfinished ones (used by experiments and sweeps).
- `train_and_evaluate(config, workdir)`: every method x seed of an
  experiment, then ``results.json`` in `workdir` (its tables and plots are
  the analysis layer's: ``experiments.analysis.results.write_all``, which
  ``python -m experiments.run`` calls). `train_in_workers` does the same
  with the methods shared out to worker processes on this machine, each
  running `train_methods`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import layerlr_optax
from experiments.lib import fileio
from experiments import configs
from experiments.lib import data as data_lib
from experiments.lib import faults
from experiments.lib import interrupts
from experiments.lib import models
from experiments.lib import parallel
from experiments.lib import provenance
from experiments.lib import records
from experiments.lib import solvers
from experiments.lib import workdir as workdir_lib
from experiments.lib import workers as workers_lib
from experiments.lib.methods import Method
from experiments.lib.records import RunSpec

TrainBatch = tuple[jax.Array, jax.Array]


@flax.struct.dataclass
class TrainState:
  """What a training step updates: parameters and optimizer state."""
  params: Any
  opt_state: Any


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_train_step(model, optimizer: optax.GradientTransformation,
                    preprocess, layer_names: Sequence[str]):
  """``train_step(state, images, labels, seed, step) -> (state, metrics)``.

  `metrics` holds the mini-batch ``loss`` and the ``factors`` (one per layer,
  in `layer_names` order) the optimizer recorded for this step's gradient.
  Dropout keys are a function of (seed, step), so a resumed run repeats them.
  """
  layer_names = tuple(layer_names)

  def train_step(state: TrainState, images, labels, seed, step):
    images = preprocess(images)
    dropout = jax.random.fold_in(jax.random.key(seed), step)

    def loss_fn(params):
      logits = model.apply({'params': params}, images, train=True,
                           rngs={'dropout': dropout})
      return cross_entropy(logits, labels)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    factors = layerlr_optax.recorded_factors(opt_state)
    metrics = {'loss': loss,
               'factors': jnp.stack([factors[n] for n in layer_names])}
    return TrainState(optax.apply_updates(state.params, updates),
                      opt_state), metrics

  return train_step


def make_eval_step(model, preprocess):
  """``eval_step(params, images, labels, real) -> (correct, correct_top5,
  summed_loss)`` over the examples of one batch where `real` is true (the
  others pad the last batch to the sharded batch shape)."""

  def eval_step(params, images, labels, real):
    logits = model.apply({'params': params}, preprocess(images), train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    return (jnp.sum((jnp.argmax(logits, -1) == labels) & real),
            jnp.sum(jnp.any(top5 == labels[:, None], axis=-1) & real),
            jnp.sum(jnp.where(real, loss, 0.0)))

  return eval_step


class Trainer:
  """Compiled train/eval functions for one method and rate, for all seeds.

  `train` runs a group of seeds: a single seed with the plain step, or, when
  `vmapped`, several as one program vmapped over a leading seed axis
  (params, optimizer state, batches, dropout keys). Checkpoints, TensorBoard
  files and records stay per seed either way.
  """

  def __init__(self, config: ml_collections.ConfigDict,
               pipeline: data_lib.Pipeline, method: Method, mesh: Mesh,
               vmapped: bool = False, base_lr: float | None = None):
    self.config, self.pipeline, self.method = config, pipeline, method
    self.mesh, self.vmapped = mesh, vmapped
    n = mesh.devices.size
    if config.batch_size % n:
      raise configs.ConfigError(
          f'config.batch_size={config.batch_size} must be a multiple of the '
          f'{n} devices it is split over.')
    model = models.MODELS[config.model](num_classes=pipeline.num_classes)
    self.batch_sharding = parallel.batch_sharding(mesh, vmapped)
    self.eval_sharding = parallel.batch_sharding(mesh, False)
    self.replicated = NamedSharding(mesh, P())
    # This process's rows of every global train batch.
    self.rows = parallel.process_rows(self.eval_sharding,
                                      (config.batch_size,), 0)
    sample = jnp.zeros((1, *pipeline.input_shape), jnp.float32)
    init = lambda rng: model.init(rng, sample)['params']
    abstract = jax.eval_shape(init, jax.random.key(0))
    self.param_shardings = jax.tree.map(
        parallel.param_sharding(mesh, config.param_sharding), abstract)
    self._init = jax.jit(init, out_shardings=self.param_shardings)
    self.solver = solvers.make_solver(method, config, abstract, base_lr)
    self.layer_names = tuple(
        layerlr_optax.layer_partition(abstract, layers=self.solver.layers,
                                      stacked=self.solver.stacked))
    self._opt_init = jax.jit(self.solver.optimizer.init)
    self._train_step_fn = make_train_step(model, self.solver.optimizer,
                                          pipeline.preprocess,
                                          self.layer_names)
    self._compiled_train_step = None  # compiled on first use (shardings)
    eval_step = make_eval_step(model, pipeline.preprocess)
    if vmapped:
      eval_step = jax.vmap(eval_step, in_axes=(0, None, None, None))
    self._eval_step = jax.jit(eval_step, out_shardings=self.replicated)

  def init(self, seed: int) -> TrainState:
    params = self._init(jax.random.key(seed))
    # State derived from params follows their sharding; constants (step
    # counts) would land on one device: replicate them over the mesh.
    return TrainState(params, parallel.replicate_missing(
        self._opt_init(params), self.mesh))

  def train_step(self, state: TrainState):
    """The jitted train step for states laid out like `state`."""
    if self._compiled_train_step is None:
      shardings = jax.tree.map(lambda x: x.sharding, state)
      step = self._train_step_fn
      if self.vmapped:
        step = jax.vmap(step, in_axes=(0, 0, 0, 0, None))
      self._compiled_train_step = jax.jit(
          step,
          in_shardings=(shardings, self.batch_sharding, self.batch_sharding,
                        self.replicated, self.replicated),
          out_shardings=(shardings, self.replicated),
          donate_argnums=(0,))
    return self._compiled_train_step

  def put_batch(self, images: np.ndarray, labels: np.ndarray) -> TrainBatch:
    """This process's rows (`self.rows`) of a train batch, (batch, ...) or
    vmapped (seeds, batch, ...), as global arrays sharded over 'data'."""
    axis = 1 if self.vmapped else 0
    shapes = [x.shape[:axis] + (self.config.batch_size,) + x.shape[axis + 1:]
              for x in (images, labels)]
    return parallel.put_batch(self.batch_sharding, shapes, images, labels)

  def _eval_batches(self):
    """Global eval batches, a short last one padded to a multiple of the
    device count, as this process's rows: (images, labels, real) global
    arrays and the number of real examples."""
    devices = self.mesh.devices.size

    def padded(num_real):
      return -(-num_real // devices) * devices

    def rows_of(num_real):
      return parallel.process_rows(self.eval_sharding, (padded(num_real),), 0)

    evaluation = self.pipeline.eval
    for num_real, (images, labels) in zip(evaluation.batch_sizes(),
                                          evaluation.batches(rows_of)):
      # This process read only its rows holding data; the rest are padding.
      lo, hi = rows_of(num_real)
      pad = (hi - lo) - len(labels)
      if pad:
        images = np.concatenate(
            [images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
      real = np.arange(lo, hi) < num_real
      size = padded(num_real)
      local = (images, labels, real)
      yield (*parallel.put_batch(
          self.eval_sharding, [(size, *x.shape[1:]) for x in local], *local),
             num_real)

  def evaluate(self, params) -> list[dict[str, float]]:
    """Top-1/top-5 error (%) and mean loss over the eval split, per seed."""
    correct = correct5 = loss = 0.0
    count = 0
    for images, labels, real, num_real in self._eval_batches():
      c, c5, l = self._eval_step(params, images, labels, real)
      correct = correct + np.asarray(c, np.int64)
      correct5 = correct5 + np.asarray(c5, np.int64)
      loss = loss + np.asarray(l, np.float64)
      count += num_real
    return [{'test_error': 100.0 * (1.0 - float(c) / count),
             'test_top5_error': 100.0 * (1.0 - float(c5) / count),
             'test_loss': float(l) / count}
            for c, c5, l in zip(np.atleast_1d(correct),
                                np.atleast_1d(correct5),
                                np.atleast_1d(loss))]

  def train(self, specs: Sequence[RunSpec], store: workdir_lib.RunStore,
            progress) -> list[records.RunRecord]:
    """Trains the seeds of `specs` together; one finished record per run."""
    return _Loop(self, list(specs), store, progress).run()


class _Loop:
  """The training loop of one group of runs (state of one `Trainer.train`)."""

  def __init__(self, trainer: Trainer, specs: list[RunSpec],
               store: workdir_lib.RunStore, progress):
    if len(specs) > 1 and not trainer.vmapped:
      raise ValueError('a sequential Trainer trains one seed at a time.')
    self.trainer, self.specs, self.store = trainer, specs, store
    self.progress = progress
    self.config = trainer.config

  def _restore(self):
    """Fresh or checkpointed state and record of every run."""
    trainer, config = self.trainer, self.config
    every = config.checkpoint_every
    self.checkpoints = [self.store.checkpoints(s.name) if every else None
                        for s in self.specs]
    states, self.records, self.pending, starts = [], [], [], []
    for spec, ckpt in zip(self.specs, self.checkpoints):
      state = trainer.init(spec.seed)
      record = records.RunRecord(
          method=spec.method.name, seed=spec.seed,
          base_lr=trainer.solver.base_lr,
          layer_factors={name: [] for name in trainer.layer_names})
      pending: list[float] = []
      start = 0
      if ckpt is not None and ckpt.latest_step() is not None:
        try:
          start, saved, saved_record = ckpt.restore(
              {'params': state.params, 'opt_state': state.opt_state})
        except workdir_lib.NoCheckpoint:
          saved = None  # every checkpoint was unreadable: from step 0
        if saved is not None:
          state = TrainState(saved['params'], saved['opt_state'])
          record = records.RunRecord.from_json(saved_record['record'])
          pending = list(saved_record['pending_losses'])
      states.append(state)
      self.records.append(record)
      self.pending.append(pending)
      starts.append(start)
    if len(set(starts)) > 1:
      raise ValueError(f'runs {[s.name for s in self.specs]} resume from '
                       f'different steps {starts}; group them with '
                       'parallel.seed_groups(..., start_step=...).')
    if trainer.vmapped:
      state = parallel.stack_seeds(states, trainer.mesh)
    else:
      state, = states
    return state, starts[0]

  def _record_window(self, step0: int, losses: np.ndarray,
                     factors: np.ndarray, writers) -> None:
    """Logs one window of `log_every` steps: (steps, seeds) losses and
    (seeds, layers) mean factors."""
    config, trainer = self.config, self.trainer
    step = step0 + config.log_every
    for i, (spec, record, writer) in enumerate(
        zip(self.specs, self.records, writers)):
      if record.diverged_at is not None:
        continue
      finite = np.isfinite(losses[:, i])
      if not finite.all():
        first = step0 + int(np.argmin(finite))
        if config.on_divergence == 'raise':
          raise FloatingPointError(
              f'{spec.name}: non-finite training loss at step {first}. '
              'The learning rate is probably too large; '
              '--config.on_divergence=record records such runs as diverged '
              'instead (sweeps do).')
        record.diverged_at = first
        continue
      self.pending[i] += losses[:, i].tolist()
      record.factor_steps.append(step)
      for name, value in zip(trainer.layer_names, factors[i]):
        record.layer_factors[name].append(float(value))
      writer.add_scalar('train/loss', float(losses[:, i].mean()), step)
      writer.add_scalar('train/learning_rate',
                        float(trainer.solver.schedule(step - 1)), step)
      for name, value in zip(trainer.layer_names, factors[i]):
        writer.add_scalar(f'layer_factor/{name}', float(value), step)

  def _record_eval(self, step: int, state: TrainState, writers) -> None:
    metrics = self.trainer.evaluate(state.params)
    rate = float(self.trainer.solver.schedule(step - 1))
    for i, (record, writer, values) in enumerate(
        zip(self.records, writers, metrics)):
      record.learning_rate.append(rate)
      if record.diverged_at is not None:
        for key in values:
          getattr(record, key).append(None)
        record.train_loss.append(None)
        continue
      for key, value in values.items():
        getattr(record, key).append(value)
        writer.add_scalar(f'eval/{key}', value, step)
      record.train_loss.append(float(np.mean(self.pending[i])))
      self.pending[i] = []
      writer.flush()

  def _latest_test_error(self) -> float | None:
    errors = [r.test_error[-1] for r in self.records
              if r.test_error and r.test_error[-1] is not None]
    return float(np.mean(errors)) if errors else None

  def _checkpoint(self, step: int, state: TrainState) -> None:
    for i, (record, ckpt) in enumerate(zip(self.records, self.checkpoints)):
      own = state
      if self.trainer.vmapped:
        own = jax.tree.map(lambda x, i=i: x[i], state)
      ckpt.save(step, {'params': own.params, 'opt_state': own.opt_state},
                {'record': record.to_json(), 'pending_losses': self.pending[i]})

  def run(self) -> list[records.RunRecord]:
    trainer, config = self.trainer, self.config
    state, start_step = self._restore()
    group = len(self.specs)
    self.progress.update(start_step * group)
    step_fn = trainer.train_step(state)
    writers = [self.store.tensorboard(s.name) for s in self.specs]
    batch_iters = [trainer.pipeline.train.batches(s.seed, start_step,
                                                  config.num_steps,
                                                  rows=trainer.rows)
                   for s in self.specs]
    seeds = [s.seed for s in self.specs]
    seed_arr = jnp.asarray(seeds if trainer.vmapped else seeds[0], jnp.uint32)
    every = config.checkpoint_every
    t_start = time.perf_counter()
    step = start_step
    steady = None  # (time, step) at the end of the first window
    for step0 in range(start_step, config.num_steps, config.log_every):
      t0 = time.perf_counter()
      losses, factors = [], []
      for step in range(step0, step0 + config.log_every):
        host = [next(it) for it in batch_iters]
        if trainer.vmapped:
          host = [np.stack([b[0] for b in host]),
                  np.stack([b[1] for b in host])]
        else:
          host = host[0]
        images, labels = trainer.put_batch(*host)
        state, metrics = step_fn(state, images, labels, seed_arr,
                                 jnp.asarray(step, jnp.uint32))
        faults.kill_point('step')
        interrupts.check()
        losses.append(metrics['loss'])
        factors.append(metrics['factors'])
      # (log_every, seeds) and (seeds, layers), also for one unvmapped seed.
      losses = np.asarray(jnp.stack(losses)).reshape(config.log_every, -1)
      factors = np.asarray(jnp.stack(factors)).mean(axis=0).reshape(group, -1)
      self._record_window(step0, losses, factors, writers)
      step = step0 + config.log_every
      dt = time.perf_counter() - t0
      self.progress.update(config.log_every * group)
      finite = losses[np.isfinite(losses)]
      if step % config.eval_every == 0:
        self._record_eval(step, state, writers)
      postfix = {
          'loss': f'{finite.mean():.4f}' if finite.size else 'nan',
          'img_s': f'{config.log_every * config.batch_size * group / dt:.0f}'}
      latest = self._latest_test_error()
      if latest is not None:  # the run's latest evaluation (mean of seeds)
        postfix['test_err'] = f'{latest:.2f}%'
      self.progress.set_postfix(postfix)
      if every and (step % every == 0 or step == config.num_steps):
        elapsed = (time.perf_counter() - t_start) / group
        t_start = time.perf_counter()
        for record in self.records:
          record.wall_seconds += elapsed
        self._checkpoint(step, state)
      if steady is None:
        steady = (time.perf_counter(), step)
      if all(r.diverged_at is not None for r in self.records):
        break
    if steady is not None and step > steady[1]:
      rate = (step - steady[1]) / (time.perf_counter() - steady[0])
      for record in self.records:
        record.steps_per_second = rate
    self._finish_diverged(step)
    elapsed = (time.perf_counter() - t_start) / group
    for record, writer, ckpt in zip(self.records, writers, self.checkpoints):
      writer.close()
      record.wall_seconds += elapsed
      if ckpt is not None:
        ckpt.close()
    return self.records

  def _finish_diverged(self, step: int) -> None:
    """Runs that all diverged stop early: their remaining evaluations are
    None (the learning-rate column keeps the schedule)."""
    config = self.config
    skipped = config.num_steps - step
    if skipped <= 0:
      return
    self.progress.update(skipped * len(self.specs))
    for k in range(step + config.eval_every - step % config.eval_every,
                   config.num_steps + 1, config.eval_every):
      rate = float(self.trainer.solver.schedule(k - 1))
      for record in self.records:
        record.learning_rate.append(rate)
        for key in records.EVAL_KEYS:
          if key != 'learning_rate':
            getattr(record, key).append(None)


def _progress(total: int):
  from tqdm.auto import tqdm
  return tqdm(total=total, unit='step', smoothing=0.05, mininterval=2.0,
              dynamic_ncols=True)


def train_runs(config: ml_collections.ConfigDict, specs: Sequence[RunSpec],
               store: workdir_lib.RunStore,
               pipeline: data_lib.Pipeline | None = None,
               mesh: Mesh | None = None) -> bool:
  """Trains every spec not yet in `store`; saves each finished run there.

  Runs of one (method, base_lr) share a compiled `Trainer`; their seeds run
  one after another or vmapped (`config.seed_parallelism`). Returns whether
  the seeds were vmapped.
  """
  todo = [s for s in specs if not store.has_run(s.name)]
  vmapped = parallel.seeds_vmapped(config.seed_parallelism)
  if not todo:
    return vmapped
  # Read each run's latest checkpoint step once (it opens an orbax manager).
  start_steps = {s.name: store.checkpoint_step(s.name) for s in todo}
  done = len(specs) - len(todo)
  resumed = [f'{s.name} from step {start_steps[s.name]}' for s in todo
             if start_steps[s.name]]
  if done or resumed:
    print(f'resuming in {store.workdir}: {done} of {len(specs)} runs are '
          f'finished and kept; training the other {len(todo)}'
          + (f' (from the last good checkpoint: {", ".join(resumed)})'
             if resumed else '') + '.', file=sys.stderr, flush=True)
  pipeline = pipeline or data_lib.make_pipeline(config)
  mesh = mesh or parallel.make_mesh()
  commit, device, software = (provenance.code_commit(),
                              provenance.device_description(),
                              provenance.versions())
  by_point: dict[tuple[Method, float | None], list[RunSpec]] = {}
  for spec in todo:
    by_point.setdefault((spec.method, spec.base_lr), []).append(spec)
  with _progress(len(todo) * config.num_steps) as progress:
    for (method, base_lr), point_specs in by_point.items():
      trainer = Trainer(config, pipeline, method, mesh, vmapped=vmapped,
                        base_lr=base_lr)
      groups = parallel.seed_groups(
          point_specs, vmapped, config.max_vmapped_seeds,
          start_step=lambda s: start_steps[s.name])
      for group in groups:
        progress.set_description(', '.join(s.name for s in group))
        trained = trainer.train(group, store, progress)
        for spec, record in zip(group, trained):
          record.commit, record.device = commit, device
          record.versions = software
          store.save_run(spec.name, record)
  # Every process reads the runs process 0 wrote.
  parallel.barrier('layerlr_runs_saved')
  return vmapped


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       overwrite: bool = False) -> records.Results:
  """Runs the experiment `config` in `workdir` and writes its outputs.

  Args:
    config: the experiment's ConfigDict (see experiments/configs/).
    workdir: where runs and outputs go. A finished experiment there is never
      overwritten unless `overwrite` (which moves it aside, not deletes it);
      an unfinished one with the same config is resumed.
    overwrite: start afresh even if `workdir` holds results.

  Returns:
    The `records.Results` written to ``workdir/results.json``.
  """
  if config.get('distributed'):  # before anything starts JAX's backend
    parallel.initialize_distributed()
  methods = configs.validate(config)
  # The data is found and read before the workdir is claimed, so that a
  # wrong data_dir leaves nothing behind.
  pipeline = data_lib.make_pipeline(config)
  store = workdir_lib.RunStore(workdir, config, overwrite=overwrite)
  if parallel.is_writer():  # the workdir is claimed: training starts
    print(f'While it runs, python -m experiments.report {workdir} writes '
          'the table and plots of the runs finished so far.',
          file=sys.stderr)
  try:
    return _train_and_write(config, workdir, methods, pipeline, store)
  finally:
    store.close()


def train_methods(config: ml_collections.ConfigDict, workdir: str,
                  only: str | Sequence[str]) -> int:
  """A worker's share of an experiment: trains (or resumes) every seed of
  the methods `only` names into `workdir`, and writes no outputs; returns
  how many runs it trained.

  Run inside the claim of a parent that made the workdir
  (`train_in_workers`), or alone on a workdir no one else uses.
  """
  methods = workers_lib.select(configs.validate(config), only,
                               'config.methods')
  pipeline = data_lib.make_pipeline(config)
  store = workdir_lib.RunStore(workdir, config)
  try:
    specs = _specs(config, methods)
    todo = sum(not store.has_run(s.name) for s in specs)
    train_runs(config, specs, store, pipeline)
    return todo
  finally:
    store.close()


def train_in_workers(config: ml_collections.ConfigDict, workdir: str,
                     argv: Sequence[str], workers: int,
                     overwrite: bool = False) -> records.Results | None:
  """`train_and_evaluate` with the methods shared out (round-robin) to
  `workers` processes of ``python -m experiments.run ARGV --only ...`` on
  this machine, e.g. to fill one accelerator; their logs are in
  ``workdir/workers/``.

  Returns:
    The results, written once every run has finished.

  Raises:
    workers.Unfinished: a worker failed; the finished runs are kept and the
      same command resumes the others.
    KeyboardInterrupt: Ctrl-C (or SIGTERM) stopped the workers, each after
      saving what it finished.
  """
  problem = workers_lib.parallel_error(workers,
                                       bool(config.get('distributed')))
  if problem:
    raise configs.ConfigError(problem)
  methods = configs.validate(config)
  pipeline = data_lib.make_pipeline(config)
  store = workdir_lib.RunStore(workdir, config, overwrite=overwrite)
  start = time.perf_counter()
  try:
    codes, interrupted = workers_lib.run(
        'experiments.run', argv, methods, workers,
        os.path.join(workdir, 'workers'), store.claim.lease_env())
    if interrupted:
      raise KeyboardInterrupt
    missing = [s.name for s in _specs(config, methods)
               if not store.has_run(s.name)]
    if missing:
      raise workers_lib.Unfinished(
          f'{len(missing)} runs are not finished ({", ".join(missing[:6])}'
          f'{", ..." if len(missing) > 6 else ""}; worker exit statuses '
          f'{codes}); the finished ones are kept in --workdir/runs/. Fix '
          'what the workers\' logs say, then run the same command again to '
          'resume.')
    return _train_and_write(config, workdir, methods, pipeline, store,
                            start)
  finally:
    store.close()


def _specs(config: ml_collections.ConfigDict,
           methods: Sequence[Method]) -> list[RunSpec]:
  seeds = [config.seed_offset + i for i in range(config.num_seeds)]
  return [RunSpec(m, s) for m in methods for s in seeds]


def _train_and_write(config, workdir: str, methods, pipeline,
                     store: workdir_lib.RunStore,
                     start: float | None = None) -> records.Results:
  """Trains what is missing, then writes results.json; `start` is when the
  session began (`time.perf_counter`), if before this call."""
  specs = _specs(config, methods)
  start = time.perf_counter() if start is None else start
  vmapped = train_runs(config, specs, store, pipeline)
  runs = [store.load_run(spec.name) for spec in specs]
  results = records.Results(
      experiment=config.experiment,
      eval_steps=list(range(config.eval_every, config.num_steps + 1,
                            config.eval_every)),
      runs=runs,
      config=fileio.json_ready(config.to_dict()),
      wall_seconds=sum(r.wall_seconds for r in runs),
      session_wall_seconds=time.perf_counter() - start,
      backend=jax.default_backend(),
      device=provenance.device_description(),
      seeds_vmapped=vmapped,
      versions=provenance.versions(),
      commit=provenance.code_commit(),
      data=data_lib.identity(config),
  )
  if parallel.is_writer():
    store.write_json('results.json', results.to_json())
  parallel.barrier('layerlr_results_written')
  return results
