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


def _table2_results(experiment, errors_by_method, data=None):
  payload = {'experiment': experiment, 'eval_steps': [10, 20], 'runs': [],
             'config': {'max_eval_examples': 0}, 'wall_seconds': 0.0,
             'session_wall_seconds': 0.0, 'backend': 'gpu', 'device': 'gpu',
             'versions': {}, 'data': data}
  for method, finals in errors_by_method.items():
    payload['runs'] += [{'method': method, 'seed': i,
                         'test_error': [50.0, e]}
                        for i, e in enumerate(finals)]
  return payload


def test_report_table2_checks_the_papers_claims(tmp_path, capsys):
  """Each claim's row from the final test errors, against numbers computed
  here with scipy; a claim whose runs are missing says so."""
  from scipy import stats as scipy_stats
  jpeg = {'dataset': 'cifar10', 'source': 'local', 'sha256': None,
          'paper_data': False}
  full = {'sgd': [22.0, 23.0, 21.5, 22.5, 22.0],
          'sgd+layer': [21.0, 21.4, 20.9, 21.8, 21.2]}
  full_50k = {'sgd+layer': [23.0, 22.0, 24.0, 23.5, 22.5]}
  for name, methods in (('cifar10_full', full),
                        ('cifar10_full_50k', full_50k)):
    os.makedirs(tmp_path / name)
    (tmp_path / name / 'results.json').write_text(
        json.dumps(_table2_results(name, methods, jpeg)))
  assert report_lib.main(['report', 'table2', str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert out == (tmp_path / 'table2.md').read_text()
  acc = {k: 100 - np.array(v) for k, v in full.items()}
  acc_50k = 100 - np.array(full_50k['sgd+layer'])
  p = scipy_stats.ttest_ind(acc['sgd+layer'], acc['sgd'],
                            equal_var=False).pvalue
  delta = acc['sgd+layer'].mean() - acc['sgd'].mean()
  assert p < 0.05 and delta > 0
  assert (f'| SGD+ours beats SGD (final accuracy, 70k) | +0.32 | '
          f'Δ {delta:+.2f} ({acc["sgd+layer"].mean():.2f} ± '
          f'{acc["sgd+layer"].std(ddof=1):.2f} vs {acc["sgd"].mean():.2f} ± '
          f'{acc["sgd"].std(ddof=1):.2f}) | 5 vs 5 | {p:.3f} | holds here '
          '(p < 0.05) |') in out
  delta_50k = acc_50k.mean() - acc['sgd'].mean()
  assert delta_50k < 0
  assert (f'beats SGD after 70k | n/a | Δ {delta_50k:+.2f} ' in out
          and 'does not hold here |' in out)
  assert (f'reaches 82.08% | 82.08 | {acc_50k.mean():.2f} ± '
          f'{acc_50k.std(ddof=1):.2f} | 5 | | not comparable (other data) |'
          in out)
  assert '| AdaGrad+ours beats AdaGrad (final accuracy, 70k) | +1.30 | not run' in out
  assert 'on the whole test set' in out and "is not the paper's" in out


def test_report_table2_without_results_says_what_to_run(tmp_path, capsys):
  assert report_lib.main(['report', 'table2', str(tmp_path)]) == 1
  assert 'train them first' in capsys.readouterr().err


def test_a_running_experiment_is_reported_from_its_finished_runs(
    tmp_path, mnist_config, capsys):
  """The main job, as a user watches it: the run command says how to see
  the runs so far; `report WORKDIR` makes the table of the finished runs
  before results.json exists; the progress line shows the latest test
  error; the end says what the table means in one line."""
  import subprocess
  import sys
  from tests.conftest import ROOT
  workdir = tmp_path / 'w'
  config = mnist_config(num_seeds=2, num_steps=4, eval_every=2,
                        log_every=2)
  overrides = [f'--config.{k}={config[k]}' for k in (
      'data_source', 'data_dir', 'num_seeds', 'num_steps', 'eval_every',
      'log_every', 'methods')]
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.run', 'mnist_lenet', '--workdir',
       str(workdir), *overrides], cwd=ROOT, capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu'),
      timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (f'While it runs, python -m experiments.report {workdir} writes the '
          'table and plots of the runs finished so far.') in proc.stderr
  assert 'test_err=' in proc.stderr  # the progress line
  results = records.load_results(str(workdir / 'results.json'))
  last = proc.stdout.strip().splitlines()[-1]
  assert last == results_lib.summary_line(results)
  # The line, recomputed here from the runs.
  final = {m: np.array([r.test_error[-1] for r in runs])
           for m, runs in results.by_method().items()}
  delta = final['sgd+layer'].mean() - final['sgd'].mean()
  p = stats.welch_p(final['sgd+layer'], final['sgd'])
  assert last.startswith(
      f'At iteration 4: sgd+layer {delta:+.2f} points vs sgd (p = {p:.3f}, '
      '2 and 2 seeds).')
  assert 'docs/results/paper_reproduction.md' in last
  # As if it were still running: results.json not written, one run left.
  os.remove(workdir / 'results.json')
  os.remove(workdir / 'runs' / 'sgd+layer_seed1.json')
  capsys.readouterr()
  assert report_lib.main(['report', str(workdir)]) == 0
  out = capsys.readouterr().out
  assert 'no results.json yet; 3 of 4 runs finished' in out
  table = (workdir / 'table.md').read_text()
  assert 'Seeds per method: sgd 2, sgd+layer 1.' in table
  assert_plot(workdir / 'curves.png')
  assert '1 and 2 seeds' in out.strip().splitlines()[-1]


def test_report_of_a_folder_without_runs_says_so(tmp_path, capsys):
  assert report_lib.main(['report', str(tmp_path)]) != 0
  assert 'no experiment (no config.json)' in capsys.readouterr().err
