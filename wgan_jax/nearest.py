"""Is it memorising? Samples beside their nearest training images, and how near.

  python -m wgan_jax.nearest --workdir=workdirs/digits_small
  python -m wgan_jax.nearest --workdir=DIR --step=2000 --num=16 --neighbours=4 --space=pixels

The generator alone is restored (the newest checkpoint that reads back, or
--step) and draws --pool samples; the run's training images are read as the
run saw them (its data config, `data.limit` included). Each sample's nearest
training images are found in one space: `pixels` (flattened, in [-1, 1]),
`domain` (the digit classifier's features; digits and mnist) or `inception`
(the FID Inception's pool features; needs its weights). `auto` takes the
classifier where one exists, else pixels up to 32 pixels a side, else the
Inception when its weights are named.

Written: a figure (WORKDIR/nearest_step<N>.png, or --out), one row per shown
sample: the sample, a separator, its --neighbours nearest training images,
nearest first, enlarged as sample grids are; and WORKDIR/
nearest_step<N>.json with the statistics (metrics/memorisation.py): the share
of samples nearer a training image than the median (and the 5th percentile)
training image is to its nearest other one; where the data set has images the
run did not train on, the same shares of those (the baseline) and the
memorisation ratio against them. The last line printed is one JSON object of
the statistics.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

from wgan_jax import startup

startup.quiet_console()

# pylint: disable=wrong-import-position
from absl import app, flags, logging
import ml_collections
import numpy as np

from wgan_jax import configs, data
from wgan_jax.cli import flags_parser, output_problem, usage_error

SPACES = ("auto", "pixels", "domain", "inception")

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's working directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest intact one).")
_NUM = flags.DEFINE_integer("num", 16, "Samples shown, one row each.")
_NEIGHBOURS = flags.DEFINE_integer("neighbours", 4, "Nearest training images shown per sample.")
_POOL = flags.DEFINE_integer("pool", 1000, "Samples the statistics are computed over (the "
                             "shown ones are its first --num).")
_SPACE = flags.DEFINE_enum("space", "auto", SPACES, "Where distances are measured: flattened "
                           "pixels, the digit classifier's features, the Inception's pool "
                           "features; auto: the classifier, else pixels up to 32 pixels a "
                           "side, else the Inception if its weights are named.")
_OUT = flags.DEFINE_string("out", None, "PNG to write (default: WORKDIR/nearest_step<N>.png).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise (as wgan_jax.sample's).")
_MODEL = flags.DEFINE_integer("model", None, "Which model of a sweep (its index, as in "
                              "WORKDIR/models/NN and summary.json's `models`).")
_RAW = flags.DEFINE_bool("raw_generator", False, "Sample the generator itself, not the "
                        "moving average of its weights that a run with ema.decay > 0 keeps.")
_WEIGHTS = flags.DEFINE_string("inception_weights", None,
                               "pytorch-fid's pt_inception-2015-12-05-6726825d.pth, for "
                               "--space=inception (default: $WGAN_JAX_INCEPTION_WEIGHTS).")

MAX_NUM, MAX_NEIGHBOURS, MAX_POOL = 256, 32, 50_000
# Training images searched at most (a larger set: the first this many as read).
MAX_TRAIN = 50_000
# Pixel distances mean something up to this side; beyond it a network's features do.
PIXEL_SIDE = 32
# The figure: GAP grey pixels between images (digits' black backgrounds would
# merge), and the sample set apart by a LINE-pixel white rule.
GAP, LINE, BACKGROUND = 2, 2, 96
SEPARATOR = GAP + LINE + GAP
# The statistics on the last line printed.
SUMMARY = ("step", "space", "closer_than_median", "closer_than_p5", "memorisation_ratio")
INDEX_ORDER = ("the training images in the order images.evaluation_batches reads them "
               "(the run's data config, seed 0)")


# ---------------------------------------------------------------- the space

def choose_space(asked: str, config: ml_collections.ConfigDict, weights: str | None) -> str:
  """The space `asked` for, `auto` resolved; a ValueError where it cannot apply."""
  from wgan_jax.metrics import domain, inception_weights  # pylint: disable=import-outside-toplevel
  name, side = config.data.name, max(data.data_shape(config.data)[:2])
  if asked == "domain" and not domain.supported(name):
    raise ValueError(f"--space=domain needs a digit data set ({', '.join(domain.SUPPORTED)}); "
                     f"{name} has no classifier: use --space=pixels or --space=inception")
  if asked != "auto":
    return asked
  if domain.supported(name):
    return "domain"
  if side <= PIXEL_SIDE or inception_weights.resolve(weights) is None:
    if side > PIXEL_SIDE:
      print(f"warning: {name} images of {side} pixels a side are compared in pixels, which "
            "says little at that size; pass --inception_weights for the Inception's features",
            file=sys.stderr)
    return "pixels"
  return "inception"


def check_weights(space: str, weights: str | None) -> None:
  """The Inception weights a --space=inception needs are named and there (costs nothing)."""
  if space != "inception":
    return
  from wgan_jax.metrics import inception_weights  # pylint: disable=import-outside-toplevel
  if inception_weights.resolve(weights) is None:
    raise ValueError(f"--space=inception needs the Inception weights: "
                     f"{inception_weights.HOW_TO_GET}")
  inception_weights.located(weights)


def features(space: str, config: ml_collections.ConfigDict, weights: str | None):
  """uint8 images [N, H, W, C] -> float32 rows [N, D] in `space`."""
  # pylint: disable=import-outside-toplevel
  from wgan_jax.metrics import memorisation
  if space == "pixels":
    return memorisation.pixel_rows
  if space == "domain":
    from wgan_jax.metrics import domain
    scorer = domain.scorer(config.data)
    return lambda images: scorer.features(images)[0]
  from wgan_jax.metrics import image_metrics, inception_weights
  scorer = image_metrics.InceptionScorer(inception_weights.load(weights))
  return lambda images: scorer.of_array(images, "images").pool


# ---------------------------------------------------------------- the images

def _read(cfg: ml_collections.ConfigDict, num: int) -> np.ndarray:
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  batches, _ = images.evaluation_batches(cfg, num, batch_size=1024)
  return np.concatenate(list(batches))


def training_images(config: ml_collections.ConfigDict) -> np.ndarray:
  """The images the run trained on (its first `data.limit`, or all; at most
  MAX_TRAIN), uint8 [T, H, W, C] as its pipeline made them."""
  return _read(config.data, MAX_TRAIN)


def held_out_images(config: ml_collections.ConfigDict, train: np.ndarray, num: int
                    ) -> np.ndarray:
  """Up to `num` images of the data set that are not among `train` (by their
  pixels), where the run trained on a part of it (`data.limit`) and `train` holds
  all of that part; else none."""
  limit = config.data.get("limit", 0)
  if not limit or limit > len(train):
    return train[:0]
  whole = ml_collections.ConfigDict(config.data.to_dict())
  whole.limit = 0
  drawn = _read(whole, limit + num)
  seen = {image.tobytes() for image in train}
  fresh = [i for i, image in enumerate(drawn) if image.tobytes() not in seen]
  return drawn[fresh[:num]]


def figure(samples: np.ndarray, train: np.ndarray, indices: np.ndarray) -> np.ndarray:
  """uint8 RGB: a row per sample (uint8 [N, H, W, C]): the sample, a white rule,
  then the training images `indices` [N, k], each enlarged as sample grids are
  (`plots.readable_factor`)."""
  from wgan_jax import plots  # pylint: disable=import-outside-toplevel
  n, k = indices.shape
  h, w = samples.shape[1:3]
  factor = plots.readable_factor(min(h, w))
  hh, ww = h * factor, w * factor
  rgb = lambda x: plots.upscale(np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x, factor)
  canvas = np.full((GAP + n * (hh + GAP), GAP + ww + SEPARATOR + k * (ww + GAP), 3), BACKGROUND,
                   np.uint8)
  rule = GAP + ww + GAP
  canvas[:, rule:rule + LINE] = 255
  for row in range(n):
    top = GAP + row * (hh + GAP)
    canvas[top:top + hh, GAP:GAP + ww] = rgb(samples[row])
    for col in range(k):
      left = GAP + ww + SEPARATOR + col * (ww + GAP)
      canvas[top:top + hh, left:left + ww] = rgb(train[indices[row, col]])
  return canvas


# ---------------------------------------------------------------- the report

def _summary_lines(report: dict) -> list[str]:
  """What the report says, in a few lines."""
  spacing, held, ratio = (report[k] for k in ("training_spacing", "held_out",
                                              "memorisation_ratio"))
  shares = lambda x: (f"{x['closer_than_median']:.3f} below the median, "
                      f"{x['closer_than_p5']:.3f} below the 5th percentile")
  return [f"step {report['step']}, {report['space']} space: {report['samples']:,} samples, "
          f"{report['training_images']:,} training images, {report['held_out_images']:,} "
          "held-out",
          f"training images' distance to their nearest other: median {spacing['median']:.4g}, "
          f"5th percentile {spacing['p5']:.4g}",
          f"samples nearer a training image than that: {shares(report)}",
          "held-out real images: " + (shares(held) if held else "none (the run trained on the "
                                      "whole data set)"),
          "memorisation ratio: " + (f"{ratio:.3f} (samples' mean distance to their nearest "
                                    "training image over held-out images')" if held else
                                    "none (no held-out images)")]


# ---------------------------------------------------------------- the command

@dataclasses.dataclass(frozen=True)
class Plan:
  """What one call computes and writes, settled before anything is restored."""
  step: int
  config: ml_collections.ConfigDict
  space: str
  out: str
  report: str


def _plan(step: int, config: ml_collections.ConfigDict) -> Plan:
  """The checks a run's config allows before its generator is read: one-line errors."""
  if data.is_toy(config.data):
    raise configs.ConfigError(f"this run's data set, {config.data.name}, is a toy set of 2-D "
                              "points: nearest neighbours are for image runs")
  space = choose_space(_SPACE.value, config, _WEIGHTS.value)
  name = f"nearest_step{step}" + ("" if _MODEL.value is None else f"_model{_MODEL.value:02d}")
  out = _OUT.value or os.path.join(_WORKDIR.value, f"{name}.png")
  report = os.path.join(_WORKDIR.value, f"{name}.json")
  for flag, path, extension in (("--out", out, ".png"), ("the report", report, ".json")):
    problem = output_problem(flag, path, extension)
    if problem:
      raise ValueError(problem)
  return Plan(step, config, space, out, report)


def _load(name: str | None, overrides) -> tuple[Plan, Any, Any]:
  """(plan, module, generator) of --step or the newest checkpoint that reads back."""
  from wgan_jax import checkpointing, generators  # pylint: disable=import-outside-toplevel

  def load(candidate: int | None):
    plan = _plan(*generators.saved_config(_WORKDIR.value, candidate, name, overrides))
    return (plan, *generators.restore(plan.config, _WORKDIR.value, plan.step, _MODEL.value,
                                      _RAW.value))

  return checkpointing.newest_readable(_WORKDIR.value, _STEP.value, load)


def _check_flags() -> None:
  workdir = _WORKDIR.value
  if not workdir:
    usage_error("--workdir is required: the directory of a training run")
  if not os.path.isdir(workdir):
    usage_error(f"--workdir={workdir} is not a directory; pass the directory of a training run")
  for flag, value, most in (("--num", _NUM.value, MAX_NUM),
                            ("--neighbours", _NEIGHBOURS.value, MAX_NEIGHBOURS),
                            ("--pool", _POOL.value, MAX_POOL)):
    if not 1 <= value <= most:
      usage_error(f"{flag}={value} must be at least 1 and at most {most:,}")
  if _POOL.value < _NUM.value:
    usage_error(f"--pool={_POOL.value} is fewer than the --num={_NUM.value} samples shown; "
                "pass a larger --pool")
  problem = _OUT.value and output_problem("--out", _OUT.value, ".png")
  if problem:
    usage_error(problem)


def _compute(name: str | None, overrides) -> tuple[Plan, dict, np.ndarray, np.ndarray,
                                                    np.ndarray]:
  """(plan, report, shown samples, training images, shown rows' neighbour indices)."""
  # pylint: disable=import-outside-toplevel
  from wgan_jax import generators, pixels
  from wgan_jax.metrics import memorisation
  k, pool = _NEIGHBOURS.value, _POOL.value
  check_weights(_SPACE.value, _WEIGHTS.value)
  plan, module, generator = _load(name, overrides)
  config = plan.config
  train = training_images(config)
  if len(train) < 2 or k > len(train):
    raise ValueError(f"--neighbours={k} with {len(train)} training image(s): pass at most "
                     f"{len(train)}" if len(train) >= 2 else
                     f"the run trained on {len(train)} image: nothing to compare with")
  held = held_out_images(config, train, pool)
  samples = pixels.to_uint8(generators.generate(
      module, generator, generators.noise(config, pool, _SEED.value),
      config.sampling_batch_norm, config.batch_size))
  rows = features(plan.space, config, _WEIGHTS.value)
  numbers, distances, indices = memorisation.summary(rows(samples), rows(train),
                                                     rows(held) if len(held) else None, k)
  num = _NUM.value
  report = {"step": plan.step, "experiment": config.experiment, "space": plan.space,
            "seed": _SEED.value, "model": _MODEL.value, "raw_generator": _RAW.value,
            "samples": pool, "training_images": len(train), "held_out_images": len(held),
            **numbers,
            "shown": [{"distances": d.tolist(), "indices": i.tolist()}
                      for d, i in zip(distances[:num], indices[:num])],
            "indices_into": INDEX_ORDER, "figure": os.path.abspath(plan.out)}
  return plan, report, samples[:num], train, indices[:num]


def main(parsed) -> None:
  name, overrides, _ = parsed
  _check_flags()
  # pylint: disable=import-outside-toplevel
  from wgan_jax import checkpointing, files, plots
  from wgan_jax.data import DataError
  from wgan_jax.metrics import inception_weights
  logging.set_verbosity(logging.ERROR)  # A tool: its output is the files and a few lines.
  try:
    plan, report, shown, train, indices = _compute(name, overrides)
  except (ValueError, configs.ConfigError, checkpointing.CheckpointError,
          inception_weights.WeightsError, DataError) as e:
    usage_error(str(e))
  written = []
  try:
    plots.save_png(plan.out, figure(shown, train, indices))
    written.append(plan.out)
    files.write_text_atomically(plan.report, json.dumps(report, indent=1) + "\n")
    written.append(plan.report)
  except OSError as e:
    for path in written:  # Nothing this call wrote stays.
      if os.path.isfile(path):
        os.remove(path)
    print(f"error: could not write the figure or the report ([Errno {e.errno}] {e.strerror}): "
          "free disk space or pass another --out; nothing was written", file=sys.stderr)
    sys.exit(1)
  for line in _summary_lines(report):
    print(line)
  print(f"wrote {plan.out} and {plan.report}", file=sys.stderr)
  print(json.dumps({key: report[key] for key in SUMMARY}))


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(default=None))
