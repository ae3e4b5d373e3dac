"""What every benchmark shares: the optimizer table and tree selection, the
jitted update step, timing (warm-up, interleaved repetitions, medians) and
JSON/markdown output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import optax

import layerlr_optax
from benchmarks import trees
from experiments.lib import fileio


def device_info() -> dict[str, str]:
  device = jax.devices()[0]
  return {'backend': jax.default_backend(),
          'device': f'{device.device_kind} x{len(jax.devices())}',
          'host': f'{platform.machine()} {os.cpu_count()} cpus',
          'jax': jax.__version__}


def interleaved_medians(fns: Sequence[Callable[[], object]], repeats: int,
                        min_seconds: float = 0.0) -> list[float]:
  """Median seconds per call of each fn, measured A B C A B C ...

  Each fn must block until its result is ready. Interleaving spreads drifts of
  the machine (other processes, thermal, caches) evenly over the candidates,
  so ratios measured in one process are fair even on a busy machine.
  """
  for fn in fns:  # warm-up (caches, allocator)
    fn()
  times: list[list[float]] = [[] for _ in fns]
  start = time.perf_counter()
  rounds = 0
  while rounds < repeats or time.perf_counter() - start < min_seconds:
    for i, fn in enumerate(fns):
      t0 = time.perf_counter()
      fn()
      times[i].append(time.perf_counter() - t0)
    rounds += 1
  return [statistics.median(t) for t in times]


def write_json(path: str | None, payload: dict) -> None:
  if not path:
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fileio.write_atomic(path, json.dumps(payload, indent=1))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = ['| ' + ' | '.join(headers) + ' |',
           '|' + '---|' * len(headers)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines)


# The optimizers and trees every benchmark selects from -----------------

BASELINE = 'optax.sgd'


def _stacked_blocks(tree):
  """The `stacked` rule of the stacked trees: ``blocks`` along axis 0."""
  return {key: 0 if key == 'blocks' else None for key in tree}


OPTIMIZERS = {
    'optax.sgd': lambda: optax.sgd(0.01, momentum=0.9),
    'layerlr_optax.sgd': lambda: layerlr_optax.sgd(0.01, momentum=0.9),
    'layerlr_optax.sgd[leaf]': lambda: layerlr_optax.sgd(0.01, momentum=0.9,
                                                         layers='leaf'),
    # A factor per stacked block (trees.stacked); elsewhere = layerlr_optax.sgd.
    'layerlr_optax.sgd[stacked]': lambda: layerlr_optax.sgd(
        0.01, momentum=0.9, stacked=_stacked_blocks),
    # The anchor: optax's own transform that reads every gradient once more
    # (its global norm) before the update, as this method must.
    'optax.clip_by_global_norm+sgd': lambda: optax.chain(
        optax.clip_by_global_norm(1.0), optax.sgd(0.01, momentum=0.9)),
    'optax.lars': lambda: optax.lars(0.01),
    'optax.lamb': lambda: optax.lamb(1e-3),
    'optax.adagrad': lambda: optax.adagrad(0.01),
    'layerlr_optax.adagrad': lambda: layerlr_optax.adagrad(0.01),
    'optax.adam': lambda: optax.adam(1e-3),
    'layerlr_optax.layerwise(optax.adam)':
        lambda: layerlr_optax.layerwise(optax.adam(1e-3)),
    # The per-layer family (issue #32), each beside its optax peer: per
    # array ([leaf], equal to the peer), per module (default), per stacked
    # block ([stacked]; elsewhere the default).
    'layerlr_optax.lars[leaf]': lambda: layerlr_optax.lars(0.01,
                                                           layers='leaf'),
    'layerlr_optax.lars': lambda: layerlr_optax.lars(0.01),
    'layerlr_optax.lars[stacked]': lambda: layerlr_optax.lars(
        0.01, stacked=_stacked_blocks),
    'layerlr_optax.lamb[leaf]': lambda: layerlr_optax.lamb(1e-3,
                                                           layers='leaf'),
    'layerlr_optax.lamb': lambda: layerlr_optax.lamb(1e-3),
    'layerlr_optax.lamb[stacked]': lambda: layerlr_optax.lamb(
        1e-3, stacked=_stacked_blocks),
    'layerlr_optax.adalayer': lambda: layerlr_optax.adalayer(1e-3),
    'layerlr_optax.adalayer[stacked]': lambda: layerlr_optax.adalayer(
        1e-3, stacked=_stacked_blocks),
    'optax.adamw': lambda: optax.adamw(1e-3),
    'optax.multi_transform(adamw per depth)': lambda: _llrd_by_hand(),
    'optax.adamw+layerlr_optax.scale_by_layer_decay': lambda: optax.chain(
        optax.adamw(1e-3), layerlr_optax.scale_by_layer_decay(
            0.8, _depth_by_number)),
}
# Each family member's peer: the optax method it is judged against.
PEERS = {
    'layerlr_optax.lars[leaf]': 'optax.lars',
    'layerlr_optax.lars': 'optax.lars',
    'layerlr_optax.lars[stacked]': 'optax.lars',
    'layerlr_optax.lamb[leaf]': 'optax.lamb',
    'layerlr_optax.lamb': 'optax.lamb',
    'layerlr_optax.lamb[stacked]': 'optax.lamb',
    'layerlr_optax.adalayer': 'optax.adam',
    'layerlr_optax.adalayer[stacked]': 'optax.adam',
    'optax.adamw+layerlr_optax.scale_by_layer_decay':
        'optax.multi_transform(adamw per depth)',
}


def _depth_by_number(name: str) -> int:
  """A depth for the trees here: the first number in a layer's name (a
  stacked slice's index), else 0. Cost does not depend on the values."""
  match = re.search(r'\d+', name)
  return int(match.group()) if match else 0


def _llrd_by_hand() -> optax.GradientTransformation:
  """LLRD written as users do without the package: one adamw per depth,
  labels by layer (optax.multi_transform)."""
  def labels(params):
    partition = layerlr_optax.layer_partition(params, layers='leaf')
    names = [_depth_by_number(name.rsplit('/', 1)[0]) for name in partition]
    return jax.tree.unflatten(jax.tree.structure(params),
                              [str(d) for d in names])

  def make(params):
    depths = sorted(set(jax.tree.leaves(labels(params))), key=int)
    top = max(int(d) for d in depths)
    return optax.multi_transform(
        {d: optax.adamw(1e-3 * 0.8 ** (top - int(d))) for d in depths},
        labels)

  # multi_transform needs its label set up front: built at init, kept.
  built = {}

  def init_fn(params):
    built['tx'] = make(params)
    return built['tx'].init(params)

  def update_fn(updates, state, params=None):
    return built['tx'].update(updates, state, params)

  return optax.GradientTransformation(init_fn, update_fn)
QUICK_TREES = ('lenet', 'resnet50', 'deep_mlp_100')
QUICK_OPTIMIZERS = ('optax.sgd', 'layerlr_optax.sgd',
                    'optax.clip_by_global_norm+sgd', 'optax.lars')


def make_step(opt):
  """``(params, state, grads) -> (params, state)``, jitted, donated."""
  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  return jax.jit(step, donate_argnums=(0, 1))


def selection_parser(prog: str) -> argparse.ArgumentParser:
  """--quick, --json, --trees and --optimizers (see `selected`)."""
  parser = argparse.ArgumentParser(prog=prog)
  parser.add_argument('--quick', action='store_true',
                      help='3 small trees, 3 optimizers (< 1 minute)')
  parser.add_argument('--json', help='write the results here')
  parser.add_argument('--trees', help='comma-separated subset of: ' +
                      ', '.join(trees.TREES))
  parser.add_argument('--optimizers', help='comma-separated subset of: ' +
                      ', '.join(OPTIMIZERS))
  return parser


def selected(parser: argparse.ArgumentParser, args):
  """(tree names, optimizer names) asked for, the baseline always first."""
  tree_names = (args.trees.split(',') if args.trees else
                QUICK_TREES if args.quick else tuple(trees.TREES))
  names = (args.optimizers.split(',') if args.optimizers else
           QUICK_OPTIMIZERS if args.quick else tuple(OPTIMIZERS))
  for bad in [t for t in tree_names if t not in trees.TREES]:
    parser.error(f'unknown tree {bad!r}')
  for bad in [n for n in names if n not in OPTIMIZERS]:
    parser.error(f'unknown optimizer {bad!r}')
  if BASELINE not in names:
    names = (BASELINE, *names)
  return tree_names, names
