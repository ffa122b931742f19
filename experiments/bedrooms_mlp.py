"""The WGAN paper's MLP-generator run: a ReLU MLP generator with 4 hidden
layers of 512 units against the DCGAN critic, weight clipping, 64x64 bedrooms."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.wgan_paper(_images.image_config("lsun_bedroom", 64))
  # The reference's MLP_G: linear output, no tanh.
  c.model.generator = ml_collections.ConfigDict(
      dict(name="mlp", features=512, depth=4, output_activation="linear"))
  return c
