"""Several processes, one run: finding the cluster, starting
`jax.distributed` with a bounded wait, and agreeing on host-side decisions.

On a Cloud TPU VM (pod slice), SLURM or Open MPI the cluster is detected;
elsewhere (GPU hosts, tests) `--coordinator_address`, `--num_processes` and
`--process_id` name it. A coordinator that never answers, or a process that
never arrives, ends in one line (`CoordinatorError`), not a hang.
"""
from __future__ import annotations

import os
import sys
import threading
import time

from absl import logging
import jax
import numpy as np

from wgan_jax.cluster import cluster_environment

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
# How long the coordination service waits for a process's heartbeat before it
# takes the process for lost and ends the others (JAX's default is 100 s): a
# process stuck that long is lost for training too. The heartbeats come from a
# C++ thread, so a busy process still sends them.
HEARTBEAT_TIMEOUT_S = int(os.environ.get("WGAN_JAX_HEARTBEAT_TIMEOUT_S", 20))


def _initialize_waiting(timeout_s: int, expired: str, **kwargs) -> None:
  """`jax.distributed.initialize(**kwargs)` on a helper thread, the main thread
  waiting: signal handlers keep running there (a Ctrl-C is answered at once,
  not after the C++ call returns), and after `timeout_s` one line ends it all."""
  errors: list[BaseException] = []

  def initialize():
    try:
      jax.distributed.initialize(initialization_timeout=timeout_s + _JAX_TIMEOUT_MARGIN_S,
                                 heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
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


def lost_processes(margin_s: float = 10.0) -> list[int] | None:
  """The processes of the run the coordination service no longer counts as
  alive, asked after a collective failed: it answers once every process still
  alive has asked too, or once it has taken a dead one for lost (at most the
  heartbeat timeout). [0] when the coordinator itself does not answer; None
  when no answer comes in time (then which one is unknown)."""
  from jax._src import distributed  # pylint: disable=import-outside-toplevel
  everyone = list(range(jax.process_count()))
  answer: list[list[int]] = []

  def ask():
    try:
      live = distributed.global_state.client.get_live_nodes(everyone)
      answer.append([p for p in everyone if p not in live])
    except Exception:  # pylint: disable=broad-except  # the client's own error types
      answer.append([0])  # The coordination service, on process 0, is gone.

  thread = threading.Thread(target=ask, name="jax-live-processes", daemon=True)
  thread.start()
  thread.join(HEARTBEAT_TIMEOUT_S + margin_s)
  return answer[0] if answer else None
