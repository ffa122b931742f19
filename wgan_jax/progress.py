"""How far a run is: its rate and the time left, on the console.

`Progress(total, every, writer)` is called after each generator iteration with
the number done. Every `every` iterations, at least once a minute, and at the
last one it logs a line ("generator iteration 100 of 200 (50%), 11.3 a second,
9 s left") and gives the rate to the run's writer as `steps_per_sec`
(TensorBoard and metrics.jsonl; the console writer leaves it to this line).
The rate is measured between reports, from the first iteration done: the first
call's time includes the compile, so it starts the clock and reports nothing.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Protocol

from absl import logging

# A run whose log interval is long still says how it goes this often.
AT_LEAST_EVERY_SECONDS = 60.0
# The name the rate is written under.
RATE_KEY = "steps_per_sec"


class ScalarWriter(Protocol):
  """Where the rate goes (the run's `writers.MetricWriter`)."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None: ...


def duration(seconds: float) -> str:
  """12 s, 4 min 10 s, 2 h 05 min, 3 d 07 h; "?" when not known (not finite)."""
  if not math.isfinite(seconds):
    return "?"
  seconds = max(0, round(seconds))
  if seconds < 60:
    return f"{seconds} s"
  minutes, seconds = divmod(seconds, 60)
  if minutes < 60:
    return f"{minutes} min {seconds:02d} s"
  hours, minutes = divmod(minutes, 60)
  if hours < 24:
    return f"{hours} h {minutes:02d} min"
  days, hours = divmod(hours, 24)
  return f"{days} d {hours:02d} h"


class Progress:
  """Reports after iterations `every`, 2 `every`, ..., the last (`total`), and
  whenever a minute has passed since the last report."""

  def __init__(self, total: int, every: int, writer: ScalarWriter,
               clock: Callable[[], float] = time.monotonic):
    self.total, self.every, self._writer, self._clock = total, every, writer, clock
    self._since: tuple[int, float] | None = None  # (iterations done, time) of the last report

  def __call__(self, done: int) -> str | None:
    """After an iteration; the line logged, or None."""
    now = self._clock()
    if self._since is None:
      self._since = (done, now)
      return None
    before, then = self._since
    due = done % self.every == 0 or done == self.total or now - then >= AT_LEAST_EVERY_SECONDS
    if not due or done == before or now <= then:
      return None
    rate = (done - before) / (now - then)
    line = (f"generator iteration {done} of {self.total} ({100 * done / self.total:.0f}%), "
            f"{rate:.3g} a second")
    if done < self.total:
      line += f", {duration((self.total - done) / rate)} left"
    logging.info("%s", line)
    self._writer.write_scalars(done, {RATE_KEY: rate})
    self._since = (done, now)
    return line
