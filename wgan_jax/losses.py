"""Objectives: WGAN, the gradient penalties, and the standard GAN baseline.

Every loss here takes critic outputs (one scalar per example) and returns a
scalar to *minimise*. The critic of a WGAN is a function f: x -> R whose
E[f(real)] - E[f(fake)] estimates K * W1(P_r, P_g); the standard GAN's
discriminator outputs logits.

Penalties (config `penalty`, weight `gp_weight`) all take the critic's input
gradient at points x from one helper, `input_grad_norms`:
- "gp", WGAN-GP (Gulrajani et al. 2017): E[(||grad f(x)|| - 1)^2] on random
  interpolates of real and fake;
- "lp", WGAN-LP (Petzka et al. 2018): E[max(0, ||grad f(x)|| - 1)^2] on the
  same points, one-sided: only slopes above 1 are penalised;
- "r1" (Mescheder et al. 2018): E[||grad f(x)||^2] / 2 on real data, so the
  weight is their gamma;
- "dragan" (Kodali et al. 2017): E[(||grad f(x)|| - 1)^2] at real data moved
  toward x + 0.5 std(x) U[0, 1) noise by a random fraction (their code).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

OBJECTIVES = ("wgan", "wgan-gp", "gan")
GAN_GENERATOR_LOSSES = ("non-saturating", "minimax")
PENALTIES = ("gp", "lp", "r1", "dragan")
# Config `penalty`: "auto" is WGAN-GP's under objective "wgan-gp" and none otherwise.
PENALTY_CHOICES = ("auto", "none", *PENALTIES)

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


def penalty_of(objective: str, penalty: str) -> str:
  """The penalty a run applies: one of PENALTIES, or "none"."""
  if penalty == "auto":
    return "gp" if objective == "wgan-gp" else "none"
  return penalty


def input_grad_norms(critic_fn: Callable[[jax.Array], jax.Array], x: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
  """The critic's input gradient at each example of `x`: (squared norms, norms),
  float32, the norm over all non-batch axes.

  Summing f over the batch before differentiating gives every example's own
  input gradient in one backward pass, because f treats examples
  independently (no batch norm in a penalised critic).
  """
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(x)
  grads = grads.reshape(grads.shape[0], -1).astype(jnp.float32)
  sq_norms = jnp.sum(jnp.square(grads), axis=1)
  return sq_norms, jnp.sqrt(sq_norms + GP_NORM_EPSILON)


def penalty_value(name: str, sq_norms: jax.Array, norms: jax.Array) -> jax.Array:
  """Penalty `name` (one of PENALTIES) from the gradient norms at its points."""
  if name in ("gp", "dragan"):
    return jnp.mean(jnp.square(norms - 1.0))
  if name == "lp":
    return jnp.mean(jnp.square(jnp.maximum(norms - 1.0, 0.0)))
  if name == "r1":
    return 0.5 * jnp.mean(sq_norms)
  raise ValueError(f"unknown penalty {name!r}; expected one of {PENALTIES}")


def dragan_points(real: jax.Array, std: jax.Array, noise: jax.Array, alpha: jax.Array
                  ) -> jax.Array:
  """DRAGAN's points: real + alpha * 0.5 * std * noise, with `noise` ~ U[0, 1) of
  real's shape, `std` the real batch's standard deviation, one alpha per example."""
  alpha = alpha.reshape((-1,) + (1,) * (real.ndim - 1))
  return real + alpha * (0.5 * std * noise)


def gradient_penalty(critic_fn: Callable[[jax.Array], jax.Array],
                     x_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
  """WGAN-GP's E[(||grad_x f(x_hat)||_2 - 1)^2] and the per-example gradient norms."""
  sq_norms, norms = input_grad_norms(critic_fn, x_hat)
  return penalty_value("gp", sq_norms, norms), norms
