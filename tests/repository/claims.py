"""The claims table: each published number, count and yes/no bound to the
value it states (#31).

A `Claim` is a passage of a page (README or docs) and a function that
writes the same passage from the committed raw output it quotes. The test
(`test_claims.py`) requires every passage to be on its page word for word
and to equal what its function writes now; and in the regions named in
`COVERED` every number must lie inside some claim. Changing a digit, a
sign, a count or a yes/no on the page, or the data under it, fails.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable

import numpy as np

from experiments.analysis.sweeps import FROZEN_FAMILY
from experiments.analysis.sweeps import RULES_FAMILY
from experiments.analysis.sweeps import VERDICT_FAMILY
from tests.conftest import ROOT

RESULTS = os.path.join(ROOT, 'experiments', 'results')


@dataclasses.dataclass(frozen=True)
class Claim:
  page: str          # repository-relative path of the page
  source: str        # the committed output it quotes
  how: str           # how the value is computed, in words
  write: Callable[[], str]  # the passage, written from `source`


@functools.lru_cache(maxsize=None)
def _load(path: str):
  """A committed JSON file, read once per test session (the claims are
  written many times: once per page check and per tested edit). Read only."""
  with open(os.path.join(ROOT, path)) as f:
    return json.load(f)


def _test_errors(workdir: str):
  """experiments/results/<workdir>/results.json: the evaluation steps and,
  per method, its runs' test errors as a (seeds, evaluations) array."""
  payload = _load(f'experiments/results/{workdir}/results.json')
  by_method: dict[str, list[list[float]]] = {}
  for run in payload['runs']:
    by_method.setdefault(run['method'], []).append(run['test_error'])
  return payload['eval_steps'], {m: np.array(errors, dtype=float)
                                 for m, errors in by_method.items()}


# --------------------------------------------------------------- verdict --

VERDICT = 'experiments/results/verdict.json'


def _row(sweep: str, variant: str, vs: str) -> dict:
  for row in _load(VERDICT)['rows']:
    if (row['sweep'], row['variant'], row['vs']) == (sweep, variant, vs):
      return row
  raise KeyError((sweep, variant, vs))


def comparison(sweep: str, variant: str, vs: str) -> Callable[[], str]:
  """"A x% vs B y% (Δ d, p = q, Holm p = h)" on the confirmation seeds."""
  def write():
    r = _row(sweep, variant, vs)
    return (f'{variant} {r["mean_variant"]:.2f}% vs {vs} '
            f'{r["mean_vs"]:.2f}% (Δ {r["delta"]:+.2f}, p = {r["p"]:.3f}, '
            f'Holm p = {r["p_holm"]:.3f})')
  return write


def _holm_summary(family_name: str, scope: str) -> str:
  """"after Holm's correction for the N comparisons of SCOPE none is
  significant (smallest adjusted p = x" for one family of verdict.json;
  the caller closes the parenthesis."""
  family = _load(VERDICT)['families'][family_name]
  significant = family['significant']
  count = 'none is' if significant == 0 else f'{significant} are'
  return (f'after Holm\'s correction for the {family["tested"]} comparisons '
          f'of {scope} {count} significant (smallest adjusted p = '
          f'{family["smallest_p_holm"]:.3f}')


def family_summary() -> str:
  smallest_p = _load(VERDICT)['families'][VERDICT_FAMILY]['smallest_p']
  return (_holm_summary(VERDICT_FAMILY, 'the four workloads')
          + f'; smallest uncorrected p = {smallest_p:.3f})')


def frozen_family_summary() -> str:
  return _holm_summary(FROZEN_FAMILY, 'this control') + ')'


def rules_family_summary() -> str:
  return _holm_summary(RULES_FAMILY, 'this family') + ')'


# Each sweep as the pages name it.
_WORKLOADS = {'mnist_lenet_sweep': 'LeNet', 'mnist_deep_mlp_sweep':
              'the deep MLP', 'mnist_transformer_sweep': 'the transformer',
              'cifar10_full_short_sweep': 'CIFAR-10',
              'mnist_transformer_scan_sweep': 'transformer, blocks stacked'}


def best_layer_gain() -> str:
  """Which of the verdict family's optimizer+layer vs optimizer rows has
  the largest gain (most negative Δ) and which the smallest uncorrected p
  among the gains: the pages' "best case" sentence."""
  rows = [r for r in _rows_of(VERDICT_FAMILY)
          if r['variant'] == r['vs'] + '+layer']
  gains = [r for r in rows if r['delta'] < 0]

  def name(r: dict) -> str:
    return f'{_WORKLOADS[r["sweep"]]}\'s {r["variant"]} vs {r["vs"]}'

  largest = min(gains, key=lambda r: r['delta'])
  surest = min(gains, key=lambda r: r['p'])
  what = (f'the largest gain, also the most significant before correction, '
          f'is {name(largest)}' if largest is surest else
          f'the largest gain is {name(largest)}, the most significant before '
          f'correction {name(surest)}')
  return (f'of the {len(rows)} comparisons of an optimizer+layer with the '
          f'plain optimizer, {what}')


def _rows_of(family_name: str) -> list[dict]:
  return [r for r in _load(VERDICT)['rows'] if r['family'] == family_name]


def rules_table() -> str:
  """The per-layer rules family as the guide tabulates it: each row of
  verdict.json's family, in its order (whitespace-normalised, as the pages
  are compared)."""
  lines = ['| workload | rule | its optax peer | rule (%) | peer (%) | Δ '
           '(points) | p | Holm p |', '|---|---|---|---|---|---|---|---|']
  for r in _rows_of(RULES_FAMILY):
    lines.append(
        f'| {_WORKLOADS[r["sweep"]]} | {r["variant"]} | {r["vs"]} | '
        f'{r["mean_variant"]:.2f} | {r["mean_vs"]:.2f} | '
        f'{r["delta"]:+.2f} | {r["p"]:.3f} | {r["p_holm"]:.3f} |')
  return ' '.join('\n'.join(lines).split())


def rules_seeds() -> str:
  """How many confirmation seeds each comparison of the per-layer rules
  family rests on (the same on both sides and in every row)."""
  counts = {n for r in _rows_of(RULES_FAMILY)
            for n in (r['n_variant'], r['n_vs'])}
  assert len(counts) == 1, counts
  return f'{counts.pop()} confirmation seeds a side in every row'


def seeds_summary() -> str:
  payloads = {name: _load(f'experiments/results/{name}/sweep.json')
              for name in _load(VERDICT)['sweeps']}
  mnist = {(p['grid_seeds'], p['best_seeds'] - p['grid_seeds'])
           for name, p in payloads.items() if not name.startswith('cifar')}
  cifar = {(p['grid_seeds'], p['best_seeds'] - p['grid_seeds'])
           for name, p in payloads.items() if name.startswith('cifar')}
  assert len(mnist) == 1 and len(cifar) == 1, (mnist, cifar)
  (g, c), = mnist
  (cg, cc), = cifar
  return (f'rates chosen on {g} seeds, compared on {c} other seeds that '
          f'took no part in the choice (on CIFAR-10 chosen on {cg}, '
          f'compared on {cc})')


def _p_text(p: float) -> str:
  return 'p < 0.001' if p < 0.001 else f'p = {p:.3f}'


def table1_frozen() -> str:
  """Table I's protocol at Caffe's rate: each optimizer's +layer (the
  Table I runs) against +frozen (its factors: those runs' means), final
  test error over the seeds, Welch p, Holm over the optimizers."""
  from experiments.lib import stats
  finals = {method: errors[:, -1]
            for workdir in ('mnist_lenet', 'mnist_lenet_frozen')
            for method, errors in _test_errors(workdir)[1].items()}
  bases = [b for b in ('sgd', 'nag', 'adagrad') if f'{b}+frozen' in finals]
  pairs = [(np.array(finals[f'{b}+layer']), np.array(finals[f'{b}+frozen']))
           for b in bases]
  ps = [stats.welch_p(a, b) for a, b in pairs]
  holm = stats.holm(ps)
  parts = [f'{b}+layer {a.mean():.2f}% vs {b}+frozen {f.mean():.2f}% '
           f'(Δ {a.mean() - f.mean():+.2f}, {_p_text(p)}, Holm '
           f'{_p_text(h)})'
           for b, (a, f), p, h in zip(bases, pairs, ps, holm)]
  seeds = {len(a) for a, _ in pairs} | {len(f) for _, f in pairs}
  assert len(seeds) == 1, seeds
  return (f'at Caffe\'s rate ({seeds.pop()} seeds each, final test error): '
          + '; '.join(parts))


# ---------------------------------------------------- factor magnitudes --

def _factor_rows(path: str) -> dict[str, list[list[float]]]:
  """factors.md: per method the rows (mean, first fifth, last fifth)."""
  out: dict[str, list[list[float]]] = {}
  with open(os.path.join(ROOT, path)) as f:
    for line in f:
      cells = [c.strip() for c in line.strip().strip('|').split('|')]
      if len(cells) == 7 and re.fullmatch(r'[\d.]+', cells[2]):
        out.setdefault(cells[0], []).append(
            [float(c) for c in cells[2:5]])
  return out


def _layer_means(path: str) -> list[list[float]]:
  """Per method [mean, first fifth, last fifth], each averaged over the
  layers."""
  return [[sum(r[i] for r in rows) / len(rows) for i in range(3)]
          for rows in _factor_rows(path).values()]


def mnist_factor() -> str:
  means = _layer_means('experiments/results/mnist_lenet/factors.md')
  lo, hi = min(m[0] for m in means), max(m[0] for m in means)
  first = (min(m[1] for m in means), max(m[1] for m in means))
  last = (min(m[2] for m in means), max(m[2] for m in means))
  return (f'on MNIST the factor averages {lo:.2f}-{hi:.2f} over the layers, '
          f'rising from {first[0]:.2f}-{first[1]:.2f} in the first fifth of '
          f'training to {last[0]:.2f}-{last[1]:.2f} in the last')


def cifar_factor() -> str:
  rows = _factor_rows('experiments/results/cifar10_full_short/factors.md')
  layer_means = [r[0] for rows_ in rows.values() for r in rows_]
  falls = all(r[2] <= r[1] for rows_ in rows.values() for r in rows_)
  return (f'on CIFAR-10 it is {min(layer_means):.2f}-{max(layer_means):.2f} '
          f'and {"falls" if falls else "does not fall"} during training')


# ---------------------------------------------------------- other pages --

def anchor_overlap() -> str:
  """Update time of layerlr_optax.sgd against the clip_by_global_norm
  anchor: on how many trees the median is below, and on how many the
  min-max ranges of the 3 fresh processes are apart."""
  cases = _load('benchmarks/results/anchor_cpu.json')['cases']
  ours = {c['tree']: c for c in cases if c['optimizer'] == 'layerlr_optax.sgd'}
  anchor = {c['tree']: c for c in cases
            if c['optimizer'] == 'optax.clip_by_global_norm+sgd'}
  below = [t for t in ours if ours[t]['ratio'] < anchor[t]['ratio']]
  apart = [t for t in ours if ours[t]['ratio_max'] < anchor[t]['ratio_min']]
  return (f'the median is below the anchor on {len(below)} of the '
          f'{len(ours)} trees, but the ranges of the 3 processes are apart '
          f'on {len(apart)} ({", ".join(f"`{t}`" for t in apart)}); on the '
          f'other {len(ours) - len(apart)} they overlap')


def cost_answer() -> str:
  """The cost page's answer: the ranges over the trees of the update-time
  medians (layerlr_optax.sgd, the anchor), the whole-step ratios of LeNet
  and cifar10_full, and the range of compile-time medians."""
  anchor_json = _load('benchmarks/results/anchor_cpu.json')
  ratios = lambda name, field: [c[field] for c in anchor_json['cases']
                                if c['optimizer'] == name]
  ours = ratios('layerlr_optax.sgd', 'ratio')
  anchor = ratios('optax.clip_by_global_norm+sgd', 'ratio')
  compile_ = ratios('layerlr_optax.sgd', 'compile_ratio')
  steps = {c['tree']: c['ratio'] for c in _load(
      'benchmarks/results/train_step_cpu.json')['cases']
           if c['optimizer'] == 'layerlr_optax.sgd'}
  return (f'`layerlr_optax.sgd` takes {min(ours):.2f} to {max(ours):.2f}x '
          f'the time of `optax.sgd`\'s (the median of '
          f'{anchor_json["repetitions"]} fresh processes, on every tree '
          'below), about what optax\'s own norm-reading '
          '`clip_by_global_norm` costs '
          f'({min(anchor):.2f} to {max(anchor):.2f}x); a whole training '
          f'step is unchanged (LeNet {steps["lenet"]:.3f}x, cifar10_full '
          f'{steps["cifar10_full"]:.3f}x). Compiling takes longer: '
          f'{min(compile_):.2f} to {max(compile_):.2f}x.')


def family_cost() -> str:
  """Each per-layer rule over its optax peer (benchmarks.common.PEERS),
  per tree, as the cost page's table shows it (the median over the fresh
  processes of each process's ratio): the ranges of update-time and
  compile-time ratios, and in how many (rule, tree) cases the rule updates
  faster."""
  import statistics
  from benchmarks import common
  from benchmarks import report
  payload = _load('benchmarks/results/family_cpu.json')
  cases = {(c['tree'], c['optimizer']) for c in payload['cases']
           if c['optimizer'] in common.PEERS}
  ratio = lambda tree, name, field: statistics.median(
      report.peer_ratios(payload['each'], tree, name, field))
  updates = [ratio(t, n, 'median_s') for t, n in cases]
  compiles = [ratio(t, n, 'compile_s') for t, n in cases]
  faster = sum(r < 1 for r in updates)
  return (f'the rule updates faster than its peer in {faster} of the '
          f'{len(updates)} cases (update time {min(updates):.2f} to '
          f'{max(updates):.2f}x the peer\'s; compile time '
          f'{min(compiles):.2f} to {max(compiles):.2f}x)')


def main_job_time() -> str:
  """The main job's time, measured quiet with 2 seeds (the committed
  experiments/results/mnist_lenet_quick), and the full job's run count."""
  quick = _load('experiments/results/mnist_lenet_quick/results.json')
  full = _load('experiments/results/mnist_lenet/results.json')
  runs, minutes = len(quick['runs']), quick['session_wall_seconds'] / 60
  seeds = quick['config']['num_seeds']
  return (f'With `--config.num_seeds={seeds}` ({runs} runs, a first answer) '
          f'it took {minutes:.0f} minutes on a quiet 2-core CPU; the full '
          f'job trains {len(full["runs"])} runs, '
          f'{len(full["runs"]) / runs:.0f}x as many')


def table1_cells() -> str:
  """mnist_lenet (Table I protocol): in how many (pair, evaluation) cells
  the +layer variant's mean test error is the lower."""
  steps, by_method = _test_errors('mnist_lenet')
  pairs = [m for m in by_method if m.endswith('+layer')
           and m[:-len('+layer')] in by_method]
  evals = len(steps)
  lower = sum(int(np.sum(by_method[m].mean(axis=0)
                         < by_method[m[:-len('+layer')]].mean(axis=0)))
              for m in pairs)
  total = len(pairs) * evals
  quantifier = 'all' if lower == total else f'{lower} of the'
  return (f'In {quantifier} {total} cells ({len(pairs)} optimizers x '
          f'{evals} evaluations) the layer-specific variant has the lower '
          'mean test error')


def table1_holm() -> str:
  """Welch p of +layer vs plain at the paper's 12 cells (3 optimizers x its
  4 iterations), Holm-corrected as one family."""
  from experiments.lib import stats
  steps, by_method = _test_errors('mnist_lenet')
  cells = []
  for base in ('sgd', 'nag', 'adagrad'):
    for iteration in (600, 1000, 1400, 1800):
      i = steps.index(iteration)
      cells.append((base, iteration, stats.welch_p(
          by_method[f'{base}+layer'][:, i], by_method[base][:, i])))
  adjusted = stats.holm([p for _, _, p in cells])
  below = [(c, h) for c, h in zip(cells, adjusted) if h < 0.05]
  smallest = int(np.argmin(adjusted))
  base, iteration, _ = cells[smallest]
  names = {'sgd': 'SGD', 'nag': 'NAG', 'adagrad': 'AdaGrad'}
  count = 'none stays' if not below else f'{len(below)} stay'
  return (f'Corrected with Holm\'s method over the paper\'s {len(cells)} '
          f'cells, {count} below 0.05 (smallest adjusted p = '
          f'{adjusted[smallest]:.3f}, {names[base]} at {iteration})')


def controls_rows() -> str:
  """The paper-reproduction page's inline table: +layer at Caffe's rate
  (Table I's runs) against the plain optimizer at 2.5x the rate, test error
  at 600/1000/1400/1800/2000, the lower side at 2000 in bold, Welch p at
  1000."""
  from experiments.lib import stats
  rows = []
  for name, base, control in (('SGD', 'sgd', 'mnist_lenet_sgd_lr0.025'),
                              ('NAG', 'nag', 'mnist_lenet_nag_adagrad_lr0.025'),
                              ('AdaGrad', 'adagrad',
                               'mnist_lenet_nag_adagrad_lr0.025')):
    steps, ours = _test_errors('mnist_lenet')
    steps_c, theirs = _test_errors(control)
    assert steps == steps_c
    layer, plain = ours[f'{base}+layer'], theirs[base]
    at = [steps.index(i) for i in (600, 1000, 1400, 1800, 2000)]
    cells = [', '.join(f'{x.mean(axis=0)[i]:.2f}' for i in at)
             for x in (layer, plain)]
    better = 0 if layer[:, at[-1]].mean() < plain[:, at[-1]].mean() else 1
    cells[better] = f'**{cells[better]}**'
    i = steps.index(1000)
    p = stats.welch_p(layer[:, i], plain[:, i])
    rows.append(f'| {name} | {cells[0]} | {cells[1]} | '
                f'{"< 0.001" if p < 0.001 else f"{p:.2f}"} |')
  return ' '.join(rows)


def lenet_sgd_ten_seeds() -> str:
  best = _load('experiments/results/mnist_lenet_sweep/sweep.json')['best']
  return f'the {best["sgd"]["seeds"]}-seed mean is {best["sgd"]["mean"]:.2f}%'


def _cifar_best_rate_devices() -> dict[str, dict[int, str]]:
  """Per method of the CIFAR-10 sweep, the device of each seed at its best
  rate, read from the run files."""
  workdir = f'experiments/results/{CIFAR}'
  best = _load(f'{workdir}/sweep.json')['best']
  devices: dict[str, dict[int, str]] = {m: {} for m in best}
  for name in sorted(os.listdir(os.path.join(ROOT, workdir, 'runs'))):
    run = _load(f'{workdir}/runs/{name}')
    if run['method'] in best and (
        run['base_lr'] == best[run['method']]['base_lr']):
      devices[run['method']][run['seed']] = run['device']
  return devices


def _cifar_cpu_seeds() -> list[int]:
  """The seeds at the best rate trained on CPU: the same for every method."""
  seeds = {m: [s for s, d in sorted(by_seed.items()) if d.startswith('cpu')]
           for m, by_seed in _cifar_best_rate_devices().items()}
  assert len({tuple(s) for s in seeds.values()}) == 1, seeds
  return next(iter(seeds.values()))


def cifar_seed_counts() -> str:
  payload = _load(f'experiments/results/{CIFAR}/sweep.json')
  grid, best = payload['grid_seeds'], payload['best_seeds']
  assert all(b['seeds'] == best for b in payload['best'].values())
  cpu = len(_cifar_cpu_seeds())
  return (f'on CIFAR-10 {grid} seeds per point and {best} at the best '
          f'({best - cpu} on the accelerator as first planned, {cpu} more on '
          f'CPU so that {best - grid} seeds confirm each choice')


def cifar_cpu_runs() -> str:
  seeds = _cifar_cpu_seeds()
  assert seeds == list(range(seeds[0], seeds[-1] + 1)), seeds
  runs = len(seeds) * len(_cifar_best_rate_devices())
  payload = _load(f'experiments/results/{CIFAR}/sweep.json')
  confirming = payload['best_seeds'] - payload['grid_seeds']
  return (f'Seeds {seeds[0]} to {seeds[-1]} at each best rate ({runs} runs, '
          f'so that {confirming} seeds that took no part in the choice '
          'confirm it')


def cifar_verdict() -> str:
  """The CIFAR-10 bullet of the tuned comparison's verdict: every seed at
  each best rate (mean ± std), Welch p over all seeds, and AdaGrad's pair
  on the confirmation seeds with its Holm p."""
  payload = _load(f'experiments/results/{CIFAR}/sweep.json')
  best = payload['best']

  def at_best(method: str) -> str:
    return f'{best[method]["mean"]:.2f} ± {best[method]["std"]:.2f}%'

  def minus(x: float) -> str:
    return f'{x:+.2f}'.replace('-', '−')

  rates = {best[m]['base_lr'] for m in ('sgd', 'sgd+layer', 'sgd+global')}
  ada_rates = {best[m]['base_lr'] for m in ('adagrad', 'adagrad+layer')}
  assert len(rates) == 1 and len(ada_rates) == 1, (rates, ada_rates)
  layer_sgd = _row(CIFAR, 'sgd+layer', 'sgd')
  layer_global = _row(CIFAR, 'sgd+layer', 'sgd+global')
  ada = _row(CIFAR, 'adagrad+layer', 'adagrad')
  assert len({*layer_sgd['n_all'], *layer_global['n_all'],
              *ada['n_all']}) == 1
  return (
      f'complete: {payload["best_seeds"]} seeds at each best rate):** SGD '
      f'{at_best("sgd")}, SGD+layer {at_best("sgd+layer")}, SGD+global '
      f'{at_best("sgd+global")}, all best at {rates.pop():g}. +layer vs SGD: '
      f'{minus(layer_sgd["delta_all"])} points, p = {layer_sgd["p_all"]:.3f}; '
      f'vs +global: {minus(layer_global["delta_all"])}, p = '
      f'{layer_global["p_all"]:.3f}. AdaGrad {at_best("adagrad")} vs '
      f'AdaGrad+layer {at_best("adagrad+layer")} (both at '
      f'{ada_rates.pop():g}): {minus(ada["delta_all"])} points, p = '
      f'{ada["p_all"]:.3f} on all {ada["n_all"][0]} seeds; on the '
      f'{ada["n_variant"]} confirmation seeds it is {minus(ada["delta"])} '
      f'points, p = {ada["p"]:.3f} uncorrected and {ada["p_holm"]:.3f} after '
      'Holm\'s correction')


def distributed_1x1() -> str:
  """The largest relative difference of LeNet on 1x1 from 1x8."""
  rows = _load('experiments/results/distributed/distributed_check.json')[
      'rows']
  row, = [r for r in rows if (r['workload'], r['layout']) == ('lenet',
                                                             '1x1')]
  return (f'within {row["max_relative_difference"]:.1e} relative'
          .replace('e-0', 'e-'))


@functools.lru_cache(maxsize=None)
def transformer_parameters() -> str:
  import jax
  import jax.numpy as jnp
  from experiments.lib import models
  variables = models.RowTransformer().init(jax.random.key(0),
                                           jnp.ones((1, 28, 28, 1)))
  count = sum(x.size for x in jax.tree.leaves(variables['params']))
  return f'4 heads, {count:,} parameters'


def notebook_tanh() -> str:
  """The vanishing-gradients notebook's tanh table at lr 0.01."""
  import nbformat
  nb = nbformat.read(os.path.join(ROOT, 'notebooks',
                                  'vanishing_gradients.ipynb'), 4)
  printed = ''.join(o.get('text', '') for c in nb.cells
                    if c.cell_type == 'code' for o in c.outputs)
  table = printed[printed.index('tanh network, test error'):]
  sgd, layer = re.search(r'0\.01 \|\s+([\d.]+)% \|\s+([\d.]+)%',
                         table).groups()
  return f'{float(sgd):.1f}% → {float(layer):.1f}% at lr 0.01'


# -------------------------------------------------------------- the table --

README = 'README.md'
LENET, MLP, TRANSFORMER, CIFAR = (
    'mnist_lenet_sweep', 'mnist_deep_mlp_sweep', 'mnist_transformer_sweep',
    'cifar10_full_short_sweep')

CLAIMS: list[Claim] = [
    Claim(README, VERDICT, 'sweeps\' grid and best seeds', seeds_summary),
    Claim(README, VERDICT, 'Holm over the verdict family', family_summary),
    *[Claim(README, VERDICT, 'confirmation-seed means, Welch p, Holm p',
            comparison(*key)) for key in (
                (LENET, 'sgd+layer', 'sgd'),
                (CIFAR, 'sgd+layer', 'sgd'),
                (MLP, 'sgd+layer', 'sgd'),
                (MLP, 'adam+layer', 'adam'),
                (CIFAR, 'adagrad+layer', 'adagrad'),
                (LENET, 'adagrad+layer', 'adagrad+global'),
                (TRANSFORMER, 'adam+layer', 'adam'))],
    Claim(README, VERDICT, 'the +layer vs plain rows of the verdict family: '
          'most negative Δ; smallest p among Δ < 0', best_layer_gain),
    Claim(README, 'experiments/results/mnist_lenet/factors.md',
          'per method the mean over layers of each column; range over '
          'methods', mnist_factor),
    Claim(README, 'experiments/results/cifar10_full_short/factors.md',
          'range of the layer means; falls if every layer\'s last fifth is '
          'at or below its first', cifar_factor),
    *[Claim(README, VERDICT, 'confirmation-seed means, Welch p, Holm p '
            'within the frozen-control family', comparison(*key))
      for key in ((LENET, 'sgd+frozen', 'sgd'),
                  (MLP, 'sgd+layer', 'sgd+frozen'))],
    Claim(README, VERDICT, 'Holm over the frozen-control family',
          frozen_family_summary),
    Claim(README, 'experiments/results/mnist_lenet_frozen/results.json',
          'final errors of mnist_lenet (+layer) and mnist_lenet_frozen '
          '(+frozen), Welch p, Holm over the optimizers', table1_frozen),
    Claim('docs/index.md', VERDICT, 'Holm over the verdict family',
          family_summary),
    Claim('docs/results/index.md', VERDICT, 'Holm over the verdict family',
          family_summary),
    Claim('docs/index.md', 'experiments/results/mnist_lenet/factors.md',
          'as in the README', mnist_factor),
    Claim('docs/results/tuned_comparison.md', VERDICT,
          'Holm over the verdict family', family_summary),
    Claim('docs/results/tuned_comparison.md', VERDICT,
          'sweeps\' grid and best seeds', seeds_summary),
    Claim('docs/results/tuned_comparison.md', VERDICT,
          'Holm over the frozen-control family', frozen_family_summary),
    *[Claim('docs/results/tuned_comparison.md', VERDICT,
            'confirmation-seed means, Welch p, Holm p', comparison(*key))
      for key in ((LENET, 'sgd+frozen', 'sgd'),
                  (LENET, 'adagrad+frozen', 'adagrad'),
                  (LENET, 'sgd+layer', 'sgd+frozen'),
                  (LENET, 'adagrad+layer', 'adagrad+frozen'),
                  (MLP, 'sgd+frozen', 'sgd'),
                  (MLP, 'adagrad+frozen', 'adagrad'),
                  (MLP, 'sgd+layer', 'sgd+frozen'),
                  (MLP, 'adagrad+layer', 'adagrad+frozen'))],
    Claim('docs/results/tuned_comparison.md',
          'experiments/results/mnist_lenet_frozen/results.json',
          'as in the README', table1_frozen),
    Claim('docs/results/paper_reproduction.md',
          'experiments/results/mnist_lenet_frozen/results.json',
          'as in the README', table1_frozen),
    Claim('docs/results/tuned_comparison.md', 'experiments/lib/models.py',
          'parameter count of RowTransformer, initialised',
          transformer_parameters),
    Claim('docs/results/cost.md', 'benchmarks/results/anchor_cpu.json',
          'median ratios compared, and min-max ranges of the fresh '
          'processes', anchor_overlap),
    Claim('docs/results/cost.md', 'benchmarks/results/anchor_cpu.json',
          'ranges over the trees of the median ratios; train_step_cpu.json '
          'for the whole step', cost_answer),
    Claim('docs/results/cost.md', 'benchmarks/results/family_cpu.json',
          'per (rule, tree): median time over the peer\'s median; count '
          'below 1 and ranges', family_cost),
    Claim('docs/results/paper_reproduction.md',
          'experiments/results/mnist_lenet/results.json',
          'cells where mean(+layer) < mean(plain)', table1_cells),
    # Written twice on the page: in "The answer" and in its section.
    Claim('docs/results/paper_reproduction.md',
          'experiments/results/mnist_lenet/results.json',
          'Welch p per cell, Holm over the 12 cells', table1_holm),
    Claim('docs/results/tuned_comparison.md',
          'experiments/results/mnist_lenet_sweep/sweep.json',
          'best["sgd"]: seeds and mean over all of them', lenet_sgd_ten_seeds),
    Claim('docs/results/tuned_comparison.md', f'experiments/results/{CIFAR}',
          'grid_seeds, best_seeds of sweep.json; seeds at the best rate '
          'whose run says device cpu', cifar_seed_counts),
    Claim('docs/results/tuned_comparison.md', f'experiments/results/{CIFAR}',
          'the seeds at the best rate whose run says device cpu; their runs',
          cifar_cpu_runs),
    *[Claim(page, VERDICT, 'as in the README', best_layer_gain)
      for page in ('docs/results/tuned_comparison.md',  # verdict, advice
                   'docs/guides/learning_rate.md')],
    Claim('docs/results/tuned_comparison.md', VERDICT,
          'sweep.json best (mean ± std over all seeds); verdict rows: all-'
          'seed Δ and Welch p, AdaGrad\'s confirmation Δ, p and Holm p',
          cifar_verdict),
    Claim('docs/results/paper_reproduction.md',
          'experiments/results/mnist_lenet_sgd_lr0.025/results.json',
          'the three rows, from mnist_lenet and the two lr0.025 controls',
          controls_rows),
    Claim('docs/results/scale_and_faults.md',
          'experiments/results/distributed/distributed_check.json',
          'lenet 1x1 max_rel_diff', distributed_1x1),
    Claim('docs/guides/per_layer_rules.md', VERDICT,
          'every row of the per-layer rules family: confirmation-seed '
          'means, Δ, Welch p, Holm p', rules_table),
    Claim('docs/guides/per_layer_rules.md', VERDICT,
          'n_variant and n_vs of every row of the per-layer rules family',
          rules_seeds),
    Claim('docs/guides/per_layer_rules.md', VERDICT,
          'Holm over the per-layer rules family', rules_family_summary),
    Claim(README, 'experiments/results/mnist_lenet_quick/results.json',
          'session_wall_seconds of the 2-seed run; runs of the full one',
          main_job_time),
    Claim('docs/notebooks.md', 'notebooks/vanishing_gradients.ipynb',
          'the tanh table\'s lr 0.01 row, printed by the notebook',
          notebook_tanh),
]

# Regions whose every number must lie inside a claim: (page, start marker,
# end marker).
COVERED = [
    (README, '## Does it help?', '![tuning curves'),
    (README, 'Offline, add', 'While it runs'),
    ('docs/results/cost.md', '## The answer', '![update and compile'),
    ('docs/results/cost.md', '## The per-layer family against its peers',
     '```{include} ../../benchmarks/results/family_cpu.md'),
    ('docs/results/index.md', '**In short:**', '![test error'),
    ('docs/guides/per_layer_rules.md', '## Does it help?',
     '## A scanned model'),
    ('docs/results/paper_reproduction.md', '## The answer',
     "## MNIST: the paper's Table I"),
    ('docs/index.md', '**Should you use it?**', '**What does it cost?**'),
    ('docs/results/tuned_comparison.md', '## The answer', '## Protocol'),
    ('docs/results/tuned_comparison.md', '## The frozen-factor control',
     '## Verdict'),
]
