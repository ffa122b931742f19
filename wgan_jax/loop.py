"""The training loop: config -> data -> state -> compiled iteration -> metrics.

`train_and_evaluate(config, workdir)` is the whole program behind
`python -m wgan_jax.train`. It reads top to bottom in stages: devices and
data, state, the compiled iteration, logging, the loop, the final checkpoint,
the final evaluation. What it builds comes from `builders`, `inputs`,
`iteration` and `evaluation`; the loop itself only dispatches iterations,
reads their metrics back a bounded distance behind (`inflight`), logs, saves
and evaluates on schedule, and stops on a signal.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from wgan_jax import (builders, checkpointing, evaluators, files, inputs, iteration, progress,
                      transfer, writers)
from wgan_jax import run as run_lib
from wgan_jax.configs.n_critic import n_critic_at
from wgan_jax.devices import Devices
from wgan_jax.inflight import InFlight, NonFiniteError
from wgan_jax.preemption import StopRequested, StopSignals
from wgan_jax.state import TrainState, generator_steps

__all__ = ["train_and_evaluate", "NonFiniteError", "OutputWriteError", "StopRequested"]

# Folded into the RNG key for each restart after a non-finite value.
_RESTART_STREAM = 0x72657374


class OutputWriteError(RuntimeError):
  """A file of the run (figure, summary, config) could not be written: one line."""


class _Loop:
  """What the loop carries: the state (laid out on the devices), the stream
  that feeds it, the iterations in flight, the last logged means."""

  def __init__(self, devices: Devices, state: TrainState, stream: inputs.Stream,
               metadata: dict[str, Any] | None = None):
    self.devices, self.state, self.stream = devices, devices.put_state(state), stream
    self.step = generator_steps(state)
    self.inflight = InFlight()
    self.scalars: dict[str, float] = dict((metadata or {}).get("train_scalars") or {})
    # The training time of the iterations the state holds, over every segment of the run.
    self._seconds_before = float((metadata or {}).get("train_seconds") or 0.0)
    self._segment_start = time.perf_counter()

  def train_seconds(self) -> float:
    return self._seconds_before + time.perf_counter() - self._segment_start

  def global_view(self) -> TrainState:
    """The global view of the state, for checkpoints."""
    return self.devices.global_view(self.state)

  def gathered(self) -> TrainState:
    """The state with whole arrays on every device, for evaluation and checks."""
    return self.devices.gathered(self.state)


# ----------------------------------------------------------------------------
# Checkpoints and data positions.
# ----------------------------------------------------------------------------


def _data_positions(stream: inputs.Stream) -> list[int] | None:
  """Every process's data position (collective with several processes)."""
  if stream.position is None:
    return None
  if jax.process_count() == 1:
    return [stream.position]
  return [int(p) for p in multihost_utils.process_allgather(np.int64(stream.position))]


def _own_position(metadata: dict[str, Any] | None) -> int:
  """This process's data position in a checkpoint's metadata (0 for a fresh run)."""
  positions = (metadata or {}).get("data_position")
  if not positions:
    return 0
  if len(positions) != jax.process_count():
    logging.warning("the checkpoint was written by %d processes, this run has %d: each process "
                    "starts its data stream afresh, so the data order does not continue exactly",
                    len(positions), jax.process_count())
    return 0
  return positions[jax.process_index()]


def _save(checkpointer: checkpointing.Checkpointer, run: _Loop,
          config: ml_collections.ConfigDict, force: bool = False,
          scores: dict[str, Any] | None = None) -> None:
  """Saves the run, never a non-finite one: every iteration's metrics, and the
  finiteness of the parameters each left, are checked first."""
  run.inflight.drain()
  checkpointer.save(run.global_view(), config, _data_positions(run.stream), force=force,
                    train_scalars=run.scalars, scores=scores, train_seconds=run.train_seconds())


@contextlib.contextmanager
def _finishing_saves_on_error(checkpointer: checkpointing.Checkpointer):
  """On the way out with an error, let the save in flight (of a good state) finish."""
  try:
    yield
  except BaseException:
    try:
      checkpointer.close()
    except Exception:  # pylint: disable=broad-except
      pass  # The error being raised says more than a second one from the same save.
    raise


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


def _eval_and_report(evaluator: evaluators.Evaluator, state: TrainState, workdir: str, tag: str,
                     writer: writers.MetricWriter) -> dict[str, Any]:
  step = generator_steps(state)
  metrics, image = evaluator(state, workdir, tag)
  if metrics:  # The console writer logs them, once.
    writer.write_scalars(step, {f"eval/{k}": v for k, v in metrics.items()})
  writer.write_images(step, {"samples": image if image.ndim == 4 else image[None]})
  return metrics


# ----------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------


def _train(config: ml_collections.ConfigDict, run: _Loop, iterate: iteration.Iteration,
           checkpointer: checkpointing.Checkpointer, evaluator: evaluators.Evaluator,
           workdir: str, writer: writers.MetricWriter, stop: StopSignals) -> str | None:
  """Generator iterations until the last one or a stop signal; returns the signal's name."""
  total = config.num_generator_steps
  # Rate and time left with every log, so the first comes early in a short run.
  report_progress = progress.Progress(total, config.log_every, writer)
  first = run.step
  for step in range(run.step, total):
    n_critic = n_critic_at(step, config)
    started = time.perf_counter()
    run.state, metrics = iterate(run.state, n_critic, run.stream.next(n_critic))
    if step == first:  # The call compiled the program: long for a big one, so said.
      logging.info("compiled the generator iteration in %.1f s", time.perf_counter() - started)
    done = run.step = step + 1
    run.inflight.push(done, metrics)  # Waits for the iteration `inflight.DEPTH` back.
    try:
      report_progress(done)
      if done % config.log_every == 0 or done == total:
        run.inflight.drain()
        run.scalars = run.inflight.means()
        writer.write_scalars(done, {f"train/{k}": v for k, v in run.scalars.items()})
    except OSError as e:  # E.g. metrics.jsonl on a full disk.
      _save_due(checkpointer, run, config)
      raise _write_error(e.filename or f"the logs of step {done} in {workdir}", e,
                         checkpointer) from e
    # A stop (agreed by every process) comes first: the caller saves this step,
    # and no evaluation delays that.
    reason = stop.requested(done)
    if reason and done != total:
      return reason
    evaluate = bool(config.eval_every) and done % config.eval_every == 0 and done != total
    if evaluate and checkpointer.best_metric:
      # The checkpoint carries the score (orbax keeps the best one): score, then save.
      _save(checkpointer, run, config, force=True,
            scores=_evaluate_step(evaluator, run, workdir, done, writer, checkpointer, config))
    else:
      if checkpointer.due(done):
        _save(checkpointer, run, config)
      if evaluate:
        _evaluate_step(evaluator, run, workdir, done, writer, checkpointer, config)
  return None


def _evaluate_step(evaluator: evaluators.Evaluator, run: _Loop, workdir: str, done: int,
                   writer: writers.MetricWriter,
                   checkpointer: checkpointing.Checkpointer,
                   config: ml_collections.ConfigDict) -> dict[str, Any]:
  run.inflight.drain()  # A non-finite generator is never scored.
  try:
    return _eval_and_report(evaluator, run.gathered(), workdir, f"{done:06d}", writer)
  except OSError as e:
    _save_due(checkpointer, run, config)  # With best_metric, the save comes after the scores.
    raise _write_error(f"the evaluation files of step {done} in {workdir}", e,
                       checkpointer) from e


def _restart_after_nonfinite(error: NonFiniteError, checkpointer: checkpointing.Checkpointer,
                             parts: run_lib.Run, attempt: int) -> _Loop:
  """The last good checkpoint with a new RNG stream (config `nonfinite_restarts`)."""
  checkpointer.wait()
  restored = checkpointer.restore_intact(parts.abstract_state)
  if restored is None:
    raise NonFiniteError(f"{error}; no checkpoint to restart from") from error
  state, metadata = restored
  # A different stream from here on: other noise, other interpolates.
  fold = lambda key: jax.random.fold_in(key, _RESTART_STREAM + attempt)
  state = state.replace(rng=fold(state.rng) if state.rng.ndim == 1 else jax.vmap(fold)(state.rng))
  logging.warning("%s: restart %d from the checkpoint of step %d with a new RNG stream",
                  error, attempt, generator_steps(state))
  return _Loop(parts.devices, state, parts.stream(generator_steps(state),
                                                 _own_position(metadata)), metadata)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir`, resuming from its newest intact checkpoint.

  Returns the final summary (also written to `workdir/summary.json`; a run
  already at its last step keeps the one it wrote), or, when stopped by
  SIGTERM / SIGINT, {"stopped_by", "during", "generator_steps", "checkpoint"}
  after saving a checkpoint at the step it stopped at. A signal during
  start-up, or a second Ctrl-C, raises `StopRequested` (its `step` and
  `newest_checkpoint` say where the run stands).
  """
  with StopSignals() as stop:
    return _train_and_evaluate(config, workdir, stop)


def _stopped(reason: str, during: str, step: int, checkpointer: checkpointing.Checkpointer
             ) -> dict[str, Any]:
  return {"stopped_by": reason, "during": during, "generator_steps": step,
          "checkpoint": os.path.join(checkpointer.directory, str(step))}


def _summary_of(path: str, step: int) -> dict[str, Any] | None:
  """The summary at `path` if it reads back and describes generator step `step`."""
  try:
    with open(path) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  return summary if isinstance(summary, dict) and summary.get("generator_steps") == step else None


def _save_due(checkpointer: checkpointing.Checkpointer, run: _Loop,
              config: ml_collections.ConfigDict) -> None:
  """Before a failed write of the logs ends the run: the checkpoint due at this
  step (the final one at the last step), so nothing computed then is lost."""
  if checkpointer.due(run.step) or run.step == config.num_generator_steps:
    _save(checkpointer, run, config, force=True)


def _in_the_way(path: str, saved: str = "") -> files.WorkdirFileError:
  return files.WorkdirFileError(f"{path} is a folder, where the run writes a file: move it "
                                f"away, then run the same command{saved}")


def _check_workdir_files(workdir: str) -> None:
  """Bad input in the workdir, found before the run writes anything: a folder where
  it writes a file, a metrics file that is not ours (a cut last line is repaired)."""
  for name in ("config.json", "summary.json"):
    if os.path.isdir(os.path.join(workdir, name)):
      raise _in_the_way(os.path.join(workdir, name))
  writers.metric_lines(os.path.join(workdir, writers.METRICS_FILE))


def _write_error(what: str, error: OSError, checkpointer: checkpointing.Checkpointer
                 ) -> OutputWriteError | files.WorkdirFileError:
  """The one line for a file of the run that could not be written. A folder
  where the file goes is bad input (exit 2), not a full disk."""
  checkpointer.wait()  # The save in flight, of a good state, is part of what is kept.
  newest = checkpointer.latest_step()
  saved = (f": checkpoint {newest} is saved and a rerun resumes from it" if newest is not None
           else "")
  if error.errno == errno.EISDIR and error.filename:
    return _in_the_way(error.filename, saved)
  reason = f"[Errno {error.errno}] {error.strerror}" if error.errno else str(error)
  return OutputWriteError(
      f"could not write {what} ({reason}); free disk space or make the workdir writable, then "
      f"run the same command{saved}")


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, stop: StopSignals
                        ) -> dict[str, Any]:
  # --- Devices, data, spec, compiled iteration, evaluator: built once (run.py).
  # First: missing data or unusable settings must not leave a workdir behind.
  parts = run_lib.build(config)
  devices, sweep, evaluator = parts.devices, parts.sweep, parts.evaluator
  starts_fresh = not (os.path.isdir(workdir) and checkpointing.finished_steps(workdir))
  if config.init_from and starts_fresh:  # Once it has its own checkpoints, a run resumes them.
    transfer.check(config, parts.abstract_state)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    _check_workdir_files(workdir)
  if sweep is None:
    logging.info("%d devices (%s), %d processes; %d examples a batch on each device",
                 devices.count, config.parallelism, jax.process_count(),
                 config.batch_size // devices.count)
  else:
    logging.info("a sweep of %d models over %d devices (%d each), %d processes; each model "
                 "trains on batches of %d", sweep.size, devices.count,
                 sweep.size // devices.count, jax.process_count(), config.batch_size)
  builders.log_backend_choices(config)

  # --- State: the newest intact checkpoint, restored into an abstract target in
  # the run's shardings, or a fresh state born there; the data where it stood.
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every,
                                            config.keep_checkpoints, evaluator.best_metric)
  abstract = parts.abstract_state
  restored = checkpointer.restore_intact(abstract)
  if restored is None:
    state, metadata = parts.create_state(), None
    if config.init_from:
      state = transfer.initial_state(config, state)
      logging.info("the generator and critic start from %s (their optimizer states fresh)%s",
                   config.init_from, f"; the critic's first {config.freeze_critic_layers} "
                   "layers frozen" if config.freeze_critic_layers else "")
  else:
    state, metadata = restored
    logging.info("resumed from %s at generator step %d", checkpointer.directory,
                 generator_steps(state))
    writers.forget_after(workdir, generator_steps(state))
  run = _Loop(devices, state, parts.stream(generator_steps(state), _own_position(metadata)),
              metadata)
  summary_path = os.path.join(workdir, "summary.json")
  kept = _summary_of(summary_path, run.step)
  if run.step >= config.num_generator_steps and kept is not None:
    logging.warning("%s is already trained to generator step %d (num_generator_steps=%d): "
                    "nothing to train, its summary.json is kept; to train on, pass "
                    "--experiment.num_generator_steps=N above %d", workdir, run.step,
                    config.num_generator_steps, run.step)
    checkpointer.close()
    return kept

  # --- Logging.
  writer = writers.make_writer(config, workdir, sweep)
  if jax.process_index() == 0:
    config_path = os.path.join(workdir, "config.json")
    try:
      files.write_text_atomically(config_path, config.to_json(indent=2))
    except OSError as e:
      raise _write_error(config_path, e, checkpointer) from e

  # --- Loop; a non-finite value stops it, or restarts from the last good checkpoint.
  logging.info("training %s from generator iteration %d to %d in %s (the first compiles the "
               "program)", config.experiment, run.step, config.num_generator_steps, workdir)
  restarts = 0
  try:
    with stop.deferred(), _finishing_saves_on_error(checkpointer):
      while True:
        try:
          stopped_by = _train(config, run, parts.iteration, checkpointer, evaluator, workdir,
                              writer, stop)
          run.inflight.drain()
          break
        except NonFiniteError as e:
          if restarts >= config.nonfinite_restarts:
            raise
          restarts += 1
          run = _restart_after_nonfinite(e, checkpointer, parts, restarts)

      # --- Final (or preemption) checkpoint.
      _save(checkpointer, run, config, force=True)
      checkpointer.wait()
      # A signal during the last iteration or this save: everything is saved, stop here.
      reason = stopped_by or stop.received
      if reason:
        checkpointer.close()
        writer.close()
        return _stopped(reason, "training" if stopped_by else "the final evaluation", run.step,
                        checkpointer)
  except StopRequested as e:  # A second Ctrl-C: no final checkpoint.
    e.step, e.newest_checkpoint = run.step, checkpointer.latest_step()
    raise

  # --- Final evaluation: everything is saved, so a signal here stops it at once.
  step = run.step
  summary: dict[str, Any] = dict(
      experiment=config.experiment, generator_steps=step,
      **({"models": [sweep.model(m) for m in range(sweep.size)]} if sweep else {}),
      train_seconds=round(run.train_seconds(), 2), nonfinite_restarts=restarts,
      **{f"train_{k}": v for k, v in run.scalars.items()})
  try:
    if jax.process_count() > 1:  # Replicas that drifted apart would be a silent bug.
      whole = run.gathered()
      multihost_utils.assert_equal(
          jax.tree.map(lambda x: np.asarray(x.addressable_data(0)),
                       (whole.generator.params, whole.critic.params)),
          "the processes' parameters differ")
    summary.update(_eval_and_report(evaluator, run.gathered(), workdir, "final", writer))
    best = checkpointer.best()
    if best is not None:  # Among the evaluations during training; the final one is above.
      name = checkpointer.best_metric
      summary[f"best_{name}_step"], summary[f"best_{name}"] = best
    writer.close()  # TensorBoard's last writes (the final samples) are on disk after this.
  except StopRequested as e:
    checkpointer.close()
    writer.close()
    return _stopped(e.reason, "the final evaluation", step, checkpointer)
  except OSError as e:
    raise _write_error(f"the final evaluation's files in {workdir}", e, checkpointer) from e
  checkpointer.close()
  if jax.process_index() == 0:
    try:
      files.write_text_atomically(summary_path, json.dumps(summary, indent=2))
    except OSError as e:
      raise _write_error(summary_path, e, checkpointer) from e
  logging.info("summary: %s", json.dumps(summary))
  return summary
