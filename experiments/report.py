"""Tables and plots from results.json (``python -m experiments.report DIR``)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np


def _by_method(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
  grouped: dict[str, list[dict[str, Any]]] = {}
  for run in results['runs']:
    grouped.setdefault(run['method'], []).append(run)
  return grouped


def _stack(runs, key) -> np.ndarray:
  return np.array([r[key] for r in runs], dtype=np.float64)


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
  """Two-sided Welch t-test p-value (nan with fewer than 2 samples each)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  if len(a) < 2 or len(b) < 2:
    return float('nan')
  if np.std(a) == 0 and np.std(b) == 0:
    return 1.0 if np.mean(a) == np.mean(b) else 0.0
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _fmt(mean: float, std: float) -> str:
  return f'{mean:.2f} ± {std:.2f}'


def pairs(methods) -> list[tuple[str, str]]:
  return [(m, f'{m}+layer') for m in methods if f'{m}+layer' in methods]


def table_markdown(results: dict[str, Any]) -> str:
  """The paper's Table I layout, ours beside the paper's, plus Welch tests."""
  grouped = _by_method(results)
  methods = list(grouped)
  steps = results['eval_steps']
  paper = results['config'].get('paper_table') or {}
  n_seeds = {m: len(r) for m, r in grouped.items()}
  lines = [
      f'# {results["experiment"]}: test error (%), mean ± std over seeds',
      '',
      'Seeds per method: ' + ', '.join(f'{m} {n}' for m, n in n_seeds.items())
      + '. Cells: ours, then (paper) where the paper reports that cell.',
      '',
      '| iteration | ' + ' | '.join(methods) + ' |',
      '|---|' + '---|' * len(methods),
  ]
  errors = {m: _stack(r, 'test_error') for m, r in grouped.items()}
  for i, step in enumerate(steps):
    cells = []
    for m in methods:
      cell = _fmt(errors[m][:, i].mean(), errors[m][:, i].std(ddof=1)
                  if len(errors[m]) > 1 else 0.0)
      ref = paper.get(m, {}).get(str(step))
      if ref:
        cell += f' ({_fmt(*ref)})'
      cells.append(cell)
    lines.append(f'| {step} | ' + ' | '.join(cells) + ' |')
  pair_list = pairs(methods)
  if pair_list:
    lines += [
        '',
        '## Does +layer lower the test error? (Welch t-test, two-sided)',
        '',
        'Δ = mean(method+layer) − mean(method), in percentage points; '
        'negative favours the layer-specific rate.' +
        (' Paper Δ in parentheses.' if paper else ''),
        '',
        '| iteration | ' + ' | '.join(f'{b}: Δ, p (paper Δ)'
                                      for b, _ in pair_list) + ' |',
        '|---|' + '---|' * len(pair_list),
    ]
    for i, step in enumerate(steps):
      cells = []
      for base, layered in pair_list:
        a, b = errors[layered][:, i], errors[base][:, i]
        cell = f'{a.mean() - b.mean():+.2f}, p={welch_p(a, b):.3f}'
        pa, pb = (paper.get(layered, {}).get(str(step)),
                  paper.get(base, {}).get(str(step)))
        if pa and pb:
          cell += f' ({pa[0] - pb[0]:+.2f})'
        cells.append(cell)
      lines.append(f'| {step} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def _base_groups(methods) -> list[list[str]]:
  groups: dict[str, list[str]] = {}
  for m in methods:
    groups.setdefault(m.split('+')[0], []).append(m)
  return list(groups.values())


def plot_curves(results: dict[str, Any], path: str) -> None:
  """Test error and training loss vs iteration, one column per optimizer."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  grouped = _by_method(results)
  groups = _base_groups(list(grouped))
  steps = np.array(results['eval_steps'])
  fig, axes = plt.subplots(2, len(groups), figsize=(4.2 * len(groups), 6.4),
                           squeeze=False, sharex=True)
  for col, group in enumerate(groups):
    for method in group:
      for row, key in enumerate(('test_error', 'train_loss')):
        values = _stack(grouped[method], key)
        mean, std = values.mean(0), values.std(0)
        ax = axes[row, col]
        ax.plot(steps, mean, label=method,
                linestyle='-' if method.endswith('+layer') else '--')
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    axes[0, col].set_title(' vs '.join(group))
    axes[0, col].set_ylabel('test error (%)')
    axes[1, col].set_ylabel('training loss')
    axes[1, col].set_xlabel('iteration')
    axes[0, col].set_yscale('log')
    axes[1, col].set_yscale('log')
    axes[0, col].legend()
  fig.suptitle(f'{results["experiment"]}: mean ± std over seeds')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_layer_rates(results: dict[str, Any], path: str) -> None:
  """The eq. 9 factor of every layer over training, per method."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  grouped = _by_method(results)
  methods = list(grouped)
  cols = min(3, len(methods))
  rows = -(-len(methods) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows),
                           squeeze=False, sharey=True)
  for ax, method in zip(axes.flat, methods):
    runs = grouped[method]
    steps = runs[0]['factor_steps']
    for layer in runs[0]['layer_factors']:
      values = np.array([r['layer_factors'][layer] for r in runs])
      ax.plot(steps, values.mean(0), label=layer)
      ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
    applied = 'applied' if method.endswith('+layer') else 'not applied'
    ax.set_title(f'{method} (factor {applied})', fontsize=10)
    ax.set_xlabel('iteration')
    ax.set_ylabel('1 + log(1 + 1/||g_l||)')
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(methods):]:
    ax.axis('off')
  fig.suptitle('Per-layer learning-rate factor (mean over seeds, band = '
               'min..max)')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_all(results: dict[str, Any], workdir: str) -> None:
  with open(os.path.join(workdir, 'table.md'), 'w') as f:
    f.write(table_markdown(results))
  plot_curves(results, os.path.join(workdir, 'curves.png'))
  plot_layer_rates(results, os.path.join(workdir, 'layer_rates.png'))


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print('usage: python -m experiments.report WORKDIR', file=sys.stderr)
    return 2
  path = os.path.join(argv[1], 'results.json')
  if not os.path.isfile(path):
    print(f'no results.json in {argv[1]!r}', file=sys.stderr)
    return 1
  with open(path) as f:
    write_all(json.load(f), argv[1])
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
