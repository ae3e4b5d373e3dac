"""cifar10_full on a CPU-sized budget: 3,500 iterations, 3 seeds, SGD vs
SGD+layer, the step-downs scaled proportionally (60k/70k and 65k/70k of the
schedule: lr / 10 at 3,000 and 3,250). Not the paper's 70k schedule."""

import ml_collections

from experiments.configs import cifar10_full


def get_config() -> ml_collections.ConfigDict:
  config = cifar10_full.get_config()
  config.experiment = 'cifar10_full_short'
  config.methods = 'sgd,sgd+layer'
  config.num_seeds = 3
  config.num_steps = 3500
  config.eval_every = 250
  config.log_every = 50
  config.lr_stepvalues = (3000, 3250)
  config.checkpoint_every = 500
  # The tuned comparison (python -m experiments.sweep cifar10_full_short):
  # the paper's pairs and the +global control, 2 seeds per grid point, the
  # best rate to 9 seeds, so that 7 seeds that took no part in choosing the
  # rate confirm it (5 as first planned; raised for issue #31). About 12
  # minutes a run on one CPU core, ~105 runs: ~11 hours on 2 cores; meant
  # for an accelerator or several sessions. The published sweep
  # (experiments/results/cifar10_full_short_sweep) was made with these
  # values, so this config reruns or resumes it as published.
  config.sweep.methods = 'sgd,sgd+layer,sgd+global,adagrad,adagrad+layer'
  config.sweep.grid_seeds = 2
  config.sweep.best_seeds = 9
  return config
