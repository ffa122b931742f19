"""WGAN with weight clipping on 8gaussians exactly as gan_toy.py runs it
(MODE = 'wgan'): TensorFlow 1's RMSProp (decay 0.9, eps 1e-10 inside the square
root, mean square starting at ones) at a constant 5e-5, c = 0.01, n_critic 5,
100,000 generator iterations. Beside toy_8gaussians_reference this is the
WGAN-GP paper's comparison on equal terms. One difference: the critic is also
clipped at initialisation (as the WGAN code clips before every update), while
gan_toy.py clips only after each update, so its first update sees unclipped
weights."""
import ml_collections

from experiments import _toy


def get_config() -> ml_collections.ConfigDict:
  c = _toy.toy_config("8gaussians")
  c = _toy.clipped(c)
  return _toy.reference(c)
