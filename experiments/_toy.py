"""The WGAN-GP paper's toy setup (gan_toy.py), shared by the toy experiments.

MLPs with 3 hidden ReLU layers of 512 units, noise dimension 2, batch 256,
5 critic updates per generator update, lambda = 0.1.
"""
import ml_collections

from wgan_jax.configs import schema


def clipped(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The WGAN of the toy code: weight clipping to [-0.01, 0.01], no penalty."""
  c.penalty = "none"
  c.clip = 0.01
  return c


def toy_config(data: str) -> ml_collections.ConfigDict:
  c = schema.base_config()
  c.data.name = data
  c.loss = "wasserstein"
  c.penalty = "gp"
  c.penalty_weight = 0.1
  c.n_critic = 5
  c.batch_size = 256
  c.model.noise_dim = 2
  c.model.generator.features = 512
  c.model.generator.depth = 3
  c.model.critic.features = 512
  c.model.critic.depth = 3
  schema.set_optimizers(c, name="adam", b1=0.5, b2=0.9, schedule="linear")
  c.log_every = 100
  return c


def reference(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """gan_toy.py's own settings, at its full length: 100,000 generator iterations
  at a constant learning rate, tflib's initialisation; WGAN-GP with Adam(1e-4,
  0.5, 0.9), WGAN with TensorFlow 1's RMSProp(5e-5) and c = 0.01. The
  defaults of the shorter experiments fit a laptop CPU instead (README)."""
  c.num_generator_steps = 100_000
  schema.set_optimizers(c, schedule="constant")
  c.model.generator.weight_init = "tflib"
  c.model.critic.weight_init = "tflib"
  if c.clip:
    # tf.train.RMSPropOptimizer's defaults: decay 0.9, eps 1e-10.
    schema.set_optimizers(c, name="rmsprop_tf", lr=5e-5, decay=0.9, eps=1e-10)
  else:
    schema.set_optimizers(c, name="adam", lr=1e-4, b1=0.5, b2=0.9)
  c.eval_every = 5000
  c.checkpoint_every = 5000
  return c
