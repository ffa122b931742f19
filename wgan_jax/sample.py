"""Samples from a trained generator, restored alone from a run's checkpoint.

  python -m wgan_jax.sample --workdir=workdirs/digits_dcgan_gp
  python -m wgan_jax.sample --workdir=DIR --step=2000 --num=64 --out=grid.png --npz=s.npz --seed=1
  python -m wgan_jax.sample --workdir=DIR --class=3,5 --truncation=0.7   # conditional runs
  python -m wgan_jax.sample --workdir=DIR --interpolate=slerp --steps=10 --gif=walk.gif

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

from wgan_jax import startup

startup.quiet_console()

# pylint: disable=wrong-import-position
from absl import app, flags, logging
import numpy as np

from wgan_jax import configs, data, latents
from wgan_jax.cli import flags_parser, output_problem, usage_error

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's working directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest intact one).")
_NUM = flags.DEFINE_integer("num", None, "Number of samples (default 64), or with "
                            "--interpolate of paths (default 8).")
_OUT = flags.DEFINE_string("out", None, "PNG to write (default: WORKDIR/samples_step<N>.png).")
_NPZ = flags.DEFINE_string("npz", None, "Also write the samples to this .npz (key 'samples': "
                           "uint8 [N, H, W, C] images, or float32 [N, 2] points).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise.")
_RAW = flags.DEFINE_bool("raw_generator", False, "Sample the generator itself, not the "
                        "moving average of its weights that a run with ema.decay > 0 keeps "
                        "and samples by default.")
_CLASS = flags.DEFINE_list("class", None, "Conditional runs: the class (or comma-separated "
                           "classes, drawn in turn, a column each) of the samples (default: all "
                           "classes, a column each).")
_TRUNCATION = flags.DEFINE_float("truncation", None, "The truncation trick: noise beyond "
                                 "[-psi, psi] drawn again (BigGAN); smaller psi, more typical "
                                 "and less diverse samples (default: none).")
_INTERPOLATE = flags.DEFINE_enum("interpolate", None, latents.PATHS, "Instead of samples, "
                                 "--num rows of --steps images each along a path between two "
                                 "noise points: slerp (the great circle) or linear.")
_STEPS = flags.DEFINE_integer("steps", 8, "--interpolate: images a row, both ends included.")
_GIF = flags.DEFINE_string("gif", None, "--interpolate: also write an animated GIF walking "
                           "every row's path there and back.")
_SCALE = flags.DEFINE_integer("scale", None, "Enlarge the grid this many times (nearest "
                              "neighbour; default: images shown at 64 pixels or more a side).")
_MODEL = flags.DEFINE_integer("model", None, "Which model of a sweep (its index, as in "
                              "WORKDIR/models/NN and summary.json's `models`).")

# Samples one call writes at most, and the float32 bytes they may take (2 GiB:
# e.g. 43,690 samples of 64x64x3).
MAX_SAMPLES = 100_000
MAX_SAMPLE_BYTES = 2 << 30


def _samples(workdir: str, step: int | None, name: str | None,
             overrides: list[tuple[str, str]], num: int, seed: int, model: int | None,
             raw: bool = False, inputs=None):
  """(step, config, samples) of `step`, or of the newest checkpoint that reads
  back; `inputs(config)` gives the generator's input (default: `num` samples'
  noise from `seed`)."""
  from wgan_jax import checkpointing, generators  # pylint: disable=import-outside-toplevel

  def load(candidate: int | None):
    found, config = generators.saved_config(workdir, candidate, name, overrides)
    shape = data.data_shape(config.data)
    most = min(MAX_SAMPLES, MAX_SAMPLE_BYTES // (4 * math.prod(shape)))
    if num > most:
      raise configs.ConfigError(
          f"--num={num} is more than {most} samples of shape {shape} (2 GiB of float32) "
          "in one call; call again with other --seed values")
    z = None if inputs is None else inputs(config)
    return found, config, generators.from_checkpoint(config, workdir, found, num, seed, model,
                                                     raw, z)

  return checkpointing.newest_readable(workdir, step, load)


def _classes() -> list[int] | None:
  """--class as whole numbers (their range is checked against the run's config)."""
  if _CLASS.value is None:
    return None
  try:
    return [int(k) for k in _CLASS.value]
  except ValueError:
    usage_error(f"--class={','.join(_CLASS.value)} must be whole numbers, comma-separated "
                "(e.g. --class=3 or --class=0,5)")


def _inputs(num: int, classes: list[int] | None):
  """config -> the generator's input the flags ask for."""
  from wgan_jax import generators  # pylint: disable=import-outside-toplevel

  def of(config):
    if _TRUNCATION.value is not None and generators.normalises_each_batch(config):
      print("warning: --truncation with sampling_batch_norm=batch: the generator's batch norm "
            "normalises each batch by its own statistics, which undoes most of the truncation; "
            "add --experiment.sampling_batch_norm=running", file=sys.stderr)
    if _INTERPOLATE.value is None:
      return generators.noise(config, num, _SEED.value, _TRUNCATION.value, classes)
    if len(data.data_shape(config.data)) == 1:
      raise configs.ConfigError("--interpolate is for image runs; this run's samples are "
                                "2-D points: plot them with --num instead")
    return generators.interpolation_noise(config, num, _STEPS.value, _SEED.value,
                                          _INTERPOLATE.value, _TRUNCATION.value, classes)
  return of


def _check_flags(num: int) -> None:
  """The flags' own ranges, before anything is read."""
  if _TRUNCATION.value is not None and not _TRUNCATION.value > 0:
    usage_error(f"--truncation={_TRUNCATION.value} must be > 0: the threshold psi beyond which "
                "noise is drawn again (0.5 to 1 is usual; leave it out for none)")
  if _SCALE.value is not None and not 1 <= _SCALE.value <= 16:
    usage_error(f"--scale={_SCALE.value} must be a whole number from 1 to 16")
  if _INTERPOLATE.value is None:
    for flag in ("steps", "gif"):
      if flags.FLAGS[flag].present:
        usage_error(f"--{flag} is for --interpolate=slerp or --interpolate=linear; add that flag "
                    f"or drop --{flag}")
  elif not 2 <= _STEPS.value <= 64:
    usage_error(f"--steps={_STEPS.value} must be from 2 to 64 (the images of a path, both ends "
                "included)")
  elif num * _STEPS.value > MAX_SAMPLES:
    usage_error(f"--num={num} paths of --steps={_STEPS.value} are more than {MAX_SAMPLES} "
                "images; ask for fewer")


def main(parsed) -> None:
  name, overrides, _ = parsed
  workdir = _WORKDIR.value
  if not workdir:
    usage_error("--workdir is required: the directory of a training run")
  walk = _INTERPOLATE.value is not None
  num = _NUM.value if _NUM.value is not None else (8 if walk else 64)
  if not 1 <= num <= MAX_SAMPLES:
    usage_error(f"--num={num} must be at least 1 and at most {MAX_SAMPLES}; for more, "
                "call again with other --seed values")
  _check_flags(num)
  classes = _classes()
  for flag, path, extension in (("--out", _OUT.value, ".png"), ("--npz", _NPZ.value, ".npz"),
                                ("--gif", _GIF.value, ".gif")):
    problem = path and output_problem(flag, path, extension)
    if problem:
      usage_error(problem)

  from wgan_jax import checkpointing, generators, pixels, plots  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.ERROR)  # A tool: its output is the files and one line.
  try:
    step, config, samples = _samples(workdir, _STEP.value, name, overrides, num, _SEED.value,
                                     _MODEL.value, _RAW.value, _inputs(num, classes))
  except (checkpointing.CheckpointError, configs.ConfigError) as e:
    usage_error(str(e))

  model = "" if _MODEL.value is None else f"_model{_MODEL.value:02d}"
  kind = "interpolation" if walk else "samples"
  out = _OUT.value or os.path.join(workdir, f"{kind}_step{step}{model}.png")
  problem = output_problem("--out", out, ".png")
  if problem:
    usage_error(problem)
  columns = _STEPS.value if walk else generators.grid_columns(config, classes)
  written, current = [], out
  try:
    generators.save_figure(out, samples, f"{config.experiment}: {len(samples)} samples",
                           columns, _SCALE.value)
    written.append(out)
    if _GIF.value:
      current = _GIF.value
      paths = samples.reshape(num, _STEPS.value, *samples.shape[1:])
      plots.save_gif(_GIF.value, [plots.readable_grid(paths[:, t], scale=_SCALE.value)
                                  for t in plots.there_and_back(_STEPS.value)])
      written.append(_GIF.value)
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
          "space or pass another --out / --npz / --gif; nothing was written", file=sys.stderr)
    sys.exit(1)
  what = f"{num} paths of {_STEPS.value}" if walk else f"{len(samples)} samples"
  print(f"wrote {what} of step {step} to " + " and ".join(written), file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(default=None))
