"""The adversarial losses (config `loss`), each with the critic's side and the
generator's, on critic outputs (one scalar per example), returned as scalars
to *minimise*:

- "wasserstein" (WGAN): the critic maximises E f(real) - E f(fake), which
  estimates K * W1(P_r, P_g) for a K-Lipschitz f; the generator maximises E f(fake).
- "minimax" and "non-saturating" (the standard GAN, Goodfellow et al. 2014):
  the discriminator D = sigmoid(f) minimises the cross-entropy
  -log D(real) - log(1 - D(fake)) (one-sided label smoothing s: real targets
  1 - s, Salimans et al. 2016); the generator minimises log(1 - D(G(z)))
  (minimax) or -log D(G(z)) (non-saturating).
- "hinge" (Lim & Ye 2017; SNGAN): E max(0, 1 - f(real)) + E max(0, 1 + f(fake))
  for the critic, -E f(fake) for the generator.
- "least-squares" (LSGAN, Mao et al. 2017, targets a=0, b=c=1):
  E (f(real) - 1)^2 / 2 + E f(fake)^2 / 2 for the critic, E (f(fake) - 1)^2 / 2
  for the generator.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from wgan_jax.configs.schema import LOSSES

Metrics = dict[str, jax.Array]


def wasserstein_estimate(f_real: jax.Array, f_fake: jax.Array) -> jax.Array:
  """E[f(real)] - E[f(fake)]: positive while the critic separates the two."""
  return jnp.mean(f_real) - jnp.mean(f_fake)


def _cross_entropy(f_real: jax.Array, f_fake: jax.Array, label_smoothing: float) -> jax.Array:
  # -[(1-s) log D(real) + s log(1 - D(real))] - log(1 - D(fake)), D = sigmoid(f).
  real = jax.nn.softplus(-f_real)
  if label_smoothing:
    real = (1.0 - label_smoothing) * real + label_smoothing * jax.nn.softplus(f_real)
  return jnp.mean(real) + jnp.mean(jax.nn.softplus(f_fake))


def _discriminator_outputs(f_real: jax.Array, f_fake: jax.Array) -> Metrics:
  return {"d_real": jnp.mean(jax.nn.sigmoid(f_real)), "d_fake": jnp.mean(jax.nn.sigmoid(f_fake))}


@dataclasses.dataclass(frozen=True)
class Adversarial:
  """A loss's two sides, `critic(f_real, f_fake, label_smoothing)` and
  `generator(f_fake)`, what a critic update logs of its outputs besides
  the Wasserstein estimate (`outputs(f_real, f_fake)`), and the output that
  parts "real" from "fake" (`boundary(mean f_real, mean f_fake)`; ADA's r_t)."""
  critic: Callable[[jax.Array, jax.Array, float], jax.Array]
  generator: Callable[[jax.Array], jax.Array]
  outputs: Callable[[jax.Array, jax.Array], Metrics] = lambda f_real, f_fake: {}
  boundary: Callable[[jax.Array, jax.Array], jax.Array | float] = lambda m_real, m_fake: 0.0


ADVERSARIAL: dict[str, Adversarial] = {
    "wasserstein": Adversarial(
        critic=lambda f_real, f_fake, s: -wasserstein_estimate(f_real, f_fake),
        generator=lambda f_fake: -jnp.mean(f_fake),
        # The loss ignores an offset of f, so no fixed output parts real from fake: the
        # midpoint of the two means does.
        boundary=lambda m_real, m_fake: 0.5 * (m_real + m_fake)),
    "minimax": Adversarial(
        critic=_cross_entropy,
        generator=lambda f_fake: -jnp.mean(jax.nn.softplus(f_fake)),  # log(1 - D(G(z)))
        outputs=_discriminator_outputs),
    "non-saturating": Adversarial(
        critic=_cross_entropy,
        generator=lambda f_fake: jnp.mean(jax.nn.softplus(-f_fake)),  # -log D(G(z))
        outputs=_discriminator_outputs),
    "hinge": Adversarial(
        critic=lambda f_real, f_fake, s: (jnp.mean(jax.nn.relu(1.0 - f_real))
                                          + jnp.mean(jax.nn.relu(1.0 + f_fake))),
        generator=lambda f_fake: -jnp.mean(f_fake)),
    "least-squares": Adversarial(
        critic=lambda f_real, f_fake, s: 0.5 * (jnp.mean(jnp.square(f_real - 1.0))
                                                + jnp.mean(jnp.square(f_fake))),
        generator=lambda f_fake: 0.5 * jnp.mean(jnp.square(f_fake - 1.0)),
        boundary=lambda m_real, m_fake: 0.5),  # halfway between the targets 0 and 1
}
assert tuple(ADVERSARIAL) == LOSSES, "configs.schema.LOSSES names every loss here, in order"


def critic_loss(loss: str, f_real: jax.Array, f_fake: jax.Array,
                label_smoothing: float = 0.0) -> jax.Array:
  """The critic's (or discriminator's) side of `loss`, without any penalty."""
  return ADVERSARIAL[loss].critic(f_real, f_fake, label_smoothing)


def generator_loss(loss: str, f_fake: jax.Array) -> jax.Array:
  """The generator's side of `loss` on critic outputs for generated samples."""
  return ADVERSARIAL[loss].generator(f_fake)


def critic_metrics(loss: str, f_real: jax.Array, f_fake: jax.Array) -> Metrics:
  """What a critic update logs of its outputs: the Wasserstein estimate always
  (the critic as a yardstick), and what the loss adds (a discriminator's mean
  D(real), D(fake))."""
  return {"wasserstein_estimate": wasserstein_estimate(f_real, f_fake),
          **ADVERSARIAL[loss].outputs(f_real, f_fake)}


def boundary(loss: str, mean_real: jax.Array, mean_fake: jax.Array) -> jax.Array | float:
  """The critic output of `loss` between "real" and "fake", given the mean
  outputs on a real and a generated batch (only the Wasserstein loss reads them)."""
  return ADVERSARIAL[loss].boundary(mean_real, mean_fake)
