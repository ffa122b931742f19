"""Does the critic's estimate track sample quality over a run?

The WGAN paper's claim (its Figures 3 and 4): the critic's E[f(real)] -
E[f(fake)], read during training, falls as the samples get better, while the
standard GAN's discriminator gives no such reading: its loss estimates
JS(P_r, P_g) (at the optimal discriminator the loss is 2 log 2 - 2 JS), which
stays near its ceiling log 2 whatever the samples look like.

Each setting's training-time reading (the mean over each log interval) is
ranked against an independent measure taken at the same steps: the exact W1 to
the data on 8 Gaussians, and the Frechet distance in a digit classifier's
features (`metrics/domain.py`) on scikit-learn's digits. Spearman's rank
correlation per run, several seeds (one sweep program) per setting.

The clipped WGAN trains with the paper's critic schedule (100 critic updates
for the first 25 generator iterations and every 500th, else 5:
`n_critic_schedule=wgan_reference`), so its critic is near its optimum when
read; the standard GAN's reading is log 2 - (its discriminator's loss) / 2.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from wgan_jax.metrics.yardstick import spearman
from wgan_jax.studies import report, training
from wgan_jax.studies.improved_techniques import DIGITS_GAN, DIGITS_PLAIN

DESCRIPTION = ("rank correlation of the training-time critic estimate (WGAN, WGAN-GP) and the "
               "GAN's JS estimate with exact W1 (toy) and the digit classifier's FD (digits)")

ESTIMATE = "train/wasserstein_estimate"
JS_FROM_LOSS = "train/critic_loss"  # The GAN's: JS estimate = log 2 - loss / 2.

# setting -> (experiment, changes, the reading it is ranked by).
TOY: dict[str, tuple[str, dict[str, Any], str]] = {
    "wgan": ("toy_8gaussians_clip", {"n_critic_schedule": "wgan_reference"}, ESTIMATE),
    "wgan-gp": ("toy_8gaussians", {}, ESTIMATE),
    "gan": ("toy_8gaussians_gan", {}, JS_FROM_LOSS),
}
DIGITS: dict[str, tuple[str, dict[str, Any], str]] = {
    "wgan-gp": ("digits_dcgan_gp", {}, ESTIMATE),
    # The plain DCGAN GAN: the improved-techniques experiment with its techniques off.
    "gan": (DIGITS_GAN, DIGITS_PLAIN, JS_FROM_LOSS),
}


@dataclasses.dataclass(frozen=True)
class Settings:
  toy_steps: int = 4000
  toy_every: int = 200
  seeds: int = 3
  toy_width: int = 128
  toy_batch: int = 128
  toy_eval_samples: int = 1000
  toy_settings: tuple[str, ...] = ("wgan", "wgan-gp", "gan")
  digit_steps: int = 1500
  digit_every: int = 100
  digit_samples: int = 2000
  digit_seeds: int = 1
  tiny: bool = False


FULL = Settings()
# A test's setting that still holds the claim: short toy runs of WGAN-GP and the GAN.
TINY = Settings(toy_steps=800, toy_every=40, seeds=3, toy_width=64,
                toy_settings=("wgan-gp", "gan"), toy_eval_samples=500, digit_steps=4,
                digit_every=2, digit_samples=200, tiny=True)


def reading(history: training.History, name: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, [T, models]) of what a setting is ranked by: the critic's
  estimate, or the GAN's JS estimate from its discriminator's loss."""
  at, values = history.series(name)
  return at, (math.log(2) - values / 2 if name == JS_FROM_LOSS else values)


def _ranked(history: training.History, name: str, quality: str) -> dict[str, Any]:
  """Reading and quality at the steps that have both, per model, and their
  Spearman correlation."""
  at, estimate = reading(history, name)
  q_at, measured = history.series(quality)
  common = np.intersect1d(at, q_at)
  estimate = estimate[np.isin(at, common)]
  measured = measured[np.isin(q_at, common)]
  per_model = [spearman(estimate[:, m], measured[:, m]) for m in range(estimate.shape[1])]
  return {"reading": "JS estimate (log 2 - loss / 2)" if name == JS_FROM_LOSS
                     else "critic estimate",
          "step": common.tolist(), "estimate": estimate.T.tolist(), "quality": measured.T.tolist(),
          "spearman": [rho for rho, _ in per_model], "spearman_p": [p for _, p in per_model]}


def _digit_overrides(s: Settings) -> dict[str, Any]:
  return {"num_generator_steps": s.digit_steps, "log_every": s.digit_every,
          "eval_every": s.digit_every, "checkpoint_every": 0, "eval.num_samples": s.digit_samples,
          "sweep.seeds": s.digit_seeds,
          **({"batch_size": 16, "model.generator.ngf": 8, "model.critic.ndf": 8, "n_critic": 1}
             if s.tiny else {})}


def _figure(results: dict[str, dict[str, Any]]):
  fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4))
  for ax, (name, r) in zip(np.atleast_1d(axes), results.items()):
    for m, (est, quality) in enumerate(zip(r["estimate"], r["quality"])):
      points = ax.scatter(est, quality, c=r["step"], cmap="viridis", s=12,
                          marker="os^v"[m % 4], label=f"seed {m}: rho {r['spearman'][m]:+.2f}")
    if r["reading"].startswith("JS"):
      ax.axvline(math.log(2), color="gray", ls="--", lw=0.8)
    ax.set(xlabel=f"{r['reading']} (training)", ylabel=r["measure"], title=name)
    ax.title.set_fontsize(10)
    ax.legend(fontsize=7)
  fig.colorbar(points, ax=np.atleast_1d(axes)[-1], label="generator iteration")
  fig.tight_layout()
  return fig


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  s = TINY if tiny else FULL
  results: dict[str, Any] = {}
  for setting in s.toy_settings:
    experiment, changes, name = TOY[setting]
    config = training.make_config(experiment, {
        **training.toy_overrides(tiny, s.toy_steps, s.toy_every, s.toy_width, s.toy_batch,
                                s.toy_eval_samples),
        **changes,
        "sweep.seeds": s.seeds})
    history = training.train(config, training.run_dir(out_dir, "estimate_vs_quality", setting))
    results[f"8gaussians {setting}"] = {"measure": "exact W1",
                                        **_ranked(history, name, "eval/w1")}
  for setting, (experiment, changes, name) in DIGITS.items():
    config = training.make_config(experiment, {**changes, **_digit_overrides(s)})
    history = training.train(config, training.run_dir(out_dir, "estimate_vs_quality",
                                                      f"digits_{setting}"))
    results[f"digits {setting}"] = {"measure": "digit-classifier FD",
                                    **_ranked(history, name, "eval/domain_fd")}
  return report.finish(out_dir, "estimate_vs_quality", _figure(results), {
      "generator_steps": {"toy": s.toy_steps, "digits": s.digit_steps},
      "eval_every": {"toy": s.toy_every, "digits": s.digit_every}, "seeds": s.seeds,
      "settings": {**dataclasses.asdict(s),
                   "toy": {k: {"experiment": e, **c} for k, (e, c, _) in TOY.items()},
                   "digits": {k: {"experiment": e, **c} for k, (e, c, _) in DIGITS.items()}},
      "runs": results,
      "mean_spearman": {name: float(np.mean(r["spearman"])) for name, r in results.items()}})
