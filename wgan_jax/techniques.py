"""The improved techniques for training GANs (Salimans et al. 2016) and instance
noise (Arjovsky & Bottou 2017): the settings a run fixes (`Techniques`, part
of the networks' layers), and what they compute outside the networks; which
combinations make sense is configs/checks.py's, and terms.py adds them to the
losses. The layers they put into the networks
(minibatch discrimination, virtual batch norm) are in `models/improved.py`;
`steps.py` applies it all.

- feature matching: the generator minimises ||E h(real) - E h(fake)||^2 over
  the critic's last hidden features h (sown by every critic as
  "intermediates"/"features") instead of the adversarial loss;
- minibatch discrimination: a critic layer comparing each example with the
  others of its minibatch (models/improved.py);
- historical averaging: lambda ||theta - mean of theta's values so far||^2 on
  each network's loss; the running mean is an optax state (`track_history`)
  chained after the network's optimizer, so it lives in the opt_state of the
  TrainState, exists only when switched on, and is checkpointed like any state;
- one-sided label smoothing: real targets 1 - s for a logistic discriminator
  (losses.py);
- virtual batch norm: a generator `norm` (models/improved.py), its reference
  noise a `batch_stats` variable of the generator;
- instance noise: N(0, sigma_t^2) on every critic input, sigma_t annealed
  linearly from sigma0 to 0 by generator step `instance_noise_steps`.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from wgan_jax.state import PyTree


@dataclasses.dataclass(frozen=True)
class Techniques:
  """A run's techniques (config section `techniques`); all off by default."""
  feature_matching: bool = False
  minibatch_kernels: int = 0          # B; 0: no minibatch discrimination
  minibatch_kernel_dim: int = 5       # C
  historical_averaging: float = 0.0   # lambda; 0: off
  label_smoothing: float = 0.0        # s: real targets 1 - s (objective "gan")
  instance_noise: float = 0.0         # sigma0; 0: off
  instance_noise_steps: int = 1       # the generator step where sigma reaches 0 (resolved)
  vbn_reference_size: int = 64        # R, for generators with norm "virtual"


def from_config(config: ml_collections.ConfigDict) -> Techniques:
  """The `techniques` section of a validated config, instance_noise_steps=0
  resolved to the run's length; all off: `Techniques()`, the spec as before."""
  t = config.techniques
  noise_steps = (t.instance_noise_steps or config.num_generator_steps) if t.instance_noise else 1
  return Techniques(
      feature_matching=bool(t.feature_matching), minibatch_kernels=t.minibatch_kernels,
      minibatch_kernel_dim=t.minibatch_kernel_dim,
      historical_averaging=float(t.historical_averaging),
      label_smoothing=float(t.label_smoothing), instance_noise=float(t.instance_noise),
      instance_noise_steps=max(noise_steps, 1),
      vbn_reference_size=t.vbn_reference_size)


# ----------------------------------------------------------------------------
# Feature matching.
# ----------------------------------------------------------------------------


def feature_matching_loss(h_real: jax.Array, h_fake: jax.Array,
                          axis_name: str | None = None) -> jax.Array:
  """||mean over the batch of h(real) - mean of h(fake)||_2^2 (features
  flattened). Under `jax.pmap(axis_name=...)` the means are the global
  batch's (the devices' means averaged) before the norm is taken."""
  means = [jnp.mean(h.reshape(h.shape[0], -1), axis=0) for h in (h_real, h_fake)]
  if axis_name is not None:
    means = jax.lax.pmean(means, axis_name)
  return jnp.sum(jnp.square(means[0] - means[1]))


# ----------------------------------------------------------------------------
# Historical averaging.
# ----------------------------------------------------------------------------


class HistoryState(NamedTuple):
  """The running mean of a network's parameter values: the initial ones and
  those after each update so far (`count` of them)."""
  count: jax.Array
  mean: PyTree


def track_history() -> optax.GradientTransformation:
  """Keeps the running mean of the parameters in its state; the updates pass
  unchanged. Chained last, it sees the final updates (after weight clipping),
  so the mean covers exactly the values the network takes."""

  def init(params):
    return HistoryState(count=jnp.ones((), jnp.int32), mean=jax.tree.map(jnp.asarray, params))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("track_history needs params: call update(grads, state, params)")
    count = state.count + 1
    mean = jax.tree.map(lambda m, p, u: m + (p + u - m) / count.astype(m.dtype),
                        state.mean, params, updates)
    return updates, HistoryState(count=count, mean=mean)

  return optax.GradientTransformation(init, update)


def with_history(tx: optax.GradientTransformation, weight: float
                 ) -> optax.GradientTransformation:
  """`tx`, and with historical averaging (`weight` > 0) the running mean kept
  after it; unchanged otherwise, so a state without the technique carries
  nothing extra."""
  return optax.chain(tx, track_history()) if weight else tx


def history(opt_state: PyTree) -> HistoryState:
  """The `HistoryState` inside an optimizer state built by `with_history`."""
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, HistoryState))
           if isinstance(s, HistoryState)]
  if len(found) != 1:
    raise ValueError(f"expected one HistoryState in the optimizer state, found {len(found)}")
  return found[0]


def historical_distance(params: PyTree, opt_state: PyTree) -> jax.Array:
  """||params - the running mean||^2 over all parameters; the mean is a
  constant of the update (no gradient flows into the history)."""
  mean = jax.lax.stop_gradient(history(opt_state).mean)
  sq = jax.tree.map(lambda p, m: jnp.sum(jnp.square(p - m)), params, mean)
  return sum(jax.tree.leaves(sq))


# ----------------------------------------------------------------------------
# Instance noise.
# ----------------------------------------------------------------------------


def instance_noise_std(t: Techniques, step: jax.Array | int) -> jax.Array:
  """sigma_t = sigma0 * max(0, 1 - step / instance_noise_steps) at generator step `step`."""
  frac = jnp.asarray(step, jnp.float32) / t.instance_noise_steps
  return t.instance_noise * jnp.maximum(0.0, 1.0 - frac)
