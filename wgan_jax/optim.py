"""Optimizers: optax chains for generator and critic, incl. WGAN weight clipping."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("adam", "rmsprop")
LR_SCHEDULES = ("constant", "linear")


def clip_weights(clip: float) -> optax.GradientTransformation:
  """Projection onto the L-inf ball of radius `clip`, as an optax transform.

  Chained after the optimizer, it returns updates that land every parameter
  of the new weights in [-clip, clip]: the WGAN paper's weight clipping,
  applied after each critic update.
  """
  if clip <= 0:
    raise ValueError(f"clip must be positive, got {clip}")

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("clip_weights needs params: call update(grads, state, params)")
    new_params = optax.projections.projection_linf_ball(
        optax.apply_updates(params, updates), clip)
    return jax.tree.map(jnp.subtract, new_params, params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def learning_rate(opt: ml_collections.ConfigDict, num_updates: int) -> optax.ScalarOrSchedule:
  """`opt.lr`, constant or decayed linearly to 0 over `num_updates` updates
  (WGAN-GP's reference code decays both networks this way)."""
  if opt.schedule == "constant":
    return opt.lr
  if opt.schedule == "linear":
    return optax.linear_schedule(opt.lr, 0.0, transition_steps=max(num_updates, 1))
  raise ValueError(f"unknown optimizer.schedule {opt.schedule!r}; expected one of "
                   f"{LR_SCHEDULES}")


def make_optimizer(opt: ml_collections.ConfigDict, num_updates: int,
                   clip: float | None = None) -> optax.GradientTransformation:
  """The optimizer from `opt` for a network updated `num_updates` times in the
  run, followed by weight clipping if `clip` is set."""
  lr = learning_rate(opt, num_updates)
  if opt.name == "adam":
    tx = optax.adam(lr, b1=opt.b1, b2=opt.b2)
  elif opt.name == "rmsprop":
    # PyTorch's RMSprop (the WGAN reference): eps added outside the sqrt.
    tx = optax.rmsprop(lr, decay=opt.decay, eps=opt.eps, eps_in_sqrt=False)
  else:
    raise ValueError(f"unknown optimizer {opt.name!r}; expected one of {OPTIMIZERS}")
  if clip is not None:
    tx = optax.chain(tx, clip_weights(clip))
  return tx
