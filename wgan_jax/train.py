"""Trains an experiment by name.

  python -m wgan_jax.train --experiment=toy_8gaussians --workdir=workdirs/toy
  python -m wgan_jax.train --experiment=toy_8gaussians --experiment.optimizer.lr=1e-4

`--experiment.KEY=VALUE` overrides any key of the experiment's config; the
value is read as the type the key already holds.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import app, flags, logging

from wgan_jax import configs

DEFAULT_EXPERIMENT = "toy_8gaussians"

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, TensorBoard events, figures and summary.json go "
    "(default: workdirs/<experiment>).")


def split_experiment_args(argv: Sequence[str]) -> tuple[str, list[tuple[str, str]], list[str]]:
  """Separates `--experiment[=NAME]` and `--experiment.KEY[=VALUE]` from other flags.

  Returns (experiment name, [(key, value text)], remaining argv).
  """
  name, overrides, rest = DEFAULT_EXPERIMENT, [], []
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


def usage_error(message: str) -> None:
  """One line on stderr and exit code 2: bad command lines get no traceback."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv: list[str]) -> tuple[str, list[tuple[str, str]], list[str]]:
  try:
    name, overrides, rest = split_experiment_args(argv[1:])
  except configs.ConfigError as e:
    usage_error(str(e))
  try:
    remaining = flags.FLAGS([argv[0]] + rest)
  except flags.Error as e:
    usage_error(f"{e}; see --helpfull")
  return name, overrides, remaining


def main(parsed) -> None:
  name, overrides, remaining = parsed
  if len(remaining) > 1:
    usage_error(f"unexpected arguments: {' '.join(remaining[1:])}")
  try:
    config = configs.from_command_line(name, overrides)
  except configs.ConfigError as e:
    usage_error(str(e))
  workdir = _WORKDIR.value or os.path.join("workdirs", config.experiment)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    usage_error(f"--workdir={workdir} is a file; pass a directory")

  # Imported here so that bad command lines fail fast, before JAX starts.
  from wgan_jax import trainer  # pylint: disable=import-outside-toplevel
  logging.info("experiment %s, workdir %s, overrides %s", config.experiment, workdir,
               overrides)
  try:
    trainer.train_and_evaluate(config, workdir)
  except trainer.NonFiniteError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
