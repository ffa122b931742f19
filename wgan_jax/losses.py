"""Objectives: WGAN, WGAN-GP's gradient penalty, and the standard GAN baseline.

Every loss here takes critic outputs (one scalar per example) and returns a
scalar to *minimise*. The critic of a WGAN is a function f: x -> R whose
E[f(real)] - E[f(fake)] estimates K * W1(P_r, P_g); the standard GAN's
discriminator outputs logits.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

OBJECTIVES = ("wgan", "wgan-gp", "gan")
GAN_GENERATOR_LOSSES = ("non-saturating", "minimax")

# Keeps sqrt differentiable when an input gradient is exactly zero.
GP_NORM_EPSILON = 1e-12


def wasserstein_estimate(f_real: jax.Array, f_fake: jax.Array) -> jax.Array:
  """E[f(real)] - E[f(fake)]: positive while the critic separates the two."""
  return jnp.mean(f_real) - jnp.mean(f_fake)


def critic_loss(objective: str, f_real: jax.Array, f_fake: jax.Array,
                label_smoothing: float = 0.0) -> jax.Array:
  """The critic's (or discriminator's) loss, without any gradient penalty.
  `label_smoothing` s (gan only): one-sided, real targets 1 - s (Salimans et al.)."""
  if objective in ("wgan", "wgan-gp"):
    return -wasserstein_estimate(f_real, f_fake)
  if objective == "gan":
    # -[(1-s) log D(real) + s log(1 - D(real))] - log(1 - D(fake)), D = sigmoid(logits).
    real = jax.nn.softplus(-f_real)
    if label_smoothing:
      real = (1.0 - label_smoothing) * real + label_smoothing * jax.nn.softplus(f_real)
    return jnp.mean(real) + jnp.mean(jax.nn.softplus(f_fake))
  raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")


def generator_loss(objective: str, f_fake: jax.Array,
                   gan_generator_loss: str = "non-saturating") -> jax.Array:
  """The generator's loss on critic outputs for generated samples."""
  if objective in ("wgan", "wgan-gp"):
    return -jnp.mean(f_fake)
  if objective == "gan":
    if gan_generator_loss == "non-saturating":
      return jnp.mean(jax.nn.softplus(-f_fake))  # -log D(G(z))
    if gan_generator_loss == "minimax":
      return -jnp.mean(jax.nn.softplus(f_fake))  # log(1 - D(G(z)))
    raise ValueError(f"unknown gan_generator_loss {gan_generator_loss!r}; "
                     f"expected one of {GAN_GENERATOR_LOSSES}")
  raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")


def interpolate(real: jax.Array, fake: jax.Array, eps: jax.Array) -> jax.Array:
  """x_hat = eps * real + (1 - eps) * fake, one eps per example."""
  eps = eps.reshape((-1,) + (1,) * (real.ndim - 1))
  return eps * real + (1.0 - eps) * fake


def gradient_penalty(critic_fn: Callable[[jax.Array], jax.Array],
                     x_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
  """E[(||grad_x f(x_hat)||_2 - 1)^2] and the per-example gradient norms.

  The norm runs over all non-batch axes. Summing f over the batch before
  differentiating gives every example's own input gradient in one backward
  pass, because f treats examples independently (no batch norm in a WGAN-GP
  critic).
  """
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(x_hat)
  sq_norms = jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1)
  norms = jnp.sqrt(sq_norms + GP_NORM_EPSILON)
  return jnp.mean(jnp.square(norms - 1.0)), norms
