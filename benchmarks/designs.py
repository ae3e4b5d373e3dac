"""The designs we did not ship, measured against the one we did.

  python -m benchmarks.designs [--json PATH] [--trees a,b] [--repeats N]

Each design computes exactly `layerlr_optax.sgd(0.01, momentum=0.9)` (checked
here, to float32 rounding) or `layerlr_optax.layerwise(optax.adam(1e-3))`;
only how the per-layer squared norms reach the updates differs:

- ``shipped``: the package: one reduction per leaf, one scalar factor per
  layer, each leaf's update reads its layer's scalar.
- ``grouped``: what the issue suggested to cut the program size: leaves of
  equal shape are stacked and reduced in one pass, the per-leaf results are
  segment-summed into a vector of layer norms, and each update reads its
  factor from that vector at a static index.
- ``flat``: every gradient squared, raveled and concatenated, one segment-sum
  over all parameters.
- ``unbarriered`` (layerwise(adam) only): the package's design without the
  optimization barrier that keeps the norm's ``g * g`` apart from Adam's.

Reports update time (interleaved medians, ratio to ``optax.sgd`` or
``optax.adam`` in the same process), compile time, kernels and temporary
bytes (see `benchmarks.program`).
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
from benchmarks import program
from benchmarks import trees

LR, MOMENTUM = 0.01, 0.9


def _partition(grads):
  """(layer index of each leaf, number of layers), layers as the package's
  default 'module' mode forms them (`layerlr_optax.layer_partition`)."""
  part = layerlr_optax.layer_partition(grads)
  index = {leaf: i for i, leaves in enumerate(part.values()) for leaf in leaves}
  names = layerlr_optax.layer_partition(grads, layers='leaf')
  return [index[n] for n in names], len(part)


def _factor(sq_norm):
  return layerlr_optax.layer_factor(jnp.sqrt(sq_norm))


def _leaf_factors(layer_sq, leaf_layer):
  """Each leaf's factor, read from the vector of layer factors."""
  vector = _factor(layer_sq)
  return [vector[layer] for layer in leaf_layer]


def _with_factors(per_leaf_factors, base):
  """`base` fed with the gradient scaled by `per_leaf_factors(leaves)`."""
  def update(grads, state, params=None):
    leaves, treedef = jax.tree.flatten(grads)
    factors = per_leaf_factors(leaves)
    scaled = treedef.unflatten([g * f for g, f in zip(leaves, factors)])
    return base.update(scaled, state, params)
  return optax.GradientTransformation(base.init, update)


def grouped(grads):
  leaf_layer, num_layers = _partition(grads)

  def factors(leaves):
    groups: dict = {}
    for i, leaf in enumerate(leaves):
      groups.setdefault((leaf.shape, leaf.dtype), []).append(i)
    order, sums = [], []
    for members in groups.values():
      stacked = jnp.stack([leaves[i] for i in members])
      sums.append(jnp.sum(jnp.square(stacked),
                          axis=tuple(range(1, stacked.ndim))))
      order += members
    segments = np.asarray(leaf_layer)[np.asarray(order)]
    layer_sq = jax.ops.segment_sum(jnp.concatenate(sums), segments,
                                   num_segments=num_layers)
    return _leaf_factors(layer_sq, leaf_layer)
  return _with_factors(factors, optax.sgd(LR, momentum=MOMENTUM))


def flat(grads):
  leaf_layer, num_layers = _partition(grads)

  def factors(leaves):
    squares = jnp.concatenate([jnp.square(g).ravel() for g in leaves])
    segments = np.concatenate([np.full(g.size, layer, np.int32)
                               for g, layer in zip(leaves, leaf_layer)])
    layer_sq = jax.ops.segment_sum(squares, segments, num_segments=num_layers,
                                   indices_are_sorted=False)
    return _leaf_factors(layer_sq, leaf_layer)
  return _with_factors(factors, optax.sgd(LR, momentum=MOMENTUM))


def unbarriered(grads):
  leaf_layer, num_layers = _partition(grads)
  base = optax.adam(1e-3)

  def update(updates, state, params=None):
    leaves, treedef = jax.tree.flatten(updates)
    layer_sq = [0.0] * num_layers
    for g, layer in zip(leaves, leaf_layer):
      layer_sq[layer] = layer_sq[layer] + jnp.sum(jnp.square(g))
    factors = [_factor(sq) for sq in layer_sq]
    out, state = base.update(updates, state, params)
    out = treedef.unflatten([u * factors[layer] for u, layer in
                             zip(treedef.flatten_up_to(out), leaf_layer)])
    return out, state
  return optax.GradientTransformation(base.init, update)


SGD_DESIGNS = {
    'optax.sgd': lambda grads: optax.sgd(LR, momentum=MOMENTUM),
    'shipped': lambda grads: layerlr_optax.sgd(LR, momentum=MOMENTUM),
    'grouped': grouped,
    'flat': flat,
}
ADAM_DESIGNS = {
    'optax.adam': lambda grads: optax.adam(1e-3),
    'shipped': lambda grads: layerlr_optax.layerwise(optax.adam(1e-3)),
    'unbarriered': unbarriered,
}
FAMILIES = {'sgd': SGD_DESIGNS, 'adam': ADAM_DESIGNS}


def bench(tree: str, family: str, repeats: int, min_seconds: float):
  designs = FAMILIES[family]
  params, grads = trees.make(tree)
  rows, runs, reference = [], [], None
  for name, make in designs.items():
    opt = make(grads)
    step = common.make_step(opt)
    p = jax.tree.map(lambda x: x.copy(), params)
    state = opt.init(p)
    t0 = time.perf_counter()
    compiled = step.lower(p, state, grads).compile()
    compile_s = time.perf_counter() - t0
    # One step from the same start: every layer-rate design must agree (to
    # float32 summation order: `flat` adds tens of millions of squares one
    # by one).
    first = compiled(jax.tree.map(lambda x: x.copy(), params), opt.init(p),
                     grads)[0]
    if name == 'shipped':
      reference = first
    elif reference is not None:
      for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(first)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                   atol=1e-6, err_msg=f'{family}/{name}')
    carry = [p, state]

    def run(compiled=compiled, carry=carry):
      carry[0], carry[1] = compiled(carry[0], carry[1], grads)
      jax.block_until_ready(carry[0])
    runs.append(run)
    rows.append({'tree': tree, 'family': family, 'design': name,
                 'compile_s': compile_s, **program.describe(compiled)})
  medians = common.interleaved_medians(runs, repeats, min_seconds)
  for row, median in zip(rows, medians):
    row.update(median_s=median, baseline=next(iter(designs)),
               ratio=median / medians[0],
               compile_ratio=row['compile_s'] / rows[0]['compile_s'])
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.designs')
  parser.add_argument('--json', help='write the results here')
  parser.add_argument('--trees', default='deep_mlp_100,deep_mlp_1000,alexnet')
  parser.add_argument('--repeats', type=int, default=20)
  args = parser.parse_args(argv)
  cases = []
  for tree in args.trees.split(','):
    if tree not in trees.TREES:
      parser.error(f'unknown tree {tree!r}')
    for family in FAMILIES:
      rows = bench(tree, family, args.repeats, 2.0)
      cases += rows
      print(f'\n### {tree}, {family}\n')
      print(common.markdown_table(
          ['design', 'update (ms)', 'ratio', 'compile (s)', 'compile ratio',
           'kernels', 'temp (MB)'],
          [[r['design'], f'{1e3 * r["median_s"]:.3f}', f'{r["ratio"]:.2f}',
            f'{r["compile_s"]:.2f}', f'{r["compile_ratio"]:.2f}',
            r['kernels'], f'{r["temp_bytes"] / 2**20:.1f}'] for r in rows]),
          flush=True)
  common.write_json(args.json, {**common.device_info(), 'benchmark': 'designs',
                                'repeats': args.repeats, 'cases': cases})
  return 0


if __name__ == '__main__':
  sys.exit(main())
