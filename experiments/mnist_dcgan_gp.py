"""WGAN-GP on MNIST with gan_mnist.py's objective and optimizer (lambda 10,
n_critic 5, Adam(1e-4, 0.5, 0.9)) on the WGAN paper's DCGAN at 32x32 (MNIST's
28x28 resized), with a layer-norm critic, batch 64, nz 100.
gan_mnist.py's own networks are not these: they work at 28x28 with batch 50,
noise 128, 5x5 kernels, no normalisation and a sigmoid output in [0, 1]. The
DCGAN here keeps one architecture family across the image experiments."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.image_config("mnist", 32)
  c = _images.wgan_gp_paper(c, lr=1e-4, b1=0.5)
  c.num_generator_steps = 20_000
  c.eval.metrics = "fid,domain"
  return c
