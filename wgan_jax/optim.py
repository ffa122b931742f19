"""Optimizers: optax chains for generator and critic, incl. WGAN weight clipping."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from wgan_jax import techniques
from wgan_jax.configs import n_critic
from wgan_jax.configs.schema import LR_SCHEDULES, OPTIMIZERS


def _landing_bound(clip: float | jax.Array, dtype) -> jax.Array:
  """The largest target that `params + updates` cannot round past `clip`.

  optax adds the updates back (`p + (target - p)`), and that sum may round one
  ulp away from the target when the step is large. Aiming two ulps inside
  keeps every weight in [-clip, clip] exactly, at a relative cost of ~1e-7.
  `clip` may be traced (a sweep over c).
  """
  inner = jnp.asarray(clip, dtype)
  for _ in range(2):
    inner = jnp.nextafter(inner, jnp.zeros((), dtype))
  return inner


def clip_weights(clip: float | jax.Array) -> optax.GradientTransformation:
  """Projection onto the L-inf ball of radius `clip`, as an optax transform.

  Chained after the optimizer, it returns updates that land every parameter
  of the new weights in [-clip, clip] (for parameters that start there): the
  WGAN paper's weight clipping, applied after each critic update. `clip` may
  be traced (a sweep over c; its values are checked by the config).
  """
  if not isinstance(clip, jax.Array) and clip <= 0:
    raise ValueError(f"clip must be positive, got {clip}")

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("clip_weights needs params: call update(grads, state, params)")

    def project(p, u):
      bound = _landing_bound(clip, p.dtype)
      return jnp.clip(p + u, -bound, bound) - p  # projection_linf_ball, dtype-aware

    return jax.tree.map(project, params, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def learning_rate(opt: ml_collections.ConfigDict, num_updates: int,
                  lr: float | jax.Array | None = None) -> optax.ScalarOrSchedule:
  """`opt.lr` (or `lr`, e.g. a swept value), constant or decayed linearly to 0
  over `num_updates` updates (WGAN-GP's reference code decays both networks
  this way)."""
  lr = opt.lr if lr is None else lr
  if opt.schedule == "constant":
    return lr
  if opt.schedule == "linear":
    return optax.linear_schedule(lr, 0.0, transition_steps=max(num_updates, 1))
  raise ValueError(f"unknown optimizer.schedule {opt.schedule!r}; expected one of "
                   f"{LR_SCHEDULES}")


def network_optimizer(config: ml_collections.ConfigDict, network: str,
                      swept: Mapping[str, Any] | None = None,
                      clip: float | jax.Array | None = None) -> optax.GradientTransformation:
  """`network`'s optimizer (section `optimizer.<network>`), over the run's
  updates of that network (the critic's from the n_critic schedule), with
  weight clipping to `clip` after it, and with historical averaging the running
  mean of its parameters kept after that. `swept`: a sweep's values of the
  learning rate (`optimizer.lr` for both networks, `optimizer.<network>.lr`)."""
  swept = swept or {}
  lr = swept.get(f"optimizer.{network}.lr", swept.get("optimizer.lr"))
  num_updates = (config.num_generator_steps if network == "generator"
                 else n_critic.critic_updates(config))
  tx = make_optimizer(config.optimizer[network], num_updates, clip=clip, lr=lr)
  return techniques.with_history(tx, config.techniques.historical_averaging)


def make_optimizer(opt: ml_collections.ConfigDict, num_updates: int,
                   clip: float | jax.Array | None = None,
                   lr: float | jax.Array | None = None) -> optax.GradientTransformation:
  """The optimizer from `opt` for a network updated `num_updates` times in the
  run, followed by weight clipping if `clip` is set; `lr` replaces `opt.lr`
  (a sweep's value, possibly traced)."""
  lr = learning_rate(opt, num_updates, lr)
  if opt.name == "adam":
    tx = optax.adam(lr, b1=opt.b1, b2=opt.b2)
  elif opt.name == "rmsprop":
    # PyTorch's RMSprop (the WGAN reference): eps added outside the sqrt.
    tx = optax.rmsprop(lr, decay=opt.decay, eps=opt.eps, eps_in_sqrt=False)
  elif opt.name == "rmsprop_tf":
    # tf.train.RMSPropOptimizer (gan_toy.py, gan_mnist.py): eps inside the sqrt,
    # the mean square starting at ones.
    tx = optax.rmsprop(lr, decay=opt.decay, eps=opt.eps, eps_in_sqrt=True, initial_scale=1.0)
  else:
    raise ValueError(f"unknown optimizer {opt.name!r}; expected one of {OPTIMIZERS}")
  if clip is not None:
    tx = optax.chain(tx, clip_weights(clip))
  return tx
