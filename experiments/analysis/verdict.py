"""The corrected verdict over every sweep: verdict.json and verdict.md.

Each sweep compares methods at their own best rates (`sweeps.comparison_rows`).
Here the comparisons of all the sweeps named in `SWEEPS` are gathered into
families, one per question (`sweeps.VERDICT_FAMILY`, `sweeps.FROZEN_FAMILY`),
and each family's p-values, computed on the confirmation seeds only (those
that took no part in choosing the rates), are corrected with Holm's method.
The uncorrected and all-seed values stand beside them. The README and the
results pages quote this file; `tests/experiments/test_verdict.py` rebuilds
it from the runs.
"""

from __future__ import annotations

import math
import os
from typing import Any

from experiments.analysis import sweeps as sweeps_lib
from experiments.lib import fileio
from experiments.lib import stats

# The tuned comparisons the verdict rests on (experiments/results/<name>).
SWEEPS = ('mnist_lenet_sweep', 'mnist_deep_mlp_sweep',
          'mnist_transformer_sweep', 'cifar10_full_short_sweep',
          'mnist_transformer_scan_sweep')
ALPHA = 0.05


def build(payloads: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """verdict.json from each sweep's sweep.json payload (by sweep name)."""
  rows = []
  for name in SWEEPS:
    if name in payloads:
      for row in sweeps_lib.comparison_rows(payloads[name]):
        rows.append({'sweep': name, **row})
  families = {}
  for family in dict.fromkeys(r['family'] for r in rows):
    members = [r for r in rows if r['family'] == family]
    adjusted = stats.holm([r['p'] for r in members])
    for row, p_holm in zip(members, adjusted):
      row['p_holm'] = p_holm
      row['outcome'] = _outcome(row['delta'], p_holm)
    finite = [r['p_holm'] for r in members if not math.isnan(r['p_holm'])]
    families[family] = {
        'comparisons': len(members),
        'tested': len(finite),
        'smallest_p_holm': min(finite) if finite else None,
        'significant': sum(r['outcome'].startswith('variant ')
                           for r in members),
        'smallest_p': min((r['p'] for r in members
                           if not math.isnan(r['p'])), default=None),
    }
  return {'alpha': ALPHA, 'correction': 'Holm (1979), per family',
          'seeds': 'confirmation seeds only (seeds >= grid_seeds of each '
                   'sweep), Welch two-sided',
          'sweeps': [s for s in SWEEPS if s in payloads],
          'families': families, 'rows': rows}


def _outcome(delta: float, p_holm: float) -> str:
  if math.isnan(p_holm):
    return 'not tested (fewer than 2 confirmation seeds a side)'
  if p_holm >= ALPHA:
    return 'no significant difference'
  return 'variant better' if delta < 0 else 'variant worse'


def load_payloads(results_dir: str) -> dict[str, dict[str, Any]]:
  """Each sweep's payload, rebuilt from its runs (not read from sweep.json,
  so the verdict cannot drift from the runs)."""
  out = {}
  for name in SWEEPS:
    workdir = os.path.join(results_dir, name)
    if os.path.isdir(os.path.join(workdir, 'runs')):
      out[name] = sweeps_lib.summary(sweeps_lib.load(workdir),
                                     sweeps_lib.data_of(workdir))
  return out


def markdown(verdict: dict[str, Any]) -> str:
  lines = ['# The verdict over every tuned comparison', '',
           f'Each method at its own best learning rate. Welch two-sided p on '
           f'the **confirmation seeds** (the seeds that took no part in '
           f'choosing any rate; n = seeds of each side), corrected for '
           f'multiplicity with Holm\'s method within each family; '
           f'α = {verdict["alpha"]}. The uncorrected p and the all-seed Δ '
           f'and p (selection seeds included) stand beside it. Sweeps: '
           f'{", ".join(verdict["sweeps"])}.', '']
  for family, summary in verdict['families'].items():
    smallest = summary['smallest_p_holm']
    lines += [f'## Family: {family}', '',
              f'{summary["comparisons"]} comparisons; significant after '
              f'Holm: {summary["significant"]}; smallest Holm-adjusted p: '
              + ('n/a' if smallest is None else f'{smallest:.3f}')
              + '.', '',
              '| sweep | variant | vs | n | Δ confirmation | p | p Holm | '
              'outcome | Δ all seeds | p all seeds |',
              '|---|---|---|---|---|---|---|---|---|---|']
    for r in verdict['rows']:
      if r['family'] != family:
        continue
      lines.append(
          f'| {r["sweep"]} | {r["variant"]} | {r["vs"]} | '
          f'{r["n_variant"]}, {r["n_vs"]} | {_signed(r["delta"])} | '
          f'{_p(r["p"])} | {_p(r["p_holm"])} | {r["outcome"]} | '
          f'{_signed(r["delta_all"])} | {_p(r["p_all"])} |')
    lines.append('')
  return '\n'.join(lines)


def _signed(x: float) -> str:
  return 'n/a' if math.isnan(x) else f'{x:+.2f}'


def _p(x: float) -> str:
  return 'n/a' if math.isnan(x) else f'{x:.3f}'


def write(results_dir: str) -> list[str]:
  """Writes verdict.json and verdict.md into `results_dir`."""
  verdict = build(load_payloads(results_dir))
  json_path = os.path.join(results_dir, 'verdict.json')
  md_path = os.path.join(results_dir, 'verdict.md')
  fileio.write_json(json_path, verdict)
  fileio.write_atomic(md_path, markdown(verdict))
  return [json_path, md_path]
