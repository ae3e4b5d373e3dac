"""Configs: discovery, typed overrides, validation (experiments/configs)."""

import pytest

from experiments import configs
from experiments.lib import train


def test_every_config_is_valid():
  from experiments.lib.methods import parse_methods
  assert {'mnist_lenet', 'mnist_deep_mlp', 'mnist_transformer',
          'cifar10_full', 'cifar10_full_50k', 'cifar10_full_short',
          'imagenet_alexnet'} <= set(configs.available())
  for name in configs.available():
    config = configs.get_config(name)
    methods = configs.validate(config)
    assert tuple(methods) == tuple(parse_methods(config.methods)), name


def test_config_overrides_are_typed():
  config = configs.apply_overrides(
      configs.get_config('mnist_lenet'),
      ['--config.num_steps=600', '--config.base_lr=1', '--config.methods=sgd',
       '--config.lr_stepvalues=[10,20]', '--config.method_base_lr.adam=0.01'])
  assert config.num_steps == 600 and config.base_lr == 1.0
  assert config.lr_stepvalues == (10, 20)
  assert config.method_base_lr.adam == 0.01
  with pytest.raises(configs.ConfigError, match='not a valid int'):
    configs.apply_overrides(configs.get_config('mnist_lenet'),
                            ['--config.num_steps=ten'])
  with pytest.raises(configs.ConfigError, match='no such key'):
    configs.apply_overrides(configs.get_config('mnist_lenet'),
                            ['--config.num_stpes=10'])
  with pytest.raises(configs.ConfigError, match='unknown experiment'):
    configs.get_config('mnist_lenett')


@pytest.mark.parametrize('overrides,message', [
    (dict(num_steps=5), 'multiple of config.eval_every'),
    (dict(data_source='web'), 'data_source'),
    (dict(seed_parallelism='parallel'), 'seed_parallelism'),
    (dict(num_seeds=0), 'num_seeds must be a positive'),
    (dict(param_sharding='zero3'), 'param_sharding'),
    (dict(checkpoint_every=3), 'checkpoint_every'),
    (dict(methods='sgd,sdg'), 'unknown method'),
    (dict(lr_policy='cosine'), 'lr_policy'),
    (dict(warmup_fraction=0.0), 'warmup_fraction'),
    (dict(layer_max_factor=0.5), 'layer_max_factor must be >= 1'),
    (dict(on_divergence='ignore'), 'on_divergence'),
])
def test_bad_configs_fail_before_training(mnist_config, tmp_path, overrides,
                                          message):
  with pytest.raises(configs.ConfigError, match=message):
    train.train_and_evaluate(mnist_config(**overrides), str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


def test_help_documents_overrides_and_lists_the_experiments_keys(run_module):
  proc = run_module('experiments.run', 'mnist_deep_mlp', '--help')
  assert proc.returncode == 0, proc.stderr
  assert '--config.KEY=VALUE' in proc.stdout
  assert '--config.model=mlp20_tanh' in proc.stdout
  assert '--config.sweep.grid_seeds=3' in proc.stdout
  assert '--config.lr_stepvalues=()' in proc.stdout
  proc = run_module('experiments.sweep', '--help')
  assert proc.returncode == 0 and 'Keys of mnist_lenet' in proc.stdout
