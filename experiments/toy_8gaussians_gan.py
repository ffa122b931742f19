"""The standard GAN (non-saturating -log D generator loss) on 8gaussians.

Same MLPs as the WGAN-GP toy; one discriminator update per generator update,
no gradient penalty.
"""
import ml_collections

from experiments import _toy
from wgan_jax.configs import schema


def get_config() -> ml_collections.ConfigDict:
  c = _toy.toy_config("8gaussians")
  c.loss = "non-saturating"
  c.penalty = "none"
  c.n_critic = 1
  schema.set_optimizers(c, lr=1e-3)
  c.num_generator_steps = 2000
  c.eval_every = 500
  return c
