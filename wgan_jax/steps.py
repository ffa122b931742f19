"""Pure update functions: critic step, generator step, one generator iteration.

Each takes the static `GanSpec` (modules, optimizers, objective) first; the
trainer closes over it (`functools.partial`), so what `jax.jit` sees is a
function of arrays only: (state, real batches) -> (state, metrics).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from wgan_jax import losses
from wgan_jax.state import NetState, PyTree, TrainState

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class GanSpec:
  """What the step functions need besides arrays: fixed for a whole run."""
  generator: nn.Module
  critic: nn.Module
  generator_tx: optax.GradientTransformation
  critic_tx: optax.GradientTransformation
  objective: str                      # one of losses.OBJECTIVES
  noise_dim: int
  gp_weight: float = 10.0             # WGAN-GP's lambda
  clip: float | None = None           # WGAN's c; None without weight clipping
  gan_generator_loss: str = "non-saturating"


def apply_net(module: nn.Module, params: PyTree, batch_stats: PyTree, x: jax.Array,
              train: bool) -> tuple[jax.Array, PyTree]:
  """Runs a network; in training, batch norm uses (and updates) batch statistics."""
  if not batch_stats:
    return module.apply({"params": params}, x, train=train), batch_stats
  variables = {"params": params, "batch_stats": batch_stats}
  if not train:
    return module.apply(variables, x, train=False), batch_stats
  out, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
  return out, updates["batch_stats"]


def sample_noise(spec: GanSpec, key: jax.Array, n: int) -> jax.Array:
  return jax.random.normal(key, (n, spec.noise_dim), jnp.float32)


def _apply_updates(tx: optax.GradientTransformation, net: NetState, grads: PyTree,
                   batch_stats: PyTree) -> NetState:
  updates, opt_state = tx.update(grads, net.opt_state, net.params)
  return NetState(params=optax.apply_updates(net.params, updates),
                  batch_stats=batch_stats, opt_state=opt_state)


def clipped_fraction(params: PyTree, clip: float) -> jax.Array:
  """Share of the weights sitting at ±clip (saturated by the projection)."""
  leaves = jax.tree.leaves(params)
  # The projection lands two ulps inside the bound (see optim.clip_weights).
  at_bound = sum(jnp.sum(jnp.abs(p) >= clip * (1 - 1e-6)) for p in leaves)
  return at_bound / sum(p.size for p in leaves)


def generate(spec: GanSpec, generator: NetState, key: jax.Array, n: int
             ) -> tuple[jax.Array, PyTree]:
  """n samples from fresh noise, in training mode (batch statistics of this
  batch, as in the reference code); returns them and the new batch stats."""
  return apply_net(spec.generator, generator.params, generator.batch_stats,
                   sample_noise(spec, key, n), train=True)


def critic_step(spec: GanSpec, critic: NetState, real: jax.Array, fake: jax.Array,
                key: jax.Array) -> tuple[NetState, Metrics]:
  """One critic update on one real and one generated batch."""
  batch = real.shape[0]
  fake = jax.lax.stop_gradient(fake)

  def loss_fn(params):
    if critic.batch_stats:
      # Batch norm sees the real and the fake batch separately, as in the reference.
      f_real, stats = apply_net(spec.critic, params, critic.batch_stats, real, True)
      f_fake, stats = apply_net(spec.critic, params, stats, fake, True)
    else:
      # Without batch statistics the critic is per-example: one bigger matmul.
      f_both, stats = apply_net(spec.critic, params, {}, jnp.concatenate([real, fake]), True)
      f_real, f_fake = f_both[:batch], f_both[batch:]
    loss = losses.critic_loss(spec.objective, f_real, f_fake)
    aux = {"wasserstein_estimate": losses.wasserstein_estimate(f_real, f_fake)}
    if spec.objective == "wgan-gp":
      x_hat = losses.interpolate(real, fake, jax.random.uniform(key, (batch,)))
      gp, norms = losses.gradient_penalty(
          lambda x: apply_net(spec.critic, params, stats, x, True)[0], x_hat)
      loss = loss + spec.gp_weight * gp
      aux.update(gradient_penalty=gp, gp_input_grad_norm=jnp.mean(norms))
    if spec.objective == "gan":
      aux.update(d_real=jnp.mean(jax.nn.sigmoid(f_real)),
                 d_fake=jnp.mean(jax.nn.sigmoid(f_fake)))
    return loss, (stats, aux)

  (loss, (stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(critic.params)
  critic = _apply_updates(spec.critic_tx, critic, grads, stats)
  return critic, {"critic_loss": loss, "critic_grad_norm": optax.tree.norm(grads), **aux}


def generator_step(spec: GanSpec, generator: NetState, critic: NetState,
                   key: jax.Array, batch: int) -> tuple[NetState, PyTree, Metrics]:
  """One generator update against the current critic.

  Returns the new generator, the critic's batch statistics (its forward pass
  runs in training mode, as in the reference) and metrics.
  """
  z = sample_noise(spec, key, batch)

  def loss_fn(params):
    fake, gen_stats = apply_net(spec.generator, params, generator.batch_stats, z, True)
    f_fake, critic_stats = apply_net(spec.critic, critic.params, critic.batch_stats, fake, True)
    loss = losses.generator_loss(spec.objective, f_fake, spec.gan_generator_loss)
    return loss, (gen_stats, critic_stats)

  (loss, (gen_stats, critic_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(generator.params)
  generator = _apply_updates(spec.generator_tx, generator, grads, gen_stats)
  metrics = {"generator_loss": loss, "generator_grad_norm": optax.tree.norm(grads)}
  return generator, critic_stats, metrics


def generator_iteration(spec: GanSpec, state: TrainState,
                        real: jax.Array) -> tuple[TrainState, Metrics]:
  """n_critic critic updates (one per leading slice of `real`), then one
  generator update, as one XLA program (`lax.scan` over the critic updates).

  Each critic update gets a fresh generated batch and its own key. The
  generator does not change during the critic updates, so without batch norm
  all n_critic fake batches come from one larger forward pass. Critic metrics
  are averaged over the critic updates of the iteration.
  """
  n_critic, batch = real.shape[:2]
  key = jax.random.fold_in(state.rng, state.step)
  k_fake, k_critic, k_gen = jax.random.split(key, 3)
  critic_keys = jax.random.split(k_critic, n_critic)

  if state.generator.batch_stats:
    def body(carry, xs):
      gen_stats, critic = carry
      real_batch, k_noise, k = xs
      fake, gen_stats = generate(spec, state.generator.replace(batch_stats=gen_stats),
                                 k_noise, batch)
      critic, m = critic_step(spec, critic, real_batch, fake, k)
      return (gen_stats, critic), m

    (gen_stats, critic), critic_metrics = jax.lax.scan(
        body, (state.generator.batch_stats, state.critic),
        (real, jax.random.split(k_fake, n_critic), critic_keys))
    generator = state.generator.replace(batch_stats=gen_stats)
  else:
    fakes, _ = generate(spec, state.generator, k_fake, n_critic * batch)
    fakes = fakes.reshape(real.shape[:2] + fakes.shape[1:])

    def body(critic, xs):
      return critic_step(spec, critic, *xs)

    critic, critic_metrics = jax.lax.scan(body, state.critic, (real, fakes, critic_keys))
    generator = state.generator

  generator, critic_stats, gen_metrics = generator_step(spec, generator, critic, k_gen, batch)
  critic = critic.replace(batch_stats=critic_stats)

  metrics = {k: jnp.mean(v) for k, v in critic_metrics.items()}
  metrics.update(gen_metrics)
  if spec.clip is not None:
    metrics["clipped_fraction"] = clipped_fraction(critic.params, spec.clip)
  new_state = state.replace(step=state.step + 1, generator=generator, critic=critic)
  return new_state, metrics
