"""Studies that train GANs: every setting is a sweep (`wgan_jax/sweeps.py`,
its seeds and swept values one compiled program) run by the real trainer in
`out_dir/runs/STUDY/SETTING`, and its history read back from the run's
`metrics.jsonl`. The runs stay there for TensorBoard. A finished run is
trained afresh when the study runs again, so its numbers come from the code
as it is; a run a signal stopped (`RunStopped`, which ends the study before
it writes anything) is resumed by the next run of the same study.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, Mapping

import ml_collections
import numpy as np

from wgan_jax import checkpointing, configs, loop, writers
from wgan_jax.studies import report


@dataclasses.dataclass(frozen=True)
class History:
  """What a run logged: every metrics.jsonl line, its summary and its models."""
  lines: list[dict[str, Any]]
  summary: dict[str, Any]
  config: ml_collections.ConfigDict

  @property
  def num_models(self) -> int:
    return len(self.summary.get("models", [None]))

  def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps [T], values [T, models]) of metric `name` (e.g. "eval/w1"); a
    value logged as null (non-finite) as NaN."""
    rows = [line for line in self.lines if name in line]
    if not rows:
      raise KeyError(f"the run logged no {name!r}; it logged "
                     f"{sorted({k for line in self.lines for k in line} - {'step'})}")
    values = np.array([np.reshape(np.asarray(line[name], np.float64), -1) for line in rows])
    return np.array([line["step"] for line in rows]), values

  def final(self, name: str) -> np.ndarray:
    """The summary's `name` (final evaluation) per model."""
    return np.reshape(np.asarray(self.summary[name], np.float64), -1)


def _text(value: Any) -> str:
  return repr(tuple(value)) if isinstance(value, (tuple, list)) else str(value)


def make_config(experiment: str, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """`experiment` with `overrides` ({dotted key: value}), validated."""
  return configs.from_command_line(experiment, [(k, _text(v)) for k, v in overrides.items()])


class RunStopped(Exception):
  """A signal stopped a run of the study; its checkpoint is saved. The study
  writes nothing, and running it again resumes the run."""

  def __init__(self, reason: str, step: int, workdir: str):
    super().__init__(f"stopped by {reason} at generator step {step} of the run in {workdir}")
    self.reason = reason


def _resumable(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether `workdir` holds an unfinished run of exactly `config` (one a signal
  stopped), which a rerun of the study continues."""
  saved = checkpointing.saved_config(workdir)
  if saved is None or os.path.exists(os.path.join(workdir, "summary.json")):
    return False
  try:
    return not configs.check_resumable(saved[1], config, workdir, saved[0])
  except configs.ConfigError:
    return False


def train(config: ml_collections.ConfigDict, workdir: str) -> History:
  """Trains `config` in `workdir` and returns its history: from scratch (whatever
  was there is removed), or from where a signal stopped the same run before."""
  if not _resumable(config, workdir):
    shutil.rmtree(workdir, ignore_errors=True)
  try:
    summary = loop.train_and_evaluate(config, workdir)
  except (loop.NonFiniteError, loop.OutputWriteError,
          checkpointing.CheckpointWriteError) as e:
    raise report.StudyError(f"the run in {workdir} failed: {e}") from e
  if "stopped_by" in summary:
    raise RunStopped(summary["stopped_by"], summary["generator_steps"], workdir)
  return History(writers.read_metrics(workdir), summary, config)


def run_dir(out_dir: str, study: str, setting: str) -> str:
  return os.path.join(out_dir, "runs", study, setting)


def band(values: np.ndarray) -> dict[str, list[float]]:
  """Mean, min and max over the models (axis 1) of [T, models] values."""
  return {"mean": np.nanmean(values, axis=1).tolist(), "min": np.nanmin(values, axis=1).tolist(),
          "max": np.nanmax(values, axis=1).tolist()}


def toy_overrides(tiny: bool, steps: int, every: int, width: int | None = None,
                  batch: int | None = None, eval_samples: int | None = None) -> dict[str, Any]:
  """Small MLPs and the evaluation schedule the toy studies share (tiny: a
  test's seconds; width, batch and eval_samples given: those)."""
  width = width or (32 if tiny else 128)
  return {"model.generator.features": width, "model.critic.features": width,
          "batch_size": batch or (32 if tiny else 128), "num_generator_steps": steps,
          "log_every": every, "eval_every": every, "checkpoint_every": 0,
          "eval_samples": eval_samples or (200 if tiny else 1000)}
