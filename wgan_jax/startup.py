"""The first lines of an entry point: until its imports have loaded JAX (seconds)
and `main` takes over, a stop signal ends the process with one line and no
traceback, since nothing can have been written yet."""
from __future__ import annotations

import os
import signal
import sys

# The signals that ask a process to stop (preemption.py takes them over in `main`).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_quietly_while_loading(said: str) -> None:
  """A stop signal from now on prints `error: stopped by SIG during start-up;
  SAID` and exits 128 + the signal's number."""
  def stopped(signum, frame) -> None:
    del frame
    print(f"error: stopped by {signal.Signals(signum).name} during start-up; {said}",
          file=sys.stderr, flush=True)
    os._exit(128 + signum)  # pylint: disable=protected-access

  for sig in STOP_SIGNALS:
    signal.signal(sig, stopped)
