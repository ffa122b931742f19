"""Where arrays live for data parallelism: the device mesh, shardings,
process-local batches as global arrays, and pmap's per-device copies.

Two ways to run the update functions on many devices, giving the same numbers
as one device on the global batch:

- `jax.jit` over a Mesh (the main path): `make_mesh()`, the state put on
  every device with `replicate`, each real batch sharded along the mesh's
  `data` axis (`batch_sharding`, `global_batch_from_local`). The update
  functions are unchanged: XLA partitions the global computation (batch norm
  statistics, means, gradients) and inserts the cross-device reductions.
- `jax.pmap`: the state with a leading device axis (`pmap_replicate`), the
  batch split into per-device shards (`split_for_pmap`), the updates run with
  the spec's `batch_axis` naming the pmap axis (batch_axis.py).

Across hosts both use the same device order (grouped by process), so process
p reads rows [p * B / P, (p + 1) * B / P) of every global batch of B.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from wgan_jax.configs import schema
from wgan_jax.state import PyTree

DATA_AXIS = "data"
# How the updates run over the devices (config `parallelism`).
PARALLELISMS = schema.PARALLELISMS


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis `data` over `devices` (default: all devices of all
  processes), ordered by process so each process's rows of a batch are one
  contiguous block. Axis type Auto: XLA propagates shardings through the
  unchanged step functions (`jax.make_mesh` would make it Explicit)."""
  return Mesh(np.asarray(sorted_devices() if devices is None else devices), (DATA_AXIS,))


def sorted_devices() -> list[jax.Device]:
  """Every device of every process, ordered by process."""
  return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of `mesh`: parameters, optimizer state."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
  """The batch axis (after `leading_axes` unsharded ones: 1 for stacked critic
  batches [k, batch, ...]) split over the mesh's `data` axis."""
  return NamedSharding(mesh, PartitionSpec(*([None] * leading_axes), DATA_AXIS))


def check_batch_divisible(global_batch: int, mesh: Mesh) -> None:
  """Raises a one-line ValueError unless `global_batch` splits evenly over the mesh."""
  n = mesh.size
  if global_batch % n:
    lower, upper = global_batch // n * n, (global_batch // n + 1) * n
    hint = f"{lower} or {upper}" if lower else f"{upper}"
    raise ValueError(f"batch_size={global_batch} does not split evenly over {n} devices; "
                     f"use a multiple of {n} (e.g. {hint}) or run on fewer devices")


def process_batch_size(global_batch: int, mesh: Mesh) -> int:
  """How many rows of each global batch this process reads."""
  check_batch_divisible(global_batch, mesh)
  return global_batch // jax.process_count()


def global_batch_from_local(local: np.ndarray, mesh: Mesh,
                            sharding: NamedSharding | None = None) -> jax.Array:
  """One global array from every process's `local` rows (this process's
  contiguous block, in process order), laid out by `sharding` (default: the
  batch on axis 0; `batch_sharding(mesh, 1)` for [k, batch, ...]). Every
  process calls it with its own rows; nothing crosses hosts here."""
  sharding = batch_sharding(mesh) if sharding is None else sharding
  axis = list(sharding.spec).index(DATA_AXIS)
  check_batch_divisible(local.shape[axis] * jax.process_count(), mesh)
  return jax.make_array_from_process_local_data(sharding, local)


# Smaller arrays (the step, RNG keys, biases) stay replicated: splitting them saves
# nothing, and the host reads some of them.
MIN_SHARDED_SIZE = 4096


def sharded_along_data(x: jax.Array | np.ndarray, mesh: Mesh) -> NamedSharding:
  """A layout holding 1/devices of `x` on each device (FSDP / ZeRO style): its
  largest axis that divides by the device count split along `data`; replicated
  if none does or `x` is small."""
  n, shape = mesh.size, np.shape(x)
  axes = [i for i in np.argsort(shape)[::-1] if shape[i] % n == 0 and shape[i] >= n]
  if not axes or n == 1 or np.size(x) < MIN_SHARDED_SIZE:
    return replicated_sharding(mesh)
  spec = [None] * len(shape)
  spec[axes[0]] = DATA_AXIS
  return NamedSharding(mesh, PartitionSpec(*spec))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """`tree` (e.g. a TrainState) copied onto every device of `mesh`. With
  several processes each passes the same values (e.g. from the same seed)."""
  return jax.device_put(tree, replicated_sharding(mesh))


# ----------------------------------------------------------------------------
# pmap.
# ----------------------------------------------------------------------------


def pmap_replicate(tree: PyTree, devices: Sequence[jax.Device] | None = None) -> PyTree:
  """`tree` with a leading axis of one copy per local device, each copy on
  its device (the layout `jax.pmap` gives its inputs). `jax.device_put_replicated`
  is gone from JAX 0.10; pmap would also take a plain stacked array."""
  devices = list(jax.local_devices() if devices is None else devices)
  sharding = NamedSharding(Mesh(np.asarray(devices), (DATA_AXIS,)), PartitionSpec(DATA_AXIS))

  def put(x):
    x = jnp.asarray(x)
    shards = [jax.device_put(x[None], d) for d in devices]
    return jax.make_array_from_single_device_arrays((len(devices),) + x.shape, sharding, shards)

  return jax.tree.map(put, tree)


def pmap_shard(x: np.ndarray, devices: Sequence[jax.Device] | None = None) -> jax.Array:
  """[n_devices, ...] with slice i on local device i: the layout `jax.pmap`
  gives a mapped input, put there ahead of the call (asynchronously)."""
  devices = list(jax.local_devices() if devices is None else devices)
  mesh = Mesh(np.asarray(devices), (DATA_AXIS,))
  return jax.device_put(x, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))


def pmap_unreplicate(tree: PyTree) -> PyTree:
  """The first device's copy of a pmap-replicated tree (all copies are equal)."""
  return jax.tree.map(lambda x: x[0], tree)


def split_for_pmap(batch: np.ndarray, num_devices: int | None = None,
                   axis: int = 0) -> np.ndarray:
  """[.., B, ..] -> [num_devices, .., B / num_devices, ..]: device i gets
  the i-th contiguous block of rows along `axis` (the batch axis: 1 for
  stacked critic batches). Default: this process's local devices."""
  n = jax.local_device_count() if num_devices is None else num_devices
  size = batch.shape[axis]
  if size % n:
    raise ValueError(f"batch of {size} does not split evenly over {n} devices; "
                     f"use a multiple of {n}")
  shape = batch.shape[:axis] + (n, size // n) + batch.shape[axis + 1:]
  xp = jnp if isinstance(batch, jax.Array) else np
  return xp.moveaxis(batch.reshape(shape), axis, 0)
