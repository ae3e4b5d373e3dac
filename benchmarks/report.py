"""Markdown tables from the benchmarks' JSON: ``python -m benchmarks.report
benchmarks/results/overhead_cpu.json benchmarks/results/train_step_cpu.json
benchmarks/results/program_cpu.json benchmarks/results/designs_cpu.json``."""

from __future__ import annotations

import json
import os
import statistics
import sys

from experiments.lib import fileio

from benchmarks import common

TARGET_UPDATE = 1.15
TARGET_COMPILE = 1.2


# Trees per table: a "median (min-max)" column is ~90 px at the docs' table
# font, so five fit beside the optimizer names at 1,280 px.
TREES_PER_TABLE = 5


def _optimizer_by_tree(cases, cell) -> str:
  """Markdown tables: a row per optimizer, a column per tree, at most
  `TREES_PER_TABLE` trees a table (so it fits a page)."""
  trees = list(dict.fromkeys(c['tree'] for c in cases))
  optimizers = list(dict.fromkeys(c['optimizer'] for c in cases))
  by = {(c['tree'], c['optimizer']): c for c in cases}
  chunks = -(-len(trees) // TREES_PER_TABLE)
  size = -(-len(trees) // chunks)  # balanced: 9 trees -> 5 + 4
  return '\n\n'.join(common.markdown_table(
      ['optimizer'] + part,
      [[name] + [cell(by[(t, name)]) if (t, name) in by else ''
                 for t in part] for name in optimizers])
      for part in (trees[i:i + size] for i in range(0, len(trees), size)))


def figure(payload: dict, path: str) -> None:
  """Update and compile time of every optimizer over optax.sgd's, per
  tree: the median over fresh processes with the (min-max) range as a bar;
  the targets as lines."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  import numpy as np
  cases = payload['cases']
  trees = list(dict.fromkeys(c['tree'] for c in cases))
  names = [n for n in dict.fromkeys(c['optimizer'] for c in cases)
           if n != common.BASELINE]
  by = {(c['tree'], c['optimizer']): c for c in cases}
  fig, axes = plt.subplots(2, 1, figsize=(9.0, 6.4), sharex=True)
  x = np.arange(len(trees))
  width = 0.8 / max(1, len(names))
  for ax, field, target, label in (
      (axes[0], 'ratio', TARGET_UPDATE, 'update time'),
      (axes[1], 'compile_ratio', TARGET_COMPILE, 'compile time')):
    for i, name in enumerate(names):
      rows = [by.get((t, name)) for t in trees]
      mid = np.array([r[field] if r else np.nan for r in rows])
      lo = np.array([r.get(f'{field}_min', r[field]) if r else np.nan
                     for r in rows])
      hi = np.array([r.get(f'{field}_max', r[field]) if r else np.nan
                     for r in rows])
      ax.bar(x + (i - (len(names) - 1) / 2) * width, mid, width,
             yerr=[mid - lo, hi - mid], capsize=2, label=name)
    ax.axhline(1.0, color='k', linewidth=0.8)
    ax.axhline(target, color='grey', linestyle='--', linewidth=0.8,
               label=f'target for layerlr_optax.sgd ({target}x)')
    ax.set_ylabel(f'{label} / optax.sgd', fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, axis='y', alpha=0.3)
    # Room above the bars for the legend.
    top = max(c.get(f'{field}_max', c[field]) for c in cases)
    ax.set_ylim(0, top * 1.35)
    ax.legend(fontsize=8, ncol=3, loc='upper left')
  axes[1].set_xticks(x, trees, rotation=30, ha='right')
  repetitions = payload.get('repetitions')
  fig.suptitle(
      f'Cost per update step over optax.sgd (m=0.9), {payload["device"]}, '
      f'{payload["host"]}\nmedian' + (
          f' of {repetitions} fresh processes, bars: min-max'
          if repetitions else '') + '; lower is cheaper', fontsize=10)
  fig.tight_layout()
  fileio.write_figure(fig, path)
  plt.close(fig)


def _ratio(case: dict, field: str = 'ratio') -> str:
  """A case's ratio; with its range over processes where it was repeated
  (`benchmarks.repeated`)."""
  text = f'{case[field]:.2f}'
  if f'{field}_min' in case:
    text += f' ({case[f"{field}_min"]:.2f}-{case[f"{field}_max"]:.2f})'
  return text


def _repetitions(payload: dict) -> str:
  n = payload.get('repetitions')
  return (f' Repeated in {n} fresh processes: the median over them, '
          '(min-max) beside it.' if n else '')


def peer_ratios(payloads: list[dict], tree: str, name: str, field: str):
  """Each repetition's ratio of `name` to its peer (common.PEERS) on `tree`
  for `field` ('median_s' or 'compile_s'), measured in the same process."""
  ratios = []
  for payload in payloads:
    by = {(c['tree'], c['optimizer']): c for c in payload['cases']}
    mine, peer = by.get((tree, name)), by.get((tree, common.PEERS[name]))
    if mine and peer:
      ratios.append(mine[field] / peer[field])
  return ratios


def family_table(payload: dict) -> str | None:
  """The per-layer rules against their optax peers (common.PEERS): update
  time, then compile time, of each over its peer's, per tree, the median
  over the fresh processes with (min-max) beside it; None without such
  pairs."""
  payloads = payload.get('each') or [payload]
  cases = payload['cases']
  names = [n for n in dict.fromkeys(c['optimizer'] for c in cases)
           if n in common.PEERS]
  trees = list(dict.fromkeys(c['tree'] for c in cases))
  if not names:
    return None

  def cell(tree, name, field):
    ratios = sorted(peer_ratios(payloads, tree, name, field))
    if not ratios:
      return ''
    text = f'{statistics.median(ratios):.2f}'
    if len(ratios) > 1:
      text += f' ({ratios[0]:.2f}-{ratios[-1]:.2f})'
    return text

  # Two name columns: three trees a table fit the page.
  parts = [trees[i:i + 3] for i in range(0, len(trees), 3)]
  blocks = []
  for field, what in (('median_s', 'update time'),
                      ('compile_s', 'compile time')):
    blocks.append(
        f'**Per-layer rules against their optax peers: {what}**, each '
        'over its peer\'s measured in the same process (below 1: faster '
        'than the peer)')
    blocks += [common.markdown_table(
        ['rule', 'peer'] + part,
        [[n, common.PEERS[n]] + [cell(t, n, field) for t in part]
         for n in names]) for part in parts]
  return '\n\n'.join(blocks)


def overhead_tables(payload: dict) -> str:
  cases = payload['cases']
  baseline = [c for c in cases if c['optimizer'] == 'optax.sgd']
  base = [['optax.sgd update (ms)'] +
          [f'{1e3 * c["median_s"]:.3f}' for c in baseline],
          ['optax.sgd compile (s)'] +
          [f'{c["compile_s"]:.2f}' for c in baseline]]
  return '\n\n'.join([
      f'Backend {payload["backend"]}, {payload["device"]}, {payload["host"]}, '
      f'jax {payload["jax"]}; median of {payload["repeats"]}+ interleaved '
      'repetitions.' + _repetitions(payload),
      '**Update-only time, ratio to optax.sgd(m=0.9)** (target for '
      f'layerlr_optax.sgd: <= {TARGET_UPDATE} on CPU)',
      _optimizer_by_tree(cases, _ratio),
      '**Compile time, ratio to optax.sgd** (target: <= '
      f'{TARGET_COMPILE})',
      _optimizer_by_tree(cases, lambda c: _ratio(c, 'compile_ratio')),
      '**Baseline absolute numbers**',
      common.markdown_table(['', *[c['tree'] for c in baseline]], base),
  ] + [table for table in [family_table(payload)] if table])


def train_step_tables(payload: dict) -> str:
  rows = [[c['tree'], c['optimizer'], c['batch_size'],
           f'{1e3 * c["median_s"]:.2f}', f'{c["images_per_s"]:.0f}',
           _ratio(c) if 'ratio_min' in c else f'{c["ratio"]:.3f}']
          for c in payload['cases']]
  seeds = payload['seeds']
  return '\n\n'.join([
      f'Backend {payload["backend"]}, {payload["device"]}, {payload["host"]}.'
      + _repetitions(payload),
      common.markdown_table(['model', 'optimizer', 'batch', 'step (ms)',
                             'images/s', 'ratio to optax.sgd'], rows),
      f'{seeds["num_seeds"]} LeNet seeds per step: vmapped '
      f'{1e3 * seeds["vmapped_s"]:.1f} ms vs sequential '
      f'{1e3 * seeds["sequential_s"]:.1f} ms (vmapped / sequential = '
      f'{seeds["vmapped_over_sequential"]:.2f}; faster: {seeds["faster"]}).',
  ])


def program_tables(payload: dict) -> str:
  cases = payload['cases']
  return '\n\n'.join([
      f'Backend {payload["backend"]}, {payload["device"]}, {payload["host"]}, '
      f'jax {payload["jax"]}.',
      '**Kernels per update step** (operations of the optimised program; '
      'one thunk each on XLA:CPU)',
      _optimizer_by_tree(cases, lambda c: str(c['kernels'])),
      '**Lowering + compilation (s)**',
      _optimizer_by_tree(
          cases, lambda c: f'{c["lower_s"]:.2f} + {c["compile_s"]:.2f}'),
      '**Temporary memory (MB)**',
      _optimizer_by_tree(cases,
                         lambda c: f'{c["temp_bytes"] / 2**20:.1f}'),
  ])


def designs_tables(payload: dict) -> str:
  blocks = [f'Backend {payload["backend"]}, {payload["device"]}, '
            f'{payload["host"]}; median of {payload["repeats"]}+ interleaved '
            'repetitions.']
  groups: dict = {}
  for c in payload['cases']:
    groups.setdefault((c['tree'], c['family']), []).append(c)
  for (tree, family), rows in groups.items():
    blocks.append(f'**{tree}, {family}** (ratios to {rows[0]["baseline"]})')
    blocks.append(common.markdown_table(
        ['design', 'update (ms)', 'ratio', 'compile (s)', 'compile ratio',
         'kernels', 'temp (MB)'],
        [[r['design'], f'{1e3 * r["median_s"]:.3f}', f'{r["ratio"]:.2f}',
          f'{r["compile_s"]:.2f}', f'{r["compile_ratio"]:.2f}', r['kernels'],
          f'{r["temp_bytes"] / 2**20:.1f}'] for r in rows]))
  return '\n\n'.join(blocks)


def render(path: str) -> str:
  """The Markdown tables of one results JSON."""
  with open(path) as f:
    payload = json.load(f)
  tables = {'overhead': overhead_tables,
            'train_step': train_step_tables,
            'program': program_tables,
            'designs': designs_tables}[payload['benchmark']]
  return tables(payload)


def main(argv: list[str]) -> int:
  """``python -m benchmarks.report [--write] [--figure] RESULTS.json ...``:
  prints the tables, or with --write writes each next to its JSON as
  RESULTS.md (the files the docs include); --figure also draws an overhead
  benchmark's RESULTS.png."""
  args = argv[1:]
  write = '--write' in args
  draw = '--figure' in args
  for path in [a for a in args if a not in ('--write', '--figure')]:
    if draw:
      with open(path) as f:
        payload = json.load(f)
      if payload['benchmark'] == 'overhead':
        out = os.path.splitext(path)[0] + '.png'
        figure(payload, out)
        print(f'wrote {out}')
    text = render(path)
    if write:
      out = os.path.splitext(path)[0] + '.md'
      fileio.write_atomic(out, text.rstrip() + '\n')
      print(f'wrote {out}')
    else:
      print(f'<!-- generated by python -m benchmarks.report {path} -->')
      print(text)
      print()
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
