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

import math
import os
import sys

from absl import app, flags, logging
import numpy as np

from wgan_jax import configs, data
from wgan_jax.cli import flags_parser, unwritable, usage_error

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's working directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest intact one).")
_NUM = flags.DEFINE_integer("num", 64, "Number of samples.")
_OUT = flags.DEFINE_string("out", None, "PNG to write (default: WORKDIR/samples_step<N>.png).")
_NPZ = flags.DEFINE_string("npz", None, "Also write the samples to this .npz (key 'samples': "
                           "uint8 [N, H, W, C] images, or float32 [N, 2] points).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise.")
_RAW = flags.DEFINE_bool("raw_generator", False, "Sample the generator itself, not the "
                        "moving average of its weights that a run with ema.decay > 0 keeps "
                        "and samples by default.")
_MODEL = flags.DEFINE_integer("model", None, "Which model of a sweep (its index, as in "
                              "WORKDIR/models/NN and summary.json's `models`).")

# Samples one call writes at most, and the float32 bytes they may take (2 GiB:
# e.g. 43,690 samples of 64x64x3).
MAX_SAMPLES = 100_000
MAX_SAMPLE_BYTES = 2 << 30


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


def _samples(workdir: str, step: int | None, name: str | None,
             overrides: list[tuple[str, str]], num: int, seed: int, model: int | None,
             raw: bool = False):
  """(step, config, samples) of `step`, or of the newest checkpoint that reads back."""
  from wgan_jax import checkpointing, generators  # pylint: disable=import-outside-toplevel

  def load(candidate: int | None):
    found, config = generators.saved_config(workdir, candidate, name, overrides)
    shape = data.data_shape(config.data)
    most = min(MAX_SAMPLES, MAX_SAMPLE_BYTES // (4 * math.prod(shape)))
    if num > most:
      raise configs.ConfigError(
          f"--num={num} is more than {most} samples of shape {shape} (2 GiB of float32) "
          "in one call; call again with other --seed values")
    return found, config, generators.from_checkpoint(config, workdir, found, num, seed, model,
                                                     raw)

  return checkpointing.newest_readable(workdir, step, load)


def main(parsed) -> None:
  name, overrides, _ = parsed
  workdir = _WORKDIR.value
  if not workdir:
    usage_error("--workdir is required: the directory of a training run")
  if not 1 <= _NUM.value <= MAX_SAMPLES:
    usage_error(f"--num={_NUM.value} must be at least 1 and at most {MAX_SAMPLES}; for more, "
                "call again with other --seed values")
  for flag, path, extension in (("--out", _OUT.value, ".png"), ("--npz", _NPZ.value, ".npz")):
    problem = path and output_problem(flag, path, extension)
    if problem:
      usage_error(problem)

  from wgan_jax import checkpointing, generators, pixels  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.ERROR)  # A tool: its output is the files and one line.
  try:
    step, config, samples = _samples(workdir, _STEP.value, name, overrides, _NUM.value,
                                     _SEED.value, _MODEL.value, _RAW.value)
  except (checkpointing.CheckpointError, configs.ConfigError) as e:
    usage_error(str(e))

  model = "" if _MODEL.value is None else f"_model{_MODEL.value:02d}"
  out = _OUT.value or os.path.join(workdir, f"samples_step{step}{model}.png")
  problem = output_problem("--out", out, ".png")
  if problem:
    usage_error(problem)
  written, current = [], out
  try:
    generators.save_figure(out, samples, f"{config.experiment}: {len(samples)} samples",
                           generators.grid_columns(config))
    written.append(out)
    if _NPZ.value:
      current = _NPZ.value
      np.savez_compressed(_NPZ.value,
                          samples=samples if samples.ndim == 2 else pixels.to_uint8(samples),
                          step=step, seed=_SEED.value)
      written.append(_NPZ.value)
  except OSError as e:
    for path in written + [current]:  # Nothing this call wrote, whole or half, stays.
      if os.path.isfile(path):
        os.remove(path)
    print(f"error: could not write the samples ([Errno {e.errno}] {e.strerror}): free disk "
          "space or pass another --out / --npz; nothing was written", file=sys.stderr)
    sys.exit(1)
  print(f"wrote {len(samples)} samples of step {step} to " + " and ".join(written),
        file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(default=None))
