"""Whole training step cost, and seeds vmapped vs one after another.

  python -m benchmarks.train_step [--quick] [--json PATH] [--models a,b]

1. forward + backward + update of the experiments' models (LeNet, Caffe's
   cifar10_full, AlexNet where the backend can afford it) with ``optax.sgd``
   and ``layerlr_optax.sgd`` (momentum 0.9), interleaved, as a user's jitted
   training step with donated buffers: the overhead a user actually pays.
2. N seeds of LeNet as one ``vmap``ped step vs N steps one after another.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import layerlr_optax
from benchmarks import common

BASELINE = 'optax.sgd'
OPTIMIZERS = {
    'optax.sgd': lambda: optax.sgd(0.01, momentum=0.9),
    'layerlr_optax.sgd': lambda: layerlr_optax.sgd(0.01, momentum=0.9),
    'optax.clip_by_global_norm+sgd': lambda: optax.chain(
        optax.clip_by_global_norm(1.0), optax.sgd(0.01, momentum=0.9)),
}
# model name -> (input shape without batch, batch size)
MODELS = {
    'lenet': ((28, 28, 1), 64),
    'cifar10_full': ((32, 32, 3), 100),
    'alexnet': ((227, 227, 3), 256),
}


def build_model(name: str):
  from experiments.lib import models
  return models.MODELS[name]()


def make_train_step(model, opt):
  def loss_fn(params, images, labels):
    logits = model.apply({'params': params}, images, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                           labels).mean()

  def step(params, state, images, labels):
    loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  return step


def bench_model(name: str, repeats: int, min_seconds: float,
                batch: int | None = None):
  shape, default_batch = MODELS[name]
  batch = batch or default_batch
  model = build_model(name)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.standard_normal((batch, *shape)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
  params0 = model.init(jax.random.key(0), images[:1])['params']
  carries, compiled, compile_s = {}, {}, {}
  for opt_name, make in OPTIMIZERS.items():
    opt = make()
    params = jax.tree.map(lambda x: x.copy(), params0)
    state = opt.init(params)
    t0 = time.perf_counter()
    compiled[opt_name] = jax.jit(make_train_step(model, opt),
                                 donate_argnums=(0, 1)).lower(
                                     params, state, images, labels).compile()
    compile_s[opt_name] = time.perf_counter() - t0
    carries[opt_name] = [params, state]

  def runner(opt_name):
    def run():
      carry = carries[opt_name]
      carry[0], carry[1], loss = compiled[opt_name](carry[0], carry[1], images,
                                                    labels)
      loss.block_until_ready()
    return run

  medians = common.interleaved_medians([runner(n) for n in OPTIMIZERS],
                                       repeats, min_seconds)
  base = medians[list(OPTIMIZERS).index(BASELINE)]
  return [{'tree': name, 'optimizer': opt_name, 'median_s': med,
           'baseline': BASELINE, 'ratio': med / base, 'batch_size': batch,
           'images_per_s': batch / med, 'compile_s': compile_s[opt_name]}
          for opt_name, med in zip(OPTIMIZERS, medians)]


def bench_seeds(num_seeds: int, repeats: int, min_seconds: float):
  """LeNet, layerlr_optax.sgd: one vmapped step of N seeds vs N steps."""
  model = build_model('lenet')
  opt = OPTIMIZERS['layerlr_optax.sgd']()
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.standard_normal((num_seeds, 64, 28, 28, 1)),
                       jnp.float32)
  labels = jnp.asarray(rng.integers(0, 10, (num_seeds, 64)), jnp.int32)
  keys = jax.random.split(jax.random.key(0), num_seeds)
  params = jax.vmap(lambda k: model.init(k, images[0, :1])['params'])(keys)
  state = jax.vmap(opt.init)(params)
  step = make_train_step(model, opt)
  vmapped = jax.jit(jax.vmap(step))
  single = jax.jit(step)
  one = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
  singles = [(one(params, i), one(state, i)) for i in range(num_seeds)]

  def run_vmapped():
    jax.block_until_ready(vmapped(params, state, images, labels))

  def run_sequential():
    out = [single(p, s, images[i], labels[i])
           for i, (p, s) in enumerate(singles)]
    jax.block_until_ready(out)

  vm, seq = common.interleaved_medians([run_vmapped, run_sequential], repeats,
                                       min_seconds)
  return {'model': 'lenet', 'num_seeds': num_seeds, 'vmapped_s': vm,
          'sequential_s': seq, 'vmapped_over_sequential': vm / seq,
          'faster': 'vmapped' if vm < seq else 'sequential'}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.train_step')
  parser.add_argument('--quick', action='store_true',
                      help='LeNet only, few repetitions (< 1 minute)')
  parser.add_argument('--json', help='write the results here')
  parser.add_argument('--models', help='comma-separated subset of: ' +
                      ', '.join(MODELS))
  parser.add_argument('--seeds', type=int, default=4,
                      help='seeds in the vmap-vs-sequential comparison')
  parser.add_argument('--repeats', type=int, default=None)
  args = parser.parse_args(argv)
  on_cpu = jax.default_backend() == 'cpu'
  names = (args.models.split(',') if args.models else ['lenet'] if args.quick
           else ['lenet', 'cifar10_full'] if on_cpu else list(MODELS))
  for bad in [n for n in names if n not in MODELS]:
    parser.error(f'unknown model {bad!r}')
  if 'alexnet' in names:
    from experiments.lib import models
    if 'alexnet' not in models.MODELS:
      parser.error('the alexnet model is not available in experiments.lib.models')
  repeats = args.repeats or (8 if args.quick else 40)
  min_seconds = 0.0 if args.quick else 3.0
  cases = []
  for name in names:
    rows = bench_model(name, repeats, min_seconds)
    cases += rows
    print(f'\n### {name} training step (batch {rows[0]["batch_size"]})\n')
    print(common.markdown_table(
        ['optimizer', 'step median (ms)', 'images/s', f'ratio to {BASELINE}'],
        [[r['optimizer'], f'{1e3 * r["median_s"]:.2f}',
          f'{r["images_per_s"]:.0f}', f'{r["ratio"]:.3f}'] for r in rows]),
        flush=True)
  seeds = bench_seeds(args.seeds, max(3, repeats // 4), min_seconds)
  print(f'\n### {seeds["num_seeds"]} LeNet seeds per step\n')
  print(common.markdown_table(
      ['vmapped (ms)', 'sequential (ms)', 'vmapped / sequential', 'faster'],
      [[f'{1e3 * seeds["vmapped_s"]:.1f}', f'{1e3 * seeds["sequential_s"]:.1f}',
        f'{seeds["vmapped_over_sequential"]:.2f}', seeds['faster']]]))
  payload = {**common.device_info(), 'benchmark': 'train_step',
             'repeats': repeats, 'cases': cases, 'seeds': seeds}
  common.write_json(args.json, payload)
  return 0


if __name__ == '__main__':
  sys.exit(main())
