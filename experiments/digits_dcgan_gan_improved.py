"""The standard GAN on scikit-learn's digits (16x16, a small DCGAN) with
Salimans et al.'s techniques for images: virtual batch norm in the generator,
minibatch discrimination (B = 100, C = 5, the paper's) before the
discriminator's last layer, one-sided label smoothing (s = 0.1)."""
import ml_collections

from experiments import _images
from wgan_jax.configs import schema


def get_config() -> ml_collections.ConfigDict:
  c = _images.image_config("digits", 16)
  c = _images.digits_dcgan(c)
  c.model.generator.norm = "virtual"
  c.loss = "non-saturating"
  c.penalty = "none"
  c.n_critic = 1
  schema.set_optimizers(c, name="adam", lr=2e-4, b1=0.5, b2=0.999)
  c.techniques.minibatch_kernels = 100
  c.techniques.minibatch_kernel_dim = 5
  c.techniques.label_smoothing = 0.1
  c.num_generator_steps = 3000
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  # The digit classifier's scores, as digits_dcgan_gp (FID of 16x16 digits says little).
  c.eval.metrics = "domain"
  c.eval.num_samples = 2000
  return c
