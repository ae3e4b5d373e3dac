"""Settings shared by every experiment config (each config overrides them)."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = ''
  config.dataset = ''
  config.model = ''
  config.preprocess = 'scale'

  # BASE or BASE+VARIANT, comma-separated (experiments/lib/methods.py).
  config.methods = 'sgd,sgd+layer'
  config.num_seeds = 1
  config.seed_offset = 0
  config.num_steps = 1000
  config.eval_every = 100
  config.log_every = 20
  config.batch_size = 64
  config.eval_batch_size = 1000

  # 'tfds' (default: what users with internet have) | 'local' | 'synthetic'.
  config.data_source = 'tfds'
  config.data_dir = ''  # TFDS data dir, or the folder of the local files.
  # 0: the whole evaluation split; N: a fixed random subset of N examples.
  config.max_eval_examples = 0

  # Caffe solver (experiments/lib/solvers.py).
  config.base_lr = 0.01
  config.method_base_lr = ml_collections.ConfigDict(
      {'adam': 0.001, 'lars': 1.0, 'lamb': 0.001, 'adalayer': 0.001,
       'layer_lars': 1.0, 'layer_lamb': 0.001})
  config.lr_policy = 'fixed'
  config.lr_gamma = 0.1
  config.lr_power = 0.0
  config.lr_stepsize = 0
  config.lr_stepvalues = ()
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.bias_lr_mult = 2.0
  config.lr_mult = ml_collections.ConfigDict()  # {'layer/leaf': multiplier}
  config.decay_mult = ml_collections.ConfigDict()
  config.adagrad_delta = 1e-8  # Caffe's default `delta`.
  config.lars_trust_coefficient = 0.001
  config.layers = 'module'
  # Leaves of a scan-stacked model (a regular expression on their paths,
  # layerlr_optax.stacked_paths): one layer per slice for every per-layer
  # rule. '' = nothing stacked.
  config.stacked = ''
  # The +llrd variant: each layer's step times llrd_decay ** (top - depth),
  # depths from bottom-to-top patterns on layer names (depth= of
  # layerlr_optax.scale_by_layer_decay). Empty: the model's own order,
  # experiments/lib/models.py LLRD_DEPTH.
  config.llrd_decay = 0.75
  config.llrd_depth = ()
  # The +warmup variant: linear warm-up of the rate over this share of
  # training (then Caffe's policy as usual).
  config.warmup_fraction = 0.2
  # The +layercap variant: the layer factor capped at this value.
  config.layer_max_factor = 2.0
  # The +frozen variant: a JSON file of fixed per-layer factors
  # (experiments/lib/frozen.py; `python -m experiments.report frozen`).
  config.frozen_factors = ''
  # A non-finite training loss: 'raise' stops the experiment; 'record' ends
  # that run and records it as diverged (learning-rate sweeps).
  config.on_divergence = 'raise'

  # Scale: data-parallel over all visible devices.
  config.param_sharding = 'replicated'  # | 'fsdp'
  # Seeds of a method: 'auto' (sequential on CPU, one vmapped program on
  # GPU/TPU; see experiments.lib.parallel.seeds_vmapped) | 'vmap' | 'sequential'.
  config.seed_parallelism = 'auto'
  config.max_vmapped_seeds = 0  # seeds per vmapped program; 0 = all
  config.distributed = False  # jax.distributed.initialize() (multi-host)
  config.checkpoint_every = 0  # steps; 0 = no orbax checkpoints

  # Learning-rate sweeps (python -m experiments.sweep, see its docstring).
  config.sweep = ml_collections.ConfigDict(dict(
      methods='',  # '' = config.methods
      lr_log2_steps=(-3, -2, -1, 0, 1, 2, 3),  # grid: rate(method) * 2**k
      grid_seeds=3,
      best_seeds=10,
      max_extensions=4,  # per side, while the best point is on an edge
      tolerance=0.10,  # robustness: within 10% (relative) of the best error
  ))

  config.paper_table = ml_collections.ConfigDict()
  return config


def caffe_lenet_solver(config: ml_collections.ConfigDict) -> None:
  """Caffe's examples/mnist/lenet_solver.prototxt (the paper's MNIST
  solver, assumed: docs/PAPER.md): batch 64, lr 0.01 with the `inv` policy
  (gamma 1e-4, power 0.75), momentum 0.9, weight decay 5e-4, bias lr x2."""
  config.batch_size = 64
  config.base_lr = 0.01
  config.lr_policy = 'inv'
  config.lr_gamma = 1e-4
  config.lr_power = 0.75
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.bias_lr_mult = 2.0
