"""Trains an experiment by name, or resumes the run a workdir holds.

  python -m wgan_jax.train --experiment=toy_8gaussians --workdir=workdirs/toy
  python -m wgan_jax.train --experiment=toy_8gaussians --experiment.optimizer.lr=1e-4
  python -m wgan_jax.train --workdir=workdirs/toy          # resume with the saved config

`--experiment.KEY=VALUE` overrides any key of the experiment's config; the
value is read as the type the key already holds. Running the same command
again resumes from the newest intact checkpoint; SIGTERM / Ctrl-C save a
checkpoint and exit 0. Every failure ends in one `error:` line: exit 2 for bad
input (command line, config, workdir, data), 1 for what happens while running
(a non-finite value, a write that fails), 130 / 143 for a signal that stopped
it before it could save.
"""
from __future__ import annotations

import os
import sys

from wgan_jax import startup

startup.quiet_console()
startup.stop_quietly_while_loading("no checkpoint was written")

# pylint: disable=wrong-import-position
import json
import re
from typing import Any, NoReturn

from absl import app, flags, logging
import ml_collections

from wgan_jax import cluster, configs, supervisor, workdirs
from wgan_jax.configs import migration
from wgan_jax.cli import DEFAULT_EXPERIMENT, flags_parser, quiet_orbax_logs, usage_error

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, TensorBoard events, figures and summary.json go "
    "(default: workdirs/<experiment>). A workdir holding a run resumes it; with no "
    "--experiment its saved config is used. With several hosts: a path all of them see.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process runs on GPU clusters (and tests): host:port "
    "of process 0. Not needed on Cloud TPU pods, SLURM or Open MPI (detected).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Multi-process runs: the number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "Multi-process runs: this process's index, 0 .. n-1.")
_COORDINATOR_TIMEOUT = flags.DEFINE_integer(
    "coordinator_timeout", 300, "Multi-process runs: seconds to wait for every process to "
    "reach the coordinator before giving up with one line.")


def _saved_run_config(workdir: str) -> tuple[int | None, dict[str, Any]] | None:
  """(step, config) of the run `workdir` holds: from its newest readable
  checkpoint metadata, else from its config.json (step None), else None."""
  from wgan_jax import checkpointing  # pylint: disable=import-outside-toplevel
  saved = checkpointing.saved_config(workdir)
  if saved is not None:
    return saved
  path = os.path.join(workdir, "config.json")
  # Only for checkpoints whose metadata is gone: config.json alone (a run stopped
  # before its first save) holds nothing to resume.
  if checkpointing.finished_steps(workdir) and os.path.isfile(path):
    try:
      with open(path) as f:
        return None, json.load(f)
    except (OSError, ValueError) as e:
      logging.warning("cannot read %s (%s)", path, type(e).__name__)
  return None


def resolve_config(name: str | None, overrides: list[tuple[str, str]], workdir: str
                   ) -> ml_collections.ConfigDict:
  """The experiment to run in `workdir`: the saved run's config where there is one
  (refusing a different experiment or a shape-changing override), else `name`'s."""
  saved = _saved_run_config(workdir)
  if saved is not None:  # In today's keys, each translation said once.
    upgraded, notes = migration.upgrade(saved[1])
    for note in notes:
      logging.warning("%s was saved by an older version: %s", workdir, note)
    saved = saved[0], upgraded
  if name is None and saved is not None:
    config = configs.from_dict(saved[1], overrides)
  else:
    config = configs.from_command_line(name or DEFAULT_EXPERIMENT, overrides)
  if saved is not None:
    changed = configs.check_resumable(saved[1], config, workdir, saved[0])
    # A new length is how a run is extended: said, not warned about.
    length = [c for c in changed if c.startswith("num_generator_steps:")]
    others = [c for c in changed if c not in length]
    if length:
      logging.info("resuming %s with a new length, %s", workdir, length[0])
    if others:
      logging.warning("resuming %s with changed settings: %s", workdir, "; ".join(others))
  return config


def _fail(message: str, code: int) -> NoReturn:
  """One error line, then leave without waiting for Orbax's background threads:
  after a failed save they wait minutes for signals that will not come, and
  nothing is left to write (a failed save never replaces a finished one)."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  logging.flush()
  os._exit(code)  # pylint: disable=protected-access


def main(parsed) -> None:
  name, overrides, _ = parsed
  workdir = _WORKDIR.value or os.path.join("workdirs", name or DEFAULT_EXPERIMENT)
  holds_a_run = any(os.path.exists(os.path.join(workdir, f)) for f in ("checkpoints",
                                                                        "config.json"))
  if name is not None or not holds_a_run:
    try:  # Fail fast, before JAX is imported, on a bad experiment or override.
      configs.from_command_line(name or DEFAULT_EXPERIMENT, overrides)
    except configs.ConfigError as e:
      usage_error(str(e))
  # pylint: disable=import-outside-toplevel
  from wgan_jax.preemption import StopRequested, raise_on_signals, watch_signals
  watch_signals(lambda: _newest_checkpoint_said(workdir))
  raise_on_signals()
  problem = workdirs.problem(workdir)
  if problem:
    usage_error(problem)
  if _COORDINATOR_TIMEOUT.value < 1:
    usage_error(f"--coordinator_timeout={_COORDINATOR_TIMEOUT.value} must be at least 1 s")
  if _several_processes() and not os.environ.get(supervisor.CHILD):
    # One process of several: the training runs as a child, so that the loss of
    # another process ends this one with a line, not JAX's abort (supervisor.py).
    which = (f"process {_PROCESS_ID.value} of {_NUM_PROCESSES.value}"
             if _NUM_PROCESSES.value else "this process of the run")
    sys.exit(supervisor.supervise(sys.argv[1:], which, lambda: _newest_checkpoint_said(workdir)))

  quiet_orbax_logs()
  try:
    summary = _run(name, overrides, workdir)
    if "stopped_by" in summary:
      then = ("resume" if summary["during"] == "training" else
              "evaluate it (training is complete)")
      print(f"stopped by {summary['stopped_by']} at generator step {summary['generator_steps']}"
            + ("" if summary["during"] == "training" else f" during {summary['during']}")
            + f": checkpoint in {summary['checkpoint']}; run the same command to {then}",
            file=sys.stderr)
  except StopRequested as e:
    step, newest = getattr(e, "step", None), getattr(e, "newest_checkpoint", None)
    where = (f"at generator step {step} without a final checkpoint" if step is not None
             else "during start-up")
    kept = (f"checkpoint {newest} is the newest and a rerun resumes from it" if newest is not None
            else _newest_checkpoint_said(workdir) if step is None else "no checkpoint was written")
    _fail(f"stopped by {e.reason} {where}; {kept}", e.exit_code)


# A collective that failed because a peer is gone (gloo on CPU, NCCL on GPU, the runtime).
_LOST_PEER = re.compile(r"Gloo|NCCL|Connection reset|Connection refused|UNAVAILABLE|"
                        r"DEADLINE_EXCEEDED|Socket closed", re.IGNORECASE)


def _newest_checkpoint_said(workdir: str) -> str:
  """Where the run stands on disk, for a line that ends it."""
  from wgan_jax import checkpointing  # pylint: disable=import-outside-toplevel
  steps = checkpointing.finished_steps(workdir)
  return (f"checkpoint {max(steps)} is the newest and a rerun resumes from it" if steps
          else "no checkpoint was written")


def _several_processes() -> bool:
  """Whether this process is one of several of a run (flags or a detected launcher)."""
  return (_NUM_PROCESSES.value or 1) > 1 or cluster.cluster_environment() is not None


def _processes_disagree(config: ml_collections.ConfigDict, workdir: str) -> str | None:
  """With several processes: what differs between their configs and workdirs
  (one line), or None. Each process sees every config (the coordination
  service's store), so all of them stop alike, before any collective."""
  from wgan_jax import multihost  # pylint: disable=import-outside-toplevel
  mine = json.dumps({"workdir": os.path.abspath(workdir), **configs.flatten(config.to_dict())},
                    sort_keys=True)
  try:
    everyone = [json.loads(v) for v in multihost.exchange("config", mine,
                                                           _COORDINATOR_TIMEOUT.value)]
  except multihost.CoordinatorError as e:
    _fail(str(e), 1)
  first = everyone[0]
  differences = [f"process {i} has {k}={theirs.get(k)!r} where process 0 has {first.get(k)!r}"
                 for i, theirs in enumerate(everyone[1:], 1)
                 for k in sorted(set(first) | set(theirs)) if first.get(k) != theirs.get(k)]
  if not differences:
    return None
  return (f"the {len(everyone)} processes were started with different settings ("
          + "; ".join(differences[:4]) + (f"; {len(differences) - 4} more" if len(differences) > 4
                                           else "")
          + "): start every process with the same command")


def _run(name: str | None, overrides: list[tuple[str, str]], workdir: str) -> dict[str, Any]:
  """Distributed start-up, the config, the training; every failure is one line."""
  # Imported here so that bad command lines fail fast, before JAX starts.
  # pylint: disable=import-outside-toplevel
  import jax
  from wgan_jax import checkpointing, loop, multihost
  from wgan_jax.data import DataError
  from wgan_jax.devices import DoesNotFit
  try:  # Before anything else touches JAX's backend.
    multihost.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                    timeout_s=_COORDINATOR_TIMEOUT.value)
  except ValueError as e:
    usage_error(str(e))
  except multihost.CoordinatorError as e:
    _fail(str(e), 1)
  try:
    config = resolve_config(name, overrides, workdir)
  except configs.ConfigError as e:
    usage_error(str(e))
  problem = _processes_disagree(config, workdir)
  if problem:
    usage_error(problem)
  if jax.process_index() == 0:  # One run a workdir (the processes of a run share it).
    try:
      workdirs.lock(workdir)
    except workdirs.WorkdirInUse as e:
      usage_error(str(e))
  logging.info("experiment %s, workdir %s, overrides %s", config.experiment, workdir,
               overrides)
  try:
    return loop.train_and_evaluate(config, workdir)
  except DoesNotFit as e:
    workdirs.abandon(workdir)
    _fail(f"batch_size={config.batch_size} does not fit the devices: {e}; lower batch_size, "
          "set accumulation_steps (README: the objective), or use more devices", 2)
  except (DataError, checkpointing.CheckpointError, configs.ConfigError) as e:
    workdirs.abandon(workdir)  # Bad input leaves no trace.
    _fail(str(e), 2)
  except (loop.NonFiniteError, checkpointing.CheckpointWriteError,
          loop.OutputWriteError) as e:
    # A save's collective (Orbax's barriers) also fails when a peer is gone.
    _end_if_a_peer_is_lost(str(e), workdir, known_lost_only=True)
    _fail(str(e), 1)
  except jax.errors.JaxRuntimeError as e:
    said = " ".join(str(e).split())
    if "RESOURCE_EXHAUSTED" in said:
      _fail(f"out of memory on the devices ({said[:200]}); lower batch_size, set "
            "accumulation_steps (README: the objective), or use more devices; "
            f"{_newest_checkpoint_said(workdir)}", 1)
    _end_if_a_peer_is_lost(said, workdir, known_lost_only=False)
    raise


def _end_if_a_peer_is_lost(said: str, workdir: str, known_lost_only: bool) -> None:
  """Ends the process with one line when `said` (a failure) is a collective
  that failed because another process of the run is gone: which one, the
  coordination service tells (waiting at most the heartbeat timeout). At once:
  JAX's shutdown barrier would wait for the lost process, then abort. With
  `known_lost_only`, a failure whose lost process is not found is left to the caller."""
  import jax  # pylint: disable=import-outside-toplevel
  from wgan_jax import multihost  # pylint: disable=import-outside-toplevel
  if jax.process_count() == 1 or not _LOST_PEER.search(said):
    return
  lost = multihost.lost_processes()
  if not lost and known_lost_only:
    return
  cause = "" if lost else f" ({said[:160]})"
  _fail(f"process {jax.process_index()} of {jax.process_count()}: {cluster.lost_said(lost)}"
        f"{cause}; {_newest_checkpoint_said(workdir)}: restart every process with the same "
        "command", 1)

if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(default=None))
