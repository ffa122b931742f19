"""WGAN-GP on MNIST (gan_mnist.py's settings: lambda 10, n_critic 5,
Adam(1e-4, 0.5, 0.9)) with a DCGAN at 32x32 (MNIST's 28x28 resized)."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.image_config("mnist", 32)
  c = _images.wgan_gp_paper(c, lr=1e-4, b1=0.5)
  c.num_generator_steps = 20_000
  return c
