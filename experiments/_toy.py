"""The WGAN-GP paper's toy setup (gan_toy.py), shared by the toy experiments.

MLPs with 3 hidden ReLU layers of 512 units, noise dimension 2, batch 256,
5 critic updates per generator update, lambda = 0.1.
"""
import ml_collections

from wgan_jax import schema


def toy_config(data: str) -> ml_collections.ConfigDict:
  c = schema.base_config()
  c.data.name = data
  c.objective = "wgan-gp"
  c.gp_weight = 0.1
  c.n_critic = 5
  c.batch_size = 256
  c.model.noise_dim = 2
  c.model.generator.features = 512
  c.model.generator.depth = 3
  c.model.critic.features = 512
  c.model.critic.depth = 3
  c.optimizer.name = "adam"
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.9
  c.optimizer.schedule = "linear"
  c.log_every = 100
  return c


def reference(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """gan_toy.py's own settings, at its full length: 100,000 generator iterations
  at a constant learning rate, tflib's initialisation; WGAN-GP with Adam(1e-4,
  0.5, 0.9), WGAN with TensorFlow 1's RMSProp(5e-5) and c = 0.01. The
  defaults of the shorter experiments fit a laptop CPU instead (README)."""
  c.num_generator_steps = 100_000
  c.optimizer.schedule = "constant"
  c.model.generator.weight_init = "tflib"
  c.model.critic.weight_init = "tflib"
  if c.objective == "wgan":
    c.clip = 0.01
    c.optimizer.name = "rmsprop_tf"
    c.optimizer.lr = 5e-5
    c.optimizer.decay = 0.9   # tf.train.RMSPropOptimizer's defaults
    c.optimizer.eps = 1e-10
  else:
    c.optimizer.name = "adam"
    c.optimizer.lr = 1e-4
    c.optimizer.b1 = 0.5
    c.optimizer.b2 = 0.9
  c.eval_every = 5000
  c.checkpoint_every = 5000
  return c
