"""Entry point: ``python -m experiments.run EXPERIMENT --workdir DIR
[--config.KEY=VALUE ...] [--overwrite]``.

EXPERIMENT names a config file in experiments/configs/ (e.g. mnist_lenet);
``--config.KEY=VALUE`` overrides one of its keys, typed like the key's value.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments import configs


def parse_args(prog: str, description: str, argv: list[str] | None,
               extra=None):
  """(args, config) from ``EXPERIMENT --workdir DIR [--config.K=V ...]``."""
  parser = argparse.ArgumentParser(prog=prog, description=description)
  parser.add_argument('experiment', help='one of: ' +
                      ', '.join(configs.available()))
  parser.add_argument('--workdir', required=True)
  if extra:
    extra(parser)
  args, overrides = parser.parse_known_args(argv)
  config = configs.apply_overrides(configs.get_config(args.experiment),
                                   overrides)
  return args, config


def main(argv: list[str] | None = None) -> int:
  args, config = parse_args(
      'python -m experiments.run',
      'Runs one experiment: every method x seed, then the results.json, '
      'table.md, curves.png and layer_rates.png in --workdir.', argv,
      lambda p: p.add_argument(
          '--overwrite', action='store_true',
          help='start afresh; old outputs are moved to '
          'WORKDIR/previous-<time>/, never deleted'))
  from experiments import train  # pylint: disable=g-import-not-at-top
  results = train.train_and_evaluate(config, args.workdir,
                                     overwrite=args.overwrite)
  print(f'wrote {os.path.join(args.workdir, "results.json")} '
        f'({len(results.runs)} runs)')
  with open(os.path.join(args.workdir, 'table.md')) as f:
    print(f.read())
  return 0


if __name__ == '__main__':
  sys.exit(main())
