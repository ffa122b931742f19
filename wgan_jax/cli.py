"""Command-line plumbing shared by the entry points (train, sample, bench):
`--experiment=NAME` with `--experiment.KEY=VALUE` overrides, and one-line
errors with exit code 2 for bad command lines."""
from __future__ import annotations

import errno
import logging
import os
import re
import sys
import tempfile
from typing import Callable, NoReturn, Sequence

from absl import flags

from wgan_jax import configs

DEFAULT_EXPERIMENT = "toy_8gaussians"


def split_experiment_args(argv: Sequence[str], default: str | None = DEFAULT_EXPERIMENT
                          ) -> tuple[str | None, list[tuple[str, str]], list[str]]:
  """Separates `--experiment[=NAME]` and `--experiment.KEY[=VALUE]` from other flags.

  Returns (experiment name or `default`, [(key, value text)], remaining argv).
  """
  name, overrides, rest = default, [], []
  args = list(argv)
  i = 0
  while i < len(args):
    arg = args[i]
    head, has_value, value = arg.partition("=")
    if head in ("--experiment", "-experiment") or head.startswith(("--experiment.",
                                                                    "-experiment.")):
      if not has_value:
        if i + 1 >= len(args) or args[i + 1].startswith("-"):
          raise configs.ConfigError(f"{head} needs a value: {head}=VALUE")
        value = args[i + 1]
        i += 1
      key = head.lstrip("-")[len("experiment"):].lstrip(".")
      if key:
        overrides.append((key, value))
      else:
        name = value
    else:
      rest.append(arg)
    i += 1
  return name, overrides, rest


def usage_error(message: str) -> NoReturn:
  """One line on stderr and exit code 2: bad command lines get no traceback."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


# absl's words for a flag value of the wrong type (Python's), and ours.
_WRONG_TYPE = ((re.compile(r"invalid literal for int\(\) with base \d+: (.*)$"), "a whole number"),
               (re.compile(r"could not convert string to float: (.*)$"), "a number"),
               (re.compile(r"\('Non-boolean argument to boolean flag', (.*)\)$"),
                "true or false"))


def flag_error(error: flags.Error) -> str:
  """absl's message for a bad flag, as one line in the project's words: "flag
  --num=five: 'five' is not a whole number; see --helpfull"."""
  text = str(error)
  for pattern, expected in _WRONG_TYPE:
    found = pattern.search(text)
    if found:
      text = f"{text[:found.start()].rstrip(': ')}: {found.group(1)} is not {expected}"
      break
  return f"{text}; see --helpfull"


HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-helpshort")


def print_help(default: str | None) -> None:
  """The entry point's usage (its module docstring), its flags, and the
  experiments with their one-line descriptions, on stdout."""
  main = sys.modules.get("__main__")
  print((main.__doc__ or "").strip() + "\n")
  print("flags:")
  print(f"  --experiment=NAME: the experiment to run"
        + (f" (default: {default})" if default else " (default: the one WORKDIR holds)"))
  print("  --experiment.KEY=VALUE: set KEY of its config (e.g. --experiment.optimizer.lr=1e-4; "
        "optimizer.KEY sets both networks')")
  lines = flags.FLAGS.main_module_help().strip().split("\n")
  print("\n".join(lines[1:] if lines and lines[0].endswith(":") else lines))
  print("  --helpfull: every flag, absl's and JAX's included\n")
  print("experiments:")
  descriptions = configs.describe_experiments()
  width = max(map(len, descriptions))
  for name, text in descriptions.items():
    print(f"  {name:{width}s}  {text}")


def flags_parser(default: str | None = DEFAULT_EXPERIMENT) -> Callable:
  """An `app.run` flags parser: absl flags plus the experiment and its
  overrides; returns (experiment name, overrides, remaining argv). `--help`
  prints the usage, the flags and the experiments, and exits 0."""

  def parse(argv: list[str]) -> tuple[str | None, list[tuple[str, str]], list[str]]:
    if any(a in HELP_FLAGS for a in argv[1:]):
      print_help(default)
      sys.exit(0)
    try:
      name, overrides, rest = split_experiment_args(argv[1:], default)
    except configs.ConfigError as e:
      usage_error(str(e))
    try:
      remaining = flags.FLAGS([argv[0]] + rest)
    except flags.Error as e:
      usage_error(flag_error(e))
    if len(remaining) > 1:
      usage_error(f"unexpected arguments: {' '.join(remaining[1:])}")
    return name, overrides, remaining

  return parse


def quiet_orbax_logs() -> None:
  """Orbax logs a dozen INFO lines per save: keep its warnings and errors only,
  without tracebacks (a failed save is reported as one line by the caller)."""

  def keep(record: logging.LogRecord) -> bool:
    if f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    record.exc_info, record.exc_text = None, None
    # Saves between evaluations carry no score, by design (checkpointing.Checkpointer).
    if "did not provide metrics" in record.getMessage():
      return False
    return record.levelno >= logging.WARNING

  logging.getLogger("absl").addFilter(keep)


def unwritable(folder: str) -> str | None:
  """Why nothing can be written in the existing `folder` (e.g. "EACCES"), or None.
  Root passes os.access everywhere: try the real thing, and leave nothing behind."""
  try:
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as e:
    return errno.errorcode.get(e.errno, "") or e.strerror or type(e).__name__
  return None


def output_problem(flag: str, path: str, extension: str) -> str | None:
  """Why `path` cannot take the output of `flag`, or None; checked before anything is written."""
  if not path.lower().endswith(extension):
    return f"{flag}={path} must end in {extension}"
  absolute = os.path.abspath(path)
  folder = os.path.dirname(absolute)
  if os.path.isdir(absolute):
    return f"{flag}={path} is a directory; pass a file name ending in {extension}"
  if len(os.path.basename(absolute).encode()) > 255:
    return f"{flag}={path}: the file name is longer than 255 bytes; pass a shorter one"
  if not os.path.isdir(folder):
    return f"{flag}={path}: the folder {folder} does not exist; create it or pass another path"
  reason = unwritable(folder)
  if reason:
    return f"{flag}={path} cannot be written ({reason} in {folder}); pass another path"
  return None
