"""The experiments framework: solvers, models, data, end-to-end runs."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import data as data_lib
from experiments import models
from experiments import report as report_lib
from experiments import run as run_lib
from experiments import solvers
from experiments import train
from experiments import workdir as workdir_lib
from tests import reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'data')
MNIST_DIR = os.path.join(SHARED_DATA, 'mnist')


def require_shared_data(path):
  if not os.path.exists(path):
    pytest.fail(f'the shared data is missing: expected {path!r} (the '
                "repository's ../shared/data). Tests never skip for this.")
  return path


def mnist_config(**overrides):
  config = run_lib.get_config('mnist_lenet')
  config.update(dict(num_seeds=1, num_steps=4, eval_every=2, log_every=2,
                     eval_batch_size=5000, data_source='local',
                     data_dir=MNIST_DIR, methods='sgd,sgd+layer'))
  config.update(overrides)
  return config


# ---------------------------------------------------------------- solvers --

TOY_SHAPES = {'conv1/kernel': (3, 2), 'conv1/bias': (2,), 'ip1/kernel': (2, 4),
              'ip1/bias': (4,)}
TOY_LAYERS = [['conv1/bias', 'conv1/kernel'], ['ip1/bias', 'ip1/kernel']]


def _nest(flat):
  out = {}
  for k, v in flat.items():
    m, leaf = k.split('/')
    out.setdefault(m, {})[leaf] = v
  return out


def _toy_grads(flat, step):
  """A gradient that depends on the params (so the order of updates matters)."""
  rng = np.random.default_rng(step)
  return {k: 0.3 * flat[k] + rng.standard_normal(flat[k].shape) * (
      0.01 if 'conv' in k else 1.0) for k in sorted(flat)}


@pytest.mark.parametrize('method,kind', [
    ('sgd', 'sgd'), ('sgd+layer', 'sgd'), ('nag', 'nesterov'),
    ('nag+layer', 'nesterov'), ('adagrad', 'adagrad'),
    ('adagrad+layer', 'adagrad')])
def test_solver_equals_caffe_update_order(method, kind):
  config = mnist_config(lr_policy='inv', base_lr=0.05, weight_decay=5e-3)
  config.decay_mult = {'ip1/bias': 0.0, 'ip1/kernel': 3.0}
  rng = np.random.default_rng(0)
  flat = {k: rng.standard_normal(s) for k, s in TOY_SHAPES.items()}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _nest(flat))
  solver = solvers.make_solver(method, config, params)
  state = solver.optimizer.init(params)
  momentum = 0.0 if kind == 'adagrad' else config.momentum
  lr_mult = {k: (2.0 if k.endswith('bias') else 1.0) for k in TOY_SHAPES}
  decay_mult = {k: 1.0 for k in TOY_SHAPES}
  decay_mult.update({'ip1/bias': 0.0, 'ip1/kernel': 3.0})
  ref = reference.CaffeSolver(
      kind, flat,
      lambda it: reference.caffe_rate('inv', 0.05, it, gamma=1e-4, power=0.75),
      momentum, 5e-3, lr_mult, decay_mult,
      layers=TOY_LAYERS if method.endswith('+layer') else None)
  ref_params = dict(flat)
  update = jax.jit(solver.optimizer.update)
  for step in range(25):
    flat_now = {f'{m}/{l}': np.asarray(v, np.float64)
                for m, d in params.items() for l, v in d.items()}
    grads = _toy_grads(flat_now, step)
    updates, state = update(
        jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _nest(grads)),
        state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    ref_params = ref.step(ref_params, _toy_grads(ref_params, step))
  for k in TOY_SHAPES:
    m, leaf = k.split('/')
    np.testing.assert_allclose(params[m][leaf], ref_params[k], rtol=1e-4,
                               atol=1e-6, err_msg=k)


@pytest.mark.parametrize('policy,kwargs', [
    ('fixed', {}), ('inv', dict(gamma=1e-4, power=0.75)),
    ('step', dict(gamma=0.1, stepsize=3)),
    ('multistep', dict(gamma=0.1, stepvalues=(2, 5)))])
def test_lr_policies_match_caffe(policy, kwargs):
  schedule = solvers.caffe_lr(policy, 0.01, **kwargs)
  for it in [0, 1, 2, 3, 5, 6, 1000]:
    np.testing.assert_allclose(
        float(schedule(jnp.asarray(it))),
        reference.caffe_rate(policy, 0.01, it, **kwargs), rtol=1e-6)


def test_bad_solver_config():
  with pytest.raises(ValueError, match='unknown method'):
    solvers.parse_methods('sgd,sdg')
  with pytest.raises(ValueError, match='unknown lr_policy'):
    solvers.caffe_lr('cosine', 0.1)
  with pytest.raises(ValueError, match='increasing stepvalues'):
    solvers.caffe_lr('multistep', 0.1, gamma=0.1, stepvalues=(5, 2))
  params = {'conv1': {'kernel': jnp.ones(2)}}
  config = mnist_config()
  config.decay_mult = {'conv9/kernel': 1.0}
  with pytest.raises(ValueError, match='not parameters of the model'):
    solvers.make_solver('sgd', config, params)


# ----------------------------------------------------------------- models --

def test_lenet_matches_caffe_parameter_count():
  params = models.LeNet().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  assert models.param_count(params) == 431_080
  shapes = jax.tree.map(jnp.shape, params['params'])
  assert shapes['conv1']['kernel'] == (5, 5, 1, 20)
  assert shapes['ip1']['kernel'] == (800, 500)


def test_cifar10_full_matches_caffe_parameter_count():
  params = models.Cifar10Full().init(jax.random.key(0),
                                     jnp.zeros((1, 32, 32, 3)))
  assert models.param_count(params) == 89_578
  # conv3 output 4x4x64 feeds ip1: Caffe's ceil-mode pooling 32->16->8->4.
  assert params['params']['ip1']['kernel'].shape == (1024, 10)


def test_caffe_pool_ceil_mode_and_average_counts():
  x = jnp.arange(25.0).reshape(1, 5, 5, 1)
  out = models.caffe_pool(x, 'max', 3, 2)
  assert out.shape == (1, 2, 2, 1)
  x = jnp.ones((1, 4, 4, 1))
  # ceil((4 - 3) / 2) + 1 = 2: the second window hangs over the edge and
  # averages only its valid cells.
  out = models.caffe_pool(x, 'avg', 3, 2)
  assert out.shape == (1, 2, 2, 1)
  np.testing.assert_allclose(out, 1.0)
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  out = models.caffe_pool(x, 'avg', 3, 2)
  np.testing.assert_allclose(out[0, 1, 1, 0], np.mean([10, 11, 14, 15]))


# ------------------------------------------------------------------- data --

def test_local_mnist_is_the_real_dataset():
  ds = data_lib.load('mnist', 'local', require_shared_data(MNIST_DIR))
  assert ds.train_images.shape == (60000, 28, 28, 1)
  assert ds.test_images.shape == (10000, 28, 28, 1)
  assert np.bincount(ds.test_labels).tolist() == [
      980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_missing_and_corrupt_mnist_files(tmp_path):
  with pytest.raises(data_lib.DataError, match='train-images-idx3-ubyte.gz'):
    data_lib.load('mnist', 'local', str(tmp_path))
  with pytest.raises(data_lib.DataError, match='needs --config.data_dir'):
    data_lib.load('mnist', 'local', None)
  import gzip
  with gzip.open(tmp_path / 'bad.gz', 'wb') as f:
    f.write(bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]) + b'x')
  with pytest.raises(data_lib.DataError, match='truncated or corrupt'):
    data_lib.read_idx(str(tmp_path / 'bad.gz'))
  (tmp_path / 'notgz.gz').write_bytes(b'hello world')
  with pytest.raises(data_lib.DataError, match='not a readable gzip'):
    data_lib.read_idx(str(tmp_path / 'notgz.gz'))


# ------------------------------------------------------------- end to end --

def _check_outputs(workdir, methods, num_seeds, eval_steps):
  for name in ('results.json', 'table.md', 'curves.png', 'layer_rates.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  assert results['experiment'] == 'mnist_lenet'
  assert results['eval_steps'] == eval_steps
  assert isinstance(results['wall_seconds'], float)
  assert isinstance(results['config'], dict)
  assert [(r['method'], r['seed']) for r in results['runs']] == [
      (m, s) for m in methods for s in range(num_seeds)]
  for run in results['runs']:
    assert len(run['test_error']) == len(eval_steps)
    assert len(run['train_loss']) == len(eval_steps)
    assert all(0.0 <= e <= 100.0 for e in run['test_error'])
    assert all(np.isfinite(run['train_loss']))
    assert set(run['layer_factors']) == {'conv1', 'conv2', 'ip1', 'ip2'}
  return results


def test_end_to_end_local_mnist(tmp_path):
  require_shared_data(MNIST_DIR)
  workdir = str(tmp_path / 'w')
  run_lib.main(['mnist_lenet', '--workdir', workdir,
                '--config.data_source=local', f'--config.data_dir={MNIST_DIR}',
                '--config.num_seeds=1', '--config.num_steps=4',
                '--config.eval_every=2', '--config.log_every=2',
                '--config.methods=sgd,adagrad+layer'])
  results = _check_outputs(workdir, ['sgd', 'adagrad+layer'], 1, [2, 4])
  # Four steps of LeNet on real MNIST already beat chance (90% error).
  assert results['runs'][0]['test_error'][-1] < 85.0
  table = open(os.path.join(workdir, 'table.md')).read()
  assert '| 2 |' in table and 'adagrad+layer' in table
  # A finished workdir is never overwritten without --overwrite ...
  with pytest.raises(workdir_lib.WorkdirError, match='--overwrite'):
    run_lib.main(['mnist_lenet', '--workdir', workdir,
                  '--config.data_source=local',
                  f'--config.data_dir={MNIST_DIR}'])
  # ... and with it, the old outputs are moved aside, not deleted.
  run_lib.main(['mnist_lenet', '--workdir', workdir, '--overwrite',
                '--config.data_source=local', f'--config.data_dir={MNIST_DIR}',
                '--config.num_seeds=1', '--config.num_steps=2',
                '--config.eval_every=2', '--config.log_every=2',
                '--config.methods=sgd'])
  backups = [d for d in os.listdir(workdir) if d.startswith('previous-')]
  assert len(backups) == 1
  assert os.path.exists(os.path.join(workdir, backups[0], 'results.json'))


def test_end_to_end_tfds_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  workdir = str(tmp_path / 'w')
  config = mnist_config(data_source='tfds', data_dir='', eval_batch_size=8)
  with tfds.testing.mock_data(num_examples=16):
    train.train_and_evaluate(config, workdir)
  _check_outputs(workdir, ['sgd', 'sgd+layer'], 1, [2, 4])


def test_resume_after_interruption_reuses_finished_runs(tmp_path, monkeypatch):
  require_shared_data(MNIST_DIR)
  workdir = str(tmp_path / 'w')
  config = mnist_config(num_seeds=2, methods='sgd')
  calls = []
  original = train.Runner.run

  def flaky_run(self, seeds, store, progress):
    calls.extend(seeds)
    if seeds == [1] and len(calls) == 2:
      raise KeyboardInterrupt  # interrupted during the second seed
    return original(self, seeds, store, progress)

  monkeypatch.setattr(train.Runner, 'run', flaky_run)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, workdir)
  assert os.listdir(os.path.join(workdir, 'runs')) == ['sgd_seed0.json']
  # Resuming with a different protocol is refused, not mixed.
  with pytest.raises(workdir_lib.WorkdirError, match='changed: num_steps'):
    train.train_and_evaluate(mnist_config(num_seeds=2, methods='sgd',
                                          num_steps=6), workdir)
  train.train_and_evaluate(config, workdir)
  assert calls == [0, 1, 1]  # seed 0 was not rerun


def test_vmapped_seeds_equal_sequential_seeds(tmp_path, monkeypatch):
  """Two seeds as one vmapped program == the same seeds one after another,
  per-seed checkpoints included; a vmapped run resumes bit for bit."""
  require_shared_data(MNIST_DIR)
  common = dict(num_seeds=2, methods='sgd+layer', num_steps=6,
                checkpoint_every=2, max_eval_examples=2000)
  runs = {}
  for mode in ('sequential', 'vmap'):
    workdir = str(tmp_path / mode)
    results = train.train_and_evaluate(
        mnist_config(seed_parallelism=mode, **common), workdir)
    assert results['seeds_vmapped'] == (mode == 'vmap')
    runs[mode] = results['runs']
  for seq, vm in zip(runs['sequential'], runs['vmap']):
    assert (seq['method'], seq['seed']) == (vm['method'], vm['seed'])
    # One misclassified test image is 0.05 points; float reassociation in the
    # batched convolutions may not flip any.
    np.testing.assert_allclose(vm['test_error'], seq['test_error'], atol=0.051)
    np.testing.assert_allclose(vm['train_loss'], seq['train_loss'], rtol=1e-5)
    for name, factors in seq['layer_factors'].items():
      np.testing.assert_allclose(vm['layer_factors'][name], factors,
                                 rtol=1e-5)
  assert runs['vmap'][0]['train_loss'] != runs['vmap'][1]['train_loss']

  # Interrupt the vmapped run after its step-4 checkpoints, then resume.
  config = mnist_config(seed_parallelism='vmap', **common)
  interrupted = str(tmp_path / 'interrupted')
  original_save = workdir_lib.RunCheckpoints.save
  saves = []

  def save_then_stop(self, step, *args):
    original_save(self, step, *args)
    saves.append(step)
    if saves.count(4) == 2:  # both seeds' step-4 checkpoints are written
      raise KeyboardInterrupt('stopped after the step-4 checkpoints')

  monkeypatch.setattr(workdir_lib.RunCheckpoints, 'save', save_then_stop)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, interrupted)
  monkeypatch.setattr(workdir_lib.RunCheckpoints, 'save', original_save)
  resumed = train.train_and_evaluate(config, interrupted)['runs']
  for straight, again in zip(runs['vmap'], resumed):
    for key in ('test_error', 'test_loss', 'train_loss', 'layer_factors'):
      assert straight[key] == again[key], key


def test_seed_groups():
  assert train.seed_groups([0, 1, 2], vmapped=False) == [[0], [1], [2]]
  assert train.seed_groups([0, 1, 2], vmapped=True) == [[0, 1, 2]]
  assert train.seed_groups([0, 1, 2, 3, 4], True, 2) == [[0, 1], [2, 3], [4]]
  # Seeds resuming from different checkpoints cannot run in lockstep.
  resume = {0: 4, 1: None, 2: 4, 3: None}
  assert train.seed_groups([0, 1, 2, 3], True,
                           start_step=resume.get) == [[0, 2], [1, 3]]


def test_config_overrides_are_typed():
  config = run_lib.apply_overrides(
      run_lib.get_config('mnist_lenet'),
      ['--config.num_steps=600', '--config.base_lr=1', '--config.methods=sgd'])
  assert config.num_steps == 600 and config.base_lr == 1.0
  with pytest.raises(SystemExit, match='not a valid int'):
    run_lib.apply_overrides(run_lib.get_config('mnist_lenet'),
                            ['--config.num_steps=ten'])
  with pytest.raises(SystemExit, match='no such key'):
    run_lib.apply_overrides(run_lib.get_config('mnist_lenet'),
                            ['--config.num_stpes=10'])
  with pytest.raises(SystemExit, match='unknown experiment'):
    run_lib.get_config('mnist_lenett')


def test_bad_configs_fail_before_training(tmp_path):
  with pytest.raises(ValueError, match='multiple of config.eval_every'):
    train.train_and_evaluate(mnist_config(num_steps=5), str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='data_source'):
    train.train_and_evaluate(mnist_config(data_source='web'),
                             str(tmp_path / 'b'))
  with pytest.raises(ValueError, match='seed_parallelism'):
    train.train_and_evaluate(mnist_config(seed_parallelism='parallel'),
                             str(tmp_path / 'd'))
  with pytest.raises(ValueError, match='num_seeds must be a positive'):
    train.train_and_evaluate(mnist_config(num_seeds=0), str(tmp_path / 'c'))


def test_tfds_source_fails_clearly_without_network(tmp_path, monkeypatch):
  import importlib_resources  # noqa: F401  TFDS needs it to download.
  import tensorflow_datasets as tfds

  def offline(*args, **kwargs):
    raise ConnectionError('Failed to resolve storage.googleapis.com')

  monkeypatch.setattr(tfds, 'load', offline)
  with pytest.raises(data_lib.DataError, match='data_source=local'):
    data_lib.load('mnist', 'tfds', str(tmp_path))


def test_report_compare_two_workdirs(tmp_path, capsys):
  def results(method, errors, factors=None):
    runs = [{'method': method, 'seed': i, 'test_error': e,
             'layer_factors': {'a': factors or [1.0]}}
            for i, e in enumerate(errors)]
    return {'eval_steps': [10, 20], 'runs': runs}
  a = results('sgd+layer', [[2.0, 1.0], [2.2, 1.2]],
              factors=[1.0, 2.0, 3.0, 4.0, 5.0])
  b = results('sgd', [[3.0, 1.0], [3.2, 1.2]])
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
