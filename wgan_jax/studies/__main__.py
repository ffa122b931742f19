"""Runs one of the theory's studies: a figure and its numbers.

  python -m wgan_jax.studies --list
  python -m wgan_jax.studies parallel_lines                 # -> studies/parallel_lines.{png,json}
  python -m wgan_jax.studies xy_game --out=docs/studies --tiny

`--tiny` runs a setting small enough for a test (seconds to a minute); the
default is the full setting of the docs' figures, which takes from under a
second (xy_game) to about 27 minutes (modern_training) on a 2-core CPU
(docs/STUDIES.md gives each one's time).
A bad command line is one `error:` line and exit code 2; a write that fails,
one line and exit code 1. SIGINT / SIGTERM / SIGHUP stop it with one line
(exit 130 / 143 / 129) and nothing written: a run it was training keeps its
checkpoint, and the same command resumes it.
"""
from __future__ import annotations

import os
import sys
import time

from wgan_jax import startup

startup.quiet_console()

# pylint: disable=wrong-import-position
from absl import app, flags, logging

from wgan_jax import studies
from wgan_jax.cli import flag_error, unwritable, usage_error

_OUT = flags.DEFINE_string("out", "studies", "Folder for NAME.png and NAME.json (created).")
_TINY = flags.DEFINE_bool("tiny", False, "A setting small enough for a test, not the full one.")
_LIST = flags.DEFINE_bool("list", False, "List the studies with their descriptions, and exit.")


def _parse(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    usage_error(flag_error(e))


def _out_problem(out: str) -> str | None:
  """Why `out` cannot take the files, or None; creates it if missing."""
  if os.path.exists(out) and not os.path.isdir(out):
    return f"--out={out} is a file; pass a folder"
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    return f"--out={out} cannot be created ({e.strerror}); pass another folder"
  reason = unwritable(out)
  return reason and f"--out={out} is not writable ({reason}); pass another folder"


def main(argv: list[str]) -> None:
  names = argv[1:]
  if _LIST.value:
    width = max(map(len, studies.STUDIES))
    for name in studies.STUDIES:
      print(f"{name:<{width}}  {studies.description(name)}")
    return
  if len(names) != 1:
    what = "no study named" if not names else f"one study at a time, got {' '.join(names)}"
    usage_error(f"{what}: python -m wgan_jax.studies NAME [--out=DIR] [--tiny]; studies: "
                f"{', '.join(studies.STUDIES)} (--list describes them)")
  name = names[0]
  if name not in studies.STUDIES:
    usage_error(f"unknown study {name!r}; use one of {', '.join(studies.STUDIES)} "
                "(--list describes them)")
  problem = _out_problem(_OUT.value)
  if problem:
    usage_error(problem)
  logging.set_verbosity(logging.ERROR)  # A tool: its output is the files and one line.
  start = time.perf_counter()
  # pylint: disable=import-outside-toplevel
  from wgan_jax.preemption import EXIT_CODES, StopRequested, raise_on_signals
  from wgan_jax.studies import report, training
  raise_on_signals()  # Between runs too: one line, not a KeyboardInterrupt traceback.
  try:
    studies.get(name).run(_OUT.value, tiny=_TINY.value)
  except training.RunStopped as e:  # Its checkpoint is saved: the same command resumes.
    print(f"error: {name}: {e}; nothing was written: run the same command to continue",
          file=sys.stderr)
    sys.exit(EXIT_CODES.get(e.reason, 1))
  except StopRequested as e:
    print(f"error: {name}: stopped by {e.reason}; nothing was written", file=sys.stderr)
    sys.exit(e.exit_code)
  except report.StudyError as e:  # A run it trains failed: one line, its runs kept.
    print(f"error: {name}: {e}", file=sys.stderr)
    sys.exit(1)
  except OSError as e:  # A write that fails (disk full, folder removed): one line.
    print(f"error: could not write {name}'s files in {_OUT.value} ([Errno {e.errno}] "
          f"{e.strerror}); free disk space or pass another --out", file=sys.stderr)
    sys.exit(1)
  files = " and ".join(os.path.join(_OUT.value, f"{name}.{ext}") for ext in ("png", "json"))
  print(f"{name}{' (tiny)' if _TINY.value else ''}: wrote {files} in "
        f"{time.perf_counter() - start:.1f} s")
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
