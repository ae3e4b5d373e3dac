"""Training (experiments/lib/train.py): the step functions, end-to-end runs on
every dataset, vmapped seeds, data parallelism and divergence."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import layerlr_optax
from experiments.lib import data as data_lib
from experiments.lib import models
from experiments.lib import parallel
from experiments.lib import records
from experiments import run as run_lib
from experiments.lib import solvers
from experiments.analysis import results as results_lib
from experiments.lib import train
from experiments.lib.methods import Method
from tests.package import reference
from tests.conftest import ROOT, assert_plot


def test_train_step_is_a_pure_function_of_state_and_batch(mnist_config):
  """The step computes the loss, the gradient and the Caffe update of SGD
  with the layer factor; the factors it reports are the optimizer's."""
  config = mnist_config(weight_decay=0.0, momentum=0.0, base_lr=0.1,
                        lr_policy='fixed')
  model = models.LeNet()
  images = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1),
                                             np.uint8)
  labels = np.arange(8, dtype=np.int32)
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
  solver = solvers.make_solver(Method('sgd', 'layer'), config, params)
  names = tuple(layerlr_optax.layer_partition(params))
  preprocess = models.make_preprocess('scale', None)
  step = jax.jit(train.make_train_step(model, solver.optimizer, preprocess,
                                       names))
  state = train.TrainState(params, solver.optimizer.init(params))
  new_state, metrics = step(state, images, labels, jnp.uint32(0),
                            jnp.uint32(0))

  def loss_fn(p):
    return train.cross_entropy(
        model.apply({'params': p}, preprocess(images)), labels)

  loss, grads = jax.value_and_grad(loss_fn)(params)
  np.testing.assert_allclose(metrics['loss'], loss, rtol=1e-6)
  for i, name in enumerate(names):
    layer = grads[name]
    norm = np.sqrt(sum(np.sum(np.asarray(g, np.float64)**2)
                       for g in jax.tree.leaves(layer)))
    factor = reference.factor(norm)
    np.testing.assert_allclose(metrics['factors'][i], factor, rtol=1e-5)
    for leaf in ('kernel', 'bias'):
      lr_mult = 2.0 if leaf == 'bias' else 1.0
      expected = (np.asarray(params[name][leaf], np.float64)
                  - 0.1 * lr_mult * factor * np.asarray(layer[leaf]))
      np.testing.assert_allclose(new_state.params[name][leaf], expected,
                                 rtol=1e-4, atol=1e-7)
  # The same inputs give the same outputs: no hidden state.
  again, metrics_again = step(state, images, labels, jnp.uint32(0),
                              jnp.uint32(0))
  assert float(metrics_again['loss']) == float(metrics['loss'])
  chex_equal = jax.tree.map(lambda a, b: bool(jnp.all(a == b)),
                            again.params, new_state.params)
  assert all(jax.tree.leaves(chex_equal))


def test_eval_step_counts(mnist_config):
  model = models.LeNet()
  params = model.init(jax.random.key(1), jnp.zeros((1, 28, 28, 1)))['params']
  images = np.zeros((5, 28, 28, 1), np.uint8)
  eval_step = jax.jit(train.make_eval_step(
      model, models.make_preprocess('scale', None)))
  logits = model.apply({'params': params}, jnp.zeros((5, 28, 28, 1)))
  predicted = int(jnp.argmax(logits[0]))
  labels = np.array([predicted] * 3 + [(predicted + 1) % 10] * 2, np.int32)
  correct, correct5, loss = eval_step(params, images, labels,
                                      np.ones(5, bool))
  # Every row has the same logits: the second label is in the top 5 exactly
  # when at most 4 classes score higher (independent of the model code).
  other = (predicted + 1) % 10
  other_in_top5 = int(np.sum(np.asarray(logits[0]) > logits[0][other]) < 5)
  assert int(correct) == 3
  assert int(correct5) == 3 + 2 * other_in_top5
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                                labels)
  np.testing.assert_allclose(loss, per_example.sum(), rtol=1e-5)
  # Padding rows (real=False) count for nothing.
  real = np.array([True, False, True, True, False])
  correct, correct5, loss = eval_step(params, images, labels, real)
  assert int(correct) == 2 and int(correct5) == 2 + other_in_top5
  np.testing.assert_allclose(loss, per_example[real].sum(), rtol=1e-5)


def check_outputs(workdir, methods, num_seeds, eval_steps,
                  layers=('conv1', 'conv2', 'ip1', 'ip2')):
  for name in ('results.json', 'table.md', 'curves.png', 'layer_rates.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  for name in ('curves.png', 'layer_rates.png'):
    assert_plot(os.path.join(workdir, name))
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  assert results['eval_steps'] == eval_steps
  assert isinstance(results['wall_seconds'], float)
  assert isinstance(results['config'], dict)
  assert results['commit'] is None or len(results['commit']) >= 40
  assert [(r['method'], r['seed']) for r in results['runs']] == [
      (m, s) for m in methods for s in range(num_seeds)]
  for run in results['runs']:
    assert len(run['test_error']) == len(eval_steps)
    assert len(run['train_loss']) == len(eval_steps)
    assert all(0.0 <= e <= 100.0 for e in run['test_error'])
    assert all(np.isfinite(run['train_loss']))
    assert run['diverged_at'] is None and run['base_lr'] > 0
    if not run['method'].endswith('+global'):
      assert set(run['layer_factors']) == set(layers)
  return results


def test_end_to_end_local_mnist_from_the_command_line(mnist_dir, tmp_path):
  workdir = str(tmp_path / 'w')
  run_lib.main(['mnist_lenet', '--workdir', workdir,
                '--config.data_source=local', f'--config.data_dir={mnist_dir}',
                '--config.num_seeds=1', '--config.num_steps=4',
                '--config.eval_every=2', '--config.log_every=2',
                '--config.methods=sgd,adagrad+layer,sgd+global,nag+warmup'])
  results = check_outputs(workdir, ['sgd', 'adagrad+layer', 'sgd+global',
                                    'nag+warmup'], 1, [2, 4])
  assert results['experiment'] == 'mnist_lenet'
  # Four steps of LeNet on the generated 10-class data beat chance (90%).
  assert results['runs'][0]['test_error'][-1] < 85.0
  assert set(results['runs'][2]['layer_factors']) == {'all'}
  # Warm-up over 20% of 4 steps: the rate at step 1 is half the base rate.
  assert results['runs'][3]['learning_rate'][0] < 0.01
  table = open(os.path.join(workdir, 'table.md')).read()
  assert '| 2 |' in table and 'adagrad+layer' in table
  assert '± n/a' in table  # one seed: no spread
  # Not the paper's data: its numbers are not shown beside ours.
  assert 'Cells: ours, then (paper)' not in table
  assert results['data']['paper_data'] is False


def test_parallel_workers_train_what_one_process_trains(mnist_dir, tmp_path,
                                                       monkeypatch):
  """run --parallel 2: one method per worker in one workdir, the same runs
  (bit for bit) and outputs as one process; the workers' logs are kept."""
  monkeypatch.setenv('PYTHONPATH', ROOT)
  args = ['mnist_lenet', '--config.data_source=local',
          f'--config.data_dir={mnist_dir}', '--config.num_seeds=2',
          '--config.num_steps=4', '--config.eval_every=2',
          '--config.log_every=2', '--config.methods=sgd,adagrad+layer']
  one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
  assert run_lib.main(args + ['--workdir', one]) == 0
  assert run_lib.main(args + ['--workdir', two, '--parallel', '2']) == 0
  assert sorted(os.listdir(os.path.join(two, 'workers'))) == [
      'worker0.log', 'worker1.log']
  results = check_outputs(two, ['sgd', 'adagrad+layer'], 2, [2, 4])
  with open(os.path.join(one, 'results.json')) as f:
    reference = json.load(f)
  assert records.without_timing(results['runs']) == records.without_timing(
      reference['runs'])
  assert results['session_wall_seconds'] > 0


@pytest.mark.parametrize('extra,message', [
    (['--only', 'sgd,nag'], 'nag not in config.methods'),
    (['--parallel', '0'], '--parallel must be >= 1'),
    (['--parallel', '2', '--config.distributed=True'], 'cannot be combined'),
])
def test_bad_worker_arguments(mnist_dir, tmp_path, capsys, extra, message):
  args = ['mnist_lenet', '--workdir', str(tmp_path / 'w'),
          '--config.data_source=local', f'--config.data_dir={mnist_dir}',
          '--config.methods=sgd,sgd+layer'] + extra
  assert run_lib.main(args) == 2
  assert message in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'w' / 'runs')


def test_the_real_mnist_shows_the_papers_numbers(real_mnist_dir, tmp_path):
  workdir = str(tmp_path / 'w')
  assert run_lib.main(['mnist_lenet', '--workdir', workdir,
                       '--config.data_source=local',
                       f'--config.data_dir={real_mnist_dir}',
                       '--config.num_seeds=1', '--config.num_steps=2',
                       '--config.eval_every=2', '--config.log_every=2',
                       '--config.max_eval_examples=500',
                       '--config.methods=sgd']) == 0
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f)['data']['paper_data'] is True
  assert 'Cells: ours, then (paper)' in open(
      os.path.join(workdir, 'table.md')).read()


@pytest.mark.parametrize('experiment', ['mnist_lenet', 'mnist_deep_mlp'])
def test_any_mnist_format_folder_trains_without_the_papers_numbers(
    experiment, other_idx_dir, tmp_path):
  """Workloads 1 and 2 on an MNIST-format dataset that is not MNIST (12
  classes, 16x16): they train, and nothing compares it with the paper."""
  from experiments import configs
  config = configs.get_config(experiment)
  config.update(dict(data_source='local', data_dir=other_idx_dir,
                     num_seeds=1, num_steps=4, eval_every=2, log_every=2,
                     batch_size=32, eval_batch_size=32,
                     methods='sgd,sgd+layer'))
  workdir = str(tmp_path / 'w')
  results = train.train_and_evaluate(config, workdir)
  results_lib.write_all(results, workdir)
  assert results.data['paper_data'] is False
  assert [r.method for r in results.runs] == ['sgd', 'sgd+layer']
  for run in results.runs:
    assert len(run.test_error) == 2 and np.isfinite(run.train_loss).all()
  table = open(os.path.join(workdir, 'table.md')).read()
  assert '(paper)' not in table
  assert ("The paper's numbers are not shown: this run's data is not the "
          "paper's" if experiment == 'mnist_lenet' else
          'The paper reports no numbers for this experiment') in table


def check_semantics(results, config, eval_examples: int):
  """What every end-to-end run must satisfy, from the config alone: the
  recorded rate is Caffe's rate of the last step before each evaluation
  (reference.caffe_rate), error rates are whole examples of the evaluation
  set, top-5 error never exceeds top-1, and every layer's factor is >= 1
  (1 without the layer rate applied is not recorded; eq. 9 is >= 1)."""
  steps = list(range(config.eval_every, config.num_steps + 1,
                     config.eval_every))
  assert results.eval_steps == steps
  for run in results.runs:
    want = [reference.caffe_rate(
        config.lr_policy, run.base_lr, s - 1, gamma=config.lr_gamma,
        power=config.lr_power, stepsize=config.lr_stepsize,
        stepvalues=tuple(config.lr_stepvalues)) for s in steps]
    np.testing.assert_allclose(run.learning_rate, want, rtol=1e-6)
    for error, top5 in zip(run.test_error, run.test_top5_error):
      examples = error / 100 * eval_examples
      assert abs(examples - round(examples)) < 1e-6, (error, eval_examples)
      assert top5 <= error + 1e-9
    assert np.isfinite(run.train_loss).all()
    for layer, factors in run.layer_factors.items():
      assert all(f >= 1.0 for f in factors), (run.method, layer)


def test_end_to_end_tfds_mock_data(mnist_config, tmp_path):
  import tensorflow_datasets as tfds
  workdir = str(tmp_path / 'w')
  config = mnist_config(data_source='tfds', data_dir='', eval_batch_size=8)
  with tfds.testing.mock_data(num_examples=16):
    results = train.train_and_evaluate(config, workdir)
  results_lib.write_all(results, workdir)
  check_outputs(workdir, ['sgd', 'sgd+layer'], 1, [2, 4])
  check_semantics(results, config, eval_examples=16)


def test_cifar10_local_zip_end_to_end(cifar_dir, cifar_cache, tmp_path):
  from experiments import configs
  config = configs.get_config('cifar10_full_short')
  config.update(dict(data_source='local', data_dir=cifar_dir, num_seeds=1,
                     num_steps=4, eval_every=2, log_every=2, batch_size=20,
                     checkpoint_every=2, max_eval_examples=200,
                     eval_batch_size=100))
  results = train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert [r.method for r in results.runs] == ['sgd', 'sgd+layer']
  assert set(results.runs[0].layer_factors) == {'conv1', 'conv2', 'conv3',
                                                'ip1'}
  # The generated zip holds 40 test images (4 per class), all evaluated.
  check_semantics(results, config, eval_examples=40)


def test_cifar10_tfds_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  from experiments import configs
  config = configs.get_config('cifar10_full_short')
  config.update(dict(num_seeds=1, num_steps=2, eval_every=2, log_every=2,
                     batch_size=8, eval_batch_size=8, checkpoint_every=0))
  with tfds.testing.mock_data(num_examples=16):
    results = train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert [r.method for r in results.runs] == ['sgd', 'sgd+layer']
  check_semantics(results, config, eval_examples=16)


def test_imagenet_tfds_mock_data_end_to_end(tmp_path):
  import tensorflow_datasets as tfds
  from experiments import configs
  config = configs.get_config('imagenet_alexnet')
  config.update(dict(num_steps=2, eval_every=2, log_every=1, batch_size=4,
                     eval_batch_size=4, max_eval_examples=8,
                     checkpoint_every=0, methods='sgd+layer'))
  with tfds.testing.mock_data(num_examples=12):
    results = train.train_and_evaluate(config, str(tmp_path / 'w'))
  run = results.runs[0]
  assert len(run.test_top5_error) == 1
  assert set(run.layer_factors) == {'conv1', 'conv2', 'conv3', 'conv4',
                                    'conv5', 'fc6', 'fc7', 'fc8'}
  check_semantics(results, config, eval_examples=8)


def test_vmapped_seeds_equal_sequential_seeds(mnist_config, tmp_path,
                                              monkeypatch):
  """Two seeds as one vmapped program == the same seeds one after another,
  per-seed checkpoints included; a vmapped run resumes bit for bit."""
  from experiments.lib import workdir as workdir_lib
  common = dict(num_seeds=2, methods='sgd+layer', num_steps=6,
                checkpoint_every=2, max_eval_examples=2000)
  runs = {}
  for mode in ('sequential', 'vmap'):
    results = train.train_and_evaluate(
        mnist_config(seed_parallelism=mode, **common), str(tmp_path / mode))
    assert results.seeds_vmapped == (mode == 'vmap')
    runs[mode] = results.runs
  for seq, vm in zip(runs['sequential'], runs['vmap']):
    assert (seq.method, seq.seed) == (vm.method, vm.seed)
    # One misclassified test image is 0.05 points; float reassociation in the
    # batched convolutions may not flip any.
    np.testing.assert_allclose(vm.test_error, seq.test_error, atol=0.051)
    np.testing.assert_allclose(vm.train_loss, seq.train_loss, rtol=1e-5)
    for name, factors in seq.layer_factors.items():
      np.testing.assert_allclose(vm.layer_factors[name], factors, rtol=1e-5)
  assert runs['vmap'][0].train_loss != runs['vmap'][1].train_loss

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
  resumed = train.train_and_evaluate(config, interrupted).runs
  for straight, again in zip(runs['vmap'], resumed):
    for key in ('test_error', 'test_loss', 'train_loss', 'layer_factors'):
      assert getattr(straight, key) == getattr(again, key), key


def test_seed_groups():
  assert parallel.seed_groups([0, 1, 2], vmapped=False) == [[0], [1], [2]]
  assert parallel.seed_groups([0, 1, 2], vmapped=True) == [[0, 1, 2]]
  assert parallel.seed_groups([0, 1, 2, 3, 4], True, 2) == [[0, 1], [2, 3],
                                                           [4]]
  # Seeds resuming from different checkpoints cannot run in lockstep.
  resume = {0: 4, 1: None, 2: 4, 3: None}
  assert parallel.seed_groups([0, 1, 2, 3], True,
                              start_step=resume.get) == [[0, 2], [1, 3]]


@pytest.mark.parametrize('mode', ['sequential', 'vmap'])
def test_divergence_is_recorded_or_raised(mnist_config, tmp_path, mode):
  config = mnist_config(base_lr=1e4, num_steps=6, num_seeds=2,
                        seed_parallelism=mode, methods='sgd',
                        max_eval_examples=500)
  with pytest.raises(FloatingPointError, match='on_divergence=record'):
    train.train_and_evaluate(config, str(tmp_path / 'raise'))
  config.on_divergence = 'record'
  results = train.train_and_evaluate(config, str(tmp_path / 'record'))
  results_lib.write_all(results, str(tmp_path / 'record'))
  for run in results.runs:
    assert run.diverged_at is not None and run.diverged_at < 6
    assert len(run.test_error) == 3 and None in run.test_error
    assert len(run.learning_rate) == 3
  table = open(os.path.join(tmp_path, 'record', 'table.md')).read()
  assert 'nan' in table


def test_data_parallel_8_devices_equals_1_device(mnist_dir):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                        ' --xla_force_host_platform_device_count=8').strip())
  env['PYTHONPATH'] = os.pathsep.join(
      [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p])
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'tests', 'experiments', 'data_parallel_check.py'),
       mnist_dir], env=env, cwd=ROOT, capture_output=True, text=True,
      timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
  assert 'DATA PARALLEL OK' in proc.stdout


def test_pipeline_shapes_match_the_model(mnist_config):
  pipeline = data_lib.make_pipeline(mnist_config())
  trainer = train.Trainer(mnist_config(), pipeline, Method('sgd', 'layer'),
                          parallel.make_mesh())
  state = trainer.init(0)
  assert trainer.layer_names == ('conv1', 'conv2', 'ip1', 'ip2')
  assert set(layerlr_optax.recorded_factors(state.opt_state)) == set(
      trainer.layer_names)
