"""WGAN-GP on scikit-learn's handwritten digits (ships offline) at 16x16 with
a small DCGAN: trains to recognisable digits on a laptop CPU in minutes."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.image_config("digits", 16)
  c = _images.digits_dcgan(c)
  c = _images.wgan_gp_paper(c, lr=2e-4, b1=0.5)
  c.num_generator_steps = 3000
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  # The digit classifier's scores (BUILD.md: calibration): FID of 16x16 digits
  # says little and costs an hour of CPU per evaluation.
  c.eval.metrics = "domain"
  c.eval.num_samples = 2000
  return c
