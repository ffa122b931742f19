"""Files written whole or not at all: into a temporary file beside `path`,
then `os.replace`d over it, so a failed or killed write leaves the old file.
The workdir's files have one writer (process 0) and a fixed temporary name,
`<path>.tmp`; cache entries, which independent processes may write at once,
a unique one.

A folder where a file goes is not tried: IsADirectoryError naming it, which the
run reports as bad input (`WorkdirFileError`), not as a full disk."""
from __future__ import annotations

import errno
import os
import tempfile
from typing import BinaryIO, Callable

from wgan_jax.configs.rules import ConfigError


class WorkdirFileError(ConfigError):
  """A path of the workdir holds what the run cannot use (a folder where it writes a
  file, a file it did not write): bad input, one line, exit 2 (a ConfigError to the
  entry points)."""


def write_atomically(path: str, write: Callable[[BinaryIO], None], unique: bool = False) -> None:
  """`write(f)` into `path + ".tmp"` (or, `unique`, a temporary file of its own
  beside `path`), which then replaces `path`. A folder at `path`: IsADirectoryError
  naming it, before anything is written."""
  if os.path.isdir(path):
    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
  if unique:
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                     prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
  else:
    temporary = f"{path}.tmp"
  try:
    with open(temporary, "wb") as f:
      write(f)
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def write_text_atomically(path: str, text: str) -> None:
  write_atomically(path, lambda f: f.write(text.encode()))
