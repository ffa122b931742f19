"""Pure update steps: clipping invariant, one-program iteration = its parts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_config
from wgan_jax import feeds, steps, trainer
from wgan_jax.data import toy


def _setup(objective, **overrides):
  config = tiny_config(objective, **overrides)
  spec = trainer.make_spec(config, (2,))
  state = trainer.create_train_state(spec, (2,), config.seed)
  return config, spec, state


def _max_abs(tree):
  return max(np.float32(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(tree))


def test_wgan_critic_weights_stay_in_clip_range_at_every_step():
  clip = 0.01
  config, spec, state = _setup("wgan", clip=clip, **{"optimizer.lr": 5e-2})
  assert spec.clip == clip
  clip = np.float32(clip)  # The bound as the float32 weights hold it.
  assert _max_abs(state.critic.params) <= clip  # Also before the first update.
  feed = feeds.ToyFeed(spec, 3, toy.get_toy_dataset("8gaussians"), config.batch_size)
  fractions = []
  for step in range(8):
    state, metrics = feed(state, trainer.critic_updates(step, 3, "constant"))
    assert _max_abs(state.critic.params) <= clip, f"step {step}"
    fractions.append(float(metrics["clipped_fraction"]))
  # With a large learning rate most weights saturate at +-c.
  assert 0.0 < fractions[-1] <= 1.0
  assert fractions[-1] > 0.3


def test_no_clipping_for_wgan_gp():
  _, spec, state = _setup("wgan-gp")
  assert spec.clip is None
  assert _max_abs(state.critic.params) > 0.01


@pytest.mark.parametrize("objective", ["wgan", "wgan-gp", "gan"])
def test_iteration_is_n_critic_critic_steps_then_a_generator_step(objective):
  config, spec, state = _setup(objective)
  n_critic, batch = 3, config.batch_size
  real = jax.random.normal(jax.random.PRNGKey(7), (n_critic, batch, 2))
  fused, metrics = jax.jit(steps.generator_iteration, static_argnums=0)(spec, state, real)

  # The same updates one by one, with the keys the iteration derives.
  k_fake, k_critic, k_gen = steps.iteration_keys(state)
  noise = [steps.sample_noise(spec, jax.random.fold_in(k_fake, i), batch)
           for i in range(n_critic)]
  # One forward pass for all fake batches, as the iteration does (RMSProp's
  # first steps amplify the rounding of differently batched matmuls).
  fakes, _ = steps.generate(spec, state.generator, jnp.concatenate(noise))
  critic = state.critic
  for i in range(n_critic):
    critic, _ = steps.critic_step(spec, critic, real[i], fakes[i * batch:(i + 1) * batch],
                                  jax.random.fold_in(k_critic, i))
  generator, _, gen_metrics = steps.generator_step(spec, state.generator, critic, k_gen, batch)

  assert int(fused.step) == int(state.step) + 1
  for a, b in zip(jax.tree.leaves((critic.params, generator.params)),
                  jax.tree.leaves((fused.critic.params, fused.generator.params))):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  assert float(metrics["generator_loss"]) == pytest.approx(
      float(gen_metrics["generator_loss"]), rel=1e-4, abs=1e-6)
  expected = {"critic_loss", "critic_grad_norm", "wasserstein_estimate", "generator_loss",
              "generator_grad_norm"}
  expected |= {"wgan": {"clipped_fraction"}, "wgan-gp": {"gradient_penalty",
               "gp_input_grad_norm"}, "gan": {"d_real", "d_fake"}}[objective]
  assert set(metrics) == expected


def test_critic_steps_use_different_fake_batches_and_keys():
  config, spec, state = _setup("wgan-gp")
  # Identical real batches: the critic updates still differ because each one
  # gets its own generated batch and interpolation key.
  real = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(3), (1, 32, 2)), (3, 32, 2))
  k_fake = steps.iteration_keys(state)[0]
  noise = steps.per_update(lambda k: steps.sample_noise(spec, k, 32), k_fake, 0, 3)
  assert noise.shape == (3, 32, 2)
  assert not np.allclose(noise[0], noise[1])


def test_critic_schedule_reference_rule():
  counts = [trainer.critic_updates(s, 5, "wgan_reference") for s in range(1002)]
  assert counts[:25] == [100] * 25
  assert counts[25:30] == [5] * 5
  assert counts[500] == 100 and counts[1000] == 100 and counts[501] == 5
  assert all(trainer.critic_updates(s, 5, "constant") == 5 for s in range(30))


def test_wgan_training_raises_the_critic_separation():
  # A few critic updates on a fixed generator increase E[f(real)] - E[f(fake)].
  config, spec, state = _setup("wgan-gp", **{"optimizer.lr": 1e-3})
  real = toy.get_toy_dataset("8gaussians").sample(jax.random.PRNGKey(0), 32 * 20)
  real = real.reshape(20, 32, 2)
  fakes, _ = steps.generate(spec, state.generator,
                            steps.sample_noise(spec, jax.random.PRNGKey(1), 32))
  step = jax.jit(lambda c, r, k: steps.critic_step(spec, c, r, fakes, k))
  critic, first = step(state.critic, real[0], jax.random.PRNGKey(2))
  for i in range(1, 20):
    critic, last = step(critic, real[i], jax.random.PRNGKey(2 + i))
  assert float(last["wasserstein_estimate"]) > float(first["wasserstein_estimate"]) + 0.05


@pytest.mark.parametrize("objective", ["wgan", "wgan-gp"])
def test_long_critic_phases_run_in_chunks_with_the_same_numbers(objective):
  # The reference schedule's 100 critic updates run as chunks on CPU; update i
  # draws the same data, noise and keys however the updates are grouped.
  config, spec, state = _setup(objective)
  dataset = toy.get_toy_dataset("8gaussians")
  whole = feeds.ToyFeed(spec, 7, dataset, config.batch_size)
  chunked = feeds.ToyFeed(spec, 2, dataset, config.batch_size)
  assert chunked.unroll  # CPU
  a, metrics_a = whole(jax.tree.map(jnp.copy, state), 7)  # Feeds donate their input.
  b, metrics_b = chunked(state, 7)
  assert int(a.step) == int(b.step) == 1
  for x, y in zip(jax.tree.leaves((a.critic, a.generator)), jax.tree.leaves((b.critic, b.generator))):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
  assert float(metrics_a["generator_loss"]) == pytest.approx(
      float(metrics_b["generator_loss"]), rel=1e-5)
