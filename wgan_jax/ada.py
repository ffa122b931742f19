"""Adaptive augmentation (ADA; Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data"): each op of the `augment` policy is
applied to an image the critic sees with probability p (critic_inputs.
AdaptiveAugment), and p follows how much the critic overfits.

The overfitting heuristic is r_t = E[sign(f(x_real) - b)] over the critic's
outputs on real data, b the loss's decision boundary (`losses.boundary`): 0
for a discriminator's logits and hinge, 1/2 for least squares, and for the
Wasserstein critic, whose outputs carry an arbitrary offset, the midpoint of
the batch's mean outputs on real and on generated data (BUILD.md, "Adaptive
augmentation"). Each critic update logs its r (`RT_METRIC`, from the critic
term `terms.ada_statistic`); the state sums them. Every `interval` generator
iterations
    p <- clip(p + sign(r_t - target) * images / speed_images, 0, 1),
r_t the mean of the updates' r since the last adjustment and `images` the
real images the critic saw in them (batch_size x critic updates): p can go
from 0 to 1 in `speed_images` real images, the paper's 500k.

p and the sums live in `TrainState.ada` ({} without ADA), so they are
checkpointed and a resumed run continues exactly.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from wgan_jax import losses
from wgan_jax.batch_axis import BatchAxis
from wgan_jax.state import PyTree

RT_METRIC = "ada_rt"
P_METRIC = "ada_p"


@dataclasses.dataclass(frozen=True)
class Controller:
  """How p moves: towards r_t = `target`, adjusted every `interval` generator
  iterations, 0 to 1 in `speed_images` real images."""
  target: float
  interval: int
  speed_images: float


def initial() -> PyTree:
  """p = 0, nothing summed: {"p", "rt_sum" (sum of r over the updates since
  the last adjustment), "updates" (their number)}."""
  return {"p": jnp.zeros((), jnp.float32), "rt_sum": jnp.zeros((), jnp.float32),
          "updates": jnp.zeros((), jnp.int32)}


def overfitting(loss: str, f_real: jax.Array, f_fake: jax.Array,
                axis: BatchAxis = BatchAxis()) -> jax.Array:
  """r = E[sign(f(real) - b)] of one critic update, b the boundary of `loss`
  from the means over the global batch (the same on any number of devices)."""
  f_real, f_fake = jax.lax.stop_gradient((f_real, f_fake))
  mean_real, mean_fake = axis.mean((jnp.mean(f_real), jnp.mean(f_fake)))
  return jnp.mean(jnp.sign(f_real - losses.boundary(loss, mean_real, mean_fake)))


def accumulate(state: PyTree, rt: jax.Array) -> PyTree:
  """`state` with the r of more critic updates ([k], one per update) summed in."""
  return {**state, "rt_sum": state["rt_sum"] + jnp.sum(rt),
          "updates": state["updates"] + rt.shape[0]}


def adjust(state: PyTree, controller: Controller, step: jax.Array, batch_size: int) -> PyTree:
  """`state` after generator iteration `step` (0-based): at the end of every
  `interval` iterations p moves by sign(r_t - target) times the real images
  (`batch_size`, the global critic batch, per update) over `speed_images`,
  clipped to [0, 1], and the sums restart; otherwise unchanged."""
  updates = state["updates"].astype(jnp.float32)
  rt = state["rt_sum"] / jnp.maximum(updates, 1.0)
  delta = jnp.sign(rt - controller.target) * (updates * batch_size / controller.speed_images)
  due = (step + 1) % controller.interval == 0
  return {"p": jnp.where(due, jnp.clip(state["p"] + delta, 0.0, 1.0), state["p"]),
          "rt_sum": jnp.where(due, 0.0, state["rt_sum"]),
          "updates": jnp.where(due, 0, state["updates"])}
