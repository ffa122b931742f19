"""SIGTERM / SIGINT as a request to stop cleanly.

Preemptible VMs and schedulers send SIGTERM and wait a little before SIGKILL;
users press Ctrl-C. Inside `with StopSignals() as stop:` either signal only
records its name, and the training loop asks `stop.requested(...)` after each
iteration: it then writes a checkpoint and returns. A second Ctrl-C aborts at
once (the last finished checkpoint is still there).

With several processes every one of them must stop at the same step, since
saving is collective: they agree with one all-gather, at the points the loop
marks as synchronised (not every iteration, so the host stays ahead of the
devices).
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
  """Records SIGTERM / SIGINT instead of dying on them, while in its `with` block."""

  def __init__(self):
    self.received: str | None = None
    self._previous: dict[int, object] = {}

  def __enter__(self) -> "StopSignals":
    # Python only lets the main thread install handlers (tests may train elsewhere).
    if threading.current_thread() is threading.main_thread():
      for sig in _SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def _handle(self, signum: int, frame: FrameType | None) -> None:
    del frame
    name = signal.Signals(signum).name
    if name == "SIGINT" and self.received == "SIGINT":
      raise KeyboardInterrupt("second Ctrl-C: stopping without a final checkpoint")
    self.received = name
    logging.warning("%s received: finishing this iteration, then saving a checkpoint and "
                    "stopping%s", name, " (Ctrl-C again to abort without saving)"
                    if name == "SIGINT" else "")

  def requested(self, synchronised: bool = True) -> str | None:
    """The signal to stop for, or None. With several processes only at
    `synchronised` points, where all of them get the same answer."""
    if jax.process_count() == 1:
      return self.received
    if not synchronised:
      return None
    flags = multihost_utils.process_allgather(np.int32(self.received is not None))
    if not np.any(flags):
      return None
    return self.received or "SIGTERM (on another process)"
