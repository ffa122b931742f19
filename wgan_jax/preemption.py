"""SIGTERM / SIGINT / SIGHUP as a request to stop cleanly.

Preemptible VMs and schedulers send SIGTERM and wait a little before SIGKILL;
users press Ctrl-C; a closed SSH session sends SIGHUP. Inside
`with StopSignals() as stop:` a signal either raises `StopRequested` at once
(start-up, the final evaluation: nothing to save, or all saved) or, inside
`with stop.deferred():` (the training loop), is recorded: the loop asks
`stop.requested(step)` after each iteration, then writes a checkpoint and
returns. A second Ctrl-C raises at once; the last
finished checkpoint is still there.

With several processes every one of them must stop at the same step, since
saving is collective. They agree through JAX's preemption service on the
coordination service (`multihost_utils.reached_preemption_sync_point`): its
own SIGTERM handler takes the notice, the processes exchange their steps in
the background and all stop at the first step none has passed; no collective
runs on the devices for it. Ctrl-C on one process is passed on as SIGTERM to
that process, so it reaches the others the same way.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType

from absl import logging
import jax
from jax.experimental import multihost_utils

# SIGHUP: the terminal went away (a closed SSH session): a request to stop, as SIGTERM.
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# What the other processes of a multi-process run learn: a notice, not a signal name.
PREEMPTION_NOTICE = "a preemption notice (SIGTERM to one of the processes)"
SECOND_CTRL_C = "a second Ctrl-C"
# Exit codes of a process stopped by a signal before anything could be saved.
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129, SECOND_CTRL_C: 130}


class StopRequested(BaseException):
  """A signal asked to stop where no checkpoint is written for it. A
  BaseException, as KeyboardInterrupt is: no `except Exception` may take it
  for a failure (e.g. a checkpoint restore it interrupts for damage)."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason

  @property
  def exit_code(self) -> int:
    return EXIT_CODES.get(self.reason, 1)


def raise_on_signals() -> None:
  """Until a `StopSignals` takes over: SIGTERM and SIGINT raise StopRequested,
  so start-up ends with one line, not a traceback or a silent 143."""
  if threading.current_thread() is threading.main_thread():
    for sig in _SIGNALS:
      signal.signal(sig, _raise_stop)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
  del frame
  raise StopRequested(signal.Signals(signum).name)


class StopSignals:
  """Turns SIGTERM / SIGINT / SIGHUP into StopRequested, or records them while deferred."""

  def __init__(self):
    self.received: str | None = None
    self._deferred = False
    self._previous: dict[int, object] = {}
    self._coordinated = jax.process_count() > 1

  def __enter__(self) -> "StopSignals":
    # Python only lets the main thread install handlers (tests may train elsewhere).
    if threading.current_thread() is threading.main_thread():
      # With several processes SIGTERM stays with JAX's preemption notifier.
      for sig in tuple(s for s in _SIGNALS if s != signal.SIGTERM) if self._coordinated \
          else _SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  @contextlib.contextmanager
  def deferred(self):
    """Within: signals are recorded for `requested` instead of raising."""
    self._deferred = True
    try:
      yield self
    finally:
      self._deferred = False

  def _handle(self, signum: int, frame: FrameType | None) -> None:
    del frame
    name = signal.Signals(signum).name
    if name == "SIGINT" and self.received == "SIGINT":
      raise StopRequested(SECOND_CTRL_C)
    first = self.received is None
    self.received = self.received or name
    if not self._deferred:
      raise StopRequested(name)
    if first:
      logging.warning("%s received: finishing this iteration, then saving a checkpoint and "
                      "stopping%s", name, " (Ctrl-C again to stop without saving)"
                      if name == "SIGINT" else "")
    if self._coordinated:
      os.kill(os.getpid(), signal.SIGTERM)  # To JAX's notifier, which tells the others.

  def requested(self, step: int) -> str | None:
    """The reason to stop after generator step `step`, or None. With several
    processes, the same answer on all of them at the same step; call it at
    every step, in order."""
    if not self._coordinated:
      return self.received
    if multihost_utils.reached_preemption_sync_point(step):
      return self.received or PREEMPTION_NOTICE
    return None
