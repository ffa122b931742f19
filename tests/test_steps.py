"""Pure update steps: clipping invariant, one-program iteration = its parts."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers import tiny_config
from wgan_jax import builders, losses, penalties, updates
from wgan_jax import run as run_lib
from wgan_jax.configs import n_critic as n_critic_lib
from wgan_jax.data import toy
from wgan_jax.devices import Devices


def _setup(setup, **overrides):
  config = tiny_config(setup, **overrides)
  spec = builders.make_spec(config, (2,))
  state = builders.init_state(spec, (2,), config.seed)
  return config, spec, state


def _toy_iteration(config, chunk=None):
  """The production iteration on one device, toy data drawn in the program."""
  it = run_lib.build(config, Devices.single()).iteration
  if chunk is not None:
    it.chunk = chunk
  return it


def _max_abs(tree):
  return max(np.float32(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(tree))


def test_wgan_critic_weights_stay_in_clip_range_at_every_step():
  clip = 0.01
  config, spec, state = _setup("wgan", clip=clip, **{"optimizer.lr": 5e-2})
  assert spec.clip == clip
  clip = np.float32(clip)  # The bound as the float32 weights hold it.
  assert _max_abs(state.critic.params) <= clip  # Also before the first update.
  run = _toy_iteration(config)
  fractions = []
  for step in range(8):
    state, metrics = run(state, n_critic_lib.n_critic_at(step, config))
    assert _max_abs(state.critic.params) <= clip, f"step {step}"
    fractions.append(float(metrics["clipped_fraction"]))
  # With a large learning rate most weights saturate at +-c.
  assert 0.3 < fractions[-1] <= 1.0


def test_no_clipping_without_a_clip_bound():
  # With a learning rate large enough that clipping would bind, the critic
  # update is Adam's alone: weights leave [-0.01, 0.01] and equal optax.adam's.
  config, spec, state = _setup("wgan-gp", **{"optimizer.lr": 0.1,
                                             "optimizer.schedule": "constant"})
  assert spec.clip is None
  real = jax.random.normal(jax.random.PRNGKey(3), (32, 2))
  fake = jax.random.normal(jax.random.PRNGKey(4), (32, 2))
  key = jax.random.PRNGKey(5)
  critic, _ = updates.critic_step(spec, state.critic, real, fake, key)

  def loss(params):
    f = lambda x: spec.critic.apply({"params": params}, x)
    gp, _ = penalties.gradient_penalty(f, penalties.interpolate(real, fake,
                                                                jax.random.uniform(key, (32,))))
    return losses.critic_loss("wasserstein", f(real), f(fake)) + config.penalty_weight * gp

  grads = jax.grad(loss)(state.critic.params)
  o = config.optimizer.critic
  adam = optax.adam(o.lr, b1=o.b1, b2=o.b2)
  step, _ = adam.update(grads, adam.init(state.critic.params), state.critic.params)
  expected = optax.apply_updates(state.critic.params, step)
  # Adam's first step is ~lr * sign(g): where |g| is near its eps, rounding in g
  # moves a weight by up to ~1e-3 lr; a projection onto [-0.01, 0.01] would move
  # the weights that left it by far more.
  for a, b in zip(jax.tree.leaves(critic.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-3)
  assert _max_abs(critic.params) > 0.05


@pytest.mark.parametrize("setup", ["wgan", "wgan-gp", "gan"])
def test_iteration_is_n_critic_critic_steps_then_a_generator_step(setup):
  config, spec, state = _setup(setup)
  n_critic, batch = 3, config.batch_size
  real = jax.random.normal(jax.random.PRNGKey(7), (n_critic, batch, 2))
  fused, metrics = jax.jit(updates.generator_iteration, static_argnums=0)(spec, state, real)

  # The same updates one by one, with the keys the iteration derives.
  k_fake, k_critic, k_gen = updates.iteration_keys(state)
  noise = [updates.sample_noise(spec, jax.random.fold_in(k_fake, i), batch)
           for i in range(n_critic)]
  # One forward pass for all fake batches, as the iteration does (RMSProp's
  # first steps amplify the rounding of differently batched matmuls).
  fakes, _ = updates.fake_batch(spec, state.generator, jnp.concatenate(noise))
  critic = state.critic
  for i in range(n_critic):
    critic, _ = updates.critic_step(spec, critic, real[i], fakes[i * batch:(i + 1) * batch],
                                  jax.random.fold_in(k_critic, i))
  last_real = real[-1]  # Floats: the toy set's points pass as they are.
  generator, _, gen_metrics = updates.generator_step(spec, state.generator, critic, k_gen, batch,
                                                     last_real)

  assert int(fused.step) == int(state.step) + 1
  for a, b in zip(jax.tree.leaves((critic.params, generator.params)),
                  jax.tree.leaves((fused.critic.params, fused.generator.params))):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  assert float(metrics["generator_loss"]) == pytest.approx(
      float(gen_metrics["generator_loss"]), rel=1e-4, abs=1e-6)
  expected = {"critic_loss", "critic_grad_norm", "wasserstein_estimate", "generator_loss",
              "generator_grad_norm", updates.NONFINITE_PARAMS}
  expected |= {"wgan": {"clipped_fraction"}, "wgan-gp": {"gp_penalty",
               "gp_input_grad_norm"}, "gan": {"d_real", "d_fake"}}[setup]
  assert set(metrics) == expected
  assert float(metrics[updates.NONFINITE_PARAMS]) == 0


def test_critic_updates_use_different_fake_batches_and_keys():
  config, spec, state = _setup("wgan-gp")
  # Identical real batches: the updates must still differ, each by its own
  # generated batch and interpolation key, as update i of one by one shows.
  real = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(3), (1, 32, 2)), (3, 32, 2))
  trained, _ = jax.jit(updates.train_critic, static_argnums=0)(spec, state, real)
  k_fake, k_critic, _ = updates.iteration_keys(state)
  fakes, _ = updates.fake_batch(spec, state.generator, jnp.concatenate(
      [updates.sample_noise(spec, jax.random.fold_in(k_fake, i), 32) for i in range(3)]))

  def by_hand(fake_of, key_of):
    critic = state.critic
    for i in range(3):
      critic, _ = updates.critic_step(spec, critic, real[i], fakes[32 * fake_of(i):][:32],
                                    jax.random.fold_in(k_critic, key_of(i)))
    return critic.params

  def gap(params):
    return max(float(jnp.max(jnp.abs(a - b)))
               for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(trained.critic.params)))

  assert gap(by_hand(lambda i: i, lambda i: i)) < 1e-5
  # Teeth: one fake batch for all updates, or one key, is another computation.
  assert gap(by_hand(lambda i: 0, lambda i: i)) > 1e-3
  assert gap(by_hand(lambda i: i, lambda i: 0)) > 1e-5


def test_uint8_images_become_floats_in_the_program():
  config, spec, _ = _setup("wgan-gp")
  pixels = jnp.array([[0, 64, 255]], jnp.uint8)
  key = jax.random.PRNGKey(0)
  np.testing.assert_allclose(updates.real_to_float(spec, pixels, key),
                             [[-1.0, 64 / 127.5 - 1, 1.0]], atol=1e-7)
  # gan_cifar_resnet.py: 2 (x / 256 - 0.5) + U(0, 1/128), a fresh draw per key.
  deq = dataclasses.replace(spec, dequantize=True)
  a = np.asarray(updates.real_to_float(deq, jnp.full((64, 3), 128, jnp.uint8), key))
  base = 2 * (128 / 256 - 0.5)
  assert np.all(a >= base) and np.all(a < base + 1 / 128)
  assert 0.3 / 128 < a.mean() - base < 0.7 / 128
  b = np.asarray(updates.real_to_float(deq, jnp.full((64, 3), 128, jnp.uint8),
                                     jax.random.PRNGKey(1)))
  assert not np.array_equal(a, b)
  floats = jnp.ones((2, 2))
  assert updates.real_to_float(deq, floats, key) is floats  # toy points pass through


def test_generator_batch_is_a_multiple_of_the_critic_batch(monkeypatch):
  config, spec, state = _setup("wgan-gp", generator_batch_multiple=2)
  assert spec.generator_batch_multiple == 2
  drawn = []
  sample_noise = updates.sample_noise
  monkeypatch.setattr(updates, "sample_noise", lambda s, k, n: drawn.append(n) or sample_noise(s, k, n))
  _, _, metrics = updates.generator_step(spec, state.generator, state.critic,
                                       jax.random.PRNGKey(0), 32)
  assert drawn == [64] and np.isfinite(float(metrics["generator_loss"]))


def test_nonfinite_parameters_are_reported_by_the_step():
  # An infinite step: the critic loss of this iteration is computed before the
  # update and is finite; the parameters the update leaves are not, and the
  # step says so in its metrics.
  config, spec, state = _setup("wgan-gp")
  spec = dataclasses.replace(spec, critic_tx=optax.sgd(float("inf")))
  real = jax.random.normal(jax.random.PRNGKey(7), (1, 32, 2))
  _, metrics = jax.jit(updates.generator_iteration, static_argnums=0)(spec, state, real)
  assert np.isfinite(float(metrics["critic_loss"]))
  assert float(metrics[updates.NONFINITE_PARAMS]) > 0


def test_n_critic_schedule_reference_rule():
  config = tiny_config("wgan", n_critic_schedule="wgan_reference", n_critic=5)
  counts = [n_critic_lib.n_critic_at(s, config) for s in range(1002)]
  assert counts[:25] == [100] * 25
  assert counts[25:30] == [5] * 5
  assert counts[500] == 100 and counts[1000] == 100 and counts[501] == 5
  config.num_generator_steps = 1002
  np.testing.assert_array_equal(n_critic_lib.n_critic_schedule(config), counts)
  np.testing.assert_array_equal(n_critic_lib.n_critic_schedule(config, 499, 502), [5, 100, 5])
  assert n_critic_lib.critic_updates(config) == sum(counts)
  # Counted without walking the steps: equal to the walk at every boundary.
  for steps in (0, 1, 24, 25, 26, 500, 501, 1000, 1001, 123_457):
    config.num_generator_steps = steps
    assert n_critic_lib.critic_updates(config) == n_critic_lib.n_critic_schedule(config).sum()
  config.n_critic_schedule = "constant"
  assert all(n_critic_lib.n_critic_at(s, config) == 5 for s in range(30))
  assert n_critic_lib.critic_updates(config) == 5 * 123_457


def test_wgan_training_raises_the_critic_separation():
  # A few critic updates on a fixed generator increase E[f(real)] - E[f(fake)].
  config, spec, state = _setup("wgan-gp", **{"optimizer.lr": 1e-3})
  real = toy.get_toy_dataset("8gaussians").sample(jax.random.PRNGKey(0), 32 * 20)
  real = real.reshape(20, 32, 2)
  fakes, _ = updates.fake_batch(spec, state.generator,
                              updates.sample_noise(spec, jax.random.PRNGKey(1), 32))
  step = jax.jit(lambda c, r, k: updates.critic_step(spec, c, r, fakes, k))
  critic, first = step(state.critic, real[0], jax.random.PRNGKey(2))
  for i in range(1, 20):
    critic, last = step(critic, real[i], jax.random.PRNGKey(2 + i))
  assert float(last["wasserstein_estimate"]) > float(first["wasserstein_estimate"]) + 0.05


@pytest.mark.parametrize("setup", ["wgan", "wgan-gp"])
def test_long_critic_phases_run_in_chunks_with_the_same_numbers(setup):
  # The reference schedule's 100 critic updates run as chunks on CPU; update i
  # draws the same data, noise and keys however the updates are grouped. The clipped
  # critic is clipped at 1, not 0.01: at 0.01 its gradients are rounding noise that
  # RMSProp scales to whole steps, so a nudge of a millionth to the initial state moves
  # its weights across the clip range, and two groupings agree only where the CPU
  # kind happens to round them alike (BUILD.md, "Numbers held").
  config, spec, state = _setup(setup, **({"clip": 1.0} if setup == "wgan" else {}))
  whole = _toy_iteration(config, chunk=7)
  chunked = _toy_iteration(config, chunk=2)
  assert chunked.unroll  # CPU
  copy = lambda: jax.tree.map(jnp.copy, state)  # Iterations donate their input.
  a, metrics_a = whole(copy(), 7)
  b, metrics_b = chunked(copy(), 7)
  assert int(a.step) == int(b.step) == 1
  for x, y in zip(jax.tree.leaves((a.critic, a.generator)), jax.tree.leaves((b.critic, b.generator))):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
  assert float(metrics_a["generator_loss"]) == pytest.approx(
      float(metrics_b["generator_loss"]), rel=1e-5)


def test_critic_loop_scanned_gives_the_numbers_of_the_unrolled_one():
  config, spec, state = _setup("wgan-gp", critic_loop="scan")
  scanned = _toy_iteration(config)
  unrolled = _toy_iteration(tiny_config("wgan-gp", critic_loop="unrolled"))
  assert not scanned.unroll and unrolled.unroll
  a, _ = scanned(jax.tree.map(jnp.copy, state), 3)
  b, _ = unrolled(state, 3)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
