"""The statistics behind the verdict (#31): rates chosen on the grid seeds
only, comparisons on the confirmation seeds, Holm's correction, and the
committed sweep.json / verdict.json rebuilt from the runs."""

from __future__ import annotations

import glob
import importlib
import json
import math
import os
from collections import defaultdict

import numpy as np
import pytest
from scipy import stats as scipy_stats

from experiments.analysis import sweeps
from experiments.analysis import verdict as verdict_lib
from experiments.lib import stats
from experiments.lib.methods import Method
from tests.conftest import ROOT
from tests.experiments.test_sweep import _grid_with
from tests.experiments.test_sweep import run_driver

RESULTS = os.path.join(ROOT, 'experiments', 'results')


# ------------------------------------------------------------------ Holm --

def test_holm_by_hand():
  # Sorted: .005 .01 .03 .04 -> x4 x3 x2 x1 = .02 .03 .06 .04 -> monotone
  # .02 .03 .06 .06, returned in the input order.
  got = stats.holm([0.01, 0.04, 0.03, 0.005])
  np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02])
  assert stats.holm([0.5, 0.9]) == [1.0, 1.0]
  got = stats.holm([0.01, math.nan, 0.02])
  assert math.isnan(got[1])
  np.testing.assert_allclose([got[0], got[2]], [0.02, 0.02])


@pytest.mark.parametrize('seed', range(20))
def test_holm_is_the_step_down_procedure(seed):
  """Against the procedure's definition: reject H_(1..k) for the largest
  k with p_(j) <= alpha / (m - j + 1) for every j <= k."""
  rng = np.random.default_rng(seed)
  p = rng.uniform(0, 0.1, size=rng.integers(1, 30)) ** rng.uniform(0.5, 2)
  adjusted = np.array(stats.holm(p))
  assert np.all(adjusted >= p - 1e-15) and np.all(adjusted <= 1)
  for alpha in (0.01, 0.05, 0.1):
    order = np.argsort(p)
    m, rejected = len(p), set()
    for j, i in enumerate(order):
      if p[i] > alpha / (m - j):
        break
      rejected.add(int(i))
    assert set(np.flatnonzero(adjusted <= alpha).tolist()) == rejected


# ------------------------------------------------- selection vs confirmation --

def _payload(grid):
  return sweeps.summary(grid, data={'dataset': 'test'})


def test_the_best_rate_is_chosen_on_the_grid_seeds_only():
  """At 2**0 the grid seeds are best, at 2**1 the later seeds are: the
  sweep must choose 2**0 and confirm it on its later seeds."""
  grid, _ = _grid_with({-1: [5.0, 5.0], 0: [2.0, 2.0, 9.0, 9.0, 9.0],
                        1: [2.5, 2.5, 1.0, 1.0, 1.0]})
  grid.config.sweep.grid_seeds = 2
  grid.config.sweep.best_seeds = 5
  best = _payload(grid)['best']['sgd']
  assert best['base_lr'] == 1.0
  assert best['confirmation']['final_errors'] == [9.0, 9.0, 9.0]
  assert best['seed_ids'] == [0, 1, 2, 3, 4]


def test_stage_two_on_resume_confirms_the_grid_seeds_choice():
  """A resumed sweep that finds later seeds at another rate (an earlier
  session's) still reruns the rate the grid seeds chose."""
  sgd = Method('sgd')
  grid, runs = _grid_with({-1: [5.0, 5.0], 0: [2.0, 2.0],
                           1: [2.5, 2.5, 0.5, 0.5, 0.5]})
  grid.config.sweep.grid_seeds = 2
  grid.config.sweep.best_seeds = 5
  trained = []

  def final(spec):
    trained.append((spec.base_lr, spec.seed))
    return 3.0

  run_driver(grid, runs, sgd, final)
  assert sorted(trained) == [(1.0, 2), (1.0, 3), (1.0, 4)]


@pytest.mark.parametrize('errors,interior', [
    ({-1: [3.0], 0: [2.0], 1: [2.5]}, True),
    ({-1: [3.0], 0: [2.0]}, False),    # only the lower neighbour
    ({0: [2.0], 1: [2.5]}, False),     # only the upper neighbour
])
def test_best_interior_needs_both_neighbours(errors, interior):
  grid, _ = _grid_with(errors)
  grid.config.sweep.grid_seeds = 1
  grid.config.sweep.best_seeds = 1
  assert _payload(grid)['best']['sgd']['interior'] is interior


# ------------------------------------------------ committed results --

def _sweep_dirs():
  return [name for name in verdict_lib.SWEEPS
          if os.path.isdir(os.path.join(RESULTS, name, 'runs'))]


@pytest.mark.parametrize('name', _sweep_dirs())
def test_committed_sweep_json_is_rebuilt_from_its_runs(name):
  workdir = os.path.join(RESULTS, name)
  with open(os.path.join(workdir, 'sweep.json')) as f:
    committed = json.load(f)
  rebuilt = json.loads(json.dumps(
      sweeps.summary(sweeps.load(workdir), committed['data'])))
  for key in set(committed) | set(rebuilt):
    if key == 'versions':  # the writer's environment, not the runs'
      continue
    assert json.dumps(rebuilt[key], sort_keys=True) == json.dumps(
        committed[key], sort_keys=True), f'{name}: {key} differs'


@pytest.mark.parametrize('name', _sweep_dirs())
def test_committed_config_reruns_the_published_sweep(name):
  """The sweep's protocol (methods, grid, seeds at the best rate) may change
  on resume, so a config left behind the published runs would rebuild a
  different table from them without a word (e.g. fewer confirmation seeds):
  the committed experiment config must be the protocol the runs used."""
  with open(os.path.join(RESULTS, name, 'config.json')) as f:
    used = json.load(f)['sweep']
  experiment = name.removesuffix('_sweep')
  committed = importlib.import_module(
      f'experiments.configs.{experiment}').get_config().sweep.to_dict()
  assert json.loads(json.dumps(committed)) == used, (
      f'experiments/configs/{experiment}.py sweep settings differ from those '
      f'of the published runs ({name}/config.json)')


def _independent_best(workdir):
  """Each method's best rate and its errors straight from the run files,
  without the sweep's code: mean over the grid seeds finished so far (all
  of them in a finished sweep), lowest finite wins (ties: the lower
  rate)."""
  with open(os.path.join(workdir, 'sweep.json')) as f:
    grid_seeds = json.load(f)['grid_seeds']
  finals = defaultdict(dict)
  for path in glob.glob(os.path.join(workdir, 'runs', '*.json')):
    with open(path) as f:
      run = json.load(f)
    error = run['test_error'][-1]
    final = math.inf if run['diverged_at'] is not None or error is None \
        else error
    finals[run['method']][(run['base_lr'], run['seed'])] = final
  best = {}
  for method, by_run in finals.items():
    rates = sorted({rate for rate, _ in by_run})
    scores = {}
    for rate in rates:
      chosen = [by_run[(rate, s)] for s in range(grid_seeds)
                if (rate, s) in by_run]
      if chosen:
        scores[rate] = np.mean(chosen)
    finite = {r: v for r, v in scores.items() if np.isfinite(v)}
    if not finite:
      continue
    rate = min(finite, key=lambda r: (finite[r], r))
    confirm = [v for (r, s), v in sorted(by_run.items())
               if r == rate and s >= grid_seeds]
    best[method] = (rate, confirm)
  return best


def test_published_verdict_is_recomputed_from_the_runs():
  """verdict.json against an independent computation from runs/*.json:
  the rates, the confirmation means, Welch's p (scipy) and Holm's."""
  with open(os.path.join(RESULTS, 'verdict.json')) as f:
    published = json.load(f)
  bests = {name: _independent_best(os.path.join(RESULTS, name))
           for name in published['sweeps']}
  by_family = defaultdict(list)
  for row in published['rows']:
    rate_a, conf_a = bests[row['sweep']][row['variant']]
    rate_b, conf_b = bests[row['sweep']][row['vs']]
    assert row['n_variant'] == len(conf_a) and row['n_vs'] == len(conf_b)
    if len(conf_a) >= 2 and len(conf_b) >= 2:
      p = scipy_stats.ttest_ind(conf_a, conf_b, equal_var=False).pvalue
      np.testing.assert_allclose(row['p'], p, rtol=1e-9)
      np.testing.assert_allclose(row['delta'],
                                 np.mean(conf_a) - np.mean(conf_b),
                                 atol=1e-12)
      by_family[row['family']].append((row['p'], row['p_holm']))
  for family, pairs in by_family.items():
    raw = np.array([p for p, _ in pairs])
    m = len(raw)
    # Holm by its definition, independently of stats.holm.
    order = np.argsort(raw)
    want = np.empty(m)
    running = 0.0
    for j, i in enumerate(order):
      running = max(running, min(1.0, (m - j) * raw[i]))
      want[i] = running
    np.testing.assert_allclose([h for _, h in pairs], want, rtol=1e-12)
    assert published['families'][family]['tested'] == m


def test_committed_verdict_is_rebuilt_from_the_runs():
  with open(os.path.join(RESULTS, 'verdict.json')) as f:
    committed = json.load(f)
  rebuilt = json.loads(json.dumps(verdict_lib.build(
      verdict_lib.load_payloads(RESULTS))))
  # As JSON text: NaN (an untested comparison) equals itself there.
  assert json.dumps(rebuilt, sort_keys=True) == json.dumps(committed,
                                                           sort_keys=True)
  with open(os.path.join(RESULTS, 'verdict.md')) as f:
    assert f.read() == verdict_lib.markdown(committed)


def test_frozen_factors_come_from_the_selection_seeds_only(tmp_path):
  """+frozen's factors: sgd+layer's best rate, its grid seeds' runs only
  (the confirmation seeds must not leak into the control)."""
  from experiments import configs
  from experiments.lib import grid as grid_lib
  from experiments.lib import records
  config = configs.get_config('mnist_lenet')
  config.sweep.methods = 'sgd+layer'
  config.sweep.lr_log2_steps = (0, 1)
  config.sweep.grid_seeds = 2
  config.sweep.best_seeds = 4
  config.base_lr = 1.0
  layer = Method('sgd', 'layer')
  runs = {}
  grid = grid_lib.Grid(config, (layer,), lambda spec: runs.get(spec.name))
  for k, finals in ((0, [2.0, 2.0, 9.0, 9.0]), (1, [3.0, 3.0])):
    for seed, final in enumerate(finals):
      spec = grid.spec(layer, k, seed)
      runs[spec.name] = records.RunRecord(
          method=layer.name, seed=seed, base_lr=2.0 ** k,
          test_error=[50.0, final], train_loss=[1.0, 0.5],
          layer_factors={'conv1': [1.0 + seed, 3.0 + seed],
                         'ip1': [5.0 + 10 * k] * 2})
  payload = sweeps.frozen_factors(grid)
  # Grid seeds 0 and 1 at 2**0: conv1 means 2 and 3 -> 2.5; ip1 5.
  assert payload['factors'] == {'sgd': {'conv1': 2.5, 'ip1': 5.0}}
  assert payload['runs'] == {'sgd': ['sgd+layer_lr1.0_seed0',
                                     'sgd+layer_lr1.0_seed1']}
  path = str(tmp_path / 'frozen_factors.json')
  assert sweeps.write_frozen_factors(payload, path)
  assert not sweeps.write_frozen_factors(payload, path)  # the same: kept
  other = dict(payload, factors={'sgd': {'conv1': 2.0, 'ip1': 5.0}})
  with pytest.raises(FileExistsError, match='other frozen factors'):
    sweeps.write_frozen_factors(other, path)
