"""The standard GAN on 25gaussians with the improved techniques of Salimans et
al. 2016 and Arjovsky & Bottou 2017's instance noise: the baseline the WGAN
papers beat, at its strongest. Minibatch discrimination lets the
discriminator see a batch that covers too few modes, one-sided label smoothing
and instance noise keep it from saturating, historical averaging damps the
oscillation of both networks. `toy_8gaussians_gan` on the 5x5 grid otherwise.
"""
import ml_collections

from experiments import toy_8gaussians_gan


def get_config() -> ml_collections.ConfigDict:
  c = toy_8gaussians_gan.get_config()
  c.data.name = "25gaussians"
  c.techniques.minibatch_kernels = 16
  c.techniques.minibatch_kernel_dim = 5
  c.techniques.label_smoothing = 0.1
  c.techniques.instance_noise = 0.1
  c.techniques.historical_averaging = 1e-4
  return c
