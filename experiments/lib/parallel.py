"""Processes, devices, sharding and seed batching: how a run is laid out.

Every step is data-parallel over a 1-D mesh ``('data',)`` of all devices of
all processes; parameters are replicated or FSDP-sharded; the seeds of a
method train one after another or as one program vmapped over a leading seed
axis.

Multi-process (`jax.distributed`): every process runs the same program on
the same global arrays. Each one loads only its rows of every global batch
(`process_rows`, `put_batch`), and only process 0 writes files
(`is_writer`); the others wait for it at `barrier`s.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from experiments import configs

# Set by `python -m experiments.launch` for each process it starts; on a
# cluster (SLURM, Cloud TPU, Kubernetes, Open MPI) `jax.distributed` finds
# the same facts itself.
PROCESS_ID_ENV = 'LAYERLR_PROCESS_ID'
NUM_PROCESSES_ENV = 'LAYERLR_NUM_PROCESSES'
COORDINATOR_ENV = 'JAX_COORDINATOR_ADDRESS'


def initialize_distributed() -> None:
  """`jax.distributed.initialize` for this process, once.

  From `python -m experiments.launch` (which sets $LAYERLR_PROCESS_ID,
  $LAYERLR_NUM_PROCESSES and $JAX_COORDINATOR_ADDRESS), or with JAX's
  cluster auto-detection (SLURM, Cloud TPU, Kubernetes, Open MPI). CPU
  devices exchange their all-reduces over gloo.
  """
  if jax.distributed.is_initialized():
    return
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if PROCESS_ID_ENV in os.environ:
    jax.distributed.initialize(
        coordinator_address=os.environ[COORDINATOR_ENV],
        num_processes=int(os.environ[NUM_PROCESSES_ENV]),
        process_id=int(os.environ[PROCESS_ID_ENV]))
    return
  try:
    jax.distributed.initialize()
  except ValueError as e:  # no cluster to read the process layout from
    raise configs.ConfigError(
        f'config.distributed=true, but no cluster was found to join ({e}). '
        'On one machine use python -m experiments.launch --num_processes N '
        '-- <these arguments>; on SLURM start it with srun, on a Cloud TPU '
        'pod slice on every worker (jax.distributed then finds the rest); '
        'or drop --config.distributed=true for one process.') from None


def is_writer() -> bool:
  """Whether this process writes the run's files (process 0 of all)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process got here (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process)."""
  return Mesh(np.array(jax.devices() if devices is None else devices),
              ('data',))


def param_sharding(mesh: Mesh, mode: str):
  """A function leaf -> NamedSharding for `mode` 'replicated' or 'fsdp'.

  FSDP: each array's largest axis divisible by the device count is split.
  """
  n = mesh.devices.size

  def sharding(x):
    if mode == 'fsdp' and n > 1:
      axes = [i for i, d in enumerate(x.shape) if d % n == 0]
      if axes:
        axis = max(axes, key=lambda i: x.shape[i])
        spec = [None] * len(x.shape)
        spec[axis] = 'data'
        return NamedSharding(mesh, P(*spec))
    return NamedSharding(mesh, P())

  return sharding


def batch_sharding(mesh: Mesh, vmapped: bool) -> NamedSharding:
  """Batches split over devices; vmapped batches are (seeds, batch, ...)."""
  return NamedSharding(mesh, P(None, 'data') if vmapped else P('data'))


def process_rows(sharding: NamedSharding, shape: tuple[int, ...],
                 axis: int) -> tuple[int, int]:
  """``(start, stop)``: the rows along `axis` of a global array of `shape`
  that this process's devices hold under `sharding` (all of them with one
  process). A process's devices hold one contiguous block of rows, as on
  a mesh over `jax.devices()` (ordered by process)."""
  starts, stops = [], []
  for index in sharding.addressable_devices_indices_map(shape).values():
    start, stop, _ = index[axis].indices(shape[axis])
    starts.append(start)
    stops.append(stop)
  start, stop = min(starts), max(stops)
  covered = set()
  for a, b in zip(starts, stops):
    covered.update(range(a, b))
  if covered != set(range(start, stop)):
    raise ValueError(f'the devices of process {jax.process_index()} hold '
                     f'rows {sorted(zip(starts, stops))} of axis {axis}: not '
                     'one contiguous block; build the mesh over jax.devices().')
  return start, stop


def put_batch(sharding: NamedSharding, global_shapes, *arrays: np.ndarray):
  """This process's rows of a batch (host arrays) as global arrays of
  `global_shapes` laid out by `sharding`; every process passes its own
  rows (`process_rows`) at the same step."""
  return tuple(
      jax.make_array_from_process_local_data(sharding, x, tuple(shape))
      for x, shape in zip(arrays, global_shapes))


def replicate_missing(tree, mesh: Mesh):
  """Leaves not spread over the whole mesh (e.g. step counts, which land on
  one device) are replicated over it; the others keep their sharding."""
  devices = mesh.devices.size
  replicated = NamedSharding(mesh, P())
  return jax.tree.map(
      lambda x: x if len(x.sharding.device_set) == devices
      else jax.device_put(x, replicated), tree)


def stack_seeds(trees, mesh: Mesh):
  """Per-seed pytrees -> one pytree with a leading (unsharded) seed axis."""
  def stack(*xs):
    spec = getattr(xs[0].sharding, 'spec', P())
    return jax.device_put(jnp.stack(xs), NamedSharding(mesh, P(None, *spec)))
  return jax.tree.map(stack, *trees)


def seeds_vmapped(mode: str) -> bool:
  """Whether the seeds of a method train as one vmapped program.

  'auto' picks what `python -m benchmarks.train_step` measured faster on the
  backend: on XLA:CPU a vmapped step of 4 LeNet seeds took ~2x as long as the
  4 steps one after another (benchmarks/results/train_step_cpu.json), so
  seeds run sequentially there; on accelerators, where one small step leaves
  the chip mostly idle, they are vmapped.
  """
  if mode == 'auto':
    return jax.default_backend() != 'cpu'
  return mode == 'vmap'


def seed_groups(seeds, vmapped: bool, max_per_group: int = 0,
                start_step=None) -> list[list[Any]]:
  """Splits seeds into the groups that train together (in lockstep).

  Sequential: one seed per group. Vmapped: seeds that resume from the same
  step (`start_step(seed)`, e.g. their latest checkpoint) share a group, at
  most `max_per_group` (0: no limit) per group.
  """
  if not vmapped:
    return [[s] for s in seeds]
  by_start: dict[Any, list[Any]] = {}
  for seed in seeds:
    by_start.setdefault(start_step(seed) if start_step else 0, []).append(seed)
  size = max_per_group or len(seeds)
  return [group[i:i + size] for group in by_start.values()
          for i in range(0, len(group), size)]
