"""A sweep's outputs from its runs: sweep.json (`summary`), best.md
(`best_markdown`) and tuning.png (`plot_tuning`); `load` rebuilds the grid of
a sweep (also an unfinished or running one) from its files alone."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import ml_collections
import numpy as np

from experiments.analysis import results
from experiments.lib import data as data_lib
from experiments.lib import fileio
from experiments.lib import grid as grid_lib
from experiments.lib import provenance
from experiments.lib import records
from experiments.lib import stats
from experiments.lib import workdir as workdir_lib
from experiments.lib.methods import Method
from experiments.lib.methods import PEERS

OUTPUTS = ('sweep.json', 'best.md', 'tuning.png', 'grid.md')


def summary(grid: grid_lib.Grid,
            data: dict[str, Any] | None = None) -> dict[str, Any]:
  """The sweep.json payload from the runs finished so far; `data`: what
  `data_lib.identity` says of the config's data (None: ask it, which reads
  the data files)."""
  config = grid.config
  sweep = config.sweep
  grid_seeds = list(range(sweep.grid_seeds))
  runs, points, best, commits = [], {}, {}, set()
  platforms: dict[tuple[str, str], int] = {}
  for m in grid.methods:
    points[m.name] = []
    for k in grid.log2_steps[m]:
      for seed in range(sweep.best_seeds):
        run = grid.run_of(m, k, seed)
        if run is None:
          continue
        commits.add(run.commit)
        platform = (run.device or 'not recorded',
                    provenance.versions_text(run.versions))
        platforms[platform] = platforms.get(platform, 0) + 1
        runs.append({'method': m.name, 'base_lr': run.base_lr,
                     'seed': seed, 'test_error': run.test_error,
                     'train_loss': run.train_loss,
                     'diverged_at': run.diverged_at,
                     'commit': run.commit})
      point = grid.point(m, k, grid_seeds)
      if point.seeds:
        points[m.name].append({'base_lr': grid.rate(m, k), 'log2_step': k,
                               'mean': _json_float(point.mean),
                               'std': _json_float(point.std),
                               'seeds': point.seeds,
                               'diverged': point.diverged})
    k_best = grid.best_step(m, grid_seeds)
    if k_best is None:
      continue
    seeds = [s for s in range(sweep.best_seeds)
             if grid.run_of(m, k_best, s) is not None]
    chosen = [grid.run_of(m, k_best, s) for s in seeds]
    finals = np.array([grid_lib.final_error(r) for r in chosen])
    losses = np.array([r.train_loss[-1] for r in chosen], dtype=float)
    steps = grid.log2_steps[m]
    # Seeds that took no part in choosing this rate (the grid seeds chose
    # it): the comparison a referee trusts (DeepOBS; Nado et al.).
    confirm = np.array([f for s, f in zip(seeds, finals)
                        if s >= sweep.grid_seeds])
    best[m.name] = {
        'base_lr': grid.rate(m, k_best), 'log2_step': k_best,
        'seeds': len(seeds), 'mean': _json_float(finals.mean()),
        'std': _json_float(stats.sample_std(finals)),
        'final_errors': [_json_float(f) for f in finals],
        'seed_ids': seeds,
        'confirmation': {
            'seeds': len(confirm),
            'mean': _json_float(confirm.mean()) if len(confirm) else None,
            'std': _json_float(stats.sample_std(confirm))
                   if len(confirm) else None,
            'final_errors': [_json_float(f) for f in confirm]},
        'train_loss_mean': _json_float(losses.mean()),
        'train_loss_std': _json_float(stats.sample_std(losses)),
        'interior': all(k in steps and grid.point(m, k, grid_seeds).seeds
                        for k in (k_best - 1, k_best + 1)),
        'robust_width_log2': grid.robust_width(m, grid_seeds),
    }
  return {
      'experiment': config.experiment,
      'metric': grid_lib.METRIC,
      'grid_seeds': sweep.grid_seeds,
      'best_seeds': sweep.best_seeds,
      'tolerance': sweep.tolerance,
      'eval_steps': list(range(config.eval_every,
                               config.num_steps + 1,
                               config.eval_every)),
      'runs': runs,
      'grid': points,
      'best': best,
      'config': fileio.json_ready(config.to_dict()),
      'versions': provenance.versions(),
      # Where the runs were trained (the versions above are this file's
      # writer's): device, software and how many runs, per platform.
      'run_platforms': [{'device': d, 'versions': v, 'runs': n}
                        for (d, v), n in sorted(platforms.items())],
      'commit': sorted(commits, key=str)[0] if len(commits) == 1
                else sorted(str(c) for c in commits),
      'data': data_lib.identity(config) if data is None else data,
  }


def data_of(workdir: str) -> dict[str, Any]:
  """What data a sweep's runs were made on: from the data files where
  this machine has them, else as the sweep's sweep.json recorded it (a
  clone without the data can still rebuild the outputs from the runs)."""
  try:
    return data_lib.identity(read_config(workdir))
  except (OSError, ValueError, data_lib.DataError):
    path = os.path.join(workdir, 'sweep.json')
    if not os.path.exists(path):
      raise
    with open(path) as f:
      return json.load(f)['data']


def write_outputs(payload: dict[str, Any], workdir: str) -> None:
  """Writes `OUTPUTS` of `payload` into `workdir`."""
  fileio.write_json(os.path.join(workdir, 'sweep.json'), payload)
  fileio.write_atomic(os.path.join(workdir, 'best.md'),
                      best_markdown(payload))
  plot_tuning(payload, os.path.join(workdir, 'tuning.png'))
  fileio.write_atomic(os.path.join(workdir, 'grid.md'),
                      grid_markdown(payload))


def grid_markdown(payload: dict[str, Any]) -> str:
  """grid.md: every grid point's mean ± std final test error over the grid
  seeds (what tuning.png draws), one row per method and rate; 'diverged'
  where a seed diverged."""
  lines = [f"# {payload['experiment']}: the grid, final test error (%)", '',
           f'Mean ± sample std over the seeds of each point (up to '
           f'{payload["grid_seeds"]}); the best rate of each method in bold.',
           '', '| method | base_lr | seeds | final test error (%) |',
           '|---|---|---|---|']
  for name, points in payload['grid'].items():
    best = payload['best'].get(name, {}).get('base_lr')
    for p in points:
      if p['mean'] is None:
        cell = 'diverged' if p['diverged'] else 'n/a'
      else:
        cell = results.fmt(p['mean'], _nan(p['std']))
      rate = f'{p["base_lr"]:.3g}'
      if p['base_lr'] == best:
        rate = f'**{rate}**'
      lines.append(f'| {name} | {rate} | {p["seeds"]} | {cell} |')
  return '\n'.join(lines) + '\n'



def _json_float(x) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The sweep's config.json; keys added to the configs after the sweep
  started take their defaults, as when the sweep itself resumes."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no sweep in {workdir!r} (no config.json)')
  with open(path) as f:
    saved = json.load(f)
  for key, value in workdir_lib.default_config().items():
    saved.setdefault(key, value)
  config = ml_collections.ConfigDict(saved)
  config.sweep.lr_log2_steps = tuple(config.sweep.lr_log2_steps)
  config.lr_stepvalues = tuple(config.lr_stepvalues)
  return config


def load(workdir: str) -> grid_lib.Grid:
  """The grid of the sweep in `workdir`, replayed from its run files (read
  only: a running sweep is not disturbed)."""
  config = read_config(workdir)
  runs_dir = os.path.join(workdir, 'runs')
  cache: dict[str, records.RunRecord | None] = {}

  def lookup(spec: records.RunSpec):
    if spec.name not in cache:
      path = os.path.join(runs_dir, f'{spec.name}.json')
      cache[spec.name] = None
      if os.path.isfile(path):
        with open(path) as f:
          cache[spec.name] = records.RunRecord.from_json(json.load(f))
    return cache[spec.name]

  grid = grid_lib.Grid(config, grid_lib.sweep_methods(config), lookup)
  grid.replay()
  return grid


def frozen_factors(grid: grid_lib.Grid) -> dict[str, Any]:
  """The +frozen control's factors from a sweep's +layer runs.

  For every base with a ``BASE+layer`` method: that method's best rate as
  the sweep chose it (mean over the grid seeds), and each layer's eq. 9
  factor averaged over the runs of the grid seeds at that rate and over all
  their logged steps. Only selection seeds are read, so the confirmation
  seeds of a +frozen/+layer comparison took no part in making the factors.
  """
  grid_seeds = range(grid.config.sweep.grid_seeds)
  factors, runs = {}, {}
  for m in grid.methods:
    if m.variant != 'layer':
      continue
    k = grid.best_step(m, grid_seeds)
    chosen = [grid.run_of(m, k, s) for s in grid_seeds] if k is not None else []
    chosen = [r for r in chosen if r is not None]
    if len(chosen) < len(grid_seeds):
      continue  # its best rate is not settled yet
    layers = sorted(chosen[0].layer_factors)
    factors[m.base] = {
        layer: float(np.mean([np.mean(r.layer_factors[layer])
                              for r in chosen])) for layer in layers}
    runs[m.base] = [grid.spec(m, k, s).name for s in grid_seeds]
  if not factors:
    raise ValueError('no +layer method of this sweep has all its grid seeds '
                     'at a best rate; finish stage 1 of the +layer methods '
                     'first.')
  return {'factors': factors, 'runs': runs,
          'rule': ('each layer\'s eq. 9 factor, mean over the logged steps '
                   'of the BASE+layer runs of the grid seeds at its best '
                   'rate (selection seeds only), then the mean over those '
                   'runs'),
          'experiment': grid.config.experiment}


def frozen_factors_of_runs(results: records.Results) -> dict[str, Any]:
  """The +frozen control's factors from the +layer runs of one experiment
  at one rate (results.json, e.g. Table I's protocol at Caffe's rate): each
  layer's eq. 9 factor averaged over all logged steps of every seed."""
  factors, runs = {}, {}
  for run in results.runs:
    method = Method.parse(run.method)
    if method.variant != 'layer':
      continue
    per_base = runs.setdefault(method.base, [])
    per_base.append(records.run_name(run.method, run.seed))
    factors.setdefault(method.base, []).append(run.layer_factors)
  if not factors:
    raise ValueError('no +layer runs in these results; train BASE+layer '
                     'first.')
  return {
      'factors': {base: {layer: float(np.mean([np.mean(r[layer])
                                                for r in per_run]))
                         for layer in sorted(per_run[0])}
                  for base, per_run in factors.items()},
      'runs': runs,
      'rule': ("each layer's eq. 9 factor, mean over the logged steps of each "
               'BASE+layer run of these results (every seed, the one rate), '
               'then the mean over the runs'),
      'experiment': results.experiment}


def write_frozen_factors(payload: dict[str, Any], path: str) -> bool:
  """Writes `payload` to `path`; False if the same file is there already.

  A file with other factors is never replaced: +frozen runs made with it
  would no longer match it."""
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    if previous.get('factors') == fileio.json_ready(payload)['factors']:
      return False
    raise FileExistsError(
        f'{path} holds other frozen factors (runs may have used them); move '
        'it aside first if the +frozen runs made with it go too.')
  fileio.write_json(path, payload)
  return True


# In best.md, between the explanations and the tables.
TABLES_MARKER = '<!-- tables -->'


def best_markdown(payload: dict[str, Any]) -> str:
  """best.md: best rates, best-vs-best with Welch p, robustness."""
  best = payload['best']
  lines = [
      f"### {payload['experiment']}: learning-rate sweep",
      '',
      f'Selection metric: {payload["metric"]} ({payload["grid_seeds"]} '
      f'seeds per grid point once complete); each method\'s best rate is then rerun to '
      f'{payload["best_seeds"]} seeds (final test error: all of them; '
      f'confirmation: seeds {payload["grid_seeds"]} and up, which took no '
      'part in the choice). Robustness: the width of the range of '
      f'rates whose mean error is within {payload["tolerance"]:.0%} '
      '(relative) of the best, in factors of 2 (0: only the best rate). '
      'Training loss: the mean mini-batch loss over the last evaluation '
      'interval, at the best rate.',
      '',
      'Best vs best (below): each method at its own best rate; Δ = '
      'mean(variant) − mean(base), percentage points, negative favours the '
      'variant; Welch two-sided p, not corrected for multiplicity (the '
      'corrected verdict over every sweep is experiments/results/'
      'verdict.md). *Confirmation*: only the seeds that took no part in '
      f'choosing the rates (seeds {payload["grid_seeds"]} and up; n = seeds '
      'of each side); *all seeds*: the grid seeds too.',
      '',
      # Pages that explain the above once include the tables from here.
      TABLES_MARKER,
      '',
      '| method | best base_lr | seeds | final test error (%) | '
      'confirmation seeds | confirmation error (%) | '
      'training loss | robust width (x2) | best interior? |',
      '|---|---|---|---|---|---|---|---|---|',
  ]
  for name, b in best.items():
    confirm = b['confirmation']
    lines.append(
        f'| {name} | {b["base_lr"]:.3g} | {b["seeds"]} | '
        f'{results.fmt(b["mean"], _nan(b["std"]))} | {confirm["seeds"]} | '
        + (results.fmt(confirm['mean'], _nan(confirm['std']))
           if confirm['seeds'] else 'n/a') + ' | '
        f'{results.fmt(b["train_loss_mean"], _nan(b["train_loss_std"]))} | '
        f'{b["robust_width_log2"]} | {"yes" if b["interior"] else "no"} |')
  rows = comparison_rows(payload)
  if rows:
    lines += [
        '',
        '**Best vs best**',
        '',
        '| variant | vs | n | Δ confirmation | p confirmation | '
        'Δ all seeds | p all seeds |',
        '|---|---|---|---|---|---|---|',
    ]
    for row in rows:
      lines.append(
          f'| {row["variant"]} | {row["vs"]} | '
          f'{row["n_variant"]}, {row["n_vs"]} | '
          f'{_signed(row["delta"])} | {_p(row["p"])} | '
          f'{_signed(row["delta_all"])} | {_p(row["p_all"])} |')
  platforms = payload.get('run_platforms') or []
  if platforms:
    lines += ['', 'Trained on: ' + '; '.join(
        f'{p["runs"]} runs made before runs recorded their device'
        if p['device'] == 'not recorded'
        else f'{p["device"]} ({p["versions"]}): {p["runs"]} runs'
        for p in platforms) + '.']
  missing = [m for m, points in payload['grid'].items() if m not in best]
  incomplete = [m for m, b in best.items()
                if b['seeds'] < payload['best_seeds']]
  if missing or incomplete:
    lines += ['', '**Unfinished sweep**: ' + '; '.join(
        ([f'no finite point yet for {", ".join(missing)}'] if missing else [])
        + ([f'fewer than {payload["best_seeds"]} seeds at the best rate for '
            f'{", ".join(incomplete)}'] if incomplete else [])) + '.']
  return '\n'.join(lines) + '\n'


def _nan(x):
  return math.nan if x is None else x


def _signed(x) -> str:
  return 'n/a' if x is None or math.isnan(x) else f'{x:+.2f}'


def _p(x) -> str:
  return 'n/a' if x is None or math.isnan(x) else f'{x:.3f}'


# The question each comparison answers; Holm's correction is applied per
# family (experiments/analysis/verdict.py).
VERDICT_FAMILY = 'does the variant beat its reference'
FROZEN_FAMILY = 'does adaptivity beat a frozen factor'
RULES_FAMILY = 'does the per-layer rule beat its per-array peer'


def _best_pairs(best: dict[str, Any]) -> list[tuple[str, str, str]]:
  """(variant, reference, family): each variant against its plain base,
  +layer against the +global control, the +frozen control against +layer
  and the plain base, and each of the package's other per-layer rules
  (layer_lars, layer_lamb, adalayer, +llrd) against its per-array peer."""
  pairs = []
  for name in best:
    method = Method.parse(name)
    family = {'frozen': FROZEN_FAMILY, 'llrd': RULES_FAMILY}.get(
        method.variant, VERDICT_FAMILY)
    if method.variant is not None and method.plain.name in best:
      pairs.append((name, method.plain.name, family))
    peer = PEERS.get(method.base)
    if method.variant is None and peer in best:
      pairs.append((name, peer, RULES_FAMILY))
    if method.variant == 'layer':
      for control, family in (('global', VERDICT_FAMILY),
                              ('frozen', FROZEN_FAMILY)):
        other = Method(method.base, control).name
        if other in best:
          pairs.append((name, other, family))
  return pairs


def comparison_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
  """Every best-vs-best comparison of a sweep: on the confirmation seeds
  (those that did not choose the rates) and on all seeds, uncorrected."""
  best = payload['best']
  rows = []
  for a, b, family in _best_pairs(best):
    conf_a = np.array(best[a]['confirmation']['final_errors'], float)
    conf_b = np.array(best[b]['confirmation']['final_errors'], float)
    all_a = np.array(best[a]['final_errors'], float)
    all_b = np.array(best[b]['final_errors'], float)
    rows.append({
        'experiment': payload['experiment'], 'family': family,
        'variant': a, 'vs': b,
        'n_variant': len(conf_a), 'n_vs': len(conf_b),
        'mean_variant': _mean(conf_a), 'mean_vs': _mean(conf_b),
        'delta': _mean(conf_a) - _mean(conf_b),
        'p': stats.welch_p(conf_a, conf_b),
        'n_all': [len(all_a), len(all_b)],
        'delta_all': _mean(all_a) - _mean(all_b),
        'p_all': stats.welch_p(all_a, all_b)})
  return rows


def _mean(x: np.ndarray) -> float:
  return float(x.mean()) if len(x) else math.nan


# Line styles: the plain optimizer (or the per-array peer) dashed, each
# variant its own; colours from a cycle, per panel.
_VARIANT_STYLES = {None: ('--', 'o'), 'layer': ('-', 's'),
                   'layercap': ((0, (5, 1, 1, 1)), 'D'),
                   'global': (':', '^'), 'warmup': ('-.', 'v'),
                   'frozen': ((0, (1, 1)), 'x'), 'llrd': ('-', 'P')}
_COLOURS = ('tab:blue', 'tab:red', 'tab:green', 'tab:orange', 'tab:purple',
            'tab:brown', 'tab:pink', 'tab:gray')
# Width the docs show a figure at (inches at fileio.write_figure's 110 dpi):
# about 1,000 pixels, so every label is read at its drawn size.
_FIGURE_WIDTH = 9.0


def _family(method: Method) -> str:
  """The panel a method is drawn in: its base, with the package's per-layer
  rules beside their per-array peers (layer_lars with lars, ...)."""
  return PEERS.get(method.base, method.base)


def _style(method: Method) -> tuple[Any, str]:
  if method.variant is None and method.base in PEERS:
    return '-', 's'  # a per-layer rule against its dashed peer
  return _VARIANT_STYLES[method.variant]


def _seeds_phrase(payload: dict[str, Any]) -> str:
  """How many seeds each grid point's mean rests on, in words."""
  counts = {p.get('seeds') for points in payload['grid'].values()
            for p in points if p.get('seeds')}
  n = payload['grid_seeds']
  if counts and max(counts) < n:
    n = max(counts)
  if counts and min(counts) < n:
    return f'mean ± std over {min(counts)}-{n} seeds per rate'
  return 'one seed per rate' if n == 1 else f'mean ± std over {n} seeds'


def plot_tuning(payload: dict[str, Any], path: str) -> None:
  """Final test error vs base learning rate, one panel per optimizer
  family (a base, its variants, a per-layer rule beside its peer), in a
  grid of two columns, the grid's rates as tick labels."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  from matplotlib import ticker
  grid = payload['grid']
  families = list(dict.fromkeys(
      _family(Method.parse(m)) for m, points in grid.items() if points)) or [
          'sgd']
  columns = min(2, len(families))
  rows = -(-len(families) // columns)
  width = _FIGURE_WIDTH if columns > 1 else _FIGURE_WIDTH * 0.6
  fig, axes = plt.subplots(rows, columns, figsize=(width, 3.4 * rows + 0.8),
                           squeeze=False)
  for ax in axes.flat[len(families):]:
    ax.set_visible(False)
  for ax, family in zip(axes.flat, families):
    rates = set()
    members = [m for m, points in grid.items()
               if points and _family(Method.parse(m)) == family]
    for colour, name in zip(_COLOURS * 4, members):
      method = Method.parse(name)
      points = grid[name]
      style, marker = _style(method)
      lr = np.array([p['base_lr'] for p in points])
      rates.update(lr.tolist())
      mean = np.array([_nan(p['mean']) for p in points], dtype=float)
      std = np.nan_to_num(np.array([_nan(p['std']) for p in points],
                                   dtype=float))
      finite = np.isfinite(mean)
      ax.errorbar(lr[finite], mean[finite], yerr=std[finite], label=name,
                  color=colour, linestyle=style, marker=marker,
                  markersize=4, capsize=2)
      if not finite.all():
        ax.plot(lr[~finite], np.full((~finite).sum(), 90.0), 'x',
                color=colour)
      if name in payload['best']:
        b = payload['best'][name]
        ax.plot([b['base_lr']], [b['mean']], marker='*', markersize=12,
                color=colour, markeredgecolor='k', linestyle='none')
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ticks = sorted(rates)
    if len(ticks) > 8:  # every other rate, so the labels do not collide
      ticks = ticks[::2]
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(
        lambda v, _: f'{v:g}'))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    # Plain numbers (2, 3, 5, 10, ...), not powers of ten.
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10,
                                                 subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(
        lambda v, _: f'{v:g}'))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.tick_params(axis='x', labelrotation=45, labelsize=8)
    ax.tick_params(axis='y', which='both', labelsize=8)
    ax.grid(True, which='both', alpha=0.25)
    ax.set_xlabel('base learning rate', fontsize=9)
    ax.set_ylabel('final test error (%)', fontsize=9)
    ax.set_title(family, fontsize=10)
    ax.legend(fontsize=8)
  fig.suptitle(f'{payload["experiment"]}: final test error against the base '
               f'learning rate\n{_seeds_phrase(payload)}; *: the best rate, '
               'rerun with more seeds; x at 90%: diverged', fontsize=10)
  fig.tight_layout()
  fileio.write_figure(fig, path)
  plt.close(fig)
