"""Small data: a DCGAN on a few hundred images, sampled after more and more
epochs (the posts' sprite example, on the digits).

The first `images` of scikit-learn's digits (`data.limit`) at 16x16, three
ways: the plain standard GAN with a DCGAN (-log D, Adam 2e-4, batch norm),
WGAN-GP (`digits_dcgan_gp`), and WGAN-GP with DiffAugment (color,
translation, cutout on everything the critic sees), for the same number of
generator iterations. At every evaluation: a grid, the digit classifier's
scores against all 1,797 digits (FD, classes covered), and a memorisation
ratio: the mean pixel distance from each sample to its nearest training
image, over the same for the digits the run never saw (below 1: the samples
sit closer to the training images than new digits do, i.e. copies).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from PIL import Image

from wgan_jax import generators, pixels
from wgan_jax.metrics import domain
from wgan_jax.metrics.memorisation import memorisation_ratio
from wgan_jax.studies import report, training

NAME = "small_data"
DESCRIPTION = ("a few hundred digits: the plain DCGAN GAN, WGAN-GP and WGAN-GP + DiffAugment "
               "by epoch: grids, digit-classifier FD, classes covered, memorisation ratio")

# setting -> (experiment, changes): every one on the first `images` digits.
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "gan": ("digits_dcgan_gan_improved", {"model.generator.norm": "batch",
                                          "techniques.minibatch_kernels": 0,
                                          "techniques.label_smoothing": 0.0}),
    "wgan-gp": ("digits_dcgan_gp", {}),
    "wgan-gp + diffaugment": ("digits_dcgan_gp", {"augment": "color,translation,cutout"}),
}
SCORES = ("domain_fd", "domain_classes_covered")


@dataclasses.dataclass(frozen=True)
class Settings:
  images: int = 300            # the training set: the first `images` digits
  steps: int = 2000            # generator iterations, the same for every setting
  every: int = 250             # evaluations (grid, scores)
  width: int = 32              # the critic's ndf; the generator's 2 * width
  batch: int = 64
  eval_samples: int = 1000
  only: tuple[str, ...] = ()   # settings to run; () for all


FULL = Settings()
# A test's: 64 images, so that 200 iterations are hundreds of epochs.
TINY = Settings(images=64, steps=200, every=100, width=16, batch=32, eval_samples=300)


def _overrides(setting: str, s: Settings) -> dict[str, Any]:
  return {**SETTINGS[setting][1], "data.limit": s.images,
          # The generator draws at 8x8 (experiments/_images.digits_dcgan): ngf 2 * width
          # makes the 4x4 map of a 16x16 one with ngf = width.
          "model.generator.ngf": 2 * s.width, "model.critic.ndf": s.width,
          "batch_size": s.batch, "num_generator_steps": s.steps,
          "log_every": s.every, "eval_every": s.every, "checkpoint_every": s.every,
          "keep_checkpoints": s.steps // s.every + 1, "eval.metrics": "domain",
          "eval.num_samples": s.eval_samples}


def _consumed(config, steps: int) -> int:
  """Real images the critic has seen after `steps` generator iterations."""
  return steps * config.batch_size * config.n_critic


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  s = TINY if tiny else FULL
  digits, _ = domain.load_labelled(domain.data_config("digits", 16))
  train, unseen = digits[:s.images], digits[s.images:]
  results: dict[str, dict[str, Any]] = {}
  grids: dict[str, dict[int, np.ndarray]] = {}
  for setting, (experiment, _) in SETTINGS.items():
    if s.only and setting not in s.only:
      continue
    workdir = training.run_dir(out_dir, NAME, setting.replace(" + ", "_").replace("-", "_"))
    history = training.train(training.make_config(experiment, _overrides(setting, s)), workdir)
    config = history.config
    at, _ = history.series("eval/domain_fd")
    ratios, grids[setting] = [], {}
    for step in at:
      fake = generators.from_checkpoint(config, workdir, int(step), s.eval_samples, seed=0)
      ratios.append(memorisation_ratio(pixels.to_uint8(fake), train, unseen))
      path = os.path.join(workdir, f"samples_{int(step):06d}.png")
      with Image.open(path if os.path.exists(path) else
                      os.path.join(workdir, "samples_final.png")) as image:
        grids[setting][int(step)] = np.asarray(image.convert("RGB"))
    results[setting] = {
        "experiment": experiment, "step": at.tolist(),
        "epochs": [_consumed(config, int(t)) / s.images for t in at],
        **{k: history.series(f"eval/{k}")[1][:, 0].tolist() for k in SCORES},
        "memorisation_ratio": ratios}

  columns = len(next(iter(grids.values())))
  fig, axes = report.subplots(len(grids), columns, squeeze=False,
                              figsize=(max(2.1 * columns, 6.0), 2.5 * len(grids)))
  for row, (setting, by_step) in enumerate(grids.items()):
    r = results[setting]
    for col, (step, grid) in enumerate(by_step.items()):
      ax = axes[row, col]
      ax.imshow(grid, interpolation="nearest")
      ax.set_title(f"{setting}\n{r['epochs'][col]:.0f} epochs: FD {r['domain_fd'][col]:.0f}, "
                   f"mem {r['memorisation_ratio'][col]:.2f}", fontsize=7)
      ax.axis("off")
  fig.tight_layout()
  return report.finish(out_dir, NAME, fig, {
      "data": f"the first {s.images} of scikit-learn's digits, 16x16",
      "settings": {**dataclasses.asdict(s), "tiny": tiny,
                   "runs": {k: {"experiment": e, **c} for k, (e, c) in SETTINGS.items()}},
      "runs": results,
      "notes": ("epochs: real images the critic saw (generator iterations x batch x n_critic) "
                "over the training set's size; memorisation_ratio: mean distance from a sample "
                "to its nearest training image over the same for the unseen digits; scores "
                "against all 1,797 digits")})
