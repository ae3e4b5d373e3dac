"""Learning-rate sweeps: every method at its best rate, DeepOBS-style.

``python -m experiments.sweep EXPERIMENT --workdir DIR [--config.KEY=VALUE]``

Stage 1 trains each method of ``config.sweep.methods`` on a grid of base
learning rates, ``rate(method) * 2**k`` for k in ``config.sweep.lr_log2_steps``
(``rate(method)`` is the config's rate for it), with ``config.sweep.grid_seeds``
seeds; where a method's best point lies on an edge of its grid, the grid is
extended by a factor of 2 on that side (at most ``config.sweep.max_extensions``
times a side) until the best point is interior. Stage 2 reruns each method's
best rate to ``config.sweep.best_seeds`` seeds, reusing the grid's runs.

The selection metric is the final test error (%), mean over the grid seeds;
a point where any seed diverged (non-finite training loss) is never selected.

Seeds are trained in waves: seed 0 of every (method, rate), then seed 1, ...,
so an interrupted sweep already has a complete one-seed picture. Every
finished run is a file in ``DIR/runs/`` and is never recomputed; running the
same command again continues where it stopped. After every wave the sweep
writes ``sweep.json``, ``best.md`` and ``tuning.png`` from the runs so far.

A method's grid depends only on its own runs, so methods can be trained by
different processes sharing the workdir: ``--only sgd,sgd+layer`` trains
those (the outputs still cover every method), and ``--parallel N`` starts N
such workers on this machine (e.g. to fill one GPU) and writes the outputs
when they stop.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections

from experiments.analysis import sweeps as sweeps_lib
from experiments.lib import cli
from experiments.lib import data as data_lib
from experiments.lib import grid as grid_lib
from experiments.lib import records
from experiments.lib import train
from experiments.lib import workdir as workdir_lib
from experiments.lib import workers as workers_lib


class Sweep:
  """Trains a sweep's runs into its workdir, wave by wave (the driver).

  Its config is a copy of the caller's with what a sweep needs: divergence
  recorded (a diverged point is data, not an error) and no per-run
  checkpoints (runs are short and resumed whole).
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               overwrite: bool = False, load_data: bool = True,
               only: Sequence[str] | None = None):
    """Validates `config` and claims `workdir` for it.

    Args:
      config: the experiment config with its ``sweep`` block (not changed).
      workdir: where the runs and the outputs go.
      overwrite: move an earlier sweep in `workdir` aside first.
      load_data: load the data (False: report from finished runs only).
      only: names of the methods this process trains (None: all of
        config.sweep.methods); the others' finished runs are reported. Lets
        several processes share one workdir (`--parallel`).
    """
    methods = grid_lib.validate(config)
    self.train_methods = workers_lib.select(methods, only,
                                            'config.sweep.methods')
    config = config.copy_and_resolve_references()
    config.on_divergence = 'record'
    config.checkpoint_every = 0
    self.config = config
    # Before the workdir is claimed: a wrong data_dir leaves nothing behind.
    self.pipeline = data_lib.make_pipeline(config) if load_data else None
    self.workdir = workdir
    self.store = workdir_lib.RunStore(
        workdir, config, overwrite=overwrite,
        resumable_keys=grid_lib.SWEEP_RESUMABLE_KEYS, finished_marker=None,
        methods=[m.name for m in self.train_methods])
    self._runs: dict[str, records.RunRecord] = {}
    self.grid = grid_lib.Grid(config, methods, self._run_of)

  def _run_of(self, spec: records.RunSpec) -> records.RunRecord | None:
    if spec.name not in self._runs and self.store.has_run(spec.name):
      self._runs[spec.name] = self.store.load_run(spec.name)
    return self._runs.get(spec.name)

  def _train(self, specs) -> None:
    train.train_runs(self.config, specs, self.store, self.pipeline)

  def close(self) -> None:
    """Releases the workdir (this process's methods in it)."""
    self.store.close()

  def run(self) -> dict[str, Any]:
    """Trains whatever is missing of `train_methods` (stage 1, then stage
    2); writes the outputs (of every method) after each step; releases the
    workdir at the end."""
    try:
      return self._run()
    finally:
      self.close()

  def _run(self) -> dict[str, Any]:
    sweep, grid = self.config.sweep, self.grid
    # The methods this process does not train, as far as their runs go.
    grid.replay([m for m in grid.methods if m not in self.train_methods])
    for wave in range(sweep.grid_seeds):
      while True:
        self._train([spec for m in self.train_methods
                     for spec in grid.wave_specs(m, wave)])
        extended = [grid.extend(m, range(wave + 1))
                    for m in self.train_methods]
        self.write_outputs()
        if not any(extended):
          break
    grid_seeds = range(sweep.grid_seeds)
    specs = []
    for m in self.train_methods:
      best = grid.best_step(m, grid_seeds)
      if best is not None:
        specs += [grid.spec(m, best, s)
                  for s in range(sweep.grid_seeds, sweep.best_seeds)]
    self._train(specs)
    return self.write_outputs()

  def write_outputs(self) -> dict[str, Any]:
    payload = sweeps_lib.summary(self.grid)
    if jax.process_index() == 0:  # the one writer of a multi-process sweep
      sweeps_lib.write_outputs(payload, self.workdir)
    return payload


def _add_arguments(parser) -> None:
  parser.add_argument(
      '--overwrite', action='store_true',
      help='start afresh; old runs are moved to WORKDIR/previous-<time>/')
  workers_lib.add_arguments(
      parser, 'config.sweep.methods',
      'config.json and the outputs still cover the whole sweep')


def run_parallel(sweep: Sweep, argv: Sequence[str], workers: int) -> int:
  """Trains `sweep.train_methods` in `workers` subprocesses sharing its
  workdir (methods dealt round-robin), then writes the outputs.

  Ctrl-C (or SIGTERM, which `main` turns into one) stops the workers (each
  keeps its finished runs, as a stopped sweep does) and still writes the
  outputs of what finished.
  """
  codes, interrupted = workers_lib.run(
      'experiments.sweep', argv, sweep.train_methods, workers,
      os.path.join(sweep.workdir, 'workers'), sweep.store.claim.lease_env())
  sweep.close()
  payload = sweeps_lib.summary(sweeps_lib.load(sweep.workdir))
  sweeps_lib.write_outputs(payload, sweep.workdir)
  print(sweeps_lib.best_markdown(payload))
  if interrupted:
    print('interrupted: every finished run is saved in --workdir/runs/; run '
          'the same command again to resume.', file=sys.stderr)
    return 130
  return 1 if any(codes) else 0


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  parsed = cli.user_errors_as_messages(lambda: cli.parse_args(
      'python -m experiments.sweep',
      'Learning-rate sweep of every method of config.sweep.methods (stage 1: '
      'grid x grid_seeds; stage 2: the best rate x best_seeds), resumable; '
      'writes sweep.json, best.md and tuning.png in --workdir.', argv,
      _add_arguments), '--debug' in argv)
  if parsed is None:
    return 2
  args, config = parsed
  problem = workers_lib.parallel_error(args.parallel,
                                       bool(config.get('distributed')))
  if problem:
    print(f'error: {problem}', file=sys.stderr)
    return 2
  if args.parallel > 1:
    # Checks the config, data and workdir once, before any worker starts.
    os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    sweep = cli.user_errors_as_messages(
        lambda: Sweep(config, args.workdir, overwrite=args.overwrite,
                      only=args.only), args.debug)
    if sweep is None:
      return 2
    with cli.sigterm_as_interrupt(config):
      return run_parallel(sweep, argv, args.parallel)
  with cli.sigterm_as_interrupt(config):
    payload = cli.user_errors_as_messages(
        lambda: Sweep(config, args.workdir, overwrite=args.overwrite,
                      only=args.only).run(),
        args.debug)
  if payload is None:
    return 2
  for name in sweeps_lib.OUTPUTS:
    print(f'wrote {os.path.join(args.workdir, name)}')
  print(sweeps_lib.best_markdown(payload))
  return 0


if __name__ == '__main__':
  sys.exit(main())
