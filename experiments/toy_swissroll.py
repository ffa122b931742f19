"""WGAN-GP on the swissroll toy set (the WGAN-GP paper's toy experiment)."""
import ml_collections

from experiments import _toy


def get_config() -> ml_collections.ConfigDict:
  c = _toy.toy_config("swissroll")
  c.optimizer.lr = 1e-3
  c.num_generator_steps = 2000
  c.eval_every = 500
  return c
