"""Tables and plots of an experiment's results.json, and one method of one
run against one of another.

Spread is always the sample standard deviation (ddof=1) over seeds, in tables
and plot bands alike; with a single seed it is not defined and shows as n/a
(no band).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from experiments.lib import fileio
from experiments.lib import records
from experiments.lib import stats
from experiments.lib.methods import Method
from experiments.lib.methods import comparisons


def _stack(runs: Sequence[records.RunRecord], key: str) -> np.ndarray:
  """(seeds, evaluations) float array; None (after divergence) is nan."""
  return np.array([[np.nan if v is None else v for v in getattr(r, key)]
                   for r in runs], dtype=np.float64)


def fmt(mean: float, std: float) -> str:
  """``mean ± std``; ``mean ± n/a`` when the std is undefined (one seed)."""
  spread = 'n/a' if np.isnan(std) else f'{std:.2f}'
  return f'{mean:.2f} ± {spread}'


def _fmt_p(p: float) -> str:
  return 'n/a' if np.isnan(p) else f'{p:.3f}'


def table_markdown(results: records.Results) -> str:
  """The paper's Table I layout, ours beside the paper's, plus Welch tests."""
  grouped = results.by_method()
  methods = list(grouped)
  steps = results.eval_steps
  paper = results.config.get('paper_table') or {}
  note = 'Cells: ours, then (paper) where the paper reports that cell.'
  if not paper:
    note = 'The paper reports no numbers for this experiment.'
  elif results.data is not None and not results.data['paper_data']:
    paper = {}
    note = ("The paper's numbers are not shown: this run's data is not the "
            f"paper's ({results.data['source']} {results.data['dataset']} "
            'whose content does not match the original release).')
  lines = [
      f'# {results.experiment}: test error (%), mean ± std over seeds',
      '',
      'Seeds per method: ' + ', '.join(f'{m} {len(r)}'
                                       for m, r in grouped.items())
      + '. ' + note,
      '',
      '| iteration | ' + ' | '.join(methods) + ' |',
      '|---|' + '---|' * len(methods),
  ]
  errors = {m: _stack(r, 'test_error') for m, r in grouped.items()}
  for i, step in enumerate(steps):
    cells = []
    for m in methods:
      cell = fmt(errors[m][:, i].mean(), stats.sample_std(errors[m][:, i]))
      ref = paper.get(m, {}).get(str(step))
      if ref:
        cell += f' ({fmt(*ref)})'
      cells.append(cell)
    lines.append(f'| {step} | ' + ' | '.join(cells) + ' |')
  pair_list = [(a.name, b.name) for a, b in comparisons(
      [Method.parse(m) for m in methods])]
  if pair_list:
    lines += [
        '',
        '## Does the variant lower the test error? (Welch t-test, two-sided)',
        '',
        'Δ = mean(method+variant) − mean(method), in percentage points; '
        'negative favours the variant.' +
        (' Paper Δ in parentheses.' if paper else ''),
        '',
        '| iteration | ' + ' | '.join(
            f'{b}: Δ, p' + (' (paper Δ)' if paper else '')
            for _, b in pair_list) + ' |',
        '|---|' + '---|' * len(pair_list),
    ]
    for i, step in enumerate(steps):
      cells = []
      for base, variant in pair_list:
        a, b = errors[variant][:, i], errors[base][:, i]
        cell = f'{a.mean() - b.mean():+.2f}, p={_fmt_p(stats.welch_p(a, b))}'
        pa, pb = (paper.get(variant, {}).get(str(step)),
                  paper.get(base, {}).get(str(step)))
        if pa and pb:
          cell += f' ({pa[0] - pb[0]:+.2f})'
        cells.append(cell)
      lines.append(f'| {step} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def _base_groups(methods: Sequence[str]) -> list[list[str]]:
  groups: dict[str, list[str]] = {}
  for m in methods:
    groups.setdefault(Method.parse(m).base, []).append(m)
  return list(groups.values())


def _band(ax, x, values: np.ndarray, **kwargs):
  """Mean line and ± sample-std band (no band with one seed)."""
  mean = values.mean(0)
  line, = ax.plot(x, mean, **kwargs)
  std = stats.sample_std(values)
  if not np.all(np.isnan(std)):
    ax.fill_between(x, mean - std, mean + std, alpha=0.2,
                    color=line.get_color())
  return line


def plot_curves(results: records.Results, path: str) -> None:
  """Test error and training loss vs iteration, one column per optimizer."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  grouped = results.by_method()
  groups = _base_groups(list(grouped))
  steps = np.array(results.eval_steps)
  fig, axes = plt.subplots(2, len(groups), figsize=(4.2 * len(groups), 6.4),
                           squeeze=False, sharex=True)
  for col, group in enumerate(groups):
    for method in group:
      for row, key in enumerate(('test_error', 'train_loss')):
        _band(axes[row, col], steps, _stack(grouped[method], key),
              label=method,
              linestyle='--' if Method.parse(method).variant is None else '-')
    axes[0, col].set_title(' vs '.join(group))
    axes[0, col].set_ylabel('test error (%)')
    axes[1, col].set_ylabel('training loss')
    axes[1, col].set_xlabel('iteration')
    axes[0, col].set_yscale('log')
    axes[1, col].set_yscale('log')
    axes[0, col].legend()
  fig.suptitle(f'{results.experiment}: mean ± std over seeds')
  fig.tight_layout()
  fileio.write_figure(fig, path)
  plt.close(fig)


def plot_layer_rates(results: records.Results, path: str) -> None:
  """The eq. 9 factor of every layer over training, per method."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  grouped = results.by_method()
  methods = list(grouped)
  cols = min(3, len(methods))
  rows = -(-len(methods) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows),
                           squeeze=False, sharey=True)
  for ax, method in zip(axes.flat, methods):
    runs = [r for r in grouped[method] if r.diverged_at is None]
    if not runs:
      ax.set_title(f'{method} (every seed diverged)', fontsize=10)
      continue
    steps = runs[0].factor_steps
    for layer in runs[0].layer_factors:
      values = np.array([r.layer_factors[layer] for r in runs])
      ax.plot(steps, values.mean(0), label=layer)
      ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
    applied = ('applied' if Method.parse(method).applies_factor
               else 'not applied')
    ax.set_title(f'{method} (factor {applied})', fontsize=10)
    ax.set_xlabel('iteration')
    ax.set_ylabel('1 + log(1 + 1/||g_l||)')
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(methods):]:
    ax.axis('off')
  fig.suptitle('Per-layer learning-rate factor (mean over seeds, band = '
               'min..max)')
  fig.tight_layout()
  fileio.write_figure(fig, path)
  plt.close(fig)


def factors_markdown(results: records.Results) -> str:
  """The layer factors the layer-rate methods applied: per layer, the
  seed-mean factor over the logged steps (its mean over training, over the
  first and the last fifth, its minimum and maximum)."""
  lines = [f'# {results.experiment}: layer factors applied (mean over seeds)',
           '',
           '| method | layer | mean | first fifth | last fifth | min | max |',
           '|---|---|---|---|---|---|---|']
  for method, runs in results.by_method().items():
    if not Method.parse(method).applies_factor or not runs[0].layer_factors:
      continue
    for layer in runs[0].layer_factors:
      curve = np.array([r.layer_factors[layer] for r in runs],
                       dtype=np.float64).mean(axis=0)
      fifth = max(1, len(curve) // 5)
      lines.append(f'| {method} | {layer} | {curve.mean():.2f} | '
                   f'{curve[:fifth].mean():.2f} | {curve[-fifth:].mean():.2f} '
                   f'| {curve.min():.2f} | {curve.max():.2f} |')
  return '\n'.join(lines) + '\n'


OUTPUTS = ('table.md', 'curves.png', 'layer_rates.png', 'factors.md')


def partial_results(workdir: str) -> records.Results:
  """The runs of WORKDIR finished so far (runs/*.json) as a Results, for
  the tables and plots of a running (or stopped) experiment."""
  config_path = os.path.join(workdir, 'config.json')
  runs_dir = os.path.join(workdir, 'runs')
  if not os.path.exists(config_path):
    raise FileNotFoundError(
        f'{workdir} holds no experiment (no config.json): give the --workdir '
        'of a python -m experiments.run command.')
  with open(config_path) as f:
    config = json.load(f)
  runs = []
  names = sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []
  for name in names:
    if name.endswith('.json'):
      with open(os.path.join(runs_dir, name)) as f:
        runs.append(records.RunRecord.from_json(json.load(f)))
  if not runs:
    raise FileNotFoundError(
        f'{workdir}: no run has finished yet (runs/ is empty); the first '
        'appears after one method x seed has trained.')
  order = [m.strip() for m in config['methods'].split(',')]
  runs.sort(key=lambda r: (order.index(r.method) if r.method in order
                           else len(order), r.seed))
  first = runs[0]
  return records.Results(
      experiment=config['experiment'],
      eval_steps=list(range(config['eval_every'], config['num_steps'] + 1,
                            config['eval_every'])),
      runs=runs, config=config,
      wall_seconds=sum(r.wall_seconds for r in runs),
      session_wall_seconds=0.0, backend='', device=first.device or '',
      versions=first.versions or {}, commit=first.commit)


def planned_runs(results: records.Results) -> int:
  """How many runs the experiment's config asks for."""
  methods = [m for m in results.config['methods'].split(',') if m.strip()]
  return len(methods) * int(results.config['num_seeds'])


def summary_line(results: records.Results) -> str:
  """What the table says, in one line: each variant against its base at the
  last evaluation, and where the interpretation is."""
  grouped = results.by_method()
  parts = []
  for base, variant in comparisons([Method.parse(m) for m in grouped]):
    a = _stack(grouped[variant.name], 'test_error')[:, -1]
    b = _stack(grouped[base.name], 'test_error')[:, -1]
    p = stats.welch_p(a, b)
    parts.append(f'{variant.name} {a.mean() - b.mean():+.2f} points vs '
                 f'{base.name} (p = {_fmt_p(p)}, {len(a)} and {len(b)} seeds)')
  step = results.eval_steps[-1] if results.eval_steps else None
  head = (f'At iteration {step}: ' + '; '.join(parts) + '.' if parts else
          'No variant with its base yet.')
  return (f'{head} Negative favours the variant; p is Welch\'s, two-sided, '
          'uncorrected. What the table means and what it does not (the '
          'tuned comparison): docs/results/paper_reproduction.md.')


def write_all(results: records.Results, workdir: str) -> list[str]:
  """Writes `OUTPUTS` into `workdir`; returns their paths."""
  paths = [os.path.join(workdir, name) for name in OUTPUTS]
  fileio.write_atomic(paths[0], table_markdown(results))
  plot_curves(results, paths[1])
  plot_layer_rates(results, paths[2])
  fileio.write_atomic(paths[3], factors_markdown(results))
  return paths


def compare_markdown(a: records.Results, method_a: str, b: records.Results,
                     method_b: str, label_a: str, label_b: str) -> str:
  """Test error of one method of run `a` against one of run `b`, per eval."""
  runs_a, runs_b = a.by_method().get(method_a), b.by_method().get(method_b)
  if not runs_a or not runs_b:
    raise ValueError(f'no runs of {method_a!r} in {label_a} or of '
                     f'{method_b!r} in {label_b}.')
  if a.eval_steps != b.eval_steps:
    raise ValueError(f'{label_a} and {label_b} evaluated at different steps.')
  err_a, err_b = _stack(runs_a, 'test_error'), _stack(runs_b, 'test_error')
  rows = [f'| {step} | {fmt(x.mean(), stats.sample_std(x))} | '
          f'{fmt(y.mean(), stats.sample_std(y))} | {x.mean() - y.mean():+.2f} | '
          f'{_fmt_p(stats.welch_p(x, y))} |'
          for step, x, y in zip(a.eval_steps, err_a.T, err_b.T)]
  lines = [
      f'Test error (%), {method_a} in {label_a} ({len(runs_a)} seeds) vs '
      f'{method_b} in {label_b} ({len(runs_b)} seeds); Welch two-sided p.',
      '',
      f'| iteration | {method_a} | {method_b} | Δ | p |',
      '|---|---|---|---|---|', *rows]
  for method, runs in ((method_a, runs_a), (method_b, runs_b)):
    if Method.parse(method).applies_factor:
      lines += ['', f'{method}: layer factor (mean over layers and seeds) '
                + factor_summary(runs)]
  return '\n'.join(lines)


def factor_summary(runs: Sequence[records.RunRecord]) -> str:
  """Mean factor overall, over the first and the last fifth of training."""
  # (seeds, layers, logged steps) -> (logged steps,)
  per_step = np.array([list(r.layer_factors.values()) for r in runs],
                      dtype=np.float64).mean(axis=(0, 1))
  fifth = max(1, len(per_step) // 5)
  return (f'{per_step.mean():.2f} overall, {per_step[:fifth].mean():.2f} in '
          f'the first fifth of training, {per_step[-fifth:].mean():.2f} in '
          'the last.')


# The paper's CIFAR-10 claims (Table II and its text, docs/PAPER.md), as
# (claim, experiment of the variant, its method, experiment of the
# reference, its method, the paper's number, what the number is).
TABLE2_CLAIMS = (
    ('SGD+ours beats SGD (final accuracy, 70k)', 'cifar10_full',
     'sgd+layer', 'cifar10_full', 'sgd', 0.32, 'delta'),
    ('SGD+ours with the 50k step-down (60k in all) beats SGD after 70k',
     'cifar10_full_50k', 'sgd+layer', 'cifar10_full', 'sgd', None, 'delta'),
    ('SGD+ours with the 50k step-down reaches 82.08%', 'cifar10_full_50k',
     'sgd+layer', None, None, 82.08, 'accuracy'),
    ('AdaGrad+ours beats AdaGrad (final accuracy, 70k)', 'cifar10_full',
     'adagrad+layer', 'cifar10_full', 'adagrad', 1.3, 'delta'),
)


def _final_accuracy(results: records.Results | None,
                    method: str | None) -> np.ndarray | None:
  """Per seed, 100 - the last test error of `method`; None if not run."""
  if results is None or method is None:
    return None
  runs = results.by_method().get(method)
  if not runs:
    return None
  return 100.0 - _stack(runs, 'test_error')[:, -1]


def _verdict(delta: float, p: float) -> str:
  if np.isnan(delta):
    return 'diverged'
  if delta <= 0:
    return 'does not hold here'
  return ('holds here (p < 0.05)' if p < 0.05 else
          'same direction, not significant (p >= 0.05)')


def table2_markdown(by_experiment: dict[str, records.Results | None]) -> str:
  """The paper's CIFAR-10 claims against our final test accuracies.

  Args:
    by_experiment: the results of ``cifar10_full`` and ``cifar10_full_50k``
      (None where not run).

  Returns:
    A Markdown table: per claim, the paper's number, ours (mean ± sample
    std over seeds), Welch's two-sided p for the comparisons, and whether
    the claim's direction holds here. The paper's absolute accuracy is
    compared only on the paper's data (not on the JPEG copy of CIFAR-10).
  """
  present = [r for r in by_experiment.values() if r is not None]
  limits = sorted({r.config.get('max_eval_examples', 0) for r in present})
  on = ('the whole test set' if limits == [0] else
        'the first ' + ' or '.join(str(n) for n in limits if n)
        + ' test examples' + (' (or all)' if 0 in limits else ''))
  other_data = [r.data for r in present
                if r.data is not None and not r.data['paper_data']]
  data_note = (
      f"The data is not the paper's ({other_data[0]['source']} "
      f"{other_data[0]['dataset']}; with the `local` source the JPEG (q75) "
      "copy of CIFAR-10), so absolute accuracies are not the paper's: "
      'compare the methods with each other.' if other_data else
      "The data is the paper's (TFDS cifar10).")
  lines = [
      "# The paper's CIFAR-10 claims (Table II), final test accuracy (%)",
      '',
      f'Ours: mean ± std over seeds at the last evaluation, on {on}; '
      'Δ = variant − reference in percentage points, Welch two-sided p. '
      + data_note,
      '',
      '| claim | paper | ours | seeds | p | here |',
      '|---|---|---|---|---|---|']
  for claim, exp_a, method_a, exp_b, method_b, paper, kind in TABLE2_CLAIMS:
    a = _final_accuracy(by_experiment.get(exp_a), method_a)
    b = _final_accuracy(by_experiment.get(exp_b) if exp_b else None,
                        method_b)
    shown_paper = ('n/a' if paper is None else
                   f'{paper:+.2f}' if kind == 'delta' else f'{paper:.2f}')
    if a is None or (kind == 'delta' and b is None):
      lines.append(f'| {claim} | {shown_paper} | not run | | | |')
      continue
    if kind == 'accuracy':
      comparable = not other_data
      verdict = ('not comparable (other data)' if not comparable else
                 'reached' if a.mean() >= paper else 'not reached')
      lines.append(f'| {claim} | {shown_paper} | '
                   f'{fmt(a.mean(), stats.sample_std(a))} | {len(a)} | | '
                   f'{verdict} |')
      continue
    delta = float(a.mean() - b.mean())
    p = stats.welch_p(a, b)
    lines.append(
        f'| {claim} | {shown_paper} | Δ {delta:+.2f} '
        f'({fmt(a.mean(), stats.sample_std(a))} vs '
        f'{fmt(b.mean(), stats.sample_std(b))}) | {len(a)} vs {len(b)} | '
        f'{_fmt_p(p)} | {_verdict(delta, p)} |')
  return '\n'.join(lines) + '\n'


def write_table2(by_experiment: dict[str, records.Results | None],
                 path: str) -> str:
  fileio.write_atomic(path, table2_markdown(by_experiment))
  return path
