"""The WGAN paper's open questions as one study shape: a hyperparameter of
WGAN (weight clipping) swept, several seeds per value, all as one sweep
program; at every evaluation the exact W1 between generated and real points
(optimal transport) and the critic's estimate E[f(real)] - E[f(fake)]
averaged over the log interval. `clip_sweep` and `n_critic_sweep` are this
with their key and values.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from wgan_jax.studies import report, training

EXPERIMENT = "toy_8gaussians_clip"  # WGAN: RMSProp 5e-5, c = 0.01, n_critic 5, MLPs


@dataclasses.dataclass(frozen=True)
class Sweep:
  """The values of the key, the seeds of each, and how long every model trains."""
  grid: tuple[float, ...]
  seeds: int
  steps: int   # generator iterations
  every: int   # evaluations (exact W1) and logs of the estimate
  width: int | None = None  # the MLPs' width and the batch (None: `training.toy_overrides`')


def run_sweep(out_dir: str, name: str, key: str, sweep: Sweep, tiny: bool,
              question: str) -> dict[str, Any]:
  grid, seeds, steps, every = sweep.grid, sweep.seeds, sweep.steps, sweep.every
  config = training.make_config(EXPERIMENT, {
      **training.toy_overrides(tiny, steps, every, width=sweep.width, batch=sweep.width),
      "optimizer.schedule": "constant",
      "sweep.key": key, "sweep.grid": grid, "sweep.seeds": seeds})
  history = training.train(config, training.run_dir(out_dir, name, "sweep"))
  at, w1 = history.series("eval/w1")
  logged, estimate = history.series("train/wasserstein_estimate")
  w1_floor = float(history.final("w1_floor")[0])
  by_value: dict[str, Any] = {}
  for i, value in enumerate(grid):
    models = slice(i * seeds, (i + 1) * seeds)
    by_value[f"{value:g}"] = {
        "w1": training.band(w1[:, models]), "estimate": training.band(estimate[:, models]),
        "final_w1": history.final("w1")[models].tolist(),
        "final_estimate": estimate[-1, models].tolist()}

  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for value, curves in by_value.items():
    line, = axes[0].plot(at, curves["w1"]["mean"], label=f"{key} = {value}")
    axes[0].fill_between(at, curves["w1"]["min"], curves["w1"]["max"], color=line.get_color(),
                         alpha=0.2)
    axes[1].plot(logged, curves["estimate"]["mean"], color=line.get_color())
  axes[0].axhline(w1_floor, color="gray", ls=":", label="W1 of two real samples")
  axes[0].set(xlabel="generator iteration", ylabel="exact W1 (generated, real)",
              title=f"{question}: W1 to the data")
  axes[1].set(xlabel="generator iteration", ylabel="E[f(real)] - E[f(fake)]",
              title="The critic's estimate (mean over seeds)")
  # The estimates of different values span many decades (K grows with c).
  means = np.abs([c["estimate"]["mean"] for c in by_value.values()])
  axes[1].set_yscale("symlog", linthresh=max(float(np.min(means[means > 0], initial=1.0)), 1e-12))
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  return report.finish(out_dir, name, fig, {
      "experiment": EXPERIMENT, "key": key, "grid": list(grid), "seeds": seeds,
      "generator_steps": steps, "eval_every": every, "w1_floor": w1_floor,
      "eval_step": at.tolist(), "log_step": logged.tolist(), "by_value": by_value,
      "final_w1_mean": {v: float(np.mean(c["final_w1"])) for v, c in by_value.items()}})
