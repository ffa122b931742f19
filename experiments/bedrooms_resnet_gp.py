"""The network gan_64x64.py trains by default (GoodGenerator / GoodDiscriminator),
on 64x64 LSUN bedrooms as in the WGAN-GP paper's architecture comparison: the
64x64 ResNet, dim 64, noise 128, batch norm in the generator and layer norm in
every critic block, tflib's initialisation; lambda 10, n_critic 5, batch 64,
Adam(1e-4, 0, 0.9) at a constant rate, 200,000 generator iterations.
(gan_64x64.py itself reads 64x64 ImageNet; point data.name/data.dir at any
64x64 set.)"""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.image_config("lsun_bedroom", 64)
  c.model.noise_dim = 128
  c.model.generator = ml_collections.ConfigDict(
      dict(name="resnet", dim=64, multipliers=(8, 8, 4, 2, 1)))
  c.model.critic = ml_collections.ConfigDict(
      dict(name="resnet", dim=64, multipliers=(1, 2, 4, 8, 8), norm="layer"))
  c = _images.wgan_gp_paper(c, lr=1e-4, b1=0.0)
  c.num_generator_steps = 200_000
  return c
