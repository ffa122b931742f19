"""Where a run's metrics go: TensorBoard (`event_files`), `metrics.jsonl`
(every logged and evaluated value, one JSON line per write, for scripts and the
studies), the console, and for a sweep one TensorBoard run per model
(workdir/models/NN).

`make_writer(config, workdir)` builds the run's writer. Process 0 writes the
files; the others only log.

`metrics.jsonl` is read back before a run appends to it: a cut last line (what
a crash or a full disk leaves) is dropped with a warning; a file that is not
ours (a line that is not UTF-8, not JSON or has no step; a folder at that path)
is a `files.WorkdirFileError` naming it, and nothing is appended. A write that
fails raises an OSError naming the file.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
from typing import Any, Iterator, Mapping, Sequence

from absl import logging
from clu import asynclib
import jax
import ml_collections
import numpy as np

from wgan_jax import configs, event_files, files, progress, sweeps

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """A place a run's values go: scalars, images ([N, H, W, C] uint8) and the
  hyperparameters. Each writer keeps what it has a place for; the rest is a no-op."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    del step, scalars

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    del step, images

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    del hparams

  def flush(self) -> None:
    pass

  def close(self) -> None:
    self.flush()


class Writers(MetricWriter):
  """Every call to each of `writers`, in order."""

  def __init__(self, writers: Sequence[MetricWriter]):
    self._writers = tuple(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    for writer in self._writers:
      writer.write_scalars(step, scalars)

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    for writer in self._writers:
      writer.write_images(step, images)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    for writer in self._writers:
      writer.write_hparams(hparams)

  def flush(self) -> None:
    for writer in self._writers:
      writer.flush()

  def close(self) -> None:
    for writer in self._writers:
      writer.close()


def _json_value(v: Any) -> Any:
  """A number or a list of them; a non-finite value (reported, never trained
  on) as null, so the file stays strict JSON."""
  v = np.asarray(v)
  if v.ndim:
    return [_json_value(x) for x in v]
  if v.dtype.kind in "iub":
    return int(v)
  return float(v) if np.isfinite(v) else None


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
  """An OSError of a write names no file: this one names `path`, for the one-line report."""
  try:
    yield
  except OSError as e:
    if e.filename:
      raise
    raise OSError(e.errno, e.strerror, path) from e


class JsonLines(MetricWriter):
  """Scalars appended to a file as {"step": s, name: value, ...} lines (a
  sweep's values as lists, one per model). A resumed run appends: a reader
  keeps the last line written for a step."""

  def __init__(self, path: str):
    metric_lines(path)  # Refuses a file that is not ours; drops a cut last line.
    self._path = path
    # Line-buffered: every line is on disk when written, also before a crash.
    self._file = open(path, "a", encoding="utf-8", buffering=1)  # pylint: disable=consider-using-with

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    line = {"step": int(step), **{k: _json_value(v) for k, v in scalars.items()}}
    with _naming(self._path):
      self._file.write(json.dumps(line, allow_nan=False) + "\n")

  def flush(self) -> None:
    with _naming(self._path):
      self._file.flush()

  def close(self) -> None:
    try:
      self._file.close()
    except OSError:
      pass  # What did not reach the file was reported when it was written.


# What the progress line (`progress.Progress`) writes each time: the console
# says it in that line, not in the training means'.
PROGRESS_KEYS = (progress.RATE_KEY,)


def _console_value(v: Any) -> str:
  """4 significant digits; a sweep's values as their mean and range."""
  v = np.asarray(v)
  if v.ndim == 0:
    return f"{v.item():.4g}" if v.dtype.kind == "f" else str(v.item())
  return f"{v.mean():.4g} ({v.min():.4g}..{v.max():.4g} over {v.size} models)"


class ConsoleWriter(MetricWriter):
  """The run's log lines: one a write of training means ("step 100: critic_loss=
  -1.052, ...") or of an evaluation ("eval step 100: w1=0.5819, ..."). Images,
  hyperparameters (config.json holds them) and the progress scalars go to
  TensorBoard and metrics.jsonl only."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    groups: dict[str, list[str]] = {}
    for key, value in scalars.items():
      if key in PROGRESS_KEYS:
        continue
      group, _, name = key.rpartition("/")
      groups.setdefault(group, []).append(f"{name}={_console_value(value)}")
    for group, values in groups.items():
      prefix = "eval step" if group == "eval" else "step"
      logging.info("%s %d: %s", prefix, step, ", ".join(values))


class TensorBoard(MetricWriter):
  """A TensorBoard run in `logdir`, written on a background thread: the loop
  never waits on a PNG or the disk. A write that failed there raises its own
  error (an OSError naming the file, for the one-line report) at the next call."""

  def __init__(self, logdir: str):
    self._events = event_files.EventFile(logdir)
    self._pool = asynclib.Pool(thread_name_prefix="TensorBoard", max_workers=1)

  @contextlib.contextmanager
  def _raising_its_own(self) -> Iterator[None]:
    try:
      with _naming(self._events.path):
        yield
    except asynclib.AsyncError as e:
      cause = e.__cause__
      if isinstance(cause, OSError) and not cause.filename:
        raise OSError(cause.errno, cause.strerror, self._events.path) from cause
      raise cause if cause is not None else e

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    with self._raising_its_own():
      self._pool(self._events.scalars)(step, dict(scalars))

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    with self._raising_its_own():
      self._pool(self._events.images)(step, dict(images))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    with self._raising_its_own():
      self._pool(self._events.hparams)(dict(hparams))

  def flush(self) -> None:
    with self._raising_its_own():
      self._pool.join()
      self._events.flush()

  def close(self) -> None:
    try:
      self.flush()
    finally:
      with _naming(self._events.path):
        self._events.close()


class ModelWriters(MetricWriter):
  """A sweep's writers: values with a model axis go to each model's run,
  entry m to model m; the rest (e.g. steps per second) to the workdir's run."""

  def __init__(self, main: MetricWriter, sweep: sweeps.Sweep, workdir: str):
    self._main, self._sweep = main, sweep
    self._models = [TensorBoard(sweeps.model_dir(workdir, m, sweep.size))
                    for m in range(sweep.size)]

  def _split(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    shared = {k: v for k, v in values.items() if np.ndim(v) == 0}
    per = [{k: np.asarray(v)[m] for k, v in values.items() if np.ndim(v)}
           for m in range(self._sweep.size)]
    return shared, per

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    shared, per = self._split(scalars)
    if shared:
      self._main.write_scalars(step, shared)
    for writer, values in zip(self._models, per):
      if values:
        writer.write_scalars(step, values)

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    """[K, H, W, C] per name: model m's image is entry m."""
    for m, writer in enumerate(self._models):
      writer.write_images(step, {k: np.asarray(v)[m:m + 1] for k, v in images.items()})

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._main.write_hparams(hparams)
    for m, writer in enumerate(self._models):  # With this model's seed and value.
      model = self._sweep.model(m)
      writer.write_hparams({**hparams, **{k: v for k, v in model.items() if k != "model"},
                            "sweep.model": m})

  def flush(self) -> None:
    for writer in (self._main, *self._models):
      writer.flush()

  def close(self) -> None:
    for writer in (self._main, *self._models):
      writer.close()


def make_writer(config: ml_collections.ConfigDict, workdir: str,
                sweep: sweeps.Sweep | None = None) -> MetricWriter:
  """The run's writer: the console, TensorBoard (one run per model of a
  `sweep`) and, on process 0, `metrics.jsonl`. Writes the config as
  hyperparameters."""
  console = ConsoleWriter()
  if jax.process_index() > 0:
    return console
  # First: a metrics file that is not ours stops the run before any other file is made.
  lines = JsonLines(os.path.join(workdir, METRICS_FILE))
  tensorboard: MetricWriter = TensorBoard(workdir)
  if sweep is not None:
    tensorboard = ModelWriters(tensorboard, sweep, workdir)
  writer = Writers([console, tensorboard, lines])
  writer.write_hparams(configs.flatten(config.to_dict()))
  return writer


def _line_problem(raw: bytes) -> str | None:
  """What keeps `raw` (one line, no newline) from being a line `JsonLines` wrote, or None."""
  try:
    line = json.loads(raw.decode("utf-8"))
  except UnicodeDecodeError as e:
    return f"is not UTF-8 text (byte 0x{raw[e.start]:02x} at {e.start})"
  except ValueError as e:
    return f"is not JSON ({str(e).split(':')[0]}: {raw[:40]!r})"
  if not isinstance(line, dict) or not isinstance(line.get("step"), int):
    return f"has no step ({raw[:40]!r})"
  return None


def _to_a_device(path: str) -> bool:
  try:
    return stat.S_ISCHR(os.stat(path).st_mode)
  except OSError:
    return False


def metric_lines(path: str) -> list[str]:
  """The lines of the metrics file at `path`, each checked, with their newlines;
  [] where there is no file (or a device, e.g. /dev/null). A cut last line is
  dropped from the file, with a warning; a file that is not ours, or a folder,
  is a WorkdirFileError."""
  if os.path.islink(path) and not _to_a_device(path):
    # Appending through it would write to a file outside the workdir.
    raise files.WorkdirFileError(
        f"{path} is a symbolic link to {os.readlink(path)}; the run writes its own files and "
        "follows no link to a file (one to a device such as /dev/null is kept): remove the "
        "link, then run the same command")
  if os.path.isdir(path):
    raise files.WorkdirFileError(
        f"{path} is a folder, where the run keeps its metrics: move it away or pass another "
        "--workdir")
  if not os.path.isfile(path):
    return []
  lines, cut = [], b""
  with open(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      if not raw.endswith(b"\n"):  # The last line, unfinished.
        cut = raw
        break
      if not raw.strip():
        continue
      problem = _line_problem(raw.rstrip(b"\n"))
      if problem:
        raise files.WorkdirFileError(
            f"{path} is not a metrics file of wgan_jax: line {number} {problem}; move it away "
            "(or delete that line), then run the same command")
      lines.append(raw.decode("utf-8"))
  if cut.strip():
    if _line_problem(cut) is None:  # Whole, but with no newline: appending would join it.
      lines.append(cut.decode("utf-8") + "\n")
    else:
      logging.warning("%s ended in a cut line (%d bytes, as a crash or a full disk leaves "
                      "it); dropped it", path, len(cut))
    files.write_text_atomically(path, "".join(lines))
  return lines


def forget_after(workdir: str, step: int) -> None:
  """Drops the lines of `metrics.jsonl` past `step`: what a run logged after
  the checkpoint it resumes from, which it will log again."""
  path = os.path.join(workdir, METRICS_FILE)
  if jax.process_index():
    return
  lines = metric_lines(path)
  kept = [text for text in lines if json.loads(text)["step"] <= step]
  if len(kept) != len(lines):
    files.write_text_atomically(path, "".join(kept))


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The lines of `workdir/metrics.jsonl`, the last one written for each
  (step, names) kept, in step order."""
  latest: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}
  for text in metric_lines(os.path.join(workdir, METRICS_FILE)):  # A cut last line dropped.
    line = json.loads(text)
    latest[(line["step"], tuple(sorted(line)))] = line
  return [latest[k] for k in sorted(latest, key=lambda k: k[0])]
