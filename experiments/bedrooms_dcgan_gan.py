"""The standard-GAN DCGAN baseline on 64x64 bedrooms: Adam(2e-4, 0.5, 0.999),
one discriminator update per generator update, non-saturating loss."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.image_config("lsun_bedroom", 64)
  c.objective = "gan"
  c.gan_generator_loss = "non-saturating"
  c.n_critic = 1
  c.optimizer.name = "adam"
  c.optimizer.lr = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.999
  c.num_generator_steps = 100_000
  return c
