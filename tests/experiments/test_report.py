"""Tables, plots and comparisons (experiments/report.py, the analysis layer,
lib/records.py)."""

import glob
import json
import os

import numpy as np

from experiments.lib import records
from experiments import report as report_lib
from experiments.analysis import results as results_lib
from experiments.lib import stats
from tests.conftest import ROOT, assert_plot


def _results(method, errors, factors=None):
  runs = [{'method': method, 'seed': i, 'test_error': e,
           'layer_factors': {'a': factors or [1.0]}}
          for i, e in enumerate(errors)]
  return {'experiment': 'x', 'eval_steps': [10, 20], 'runs': runs,
          'config': {}, 'wall_seconds': 0.0, 'session_wall_seconds': 0.0,
          'backend': 'cpu', 'device': 'cpu', 'versions': {}}


def test_report_compare_two_workdirs(tmp_path, capsys):
  a = _results('sgd+layer', [[2.0, 1.0], [2.2, 1.2]],
               factors=[1.0, 2.0, 3.0, 4.0, 5.0])
  b = _results('sgd', [[3.0, 1.0], [3.2, 1.2]])
  for name, payload in (('a', a), ('b', b)):
    os.makedirs(tmp_path / name)
    (tmp_path / name / 'results.json').write_text(json.dumps(payload))
  assert report_lib.main(['report', 'compare', str(tmp_path / 'a'),
                          'sgd+layer', str(tmp_path / 'b'), 'sgd']) == 0
  out = capsys.readouterr().out
  assert '| 10 | 2.10 ± 0.14 | 3.10 ± 0.14 | -1.00 | 0.019 |' in out
  assert '| 20 | 1.10 ± 0.14 | 1.10 ± 0.14 | +0.00 | 1.000 |' in out
  assert '3.00 overall, 1.00 in the first fifth of training, 5.00 in' in out
  assert report_lib.main(['report', 'compare', str(tmp_path / 'a'), 'nag',
                          str(tmp_path / 'b'), 'sgd']) == 1
  assert "no runs of 'nag'" in capsys.readouterr().err


def test_one_std_everywhere_and_na_for_one_seed():
  np.testing.assert_allclose(stats.sample_std(np.array([1.0, 2.0])),
                             np.std([1.0, 2.0], ddof=1))
  assert np.isnan(stats.sample_std(np.array([1.0])))
  assert results_lib.fmt(1.0, float('nan')) == '1.00 ± n/a'
  one = records.Results.from_json(_results('sgd', [[3.0, 1.0]]))
  table = results_lib.table_markdown(one)
  assert '| 10 | 3.00 ± n/a |' in table


def test_report_help_and_rewrite(tmp_path, capsys):
  assert report_lib.main(['report', '--help']) == 0
  assert 'compare' in capsys.readouterr().out
  os.makedirs(tmp_path / 'w')
  payload = _results('sgd', [[3.0, 1.0], [3.2, 1.2]])
  for run in payload['runs']:
    run.update(factor_steps=[20], train_loss=[0.5, 0.25])
  (tmp_path / 'w' / 'results.json').write_text(json.dumps(payload))
  assert report_lib.main(['report', str(tmp_path / 'w')]) == 0
  out = capsys.readouterr().out
  for name in results_lib.OUTPUTS:
    assert f'wrote {tmp_path / "w" / name}' in out
  results = records.Results.from_json(payload)
  assert (tmp_path / 'w' / 'table.md').read_text() == \
      results_lib.table_markdown(results)
  assert (tmp_path / 'w' / 'factors.md').read_text() == \
      results_lib.factors_markdown(results)
  for name in ('curves.png', 'layer_rates.png'):
    assert_plot(tmp_path / 'w' / name)


def test_every_committed_results_json_loads_as_a_record():
  paths = glob.glob(os.path.join(ROOT, 'experiments', 'results', '*',
                                 'results.json'))
  assert paths
  for path in paths:
    results = records.load_results(path)
    assert results.runs and all(r.test_error for r in results.runs), path
