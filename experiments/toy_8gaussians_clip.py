"""WGAN with weight clipping on 8gaussians: the baseline WGAN-GP improves on.

As in the WGAN-GP toy code: the same MLPs, RMSProp, critic weights clipped to
[-0.01, 0.01] after every critic update.
"""
import ml_collections

from experiments import _toy


def get_config() -> ml_collections.ConfigDict:
  c = _toy.toy_config("8gaussians")
  c.objective = "wgan"
  c.clip = 0.01
  c.optimizer.name = "rmsprop"
  c.optimizer.lr = 5e-5
  c.num_generator_steps = 2000
  c.eval_every = 500
  return c
