"""Devices, meshes and shardings for data parallelism; multi-host start-up.

Two ways to run the step functions on many devices, giving the same numbers
as one device on the global batch:

- `jax.jit` over a Mesh (the main path): `make_mesh()`, the state put on
  every device with `replicate`, each real batch sharded along the mesh's
  `data` axis (`batch_sharding`, `global_batch_from_local`). The step
  functions are unchanged: XLA partitions the global computation (batch norm
  statistics, means, gradients) and inserts the cross-device reductions.
- `jax.pmap`: the state with a leading device axis (`pmap_replicate`), the
  batch split into per-device shards (`split_for_pmap`), the steps run with
  `GanSpec.axis_name` set (see steps.py).

Across hosts both use the same device order (grouped by process), so process
p reads rows [p * B / P, (p + 1) * B / P) of every global batch of B.
"""
from __future__ import annotations

import glob
import os
import sys
import threading
import time
from typing import Mapping, Sequence

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from wgan_jax.configs import schema
from wgan_jax.state import PyTree

DATA_AXIS = "data"
# How the steps run over the devices (config `parallelism`).
PARALLELISMS = schema.PARALLELISMS

# Google's PCI vendor id: a Cloud TPU VM has its chips attached through PCI.
_GOOGLE_PCI_VENDOR = "0x1ae0"


# ----------------------------------------------------------------------------
# Multi-host start-up.
# ----------------------------------------------------------------------------


def _tpu_chips_attached() -> bool:
  """Whether this machine is a Cloud TPU VM (read from sysfs: must not touch
  the XLA backend before `jax.distributed.initialize`)."""
  for path in glob.glob("/sys/bus/pci/devices/*/vendor"):
    try:
      with open(path) as f:
        if f.read().strip() == _GOOGLE_PCI_VENDOR:
          return True
    except OSError:
      continue
  return False


def _count(value: str | None) -> int:
  try:
    return int(value or 0)
  except ValueError:
    return 0


def cluster_environment(environ: Mapping[str, str] | None = None) -> str | None:
  """The multi-process launcher this process runs under, as
  `jax.distributed.initialize()` auto-detects it, or None for a plain process.

  "tpu": a Cloud TPU VM (TPU chips on PCI, or the TPU worker list / Megascale
  variables that GKE and multi-slice set); JAX reads the workers from the
  metadata server, which is correct for one host as for a pod slice.
  "slurm": an srun step with more than one task. "openmpi": mpirun.
  """
  env = os.environ if environ is None else environ
  workers = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES")
  if workers or env.get("MEGASCALE_COORDINATOR_ADDRESS") or _tpu_chips_attached():
    return "tpu"
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
           "SLURM_LOCALID")
  if all(k in env for k in slurm) and _count(env["SLURM_NTASKS"]) > 1:
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in env and _count(env.get("OMPI_COMM_WORLD_SIZE", "2")) > 1:
    return "openmpi"
  return None


class CoordinatorError(RuntimeError):
  """The processes of a multi-process run did not find each other: one line."""


def _exit_with(message: str) -> None:
  """Prints `message` as one error line and ends the process. JAX's distributed
  client aborts the whole process (a C++ check failure, with its stack) when it
  cannot register in time, so there is no exception to catch: this comes first."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(1)  # pylint: disable=protected-access


# JAX's own registration deadline, beyond ours, so that ours is the one that fires.
_JAX_TIMEOUT_MARGIN_S = 60


def _initialize_waiting(timeout_s: int, expired: str, **kwargs) -> None:
  """`jax.distributed.initialize(**kwargs)` on a helper thread, the main thread
  waiting: signal handlers keep running there (a Ctrl-C is answered at once,
  not after the C++ call returns), and after `timeout_s` one line ends it all."""
  errors: list[BaseException] = []

  def initialize():
    try:
      jax.distributed.initialize(initialization_timeout=timeout_s + _JAX_TIMEOUT_MARGIN_S,
                                 **kwargs)
    except BaseException as e:  # pylint: disable=broad-except  # handed to the main thread
      errors.append(e)

  thread = threading.Thread(target=initialize, name="jax-distributed-initialize", daemon=True)
  thread.start()
  deadline = time.monotonic() + timeout_s
  while thread.is_alive():
    if time.monotonic() > deadline:
      _exit_with(expired)
    thread.join(0.1)
  if errors:
    raise CoordinatorError(f"{' '.join(str(errors[0]).split())[:300]}: check "
                           "--coordinator_address and that every process can reach it"
                           ) from errors[0]


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, timeout_s: int = 300) -> None:
  """Joins this process to a multi-process JAX run; call it first, before any
  other JAX call (it must precede the backend's start).

  - Explicit values (GPU clusters, tests): `jax.distributed.initialize` with
    them; the coordinator (process 0) listens on `coordinator_address`
    ("host:port"); every process waits up to `timeout_s` for all to arrive,
    then prints one line and exits (JAX would abort the process).
  - None of them, under a launcher JAX detects (Cloud TPU VM or pod slice,
    SLURM, Open MPI; see `cluster_environment`): `jax.distributed.initialize()`
    with no arguments, which reads everything from the environment.
  - None of them otherwise: nothing; one process owns all local devices.

  Safe to call again: a second call after a successful one does nothing.
  """
  if jax.distributed.is_initialized():
    logging.info("jax.distributed is already initialized (process %d of %d)",
                 jax.process_index(), jax.process_count())
    return
  explicit = (coordinator_address, num_processes, process_id)
  if all(v is None for v in explicit):
    launcher = cluster_environment()
    if launcher is None:
      return
    logging.info("initializing jax.distributed from the %s environment", launcher)
    _initialize_waiting(timeout_s, f"the processes of this {launcher} job did not all start "
                        f"within {timeout_s} s; check the job's other tasks")
  else:
    if None in explicit:
      raise ValueError("give all of coordinator_address, num_processes and process_id "
                       f"(got {coordinator_address!r}, {num_processes!r}, {process_id!r}), "
                       "or none of them on a TPU pod / SLURM / Open MPI")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"process_id={process_id} is not in 0 .. {num_processes - 1} "
                       f"(num_processes={num_processes})")
    logging.warning("process %d of %d: waiting up to %d s for all %d processes to reach the "
                    "coordinator at %s (process 0)", process_id, num_processes, timeout_s,
                    num_processes, coordinator_address)
    _initialize_waiting(
        timeout_s,
        f"process {process_id} of {num_processes}: the {num_processes} processes did not all "
        f"reach the coordinator at {coordinator_address} within {timeout_s} s; start every "
        "process with the same --coordinator_address and --num_processes (process 0 on that "
        "host), or check that they can reach it",
        coordinator_address=coordinator_address, num_processes=num_processes,
        process_id=process_id)
  logging.info("process %d of %d; %d local of %d devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


# ----------------------------------------------------------------------------
# jit over a Mesh.
# ----------------------------------------------------------------------------


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis `data` over `devices` (default: all devices of all
  processes), ordered by process so each process's rows of a batch are one
  contiguous block. Axis type Auto: XLA propagates shardings through the
  unchanged step functions (`jax.make_mesh` would make it Explicit)."""
  return Mesh(np.asarray(sorted_devices() if devices is None else devices), (DATA_AXIS,))


def sorted_devices() -> list[jax.Device]:
  """Every device of every process, ordered by process."""
  return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


def on_every_process(flag: bool) -> bool:
  """Whether `flag` holds on every process (each passes its own): the agreement
  processes need before they take different paths around a collective."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return bool(np.all(multihost_utils.process_allgather(np.int32(flag))))


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
