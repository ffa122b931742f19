"""Checks across keys: settings each valid alone that contradict each other.
Each returns what is wrong and what to change (one line), or None."""
from __future__ import annotations

import ml_collections

from wgan_jax.configs import schema


def objective_problem(config: ml_collections.ConfigDict) -> str | None:
  """A loss, penalty and clipping that do not make a trainable critic."""
  if config.clip > 0 and config.penalty != "none":
    return (f"clip={config.clip} and penalty={config.penalty!r} both constrain the critic: "
            "weight clipping (WGAN) or a gradient penalty (WGAN-GP), not both; set clip=0 or "
            "penalty=none")
  spectral = config.model.critic.get("norm") == "spectral"
  if (config.loss == "wasserstein" and config.clip == 0 and config.penalty == "none"
      and not spectral):
    return ("loss='wasserstein' with no penalty, no weight clipping and no spectral norm "
            "leaves the critic unconstrained (its loss has no minimum): set penalty=gp, "
            "clip=0.01 or model.critic.norm=spectral")
  return None


def techniques_problem(config: ml_collections.ConfigDict) -> str | None:
  """Why the techniques do not fit the rest of `config`, or None."""
  t = config.techniques
  if t.label_smoothing and config.loss not in schema.LOGISTIC_LOSSES:
    return (f"techniques.label_smoothing={t.label_smoothing} smooths a discriminator's labels "
            f"(loss={' or '.join(schema.LOGISTIC_LOSSES)}); loss={config.loss!r} has none: set "
            "techniques.label_smoothing=0")
  if t.minibatch_kernels and config.penalty != "none":
    return ("techniques.minibatch_kernels makes the critic's value of an example depend on "
            f"its whole batch, so the per-example gradient penalty ({config.penalty}) no "
            "longer measures one example's gradient: use penalty=none (with clip or a logistic "
            "loss), or set techniques.minibatch_kernels=0")
  return None


def accumulation_problem(config: ml_collections.ConfigDict) -> str | None:
  """Gradient accumulation where the micro-batches cannot add up to the batch."""
  k = config.accumulation_steps
  if k == 1:
    return None
  if config.batch_size % k:
    return (f"batch_size={config.batch_size} does not split into accumulation_steps={k} "
            "micro-batches: use a divisor of the batch")
  t = config.techniques
  if t.feature_matching or t.minibatch_kernels:
    return (f"accumulation_steps={k} with "
            + ("techniques.feature_matching" if t.feature_matching else
               "techniques.minibatch_kernels")
            + ": a whole-batch statistic is not the mean of its micro-batches' values; set "
            "accumulation_steps=1")
  return None


def transfer_problem(config: ml_collections.ConfigDict) -> str | None:
  """FreezeD with nothing to freeze, or init_from where it cannot apply."""
  if config.freeze_critic_layers and not config.init_from:
    return (f"freeze_critic_layers={config.freeze_critic_layers} freezes layers loaded by "
            "init_from, but init_from is not set: set init_from=WORKDIR[:STEP] or "
            "freeze_critic_layers=0")
  if config.init_from and config.sweep.key or config.init_from and config.sweep.seeds > 1:
    return ("init_from starts one model from another run's networks; a sweep trains many: "
            "drop the sweep or init_from")
  return None


def eval_problem(config: ml_collections.ConfigDict, toy: bool) -> str | None:
  """Scores and augmentations that make no sense for the run's data (`toy`: 2-D points)."""
  from wgan_jax import metrics  # pylint: disable=import-outside-toplevel
  if toy and metrics.parse(config.eval.metrics, metrics.IN_TRAINING):
    return (f"eval.metrics={config.eval.metrics!r} scores images; {config.data.name} is a toy "
            "set, whose exact W1 every evaluation reports: set eval.metrics=''")
  if toy and config.augment:
    return (f"augment={config.augment!r} augments images; {config.data.name} is a toy set of "
            "points: set augment=''")
  return None


def ada_problem(config: ml_collections.ConfigDict, toy: bool) -> str | None:
  """Adaptive augmentation with nothing to adapt: points, or no policy."""
  if not config.ada.enabled:
    return None
  if toy:
    return (f"ada.enabled=True augments images; {config.data.name} is a toy set of points: "
            "set ada.enabled=false")
  if not schema.parse_policy(config.augment):
    return ("ada.enabled=True sets how often the augment policy's ops apply, but augment='' "
            "names none: set augment=color,translation,cutout (or some of them) or "
            "ada.enabled=false")
  return None
