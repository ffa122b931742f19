"""The core that composes: losses as sums of terms, an optimizer per network,
gradient accumulation, the run built once."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_config
from wgan_jax import builders, configs, memory, terms, updates
from wgan_jax import run as run_lib
from wgan_jax.devices import Devices


def _spec_and_state(config, shape=(2,)):
  spec = builders.make_spec(config, shape)
  return spec, builders.init_state(spec, shape, config.seed)


def _assert_trees_close(a, b, rtol=2e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _max_gap(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a),
                                                             jax.tree.leaves(b)))


# ----------------------------------------------------------------------------
# Terms.
# ----------------------------------------------------------------------------


def test_each_network_gets_the_terms_its_config_turns_on():
  names = lambda c: ([t.name for t in builders.make_spec(c, (2,)).critic_terms],
                     [t.name for t in builders.make_spec(c, (2,)).generator_terms])
  assert names(tiny_config()) == (["adversarial", "gp"], ["adversarial"])
  assert names(tiny_config("wgan")) == (["adversarial"], ["adversarial"])
  assert names(tiny_config("gan", penalty="r2")) == (["adversarial", "r2"], ["adversarial"])
  assert names(tiny_config("gan", **{"techniques.feature_matching": True,
                                     "techniques.historical_averaging": 0.1})) == (
      ["adversarial", "historical_averaging"], ["feature_matching", "historical_averaging"])


def test_the_loss_is_the_weighted_sum_of_the_terms():
  config = tiny_config(penalty_weight=3.0)
  spec, state = _spec_and_state(config)
  real = jax.random.normal(jax.random.PRNGKey(0), (32, 2))
  fake = jax.random.normal(jax.random.PRNGKey(1), (32, 2))
  _, m = updates.critic_step(spec, state.critic, real, fake, jax.random.PRNGKey(2))
  assert float(m["critic_loss"]) == pytest.approx(
      -float(m["wasserstein_estimate"]) + 3.0 * float(m["gp_penalty"]), rel=1e-5)
  # A term added to the spec is added to the loss, and nothing else changes.
  extra = terms.Term("constant", lambda view, _: (jnp.float32(1.5), {"constant": 1.5}), 2.0)
  more = dataclasses.replace(spec, critic_terms=spec.critic_terms + (extra,))
  _, m2 = updates.critic_step(more, state.critic, real, fake, jax.random.PRNGKey(2))
  assert float(m2["critic_loss"]) == pytest.approx(float(m["critic_loss"]) + 3.0, rel=1e-5)
  assert float(m2["constant"]) == 1.5


@pytest.mark.parametrize("loss", ["hinge", "least-squares"])
def test_a_critic_trained_with_a_loss_separates_real_from_fake(loss):
  config = tiny_config(loss=loss, **{"optimizer.lr": 1e-3})
  spec, state = _spec_and_state(config)
  real = 0.3 * jax.random.normal(jax.random.PRNGKey(0), (32, 2)) + 1.0
  fake = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (32, 2)) - 1.0
  step = jax.jit(lambda c, k: updates.critic_step(spec, c, real, fake, k))
  critic, first = step(state.critic, jax.random.PRNGKey(2))
  for i in range(30):
    critic, last = step(critic, jax.random.PRNGKey(3 + i))
  assert float(last["critic_loss"]) < 0.7 * float(first["critic_loss"])
  f = lambda x: updates.critic_values(spec, critic, x)
  # Every real point above every generated one: the critic tells them apart.
  assert float(jnp.min(f(real))) > float(jnp.max(f(fake)))


# ----------------------------------------------------------------------------
# An optimizer per network.
# ----------------------------------------------------------------------------


def test_each_network_has_its_own_optimizer():
  config = tiny_config(**{"optimizer.generator.lr": 0.0, "optimizer.critic.name": "rmsprop",
                          "optimizer.critic.lr": 1e-3})
  spec, state = _spec_and_state(config)
  kinds = lambda net: {type(s).__name__ for s in jax.tree.leaves(
      net.opt_state, is_leaf=lambda s: hasattr(s, "_fields"))}
  assert "ScaleByAdamState" in kinds(state.generator)
  assert "ScaleByRmsState" in kinds(state.critic) and "ScaleByAdamState" not in kinds(state.critic)
  real = jax.random.normal(jax.random.PRNGKey(7), (3, 32, 2))
  new, _ = jax.jit(updates.generator_iteration, static_argnums=0)(spec, state, real)
  # A generator at learning rate 0 does not move; the critic does.
  assert _max_gap(new.generator.params, state.generator.params) == 0
  assert _max_gap(new.critic.params, state.critic.params) > 1e-4


# ----------------------------------------------------------------------------
# Gradient accumulation.
# ----------------------------------------------------------------------------


# RMSProp with eps 1: updates about lr * gradient. Adam's first step, lr * sign(g),
# would turn the rounding of a near-zero gradient into a whole step.
LINEAR_OPTIMIZER = {"optimizer.name": "rmsprop", "optimizer.eps": 1.0, "optimizer.lr": 1e-2}


@pytest.mark.parametrize("setup,overrides", [
    ("wgan-gp", {}),
    ("wgan-gp", {"penalty": "dragan"}),
    ("gan", {"penalty": "r1", "techniques.instance_noise": 0.5}),
    # Clipped at 0.1, not 0.01: a critic of 0.01-weights has gradients so small that
    # float32 rounding of their cancelling sums is all that differs.
    ("wgan", {"techniques.historical_averaging": 0.1, "clip": 0.1}),
])
def test_accumulated_updates_equal_the_whole_batch(setup, overrides):
  # A per-example critic: k micro-batches of 32 / k give the 32-batch's update.
  overrides = {**LINEAR_OPTIMIZER, **overrides}
  whole_config = tiny_config(setup, **overrides)
  split_config = tiny_config(setup, accumulation_steps=4, **overrides)
  whole, state = _spec_and_state(whole_config)
  split, _ = _spec_and_state(split_config)
  assert split.accumulation_steps == 4
  real = jax.random.normal(jax.random.PRNGKey(7), (3, 32, 2))
  iterate = jax.jit(updates.generator_iteration, static_argnums=0)
  a, ma = iterate(whole, state, real)
  b, mb = iterate(split, state, real)
  _assert_trees_close((a.critic, a.generator), (b.critic, b.generator))
  for k in ma:
    assert float(ma[k]) == pytest.approx(float(mb[k]), rel=1e-4, abs=1e-6), k


@pytest.mark.slow
def test_accumulation_on_images_with_diffaugment_equals_the_whole_batch():
  overrides = [("model.generator.ngf", "8"), ("model.critic.ndf", "8"), ("batch_size", "8"),
               ("augment", "color,translation,cutout"),
               *((k, str(v)) for k, v in LINEAR_OPTIMIZER.items())]
  whole_config = configs.from_command_line("digits_dcgan_gp", overrides)
  split_config = configs.from_command_line("digits_dcgan_gp",
                                           overrides + [("accumulation_steps", "2")])
  shape = (16, 16, 1)
  whole, state = _spec_and_state(whole_config, shape)
  split, _ = _spec_and_state(split_config, shape)
  real = jax.random.randint(jax.random.PRNGKey(3), (2, 8, *shape), 0, 256).astype(jnp.uint8)
  iterate = jax.jit(updates.generator_iteration, static_argnums=0)
  a, _ = iterate(whole, state, real)
  b, _ = iterate(split, state, real)
  _assert_trees_close(a.critic.params, b.critic.params, rtol=1e-4, atol=1e-6)
  # The generator's batch norm sees micro-batches in its own update: its statistics,
  # so its gradients, are those of 4 samples, not 8.
  assert _max_gap(a.generator.params, b.generator.params) > 1e-6


def test_accumulation_shrinks_the_updates_memory_as_the_bench_reports_it():
  figures = {}
  for k in (1, 4):
    config = configs.from_command_line("digits_dcgan_gp", [
        ("batch_size", "64"), ("accumulation_steps", str(k)), ("model.critic.ndf", "16"),
        ("n_critic", "1")])
    figures[k] = memory.iteration_memory(config)
  assert figures[4]["per_device_batch"] == figures[1]["per_device_batch"] == 64
  for update in ("critic_update", "generator_update"):
    key = f"memory_{update}_temporary_mib"
    assert 0 < figures[4][key] < 0.6 * figures[1][key], (update, figures)
  assert figures[4]["memory_argument_mib"] == figures[1]["memory_argument_mib"] > 0


def test_a_batch_that_does_not_split_into_micro_batches_per_device_is_refused():
  config = tiny_config(accumulation_steps=8, batch_size=32)
  with pytest.raises(configs.ConfigError, match="accumulation_steps=8 does not divide the 4 "
                     "examples each of the 8 devices holds of batch_size=32"):
    run_lib.build(config, Devices("jit"))


# ----------------------------------------------------------------------------
# The run, built once.
# ----------------------------------------------------------------------------


def test_a_run_is_built_once_for_its_devices():
  config = tiny_config()
  parts = run_lib.build(config, Devices("jit", jax.devices()[:2]))
  assert parts.data_shape == (2,) and parts.sweep is None
  assert parts.global_spec is parts.spec  # jit: one spec for the updates and evaluation.
  state = parts.create_state()
  assert jax.tree.map(lambda x: x.shape, state) == jax.tree.map(lambda x: x.shape,
                                                                parts.abstract_state)
  state, metrics = parts.iteration(state, config.n_critic)
  assert int(state.step) == 1 and np.isfinite(float(metrics["critic_loss"]))
  pmapped = run_lib.build(config, Devices("pmap", jax.devices()[:2]))
  assert pmapped.spec.batch_axis.name == "data" and pmapped.global_spec.batch_axis.name is None
