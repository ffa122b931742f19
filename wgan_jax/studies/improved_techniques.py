"""The fixes tried before WGAN, one at a time, against the plain standard GAN
and WGAN-GP.

Salimans et al. 2016's feature matching, minibatch discrimination,
historical averaging, one-sided label smoothing and virtual batch
normalization, and Arjovsky & Bottou 2017's annealed instance noise
(`techniques.*`, `model.generator.norm=virtual`), each added alone to the
standard GAN (-log D, one discriminator step per generator step), then all
of them at once (`toy_25gaussians_gan_improved`). On 25 Gaussians, several
seeds each (one sweep program per setting): modes covered, high-quality
share and exact W1 at the end and over training. On digits (one run per
setting, DCGAN): the digit classifier's FD and classes covered.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from wgan_jax.studies import report, training

DESCRIPTION = ("each improved technique (Salimans et al.; instance noise) on the standard GAN vs "
               "plain GAN and WGAN-GP: modes, high-quality share, W1 (25 Gaussians) and digits")

GAN, WGAN_GP = "toy_8gaussians_gan", "toy_25gaussians"
# technique -> what changes on the standard GAN, alone.
TECHNIQUES: dict[str, dict[str, Any]] = {
    "feature matching": {"techniques.feature_matching": True},
    # B = 16 kernels on the toy set (the paper's 100 is slow on a CPU), C = 5.
    "minibatch discrimination": {"techniques.minibatch_kernels": 16},
    "historical averaging": {"techniques.historical_averaging": 1e-4},
    "label smoothing": {"techniques.label_smoothing": 0.1},
    "virtual batch norm": {"model.generator.norm": "virtual"},
    "instance noise": {"techniques.instance_noise": 0.1},
}
# The toy settings: (experiment, changes); "all of them" is toy_25gaussians_gan_improved.
TOY: dict[str, tuple[str, dict[str, Any]]] = {
    "gan": (GAN, {}), **{name: (GAN, c) for name, c in TECHNIQUES.items()},
    "all of them": ("toy_25gaussians_gan_improved", {}), "wgan-gp": (WGAN_GP, {})}
# The digits settings: digits_dcgan_gan_improved with its techniques off is the plain
# standard GAN (DCGAN, Adam(2e-4, 0.5, 0.999)); each technique alone on it (minibatch
# discrimination with the paper's B = 100); the experiment itself (virtual batch norm,
# minibatch discrimination, label smoothing); and digits_dcgan_gp.
DIGITS_GAN = "digits_dcgan_gan_improved"
DIGITS_PLAIN = {"model.generator.norm": "batch", "techniques.minibatch_kernels": 0,
                "techniques.label_smoothing": 0.0}
DIGITS: dict[str, tuple[str, dict[str, Any]]] = {
    "gan": (DIGITS_GAN, DIGITS_PLAIN),
    **{name: (DIGITS_GAN, {**DIGITS_PLAIN, **c,
                           **({"techniques.minibatch_kernels": 100}
                              if "techniques.minibatch_kernels" in c else {})})
       for name, c in TECHNIQUES.items()},
    "all of them": (DIGITS_GAN, {}), "wgan-gp": ("digits_dcgan_gp", {})}
# The tiny setting (a test) runs these at the full setting's length: the claim that
# holds there (feature matching against the plain GAN); each technique has its own
# tests (tests/test_techniques.py).
TINY_TOY = ("gan", "feature matching")
TINY_DIGITS = ()


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  steps, every, seeds = (2000, 1000, 3) if tiny else (2000, 200, 3)
  toy: dict[str, Any] = {}
  for setting, (experiment, changes) in TOY.items():
    if tiny and setting not in TINY_TOY:
      continue
    overrides = {**training.toy_overrides(False, steps, every), "data.name": "25gaussians",
                 "sweep.seeds": seeds, **changes}
    history = training.train(training.make_config(experiment, overrides),
                             training.run_dir(out_dir, "improved_techniques", f"toy {setting}"))
    at, modes = history.series("eval/modes_covered")
    toy[setting] = {"step": at.tolist(), "modes_covered": training.band(modes),
                    **{k: history.final(k).tolist()
                       for k in ("modes_covered", "high_quality_share", "w1")}}

  digit_steps, digit_every = (2, 2) if tiny else (600, 200)
  digits: dict[str, Any] = {}
  for setting, (experiment, changes) in DIGITS.items():
    if tiny and setting not in TINY_DIGITS:
      continue
    overrides = {"num_generator_steps": digit_steps, "log_every": digit_every,
                 "eval_every": digit_every, "checkpoint_every": 0,
                 "eval.num_samples": 200 if tiny else 2000, **changes}
    if tiny:
      overrides.update({"batch_size": 16, "model.generator.ngf": 8, "model.critic.ndf": 8,
                        "techniques.vbn_reference_size": 8})
    history = training.train(training.make_config(experiment, overrides),
                             training.run_dir(out_dir, "improved_techniques", f"digits {setting}"))
    digits[setting] = {k: float(history.final(k)[0])
                       for k in ("domain_fd", "domain_classes_covered", "domain_kl")}

  fig = report.techniques_figure(
      toy, (("modes_covered", "modes covered (of 25)"),
            ("high_quality_share", "high-quality share")),
      f"25 Gaussians, {steps} iterations (bars: mean; dots: seeds)", digits,
      f"digits, DCGAN, {digit_steps} iterations")
  return report.finish(out_dir, "improved_techniques", fig, {
      "toy": {"data": "25gaussians", "seeds": seeds, "generator_steps": steps,
              "eval_every": every, "results": toy},
      "digits": {"generator_steps": digit_steps, "eval_every": digit_every, "results": digits},
      "settings": {"toy": {k: {"experiment": e, **c} for k, (e, c) in TOY.items()},
                   "digits": {k: {"experiment": e, **c} for k, (e, c) in DIGITS.items()}},
      "toy_mean": {n: {k: float(np.mean(r[k])) for k in ("modes_covered", "high_quality_share",
                                                         "w1")} for n, r in toy.items()}})
