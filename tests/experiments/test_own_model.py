"""experiments/README.md, "Your own model", followed as written: its config
file (taken from the page) next to nothing of this repository, its sweep
command (with a tiny budget and generated MNIST files), its report; and the
messages a newcomer meets on the way (an unregistered model, an unknown or
missing experiment for scripts/run_sweep.sh)."""

import json
import os
import re
import shlex
import subprocess
import sys

from tests.conftest import ROOT

TINY = ['--config.num_steps=20', '--config.eval_every=10',
        '--config.log_every=5', '--config.batch_size=16',
        '--config.eval_batch_size=200', '--config.max_eval_examples=200',
        '--config.sweep.lr_log2_steps=(-1,0,1)', '--config.sweep.grid_seeds=1',
        '--config.sweep.best_seeds=2', '--config.sweep.max_extensions=0']


def _section():
  with open(os.path.join(ROOT, 'experiments', 'README.md')) as f:
    text = f.read()
  return text.split('## Your own model', 1)[1].split('\n## ', 1)[0]


def _config_file(folder):
  code = re.search(r'```python\n(.*?)```', _section(), re.S).group(1)
  assert code.startswith('# tiny_mlp.py\n')
  path = os.path.join(folder, 'tiny_mlp.py')
  with open(path, 'w') as f:
    f.write(code)
  return path


def _commands():
  block = re.search(r'```bash\n(.*?)```', _section(), re.S).group(1)
  lines = block.replace('\\\n', ' ').splitlines()
  return [line for line in lines if line and not line.startswith('#')]


def _env():
  return dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')


def test_the_section_from_a_config_file_to_a_finished_sweep(tmp_path,
                                                            mnist_dir):
  _config_file(str(tmp_path))
  sweep, run_sweep, report = _commands()
  assert run_sweep.startswith('bash scripts/run_sweep.sh tiny_mlp.py')
  # The page's sweep command, run where the config file is, with the
  # generated MNIST files and a tiny budget.
  args = shlex.split(sweep, comments=True)
  assert args[:4] == ['python', '-m', 'experiments.sweep', 'tiny_mlp.py']
  args = [a for a in args if not a.startswith('--config.data_dir=')]
  args += [f'--config.data_dir={mnist_dir}'] + TINY
  proc = subprocess.run([sys.executable] + args[1:], cwd=tmp_path,
                        env=_env(), capture_output=True, text=True,
                        timeout=1500)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  workdir = tmp_path / 'workdirs' / 'tiny_mlp_sweep'
  payload = json.loads((workdir / 'sweep.json').read_text())
  assert set(payload['best']) == {'sgd', 'sgd+layer', 'lars', 'layer_lars'}
  best = (workdir / 'best.md').read_text()
  for method in ('sgd+layer', 'layer_lars'):
    assert f'| {method} |' in best
  # layer_lars is judged against optax's per-array lars.
  assert re.search(r'\| layer_lars \| lars \| 1, 1 \|', best), best
  config = json.loads((workdir / 'config.json').read_text())
  assert config['model'] == 'tiny_mlp'
  # The page's report command re-makes the outputs from the runs.
  (workdir / 'best.md').unlink()
  proc = subprocess.run([sys.executable] + shlex.split(report, comments=True)[1:],
                        cwd=tmp_path, env=_env(), capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (workdir / 'best.md').read_text() == best


def test_an_unregistered_model_names_the_registry(tmp_path):
  path = _config_file(str(tmp_path))
  with open(path) as f:
    code = f.read()
  with open(path, 'w') as f:
    f.write(code.replace("models.register('tiny_mlp', TinyMLP)", ''))
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.sweep', 'tiny_mlp.py',
       '--workdir', 'w'], cwd=tmp_path, env=_env(), capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 2
  assert 'experiments.lib.models.register' in proc.stderr, proc.stderr
  assert 'MODELS registry of experiments/lib/models.py' in proc.stderr
  assert not os.path.exists(tmp_path / 'w')


def _run_sweep(*args, cwd=ROOT):
  return subprocess.run(['bash', os.path.join(ROOT, 'scripts',
                                              'run_sweep.sh'), *args],
                        cwd=cwd, capture_output=True, text=True, timeout=600)


def test_run_sweep_refuses_before_making_a_worktree(tmp_path):
  head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT,
                        capture_output=True, text=True).stdout.strip()
  tree = os.path.join(ROOT, '.sweeps', head)
  existed = os.path.exists(tree)
  proc = _run_sweep('no_such_experiment')
  assert proc.returncode == 2
  assert "unknown experiment 'no_such_experiment'" in proc.stderr
  assert 'mnist_lenet' in proc.stderr and 'config file' in proc.stderr
  proc = _run_sweep('missing.py', cwd=tmp_path)
  assert proc.returncode == 2
  assert f'{tmp_path}/missing.py not found' in proc.stderr
  assert os.path.exists(tree) == existed
