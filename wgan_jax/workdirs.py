"""A run's workdir: whether it can hold a run, and whether another run uses it.

A workdir belongs to one training at a time: `lock` holds an advisory lock
(`fcntl.flock`) on `WORKDIR/.lock` for the life of the process, and writes who
holds it (pid, host, command, start time) into the file. The kernel releases
the lock when the process ends however it ends (SIGKILL, power loss aside: a
reboot ends it too), so a lock left by a dead process never blocks the next
run, and there is no stale file to clean up. Of several processes of one run,
process 0 takes it.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

from wgan_jax.cli import unwritable

LOCK_FILE = ".lock"
# Held open for the life of the process (closing it would release the lock): the
# lock file's path -> (its descriptor, the paths `lock` created).
_HELD: dict[str, tuple[int, list[str]]] = {}


class WorkdirInUse(RuntimeError):
  """Another live process trains in the workdir: reported as one line, exit 2."""


def problem(workdir: str) -> str | None:
  """Why `workdir` cannot hold a run (a system root, not a directory, not
  writable, a name too long, a dangling link, a file where its checkpoints
  go), or None. Nothing is created: a failed check leaves no trace."""
  path = os.path.abspath(workdir)
  if os.path.islink(path) and not os.path.exists(path):
    return (f"--workdir={workdir} is a symbolic link to {os.readlink(path)}, which does not "
            "exist; create that directory or pass another --workdir")
  real = os.path.realpath(path)
  if real == os.path.dirname(real) or real in _SYSTEM_DIRS:
    shown = workdir if real == path else f"{workdir} (which is {real})"
    return (f"--workdir={shown} is a system directory; a run writes checkpoints, logs and "
            "figures into its workdir: pass a directory of its own, e.g. "
            "--workdir=workdirs/NAME")
  if os.path.exists(path) and not os.path.isdir(path):
    return f"--workdir={workdir} is a file; pass a directory"
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    return f"--workdir={workdir} cannot be created: {existing} is a file; pass another directory"
  longest = os.pathconf(existing, "PC_NAME_MAX")
  too_long = [part for part in path.split(os.sep) if len(part.encode()) > longest]
  if too_long:
    return (f"--workdir={workdir} has a name of {len(too_long[0].encode())} bytes "
            f"({too_long[0][:20]}...); the file system allows {longest}: pass a shorter path")
  checkpoints = os.path.join(path, "checkpoints")
  if os.path.lexists(checkpoints) and not os.path.isdir(checkpoints):
    return (f"{checkpoints} is a file, not a folder of checkpoints: move it away or pass "
            "another --workdir")
  reason = unwritable(existing)
  if reason:
    return (f"--workdir={workdir} is not writable ({reason} in {existing}); pass a directory "
            "you can write to")
  return None


# Directories a run must never take for its own (the root is caught above).
_SYSTEM_DIRS = frozenset(os.path.realpath(d) for d in (
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/proc", "/root", "/run",
    "/sbin", "/sys", "/tmp", "/usr", "/var", os.path.expanduser("~")))


def _holder(path: str) -> str:
  """Who holds the lock at `path`, as its holder wrote it."""
  try:
    with open(path) as f:
      who = json.load(f)
    command = who["command"] if len(who["command"]) <= 120 else who["command"][:117] + "..."
    return f"process {who['pid']} on {who['host']} since {who['started']} ({command})"
  except (OSError, ValueError, KeyError, TypeError):
    return "another process (its lock file does not say which)"


def lock(workdir: str) -> None:
  """Takes `workdir` for this process (creating it), or raises WorkdirInUse
  naming the process that holds it. Idempotent within a process."""
  path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
  if path in _HELD:
    return
  created = [d for d in _missing_parents(os.path.dirname(path))]
  created += [] if os.path.lexists(path) else [path]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # O_NOFOLLOW: a link planted at the lock's name is not followed.
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    raise WorkdirInUse(f"--workdir={workdir} is in use by {_holder(path)}: wait for it to end, "
                       "stop it, or pass another --workdir") from None
  who = {"pid": os.getpid(), "host": socket.gethostname(),
         "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
  os.ftruncate(fd, 0)
  os.write(fd, (json.dumps(who) + "\n").encode())
  _HELD[path] = fd, created


def _missing_parents(folder: str) -> list[str]:
  """`folder` and those of its parents that do not exist, innermost first."""
  missing = []
  while not os.path.exists(folder):
    missing.append(folder)
    folder = os.path.dirname(folder)
  return missing


def abandon(workdir: str) -> None:
  """After bad input found once the workdir was taken: releases it and removes
  what `lock` created (the lock file, folders it made that are still empty),
  so a refused command leaves no trace."""
  path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
  if path not in _HELD:
    return
  fd, created = _HELD.pop(path)
  os.close(fd)
  for made in ([path] if path in created else []) + [c for c in created if c != path]:
    try:
      os.remove(made) if made == path else os.rmdir(made)
    except OSError:
      return  # Something else was written there meanwhile: keep it.
