"""Tables and plots from results.json (``python -m experiments.report DIR``),
and one method of one run against one of another (``... compare``)."""

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


def compare_markdown(a: dict[str, Any], method_a: str, b: dict[str, Any],
                     method_b: str, label_a: str, label_b: str) -> str:
  """Test error of one method of run `a` against one of run `b`, per eval."""
  runs_a, runs_b = _by_method(a).get(method_a), _by_method(b).get(method_b)
  if not runs_a or not runs_b:
    raise ValueError(f'no runs of {method_a!r} in {label_a} or of '
                     f'{method_b!r} in {label_b}.')
  if a['eval_steps'] != b['eval_steps']:
    raise ValueError(f'{label_a} and {label_b} evaluated at different steps.')
  err_a, err_b = _stack(runs_a, 'test_error'), _stack(runs_b, 'test_error')
  rows = [f'| {step} | {_fmt(x.mean(), x.std(ddof=1))} | '
          f'{_fmt(y.mean(), y.std(ddof=1))} | {x.mean() - y.mean():+.2f} | '
          f'{welch_p(x, y):.3f} |'
          for step, x, y in zip(a['eval_steps'], err_a.T, err_b.T)]
  lines = [
      f'Test error (%), {method_a} in {label_a} ({len(runs_a)} seeds) vs '
      f'{method_b} in {label_b} ({len(runs_b)} seeds); Welch two-sided p.',
      '',
      f'| iteration | {method_a} | {method_b} | Δ | p |',
      '|---|---|---|---|---|', *rows]
  for method, runs in ((method_a, runs_a), (method_b, runs_b)):
    if method.endswith('+layer'):
      lines += ['', f'{method}: layer factor (mean over layers and seeds) '
                + _factor_summary(runs)]
  return '\n'.join(lines)


def _factor_summary(runs) -> str:
  """Mean factor overall, over the first and the last fifth of training."""
  # (seeds, layers, logged steps) -> (logged steps,)
  per_step = np.array([list(r['layer_factors'].values()) for r in runs],
                      dtype=np.float64).mean(axis=(0, 1))
  fifth = max(1, len(per_step) // 5)
  return (f'{per_step.mean():.2f} overall, {per_step[:fifth].mean():.2f} in '
          f'the first fifth of training, {per_step[-fifth:].mean():.2f} in '
          'the last.')


def _load(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, 'results.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no results.json in {workdir!r}')
  with open(path) as f:
    return json.load(f)


USAGE = ('usage: python -m experiments.report WORKDIR\n'
         '       python -m experiments.report compare WORKDIR_A METHOD_A '
         'WORKDIR_B METHOD_B')


def main(argv: list[str]) -> int:
  try:
    if len(argv) == 6 and argv[1] == 'compare':
      _, _, dir_a, method_a, dir_b, method_b = argv
      print(compare_markdown(_load(dir_a), method_a, _load(dir_b), method_b,
                             dir_a, dir_b))
    elif len(argv) == 2:
      write_all(_load(argv[1]), argv[1])
    else:
      print(USAGE, file=sys.stderr)
      return 2
  except (FileNotFoundError, ValueError) as e:
    print(e, file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
