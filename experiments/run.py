"""Entry point: ``python -m experiments.run EXPERIMENT --workdir DIR
[--config.KEY=VALUE ...] [--overwrite]``.

EXPERIMENT names a config file in experiments/configs/ (e.g. mnist_lenet).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import pkgutil
import sys

import ml_collections

from experiments import configs as configs_pkg


def available_experiments() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(configs_pkg.__path__)
                if not m.name.startswith('_'))


def get_config(experiment: str) -> ml_collections.ConfigDict:
  if experiment not in available_experiments():
    raise SystemExit(f'unknown experiment {experiment!r}; available: '
                     f'{", ".join(available_experiments())}.')
  module = importlib.import_module(f'experiments.configs.{experiment}')
  return module.get_config()


def _parse_value(current, text: str, key: str):
  """Parses `text` as the type of the config's current value."""
  if isinstance(current, bool):
    if text.lower() in ('true', '1', 'yes'):
      return True
    if text.lower() in ('false', '0', 'no'):
      return False
    raise SystemExit(f'--config.{key} expects true/false, got {text!r}.')
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise SystemExit(f'--config.{key}={text!r} is not a valid '
                     f'{type(current).__name__}.') from None
  if isinstance(current, float) and isinstance(value, int):
    value = float(value)
  if isinstance(current, tuple) and isinstance(value, (list, int)):
    value = tuple(value) if isinstance(value, list) else (value,)
  if type(value) is not type(current):
    raise SystemExit(f'--config.{key} expects a {type(current).__name__}, '
                     f'got {text!r}.')
  return value


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: list[str]) -> ml_collections.ConfigDict:
  for item in overrides:
    if not item.startswith('--config.') or '=' not in item:
      raise SystemExit(f'unrecognised argument {item!r}; overrides look like '
                       '--config.KEY=VALUE.')
    key, text = item[len('--config.'):].split('=', 1)
    *path, leaf = key.split('.')
    parent = config
    for part in path:
      if not isinstance(parent, ml_collections.ConfigDict) or part not in parent:
        raise SystemExit(f'--config.{key}: no such key {part!r}.')
      parent = parent[part]
    if leaf not in parent:
      raise SystemExit(f'--config.{key}: no such key; keys: '
                       f'{", ".join(sorted(parent.keys()))}.')
    parent[leaf] = _parse_value(parent[leaf], text, key)
  return config


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m experiments.run',
      description='Runs one experiment: every method x seed, then the '
      'results.json, table.md, curves.png and layer_rates.png in --workdir.')
  parser.add_argument('experiment', help='one of: ' +
                      ', '.join(available_experiments()))
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--overwrite', action='store_true',
                      help='start afresh; old outputs are moved to '
                      'WORKDIR/previous-<time>/, never deleted')
  args, overrides = parser.parse_known_args(argv)
  config = apply_overrides(get_config(args.experiment), overrides)
  from experiments import train  # pylint: disable=g-import-not-at-top
  results = train.train_and_evaluate(config, args.workdir,
                                     overwrite=args.overwrite)
  print(f'wrote {os.path.join(args.workdir, "results.json")} '
        f'({len(results["runs"])} runs)')
  with open(os.path.join(args.workdir, 'table.md')) as f:
    print(f.read())
  return 0


if __name__ == '__main__':
  sys.exit(main())
