"""The WGAN paper's LSUN bedrooms run: DCGAN generator and critic at 64x64,
batch 64, nz 100, RMSProp 5e-5, weights clipped to [-0.01, 0.01], n_critic 5
with 100 critic updates for the first 25 and every 500th generator iteration."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  return _images.wgan_paper(_images.image_config("lsun_bedroom", 64))
