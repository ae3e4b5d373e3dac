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

import re
import sys
import time

from benchmarks import common
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
  opt = common.OPTIMIZERS[name]()
  state = opt.init(params)
  t0 = time.perf_counter()
  lowered = common.make_step(opt).lower(params, state, grads)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  return {'tree': tree, 'optimizer': name, 'lower_s': t1 - t0,
          'compile_s': t2 - t1, 'ops': count_ops(lowered.as_text()),
          **describe(compiled)}


def describe(compiled) -> dict[str, int]:
  """Kernels and temporary bytes of a compiled step."""
  memory = compiled.memory_analysis()
  return {'kernels': count_kernels(compiled.as_text()),
          'temp_bytes': int(getattr(memory, 'temp_size_in_bytes', -1))}


def main(argv=None) -> int:
  parser = common.selection_parser('python -m benchmarks.program')
  args = parser.parse_args(argv)
  tree_names, names = common.selected(parser, args)
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
