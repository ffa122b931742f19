"""WGAN-GP on 64x64 LSUN bedrooms with the DCGAN architecture: layer norm in
the critic (batch norm would break the per-example gradient penalty),
lambda 10, n_critic 5, Adam(1e-4, 0, 0.9) (the WGAN-GP reference's gan_64x64.py)."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  return _images.wgan_gp_paper(_images.image_config("lsun_bedroom", 64))
