"""Several processes, one run: finding the cluster, starting
`jax.distributed` with a bounded wait, and agreeing on host-side decisions.

On a Cloud TPU VM (pod slice), SLURM or Open MPI the cluster is detected;
elsewhere (GPU hosts, tests) `--coordinator_address`, `--num_processes` and
`--process_id` name it. A coordinator that never answers, or a process that
never arrives, ends in one line (`CoordinatorError`), not a hang.
"""
from __future__ import annotations

import glob
import os
import sys
import threading
import time
from typing import Mapping

from absl import logging
import jax
import numpy as np

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


def on_every_process(flag: bool) -> bool:
  """Whether `flag` holds on every process (each passes its own): the agreement
  processes need before they take different paths around a collective."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return bool(np.all(multihost_utils.process_allgather(np.int32(flag))))


def exchange(name: str, value: str, timeout_s: int = 300) -> list[str]:
  """Every process's `value` under `name`, by process index, through the
  coordination service's key-value store (no device collective): each process
  posts its own and reads the others', waiting at most `timeout_s` for each.
  One process: [value]. A process that never posts is a CoordinatorError."""
  if jax.process_count() == 1:
    return [value]
  from jax._src import distributed  # pylint: disable=import-outside-toplevel
  client = distributed.global_state.client
  client.key_value_set(f"wgan_jax/{name}/{jax.process_index()}", value)
  values = []
  for i in range(jax.process_count()):
    try:
      values.append(client.blocking_key_value_get(f"wgan_jax/{name}/{i}", timeout_s * 1000))
    except Exception as e:  # pylint: disable=broad-except  # the client's own error types
      raise CoordinatorError(
          f"process {i} of {jax.process_count()} did not post its {name} within {timeout_s} s "
          f"({type(e).__name__}); start every process with the same command") from e
  return values
