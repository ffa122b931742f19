"""The WGAN-GP paper's CIFAR-10 ResNet (gan_cifar_resnet.py): 32x32, batch 64,
noise 128, 128 channels, batch norm in the generator only, lambda 10,
n_critic 5, Adam(2e-4, 0, 0.9) decayed linearly to 0 over 100,000 iterations."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.image_config("cifar10", 32)
  c.model.noise_dim = 128
  c.model.generator = ml_collections.ConfigDict(
      dict(name="resnet", dim=128, multipliers=(1, 1, 1, 1)))
  c.model.critic = ml_collections.ConfigDict(
      dict(name="resnet", dim=128, multipliers=(1, 1, 1, 1)))
  c = _images.wgan_gp_paper(c, lr=2e-4)
  c.optimizer.schedule = "linear"
  return c
