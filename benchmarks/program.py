"""What XLA makes of one update step: program size, kernels, temporaries.

  python -m benchmarks.program [--quick] [--json PATH] [--trees a,b]
                               [--optimizers x,y]

For every parameter tree and optimizer of `benchmarks.overhead`, lowers and
compiles the same donated step and reports, without timing the step itself:

- ``lower_s`` / ``compile_s``: tracing + lowering to StableHLO, and XLA's
  compilation (the two parts of `overhead`'s ``compile_s``);
- ``ops``: operations in the lowered (unoptimised) program;
- ``kernels``: operations XLA's optimised entry computation executes (each
  fusion, custom kernel, copy, ...; parameters, constants, bitcasts and
  tuples excluded). On XLA:CPU each is one thunk, and most compile passes
  scale with their number;
- ``temp_bytes``: XLA's temporary buffer size, i.e. intermediates it writes
  to memory instead of fusing (large ones also cost page faults every step).

This is the evidence behind the compile-time discussion in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from benchmarks import common
from benchmarks import overhead
from benchmarks import trees

NOT_KERNELS = ('parameter', 'constant', 'bitcast', 'tuple',
               'get-tuple-element')
_OP = re.compile(r'^\s*(?:ROOT )?%\S+ = .*?\s([a-z][\w-]*)\(', re.M)


def count_kernels(hlo_text: str) -> int:
  """Operations of the optimised entry computation that run as kernels."""
  entry = hlo_text[hlo_text.index('\nENTRY'):]
  entry = entry[:entry.index('\n}')]
  return sum(op not in NOT_KERNELS for op in _OP.findall(entry))


def count_ops(stablehlo_text: str) -> int:
  return len(re.findall(r'^\s*(?:%\S+(?:, %\S+)* = )?"?[a-z_]+\.[a-z_]+',
                        stablehlo_text, re.M))


def measure(tree: str, name: str, params, grads) -> dict:
  opt = overhead.OPTIMIZERS[name]()
  state = opt.init(params)
  t0 = time.perf_counter()
  lowered = overhead.make_step(opt).lower(params, state, grads)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  memory = compiled.memory_analysis()
  return {'tree': tree, 'optimizer': name, 'lower_s': t1 - t0,
          'compile_s': t2 - t1, 'ops': count_ops(lowered.as_text()),
          'kernels': count_kernels(compiled.as_text()),
          'temp_bytes': int(getattr(memory, 'temp_size_in_bytes', -1))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.program')
  parser.add_argument('--quick', action='store_true',
                      help='3 small trees, 3 optimizers')
  parser.add_argument('--json', help='write the results here')
  parser.add_argument('--trees', help='comma-separated subset of: ' +
                      ', '.join(trees.TREES))
  parser.add_argument('--optimizers', help='comma-separated subset of: ' +
                      ', '.join(overhead.OPTIMIZERS))
  args = parser.parse_args(argv)
  tree_names = (args.trees.split(',') if args.trees else
                overhead.QUICK_TREES if args.quick else tuple(trees.TREES))
  names = (args.optimizers.split(',') if args.optimizers else
           overhead.QUICK_OPTIMIZERS if args.quick
           else tuple(overhead.OPTIMIZERS))
  for bad in [t for t in tree_names if t not in trees.TREES]:
    parser.error(f'unknown tree {bad!r}')
  for bad in [n for n in names if n not in overhead.OPTIMIZERS]:
    parser.error(f'unknown optimizer {bad!r}')
  if overhead.BASELINE not in names:
    names = (overhead.BASELINE, *names)
  cases = []
  for tree in tree_names:
    params, grads = trees.make(tree)
    rows = [measure(tree, name, params, grads) for name in names]
    cases += rows
    n_params, n_leaves = trees.count(tree)
    print(f'\n### {tree} ({n_params:,} params, {n_leaves} leaves)\n')
    print(common.markdown_table(
        ['optimizer', 'lower (s)', 'compile (s)', 'ops', 'kernels',
         'temp (MB)'],
        [[r['optimizer'], f'{r["lower_s"]:.2f}', f'{r["compile_s"]:.2f}',
          r['ops'], r['kernels'], f'{r["temp_bytes"] / 2**20:.1f}']
         for r in rows]), flush=True)
    # After every tree, so a time-boxed run keeps what it finished.
    common.write_json(args.json, {**common.device_info(),
                                  'benchmark': 'program', 'cases': cases})
  return 0


if __name__ == '__main__':
  sys.exit(main())
