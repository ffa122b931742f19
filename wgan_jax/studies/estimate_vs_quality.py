"""Does the critic's estimate track sample quality over a run?

The WGAN paper's claim: the critic's E[f(real)] - E[f(fake)], read during
training, correlates with sample quality, which the standard GAN's loss does
not. Here the training-time estimate (the mean over each log interval) is
ranked against an independent measure taken at the same steps: the exact W1
to the data on 8 Gaussians (WGAN and WGAN-GP, several seeds each), and the
Frechet distance in a digit classifier's features (`metrics/domain.py`) on
scikit-learn's digits (WGAN-GP, DCGAN). Spearman's rank correlation per run.
"""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from wgan_jax.metrics.yardstick import spearman
from wgan_jax.studies import report, training

DESCRIPTION = ("rank correlation of the training-time critic estimate with exact W1 (toy) and "
               "the digit classifier's FD (digits) over a run")

TOY = {"wgan": "toy_8gaussians_clip", "wgan-gp": "toy_8gaussians"}
DIGITS = "digits_dcgan_gp"


def _ranked(history: training.History, quality: str) -> dict[str, Any]:
  """Estimate and quality at the steps that have both, per model, and their
  Spearman correlation."""
  at, estimate = history.series("train/wasserstein_estimate")
  q_at, measured = history.series(quality)
  common = np.intersect1d(at, q_at)
  estimate = estimate[np.isin(at, common)]
  measured = measured[np.isin(q_at, common)]
  per_model = [spearman(estimate[:, m], measured[:, m]) for m in range(estimate.shape[1])]
  return {"step": common.tolist(), "estimate": estimate.T.tolist(), "quality": measured.T.tolist(),
          "spearman": [rho for rho, _ in per_model], "spearman_p": [p for _, p in per_model]}


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  steps, every, seeds = (6, 2, 1) if tiny else (2000, 100, 3)
  results: dict[str, Any] = {}
  for objective, experiment in TOY.items():
    if tiny and objective != "wgan-gp":  # A test: one toy run and the digits run.
      continue
    config = training.make_config(experiment, {
        **training.toy_overrides(tiny, steps, every), "sweep.seeds": seeds})
    history = training.train(config, training.run_dir(out_dir, "estimate_vs_quality", objective))
    results[f"8gaussians {objective}"] = {"measure": "exact W1",
                                          **_ranked(history, "eval/w1")}
  digit_steps, digit_every = (4, 2) if tiny else (1500, 100)
  config = training.make_config(DIGITS, {
      "num_generator_steps": digit_steps, "log_every": digit_every, "eval_every": digit_every,
      "checkpoint_every": 0, "eval.num_samples": 200 if tiny else 2000,
      **({"batch_size": 16, "model.generator.ngf": 8, "model.critic.ndf": 8, "n_critic": 1}
         if tiny else {})})
  history = training.train(config, training.run_dir(out_dir, "estimate_vs_quality", "digits"))
  results["digits wgan-gp"] = {"measure": "digit-classifier FD", **_ranked(history,
                                                                           "eval/domain_fd")}

  fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4))
  for ax, (name, r) in zip(axes, results.items()):
    for m, (est, quality) in enumerate(zip(r["estimate"], r["quality"])):
      points = ax.scatter(est, quality, c=r["step"], cmap="viridis", s=14,
                          marker="os^v"[m % 4], label=f"seed {m}: rho {r['spearman'][m]:+.2f}")
    ax.set(xlabel="critic estimate (training)", ylabel=r["measure"], title=name)
    ax.legend(fontsize=8)
  fig.colorbar(points, ax=axes[-1], label="generator iteration")
  fig.tight_layout()
  return report.finish(out_dir, "estimate_vs_quality", fig, {
      "generator_steps": {"toy": steps, "digits": digit_steps},
      "eval_every": {"toy": every, "digits": digit_every}, "seeds": seeds, "runs": results,
      "mean_spearman": {name: float(np.mean(r["spearman"])) for name, r in results.items()}})
