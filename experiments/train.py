"""Training and evaluation: every (method, seed) run of one experiment.

`train_and_evaluate(config, workdir)` runs all methods x seeds (the seeds of
a method one after another, or as one vmapped program: `seeds_vmapped`),
data-parallel over every visible device, writing each finished run to
``workdir/runs/``, orbax checkpoints (every ``config.checkpoint_every`` steps and at the end) to
``workdir/checkpoints/`` and TensorBoard event files to
``workdir/tensorboard/``; then ``results.json``, ``table.md``, ``curves.png``
and ``layer_rates.png``. Running again with the same workdir skips finished
runs and resumes an unfinished one from its last checkpoint.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import layerlr_optax
from experiments import data as data_lib
from experiments import input_pipeline
from experiments import models
from experiments import report
from experiments import solvers
from experiments import workdir as workdir_lib

DATA_SOURCES = data_lib.SOURCES + ('synthetic',)
PARAM_SHARDINGS = ('replicated', 'fsdp')
SEED_PARALLELISM = ('auto', 'vmap', 'sequential')


def seeds_vmapped(config: ml_collections.ConfigDict) -> bool:
  """Whether the seeds of a method train as one vmapped program.

  'auto' picks what `python -m benchmarks.train_step` measured faster on the
  backend: on XLA:CPU a vmapped step of 4 LeNet seeds took ~2x as long as the
  4 steps one after another (benchmarks/results/train_step_cpu.json), so
  seeds run sequentially there; on accelerators, where one small step leaves
  the chip mostly idle, they are vmapped.
  """
  mode = config.get('seed_parallelism', 'auto')
  if mode == 'auto':
    return jax.default_backend() != 'cpu'
  return mode == 'vmap'


def seed_groups(seeds, vmapped: bool, max_per_group: int = 0,
                start_step=None) -> list[list[int]]:
  """Splits seeds into the groups that train together (in lockstep).

  Sequential: one seed per group. Vmapped: seeds that resume from the same
  step (`start_step(seed)`, e.g. their latest checkpoint) share a group, at
  most `max_per_group` (0: no limit) per group.
  """
  if not vmapped:
    return [[s] for s in seeds]
  by_start: dict[Any, list[int]] = {}
  for seed in seeds:
    by_start.setdefault(start_step(seed) if start_step else 0, []).append(seed)
  size = max_per_group or len(seeds)
  return [group[i:i + size] for group in by_start.values()
          for i in range(0, len(group), size)]


def validate_config(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Checks what a user can get wrong in a config; returns the methods."""
  methods = solvers.parse_methods(config.methods)
  positive = ('num_seeds', 'num_steps', 'eval_every', 'log_every',
              'batch_size', 'eval_batch_size')
  for key in positive:
    if int(config[key]) <= 0:
      raise ValueError(f'config.{key} must be a positive integer, got '
                       f'{config[key]}.')
  if config.num_steps % config.eval_every:
    raise ValueError(f'config.num_steps={config.num_steps} must be a multiple '
                     f'of config.eval_every={config.eval_every}.')
  if config.eval_every % config.log_every:
    raise ValueError(f'config.eval_every={config.eval_every} must be a '
                     f'multiple of config.log_every={config.log_every}.')
  every = config.get('checkpoint_every', 0)
  if every < 0 or (every and every % config.log_every):
    raise ValueError(f'config.checkpoint_every={every} must be 0 (off) or a '
                     f'multiple of config.log_every={config.log_every}.')
  if config.model not in models.MODELS:
    raise ValueError(f'config.model={config.model!r}; known models: '
                     f'{sorted(models.MODELS)}.')
  if config.data_source not in DATA_SOURCES:
    raise ValueError(f'config.data_source={config.data_source!r}; expected '
                     f'one of {DATA_SOURCES}.')
  if config.get('seed_parallelism', 'auto') not in SEED_PARALLELISM:
    raise ValueError(f'config.seed_parallelism={config.seed_parallelism!r}; '
                     f'expected one of {SEED_PARALLELISM}.')
  if int(config.get('max_vmapped_seeds', 0)) < 0:
    raise ValueError('config.max_vmapped_seeds must be >= 0 (0: all seeds '
                     'of a method in one program), got '
                     f'{config.max_vmapped_seeds}.')
  if config.get('param_sharding', 'replicated') not in PARAM_SHARDINGS:
    raise ValueError(f'config.param_sharding={config.param_sharding!r}; '
                     f'expected one of {PARAM_SHARDINGS}.')
  for key in ('base_lr', 'weight_decay', 'momentum'):
    if config[key] < 0:
      raise ValueError(f'config.{key} must be >= 0, got {config[key]}.')
  solvers.caffe_lr(config.lr_policy, config.base_lr, gamma=config.lr_gamma,
                   power=config.lr_power, stepsize=config.lr_stepsize,
                   stepvalues=tuple(config.lr_stepvalues))
  return methods


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


class Sources:
  """Train and eval batches, input shape, classes and preprocessing."""

  def __init__(self, config):
    batch, eval_batch = config.batch_size, config.eval_batch_size
    if config.dataset == 'imagenet2012':
      shape = (input_pipeline.IMAGENET_CROP,) * 2 + (3,)
      self.num_classes = 1000
      if config.data_source == 'synthetic':
        self.train = input_pipeline.SyntheticTrain(shape, 1000, batch)
        self.eval = input_pipeline.SyntheticEval(
            shape, 1000, config.get('max_eval_examples', 0) or eval_batch,
            eval_batch)
      elif config.data_source == 'tfds':
        self.train = input_pipeline.ImageNetTrain(config.data_dir or None,
                                                  batch)
        self.eval = input_pipeline.ImageNetEval(
            config.data_dir or None, eval_batch,
            config.get('max_eval_examples', 0) or None)
      else:
        raise ValueError('imagenet2012 reads from data_source=tfds (the '
                         'manually downloaded ILSVRC-2012) or synthetic.')
      self.input_shape = shape
      self.preprocess = models.make_preprocess(config.preprocess, None)
      return
    if config.data_source == 'synthetic':
      raise ValueError('data_source=synthetic is for imagenet2012 only.')
    dataset = data_lib.load(config.dataset, config.data_source,
                            config.data_dir or None)
    self.num_classes = dataset.num_classes
    self.input_shape = dataset.train_images.shape[1:]
    self.train = input_pipeline.InMemoryTrain(dataset.train_images,
                                              dataset.train_labels, batch)
    self.eval = input_pipeline.InMemoryEval(
        dataset.test_images, dataset.test_labels, eval_batch,
        config.max_eval_examples or None)
    self.preprocess = models.make_preprocess(config.preprocess,
                                             dataset.train_images)


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process)."""
  return Mesh(np.array(jax.devices() if devices is None else devices),
              ('data',))


def _param_sharding(mesh: Mesh, mode: str):
  """FSDP: each array's largest axis divisible by the device count is split."""
  n = mesh.devices.size

  def sharding(x):
    if mode == 'fsdp' and n > 1:
      axes = [i for i, d in enumerate(x.shape) if d % n == 0]
      if axes:
        axis = max(axes, key=lambda i: x.shape[i])
        spec = [None] * len(x.shape)
        spec[axis] = 'data'
        return NamedSharding(mesh, P(*spec))
    return NamedSharding(mesh, P())

  return sharding


class Runner:
  """Compiled train/eval functions for one method, shared by all its seeds.

  `run` trains a group of seeds: a single seed with the plain step, or, when
  `vmapped`, several as one program vmapped over a leading seed axis (params,
  optimizer state, batches, dropout keys). Checkpoints,
  TensorBoard files and records stay per seed either way.
  """

  def __init__(self, config, sources: Sources, method: str, mesh: Mesh,
               vmapped: bool = False):
    self.config, self.sources, self.method, self.mesh = (config, sources,
                                                         method, mesh)
    self.vmapped = vmapped
    n = mesh.devices.size
    if config.batch_size % n:
      raise ValueError(f'config.batch_size={config.batch_size} must be a '
                       f'multiple of the {n} devices it is split over.')
    self.model = models.MODELS[config.model](num_classes=sources.num_classes)
    # Vmapped: batches are (seeds, batch, ...), split over devices on axis 1.
    self.batch_sharding = NamedSharding(
        mesh, P(None, 'data') if vmapped else P('data'))
    self.replicated = NamedSharding(mesh, P())
    sample = jnp.zeros((1, *sources.input_shape), jnp.float32)
    init = lambda rng: self.model.init(rng, sample)['params']
    abstract = jax.eval_shape(init, jax.random.key(0))
    self.param_shardings = jax.tree.map(
        _param_sharding(mesh, config.get('param_sharding', 'replicated')),
        abstract)
    self._init = jax.jit(init, out_shardings=self.param_shardings)
    self.solver = solvers.make_solver(method, config, abstract)
    self.schedule = self.solver.schedule
    self.layer_names = tuple(
        layerlr_optax.layer_partition(abstract, config.layers))
    self._opt_init = jax.jit(self.solver.optimizer.init)
    self._train_step = None  # compiled on first use, with the state shardings
    eval_batch = self._eval_batch_impl
    if vmapped:
      eval_batch = jax.vmap(eval_batch, in_axes=(0, None, None))
    self._eval_batch = jax.jit(eval_batch)

  def init(self, seed: int):
    params = self._init(jax.random.key(seed))
    # State derived from params follows their sharding; constants (step
    # counts) would land on one device: replicate them over the mesh.
    devices = self.mesh.devices.size
    opt_state = jax.tree.map(
        lambda x: x if len(x.sharding.device_set) == devices
        else jax.device_put(x, self.replicated), self._opt_init(params))
    return params, opt_state

  def _stack(self, trees):
    """Per-seed pytrees -> one pytree with a leading (unsharded) seed axis."""
    def stack(*xs):
      spec = getattr(xs[0].sharding, 'spec', P())
      return jax.device_put(jnp.stack(xs),
                            NamedSharding(self.mesh, P(None, *spec)))
    return jax.tree.map(stack, *trees)

  def _train_step_impl(self, params, opt_state, images, labels, seed, step):
    """One step; returns the loss and the layer factors of its gradient."""
    images = self.sources.preprocess(images)
    dropout = jax.random.fold_in(jax.random.key(seed), step)

    def loss_fn(p):
      logits = self.model.apply({'params': p}, images, train=True,
                                rngs={'dropout': dropout})
      return cross_entropy(logits, labels)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = self.solver.optimizer.update(grads, opt_state, params)
    stats = layerlr_optax.layer_stats(
        self.solver.regularize(grads, params), self.config.layers)
    factors = jnp.stack([stats[n]['factor'] for n in self.layer_names])
    return optax.apply_updates(params, updates), opt_state, loss, factors

  def _compiled_step(self, params, opt_state):
    if self._train_step is None:
      shardings = lambda tree: jax.tree.map(lambda x: x.sharding, tree)
      step = self._train_step_impl
      if self.vmapped:
        step = jax.vmap(step, in_axes=(0, 0, 0, 0, 0, None))
      self._train_step = jax.jit(
          step,
          in_shardings=(shardings(params), shardings(opt_state),
                        self.batch_sharding, self.batch_sharding,
                        self.replicated, self.replicated),
          out_shardings=(shardings(params), shardings(opt_state),
                         self.replicated, self.replicated),
          donate_argnums=(0, 1))
    return self._train_step

  def _eval_batch_impl(self, params, images, labels):
    logits = self.model.apply({'params': params},
                              self.sources.preprocess(images), train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    return (jnp.sum(jnp.argmax(logits, -1) == labels),
            jnp.sum(jnp.any(top5 == labels[:, None], axis=-1)), jnp.sum(loss))

  def put_batch(self, images: np.ndarray, labels: np.ndarray):
    """A host batch as one global array sharded over the 'data' axis."""
    return tuple(
        jax.make_array_from_callback(x.shape, self.batch_sharding,
                                     lambda index, x=x: x[index])
        for x in (images, labels))

  def evaluate(self, params) -> list[dict[str, float]]:
    """Top-1/top-5 error (%) and mean loss over the eval split, per seed."""
    correct = correct5 = loss = 0.0
    count = 0
    for images, labels in self.sources.eval.batches():
      c, c5, l = self._eval_batch(params, images, labels)
      correct = correct + np.asarray(c, np.int64)
      correct5 = correct5 + np.asarray(c5, np.int64)
      loss = loss + np.asarray(l, np.float64)
      count += len(labels)
    metrics = [{'test_error': 100.0 * (1.0 - float(c) / count),
                'test_top5_error': 100.0 * (1.0 - float(c5) / count),
                'test_loss': float(l) / count}
               for c, c5, l in zip(np.atleast_1d(correct),
                                   np.atleast_1d(correct5),
                                   np.atleast_1d(loss))]
    return metrics

  def run(self, seeds, store: workdir_lib.RunStore,
          progress) -> list[dict[str, Any]]:
    """Trains `seeds` together; returns one finished record per seed."""
    config = self.config
    seeds = list(seeds)
    if len(seeds) > 1 and not self.vmapped:
      raise ValueError('a sequential Runner trains one seed at a time.')
    every = config.get('checkpoint_every', 0)
    checkpoints = [store.checkpoints(self.method, s) if every else None
                   for s in seeds]
    records, states, starts = [], [], []
    for seed, ckpt in zip(seeds, checkpoints):
      params, opt_state = self.init(seed)
      record: dict[str, Any] = {
          'method': self.method, 'seed': seed, 'test_error': [],
          'test_top5_error': [], 'test_loss': [], 'train_loss': [],
          'learning_rate': [], 'factor_steps': [],
          'layer_factors': {name: [] for name in self.layer_names},
          'wall_seconds': 0.0, 'pending_losses': [],
      }
      start = 0
      if ckpt is not None and ckpt.latest_step() is not None:
        start, params, opt_state, record = ckpt.restore(params, opt_state)
      records.append(record)
      states.append((params, opt_state))
      starts.append(start)
    if len(set(starts)) > 1:
      raise ValueError(f'seeds {seeds} resume from different steps {starts}; '
                       'group them with seed_groups(..., start_step=...).')
    start_step = starts[0]
    progress.update(start_step * len(seeds))
    if self.vmapped:
      params, opt_state = self._stack(states)
    else:
      (params, opt_state), = states
    step_fn = self._compiled_step(params, opt_state)
    writers = [store.tensorboard(self.method, s) for s in seeds]
    t_start = time.perf_counter()
    batch_iters = [self.sources.train.batches(s, start_step, config.num_steps)
                   for s in seeds]
    seed_arr = jnp.asarray(seeds if self.vmapped else seeds[0], jnp.uint32)
    label = ', '.join(str(s) for s in seeds)
    for step0 in range(start_step, config.num_steps, config.log_every):
      t0 = time.perf_counter()
      losses, factors = [], []
      for step in range(step0, step0 + config.log_every):
        host = [next(it) for it in batch_iters]
        if self.vmapped:
          host = [np.stack([b[0] for b in host]),
                  np.stack([b[1] for b in host])]
        else:
          host = host[0]
        images, labels = self.put_batch(*host)
        params, opt_state, loss, factor = step_fn(
            params, opt_state, images, labels, seed_arr,
            jnp.asarray(step, jnp.uint32))
        losses.append(loss)
        factors.append(factor)
      # (log_every, seeds) and (seeds, layers), also for one unvmapped seed.
      losses = np.asarray(jnp.stack(losses)).reshape(config.log_every, -1)
      factors = np.asarray(jnp.stack(factors)).mean(axis=0).reshape(
          len(seeds), -1)
      if not np.all(np.isfinite(losses)):
        raise FloatingPointError(
            f'{self.method} seed {label}: non-finite training loss at steps '
            f'{step0}..{step0 + config.log_every}.')
      step = step0 + config.log_every
      dt = time.perf_counter() - t0
      for i, (record, writer) in enumerate(zip(records, writers)):
        record['pending_losses'] += losses[:, i].tolist()
        record['factor_steps'].append(step)
        for name, value in zip(self.layer_names, factors[i]):
          record['layer_factors'][name].append(float(value))
        writer.add_scalar('train/loss', float(losses[:, i].mean()), step)
        writer.add_scalar('train/learning_rate',
                          float(self.schedule(step - 1)), step)
        for name, value in zip(self.layer_names, factors[i]):
          writer.add_scalar(f'layer_factor/{name}', float(value), step)
      progress.update(config.log_every * len(seeds))
      progress.set_postfix(
          loss=f'{losses.mean():.4f}',
          img_s=f'{config.log_every * config.batch_size * len(seeds) / dt:.0f}')
      if step % config.eval_every == 0:
        for record, writer, metrics in zip(records, writers,
                                           self.evaluate(params)):
          for key, value in metrics.items():
            record[key].append(value)
            writer.add_scalar(f'eval/{key}', value, step)
          record['train_loss'].append(float(np.mean(record['pending_losses'])))
          record['learning_rate'].append(float(self.schedule(step - 1)))
          record['pending_losses'] = []
          writer.flush()
      if every and (step % every == 0 or step == config.num_steps):
        elapsed = (time.perf_counter() - t_start) / len(seeds)
        t_start = time.perf_counter()
        for i, (record, ckpt) in enumerate(zip(records, checkpoints)):
          record['wall_seconds'] += elapsed
          if self.vmapped:
            ckpt.save(step, *jax.tree.map(lambda x, i=i: x[i],
                                          (params, opt_state)), record)
          else:
            ckpt.save(step, params, opt_state, record)
    elapsed = (time.perf_counter() - t_start) / len(seeds)
    for record, writer, ckpt in zip(records, writers, checkpoints):
      writer.close()
      record['wall_seconds'] += elapsed
      if ckpt is not None:
        ckpt.close()
      del record['pending_losses']
    return records


def _progress(total: int):
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, unit='step', smoothing=0.05, mininterval=2.0,
              dynamic_ncols=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       overwrite: bool = False) -> dict[str, Any]:
  """Runs the experiment `config` in `workdir` and writes its outputs.

  Args:
    config: the experiment's ConfigDict (see experiments/configs/).
    workdir: where runs and outputs go. A finished experiment there is never
      overwritten unless `overwrite` (which moves it aside, not deletes it);
      an unfinished one with the same config is resumed.
    overwrite: start afresh even if `workdir` holds results.

  Returns:
    The results dict written to ``workdir/results.json``.
  """
  methods = validate_config(config)
  if config.get('distributed', False):
    jax.distributed.initialize()
  store = workdir_lib.RunStore(workdir, config, overwrite=overwrite)
  sources = Sources(config)
  mesh = make_mesh()
  seeds = [config.seed_offset + i for i in range(config.num_seeds)]
  todo = [(m, s) for m in methods for s in seeds if not store.has_run(m, s)]
  vmapped = seeds_vmapped(config)
  start = time.perf_counter()
  with _progress(len(todo) * config.num_steps) as progress:
    for method in methods:
      method_todo = [s for m, s in todo if m == method]
      if not method_todo:
        continue
      runner = Runner(config, sources, method, mesh, vmapped=vmapped)
      groups = seed_groups(
          method_todo, vmapped, config.get('max_vmapped_seeds', 0),
          start_step=lambda s, m=method: store.checkpoint_step(m, s))
      for group in groups:
        progress.set_description(
            f'{method} seed{"s" if len(group) > 1 else ""} '
            + ','.join(map(str, group)))
        for record in runner.run(group, store, progress):
          store.save_run(record)
  runs = [store.load_run(m, s) for m in methods for s in seeds]
  results = {
      'experiment': config.experiment,
      'eval_steps': list(range(config.eval_every, config.num_steps + 1,
                               config.eval_every)),
      'runs': runs,
      'config': config.to_dict(),
      'wall_seconds': sum(r['wall_seconds'] for r in runs),
      'session_wall_seconds': time.perf_counter() - start,
      'backend': jax.default_backend(),
      'device': f'{jax.devices()[0].device_kind} x{len(jax.devices())}',
      'seeds_vmapped': vmapped,
      'versions': {'jax': jax.__version__, 'optax': optax.__version__,
                   'layerlr_optax': layerlr_optax.__version__},
  }
  if jax.process_index() == 0:
    store.write_json('results.json', results)
    report.write_all(results, workdir)
  return results
