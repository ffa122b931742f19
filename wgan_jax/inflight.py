"""Iterations in flight: dispatched to the devices, their metrics not yet read.

The host runs ahead of the devices so that dispatch never leaves them idle,
but only `depth` iterations ahead: before dispatching iteration n the host
reads the metrics of iteration n - depth, which are ready or nearly so. That
bounds the memory the queue holds, and it keeps XLA:CPU's in-process
collectives (fake CPU devices) from deadlocking when dozens of iterations are
queued with no host read between them. Every iteration's metrics come to the
host this way, so each is checked for non-finite values (the step reports
whether the parameters it left are finite) one iteration at a time, and log
intervals average what has arrived.
"""
from __future__ import annotations

import collections

import jax
import numpy as np

from wgan_jax import steps

# Enough to keep the devices busy while the host dispatches the next iteration.
DEPTH = 2


class NonFiniteError(RuntimeError):
  """A loss, gradient or parameter became NaN or infinite."""


def check_finite(metrics: dict[str, float], step: int) -> None:
  """NonFiniteError naming the quantities of generator step `step` that are not finite."""
  bad = sorted(k for k, v in metrics.items() if k != steps.NONFINITE_PARAMS
               and not np.isfinite(v))
  if bad:
    raise NonFiniteError(f"non-finite {', '.join(bad)} at generator step {step}; "
                         "lower optimizer.lr or check the data")
  if metrics.get(steps.NONFINITE_PARAMS, 0):
    raise NonFiniteError(f"non-finite parameters after generator step {step}; "
                         "lower optimizer.lr or check the data")


class InFlight:
  """The metrics of dispatched iterations, read back at most `depth` behind."""

  def __init__(self, depth: int = DEPTH):
    if depth < 1:
      raise ValueError(f"depth={depth} must be at least 1")
    self.depth = depth
    self._pending: collections.deque[tuple[int, steps.Metrics]] = collections.deque()
    self._arrived: list[dict[str, float]] = []
    self.last_checked = 0  # the latest generator step whose metrics were checked

  def push(self, step: int, metrics: steps.Metrics) -> None:
    """Metrics of the iteration that produced generator step `step`; waits for
    the oldest in flight once more than `depth` are (NonFiniteError if bad)."""
    self._pending.append((step, metrics))
    while len(self._pending) > self.depth:
      self._read_oldest()

  def drain(self) -> None:
    """Waits for every dispatched iteration and checks its metrics."""
    while self._pending:
      self._read_oldest()

  def means(self) -> dict[str, float]:
    """Means of the metrics that arrived since the last call (after `drain`)."""
    arrived, self._arrived = self._arrived, []
    if not arrived:
      return {}
    return {k: float(np.mean([m[k] for m in arrived])) for k in arrived[0]}

  def _read_oldest(self) -> None:
    step, metrics = self._pending.popleft()
    host = {k: float(v) for k, v in jax.device_get(metrics).items()}
    check_finite(host, step)
    self.last_checked = step
    host.pop(steps.NONFINITE_PARAMS, None)
    self._arrived.append(host)
