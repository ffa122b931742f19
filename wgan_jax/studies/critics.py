"""Critics and discriminators trained against fixed distributions, for the studies.

A study's networks are small MLPs trained on fresh samples every step; the
whole training is one `lax.scan` so that it compiles once and can be
`jax.vmap`ped over a grid (of distributions, of seeds) as one program.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from wgan_jax import losses, optim, penalties
from wgan_jax.models.mlp import MLP

PyTree = Any


def mlp_critic(features: int = 64, depth: int = 2) -> MLP:
  """A critic or discriminator: ReLU MLP with one scalar per example."""
  return MLP(features=features, depth=depth, output_shape=())


def adam(lr: float = 1e-3, b1: float = 0.5, b2: float = 0.9) -> optax.GradientTransformation:
  """Adam as WGAN-GP trains its critics (the paper's b1, b2)."""
  return optim.make_optimizer(ml_collections.ConfigDict(
      {"name": "adam", "lr": lr, "b1": b1, "b2": b2, "schedule": "constant"}), 1)


def clipped_rmsprop(lr: float = 5e-5, clip: float = 0.01) -> optax.GradientTransformation:
  """The WGAN paper's critic optimizer: PyTorch's RMSProp, then every weight
  projected onto [-clip, clip]."""
  return optim.make_optimizer(ml_collections.ConfigDict(
      {"name": "rmsprop", "lr": lr, "decay": 0.99, "eps": 1e-8, "schedule": "constant"}), 1,
                              clip=clip)


# The studies' three critics: the loss each minimises (losses.py), and whether
# WGAN-GP's penalty is added ("wgan" is clipped by its optimizer).
SETUP_LOSSES = {"wgan": "wasserstein", "wgan-gp": "wasserstein", "gan": "non-saturating"}


def critic_loss(setup: str, critic_fn: Callable[[jax.Array], jax.Array], real: jax.Array,
                fake: jax.Array, key: jax.Array, penalty_weight: float = 10.0) -> jax.Array:
  """The loss a critic ("wgan", "wgan-gp") or discriminator ("gan", logits)
  minimises on one real and one fake batch; WGAN-GP's penalty on interpolates
  drawn with `key`."""
  n = real.shape[0]
  f = critic_fn(jnp.concatenate([real, fake]))
  loss = losses.critic_loss(SETUP_LOSSES[setup], f[:n], f[n:])
  if setup == "wgan-gp":
    x_hat = penalties.interpolate(real, fake, jax.random.uniform(key, (n,)))
    loss = loss + penalty_weight * penalties.gradient_penalty(critic_fn, x_hat)[0]
  return loss


def fit(loss_fn: Callable[[PyTree, jax.Array], jax.Array], params: PyTree,
        tx: optax.GradientTransformation, key: jax.Array, steps: int,
        probe: Callable[[PyTree], PyTree] | None = None, every: int = 1
        ) -> tuple[PyTree, PyTree | None]:
  """Minimises `loss_fn(params, key_t)` by `steps` updates of `tx`, one fresh
  key per update, in one `lax.scan` (pure: jit and vmap it from outside).

  With `probe`, also returns `probe(params)` before the first update and after
  every `every` updates, stacked: steps // every + 1 entries.
  """
  def update(carry, k):
    p, opt_state = carry
    grads = jax.grad(loss_fn)(p, k)
    updates, opt_state = tx.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), None

  keys = jax.random.split(key, steps)
  carry = (params, tx.init(params))
  if probe is None:
    (params, _), _ = jax.lax.scan(update, carry, keys)
    return params, None
  if steps % every:
    raise ValueError(f"steps={steps} is not a multiple of every={every}")

  def chunk(carry, chunk_keys):
    carry, _ = jax.lax.scan(update, carry, chunk_keys)
    return carry, probe(carry[0])

  first = probe(params)
  chunks = keys.reshape((steps // every, every) + keys.shape[1:])
  (params, _), later = jax.lax.scan(chunk, carry, chunks)
  records = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, later)
  return params, records
