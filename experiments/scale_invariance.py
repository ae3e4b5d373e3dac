"""How eq. 9's factor depends on the loss's scale: batch size and reduction.

``python -m experiments.scale_invariance --workdir DIR
[--config.KEY=VALUE ...]`` (mnist_lenet's config; e.g. the local data).

The factor ``1 + log(1 + 1/||g_l||)`` depends on the absolute norm of a
layer's gradient, which the user's loss definition scales: a summed loss
multiplies the mean loss's gradient by the batch size B; the mini-batch
gradient's noise shrinks like 1/sqrt(B). For each batch size in
``--batch_sizes`` this trains LeNet with the paper's plain SGD solver (the
factor observed, not applied, so every batch size follows the standard
trajectory) and measures, at initialisation and after ``--mid_step`` steps,
every layer's gradient norm and factor over ``--batches`` fresh mini-batches
(mean), for the mean loss and for the summed loss at the same parameters.

Writes ``DIR/factors.json`` and ``DIR/factors.md``.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import layerlr_optax
from experiments.lib import fileio
from experiments.lib import provenance
from experiments import configs
from experiments.lib import data as data_lib
from experiments.lib import models
from experiments.lib import parallel
from experiments.lib import train
from experiments.lib.methods import Method


def measure(config, batch_size: int, mid_step: int,
            num_batches: int) -> list[dict]:
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  pipeline = data_lib.make_pipeline(config)
  trainer = train.Trainer(config, pipeline, Method('sgd'),
                          parallel.make_mesh(jax.devices()[:1]))
  model = models.MODELS[config.model](num_classes=pipeline.num_classes)

  @jax.jit
  def stats(params, images, labels):
    def loss(p, reduce):
      logits = model.apply({'params': p}, pipeline.preprocess(images))
      return reduce(optax.softmax_cross_entropy_with_integer_labels(
          logits, labels))
    out = {}
    for name, reduce in (('mean', jnp.mean), ('sum', jnp.sum)):
      grads = jax.grad(loss)(params, reduce)
      out[name] = layerlr_optax.layer_stats(grads)
    return out

  def snapshot(state, step, seed):
    per_batch = [stats(state.params, *batch) for batch in
                 pipeline.train.batches(seed, 0, num_batches)]
    rows = []
    for reduction in ('mean', 'sum'):
      for layer in per_batch[0][reduction]:
        norms = [float(s[reduction][layer]['grad_norm']) for s in per_batch]
        factors = [float(s[reduction][layer]['factor']) for s in per_batch]
        rows.append({'batch_size': batch_size, 'step': step,
                     'reduction': reduction, 'layer': layer,
                     'grad_norm': float(np.mean(norms)),
                     'factor': float(np.mean(factors))})
    return rows

  seed = config.seed_offset
  state = trainer.init(seed)
  rows = snapshot(state, 0, seed + 1000)
  step_fn = trainer.train_step(state)
  for step, batch in enumerate(pipeline.train.batches(seed, 0, mid_step)):
    state, _ = step_fn(state, *trainer.put_batch(*batch), jnp.uint32(seed),
                       jnp.uint32(step))
  return rows + snapshot(state, mid_step, seed + 1000)


def markdown(rows: list[dict]) -> str:
  layers = list(dict.fromkeys(r['layer'] for r in rows))
  lines = ['| step | loss | batch | ' + ' | '.join(
      f'{l}: norm, factor' for l in layers) + ' |',
           '|---|---|---|' + '---|' * len(layers)]
  keys = list(dict.fromkeys((r['step'], r['reduction'], r['batch_size'])
                            for r in rows))
  for step, reduction, batch in sorted(keys):
    cells = []
    for layer in layers:
      r, = [r for r in rows if (r['step'], r['reduction'], r['batch_size'],
                                r['layer']) == (step, reduction, batch, layer)]
      cells.append(f'{r["grad_norm"]:.3g}, {r["factor"]:.2f}')
    lines.append(f'| {step} | {reduction} | {batch} | ' + ' | '.join(cells)
                 + ' |')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m experiments.scale_invariance',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--batch_sizes', default='16,64,256')
  parser.add_argument('--mid_step', type=int, default=1000)
  parser.add_argument('--batches', type=int, default=10)
  args, overrides = parser.parse_known_args(argv)
  config = configs.apply_overrides(configs.get_config('mnist_lenet'),
                                   overrides)
  configs.validate(config)
  os.makedirs(args.workdir, exist_ok=True)
  rows = []
  for batch_size in (int(b) for b in args.batch_sizes.split(',')):
    rows += measure(config, batch_size, args.mid_step, args.batches)
  payload = {'experiment': 'scale_invariance', 'model': config.model,
             'solver': 'sgd (factor observed, not applied)',
             'mid_step': args.mid_step, 'batches_averaged': args.batches,
             'rows': rows, 'config': fileio.json_ready(config.to_dict()),
             'versions': provenance.versions(), 'commit': provenance.code_commit(),
             'data': data_lib.identity(config)}
  fileio.write_json(os.path.join(args.workdir, 'factors.json'), payload)
  table = markdown(rows)
  fileio.write_atomic(os.path.join(args.workdir, 'factors.md'), table)
  print(table)
  return 0


if __name__ == '__main__':
  sys.exit(main())
