"""The standard GAN on 25gaussians with the improved techniques of Salimans et
al. 2016 and Arjovsky & Bottou 2017's instance noise: the baseline the WGAN
papers beat, at its strongest. Minibatch discrimination lets the
discriminator see a batch that covers too few modes, one-sided label smoothing
and instance noise keep it from saturating, historical averaging damps the
oscillation of both networks. The same MLPs as the WGAN-GP toy.
"""
import ml_collections

from experiments import _toy


def get_config() -> ml_collections.ConfigDict:
  c = _toy.toy_config("25gaussians")
  c.objective = "gan"
  c.gan_generator_loss = "non-saturating"
  c.n_critic = 1
  c.optimizer.lr = 1e-3
  c.num_generator_steps = 2000
  c.eval_every = 500
  c.techniques.minibatch_kernels = 16
  c.techniques.minibatch_kernel_dim = 5
  c.techniques.label_smoothing = 0.1
  c.techniques.instance_noise = 0.1
  c.techniques.historical_averaging = 1e-4
  return c
