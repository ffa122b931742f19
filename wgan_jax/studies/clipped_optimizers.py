"""RMSProp against Adam under weight clipping (the WGAN paper, Section 3).

The paper: "WGAN training becomes unstable at times when one uses a momentum
based optimizer such as Adam (with beta1 > 0) on the critic, or when one uses
high learning rates", so it trains with RMSProp. Here the clipped WGAN on
8 Gaussians (c = 0.01, n_critic 5) trains both networks with PyTorch's RMSProp
(the paper's) and with Adam (beta1 = 0.5 and 0.9), each at the paper's rate
5e-5 and at 10x it, several seeds per setting (one sweep program per
optimizer): the exact W1 to the data and the critic's estimate over training,
and each seed's worst W1 after the first quarter of the run (a seed that
blows up).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from wgan_jax.studies import report, training

DESCRIPTION = ("WGAN paper: RMSProp against Adam (beta1 0.5, 0.9) for the clipped critic, at "
               "lr 5e-5 and 5e-4: exact W1 and the critic's estimate over training")

EXPERIMENT = "toy_8gaussians_clip"
# name -> the optimizer of both networks.
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "rmsprop": {"optimizer.name": "rmsprop", "optimizer.decay": 0.99},
    "adam b1=0.5": {"optimizer.name": "adam", "optimizer.b1": 0.5, "optimizer.b2": 0.999},
    "adam b1=0.9": {"optimizer.name": "adam", "optimizer.b1": 0.9, "optimizer.b2": 0.999},
}


@dataclasses.dataclass(frozen=True)
class Settings:
  optimizers: tuple[str, ...] = tuple(OPTIMIZERS)
  lrs: tuple[float, ...] = (5e-5, 5e-4)
  steps: int = 3000
  every: int = 100
  seeds: int = 3
  width: int = 128
  batch: int = 128
  tiny: bool = False


FULL = Settings()
# A test's setting that still holds the claim: the full setting's first 1,200 iterations
# at 10x the paper's rate (the same models: a sweep's seeds do not depend on its grid).
TINY = Settings(optimizers=("rmsprop", "adam b1=0.9"), lrs=(5e-4,), steps=1200, tiny=True)


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  s = TINY if tiny else FULL
  results: dict[str, Any] = {}
  w1_floor = None
  for name in s.optimizers:
    optimizer = OPTIMIZERS[name]
    config = training.make_config(EXPERIMENT, {
        **training.toy_overrides(tiny, s.steps, s.every, s.width, s.batch),
        **optimizer, "optimizer.schedule": "constant",
        "sweep.key": "optimizer.lr", "sweep.grid": s.lrs, "sweep.seeds": s.seeds})
    history = training.train(config, training.run_dir(out_dir, "clipped_optimizers",
                                                      name.replace(" ", "_").replace("=", "")))
    at, w1 = history.series("eval/w1")
    logged, estimate = history.series("train/wasserstein_estimate")
    w1_floor = float(history.final("w1_floor")[0])
    for i, lr in enumerate(s.lrs):
      models = slice(i * s.seeds, (i + 1) * s.seeds)
      results[f"{name}, lr {lr:g}"] = {
          "optimizer": name, "lr": lr, "eval_step": at.tolist(), "log_step": logged.tolist(),
          "w1": training.band(w1[:, models]), "estimate": training.band(estimate[:, models]),
          "final_w1": history.final("w1")[models].tolist(),
          # The worst W1 of each seed after the first quarter of the run.
          "w1_peak": np.max(w1[len(at) // 4:, models], axis=0).tolist()}

  fig, axes = plt.subplots(1, 2 * len(s.lrs), figsize=(5.5 * 2 * len(s.lrs), 4), squeeze=False)
  axes = axes[0]
  for i, lr in enumerate(s.lrs):
    ax_w1, ax_est = axes[2 * i], axes[2 * i + 1]
    for name in s.optimizers:
      r = results[f"{name}, lr {lr:g}"]
      line, = ax_w1.plot(r["eval_step"], r["w1"]["mean"], label=name)
      ax_w1.fill_between(r["eval_step"], r["w1"]["min"], r["w1"]["max"], alpha=0.2,
                         color=line.get_color())
      ax_est.plot(r["log_step"], r["estimate"]["mean"], color=line.get_color(), label=name)
    ax_w1.axhline(w1_floor, color="gray", ls=":", label="W1 of two real samples")
    ax_w1.set(xlabel="generator iteration", ylabel="exact W1 (generated, real)",
              title=f"lr {lr:g}: W1 to the data (band: seeds)")
    ax_est.set(xlabel="generator iteration", ylabel="E f(real) - E f(fake)",
               title=f"lr {lr:g}: the critic's estimate (mean over seeds)")
    ax_w1.legend(fontsize=8)
  fig.tight_layout()
  return report.finish(out_dir, "clipped_optimizers", fig, {
      "experiment": EXPERIMENT, "settings": {**dataclasses.asdict(s),
                                             "optimizers": OPTIMIZERS},
      "w1_floor": w1_floor, "runs": results,
      "summary": {k: {"final_w1_mean": float(np.mean(r["final_w1"])),
                      "final_w1_worst": float(np.max(r["final_w1"])),
                      "w1_peak_worst": float(np.max(r["w1_peak"]))}
                  for k, r in results.items()}})
