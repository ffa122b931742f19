"""WGAN-GP on swissroll exactly as gan_toy.py runs it: 100,000 generator iterations,
Adam(1e-4, 0.5, 0.9) at a constant rate, lambda 0.1, n_critic 5, batch 256,
MLPs of 3x512 with tflib's initialisation (toy_swissroll is the CPU-sized version)."""
import ml_collections

from experiments import _toy


def get_config() -> ml_collections.ConfigDict:
  return _toy.reference(_toy.toy_config("swissroll"))
