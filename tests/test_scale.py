"""CIFAR-10 and ImageNet paths, data parallelism, checkpoints, TensorBoard."""

import glob
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import data as data_lib
from experiments import input_pipeline
from experiments import models
from experiments import run as run_lib
from experiments import train
from experiments import workdir as workdir_lib
from tests.test_experiments import MNIST_DIR, SHARED_DATA, mnist_config
from tests.test_experiments import require_shared_data

CIFAR_DIR = os.path.join(SHARED_DATA, 'cifar10-jpeg')


def test_data_parallel_8_devices_equals_1_device():
  require_shared_data(MNIST_DIR)
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                        ' --xla_force_host_platform_device_count=8').strip())
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env['PYTHONPATH'] = os.pathsep.join(
      [root] + [p for p in [os.environ.get('PYTHONPATH')] if p])
  proc = subprocess.run(
      [sys.executable, os.path.join(root, 'tests', 'data_parallel_check.py'),
       MNIST_DIR], env=env, cwd=root, capture_output=True, text=True,
      timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
  assert 'DATA PARALLEL OK' in proc.stdout


def _final_params(workdir, method, seed, like):
  checkpoints = workdir_lib.RunCheckpoints(
      os.path.join(workdir, 'checkpoints', f'{method}_seed{seed}'))
  step, params, _, record = checkpoints.restore(*like)
  checkpoints.close()
  return step, params, record


def test_checkpoint_resume_is_bit_exact(tmp_path, monkeypatch):
  require_shared_data(MNIST_DIR)
  config = mnist_config(num_steps=6, eval_every=2, log_every=2,
                        checkpoint_every=2, methods='nag+layer',
                        eval_batch_size=5000, max_eval_examples=2000)
  straight = str(tmp_path / 'straight')
  train.train_and_evaluate(config, straight)

  interrupted = str(tmp_path / 'interrupted')
  original_save = workdir_lib.RunCheckpoints.save

  def save_then_stop(self, step, *args):
    original_save(self, step, *args)
    if step == 4:
      raise KeyboardInterrupt('stopped after the step-4 checkpoint')

  monkeypatch.setattr(workdir_lib.RunCheckpoints, 'save', save_then_stop)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, interrupted)
  monkeypatch.setattr(workdir_lib.RunCheckpoints, 'save', original_save)
  assert not os.path.exists(os.path.join(interrupted, 'runs',
                                         'nag+layer_seed0.json'))
  train.train_and_evaluate(config, interrupted)

  sources = train.Sources(config)
  runner = train.Runner(config, sources, 'nag+layer', train.make_mesh())
  like = runner.init(0)
  step_a, params_a, record_a = _final_params(straight, 'nag+layer', 0, like)
  step_b, params_b, record_b = _final_params(interrupted, 'nag+layer', 0, like)
  assert step_a == step_b == 6
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  run_a = json.load(open(os.path.join(straight, 'runs',
                                      'nag+layer_seed0.json')))
  run_b = json.load(open(os.path.join(interrupted, 'runs',
                                      'nag+layer_seed0.json')))
  for key in ('test_error', 'test_loss', 'train_loss', 'layer_factors'):
    assert run_a[key] == run_b[key], key
  # TensorBoard event files were written for the run.
  assert glob.glob(os.path.join(straight, 'tensorboard', 'nag+layer_seed0',
                                'events.out.tfevents.*'))


def test_cifar10_local_zip_end_to_end(tmp_path, monkeypatch):
  require_shared_data(CIFAR_DIR)
  monkeypatch.setenv('LAYERLR_CACHE', str(tmp_path / 'cache'))
  config = run_lib.get_config('cifar10_full_short')
  config.update(dict(data_source='local', data_dir=CIFAR_DIR, num_seeds=1,
                     num_steps=4, eval_every=2, log_every=2, batch_size=20,
                     checkpoint_every=2, max_eval_examples=200,
                     eval_batch_size=100))
  results = train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert [r['method'] for r in results['runs']] == ['sgd', 'sgd+layer']
  assert set(results['runs'][0]['layer_factors']) == {'conv1', 'conv2',
                                                      'conv3', 'ip1'}
  # Decoded once, then read from the cache.
  assert len(os.listdir(tmp_path / 'cache')) == 1
  ds = data_lib.load('cifar10', 'local', CIFAR_DIR)
  assert ds.train_images.shape == (50000, 32, 32, 3)
  assert np.bincount(ds.test_labels).tolist() == [1000] * 10


def test_cifar10_missing_zip(tmp_path):
  with pytest.raises(data_lib.DataError, match='cifar10-jpeg.zip'):
    data_lib.load('cifar10', 'local', str(tmp_path))


def test_cifar10_tfds_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  config = run_lib.get_config('cifar10_full_short')
  config.update(dict(num_seeds=1, num_steps=2, eval_every=2, log_every=2,
                     batch_size=8, eval_batch_size=8, checkpoint_every=0))
  with tfds.testing.mock_data(num_examples=16):
    results = train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert len(results['runs']) == 2


def test_alexnet_matches_caffe_parameter_count():
  params = jax.eval_shape(
      lambda: models.AlexNet().init(jax.random.key(0),
                                    np.zeros((1, 227, 227, 3), np.float32)))
  assert models.param_count(params) == 60_965_224
  assert params['params']['conv2']['kernel'].shape == (5, 5, 48, 256)
  assert params['params']['fc6']['kernel'].shape == (9216, 4096)


def test_imagenet_tfds_mock_data_end_to_end(tmp_path):
  import tensorflow_datasets as tfds
  config = run_lib.get_config('imagenet_alexnet')
  config.update(dict(num_steps=2, eval_every=2, log_every=1, batch_size=4,
                     eval_batch_size=4, max_eval_examples=8,
                     checkpoint_every=0, methods='sgd+layer'))
  with tfds.testing.mock_data(num_examples=12):
    results = train.train_and_evaluate(config, str(tmp_path / 'w'))
  run = results['runs'][0]
  assert len(run['test_top5_error']) == 1
  assert set(run['layer_factors']) == {'conv1', 'conv2', 'conv3', 'conv4',
                                       'conv5', 'fc6', 'fc7', 'fc8'}


def test_imagenet_pipeline_is_reproducible_and_resumable():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12):
    source = input_pipeline.ImageNetTrain(None, batch_size=3,
                                          shuffle_buffer=12)
    full = list(source.batches(seed=1, start=0, stop=4))
    again = list(source.batches(seed=1, start=0, stop=4))
    resumed = list(source.batches(seed=1, start=2, stop=4))
  assert full[0][0].shape == (3, 227, 227, 3) and full[0][0].dtype == np.uint8
  for (a, la), (b, lb) in zip(full, again):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
  for (a, la), (b, lb) in zip(full[2:], resumed):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)


def test_synthetic_source_and_bad_combinations(tmp_path):
  source = input_pipeline.SyntheticTrain((227, 227, 3), 1000, 2)
  images, labels = next(source.batches(0, 0, 1))
  assert images.shape == (2, 227, 227, 3) and labels.shape == (2,)
  config = mnist_config(data_source='synthetic')
  with pytest.raises(ValueError, match='synthetic is for imagenet2012'):
    train.train_and_evaluate(config, str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='param_sharding'):
    train.train_and_evaluate(mnist_config(param_sharding='zero3'),
                             str(tmp_path / 'b'))
  with pytest.raises(ValueError, match='checkpoint_every'):
    train.train_and_evaluate(mnist_config(checkpoint_every=3),
                             str(tmp_path / 'c'))
