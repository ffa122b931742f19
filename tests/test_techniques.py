"""The improved techniques (Salimans et al. 2016; Arjovsky & Bottou 2017's
instance noise), each against what it computes by hand, and one run of the
real trainer with all of them on, resumed."""
import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers import tiny_config
from tests.runs import final_state
from wgan_jax import (builders, checkpointing, configs, critic_inputs, generators, loop, losses, placement, techniques, updates)
from wgan_jax.configs import schema
from wgan_jax.models import dcgan, improved, mlp, resnet

AXIS = "batch"


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


@functools.cache
def _everything():
  """A tiny standard GAN with every technique on (global batch 16, VBN
  reference 8) and its initial state, shared by the tests of the steps."""
  config = tiny_config("gan", batch_size=16, **{
      "techniques.feature_matching": True, "techniques.minibatch_kernels": 4,
      "techniques.historical_averaging": 0.01, "techniques.label_smoothing": 0.1,
      "techniques.instance_noise": 0.3, "techniques.instance_noise_steps": 10,
      "model.generator.norm": "virtual", "techniques.vbn_reference_size": 8})
  spec = builders.make_spec(config, (2,))
  return config, spec, jax.jit(lambda: builders.init_state(spec, (2,), 0))()


def _leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


# ---------------------------------------------------------------- label smoothing

def test_one_sided_label_smoothing_is_the_papers_loss():
  f_real = np.array([-3.0, -0.5, 0.2, 4.0], np.float32)
  f_fake = np.array([-1.0, 0.3, 2.0, -5.0], np.float32)
  d_real, d_fake = _sigmoid(f_real), _sigmoid(f_fake)
  fake_term = np.mean(-np.log(1 - d_fake))
  for s in (0.0, 0.1, 0.3):
    want = np.mean(-(1 - s) * np.log(d_real) - s * np.log(1 - d_real)) + fake_term
    assert float(losses.critic_loss("non-saturating", f_real, f_fake, s)) == pytest.approx(want, rel=1e-5)
  # Saturated logits stay finite (softplus, as the unsmoothed loss).
  big = jnp.array([300.0, -300.0])
  assert math.isfinite(float(losses.critic_loss("non-saturating", big, big, 0.1)))


# ---------------------------------------------------------------- feature matching

def test_feature_matching_loss_is_the_squared_distance_of_feature_means():
  rng = np.random.default_rng(0)
  h_real, h_fake = rng.normal(size=(6, 3, 2)), rng.normal(size=(4, 3, 2))
  want = np.sum((h_real.reshape(6, -1).mean(0) - h_fake.reshape(4, -1).mean(0)) ** 2)
  got = techniques.feature_matching_loss(jnp.float32(h_real), jnp.float32(h_fake))
  assert float(got) == pytest.approx(want, rel=1e-5)
  assert float(techniques.feature_matching_loss(jnp.float32(h_real), jnp.float32(h_real))) == 0


def _final_map(name, params, h):
  """The critic's final linear map applied by hand to its sown features `h`."""
  if name == "dcgan":  # a 4x4 valid convolution of the 4x4 map: one dot product
    kernel = params[sorted(k for k in params if k.startswith("Conv_"))[-1]]["kernel"]
    return np.einsum("nhwc,hwc->n", h, kernel[..., 0])
  dense = params[sorted(k for k in params if k.startswith("Dense_"))[-1]]
  return (h @ dense["kernel"] + dense["bias"])[:, 0]


@pytest.mark.parametrize("name,critic,shape", [
    ("mlp", mlp.MLP(16, 2, ()), (2,)),
    ("dcgan", dcgan.DCGANCritic(image_size=16, ndf=4, norm="batch", convolutions="xla"),
     (16, 16, 3)),
    ("resnet", resnet.ResNetCritic(image_size=32, dim=4), (32, 32, 3)),
])
def test_every_critic_exposes_the_features_its_final_linear_map_takes(name, critic, shape):
  spec = updates.GanSpec(generator=None, critic=critic, generator_tx=None, critic_tx=None,
                         critic_terms=(), generator_terms=(), noise_dim=2)

  @jax.jit
  def outputs_and_features(x):
    variables = critic.init(jax.random.PRNGKey(1), x, train=False)
    stats = variables.get("batch_stats", {})
    return (variables, updates.apply_net(critic, variables["params"], stats, x, True)[0],
            updates.critic_features(spec, variables["params"], stats, x)[0])

  variables, out, h = outputs_and_features(jax.random.normal(jax.random.PRNGKey(0), (3, *shape)))
  np.testing.assert_allclose(_final_map(name, variables["params"], np.asarray(h)), out,
                             rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- minibatch discrimination

def test_minibatch_discrimination_against_a_double_loop():
  layer = improved.MinibatchDiscrimination(kernels=3, kernel_dim=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 4)) * 3
  variables, o, alone = jax.jit(lambda x: (
      v := layer.init(jax.random.PRNGKey(1), x), layer.apply(v, x), layer.apply(v, x[:1])))(x)
  o = np.asarray(o)
  m = np.asarray(x, np.float64) @ np.asarray(variables["params"]["T"], np.float64).reshape(4, 6)
  m = m.reshape(5, 3, 2)
  want = np.zeros((5, 3))
  for i in range(5):
    for j in range(5):
      if j != i:  # the example itself is left out, as in Salimans et al.'s code
        want[i] += np.exp(-np.abs(m[i] - m[j]).sum(-1))
  np.testing.assert_allclose(o, want, rtol=1e-5, atol=1e-7)
  assert np.all(o > 0) and np.asarray(alone).tolist() == [[0, 0, 0]]  # alone: nothing to compare


def test_minibatch_discrimination_sees_the_global_batch_under_pmap():
  """8 devices of 2 examples each compute what one device computes on 16:
  critic outputs, and a whole critic update (its gradient through the gather)."""
  config, single, state = _everything()
  pmapped = builders.make_spec(config, (2,), AXIS)
  critic = state.critic
  real = jax.random.normal(jax.random.PRNGKey(3), (16, 2))
  fake = jax.random.normal(jax.random.PRNGKey(4), (16, 2)) * 2
  shard = lambda x: x.reshape(8, 2, *x.shape[1:])
  unshard = lambda x: np.asarray(x).reshape(16, *x.shape[2:])

  out = jax.pmap(lambda p, x: pmapped.critic.apply({"params": p}, x), AXIS, in_axes=(None, 0))(
      critic.params, shard(real))
  apply = jax.jit(lambda x: single.critic.apply({"params": critic.params}, x))
  np.testing.assert_allclose(unshard(out), apply(real), rtol=1e-5, atol=1e-6)
  # Device-local minibatches would score differently: the test has teeth.
  local = apply(real[:2])  # device 0's share alone
  assert np.max(np.abs(np.asarray(local) - unshard(out)[:2])) > 1e-3

  # The update (instance noise, label smoothing and historical averaging on too).
  key = jax.random.PRNGKey(5)
  want, _ = jax.jit(lambda c: updates.critic_step(single, c, real, fake, key, 3))(critic)
  got, _ = jax.pmap(lambda c, r, f: updates.critic_step(pmapped, c, r, f, key, 3), AXIS)(
      placement.pmap_replicate(critic), shard(real), shard(fake))
  for a, b in zip(jax.tree.leaves(placement.pmap_unreplicate(got.params)),
                  jax.tree.leaves(want.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- historical averaging

def test_historical_average_is_the_mean_of_every_value_the_parameters_took():
  tx = techniques.with_history(optax.sgd(0.1), 0.5)
  params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
  state = tx.init(params)
  seen = [params]
  for k in range(3):
    grads = {"w": jnp.array([k + 1.0, 0.5 * k - 1]), "b": jnp.array(k - 1.0)}
    step, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, step)
    seen.append(params)
  history = techniques.history(state)
  assert int(history.count) == 4  # the initial parameters and 3 updates
  for name in params:
    np.testing.assert_allclose(history.mean[name], np.mean([p[name] for p in seen], 0),
                               rtol=1e-6)
  theta = {"w": jnp.array([0.3, 0.7]), "b": jnp.array(-1.0)}
  want = sum(np.sum((np.asarray(theta[n]) - np.mean([p[n] for p in seen], 0)) ** 2)
             for n in params)
  assert float(techniques.historical_distance(theta, state)) == pytest.approx(want, rel=1e-6)
  # Off, the optimizer and its state are what they were: nothing extra to carry.
  sgd = optax.sgd(0.1)
  assert techniques.with_history(sgd, 0.0) is sgd


# ---------------------------------------------------------------- virtual batch norm

def test_virtual_batch_norm_of_one_layer_against_numpy():
  module = mlp.MLP(features=3, depth=1, output_shape=(2,), norm="virtual", vbn_reference_size=4)
  z = jax.random.normal(jax.random.PRNGKey(0), (5, 2))


  @jax.jit
  def variables_and_output(z):
    variables = module.init(jax.random.PRNGKey(1), z, train=False)
    # Scale and bias away from 1 and 0, so that they are tested too.
    variables = jax.tree.map(lambda v: v * 1.3 + 0.2, variables)
    return variables, module.apply(variables, z)

  variables, out = variables_and_output(z)
  p = jax.tree.map(lambda v: np.asarray(v, np.float64), variables["params"])
  ref = np.asarray(variables["batch_stats"][improved.VBN_REFERENCE], np.float64)
  a_ref = ref @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
  a = np.asarray(z, np.float64) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
  w = 1 / (4 + 1)
  mean = w * a + (1 - w) * a_ref.mean(0)
  var = w * a ** 2 + (1 - w) * (a_ref ** 2).mean(0) - mean ** 2
  h = (a - mean) / np.sqrt(var + 1e-5) * p["VirtualBatchNorm_0"]["scale"] + \
      p["VirtualBatchNorm_0"]["bias"]
  want = np.maximum(h, 0) @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("module,noise_dim", [
    (mlp.MLP(8, 2, (2,), norm="virtual", vbn_reference_size=4), 2),
    (dcgan.DCGANGenerator(image_size=16, channels=1, ngf=4, norm="virtual",
                          vbn_reference_size=4, convolutions="xla"), 6),
])
def test_virtual_batch_norm_output_does_not_depend_on_the_rest_of_the_batch(module, noise_dim):
  z = jax.random.normal(jax.random.PRNGKey(0), (6, noise_dim))
  others = z.at[1:].set(3 * jax.random.normal(jax.random.PRNGKey(2), (5, noise_dim)))

  @jax.jit
  def first_outputs(z, others):
    variables = module.init(jax.random.PRNGKey(1), z, train=False)
    return module.apply(variables, z)[0], module.apply(variables, others)[0]

  np.testing.assert_allclose(*first_outputs(z, others), rtol=1e-5, atol=1e-6)


def test_batch_norm_depends_on_the_rest_of_the_batch_and_virtual_batch_norm_does_not():
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
  others = x.at[1:].multiply(3.0)
  reference = jax.random.normal(jax.random.PRNGKey(2), (5, 4))
  bn, vbn = nn.BatchNorm(use_running_average=False), improved.VirtualBatchNorm()

  @jax.jit
  def first_outputs(x, others):
    v_bn, v_vbn = bn.init(jax.random.PRNGKey(1), x), vbn.init(jax.random.PRNGKey(1), reference, x)
    return [(bn.apply(v_bn, y, mutable=["batch_stats"])[0][0], vbn.apply(v_vbn, reference, y)[1][0])
            for y in (x, others)]

  (bn_x, vbn_x), (bn_others, vbn_others) = first_outputs(x, others)
  assert np.max(np.abs(bn_x - bn_others)) > 1e-2
  np.testing.assert_array_equal(vbn_x, vbn_others)


def test_the_state_carries_historical_averages_and_the_vbn_reference_through_a_checkpoint(
    tmp_path):
  config, spec, state = _everything()
  reference = np.asarray(state.generator.batch_stats[improved.VBN_REFERENCE])
  assert reference.shape == (8, 2) and 0.3 < reference.std() < 3  # N(0, 1) noise
  real = jax.random.normal(jax.random.PRNGKey(7), (config.n_critic, config.batch_size, 2))
  trained, metrics = jax.jit(lambda s, r: updates.generator_iteration(spec, s, r))(state, real)
  # The running means count the initial parameters and every update.
  assert int(techniques.history(trained.critic.opt_state).count) == 1 + config.n_critic
  assert int(techniques.history(trained.generator.opt_state).count) == 2
  # The generator's penalty is taken at its initial parameters, the mean so far; the
  # critic's first one too, its later ones not.
  assert float(metrics["generator_historical_penalty"]) == 0
  assert float(metrics["critic_historical_penalty"]) > 0
  # Training moves the generator, never its reference noise.
  np.testing.assert_array_equal(trained.generator.batch_stats[improved.VBN_REFERENCE], reference)
  assert not np.array_equal(trained.generator.params["Dense_0"]["kernel"],
                            state.generator.params["Dense_0"]["kernel"])

  checkpointer = checkpointing.Checkpointer(str(tmp_path), 1, 3)
  checkpointer.save(trained, config, force=True)
  checkpointer.wait()
  restored, _ = checkpointer.restore(builders.abstract_state(spec, (2,)))
  checkpointer.close()
  want = _leaves(trained)
  assert _leaves(restored).keys() == want.keys()
  for k, v in _leaves(restored).items():
    np.testing.assert_array_equal(v, want[k], err_msg=k)
  saved = final_state(str(tmp_path), 1)
  assert any(k.startswith("critic/opt_state/1/mean/") for k in saved)
  assert f"generator/batch_stats/{improved.VBN_REFERENCE}" in saved


# ---------------------------------------------------------------- instance noise

def test_instance_noise_std_anneals_linearly_to_zero():
  t = critic_inputs.InstanceNoise(0.5, 4)
  assert [float(t.std(s)) for s in (0, 1, 2, 4, 9)] == [0.5, 0.375, 0.25, 0.0, 0.0]
  config = tiny_config("gan", **{"techniques.instance_noise": 0.5})
  (noise,) = builders.transforms(config)
  assert noise.steps == config.num_generator_steps


def test_instance_noise_is_on_both_critic_inputs_and_absent_at_zero():
  _, spec, state = _everything()  # sigma0 = 0.3, annealed to 0 at step 10
  plain = dataclasses.replace(spec, transforms=())
  assert builders.make_spec(tiny_config("gan"), (2,)).transforms == ()
  real = jax.random.normal(jax.random.PRNGKey(3), (16, 2))
  fake = jax.random.normal(jax.random.PRNGKey(4), (16, 2))
  key = jax.random.PRNGKey(5)
  noisy = jax.jit(lambda c, s: updates.critic_step(spec, c, real, fake, key, s))
  off = jax.jit(lambda c, r, f: updates.critic_step(plain, c, r, f, key))
  # Annealed to 0 at step 10: exactly the update without the technique.
  for a, b in zip(jax.tree.leaves(noisy(state.critic, 10)),
                  jax.tree.leaves(off(state.critic, real, fake))):
    np.testing.assert_array_equal(a, b)
  # At step 5 (std 0.15): the plain update of real and fake plus the stream's noise.
  stream = jax.random.fold_in(key, critic_inputs.InstanceNoise.stream)
  noise = [0.15 * jax.random.normal(jax.random.fold_in(stream, i), (16, 2)) for i in (0, 1)]
  got = noisy(state.critic, 5)[0].params
  want = off(state.critic, real + noise[0], fake + noise[1])[0].params
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  without = off(state.critic, real, fake)[0].params
  assert max(float(jnp.max(jnp.abs(a - b)))
             for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(without))) > 1e-6


# ---------------------------------------------------------------- configs

@pytest.mark.parametrize("overrides,message", [
    ({"techniques.label_smoothing": "0.1"},
     "techniques.label_smoothing=0.1 smooths a discriminator's labels (loss=minimax or "
     "non-saturating); loss='wasserstein' has none: set techniques.label_smoothing=0"),
    ({"techniques.minibatch_kernels": "10"},
     "techniques.minibatch_kernels makes the critic's value of an example depend on its whole "
     "batch, so the per-example gradient penalty (gp) no longer measures one example's "
     "gradient: use penalty=none (with clip or a logistic loss), or set "
     "techniques.minibatch_kernels=0"),
    ({"loss": "non-saturating", "penalty": "none", "techniques.label_smoothing": "0.7"},
     "techniques.label_smoothing=0.7 must be at least 0 and at most 0.5"),
    ({"model.generator.norm": "batch"}, "model.generator.norm='batch' is unknown"),
])
def test_combinations_that_make_no_sense_are_one_line(overrides, message):
  with pytest.raises(configs.ConfigError) as error:
    configs.from_command_line("toy_8gaussians", list(overrides.items()))
  assert "\n" not in str(error.value) and str(error.value).startswith(message)


def test_a_config_saved_before_the_techniques_resumes_with_them_off():
  saved = configs.load("toy_8gaussians").to_dict()
  del saved["techniques"], saved["model"]["generator"]["norm"]
  config = configs.from_dict(saved)
  assert config.techniques.to_dict() == schema.techniques_section().to_dict()
  assert config.model.generator.norm == "none"
  assert configs.check_resumable(saved, configs.load("toy_8gaussians"), "w", 3) == []


# ---------------------------------------------------------------- the trainer, end to end

@pytest.mark.slow
def test_the_trainer_runs_with_every_technique_on_and_resumes(tmp_path):
  config = configs.load("toy_25gaussians_gan_improved")
  for section in (config.model.generator, config.model.critic):
    section.features, section.depth = 16, 1
  config.model.generator.norm = "virtual"
  config.update_from_flattened_dict({
      "batch_size": 16, "num_generator_steps": 3, "log_every": 1, "eval_every": 0,
      "eval_samples": 64, "checkpoint_every": 0, "techniques.feature_matching": True,
      "techniques.minibatch_kernels": 4, "techniques.historical_averaging": 0.01,
      "techniques.label_smoothing": 0.1, "techniques.instance_noise": 0.2,
      "techniques.vbn_reference_size": 8})
  configs.validate(config)
  workdir = str(tmp_path)
  summary = loop.train_and_evaluate(config, workdir)
  assert summary["generator_steps"] == 3
  numbers = {k: v for k, v in summary.items() if isinstance(v, float)}
  assert {"train_feature_matching_loss", "train_instance_noise_std",
          "train_critic_historical_penalty", "w1"} <= numbers.keys()
  assert all(math.isfinite(v) for v in numbers.values()), numbers

  config.num_generator_steps = 5
  assert loop.train_and_evaluate(config, workdir)["generator_steps"] == 5
  saved = final_state(workdir, 5)
  assert int(saved["step"]) == 5
  # The generator restored alone carries its VBN reference batch.
  _, generator = generators.restore(config, workdir, 5)
  np.testing.assert_array_equal(generator.batch_stats[improved.VBN_REFERENCE],
                                saved[f"generator/batch_stats/{improved.VBN_REFERENCE}"])
