"""Files written whole or not at all: into a temporary file beside `path`,
then `os.replace`d over it, so a failed or killed write leaves the old file.
The workdir's files have one writer (process 0) and a fixed temporary name,
`<path>.tmp`; cache entries, which independent processes may write at once,
a unique one."""
from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Callable


def write_atomically(path: str, write: Callable[[BinaryIO], None], unique: bool = False) -> None:
  """`write(f)` into `path + ".tmp"` (or, `unique`, a temporary file of its own
  beside `path`), which then replaces `path`."""
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
