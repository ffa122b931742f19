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

from wgan_jax import updates

# Enough to keep the devices busy while the host dispatches the next iteration.
DEPTH = 2


class NonFiniteError(RuntimeError):
  """A loss, gradient or parameter became NaN or infinite."""


Metric = float | np.ndarray  # a sweep's metrics hold one value per model


def _models(values: list[Metric]) -> str:
  """" of models 0, 3" for the models (entries of a sweep's metrics) concerned."""
  bad = sorted({int(m) for v in values if np.ndim(v) for m in np.flatnonzero(v)})
  return f" of model{'s' * (len(bad) > 1)} {', '.join(map(str, bad))}" if bad else ""


def check_finite(metrics: dict[str, Metric], step: int) -> None:
  """NonFiniteError naming the quantities (and models, in a sweep) of
  generator step `step` that are not finite."""
  bad = sorted(k for k, v in metrics.items() if k != updates.NONFINITE_PARAMS
               and not np.all(np.isfinite(v)))
  if bad:
    where = _models([~np.isfinite(metrics[k]) for k in bad])
    raise NonFiniteError(f"non-finite {', '.join(bad)}{where} at generator step {step}; "
                         "lower optimizer.lr or check the data")
  params = metrics.get(updates.NONFINITE_PARAMS, 0)
  if np.any(params):
    raise NonFiniteError(f"non-finite parameters{_models([params])} after generator step "
                         f"{step}; lower optimizer.lr or check the data")


class InFlight:
  """The metrics of dispatched iterations, read back at most `depth` behind."""

  def __init__(self, depth: int = DEPTH):
    if depth < 1:
      raise ValueError(f"depth={depth} must be at least 1")
    self.depth = depth
    self._pending: collections.deque[tuple[int, updates.Metrics]] = collections.deque()
    self._arrived: list[dict[str, Metric]] = []
    self.last_checked = 0  # the latest generator step whose metrics were checked

  def push(self, step: int, metrics: updates.Metrics) -> None:
    """Metrics of the iteration that produced generator step `step`; waits for
    the oldest in flight once more than `depth` are (NonFiniteError if bad)."""
    self._pending.append((step, metrics))
    while len(self._pending) > self.depth:
      self._read_oldest()

  def drain(self) -> None:
    """Waits for every dispatched iteration and checks its metrics."""
    while self._pending:
      self._read_oldest()

  def means(self) -> dict[str, float | list[float]]:
    """Means of the metrics that arrived since the last call (after `drain`);
    a sweep's, one per model."""
    arrived, self._arrived = self._arrived, []
    if not arrived:
      return {}
    means = {k: np.mean([m[k] for m in arrived], axis=0) for k in arrived[0]}
    return {k: v.tolist() if v.ndim else float(v) for k, v in means.items()}

  def _read_oldest(self) -> None:
    step, metrics = self._pending.popleft()
    host = {k: float(v) if np.ndim(v) == 0 else np.asarray(v, np.float64)
            for k, v in jax.device_get(metrics).items()}
    check_finite(host, step)
    self.last_checked = step
    host.pop(updates.NONFINITE_PARAMS, None)
    self._arrived.append(host)
