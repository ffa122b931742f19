"""WGAN with weight clipping on 8gaussians: the baseline WGAN-GP improves on.

As in the WGAN-GP toy code: the same MLPs, RMSProp, critic weights clipped to
[-0.01, 0.01] after every critic update.
"""
import ml_collections

from experiments import _toy
from wgan_jax.configs import schema


def get_config() -> ml_collections.ConfigDict:
  c = _toy.toy_config("8gaussians")
  c = _toy.clipped(c)
  schema.set_optimizers(c, name="rmsprop", lr=5e-5)
  c.num_generator_steps = 2000
  c.eval_every = 500
  return c
