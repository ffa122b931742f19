"""Files written whole or not at all: into `<path>.tmp`, then `os.replace`d
over `path`, so a failed or killed write leaves the old file (one writer per
path: process 0, or the one process that computes a cache entry)."""
from __future__ import annotations

import os
from typing import BinaryIO, Callable


def write_atomically(path: str, write: Callable[[BinaryIO], None]) -> None:
  """`write(f)` into `path + ".tmp"`, which then replaces `path`."""
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
