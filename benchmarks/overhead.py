"""Update-only cost: ``opt.update`` + ``optax.apply_updates`` under jit.

  python -m benchmarks.overhead [--quick] [--json PATH] [--trees a,b]

For every parameter tree (benchmarks/trees.py) and optimizer, compiles one
donated step ``(params, state, grads) -> (params, state)``, reports its compile
time, then times all optimizers of the tree interleaved and reports the median
and the ratio to ``optax.sgd(m=0.9)`` measured in the same process.
"""

from __future__ import annotations

import sys
import time

import jax

from benchmarks import common
from benchmarks import trees
from benchmarks.common import BASELINE
from benchmarks.common import OPTIMIZERS

def bench_tree(tree: str, names, repeats: int, min_seconds: float):
  params, grads = trees.make(tree)
  compiled, compile_s, carries = {}, {}, {}
  for name in names:
    opt = OPTIMIZERS[name]()
    p = jax.tree.map(lambda x: x.copy(), params)
    state = opt.init(p)
    t0 = time.perf_counter()
    compiled[name] = common.make_step(opt).lower(p, state, grads).compile()
    compile_s[name] = time.perf_counter() - t0
    carries[name] = [p, state]

  def runner(name):
    def run():
      carry = carries[name]
      carry[0], carry[1] = compiled[name](carry[0], carry[1], grads)
      jax.block_until_ready(carry[0])
    return run

  medians = common.interleaved_medians([runner(n) for n in names], repeats,
                                       min_seconds)
  base = dict(zip(names, medians))[BASELINE]
  base_compile = compile_s[BASELINE]
  return [{'tree': tree, 'optimizer': name, 'median_s': med,
           'baseline': BASELINE, 'ratio': med / base,
           'compile_s': compile_s[name],
           'compile_ratio': compile_s[name] / base_compile}
          for name, med in zip(names, medians)]


def main(argv=None) -> int:
  parser = common.selection_parser('python -m benchmarks.overhead')
  parser.add_argument('--repeats', type=int, default=None)
  args = parser.parse_args(argv)
  tree_names, names = common.selected(parser, args)
  repeats = args.repeats or (10 if args.quick else 30)
  cases = []
  for tree in tree_names:
    rows = bench_tree(tree, names, repeats, 0.0 if args.quick else 2.0)
    cases += rows
    n_params, n_leaves = trees.count(tree)
    print(f'\n### {tree} ({n_params:,} params, {n_leaves} leaves)\n')
    print(common.markdown_table(
        ['optimizer', 'update median (ms)', f'ratio to {BASELINE}',
         'compile (s)', 'compile ratio'],
        [[r['optimizer'], f'{1e3 * r["median_s"]:.3f}', f'{r["ratio"]:.3f}',
          f'{r["compile_s"]:.2f}', f'{r["compile_ratio"]:.2f}'] for r in rows]),
        flush=True)
    # After every tree, so a time-boxed run keeps what it finished.
    common.write_json(args.json, {**common.device_info(),
                                  'benchmark': 'overhead',
                                  'repeats': repeats, 'cases': cases})
  return 0


if __name__ == '__main__':
  sys.exit(main())
