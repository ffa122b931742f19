"""Mode collapse: the standard GAN against WGAN and WGAN-GP on 25 Gaussians.

The same MLP generator and critic (the WGAN-GP toy networks, narrower) for
the three objectives, each with its paper's optimizer and critic schedule,
several seeds each (one sweep program per objective). At every evaluation:
how many of the 25 modes hold a high-quality sample (within 3 standard
deviations of the mode) and the share of samples that are high quality.
"""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from wgan_jax.studies import report, training

DESCRIPTION = ("standard GAN vs WGAN vs WGAN-GP on 25 Gaussians, several seeds: modes covered "
               "and high-quality share over training")

# objective -> (experiment it starts from, what changes).
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "gan": ("toy_8gaussians_gan", {}),          # Adam 1e-3, 1 discriminator step, -log D
    "wgan": ("toy_8gaussians_clip", {}),        # RMSProp 5e-5, c = 0.01, 5 critic steps
    "wgan-gp": ("toy_25gaussians", {}),         # Adam 1e-3, lambda 0.1, 5 critic steps
}


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  steps, every, seeds = (4, 2, 1) if tiny else (2000, 100, 4)
  curves, final = {}, {}
  for objective, (experiment, changes) in SETTINGS.items():
    config = training.make_config(experiment, {
        **training.toy_overrides(tiny, steps, every), **changes, "data.name": "25gaussians",
        "sweep.seeds": seeds})
    history = training.train(config, training.run_dir(out_dir, "mode_collapse", objective))
    at, modes = history.series("eval/modes_covered")
    _, quality = history.series("eval/high_quality_share")
    curves[objective] = {"step": at.tolist(), "modes_covered": training.band(modes),
                         "high_quality_share": training.band(quality)}
    final[objective] = {"modes_covered": history.final("modes_covered").tolist(),
                        "high_quality_share": history.final("high_quality_share").tolist(),
                        "w1": history.final("w1").tolist()}

  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for objective, curve in curves.items():
    for ax, key in zip(axes, ("modes_covered", "high_quality_share")):
      line, = ax.plot(curve["step"], curve[key]["mean"], label=objective)
      ax.fill_between(curve["step"], curve[key]["min"], curve[key]["max"],
                      color=line.get_color(), alpha=0.2)
  axes[0].set(xlabel="generator iteration", ylabel="modes covered (of 25)",
              title="Modes covered (mean, band: min-max over seeds)")
  axes[1].set(xlabel="generator iteration", ylabel="share of samples",
              title="High-quality samples (within 3 std of a mode)")
  axes[0].legend()
  fig.tight_layout()
  return report.finish(out_dir, "mode_collapse", fig, {
      "data": "25gaussians", "seeds": seeds, "generator_steps": steps, "eval_every": every,
      "settings": {k: {"experiment": e, **c} for k, (e, c) in SETTINGS.items()},
      "curves": curves, "final": final,
      "final_mean": {k: {m: float(np.mean(v)) for m, v in f.items()} for k, f in final.items()}})
