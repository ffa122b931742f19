"""The training techniques that came after WGAN-GP, one at a time, on WGAN-GP.

The other penalties (WGAN-LP's one-sided one, R1 on real data, DRAGAN's around
real data: config `penalty`), a spectrally normalised critic
(`model.critic.norm=spectral`, beside the default penalty), the generator's
moving average (`ema.decay`; every evaluation of such a run scores the
average, not the last generator), bfloat16 compute (`precision=bf16`) and, on
images, DiffAugment (`augment`), each changed alone on WGAN-GP; then the
canonical pairings as their papers train them (SNGAN: hinge loss and spectral
norm without a penalty; R1 with the non-saturating loss) and an average that
starts after a warm-up (`ema.start`). On 25
Gaussians, several seeds each (one sweep program per setting): modes covered,
high-quality share and exact W1 at the end. On digits (one run per setting,
DCGAN): the digit classifier's FD, classes covered and class KL.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from wgan_jax.studies import report, training

DESCRIPTION = ("each modern technique alone on WGAN-GP (LP, R1, DRAGAN penalties, spectral norm, "
               "generator EMA, bf16, DiffAugment) and the canonical pairings (SNGAN, R1 with the "
               "non-saturating loss): modes, high-quality share, W1 and digits FD")

# R1 at gamma 1. Under the Wasserstein loss the critic's scale is set by the penalty
# alone: the loss is linear in f, R1's gamma/2 E||grad f(real)||^2 quadratic in its
# slope, so slopes go as 1/gamma. gamma = 1 asks for slopes of order one, as the GP
# settings' unit norm does; the GP weights (toy 0.1, digits 10) would allow a critic
# ten times steeper on the toy set and force one ten times flatter on digits.
R1 = {"penalty": "r1", "penalty_weight": 1.0}
# technique -> what changes on WGAN-GP, on both data sets. LP and DRAGAN keep the
# experiment's weight: the same (||grad|| - 1)^2 term, on other points or one-sided.
PENALTIES: dict[str, dict[str, Any]] = {
    "lp": {"penalty": "lp"}, "r1": R1, "dragan": {"penalty": "dragan"}}
COMMON: dict[str, dict[str, Any]] = {
    **PENALTIES,
    # With the default GP: "spectral, no penalty" is no WGAN-GP (configs refuse
    # wgan-gp with penalty none, and wgan would clip the weights as well).
    "spectral": {"model.critic.norm": "spectral"},
    "bf16": {"precision": "bf16"},
}
# The canonical pairings, each as its paper trains it, beside the one-at-a-time changes
# on WGAN-GP: SNGAN (Miyato et al. 2018: the hinge loss, a spectrally normalised critic,
# no penalty) and R1 under the non-saturating loss with one discriminator step per
# generator step (Mescheder et al. 2018, StyleGAN2).
PAIRINGS: dict[str, dict[str, Any]] = {
    "sngan (hinge + spectral)": {"loss": "hinge", "penalty": "none",
                                 "model.critic.norm": "spectral"},
    "r1 + non-saturating": {"loss": "non-saturating", **R1, "n_critic": 1},
}
TOY_BASE = "toy_25gaussians"
# The toy settings: the baseline, then each technique alone. The average's horizon
# is 1 / (1 - decay) generator steps: 100 of the run's 2,000, so it smooths the last
# few hundred steps; the untrained start (it averages from ema.start 0) weighs
# 0.99^2000, nothing, at the end.
TOY: dict[str, dict[str, Any]] = {
    "wgan-gp": {}, **{k: v for k, v in COMMON.items() if k != "bf16"},
    "ema": {"ema.decay": 0.99},
    # The average of the trained generator only: copied until step 1,000, averaged after.
    "ema after warm-up": {"ema.decay": 0.99, "ema.start": 1000},
    "bf16": COMMON["bf16"], **PAIRINGS}
# The digits settings (digits_dcgan_gp: DCGAN, layer-norm critic, lambda 10, Adam
# 2e-4): "spectral" replaces the critic's layer norm. Decay 0.999 (horizon 1,000
# steps) is longer than the 600-step run: at the end its average still holds 0.999^600
# = 55% of the untrained generator, so 0.99 (horizon 100) runs beside it.
# DiffAugment: the ~1,800 digits are a small set, its case.
DIGITS_BASE = "digits_dcgan_gp"
DIGITS: dict[str, dict[str, Any]] = {
    "wgan-gp": {}, **{k: v for k, v in COMMON.items() if k != "bf16"},
    "ema 0.999": {"ema.decay": 0.999}, "ema 0.99": {"ema.decay": 0.99},
    "ema 0.999 after warm-up": {"ema.decay": 0.999, "ema.start": 300},
    "bf16": COMMON["bf16"], "diffaugment": {"augment": "color,translation,cutout"},
    **PAIRINGS}
# The tiny setting (a test) runs these; each technique has its own tests
# (tests/test_modern.py), the study's plumbing is the same for every setting.
TINY_TOY = ("wgan-gp", "spectral", "sngan (hinge + spectral)")
TINY_DIGITS = ()
TOY_KEYS = ("modes_covered", "high_quality_share", "w1")
DIGIT_KEYS = ("domain_fd", "domain_classes_covered", "domain_kl")


def _evaluated(changes: dict[str, Any]) -> str:
  """Which generator the run's evaluations score."""
  return "moving average" if changes.get("ema.decay", 0.0) else "generator"


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  steps, every, seeds = (2, 2, 1) if tiny else (2000, 200, 3)
  toy: dict[str, Any] = {}
  for setting, changes in TOY.items():
    if tiny and setting not in TINY_TOY:
      continue
    overrides = {**training.toy_overrides(tiny, steps, every), "data.name": "25gaussians",
                 "sweep.seeds": seeds, **changes}
    history = training.train(training.make_config(TOY_BASE, overrides),
                             training.run_dir(out_dir, "modern_training", f"toy {setting}"))
    at, modes = history.series("eval/modes_covered")
    toy[setting] = {"step": at.tolist(), "modes_covered_curve": training.band(modes),
                    **{k: history.final(k).tolist() for k in TOY_KEYS},
                    "evaluated": _evaluated(changes),
                    "train_seconds": history.summary.get("train_seconds")}

  digit_steps, digit_every = (2, 2) if tiny else (600, 200)
  digits: dict[str, Any] = {}
  for setting, changes in DIGITS.items():
    if tiny and setting not in TINY_DIGITS:
      continue
    overrides = {"num_generator_steps": digit_steps, "log_every": digit_every,
                 "eval_every": digit_every, "checkpoint_every": 0,
                 "eval.num_samples": 200 if tiny else 2000, **changes}
    if tiny:
      overrides.update({"batch_size": 16, "model.generator.ngf": 8, "model.critic.ndf": 8})
    history = training.train(training.make_config(DIGITS_BASE, overrides),
                             training.run_dir(out_dir, "modern_training", f"digits {setting}"))
    digits[setting] = {**{k: float(history.final(k)[0]) for k in DIGIT_KEYS},
                       "evaluated": _evaluated(changes),
                       "train_seconds": history.summary.get("train_seconds")}

  fig = report.techniques_figure(
      toy, (("modes_covered", "modes covered (of 25)"),
            ("high_quality_share", "high-quality share"), ("w1", "exact W1 (lower is better)")),
      f"25 Gaussians, {steps} iterations (bars: mean; dots: seeds)", digits,
      f"digits, DCGAN, {digit_steps} iterations, one seed")
  return report.finish(out_dir, "modern_training", fig, {
      "toy": {"data": "25gaussians", "seeds": seeds, "generator_steps": steps,
              "eval_every": every, "results": toy},
      "digits": {"generator_steps": digit_steps, "eval_every": digit_every, "results": digits},
      "settings": {"toy": {k: {"experiment": TOY_BASE, **c} for k, c in TOY.items()},
                   "digits": {k: {"experiment": DIGITS_BASE, **c} for k, c in DIGITS.items()},
                   "tiny": tiny},
      "toy_mean": {n: {k: float(np.mean(r[k])) for k in TOY_KEYS} for n, r in toy.items()},
      "notes": {"evaluated": "moving average: the run keeps a generator EMA (ema.decay > 0) "
                             "and every evaluation scores it, not the last generator",
                "train_seconds": "the trainer's wall time on the machine that ran it; not "
                                 "repeatable like the scores"}})
