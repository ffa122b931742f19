"""Experiments by name, type-checked overrides, validation (the CLI's errors: test_bad_input)."""
import json

import pytest

from wgan_jax import configs
from wgan_jax.cli import split_experiment_args

TOY_EXPERIMENTS = ["toy_25gaussians", "toy_25gaussians_gan_improved",
                   "toy_25gaussians_reference", "toy_8gaussians",
                   "toy_8gaussians_clip", "toy_8gaussians_clip_reference",
                   "toy_8gaussians_gan", "toy_8gaussians_reference", "toy_swissroll",
                   "toy_swissroll_reference"]
IMAGE_EXPERIMENTS = ["bedrooms_dcgan", "bedrooms_dcgan_gan", "bedrooms_dcgan_gp",
                     "bedrooms_dcgan_nobn", "bedrooms_mlp", "bedrooms_resnet_gp",
                     "cifar10_resnet_acgan", "cifar10_resnet_gp", "digits_dcgan_gan_improved",
                     "digits_dcgan_gp", "folder_dcgan_diffaugment", "mnist_dcgan_gp"]


def test_known_experiments():
  assert configs.known_experiments() == sorted(TOY_EXPERIMENTS + IMAGE_EXPERIMENTS)


def test_image_experiments_follow_the_papers():
  bedrooms = configs.load("bedrooms_dcgan")
  assert (bedrooms.data.name, bedrooms.data.image_size, bedrooms.batch_size) == (
      "lsun_bedroom", 64, 64)
  assert (bedrooms.objective, bedrooms.clip, bedrooms.optimizer.name, bedrooms.optimizer.lr,
          bedrooms.n_critic, bedrooms.critic_schedule, bedrooms.model.noise_dim) == (
              "wgan", 0.01, "rmsprop", 5e-5, 5, "wgan_reference", 100)
  assert configs.load("bedrooms_dcgan_nobn").model.generator.norm == "none"
  # The WGAN code's MLP_G: 4 linear layers (3 hidden), PyTorch's init, no tanh.
  mlp = configs.load("bedrooms_mlp").model.generator
  assert (mlp.name, mlp.features, mlp.depth, mlp.weight_init, mlp.output_activation) == (
      "mlp", 512, 3, "torch", "linear")
  gp = configs.load("bedrooms_dcgan_gp")
  assert (gp.objective, gp.model.critic.norm, gp.gp_weight) == ("wgan-gp", "layer", 10.0)
  gan = configs.load("bedrooms_dcgan_gan")
  assert (gan.objective, gan.optimizer.lr, gan.optimizer.b1) == ("gan", 2e-4, 0.5)
  cifar = configs.load("cifar10_resnet_gp")
  assert (cifar.model.generator.name, cifar.data.image_size, cifar.optimizer.schedule) == (
      "resnet", 32, "linear")
  # gan_cifar_resnet.py: generator batch 2 x 64, dequantised reals, Adam(2e-4, 0, 0.9).
  assert (cifar.batch_size, cifar.generator_batch_multiple, cifar.data.dequantize) == (64, 2, True)
  assert (cifar.optimizer.lr, cifar.optimizer.b1, cifar.optimizer.b2) == (2e-4, 0.0, 0.9)
  assert cifar.model.critic.norm == "none" and cifar.model.noise_dim == 128
  # gan_64x64.py's default network: the 64x64 ResNet with a layer-norm critic.
  resnet64 = configs.load("bedrooms_resnet_gp")
  assert (resnet64.model.critic.norm, resnet64.model.generator.dim, resnet64.model.noise_dim,
          resnet64.optimizer.lr, resnet64.optimizer.b1, resnet64.num_generator_steps) == (
              "layer", 64, 128, 1e-4, 0.0, 200_000)


@pytest.mark.parametrize("overrides,message", [
    ([("model.critic.norm", "batch")], r"a gradient penalty \(gp\) forbids batch norm in the critic"),
    ([("data.image_size", "40")], "data.image_size=40 does not suit DCGAN: use a multiple of 16"),
    ([("model.generator.norm", "layer")], "model.generator.norm='layer' is unknown"),
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
  assert configs.load("toy_8gaussians").gp_weight == 0.1
  clip = configs.load("toy_8gaussians_clip")
  assert (clip.objective, clip.clip, clip.optimizer.name) == ("wgan", 0.01, "rmsprop")
  assert configs.load("toy_8gaussians_gan").objective == "gan"


def test_reference_experiments_are_gan_toy_py():
  for name in ("toy_8gaussians_reference", "toy_25gaussians_reference",
               "toy_swissroll_reference"):
    c = configs.load(name)
    assert (c.objective, c.gp_weight, c.n_critic, c.batch_size, c.num_generator_steps) == (
        "wgan-gp", 0.1, 5, 256, 100_000)
    assert (c.optimizer.name, c.optimizer.lr, c.optimizer.b1, c.optimizer.b2,
            c.optimizer.schedule) == ("adam", 1e-4, 0.5, 0.9, "constant")
    assert c.model.generator.weight_init == c.model.critic.weight_init == "tflib"
  clip = configs.load("toy_8gaussians_clip_reference")
  # tf.train.RMSPropOptimizer(5e-5): decay 0.9, eps 1e-10 in the sqrt, ms from ones.
  assert (clip.objective, clip.clip, clip.optimizer.name, clip.optimizer.lr,
          clip.optimizer.decay, clip.optimizer.eps, clip.optimizer.schedule) == (
              "wgan", 0.01, "rmsprop_tf", 5e-5, 0.9, 1e-10, "constant")

def test_overrides_are_type_checked():
  c = configs.load("toy_8gaussians")
  configs.override(c, "optimizer.lr", "3e-4")
  configs.override(c, "n_critic", "2")
  configs.override(c, "optimizer.name", "rmsprop")
  assert (c.optimizer.lr, c.n_critic, c.optimizer.name) == (3e-4, 2, "rmsprop")
  configs.override(c, "optimizer.lr", "1")  # An int is a fine float.
  assert isinstance(c.optimizer.lr, float) and c.optimizer.lr == 1.0
  with pytest.raises(configs.ConfigError, match="'n_critic': '2.5' is not a int"):
    configs.override(c, "n_critic", "2.5")
  with pytest.raises(configs.ConfigError, match="'optimizer.lr': 'fast' is not a float"):
    configs.override(c, "optimizer.lr", "fast")
  with pytest.raises(configs.ConfigError, match="unknown config key 'optimizer.lrr'; keys "
                     "under 'optimizer': b1, b2, decay, eps, lr, name, schedule"):
    configs.override(c, "optimizer.lrr", "1")
  with pytest.raises(configs.ConfigError, match="unknown config key 'nope'"):
    configs.override(c, "nope", "1")
  with pytest.raises(configs.ConfigError, match="is a section"):
    configs.override(c, "optimizer", "adam")


@pytest.mark.parametrize("key,value,message", [
    ("n_critic", "0", "n_critic=0 must be at least 1"),
    ("clip", "-0.01", "clip=-0.01 must be positive"),
    ("objective", "hinge", "objective='hinge' is unknown"),
    ("data.name", "mnits", "data.name='mnits' is unknown"),
    ("data.name", "mnist", "data.name='mnist' is an image data set and needs data.image_size"),
    ("optimizer.schedule", "cosine", "optimizer.schedule='cosine' is unknown"),
    # Every key has a range or a choice list, checked before anything starts.
    ("optimizer.b1", "2", r"optimizer.b1=2.0 must be in \[0, 1\)"),
    ("optimizer.b2", "-1", r"optimizer.b2=-1.0 must be in \[0, 1\)"),
    ("optimizer.decay", "2", r"optimizer.decay=2.0 must be in \[0, 1\)"),
    ("optimizer.lr", "inf", "optimizer.lr=inf must be positive"),
    ("gp_weight", "inf", "gp_weight=inf must be at least 0"),
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
