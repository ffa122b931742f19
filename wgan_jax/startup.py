"""The first lines of an entry point: until its imports have loaded JAX (seconds)
and `main` takes over, a stop signal ends the process with one line and no
traceback, since nothing can have been written yet; and a console that shows
what informs a user, not the libraries' start-up notices."""
from __future__ import annotations

import logging
import os
import re
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


# Library notices that say nothing a user can act on: (logger, message pattern).
NOISE = (
    # Orbax, for the read-only managers that read a generator or a run's config.
    ("absl", re.compile(r"CheckpointManagerOptions\.read_only=True, setting "
                        r"(save_interval_steps=0|create=False)")),
    ("absl", re.compile(r"Given directory is read only=")),
    # JAX looking for a TPU on a machine without one.
    ("jax._src.xla_bridge", re.compile(r"Unable to initialize backend '(tpu|cuda|rocm)'")),
    # Matplotlib building its font cache on the first figure.
    ("matplotlib.font_manager", re.compile(r"generated new fontManager")),
)


class _DropNoise(logging.Filter):
  def __init__(self, patterns: list[re.Pattern]):
    super().__init__()
    self._patterns = patterns

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(p.search(message) for p in self._patterns)


def quiet_console() -> None:
  """Drops `NOISE` from the log, and TensorFlow's C++ INFO notices (oneDNN's,
  and absl's line about messages before its InitializeLog that comes with
  them) unless TF_CPP_MIN_LOG_LEVEL says otherwise. Called before TensorFlow
  is imported; warnings and errors are kept."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  # absl makes its logger "absl" of its own class on import: first, so that
  # getLogger("absl") below returns that one, not a plain logger in its place.
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel,unused-import
  loggers: dict[str, list[re.Pattern]] = {}
  for name, pattern in NOISE:
    loggers.setdefault(name, []).append(pattern)
  for name, patterns in loggers.items():
    logging.getLogger(name).addFilter(_DropNoise(patterns))
