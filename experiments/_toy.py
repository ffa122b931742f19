"""The WGAN-GP paper's toy setup (gan_toy.py), shared by the toy experiments.

MLPs with 3 hidden ReLU layers of 512 units, noise dimension 2, batch 256,
5 critic updates per generator update, lambda = 0.1.
"""
import ml_collections

from wgan_jax import configs


def toy_config(data: str) -> ml_collections.ConfigDict:
  c = configs.base_config()
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
