"""The WGAN-GP paper's CIFAR-10 ResNet as gan_cifar_resnet.py runs it
(unconditional): 32x32, critic batch 64 and generator batch 128 (GEN_BS_MULTIPLE
2), noise 128, 128 channels, batch norm in the generator only, tflib's
initialisation, real images dequantised (2 (x / 256 - 0.5) + U(0, 1/128)),
lambda 10, n_critic 5, Adam(2e-4, 0, 0.9) decayed linearly to 0 over 100,000
iterations."""
import ml_collections

from experiments import _images
from wgan_jax.configs import schema


def get_config() -> ml_collections.ConfigDict:
  c = _images.image_config("cifar10", 32)
  c.data.dequantize = True
  c.generator_batch_multiple = 2
  c.model.noise_dim = 128
  c.model.generator = ml_collections.ConfigDict(
      dict(name="resnet", dim=128, multipliers=(1, 1, 1, 1)))
  c.model.critic = ml_collections.ConfigDict(
      dict(name="resnet", dim=128, multipliers=(1, 1, 1, 1), norm="none"))
  c = _images.wgan_gp_paper(c, lr=2e-4)
  schema.set_optimizers(c, schedule="linear")
  return c
