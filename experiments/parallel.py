"""Devices, sharding and seed batching: how a run is laid out on hardware.

Every step is data-parallel over a 1-D mesh ``('data',)`` of all devices;
parameters are replicated or FSDP-sharded; the seeds of a method train one
after another or as one program vmapped over a leading seed axis.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


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


def put_batch(sharding: NamedSharding, *arrays: np.ndarray):
  """Host arrays as global arrays laid out by `sharding`."""
  return tuple(
      jax.make_array_from_callback(x.shape, sharding,
                                   lambda index, x=x: x[index])
      for x in arrays)


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
