"""WGAN-GP against the WGAN paper on its own ground: the WGAN paper's DCGAN
(bedrooms_dcgan's generator with batch norm; its critic with layer norm in
place of batch norm, which would break the per-example gradient penalty) on
64x64 bedrooms, trained with gan_64x64.py's settings: lambda 10, n_critic 5,
Adam(1e-4, 0, 0.9), batch 64, nz 100.
This is not gan_64x64.py's own DCGAN (5x5 kernels, a linear first layer, noise
128); its default network is the ResNet of bedrooms_resnet_gp."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  return _images.wgan_gp_paper(_images.image_config("lsun_bedroom", 64))
