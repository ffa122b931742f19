"""WGAN-GP on a small image folder (about a thousand images) with DiffAugment
(Zhao et al. 2020): the WGAN paper's DCGAN at 64x64 (layer norm in the critic,
for the per-example penalty), lambda 10, n_critic 5, Adam(1e-4, 0, 0.9), and
the paper's policy for small unconditional sets, color + translation +
cutout, on every image the critic sees, real and generated, in both updates.
With a thousand images a critic memorises the training set within a few
thousand iterations and its gradients stop telling the generator anything;
the augmentations cannot leak into the samples because the generator is
judged only through them. The generator's moving average (decay 0.999) is
what grids, FID and `wgan_jax.sample` use.

Point it at the folder: --experiment.data.dir=/path/to/images (any tree of
JPEG/PNG/WebP files)."""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.wgan_gp_paper(_images.image_config("image_folder", 64))
  c.augment = "color,translation,cutout"
  c.ema.decay = 0.999
  c.num_generator_steps = 20_000
  c.data.shuffle_buffer = 2_000
  c.eval.num_samples = 5_000  # about five times the data set
  c.eval.reference_samples = 1_000
  return c
