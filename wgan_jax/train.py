"""Trains an experiment by name.

  python -m wgan_jax.train --experiment=toy_8gaussians --workdir=workdirs/toy
  python -m wgan_jax.train --experiment=toy_8gaussians --experiment.optimizer.lr=1e-4

`--experiment.KEY=VALUE` overrides any key of the experiment's config; the
value is read as the type the key already holds.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from wgan_jax import configs
from wgan_jax.cli import flags_parser, quiet_orbax_info_logs, usage_error

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, TensorBoard events, figures and summary.json go "
    "(default: workdirs/<experiment>).")


def main(parsed) -> None:
  name, overrides, _ = parsed
  try:
    config = configs.from_command_line(name, overrides)
  except configs.ConfigError as e:
    usage_error(str(e))
  workdir = _WORKDIR.value or os.path.join("workdirs", config.experiment)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    usage_error(f"--workdir={workdir} is a file; pass a directory")

  # Imported here so that bad command lines fail fast, before JAX starts.
  from wgan_jax import trainer  # pylint: disable=import-outside-toplevel
  from wgan_jax.data.images import DataError  # pylint: disable=import-outside-toplevel
  quiet_orbax_info_logs()
  logging.info("experiment %s, workdir %s, overrides %s", config.experiment, workdir,
               overrides)
  try:
    trainer.train_and_evaluate(config, workdir)
  except DataError as e:
    usage_error(str(e))
  except trainer.NonFiniteError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser())
