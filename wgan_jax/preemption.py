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
import sys
import threading
from types import FrameType
from typing import Callable

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


# How long a stop signal may wait for the main thread before the process ends
# without it: Python runs a handler only between bytecodes, and one call into XLA
# (a compile of a huge program, a step that thrashes memory) can last many
# minutes. Schedulers give about 30 s between SIGTERM and SIGKILL.
SIGNAL_GRACE_S = float(os.environ.get("WGAN_JAX_SIGNAL_GRACE_S", 25))


class _Watchdog:
  """Notices a stop signal the moment it arrives (the C-level handler writes its
  number to `signal.set_wakeup_fd`'s pipe even while the main thread is inside
  a long C++ call) and, if no Python handler has taken it within the grace
  period, ends the process with one line. A handler takes a signal by calling
  `acknowledge`."""

  def __init__(self, grace_s: float, describe: Callable[[], str]):
    self._grace_s, self._describe = grace_s, describe
    self._arrived = self._taken = 0
    self._changed = threading.Condition()
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    threading.Thread(target=self._watch, args=(read,), name="signal-watchdog",
                     daemon=True).start()

  def acknowledge(self) -> None:
    with self._changed:
      self._taken += 1
      self._changed.notify_all()

  def _watch(self, read: int) -> None:
    while True:
      signum = os.read(read, 1)[0]
      if signum not in [int(s) for s in _SIGNALS]:
        continue
      with self._changed:
        self._arrived += 1
        if not self._changed.wait_for(lambda: self._taken >= self._arrived, self._grace_s):
          name = signal.Signals(signum).name
          print(f"error: stopped by {name}: the process did not take the signal within "
                f"{self._grace_s:.0f} s (it was inside one long call into XLA: a compile or a "
                f"step); {self._describe()}", file=sys.stderr, flush=True)
          os._exit(128 + signum)  # pylint: disable=protected-access


_WATCHDOG: _Watchdog | None = None


def watch_signals(describe: Callable[[], str], grace_s: float = SIGNAL_GRACE_S) -> None:
  """From now on a stop signal that the main thread cannot take within
  `grace_s` ends the process with one line ending in `describe()` (e.g. which
  checkpoint is the newest). Call it from the main thread, once."""
  global _WATCHDOG  # pylint: disable=global-statement
  if _WATCHDOG is None and threading.current_thread() is threading.main_thread():
    _WATCHDOG = _Watchdog(grace_s, describe)


def _acknowledge() -> None:
  if _WATCHDOG is not None:
    _WATCHDOG.acknowledge()


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
  _acknowledge()
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
    _acknowledge()
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
