"""The WGAN paper's "no batch norm" run: bedrooms_dcgan with a DCGAN
generator that has no batch normalisation (the critic keeps it)."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.wgan_paper(_images.image_config("lsun_bedroom", 64))
  c.model.generator.norm = "none"
  return c
