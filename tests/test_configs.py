"""Experiments by name, type-checked overrides, validation (the CLI's errors: test_bad_input)."""
import pytest

from wgan_jax import configs
from wgan_jax.cli import split_experiment_args

TOY_EXPERIMENTS = ["toy_25gaussians", "toy_8gaussians", "toy_8gaussians_clip",
                   "toy_8gaussians_gan", "toy_swissroll"]
IMAGE_EXPERIMENTS = ["bedrooms_dcgan", "bedrooms_dcgan_gan", "bedrooms_dcgan_gp",
                     "bedrooms_dcgan_nobn", "bedrooms_mlp", "cifar10_resnet_gp",
                     "digits_dcgan_gp", "mnist_dcgan_gp"]


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
  assert configs.load("bedrooms_mlp").model.generator.name == "mlp"
  gp = configs.load("bedrooms_dcgan_gp")
  assert (gp.objective, gp.model.critic.norm, gp.gp_weight) == ("wgan-gp", "layer", 10.0)
  gan = configs.load("bedrooms_dcgan_gan")
  assert (gan.objective, gan.optimizer.lr, gan.optimizer.b1) == ("gan", 2e-4, 0.5)
  cifar = configs.load("cifar10_resnet_gp")
  assert (cifar.model.generator.name, cifar.data.image_size, cifar.optimizer.schedule) == (
      "resnet", 32, "linear")


@pytest.mark.parametrize("overrides,message", [
    ([("model.critic.norm", "batch")], "objective='wgan-gp' forbids batch norm in the critic"),
    ([("data.image_size", "40")], "data.image_size=40 does not suit DCGAN: use a multiple of 16"),
    ([("model.generator.norm", "layer")], "model.generator.norm='layer' is unknown"),
])
def test_image_settings_that_cannot_train_are_rejected(overrides, message):
  with pytest.raises(configs.ConfigError, match=message):
    configs.from_command_line("bedrooms_dcgan_gp", overrides)


def test_dcgan_on_toy_data_is_rejected():
  with pytest.raises(configs.ConfigError, match="needs model.generator.ngf"):
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
