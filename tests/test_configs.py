"""Experiments by name, type-checked overrides, validation (the CLI's errors: test_bad_input)."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from wgan_jax import configs
from wgan_jax.cli import split_experiment_args
from wgan_jax.configs import migration, schema

TOY_EXPERIMENTS = ["toy_25gaussians", "toy_25gaussians_gan_improved",
                   "toy_25gaussians_reference", "toy_8gaussians",
                   "toy_8gaussians_clip", "toy_8gaussians_clip_reference",
                   "toy_8gaussians_gan", "toy_8gaussians_reference", "toy_swissroll",
                   "toy_swissroll_reference"]
IMAGE_EXPERIMENTS = ["bedrooms_dcgan", "bedrooms_dcgan_gan", "bedrooms_dcgan_gp",
                     "bedrooms_dcgan_nobn", "bedrooms_mlp", "bedrooms_resnet_gp",
                     "cifar10_resnet_acgan", "cifar10_resnet_gp", "digits_dcgan_gan_improved",
                     "digits_dcgan_gp", "digits_resnet_acgan", "folder_dcgan_diffaugment",
                     "mnist_dcgan_gp"]


def test_known_experiments():
  assert configs.known_experiments() == sorted(TOY_EXPERIMENTS + IMAGE_EXPERIMENTS)


def test_image_experiments_follow_the_papers():
  bedrooms = configs.load("bedrooms_dcgan")
  assert (bedrooms.data.name, bedrooms.data.image_size, bedrooms.batch_size) == (
      "lsun_bedroom", 64, 64)
  assert (bedrooms.loss, bedrooms.penalty, bedrooms.clip, bedrooms.optimizer.critic.name,
          bedrooms.optimizer.critic.lr, bedrooms.n_critic, bedrooms.n_critic_schedule,
          bedrooms.model.noise_dim) == (
              "wasserstein", "none", 0.01, "rmsprop", 5e-5, 5, "wgan_reference", 100)
  assert bedrooms.optimizer.generator == bedrooms.optimizer.critic
  assert configs.load("bedrooms_dcgan_nobn").model.generator.norm == "none"
  # The WGAN code's MLP_G: 4 linear layers (3 hidden), PyTorch's init, no tanh.
  mlp = configs.load("bedrooms_mlp").model.generator
  assert (mlp.name, mlp.features, mlp.depth, mlp.weight_init, mlp.output_activation) == (
      "mlp", 512, 3, "torch", "linear")
  gp = configs.load("bedrooms_dcgan_gp")
  assert (gp.loss, gp.penalty, gp.model.critic.norm, gp.penalty_weight, gp.clip) == (
      "wasserstein", "gp", "layer", 10.0, 0.0)
  gan = configs.load("bedrooms_dcgan_gan")
  assert (gan.loss, gan.penalty, gan.optimizer.critic.lr, gan.optimizer.generator.b1) == (
      "non-saturating", "none", 2e-4, 0.5)
  cifar = configs.load("cifar10_resnet_gp")
  assert (cifar.model.generator.name, cifar.data.image_size,
          cifar.optimizer.generator.schedule, cifar.optimizer.critic.schedule) == (
              "resnet", 32, "linear", "linear")
  # gan_cifar_resnet.py: generator batch 2 x 64, dequantised reals, Adam(2e-4, 0, 0.9).
  assert (cifar.batch_size, cifar.generator_batch_multiple, cifar.data.dequantize) == (64, 2, True)
  assert (cifar.optimizer.critic.lr, cifar.optimizer.critic.b1, cifar.optimizer.critic.b2) == (
      2e-4, 0.0, 0.9)
  assert cifar.model.critic.norm == "none" and cifar.model.noise_dim == 128
  # gan_64x64.py's default network: the 64x64 ResNet with a layer-norm critic.
  resnet64 = configs.load("bedrooms_resnet_gp")
  assert (resnet64.model.critic.norm, resnet64.model.generator.dim, resnet64.model.noise_dim,
          resnet64.optimizer.generator.lr, resnet64.optimizer.generator.b1,
          resnet64.num_generator_steps) == (
              "layer", 64, 128, 1e-4, 0.0, 200_000)


@pytest.mark.parametrize("overrides,message", [
    ([("model.critic.norm", "batch")], r"a gradient penalty \(gp\) forbids batch norm in the critic"),
    ([("data.image_size", "40")], "data.image_size=40 does not suit DCGAN: use a multiple of 16"),
    ([("model.generator.norm", "layer")], "model.generator.norm='layer' is unknown"),
    ([("model.generator.output_activation", "sigmoid")],
     "model.generator.output_activation='sigmoid' is unknown"),
    ([("model.generator.draw_size", "12")],
     "model.generator.draw_size=12 must be 0 .draw at data.image_size. or a power of two from 8"),
    ([("model.generator.draw_size", "128")],
     "model.generator.draw_size=128 is larger than the image size 64"),
])
def test_image_settings_that_cannot_train_are_rejected(overrides, message):
  with pytest.raises(configs.ConfigError, match=message):
    configs.from_command_line("bedrooms_dcgan_gp", overrides)


def test_dcgan_on_toy_data_is_rejected():
  with pytest.raises(configs.ConfigError, match="model.generator.name='dcgan' needs "
                     "model.generator.ngf; start from an experiment that uses dcgan"):
    configs.from_command_line("toy_8gaussians", [("model.generator.name", "dcgan")])


@pytest.mark.parametrize("name", TOY_EXPERIMENTS)
def test_every_toy_experiment_loads_and_validates(name):
  c = configs.load(name)
  configs.validate(c)
  assert c.experiment == name
  assert c.batch_size == 256 and c.model.noise_dim == 2
  assert c.model.generator.features == 512 and c.model.generator.depth == 3


def test_toy_experiments_follow_the_papers():
  gp = configs.load("toy_8gaussians")
  assert (gp.loss, gp.penalty, gp.penalty_weight, gp.clip) == ("wasserstein", "gp", 0.1, 0.0)
  clip = configs.load("toy_8gaussians_clip")
  assert (clip.loss, clip.penalty, clip.clip, clip.optimizer.critic.name) == (
      "wasserstein", "none", 0.01, "rmsprop")
  gan = configs.load("toy_8gaussians_gan")
  assert (gan.loss, gan.penalty, gan.clip) == ("non-saturating", "none", 0.0)


def test_reference_experiments_are_gan_toy_py():
  for name in ("toy_8gaussians_reference", "toy_25gaussians_reference",
               "toy_swissroll_reference"):
    c = configs.load(name)
    assert (c.loss, c.penalty, c.penalty_weight, c.n_critic, c.batch_size,
            c.num_generator_steps) == ("wasserstein", "gp", 0.1, 5, 256, 100_000)
    for opt in (c.optimizer.generator, c.optimizer.critic):
      assert (opt.name, opt.lr, opt.b1, opt.b2, opt.schedule) == ("adam", 1e-4, 0.5, 0.9,
                                                                  "constant")
    assert c.model.generator.weight_init == c.model.critic.weight_init == "tflib"
  clip = configs.load("toy_8gaussians_clip_reference")
  # tf.train.RMSPropOptimizer(5e-5): decay 0.9, eps 1e-10 in the sqrt, ms from ones.
  opt = clip.optimizer.critic
  assert (clip.penalty, clip.clip, opt.name, opt.lr, opt.decay, opt.eps, opt.schedule) == (
      "none", 0.01, "rmsprop_tf", 5e-5, 0.9, 1e-10, "constant")


def test_overrides_are_type_checked():
  c = configs.load("toy_8gaussians")
  configs.override(c, "optimizer.lr", "3e-4")  # Both networks'.
  configs.override(c, "n_critic", "2")
  configs.override(c, "optimizer.critic.name", "rmsprop")
  assert (c.optimizer.generator.lr, c.optimizer.critic.lr, c.n_critic) == (3e-4, 3e-4, 2)
  assert (c.optimizer.generator.name, c.optimizer.critic.name) == ("adam", "rmsprop")
  configs.override(c, "optimizer.generator.lr", "1")  # An int is a fine float.
  assert isinstance(c.optimizer.generator.lr, float) and c.optimizer.generator.lr == 1.0
  assert c.optimizer.critic.lr == 3e-4
  with pytest.raises(configs.ConfigError, match="'n_critic': '2.5' is not a whole number"):
    configs.override(c, "n_critic", "2.5")
  with pytest.raises(configs.ConfigError, match="'optimizer.lr': 'fast' is not a number"):
    configs.override(c, "optimizer.lr", "fast")
  with pytest.raises(configs.ConfigError, match="unknown config key 'optimizer.lrr'; did you mean "
                     "'optimizer.lr'?"):
    configs.override(c, "optimizer.lrr", "1")
  with pytest.raises(configs.ConfigError, match="unknown config key 'nope'"):
    configs.override(c, "nope", "1")
  with pytest.raises(configs.ConfigError, match="unknown config key 'penalty_wieght'; did you "
                     "mean 'penalty_weight'?"):
    configs.override(c, "penalty_wieght", "1")
  with pytest.raises(configs.ConfigError, match="is a section"):
    configs.override(c, "optimizer", "adam")


@pytest.mark.parametrize("key,value,message", [
    ("n_critic", "0", "n_critic=0 must be at least 1"),
    ("clip", "-0.01", r"clip=-0.01 must be 0 \(off\) or a positive bound"),
    ("loss", "wgan", "loss='wgan' is unknown; use one of wasserstein, minimax, non-saturating, "
     "hinge, least-squares"),
    ("penalty", "auto", "penalty='auto' is unknown"),
    ("clip", "0.01", "clip=0.01 and penalty='gp' both constrain the critic"),
    ("objective", "hinge", "objective='hinge' is unknown; use one of wgan, wgan-gp, gan"),
    ("data.name", "mnits", "data.name='mnits' is unknown"),
    ("data.name", "mnist", "data.name='mnist' is an image data set and needs data.image_size"),
    ("optimizer.schedule", "cosine", "optimizer.generator.schedule='cosine' is unknown"),
    # Every key has a range or a choice list, checked before anything starts.
    ("optimizer.critic.b1", "2", r"optimizer.critic.b1=2.0 must be in \[0, 1\)"),
    ("optimizer.b2", "-1", r"optimizer.generator.b2=-1.0 must be in \[0, 1\)"),
    ("optimizer.decay", "2", r"optimizer.generator.decay=2.0 must be in \[0, 1\)"),
    ("optimizer.lr", "inf", r"optimizer.generator.lr=inf must be at least 0 \(0 freezes"),
    ("optimizer.critic.lr", "-1", "optimizer.critic.lr=-1.0 must be at least 0"),
    ("penalty_weight", "inf", "penalty_weight=inf must be at least 0"),
    ("gp_weight", "inf", "penalty_weight=inf must be at least 0"),
    ("accumulation_steps", "3", "batch_size=256 does not split into accumulation_steps=3"),
    ("model.generator.output_activation", "tahn",
     "model.generator.output_activation='tahn' is unknown; use one of linear, tanh"),
    ("model.generator.depth", "-1", "model.generator.depth=-1 must be at least 0"),
    ("model.critic.features", "0", "model.critic.features=0 must be at least 1"),
    ("seed", "99999999999999999999999", "seed=99999999999999999999999 must be at least 0 "
     "and at most 2147483647"),
    ("eval_samples", "100000", "eval_samples=100000 must be at least 2 and at most 10000 "
     r"\(exact W1 solves an N x N transport problem\)"),
    ("convolutions", "fft", "convolutions='fft' is unknown; use one of auto, phase_split, xla"),
    ("critic_loop", "while", "critic_loop='while' is unknown; use one of auto, unrolled, scan"),
])
def test_contradictory_settings_are_rejected(key, value, message):
  with pytest.raises(configs.ConfigError, match=message):
    configs.from_command_line("toy_8gaussians", [(key, value)])


def test_split_experiment_args():
  name, overrides, rest = split_experiment_args(
      ["--experiment=toy_swissroll", "--experiment.optimizer.lr=1e-4", "--workdir=/x",
       "--experiment.n_critic", "3"])
  assert name == "toy_swissroll"
  assert overrides == [("optimizer.lr", "1e-4"), ("n_critic", "3")]
  assert rest == ["--workdir=/x"]


def test_a_config_saved_before_keys_were_added_resumes_as_it_was_trained():
  # What a run saved before generator_batch_multiple, dequantize, ... existed holds.
  saved = json.loads(configs.load("cifar10_resnet_gp").to_json())
  for key in ("generator_batch_multiple", "sampling_batch_norm", "convolutions", "critic_loop"):
    del saved[key]
  del saved["data"]["dequantize"]
  del saved["model"]["critic"]["norm"]
  config = configs.from_dict(saved)
  # The code of then: one batch size, x / 127.5 - 1, running averages, no critic norm;
  # not today's cifar10_resnet_gp defaults (2, True, batch).
  assert (config.generator_batch_multiple, config.data.dequantize, config.sampling_batch_norm,
          config.model.critic.norm) == (1, False, "running", "none")
  assert configs.check_resumable(saved, config, "W", 5) == []
  # A data section saved for another data set than the experiment's default is
  # restored whole, with the keys it lacked.
  saved = json.loads(configs.load("bedrooms_dcgan").to_json())
  saved["data"] = dict(name="image_folder", image_size=16, dir="/x", split="train",
                       shuffle_buffer=4)
  config = configs.from_dict(saved)
  assert (config.data.name, config.data.dir, config.data.dequantize) == ("image_folder", "/x",
                                                                          False)
  # A digits run saved before its generator drew at 8x8 resumes drawing at 16x16 with tanh.
  saved = json.loads(configs.load("digits_dcgan_gp").to_json())
  generator = saved["model"]["generator"]
  del generator["draw_size"], generator["output_activation"]
  generator["ngf"] = 32
  config = configs.from_dict(saved)
  assert (config.model.generator.draw_size,
          config.model.generator.output_activation) == (0, "tanh")
  assert configs.check_resumable(saved, config, "W", 5) == []


# ----------------------------------------------------------------------------
# Configs and checkpoints of older versions.
# ----------------------------------------------------------------------------

OLD_OPTIMIZER = {"name": "rmsprop", "lr": 5e-5, "schedule": "constant", "b1": 0.5, "b2": 0.9,
                 "decay": 0.99, "eps": 1e-8}


def _saved_before_the_loss_keys(experiment: str, objective: str, **old) -> dict:
  """`experiment`'s config as the version before `loss` wrote it."""
  saved = json.loads(configs.load(experiment).to_json())
  for key in ("loss", "penalty_weight", "n_critic_schedule", "accumulation_steps"):
    del saved[key]
  saved.update(objective=objective, gp_weight=old.pop("gp_weight", 10.0), clip=0.01,
               critic_schedule="constant",
               gan_generator_loss=old.pop("gan_generator_loss", "non-saturating"),
               penalty=old.pop("penalty", "auto"), optimizer=dict(OLD_OPTIMIZER))
  return saved


@pytest.mark.parametrize("objective,old,want", [
    ("wgan", {}, ("wasserstein", "none", 0.01)),
    ("wgan-gp", {"gp_weight": 0.1}, ("wasserstein", "gp", 0.0)),
    ("wgan-gp", {"penalty": "r1"}, ("wasserstein", "r1", 0.0)),
    ("gan", {"gan_generator_loss": "minimax"}, ("minimax", "none", 0.0)),
    ("gan", {"penalty": "r1"}, ("non-saturating", "r1", 0.0)),
])
def test_a_config_saved_with_objective_loads_as_the_keys_that_replace_it(objective, old, want):
  weight = old.get("gp_weight", 10.0)
  saved = _saved_before_the_loss_keys("toy_8gaussians", objective, **old)
  config = configs.from_dict(saved)
  assert (config.loss, config.penalty, config.clip) == want
  assert config.penalty_weight == weight
  assert config.optimizer.generator.to_dict() == config.optimizer.critic.to_dict() == OLD_OPTIMIZER
  assert (config.n_critic_schedule, config.accumulation_steps) == ("constant", 1)
  # Resuming it with today's keys changes nothing the checkpoint holds.
  assert configs.check_resumable(saved, config, "W", 5) == []
  upgraded, notes = migration.upgrade(saved)
  assert any(n.startswith(f"objective={objective!r} is now loss=") for n in notes)
  assert "objective" not in upgraded and "gp_weight" not in upgraded


def test_a_config_of_this_version_needs_no_translation():
  saved = json.loads(configs.load("bedrooms_dcgan").to_json())
  assert migration.upgrade(saved) == (saved, [])


def test_old_keys_on_the_command_line_are_translated_with_one_line(caplog):
  c = configs.from_command_line("toy_8gaussians", [("objective", "wgan"), ("gp_weight", "3"),
                                                   ("critic_schedule", "wgan_reference")])
  assert (c.loss, c.penalty, c.clip, c.penalty_weight, c.n_critic_schedule) == (
      "wasserstein", "none", 0.01, 3.0, "wgan_reference")
  c = configs.from_command_line("toy_8gaussians_gan", [("gan_generator_loss", "minimax")])
  assert c.loss == "minimax"
  c = configs.from_command_line("toy_8gaussians_clip", [("objective", "wgan-gp")])
  assert (c.loss, c.penalty, c.clip) == ("wasserstein", "gp", 0.0)
  assert "objective='wgan' is now loss='wasserstein', penalty='none', clip=0.01" in caplog.text


def test_a_sweep_saved_over_gp_weight_sweeps_penalty_weight():
  saved = _saved_before_the_loss_keys("toy_8gaussians", "wgan-gp")
  saved["sweep"] = {"key": "gp_weight", "grid": [0.1, 1.0], "seeds": 1, "loop": "auto"}
  config = configs.from_dict(saved)
  assert (config.sweep.key, tuple(config.sweep.grid)) == ("penalty_weight", (0.1, 1.0))


@pytest.mark.parametrize("overrides,message", [
    ([("penalty", "none")], "loss='wasserstein' with no penalty, no weight clipping and no "
     "spectral norm leaves the critic unconstrained"),
    ([("loss", "hinge"), ("techniques.label_smoothing", "0.1")],
     "label_smoothing=0.1 smooths a discriminator's labels"),
    ([("accumulation_steps", "2"), ("techniques.feature_matching", "true")],
     "accumulation_steps=2 with techniques.feature_matching"),
])
def test_losses_penalties_and_clipping_that_contradict_each_other(overrides, message):
  with pytest.raises(configs.ConfigError, match=message):
    configs.from_command_line("toy_8gaussians", overrides)


def test_every_loss_and_penalty_validates():
  for loss in schema.LOSSES:
    for penalty in schema.PENALTIES[1:]:
      c = configs.from_command_line("toy_8gaussians", [("loss", loss), ("penalty", penalty)])
      assert (c.loss, c.penalty) == (loss, penalty)
  # Spectral norm alone constrains a Wasserstein critic (SNGAN's setting, with hinge).
  configs.from_command_line("toy_8gaussians", [("penalty", "none"),
                                               ("model.critic.norm", "spectral")])


# ----------------------------------------------------------------------------
# The config layer is light.
# ----------------------------------------------------------------------------


def test_loading_and_validating_every_experiment_imports_no_jax_flax_or_tensorflow():
  code = ("import sys; from wgan_jax import configs\n"
          "for n in configs.known_experiments(): configs.from_command_line(n, [])\n"
          "configs.describe_experiments()\n"
          "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'jaxlib', 'flax', "
          "'optax', 'orbax', 'tensorflow', 'torch'}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "[]"


def test_every_experiment_has_a_one_line_description():
  descriptions = configs.describe_experiments()
  assert sorted(descriptions) == configs.known_experiments()
  assert all(0 < len(d) <= 104 and "\n" not in d for d in descriptions.values())
  assert descriptions["toy_8gaussians"] == ("WGAN-GP on the 8gaussians toy set (the WGAN-GP "
                                            "paper's toy experiment)")


def test_the_menus_name_what_the_implementations_hold():
  from wgan_jax import losses, penalties
  assert tuple(losses.ADVERSARIAL) == schema.LOSSES
  assert ("none", *penalties.PENALTY) == schema.PENALTIES


def _entry(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", "wgan_jax.train", *args], capture_output=True,
                        text=True, cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)


def test_help_lists_the_flags_and_every_experiment_and_exits_0():
  out = _entry("--help")
  assert out.returncode == 0, out.stderr
  assert "--experiment=NAME" in out.stdout and "--workdir" in out.stdout
  for name, description in configs.describe_experiments().items():
    assert f"  {name}" in out.stdout and description in out.stdout
  assert out.stderr == ""  # No backend started, nothing logged.


def test_a_typo_is_one_line_with_the_nearest_name_before_any_backend_starts():
  out = _entry("--experiment=toy_8gaussians", "--experiment.penalty_wieght=1")
  assert out.returncode == 2
  assert out.stderr == ("error: unknown config key 'penalty_wieght'; did you mean "
                        "'penalty_weight'?" + out.stderr.split("?", 1)[1])
  assert out.stderr.count("\n") == 1  # No TensorFlow, XLA or Orbax line before it.


@pytest.mark.parametrize("package", [True, False])
def test_a_folder_named_experiments_in_the_working_directory_hides_nothing(tmp_path, package):
  # The working directory comes first on the import path of `python -m`.
  (tmp_path / "experiments").mkdir()
  if package:
    (tmp_path / "experiments" / "__init__.py").write_text("")
    (tmp_path / "experiments" / "toy_8gaussians.py").write_text("raise SystemExit('not ours')")
  out = _entry("--help", cwd=tmp_path)
  assert out.returncode == 0, out.stderr
  for name in configs.known_experiments():
    assert f"  {name} " in out.stdout
  out = _entry("--experiment=toy_8gaussians", "--experiment.n_critic=x", cwd=tmp_path)
  assert out.stderr.strip() == ("error: bad value for 'n_critic': 'x' is not a whole number "
                                "(current value: 5)")
