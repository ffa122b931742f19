"""Samples from a trained generator, restored alone from a run's checkpoint.

  python -m wgan_jax.sample --workdir=workdirs/digits_dcgan_gp
  python -m wgan_jax.sample --workdir=DIR --step=2000 --num=64 --out=grid.png --npz=s.npz --seed=1

Only the generator's params and batch statistics are read; the critic and
the optimizer states are never built. The architecture comes from the config
saved with the checkpoint, or from `--experiment=NAME` (+ overrides) if given.
The same seed gives the same images. Batch norm follows the config's
`sampling_batch_norm` (default "batch": each batch of `batch_size` by its own
statistics, as the reference codes sample).
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
import numpy as np

from wgan_jax import configs
from wgan_jax.cli import flags_parser, usage_error

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's working directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_NUM = flags.DEFINE_integer("num", 64, "Number of samples.")
_OUT = flags.DEFINE_string("out", None, "PNG to write (default: WORKDIR/samples_step<N>.png).")
_NPZ = flags.DEFINE_string("npz", None, "Also write the samples to this .npz (key 'samples': "
                           "uint8 [N, H, W, C] images, or float32 [N, 2] points).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise.")


def main(parsed) -> None:
  name, overrides, _ = parsed
  workdir = _WORKDIR.value
  if not workdir:
    usage_error("--workdir is required: the directory of a training run")
  if _NUM.value < 1:
    usage_error(f"--num={_NUM.value} must be at least 1")

  from wgan_jax import checkpointing, generation, plots  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.ERROR)  # A tool: its output is the files and one line.
  try:
    step, metadata = checkpointing.read_metadata(workdir, _STEP.value)
    if name is None:
      config = configs.from_dict(metadata["config"], overrides)
    else:
      config = configs.from_command_line(name, overrides)
    samples = generation.from_checkpoint(config, workdir, step, _NUM.value, _SEED.value)
  except (checkpointing.CheckpointError, configs.ConfigError) as e:
    usage_error(str(e))

  out = _OUT.value or os.path.join(workdir, f"samples_step{step}.png")
  generation.save_figure(out, samples, f"{config.experiment}: {len(samples)} samples")
  if _NPZ.value:
    np.savez_compressed(_NPZ.value,
                        samples=samples if samples.ndim == 2 else plots.to_uint8(samples),
                        step=step, seed=_SEED.value)
  print(f"wrote {_NUM.value} samples of step {step} to {out}"
        + (f" and {_NPZ.value}" if _NPZ.value else ""), file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(default=None))
