"""The critic's gradient penalties (config `penalty`, weight `penalty_weight`).

Each is where it takes the critic's input gradient (`points`) and what it
makes of the gradients' norms there (`value`); the norms come from one helper,
`input_grad_norms`:
- "gp", WGAN-GP (Gulrajani et al. 2017): E[(||grad f(x)|| - 1)^2] on random
  interpolates of real and fake;
- "lp", WGAN-LP (Petzka et al. 2018): E[max(0, ||grad f(x)|| - 1)^2] on the
  same points, one-sided: only slopes above 1 are penalised;
- "r1" (Mescheder et al. 2018): E[||grad f(x)||^2] / 2 on real data, so the
  weight is their gamma; "r2" the same on generated data;
- "dragan" (Kodali et al. 2017): E[(||grad f(x)|| - 1)^2] at real data moved
  toward x + 0.5 std(x) U[0, 1) noise by a random fraction (their code).
The points depend on the data and the update's key only, never on the
critic's weights, so they are drawn once per update for the whole batch.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from wgan_jax.batch_axis import BatchAxis
from wgan_jax.configs.schema import PENALTIES

# Keeps sqrt differentiable when an input gradient is exactly zero.
GP_NORM_EPSILON = 1e-12
# Folded into the penalty's key for DRAGAN's perturbation of the real batch.
_DRAGAN_STREAM = 0x64726167

# (real, fake, key, batch axis) -> the points, one per example.
Points = Callable[[jax.Array, jax.Array, jax.Array, BatchAxis], jax.Array]


def interpolate(real: jax.Array, fake: jax.Array, eps: jax.Array) -> jax.Array:
  """x_hat = eps * real + (1 - eps) * fake, one eps per example."""
  eps = eps.reshape((-1,) + (1,) * (real.ndim - 1))
  return eps * real + (1.0 - eps) * fake


def _fractions(real: jax.Array, key: jax.Array, axis: BatchAxis) -> jax.Array:
  """One U[0, 1) per example of the global batch: this device's."""
  return axis.local(jax.random.uniform(key, (axis.size(real.shape[0]),)))


def _interpolates(real, fake, key, axis):
  return interpolate(real, fake, _fractions(real, key, axis))


def dragan_points(real: jax.Array, std: jax.Array, noise: jax.Array, alpha: jax.Array
                  ) -> jax.Array:
  """DRAGAN's points: real + alpha * 0.5 * std * noise, with `noise` ~ U[0, 1) of
  real's shape, `std` the real batch's standard deviation, one alpha per example."""
  alpha = alpha.reshape((-1,) + (1,) * (real.ndim - 1))
  return real + alpha * (0.5 * std * noise)


def _dragan(real, fake, key, axis):
  del fake
  # The standard deviation of the whole (global) batch's values, as their code's x.std().
  mean = axis.mean(jnp.mean(real))
  std = jnp.sqrt(axis.mean(jnp.mean(jnp.square(real - mean))))
  noise = axis.local(jax.random.uniform(jax.random.fold_in(key, _DRAGAN_STREAM),
                                        (axis.size(real.shape[0]), *real.shape[1:])))
  return dragan_points(real, std, noise, _fractions(real, key, axis))


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


def _two_sided(sq_norms, norms):
  del sq_norms
  return jnp.mean(jnp.square(norms - 1.0))


def _one_sided(sq_norms, norms):
  del sq_norms
  return jnp.mean(jnp.square(jnp.maximum(norms - 1.0, 0.0)))


def _squared_norm(sq_norms, norms):
  del norms
  return 0.5 * jnp.mean(sq_norms)


@dataclasses.dataclass(frozen=True)
class Penalty:
  points: Points
  value: Callable[[jax.Array, jax.Array], jax.Array]  # (squared norms, norms) -> scalar


PENALTY: dict[str, Penalty] = {
    "gp": Penalty(_interpolates, _two_sided),
    "lp": Penalty(_interpolates, _one_sided),
    "r1": Penalty(lambda real, fake, key, axis: real, _squared_norm),
    "r2": Penalty(lambda real, fake, key, axis: fake, _squared_norm),
    "dragan": Penalty(_dragan, _two_sided),
}
assert ("none", *PENALTY) == PENALTIES, "configs.schema.PENALTIES names every penalty here"


def gradient_penalty(critic_fn: Callable[[jax.Array], jax.Array],
                     x_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
  """WGAN-GP's E[(||grad_x f(x_hat)||_2 - 1)^2] and the per-example gradient norms."""
  sq_norms, norms = input_grad_norms(critic_fn, x_hat)
  return _two_sided(sq_norms, norms), norms
