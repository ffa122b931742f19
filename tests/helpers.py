"""Tiny configs shared by the tests."""
import ml_collections

from wgan_jax import configs


def tiny_config(objective: str = "wgan-gp", **overrides) -> ml_collections.ConfigDict:
  """A seconds-long toy run: small MLPs, small batch, few steps."""
  c = configs.load("toy_8gaussians")
  c.objective = objective
  c.batch_size = 32
  c.n_critic = 3
  c.num_generator_steps = 6
  c.model.generator.features = 32
  c.model.critic.features = 32
  c.model.generator.depth = 2
  c.model.critic.depth = 2
  c.log_every = 2
  c.eval_every = 4
  c.eval_samples = 200
  if objective == "wgan":
    c.optimizer.name = "rmsprop"
  for key, value in overrides.items():
    node = c
    *path, leaf = key.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  configs.validate(c)
  return c
