"""Trains an experiment by name, or resumes the run a workdir holds.

  python -m wgan_jax.train --experiment=toy_8gaussians --workdir=workdirs/toy
  python -m wgan_jax.train --experiment=toy_8gaussians --experiment.optimizer.lr=1e-4
  python -m wgan_jax.train --workdir=workdirs/toy          # resume with the saved config

`--experiment.KEY=VALUE` overrides any key of the experiment's config; the
value is read as the type the key already holds. Running the same command
again resumes from the newest intact checkpoint; SIGTERM / Ctrl-C save a
checkpoint and exit 0.
"""
from __future__ import annotations

import errno
import os
import sys
import tempfile

from absl import app, flags, logging
import ml_collections

from wgan_jax import configs
from wgan_jax.cli import DEFAULT_EXPERIMENT, flags_parser, quiet_orbax_info_logs, usage_error

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


def workdir_problem(workdir: str) -> str | None:
  """Why `workdir` cannot hold a run (not a directory, not writable), or None.
  Nothing is created: a failed check leaves no trace."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    return f"--workdir={workdir} is a file; pass a directory"
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    return f"--workdir={workdir} cannot be created: {existing} is a file; pass another directory"
  try:  # Root passes os.access everywhere: try the real thing, and leave nothing behind.
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    reason = errno.errorcode.get(e.errno, "") or e.strerror or type(e).__name__
    return (f"--workdir={workdir} is not writable ({reason} in {existing}); pass a directory "
            "you can write to")
  return None


def resolve_config(name: str | None, overrides: list[tuple[str, str]], workdir: str
                   ) -> ml_collections.ConfigDict:
  """The experiment to run in `workdir`: the saved run's config where there is one
  (refusing a different experiment or a shape-changing override), else `name`'s."""
  from wgan_jax import checkpointing  # pylint: disable=import-outside-toplevel
  saved = checkpointing.saved_config(workdir)
  if name is None and saved is not None:
    config = configs.from_dict(saved[1], overrides)
  else:
    config = configs.from_command_line(name or DEFAULT_EXPERIMENT, overrides)
  if saved is not None:
    changed = configs.check_resumable(saved[1], config, workdir, saved[0])
    if changed:
      logging.warning("resuming %s with changed settings: %s", workdir, "; ".join(changed))
  return config


def main(parsed) -> None:
  name, overrides, _ = parsed
  if name is not None:
    try:  # Fail fast, before JAX starts, on a bad experiment or override.
      configs.from_command_line(name, overrides)
    except configs.ConfigError as e:
      usage_error(str(e))
  workdir = _WORKDIR.value or os.path.join("workdirs", name or DEFAULT_EXPERIMENT)
  problem = workdir_problem(workdir)
  if problem:
    usage_error(problem)

  quiet_orbax_info_logs()
  # Imported here so that bad command lines fail fast, before JAX starts.
  from wgan_jax import checkpointing, parallel, trainer  # pylint: disable=import-outside-toplevel
  from wgan_jax.data.images import DataError  # pylint: disable=import-outside-toplevel
  try:  # Before anything else touches JAX's backend.
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ValueError as e:
    usage_error(str(e))
  try:
    config = resolve_config(name, overrides, workdir)
  except configs.ConfigError as e:
    usage_error(str(e))
  logging.info("experiment %s, workdir %s, overrides %s", config.experiment, workdir,
               overrides)
  try:
    summary = trainer.train_and_evaluate(config, workdir)
  except (DataError, checkpointing.CheckpointError, configs.ConfigError) as e:
    usage_error(str(e))
  except (trainer.NonFiniteError, checkpointing.CheckpointWriteError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if "stopped_by" in summary:
    print(f"stopped by {summary['stopped_by']} at generator step {summary['generator_steps']}: "
          f"checkpoint in {summary['checkpoint']}; run the same command to resume",
          file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(default=None))
