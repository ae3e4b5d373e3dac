"""Experiment configs: one file per experiment, plus finding, overriding and
validating them (the one place that knows what a valid config is)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pkgutil
import re
import sys

import ml_collections

from experiments.lib.methods import Method
from experiments.lib.methods import parse_methods
from experiments.lib import frozen
from experiments.lib import models
from experiments.lib import solvers
from experiments.lib.solvers import LR_POLICIES

DATA_SOURCES = ('tfds', 'local', 'synthetic')
PARAM_SHARDINGS = ('replicated', 'fsdp')
SEED_PARALLELISM = ('auto', 'vmap', 'sequential')
ON_DIVERGENCE = ('raise', 'record')


class ConfigError(ValueError):
  """A config or command-line override that cannot be run, and why."""


def available() -> list[str]:
  """The experiment names: the config modules of this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith('_'))


def is_config_file(experiment: str) -> bool:
  """Whether `experiment` names a config file of the user's own (a path
  ending in .py) rather than one of this package's experiments."""
  return experiment.endswith('.py')


def get_config(experiment: str) -> ml_collections.ConfigDict:
  """The config of a named experiment (experiments/configs/NAME.py), or of
  a config file of your own (``path/to/my_experiment.py`` defining
  ``get_config()``, as Flax examples' ``--config`` files do). A file may
  register its own models (`experiments.lib.models.register`) when it is
  imported."""
  if is_config_file(experiment):
    return _config_from_file(experiment)
  if experiment not in available():
    raise ConfigError(
        f'unknown experiment {experiment!r}; available: '
        f'{", ".join(available())}. An experiment of your own is a config '
        'file: pass its path (my_experiment.py), see experiments/README.md, '
        '"Your own model".')
  module = importlib.import_module(f'experiments.configs.{experiment}')
  return module.get_config()


def _config_from_file(path: str) -> ml_collections.ConfigDict:
  if not os.path.isfile(path):
    raise ConfigError(f'config file {path!r} not found (from {os.getcwd()}).')
  name = '_layerlr_user_config_' + re.sub(r'\W', '_', os.path.abspath(path))
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  if not callable(getattr(module, 'get_config', None)):
    raise ConfigError(f'config file {path!r} defines no get_config(); it '
                      'must return an ml_collections.ConfigDict (start from '
                      'experiments.configs._common.base_config()).')
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'get_config() of {path!r} returned a '
                      f'{type(config).__name__}, not a ConfigDict.')
  return config


def _parse_value(current, text: str, key: str):
  """Parses `text` as the type of the config's current value."""
  if isinstance(current, bool):
    if text.lower() in ('true', '1', 'yes'):
      return True
    if text.lower() in ('false', '0', 'no'):
      return False
    raise ConfigError(f'--config.{key} expects true/false, got {text!r}.')
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise ConfigError(f'--config.{key}={text!r} is not a valid '
                      f'{type(current).__name__}.') from None
  if isinstance(current, float) and isinstance(value, int):
    value = float(value)
  if isinstance(current, tuple) and isinstance(value, (list, int, float)):
    value = tuple(value) if isinstance(value, list) else (value,)
  if isinstance(current, ml_collections.ConfigDict) and isinstance(value,
                                                                   dict):
    return ml_collections.ConfigDict(value)
  if type(value) is not type(current):
    raise ConfigError(f'--config.{key} expects a {type(current).__name__}, '
                      f'got {text!r}.')
  return value


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: list[str]) -> ml_collections.ConfigDict:
  """Applies ``--config.KEY=VALUE`` arguments, typed like the current value."""
  for item in overrides:
    if not item.startswith('--config.') or '=' not in item:
      raise ConfigError(f'unrecognised argument {item!r}; overrides look like '
                        '--config.KEY=VALUE.')
    key, text = item[len('--config.'):].split('=', 1)
    *path, leaf = key.split('.')
    parent = config
    for part in path:
      if (not isinstance(parent, ml_collections.ConfigDict)
          or part not in parent):
        raise ConfigError(f'--config.{key}: no such key {part!r}.')
      parent = parent[part]
    if leaf not in parent:
      raise ConfigError(f'--config.{key}: no such key; keys: '
                        f'{", ".join(sorted(parent.keys()))}.')
    parent[leaf] = _parse_value(parent[leaf], text, key)
  return config


def validate(config: ml_collections.ConfigDict) -> tuple[Method, ...]:
  """Checks what a user can get wrong in a config; returns its methods."""
  # Imported here so that reading configs needs neither flax nor TFDS.
  try:
    methods = parse_methods(config.methods)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  positive = ('num_seeds', 'num_steps', 'eval_every', 'log_every',
              'batch_size', 'eval_batch_size')
  for key in positive:
    if int(config[key]) <= 0:
      raise ConfigError(f'config.{key} must be a positive integer, got '
                        f'{config[key]}.')
  if config.num_steps % config.eval_every:
    raise ConfigError(f'config.num_steps={config.num_steps} must be a '
                      f'multiple of config.eval_every={config.eval_every}.')
  if config.eval_every % config.log_every:
    raise ConfigError(f'config.eval_every={config.eval_every} must be a '
                      f'multiple of config.log_every={config.log_every}.')
  every = config.get('checkpoint_every', 0)
  if every < 0 or (every and every % config.log_every):
    raise ConfigError(f'config.checkpoint_every={every} must be 0 (off) or a '
                      f'multiple of config.log_every={config.log_every}.')
  if config.model not in models.MODELS:
    raise ConfigError(
        f'config.model={config.model!r} is not a registered model; '
        f'registered: {", ".join(models.MODELS)} (the MODELS registry of '
        'experiments/lib/models.py). Register your own in your config file '
        'with experiments.lib.models.register(name, factory), see '
        'experiments/README.md, "Your own model".')
  choices = {'data_source': DATA_SOURCES,
             'seed_parallelism': SEED_PARALLELISM,
             'param_sharding': PARAM_SHARDINGS, 'lr_policy': LR_POLICIES,
             'on_divergence': ON_DIVERGENCE}
  for key, allowed in choices.items():
    if config[key] not in allowed:
      raise ConfigError(f'config.{key}={config[key]!r}; expected one of '
                        f'{", ".join(allowed)}.')
  if int(config.max_vmapped_seeds) < 0:
    raise ConfigError('config.max_vmapped_seeds must be >= 0 (0: all seeds '
                      f'of a method in one program), got '
                      f'{config.max_vmapped_seeds}.')
  for key in ('base_lr', 'weight_decay', 'momentum'):
    if config[key] < 0:
      raise ConfigError(f'config.{key} must be >= 0, got {config[key]}.')
  for name, lr in config.method_base_lr.items():
    if lr < 0:
      raise ConfigError(f'config.method_base_lr.{name} must be >= 0, got '
                        f'{lr}.')
  if not config.layer_max_factor >= 1.0:
    raise ConfigError('config.layer_max_factor must be >= 1 (the cap on the '
                      'eq. 9 factor of the +layercap variant; the factor is '
                      f'never below 1), got {config.layer_max_factor}.')
  if not 0.0 < config.warmup_fraction <= 1.0:
    raise ConfigError('config.warmup_fraction must be in (0, 1] (the share '
                      'of training the +warmup variant warms up over), got '
                      f'{config.warmup_fraction}.')
  for method in methods:
    if method.variant == 'frozen':
      try:
        frozen.factors_for(config.frozen_factors, method.base)
      except ValueError as e:
        raise ConfigError(f'{method.name}: {e}') from None
  try:
    solvers.caffe_lr(config.lr_policy, config.base_lr, gamma=config.lr_gamma,
                     power=config.lr_power, stepsize=config.lr_stepsize,
                     stepvalues=tuple(config.lr_stepvalues))
  except ValueError as e:
    raise ConfigError(f'config.lr_*: {e}') from None
  return methods
