"""A process of a multi-process run, watched from outside.

When another process of the run dies, JAX's distributed client ends this one
from a C++ thread (a fatal log line, an abort, a thread dump; at once when the
coordinator is gone, after the heartbeat timeout otherwise), so nothing inside
the process can say it in one line. So a process of a multi-process run is a
light parent (no JAX) and the training as its child: the parent passes the
child's output through and its signals on, and when the child ends that way,
replaces the dump with one line naming the process that was lost and the
newest checkpoint. Everything else the child says or does is unchanged.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from typing import Callable, Sequence

from wgan_jax.cluster import lost_said

# In the child's environment: it is the training, not a parent again.
CHILD = "WGAN_JAX_SUPERVISED"
# JAX's distributed client ending the process (a glog fatal line).
_FATAL = re.compile(r"^F\d{4} .*Terminating process because the JAX distributed service "
                    r"detected fatal errors")
_HEARTBEAT = re.compile(r"Task (\d+) heartbeat timeout|stopped sending heartbeats\):\s*([\d ,]+)")
_COORDINATOR_GONE = re.compile(r"Failed to send RPC to coordination service|"
                               r"coordination service.*(UNAVAILABLE|Connection reset)")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
  """In the child, before it runs: SIGTERM when the parent dies (Linux), so a
  killed parent leaves no training behind."""
  try:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
  except (OSError, AttributeError):
    pass


def _lost(fatal: str, held: Sequence[str]) -> str:
  """Which process the child's fatal output says was lost."""
  text = fatal + "".join(held)
  heartbeat = _HEARTBEAT.search(text)
  if heartbeat:
    return lost_said([int(p) for p in
                      (heartbeat.group(1) or heartbeat.group(2)).replace(",", " ").split()])
  return lost_said([0] if _COORDINATOR_GONE.search(text) else None)


def supervise(args: Sequence[str], process: str, describe: Callable[[], str]) -> int:
  """Runs `python -m wgan_jax.train ARGS` as a child and returns the exit code
  this process should end with. `process`: which of the run this is ("process
  1 of 2"); `describe()`: where the run stands on disk (the newest checkpoint)."""
  child = subprocess.Popen([sys.executable, "-m", "wgan_jax.train", *args],
                           stderr=subprocess.PIPE, text=True, errors="replace",
                           env=dict(os.environ, **{CHILD: "1"}), start_new_session=True,
                           preexec_fn=_die_with_parent)
  # The child is in its own session: a terminal's Ctrl-C reaches this process only,
  # and goes on once (twice would be "a second Ctrl-C", which stops without saving).
  for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, lambda signum, frame: child.send_signal(signum))
  fatal, held = None, []
  for line in child.stderr:
    if fatal is not None:
      held.append(line)
    elif _FATAL.match(line):
      fatal = line
    else:
      sys.stderr.write(line)
      sys.stderr.flush()
  code = child.wait()
  if fatal is not None and code in (-signal.SIGABRT, 128 + signal.SIGABRT):
    print(f"error: {process}: {_lost(fatal, held)}; {describe()}: restart every process with "
          "the same command", file=sys.stderr, flush=True)
    return 1
  if fatal is not None:  # Not the ending we know: show what it said.
    sys.stderr.writelines([fatal, *held])
  return 128 - code if code < 0 else code
