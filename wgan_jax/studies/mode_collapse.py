"""Mode collapse: the standard GAN against WGAN and WGAN-GP on 25 Gaussians.

The same MLP generator and critic (the WGAN-GP toy networks, narrower) for
the three objectives, each with its paper's optimizer and critic schedule,
several seeds each (one sweep program per objective). At every evaluation:
how many of the 25 modes hold a high-quality sample (within 3 standard
deviations of the mode) and the share of samples that are high quality.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np

from wgan_jax.data.toy import get_toy_dataset
from wgan_jax.metrics.toy import mode_stats
from wgan_jax.studies import report, training

DESCRIPTION = ("standard GAN vs WGAN vs WGAN-GP on 25 Gaussians, several seeds: modes covered "
               "and high-quality share over training")

# objective -> (experiment it starts from, what changes).
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "gan": ("toy_8gaussians_gan", {}),          # Adam 1e-3, 1 discriminator step, -log D
    "wgan": ("toy_8gaussians_clip", {}),        # RMSProp 5e-5, c = 0.01, 5 critic steps
    "wgan-gp": ("toy_25gaussians", {}),         # Adam 1e-3, lambda 0.1, 5 critic steps
}


@dataclasses.dataclass(frozen=True)
class Settings:
  steps: int = 10_000           # every objective, the same number of generator iterations
  every: int = 500
  seeds: int = 4
  width: int = 128
  batch: int = 128
  eval_samples: int = 1000
  objectives: tuple[str, ...] = tuple(SETTINGS)
  tiny: bool = False


FULL = Settings()
# A test's setting that still holds the claim (WGAN-GP covers more modes than the GAN).
TINY = Settings(steps=400, every=100, seeds=3, width=64, batch=64, eval_samples=500,
                objectives=("gan", "wgan-gp"), tiny=True)


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  s = TINY if tiny else FULL
  steps, every, seeds = s.steps, s.every, s.seeds
  curves, final = {}, {}
  for objective in s.objectives:
    experiment, changes = SETTINGS[objective]
    config = training.make_config(experiment, {
        **training.toy_overrides(s.tiny, steps, every, s.width, s.batch, s.eval_samples),
        **changes, "data.name": "25gaussians", "sweep.seeds": seeds})
    history = training.train(config, training.run_dir(out_dir, "mode_collapse", objective))
    at, modes = history.series("eval/modes_covered")
    _, quality = history.series("eval/high_quality_share")
    curves[objective] = {"step": at.tolist(), "modes_covered": training.band(modes),
                         "high_quality_share": training.band(quality)}
    final[objective] = {"modes_covered": history.final("modes_covered").tolist(),
                        "high_quality_share": history.final("high_quality_share").tolist(),
                        "w1": history.final("w1").tolist()}

  # What the measure gives the data itself: the ceiling of both curves.
  data = get_toy_dataset("25gaussians")
  real = mode_stats(np.asarray(data.sample(jax.random.PRNGKey(0), s.eval_samples)),
                    data.centers, data.std)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, key in zip(axes, ("modes_covered", "high_quality_share")):
    ax.axhline(real[key], color="gray", ls="--", lw=0.8, label="real data")
  for objective, curve in curves.items():
    for ax, key in zip(axes, ("modes_covered", "high_quality_share")):
      line, = ax.plot(curve["step"], curve[key]["mean"], label=objective)
      ax.fill_between(curve["step"], curve[key]["min"], curve[key]["max"],
                      color=line.get_color(), alpha=0.2)
  axes[0].set(xlabel="generator iteration", ylabel="modes covered (of 25)",
              title="Modes covered (mean, band: min-max over seeds)")
  axes[1].set(xlabel="generator iteration", ylabel="share of samples",
              title="High-quality samples (within 3 std of a mode)")
  axes[1].legend()
  fig.tight_layout()
  return report.finish(out_dir, "mode_collapse", fig, {
      "data": "25gaussians", "real_data": real, "seeds": seeds, "generator_steps": steps,
      "eval_every": every,
      "settings": {**dataclasses.asdict(s),
                   **{k: {"experiment": e, **c} for k, (e, c) in SETTINGS.items()}},
      "curves": curves, "final": final,
      "final_mean": {k: {m: float(np.mean(v)) for m, v in f.items()} for k, f in final.items()}})
