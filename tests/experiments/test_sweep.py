"""Learning-rate sweeps: the driver (experiments/sweep.py) end to end, the
grid (experiments/lib/grid.py) and the outputs
(experiments/analysis/sweeps.py) in parts."""

import json
import math
import os

import ml_collections
import numpy as np
import pytest

from experiments import configs
from experiments.lib import records
from experiments import sweep as sweep_lib
from experiments.analysis import sweeps as sweeps_out
from experiments.lib import grid as grid_lib
from experiments.lib import train
from experiments.lib.methods import Method
from tests.conftest import ROOT, assert_plot

SWEEP_ARGS = ['--config.data_source=local', '--config.num_steps=4',
              '--config.eval_every=2', '--config.log_every=2',
              '--config.max_eval_examples=500',
              '--config.sweep.methods=sgd,sgd+layer',
              '--config.sweep.lr_log2_steps=(0,1)',
              '--config.sweep.grid_seeds=1', '--config.sweep.best_seeds=2',
              '--config.sweep.max_extensions=1']


def test_sweep_end_to_end_and_resume(mnist_dir, tmp_path, monkeypatch):
  workdir = str(tmp_path / 'sweep')
  args = ['mnist_lenet', '--workdir', workdir,
          f'--config.data_dir={mnist_dir}'] + SWEEP_ARGS
  assert sweep_lib.main(args) == 0
  with open(os.path.join(workdir, 'sweep.json')) as f:
    payload = json.load(f)
  for key in ('experiment', 'metric', 'runs', 'best', 'config', 'versions',
              'commit', 'grid', 'data'):
    assert key in payload, key
  assert payload['experiment'] == 'mnist_lenet'
  assert payload['data']['paper_data'] is False  # generated data
  assert 'final test error' in payload['metric']
  for run in payload['runs']:
    assert set(run) >= {'method', 'base_lr', 'seed', 'test_error',
                        'train_loss'}
    assert len(run['test_error']) == 2
  assert set(payload['best']) == {'sgd', 'sgd+layer'}
  for method, best in payload['best'].items():
    assert set(best) >= {'base_lr', 'seeds', 'mean', 'std'}
    assert best['seeds'] == 2  # stage 2 reran the best rate to 2 seeds
    # The best run's errors are the runs' final errors.
    finals = [r['test_error'][-1] for r in payload['runs']
              if r['method'] == method and r['base_lr'] == best['base_lr']]
    np.testing.assert_allclose(best['mean'], np.mean(finals))
    np.testing.assert_allclose(best['std'], np.std(finals, ddof=1))
    rates = [p['base_lr'] for p in payload['grid'][method]]
    # Grid: 0.01 * 2**k, extended by one on an edge at most.
    assert set(rates) <= {0.005, 0.01, 0.02, 0.04} and len(rates) >= 2
  for name in sweeps_out.OUTPUTS:
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  assert_plot(os.path.join(workdir, 'tuning.png'))
  assert open(os.path.join(workdir, 'grid.md')).read() == \
      sweeps_out.grid_markdown(payload)
  assert open(os.path.join(workdir, 'best.md')).read() == \
      sweeps_out.best_markdown(payload)
  best_md = open(os.path.join(workdir, 'best.md')).read()
  assert '| sgd+layer | sgd |' in best_md
  # The report rebuilds the same outputs from the runs alone.
  from experiments import report
  os.remove(os.path.join(workdir, 'sweep.json'))
  # Also from a sweep started before a config key existed (it takes its
  # default, as a resumed sweep does).
  config_path = os.path.join(workdir, 'config.json')
  with open(config_path) as f:
    saved = json.load(f)
  del saved['layer_max_factor']
  with open(config_path, 'w') as f:
    json.dump(saved, f)
  assert report.main(['report', 'sweep', workdir]) == 0
  with open(os.path.join(workdir, 'sweep.json')) as f:
    again = json.load(f)
  assert again['best'] == payload['best'] and again['grid'] == payload['grid']
  # Again: every run is finished, nothing is trained.
  trained = []
  monkeypatch.setattr(train.Trainer, 'train',
                      lambda self, specs, *a: trained.extend(specs))
  assert sweep_lib.main(args) == 0
  assert not trained


def _record(method, lr, seed, final, diverged=False):
  return records.RunRecord(
      method=method, seed=seed, base_lr=lr,
      test_error=[50.0, None if diverged else final],
      train_loss=[1.0, None if diverged else 0.5],
      diverged_at=3 if diverged else None)


def _grid_with(errors, steps=(-1, 0, 1), tolerance=0.1, diverged=()):
  """A Grid over fake runs: errors[k] = final error of each seed at 2**k;
  returns (grid, its runs by name)."""
  config = configs.get_config('mnist_lenet')
  config.sweep.methods = 'sgd'
  config.sweep.lr_log2_steps = steps
  config.sweep.tolerance = tolerance
  config.base_lr = 1.0
  runs = {}
  grid = grid_lib.Grid(config, (Method('sgd'),),
                       lambda spec: runs.get(spec.name))
  for k, seeds in errors.items():
    for seed, e in enumerate(seeds):
      spec = grid.spec(Method('sgd'), k, seed)
      runs[spec.name] = _record('sgd', 2.0**k, seed, e,
                                diverged=(k, seed) in diverged)
  return grid, runs


def test_selection_extension_and_robustness():
  m = Method('sgd')
  sweep, _ = _grid_with({-1: [3.0, 3.2], 0: [2.0, 2.1], 1: [2.15, 2.2]})
  assert sweep.best_step(m, [0, 1]) == 0
  assert sweep.point(m, 0, [0, 1])[:3] == (2.05, pytest.approx(0.0707, 1e-3),
                                           2)
  assert sweep.point(m, 0, [0, 1]).seeds == 2
  # 2.175 is within 10% of 2.05, 3.1 is not: width 1 (a factor of 2).
  assert sweep.robust_width(m, [0, 1]) == 1
  assert not sweep.extend(m, [0, 1])  # best is interior
  # Best on the upper edge: the grid grows by one step there.
  sweep, _ = _grid_with({-1: [3.0], 0: [2.0], 1: [1.0]})
  assert sweep.extend(m, [0]) and sweep.log2_steps[m] == [-1, 0, 1, 2]
  # A point where a seed diverged is never the best, and counts as worse.
  sweep, _ = _grid_with({-1: [3.0, 3.0], 0: [2.0, 2.0], 1: [1.0, 1.0]},
                      diverged={(1, 1)})
  assert math.isinf(sweep.point(m, 1, [0, 1]).mean)
  assert sweep.best_step(m, [0, 1]) == 0
  # Everything diverged: only smaller rates are tried.
  sweep, _ = _grid_with({-1: [1.0], 0: [1.0], 1: [1.0]},
                      diverged={(-1, 0), (0, 0), (1, 0)})
  assert sweep.best_step(m, [0]) is None
  assert sweep.extend(m, [0]) and sweep.log2_steps[m] == [-2, -1, 0, 1]


@pytest.mark.parametrize('overrides,message', [
    ({'lr_log2_steps': (0,)}, 'at least 2'),
    ({'lr_log2_steps': (0, 2)}, 'consecutive'),
    ({'grid_seeds': 3, 'best_seeds': 2}, 'grid_seeds <= best_seeds'),
    ({'tolerance': 1.5}, 'tolerance'),
    ({'methods': 'sgd,sdg'}, 'unknown method'),
])
def test_bad_sweep_configs(overrides, message):
  config = configs.get_config('mnist_lenet')
  config.sweep.update(overrides)
  with pytest.raises(configs.ConfigError, match=message):
    grid_lib.validate(config)


def test_every_sweep_config_is_valid():
  for name in configs.available():
    config = configs.get_config(name)
    assert grid_lib.validate(config), name
    assert isinstance(config.sweep, ml_collections.ConfigDict)


def test_every_method_has_a_plot_style(tmp_path):
  """tuning.png draws every base and variant (a missing one crashed a sweep
  after its runs were saved)."""
  from experiments.lib import methods
  grid = {}
  for base in methods.BASES:
    for variant in (None, *methods.VARIANTS):
      name = methods.Method(base, variant).name
      grid[name] = [{'base_lr': 0.01, 'mean': 1.0, 'std': 0.1},
                    {'base_lr': 0.02, 'mean': None, 'std': None}]
  path = str(tmp_path / 'tuning.png')
  sweeps_out.plot_tuning({'grid': grid, 'experiment': 'x', 'best': {},
                         'grid_seeds': 1},
                    path)
  assert_plot(path)


def test_methods_replay_independently():
  """A method's grid depends on its own runs only: one method's unfinished
  wave does not hide another's extensions (workers train them apart)."""
  sgd, layer = Method('sgd'), Method('sgd', 'layer')
  sweep, _ = _grid_with({-1: [3.0], 0: [2.0], 1: [1.0], 2: [0.5]})
  sweep.methods = (sgd, layer)
  sweep.center[layer] = 1.0
  sweep.log2_steps = {sgd: [-1, 0, 1], layer: [-1, 0, 1]}
  sweep.config.sweep.grid_seeds = 2
  sweep.replay()
  # sgd: best at the upper edge after wave 0, extended to 2**2 (whose run
  # exists), then 2**3 (not run yet); sgd+layer has no runs at all.
  assert sweep.log2_steps[sgd] == [-1, 0, 1, 2, 3]
  assert sweep.log2_steps[layer] == [-1, 0, 1]


def test_only_trains_some_methods_and_parallel_workers(mnist_dir, tmp_path,
                                                        monkeypatch):
  monkeypatch.setenv('PYTHONPATH', os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  base = ['mnist_lenet', f'--config.data_dir={mnist_dir}'] + SWEEP_ARGS
  only = str(tmp_path / 'only')
  assert sweep_lib.main(base + ['--workdir', only, '--only', 'sgd+layer']) == 0
  trained = sorted(os.listdir(os.path.join(only, 'runs')))
  assert trained and all(n.startswith('sgd+layer_') for n in trained)
  with open(os.path.join(only, 'config.json')) as f:
    assert json.load(f)['sweep']['methods'] == 'sgd,sgd+layer'
  with open(os.path.join(only, 'sweep.json')) as f:
    payload = json.load(f)
  assert set(payload['best']) == {'sgd+layer'} and payload['grid']['sgd'] == []
  assert '**Unfinished sweep**: no finite point yet for sgd' in open(
      os.path.join(only, 'best.md')).read()
  # Two workers, one method each, in one workdir: the same runs as one
  # process trains, and the outputs of the whole sweep.
  par = str(tmp_path / 'parallel')
  assert sweep_lib.main(base + ['--workdir', par, '--parallel', '2']) == 0
  logs = sorted(os.listdir(os.path.join(par, 'workers')))
  assert logs == ['worker0.log', 'worker1.log']
  with open(os.path.join(par, 'sweep.json')) as f:
    payload = json.load(f)
  assert set(payload['best']) == {'sgd', 'sgd+layer'}
  assert all(b['seeds'] == 2 for b in payload['best'].values())
  names = sorted(os.listdir(os.path.join(par, 'runs')))
  assert [n for n in names if n.startswith('sgd+layer_')] == trained
  platform, = payload['run_platforms']
  assert platform['runs'] == len(names) and 'jax' in platform['versions']
  assert 'Trained on: cpu' in open(os.path.join(par, 'best.md')).read()


@pytest.mark.parametrize('extra,message', [
    (['--only', 'sgd,nag'], 'nag not in config.sweep.methods'),
    (['--parallel', '0'], '--parallel must be >= 1'),
    (['--parallel', '2', '--config.distributed=True'], 'cannot be combined'),
])
def test_bad_worker_arguments(mnist_dir, tmp_path, capsys, extra, message):
  args = ['mnist_lenet', '--workdir', str(tmp_path / 'w'),
          f'--config.data_dir={mnist_dir}'] + SWEEP_ARGS + extra
  assert sweep_lib.main(args) == 2
  assert message in capsys.readouterr().err


def test_sigterm_to_a_parallel_sweep_keeps_its_runs(mnist_dir, tmp_path):
  """What GNU timeout or a scheduler does: SIGTERM to the whole process
  group. The parent and its workers stop as on Ctrl-C (exit 130, the
  outputs of what finished written), and the same command resumes."""
  import signal
  import subprocess
  import sys
  import time
  workdir = tmp_path / 'sweep'
  # Enough runs that the sweep is still training when the signal comes.
  args = ['mnist_lenet', '--workdir', str(workdir),
          f'--config.data_dir={mnist_dir}'] + SWEEP_ARGS + [
              '--config.sweep.lr_log2_steps=(-2,-1,0,1)',
              '--config.sweep.best_seeds=3']
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.Popen(
      [sys.executable, '-m', 'experiments.sweep', *args, '--parallel', '2'],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, start_new_session=True)
  runs = workdir / 'runs'
  deadline = time.monotonic() + 900  # a guard against a hang only
  while not (runs.is_dir() and any(runs.glob('*.json'))):
    assert proc.poll() is None, proc.communicate()
    assert time.monotonic() < deadline, 'no run finished in 900 s'
    time.sleep(0.2)
  os.killpg(proc.pid, signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, (out, err)
  assert 'interrupted' in err
  kept = {p.name: p.read_bytes() for p in runs.glob('*.json')}
  assert kept and not [p for p in runs.iterdir() if '.tmp' in p.name]
  for i in (0, 1):
    log = (workdir / 'workers' / f'worker{i}.log').read_text()
    assert 'interrupted' in log, log[-2000:]
  with open(workdir / 'sweep.json') as f:
    assert len(json.load(f)['runs']) == len(kept)
  # The same command finishes the sweep, keeping every run it had.
  done = subprocess.run(
      [sys.executable, '-m', 'experiments.sweep', *args], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  for name, content in kept.items():
    assert (runs / name).read_bytes() == content, name
  assert len(list(runs.glob('*.json'))) > len(kept)


def test_prune_sweeps_removes_only_worktrees_no_sweep_uses(tmp_path):
  """scripts/prune_sweeps.sh keeps a worktree whose lock a sweep holds and
  one a process runs in; it removes the others, and nothing else."""
  import fcntl
  import shutil
  import subprocess
  repo = tmp_path / 'repo'
  (repo / 'scripts').mkdir(parents=True)
  shutil.copy(os.path.join(ROOT, 'scripts', 'prune_sweeps.sh'),
              repo / 'scripts')
  (repo / 'results.json').write_text('{}')

  def git(*args, cwd=repo):
    return subprocess.run(['git', *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout

  git('init', '-q')
  git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'x',
      '--allow-empty')
  sweeps = repo / '.sweeps'
  for name in ('locked', 'busy', 'idle'):
    git('worktree', 'add', '-q', '--detach', str(sweeps / name), 'HEAD')

  def prune(*args):
    return subprocess.run(['bash', 'scripts/prune_sweeps.sh', *args],
                          cwd=repo, check=True, capture_output=True,
                          text=True).stdout

  lock = open(sweeps / 'locked.lock', 'w')  # what run_sweep.sh holds
  fcntl.flock(lock, fcntl.LOCK_SH)
  busy = subprocess.Popen(['sleep', '120'], cwd=sweeps / 'busy')
  try:
    assert 'would remove idle' in prune('--dry-run')
    assert (sweeps / 'idle').is_dir()
    out = prune()
    assert 'kept locked: a sweep holds it' in out
    assert 'kept busy: a process runs in it' in out
    assert 'removed idle' in out
    assert sorted(p.name for p in sweeps.iterdir() if p.is_dir()) == [
        'busy', 'locked']
    assert str(sweeps / 'idle') not in git('worktree', 'list')
  finally:
    busy.kill()
    busy.wait()
    lock.close()
  assert 'removed 2 worktree(s), kept 0' in prune()
  assert (repo / 'results.json').read_text() == '{}'
  assert len(git('worktree', 'list').splitlines()) == 1
  with pytest.raises(subprocess.CalledProcessError):
    prune('--everything')


def run_driver(grid, runs, method, final_error):
  """The sweep driver over `grid` with fake training: each run it trains
  is recorded in `runs` with the final error `final_error(spec)`."""

  def fake_train(specs):
    for spec in specs:
      if spec.name not in runs:
        runs[spec.name] = _record(method.name, spec.base_lr, spec.seed,
                                  final_error(spec))

  driver = sweep_lib.Sweep.__new__(sweep_lib.Sweep)
  driver.config, driver.grid = grid.config, grid
  driver.train_methods = (method,)
  driver._train = fake_train
  driver.write_outputs = lambda: None
  driver._run()


def test_a_point_added_in_a_later_wave_gets_every_earlier_seed():
  """Issue #26: the grid extends in wave 1 (seed 1 moves the best to the
  edge); the new point must be trained with seed 0 too, and the replay of
  the finished runs must rebuild the same grid."""
  finals = {(-1, 0): 3.0, (0, 0): 2.0, (1, 0): 2.5,   # wave 0: best interior
            (-1, 1): 3.0, (0, 1): 2.6, (1, 1): 1.0,   # wave 1: best on edge
            (2, 0): 2.2, (2, 1): 2.0}                 # the added point
  sgd = Method('sgd')
  grid, runs = _grid_with({})
  grid.config.sweep.grid_seeds = 2
  grid.config.sweep.best_seeds = 2
  trained = []

  def final(spec):
    k = round(math.log2(spec.base_lr))
    trained.append((k, spec.seed))
    return finals[(k, spec.seed)]

  run_driver(grid, runs, sgd, final)
  assert grid.log2_steps[sgd] == [-1, 0, 1, 2]
  assert (2, 0) in trained and (2, 1) in trained
  assert sorted(trained) == sorted(finals)
  # Replayed from the runs alone: the same grid.
  replayed = grid_lib.Grid(grid.config, grid.methods,
                           lambda spec: runs.get(spec.name))
  replayed.replay()
  assert replayed.log2_steps[sgd] == [-1, 0, 1, 2]
