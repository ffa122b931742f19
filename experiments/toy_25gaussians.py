"""WGAN-GP on the 25gaussians toy set (the WGAN-GP paper's toy experiment)."""
import ml_collections

from experiments import _toy
from wgan_jax.configs import schema


def get_config() -> ml_collections.ConfigDict:
  c = _toy.toy_config("25gaussians")
  schema.set_optimizers(c, lr=1e-3)
  c.num_generator_steps = 2000
  c.eval_every = 500
  return c
