"""The WGAN paper's image results (its Figures 5-7), on the data we have.

The paper trains WGAN (weight clipping, RMSProp 5e-5, the critic schedule of
100 updates early and every 500th) and the standard GAN (Adam 2e-4, one
discriminator step) with three generators: the DCGAN, the DCGAN without batch
normalisation, and a 4-layer MLP of 512 units; the critic is the DCGAN's each
time. Its claim: WGAN trains all three into images, the GAN only the DCGAN (no
batch norm: collapse; the MLP: garbage). Here the same six runs on
scikit-learn's digits at 16x16 (the LSUN experiments' settings, `bedrooms_*`,
with the digits and ngf = ndf = 32), each scored by the digit classifier
(`metrics/domain.py`: FD in its features, classes covered, class KL) with its
final grid.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any

import numpy as np
from PIL import Image

from wgan_jax.studies import report, training

DESCRIPTION = ("WGAN paper, Figures 5-7: WGAN against the standard GAN with the DCGAN generator, "
               "without batch norm, and an MLP generator, on digits: classifier scores and grids")

# generator -> the WGAN paper's experiment with it (its critic is the DCGAN's every time).
GENERATORS: dict[str, str] = {
    "dcgan": "bedrooms_dcgan", "dcgan without batch norm": "bedrooms_dcgan_nobn",
    "mlp": "bedrooms_mlp"}
# objective -> what changes on those experiments: the GAN as the paper trains it
# (bedrooms_dcgan_gan: -log D, Adam(2e-4, 0.5, 0.999), one discriminator step).
OBJECTIVES: dict[str, dict[str, Any]] = {
    "wgan": {},
    "gan": {"loss": "non-saturating", "clip": 0.0, "n_critic": 1,
            "n_critic_schedule": "constant", "optimizer.name": "adam", "optimizer.lr": 2e-4,
            "optimizer.b1": 0.5, "optimizer.b2": 0.999},
}
KEYS = ("domain_fd", "domain_classes_covered", "domain_kl")


@dataclasses.dataclass(frozen=True)
class Settings:
  steps: int = 3000
  every: int = 500
  width: int = 32                # ngf = ndf
  batch: int = 64
  eval_samples: int = 2000
  # (objective, generator) pairs to run; () for all six.
  only: tuple[tuple[str, str], ...] = ()
  tiny: bool = False


FULL = Settings()
# A test's seconds: the plumbing for a WGAN and a GAN, a convolutional and an MLP generator.
TINY = Settings(steps=2, every=2, width=8, batch=16, eval_samples=200,
                only=(("wgan", "mlp"), ("gan", "dcgan")), tiny=True)


def _overrides(generator: str, objective: str, s: Settings) -> dict[str, Any]:
  widths = {"model.critic.ndf": s.width,
            **({} if generator == "mlp" else {"model.generator.ngf": s.width})}
  return {"data.name": "digits", "data.image_size": 16, **widths, "batch_size": s.batch,
          "num_generator_steps": s.steps, "log_every": s.every, "eval_every": s.every,
          "checkpoint_every": 0, "eval.metrics": "domain", "eval.num_samples": s.eval_samples,
          **OBJECTIVES[objective],
          # A test's seconds: not the schedule's 100 early critic updates.
          **({"n_critic": 1, "n_critic_schedule": "constant"} if s.tiny else {})}


def _final_grid(workdir: str) -> np.ndarray:
  """The run's last sample grid (`samples_final.png`, else the newest step's)."""
  final = os.path.join(workdir, "samples_final.png")
  path = final if os.path.exists(final) else sorted(glob.glob(os.path.join(workdir,
                                                                           "samples_*.png")))[-1]
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  s = TINY if tiny else FULL
  results: dict[str, dict[str, Any]] = {}
  grids: dict[str, np.ndarray] = {}
  for objective in OBJECTIVES:
    for generator, experiment in GENERATORS.items():
      if s.only and (objective, generator) not in s.only:
        continue
      name = f"{objective}, {generator}"
      workdir = training.run_dir(out_dir, "wgan_paper_images",
                                 f"{objective}_{generator.replace(' ', '_')}")
      config = training.make_config(experiment, _overrides(generator, objective, s))
      history = training.train(config, workdir)
      at, fd = history.series("eval/domain_fd")
      results[name] = {"objective": objective, "generator": generator,
                       **{k: float(history.final(k)[0]) for k in KEYS},
                       "step": at.tolist(), "domain_fd_curve": fd[:, 0].tolist(),
                       "train_seconds": history.summary.get("train_seconds")}
      grids[name] = _final_grid(workdir)

  fig, axes = report.subplots(len(OBJECTIVES), len(GENERATORS), squeeze=False,
                              figsize=(4 * len(GENERATORS), 4.4 * len(OBJECTIVES)))
  for row, objective in enumerate(OBJECTIVES):
    for col, generator in enumerate(GENERATORS):
      name = f"{objective}, {generator}"
      ax = axes[row, col]
      if name not in results:
        ax.axis("off")
        continue
      ax.imshow(grids[name], interpolation="nearest")
      r = results[name]
      ax.set_title(f"{name}\nFD {r['domain_fd']:.1f}, {r['domain_classes_covered']:.0f} classes, "
                   f"KL {r['domain_kl']:.2f}", fontsize=9)
      ax.axis("off")
  fig.tight_layout()
  return report.finish(out_dir, "wgan_paper_images", fig, {
      "data": "digits 16x16", "settings": {**dataclasses.asdict(s), "objectives": OBJECTIVES,
                                           "generators": GENERATORS},
      "runs": results,
      "notes": {"train_seconds": "the trainer's wall time on the machine that ran it; not "
                                 "repeatable like the scores"}})
