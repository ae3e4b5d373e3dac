"""Training and evaluation: every (method, seed) run of one experiment.

`train_and_evaluate(config, workdir)` runs all methods x seeds, writing each
finished run to ``workdir/runs/`` (so an interrupted experiment loses only
the unfinished run and resumes from there), then ``results.json``,
``table.md``, ``curves.png`` and ``layer_rates.png``.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import layerlr_optax
from experiments import data as data_lib
from experiments import models
from experiments import report
from experiments import solvers
from experiments import workdir as workdir_lib


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
  if config.model not in models.MODELS:
    raise ValueError(f'config.model={config.model!r}; known models: '
                     f'{sorted(models.MODELS)}.')
  if config.data_source not in data_lib.SOURCES:
    raise ValueError(f'config.data_source={config.data_source!r}; expected '
                     f'one of {data_lib.SOURCES}.')
  for key in ('base_lr', 'weight_decay', 'momentum'):
    if config[key] < 0:
      raise ValueError(f'config.{key} must be >= 0, got {config[key]}.')
  solvers.caffe_lr(config.lr_policy, config.base_lr, gamma=config.lr_gamma,
                   power=config.lr_power, stepsize=config.lr_stepsize,
                   stepvalues=tuple(config.lr_stepvalues))
  return methods


def _epoch_orders(seed: int, num_examples: int, num_steps: int,
                  batch_size: int) -> np.ndarray:
  """(num_steps, batch_size) example indices: a fresh shuffle every epoch."""
  rng = np.random.default_rng(seed)
  needed = num_steps * batch_size
  chunks = [rng.permutation(num_examples)
            for _ in range(-(-needed // num_examples))]
  return np.concatenate(chunks)[:needed].reshape(num_steps, batch_size)


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


class Runner:
  """Compiled train/eval functions for one method, shared by all its seeds."""

  def __init__(self, config, dataset: data_lib.ImageDataset, method: str):
    self.config = config
    self.method = method
    self.model = models.MODELS[config.model](num_classes=dataset.num_classes)
    self.preprocess = models.make_preprocess(config.preprocess,
                                             dataset.train_images)
    self.train_images = jnp.asarray(dataset.train_images)
    self.train_labels = jnp.asarray(dataset.train_labels)
    self.test_images = dataset.test_images
    self.test_labels = dataset.test_labels
    sample = jnp.zeros((1, *dataset.train_images.shape[1:]), jnp.float32)
    self._init = jax.jit(lambda rng: self.model.init(rng, sample)['params'])
    params = jax.eval_shape(self._init, jax.random.key(0))
    self.solver = solvers.make_solver(method, config, params)
    self.layer_names = tuple(
        layerlr_optax.layer_partition(params, config.layers))
    self._train_step = jax.jit(self._train_step_impl, donate_argnums=(0, 1))
    self._eval_batch = jax.jit(self._eval_batch_impl)

  def init(self, seed: int):
    params = self._init(jax.random.key(seed))
    return params, self.solver.optimizer.init(params)

  def _train_step_impl(self, params, opt_state, idx):
    """One step on the examples `idx`; returns the loss and layer factors.

    A Python loop over this jitted step, not a `lax.scan`: on XLA:CPU the
    convolutions inside a while loop ran ~6x slower (135 vs 23 ms for LeNet).
    """
    images = self.preprocess(self.train_images[idx])
    labels = self.train_labels[idx]

    def loss_fn(p):
      return cross_entropy(self.model.apply({'params': p}, images), labels)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = self.solver.optimizer.update(grads, opt_state, params)
    stats = layerlr_optax.layer_stats(
        self.solver.regularize(grads, params), self.config.layers)
    factors = jnp.stack([stats[n]['factor'] for n in self.layer_names])
    return optax.apply_updates(params, updates), opt_state, loss, factors

  def _eval_batch_impl(self, params, images, labels):
    logits = self.model.apply({'params': params}, self.preprocess(images))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(jnp.argmax(logits, -1) == labels), jnp.sum(loss)

  def evaluate(self, params) -> tuple[float, float]:
    """(test error in %, mean test loss) on the full test set."""
    n = len(self.test_labels)
    bs = self.config.eval_batch_size
    correct, loss = 0, 0.0
    for start in range(0, n, bs):
      c, l = self._eval_batch(params, self.test_images[start:start + bs],
                              self.test_labels[start:start + bs])
      correct += int(c)
      loss += float(l)
    return 100.0 * (1.0 - correct / n), loss / n

  def run(self, seed: int, progress) -> dict[str, Any]:
    config = self.config
    start = time.perf_counter()
    params, opt_state = self.init(seed)
    orders = _epoch_orders(seed, len(self.train_labels), config.num_steps,
                           config.batch_size)
    record: dict[str, Any] = {
        'method': self.method, 'seed': seed, 'test_error': [],
        'test_loss': [], 'train_loss': [], 'factor_steps': [],
        'layer_factors': {name: [] for name in self.layer_names},
    }
    chunk_losses = []
    for step0 in range(0, config.num_steps, config.log_every):
      t0 = time.perf_counter()
      losses, factors = [], []
      for idx in orders[step0:step0 + config.log_every]:
        params, opt_state, loss, factor = self._train_step(params, opt_state,
                                                           idx)
        losses.append(loss)
        factors.append(factor)
      losses = np.asarray(jnp.stack(losses))
      factors = np.asarray(jnp.stack(factors))
      if not np.all(np.isfinite(losses)):
        raise FloatingPointError(
            f'{self.method} seed {seed}: non-finite training loss at steps '
            f'{step0}..{step0 + config.log_every}.')
      chunk_losses.append(losses)
      step = step0 + config.log_every
      record['factor_steps'].append(step)
      for name, value in zip(self.layer_names, factors.mean(axis=0)):
        record['layer_factors'][name].append(float(value))
      dt = time.perf_counter() - t0
      progress.update(config.log_every)
      progress.set_postfix(loss=f'{losses.mean():.4f}',
                           img_s=f'{config.log_every * config.batch_size / dt:.0f}')
      if step % config.eval_every == 0:
        error, test_loss = self.evaluate(params)
        record['test_error'].append(error)
        record['test_loss'].append(test_loss)
        record['train_loss'].append(float(np.concatenate(chunk_losses).mean()))
        chunk_losses = []
    record['wall_seconds'] = time.perf_counter() - start
    return record


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
  store = workdir_lib.RunStore(workdir, config, overwrite=overwrite)
  dataset = data_lib.load(config.dataset, config.data_source,
                          config.data_dir or None)
  seeds = [config.seed_offset + i for i in range(config.num_seeds)]
  todo = [(m, s) for m in methods for s in seeds if not store.has_run(m, s)]
  start = time.perf_counter()
  with _progress(len(todo) * config.num_steps) as progress:
    for method in methods:
      method_todo = [s for m, s in todo if m == method]
      if not method_todo:
        continue
      runner = Runner(config, dataset, method)
      for seed in method_todo:
        progress.set_description(f'{method} seed {seed}')
        store.save_run(runner.run(seed, progress))
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
      'device': str(jax.devices()[0].device_kind),
      'versions': {'jax': jax.__version__, 'optax': optax.__version__,
                   'layerlr_optax': layerlr_optax.__version__},
  }
  store.write_json('results.json', results)
  report.write_all(results, workdir)
  return results
