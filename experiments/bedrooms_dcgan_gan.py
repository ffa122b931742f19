"""The standard-GAN DCGAN baseline on 64x64 bedrooms: Adam(2e-4, 0.5, 0.999),
one discriminator update per generator update, non-saturating loss."""
import ml_collections

from experiments import _images
from wgan_jax.configs import schema


def get_config() -> ml_collections.ConfigDict:
  c = _images.image_config("lsun_bedroom", 64)
  c.loss = "non-saturating"
  c.penalty = "none"
  c.n_critic = 1
  schema.set_optimizers(c, name="adam", lr=2e-4, b1=0.5, b2=0.999)
  c.num_generator_steps = 100_000
  return c
