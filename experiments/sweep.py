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

import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from experiments import configs
from experiments import records
from experiments import report
from experiments import workdir as workdir_lib
from experiments.methods import Method
from experiments.methods import parse_methods

METRIC = 'final test error (%), mean over the grid seeds'
# Keys that choose which runs a sweep holds, not what one run computes: a
# run's rate is part of its name, so the grid may change between sessions.
SWEEP_RESUMABLE_KEYS = frozenset({'sweep', 'base_lr', 'method_base_lr'})
OUTPUTS = ('sweep.json', 'best.md', 'tuning.png')


def sweep_methods(config: ml_collections.ConfigDict) -> tuple[Method, ...]:
  return parse_methods(config.sweep.methods or config.methods)


def validate(config: ml_collections.ConfigDict) -> tuple[Method, ...]:
  """The sweep's own keys, then the experiment's; returns the methods."""
  sweep = config.sweep
  steps = list(sweep.lr_log2_steps)
  if len(steps) < 2 or steps != sorted(set(steps)) or any(
      int(k) != k for k in steps):
    raise configs.ConfigError(
        'config.sweep.lr_log2_steps must be increasing integers (the grid is '
        f'rate * 2**k), at least 2 of them; got {tuple(steps)}.')
  if steps != list(range(steps[0], steps[-1] + 1)):
    raise configs.ConfigError(
        'config.sweep.lr_log2_steps must be consecutive (factor-2 spacing, '
        f'so that "interior" and robustness are well defined); got '
        f'{tuple(steps)}.')
  if sweep.grid_seeds < 1 or sweep.best_seeds < sweep.grid_seeds:
    raise configs.ConfigError(
        'config.sweep needs 1 <= grid_seeds <= best_seeds; got '
        f'grid_seeds={sweep.grid_seeds}, best_seeds={sweep.best_seeds}.')
  if sweep.max_extensions < 0:
    raise configs.ConfigError('config.sweep.max_extensions must be >= 0, got '
                              f'{sweep.max_extensions}.')
  if not 0 < sweep.tolerance < 1:
    raise configs.ConfigError('config.sweep.tolerance must be in (0, 1) (the '
                              'relative distance to the best error that '
                              f'counts as robust), got {sweep.tolerance}.')
  experiment = config.copy_and_resolve_references()
  try:
    experiment.methods = ','.join(m.name for m in sweep_methods(config))
  except ValueError as e:
    raise configs.ConfigError(f'config.sweep.methods: {e}') from None
  configs.validate(experiment)
  return sweep_methods(config)


def _final(run: records.RunRecord) -> float:
  """The selection metric of one run; inf if it diverged."""
  if run.diverged_at is not None or run.test_error[-1] is None:
    return math.inf
  return float(run.test_error[-1])


class Sweep:
  """The runs of one sweep in a workdir, and what they say."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               overwrite: bool = False, load_data: bool = True,
               only: Sequence[str] | None = None):
    """Claims `workdir` for the sweep of `config`.

    Args:
      config: the experiment's config with its `sweep` keys.
      workdir: the sweep's folder (config.json, runs/, outputs).
      overwrite: move an existing sweep aside and start afresh.
      load_data: load the data (False: report from finished runs only).
      only: names of the methods this process trains (None: all of
        `config.sweep.methods`). The sweep, its config.json and its outputs
        still cover every method, so processes training different methods
        share one workdir (`--parallel`).
    """
    if config.get('distributed'):  # before anything starts JAX's backend
      from experiments import parallel
      parallel.initialize_distributed()
    self.methods = validate(config)
    self.train_methods = _select(self.methods, only)
    self.config = config
    config.on_divergence = 'record'
    # Runs are short and resumed whole: no per-run checkpoints.
    config.checkpoint_every = 0
    self.pipeline = None
    if load_data:  # before the workdir is claimed: a wrong data_dir
      from experiments import data as data_lib
      self.pipeline = data_lib.make_pipeline(config)
    self.workdir = workdir
    self.store = workdir_lib.RunStore(
        workdir, config, overwrite=overwrite,
        resumable_keys=SWEEP_RESUMABLE_KEYS, finished_marker=None,
        methods=[m.name for m in self.train_methods])
    self.center = {m: _method_rate(m, config) for m in self.methods}
    self.steps = {m: list(config.sweep.lr_log2_steps) for m in self.methods}
    self._runs: dict[str, records.RunRecord] = {}

  def rate(self, method: Method, k: int) -> float:
    return self.center[method] * 2.0 ** k

  def spec(self, method: Method, k: int, seed: int):
    from experiments import train
    return train.RunSpec(method, seed, self.rate(method, k))

  def run_of(self, method: Method, k: int, seed: int):
    """The finished run, or None."""
    name = self.spec(method, k, seed).name
    if name not in self._runs and self.store.has_run(name):
      self._runs[name] = self.store.load_run(name)
    return self._runs.get(name)

  def point(self, method: Method, k: int, seeds: Sequence[int]):
    """(mean, sample std, n, diverged) of the final error over `seeds`."""
    runs = [self.run_of(method, k, s) for s in seeds]
    finals = [_final(r) for r in runs if r is not None]
    diverged = sum(math.isinf(f) for f in finals)
    if not finals:
      return math.nan, math.nan, 0, 0
    if diverged:
      return math.inf, math.nan, len(finals), diverged
    values = np.array(finals)
    return (float(values.mean()), float(report.sample_std(values)),
            len(finals), 0)

  def best_step(self, method: Method, seeds: Sequence[int]) -> int | None:
    """The grid step with the lowest mean final error (None: none finite)."""
    scores = {k: self.point(method, k, seeds)[0] for k in self.steps[method]}
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
      return None
    return min(finite, key=lambda k: (finite[k], k))

  def _extend(self, method: Method, seeds: Sequence[int]) -> bool:
    """Extends `method`'s grid by one step on the edge holding its best
    point (below all, if every point diverged); True if it did."""
    limit = self.config.sweep.max_extensions
    initial = list(self.config.sweep.lr_log2_steps)
    steps = self.steps[method]
    best = self.best_step(method, seeds)
    low_ext, high_ext = initial[0] - steps[0], steps[-1] - initial[-1]
    # Everything diverged (best None): only smaller rates can help.
    if best in (None, steps[0]) and low_ext < limit:
      steps.insert(0, steps[0] - 1)
      return True
    if best is not None and best == steps[-1] and high_ext < limit:
      steps.append(steps[-1] + 1)
      return True
    return False

  def _wave_done(self, method: Method, wave: int) -> bool:
    """Every grid point has seeds 0..wave (a point added in a later wave
    gets the earlier waves' seeds too)."""
    return all(self.run_of(method, k, s) for k in self.steps[method]
               for s in range(wave + 1))

  def replay(self) -> None:
    """Rebuilds each method's grid from finished runs alone, as `run`
    extended it.

    A method's grid depends only on its own runs, so each is replayed on
    its own: wave by wave, stopping at its first wave that is not complete.
    A report of an interrupted (or running) sweep thus shows exactly the
    grid each method is working on.
    """
    for m in self.methods:
      for wave in range(self.config.sweep.grid_seeds):
        while self._wave_done(m, wave) and self._extend(m, range(wave + 1)):
          pass
        if not self._wave_done(m, wave):
          break

  def _train(self, specs) -> None:
    from experiments import train
    train.train_runs(self.config, specs, self.store, self.pipeline)

  def close(self) -> None:
    """Releases the workdir (or this worker's methods in it)."""
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
    sweep = self.config.sweep
    self.replay()  # the methods this process does not train
    for wave in range(sweep.grid_seeds):
      while True:
        # Seeds of earlier waves too: a point the grid gained in this wave
        # (finished runs are skipped) is compared on as many seeds as the
        # others.
        self._train([self.spec(m, k, s) for m in self.train_methods
                     for s in range(wave + 1) for k in self.steps[m]])
        extended = [self._extend(m, range(wave + 1))
                    for m in self.train_methods]
        self.write_outputs()
        if not any(extended):
          break
    grid_seeds = range(sweep.grid_seeds)
    specs = []
    for m in self.train_methods:
      best = self.best_step(m, grid_seeds)
      if best is not None:
        specs += [self.spec(m, best, s)
                  for s in range(sweep.grid_seeds, sweep.best_seeds)]
    self._train(specs)
    return self.write_outputs()

  def summary(self) -> dict[str, Any]:
    """The sweep.json payload from the runs finished so far."""
    sweep = self.config.sweep
    grid_seeds = list(range(sweep.grid_seeds))
    runs, grid, best, commits = [], {}, {}, set()
    platforms: dict[tuple[str, str], int] = {}
    for m in self.methods:
      grid[m.name] = []
      for k in self.steps[m]:
        for seed in range(sweep.best_seeds):
          run = self.run_of(m, k, seed)
          if run is None:
            continue
          commits.add(run.commit)
          platform = (run.device or 'not recorded',
                      records.versions_text(run.versions))
          platforms[platform] = platforms.get(platform, 0) + 1
          runs.append({'method': m.name, 'base_lr': run.base_lr,
                       'seed': seed, 'test_error': run.test_error,
                       'train_loss': run.train_loss,
                       'diverged_at': run.diverged_at,
                       'commit': run.commit})
        mean, std, n, diverged = self.point(m, k, grid_seeds)
        if n:
          grid[m.name].append({'base_lr': self.rate(m, k), 'log2_step': k,
                               'mean': _json_float(mean),
                               'std': _json_float(std), 'seeds': n,
                               'diverged': diverged})
      k_best = self.best_step(m, grid_seeds)
      if k_best is None:
        continue
      seeds = [s for s in range(sweep.best_seeds)
               if self.run_of(m, k_best, s) is not None]
      chosen = [self.run_of(m, k_best, s) for s in seeds]
      finals = np.array([_final(r) for r in chosen])
      losses = np.array([r.train_loss[-1] for r in chosen], dtype=float)
      steps = self.steps[m]
      best[m.name] = {
          'base_lr': self.rate(m, k_best), 'log2_step': k_best,
          'seeds': len(seeds), 'mean': _json_float(finals.mean()),
          'std': _json_float(report.sample_std(finals)),
          'final_errors': [_json_float(f) for f in finals],
          'train_loss_mean': _json_float(losses.mean()),
          'train_loss_std': _json_float(report.sample_std(losses)),
          'interior': all(k in steps and self.point(m, k, grid_seeds)[2]
                          for k in (k_best - 1, k_best + 1)),
          'robust_width_log2': self.robust_width(m, grid_seeds),
      }
    return {
        'experiment': self.config.experiment,
        'metric': METRIC,
        'grid_seeds': sweep.grid_seeds,
        'best_seeds': sweep.best_seeds,
        'tolerance': sweep.tolerance,
        'eval_steps': list(range(self.config.eval_every,
                                 self.config.num_steps + 1,
                                 self.config.eval_every)),
        'runs': runs,
        'grid': grid,
        'best': best,
        'config': records.json_ready(self.config.to_dict()),
        'versions': _versions(),
        # Where the runs were trained (the versions above are this file's
        # writer's): device, software and how many runs, per platform.
        'run_platforms': [{'device': d, 'versions': v, 'runs': n}
                          for (d, v), n in sorted(platforms.items())],
        'commit': sorted(commits, key=str)[0] if len(commits) == 1
                  else sorted(str(c) for c in commits),
        'data': _data_identity(self.config),
    }

  def robust_width(self, method: Method, seeds) -> int:
    """Width, in factors of 2, of the contiguous range of rates around the
    best whose mean final error is within `tolerance` (relative) of it."""
    k_best = self.best_step(method, seeds)
    if k_best is None:
      return 0
    best = self.point(method, k_best, seeds)[0]
    limit = best * (1 + self.config.sweep.tolerance)
    steps = self.steps[method]
    i = j = steps.index(k_best)
    while i > 0 and self.point(method, steps[i - 1], seeds)[0] <= limit:
      i -= 1
    while j < len(steps) - 1 and self.point(method, steps[j + 1],
                                            seeds)[0] <= limit:
      j += 1
    return steps[j] - steps[i]

  def write_outputs(self) -> dict[str, Any]:
    import jax
    payload = self.summary()
    if jax.process_index() == 0:  # the one writer of a multi-process sweep
      records.write_json(os.path.join(self.workdir, 'sweep.json'), payload)
      records.write_atomic(os.path.join(self.workdir, 'best.md'),
                           best_markdown(payload))
      plot_tuning(payload, os.path.join(self.workdir, 'tuning.png'))
    return payload


def load(workdir: str) -> Sweep:
  """The sweep in `workdir` (its config.json), grid replayed from its runs."""
  import json
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no sweep in {workdir!r} (no config.json)')
  with open(path) as f:
    saved = json.load(f)
  # Keys added to the configs after the sweep started take their defaults,
  # as when the sweep itself resumes (workdir.RunStore).
  from experiments import workdir as workdir_lib
  for key, value in workdir_lib.default_config().items():
    saved.setdefault(key, value)
  config = ml_collections.ConfigDict(saved)
  config.sweep.lr_log2_steps = tuple(config.sweep.lr_log2_steps)
  config.lr_stepvalues = tuple(config.lr_stepvalues)
  sweep = Sweep(config, workdir, load_data=False)
  sweep.replay()
  return sweep


def _method_rate(method: Method, config) -> float:
  from experiments import solvers
  return solvers.method_base_lr(method, config)


def _json_float(x) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def _versions() -> dict[str, str]:
  from experiments import train
  return train.versions()


def _data_identity(config) -> dict[str, Any]:
  from experiments import data as data_lib
  return data_lib.identity(config)


def best_markdown(payload: dict[str, Any]) -> str:
  """best.md: best rates, best-vs-best with Welch p, robustness."""
  best = payload['best']
  lines = [
      f"### {payload['experiment']}: learning-rate sweep",
      '',
      f'Selection metric: {payload["metric"]} ({payload["grid_seeds"]} '
      f'seeds per grid point once complete); each method\'s best rate is then rerun to '
      f'{payload["best_seeds"]} seeds. Robustness: the width of the range of '
      f'rates whose mean error is within {payload["tolerance"]:.0%} '
      '(relative) of the best, in factors of 2 (0: only the best rate). '
      'Training loss: the mean mini-batch loss over the last evaluation '
      'interval, at the best rate.',
      '',
      '| method | best base_lr | seeds | final test error (%) | '
      'training loss | robust width (x2) | best interior? |',
      '|---|---|---|---|---|---|---|',
  ]
  for name, b in best.items():
    lines.append(
        f'| {name} | {b["base_lr"]:.3g} | {b["seeds"]} | '
        f'{report.fmt(b["mean"], _nan(b["std"]))} | '
        f'{report.fmt(b["train_loss_mean"], _nan(b["train_loss_std"]))} | '
        f'{b["robust_width_log2"]} | {"yes" if b["interior"] else "no"} |')
  pairs = _best_pairs(best)
  if pairs:
    lines += [
        '',
        '**Best vs best** (each at its own best rate; Welch two-sided p)',
        '',
        'Δ = mean(variant) − mean(base), percentage points; negative '
        'favours the variant.',
        '',
        '| variant | vs | Δ | p |',
        '|---|---|---|---|',
    ]
    for a, b in pairs:
      x = np.array(best[a]['final_errors'], dtype=float)
      y = np.array(best[b]['final_errors'], dtype=float)
      p = report.welch_p(x, y)
      lines.append(f'| {a} | {b} | {x.mean() - y.mean():+.2f} | '
                   f'{"n/a" if math.isnan(p) else f"{p:.3f}"} |')
  platforms = payload.get('run_platforms') or []
  if platforms:
    lines += ['', 'Trained on: ' + '; '.join(
        f'{p["runs"]} runs made before runs recorded their device'
        if p['device'] == 'not recorded'
        else f'{p["device"]} ({p["versions"]}): {p["runs"]} runs'
        for p in platforms) + '.']
  missing = [m for m, points in payload['grid'].items() if m not in best]
  incomplete = [m for m, b in best.items()
                if b['seeds'] < payload['best_seeds']]
  if missing or incomplete:
    lines += ['', '**Unfinished sweep**: ' + '; '.join(
        ([f'no finite point yet for {", ".join(missing)}'] if missing else [])
        + ([f'fewer than {payload["best_seeds"]} seeds at the best rate for '
            f'{", ".join(incomplete)}'] if incomplete else [])) + '.']
  return '\n'.join(lines) + '\n'


def _nan(x):
  return math.nan if x is None else x


def _best_pairs(best: dict[str, Any]) -> list[tuple[str, str]]:
  """(variant, its plain base) and (+layer, +global) pairs present."""
  pairs = []
  for name in best:
    method = Method.parse(name)
    if method.variant is not None and method.plain.name in best:
      pairs.append((name, method.plain.name))
    if method.variant == 'layer':
      control = Method(method.base, 'global').name
      if control in best:
        pairs.append((name, control))
  return pairs


# One colour per base optimizer; variants share it, told apart by line style.
_BASE_COLOURS = {'sgd': 'tab:blue', 'nag': 'tab:orange', 'adagrad': 'tab:green',
                 'adam': 'tab:red', 'lars': 'tab:purple', 'lamb': 'tab:brown'}
_VARIANT_STYLES = {None: ('--', 'o'), 'layer': ('-', 's'),
                   'layercap': ((0, (5, 1, 1, 1)), 'D'),
                   'global': (':', '^'), 'warmup': ('-.', 'v')}


def plot_tuning(payload: dict[str, Any], path: str) -> None:
  """Final test error vs base learning rate (log x), mean ± std."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  grid = payload['grid']
  bases = list(dict.fromkeys(Method.parse(m).base for m, points in grid.items()
                             if points)) or ['sgd']
  fig, axes = plt.subplots(1, len(bases),
                           figsize=(max(6.0, 4.2 * len(bases)), 4.2),
                           squeeze=False, sharey=True)
  for ax, base in zip(axes[0], bases):
    for name, points in grid.items():
      method = Method.parse(name)
      if method.base != base or not points:
        continue
      style, marker = _VARIANT_STYLES[method.variant]
      lr = np.array([p['base_lr'] for p in points])
      mean = np.array([_nan(p['mean']) for p in points], dtype=float)
      std = np.nan_to_num(np.array([_nan(p['std']) for p in points],
                                   dtype=float))
      finite = np.isfinite(mean)
      ax.errorbar(lr[finite], mean[finite], yerr=std[finite], label=name,
                  color=_BASE_COLOURS[base], linestyle=style, marker=marker,
                  markersize=4, capsize=2)
      if not finite.all():
        ax.plot(lr[~finite], np.full((~finite).sum(), 90.0), 'x',
                color=_BASE_COLOURS[base])
      if name in payload['best']:
        b = payload['best'][name]
        ax.plot([b['base_lr']], [b['mean']], marker='*', markersize=11,
                color=_BASE_COLOURS[base], markeredgecolor='k')
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('base learning rate')
    ax.set_title(base)
    ax.legend(fontsize=7)
  axes[0, 0].set_ylabel('final test error (%)')
  fig.suptitle(f'{payload["experiment"]}: final test error vs base rate, '
               f'mean ± std over up to {payload["grid_seeds"]} seeds\n'
               'x at 90%: diverged; *: best rate (rerun with more seeds)',
               fontsize=9)
  fig.tight_layout()
  records.write_figure(fig, path)
  plt.close(fig)


def _select(methods: Sequence[Method], only) -> tuple[Method, ...]:
  """The methods named in `only` (a list or 'a,b'), in sweep order."""
  if only is None:
    return tuple(methods)
  names = [n.strip() for n in (only.split(',') if isinstance(only, str)
                               else only) if n.strip()]
  known = {m.name: m for m in methods}
  unknown = [n for n in names if n not in known]
  if unknown or not names:
    raise configs.ConfigError(
        f'--only {",".join(names) or "(nothing)"}: '
        + (f'{", ".join(unknown)} not in' if unknown else 'name methods of')
        + f' config.sweep.methods ({", ".join(known)}); --only chooses which '
        'of the sweep\'s methods this process trains.')
  return tuple(m for m in methods if m.name in names)


def _add_arguments(parser) -> None:
  parser.add_argument(
      '--overwrite', action='store_true',
      help='start afresh; old runs are moved to WORKDIR/previous-<time>/')
  parser.add_argument(
      '--only', metavar='METHODS',
      help='train only these methods of config.sweep.methods (comma '
      'separated); config.json and the outputs still cover the whole sweep')
  parser.add_argument(
      '--parallel', type=int, default=1, metavar='N',
      help='train the methods in N worker processes on this machine (one '
      'accelerator shared, or N x the CPU threads); each worker trains whole '
      'methods, logs to WORKDIR/workers/; outputs written when all stop')


def _worker_argv(argv: Sequence[str], methods: Sequence[Method]) -> list[str]:
  """This command's arguments for a worker training `methods`."""
  out, skip = [], False
  for arg in argv:
    if skip:
      skip = False
      continue
    if arg in ('--parallel', '--only', '--overwrite'):
      skip = arg != '--overwrite'
      continue
    if arg.startswith(('--parallel=', '--only=')):
      continue
    out.append(arg)
  return out + ['--only', ','.join(m.name for m in methods)]


def run_parallel(sweep: Sweep, argv: Sequence[str], workers: int) -> int:
  """Trains `sweep.train_methods` in `workers` subprocesses sharing its
  workdir (methods dealt round-robin), then writes the outputs.

  Ctrl-C (or SIGTERM, which `main` turns into one) stops the workers (each
  keeps its finished runs, as a stopped sweep does) and still writes the
  outputs of what finished.
  """
  import signal
  import subprocess
  groups = [list(sweep.train_methods[i::workers]) for i in range(workers)]
  groups = [g for g in groups if g]
  logs = os.path.join(sweep.workdir, 'workers')
  os.makedirs(logs, exist_ok=True)
  env = dict(os.environ, **sweep.store.claim.lease_env())
  # N processes share one accelerator: none may take most of its memory.
  env.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  procs = []
  interrupted = False
  try:
    for i, group in enumerate(groups):
      names = ','.join(m.name for m in group)
      path = os.path.join(logs, f'worker{i}.log')
      with open(path, 'w') as log:
        procs.append(subprocess.Popen(
            [sys.executable, '-m', 'experiments.sweep',
             *_worker_argv(argv, group)],
            stdout=log, stderr=subprocess.STDOUT, env=env))
      print(f'worker {i}: {names} (log: {path})', flush=True)
    codes = [p.wait() for p in procs]
  except KeyboardInterrupt:
    interrupted = True
    for p in procs:
      if p.poll() is None:
        p.send_signal(signal.SIGINT)  # a worker's Ctrl-C: saves, then stops
    codes = [p.wait() for p in procs]
  for i, code in enumerate(codes):
    if code:
      print(f'worker {i} stopped with exit status {code}; see '
            f'{os.path.join(logs, f"worker{i}.log")}', file=sys.stderr)
  done = load(sweep.workdir)
  done.write_outputs()
  done.close()
  sweep.close()
  print(best_markdown(done.summary()))
  if interrupted:
    print('interrupted: every finished run is saved in --workdir/runs/; run '
          'the same command again to resume.', file=sys.stderr)
    return 130
  return 1 if any(codes) else 0


def main(argv: list[str] | None = None) -> int:
  from experiments import run as run_lib
  argv = list(sys.argv[1:] if argv is None else argv)
  parsed = run_lib.user_errors_as_messages(lambda: run_lib.parse_args(
      'python -m experiments.sweep',
      'Learning-rate sweep of every method of config.sweep.methods (stage 1: '
      'grid x grid_seeds; stage 2: the best rate x best_seeds), resumable; '
      'writes sweep.json, best.md and tuning.png in --workdir.', argv,
      _add_arguments), '--debug' in argv)
  if parsed is None:
    return 2
  args, config = parsed
  if args.parallel < 1:
    print(f'error: --parallel must be >= 1, got {args.parallel}.',
          file=sys.stderr)
    return 2
  if args.parallel > 1 and config.get('distributed'):
    print('error: --parallel starts its own processes on this machine; it '
          'cannot be combined with config.distributed (one multi-process '
          'JAX job). Use one or the other.', file=sys.stderr)
    return 2
  if args.parallel > 1:
    # Checks the config, data and workdir once, before any worker starts.
    os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    sweep = run_lib.user_errors_as_messages(
        lambda: Sweep(config, args.workdir, overwrite=args.overwrite,
                      only=args.only), args.debug)
    if sweep is None:
      return 2
    with run_lib.sigterm_as_interrupt(config):
      return run_parallel(sweep, argv, args.parallel)
  with run_lib.sigterm_as_interrupt(config):
    payload = run_lib.user_errors_as_messages(
        lambda: Sweep(config, args.workdir, overwrite=args.overwrite,
                      only=args.only).run(),
        args.debug)
  if payload is None:
    return 2
  for name in OUTPUTS:
    print(f'wrote {os.path.join(args.workdir, name)}')
  print(best_markdown(payload))
  return 0


if __name__ == '__main__':
  sys.exit(main())
