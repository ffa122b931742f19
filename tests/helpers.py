"""Tiny configs shared by the tests."""
import ml_collections

from wgan_jax import configs
from wgan_jax.configs import schema

# The three setups of the papers: WGAN-GP (the toy experiments' default), WGAN
# (weight clipping, RMSProp), the standard GAN (non-saturating loss).
SETUPS = {
    "wgan-gp": {},
    "wgan": {"loss": "wasserstein", "penalty": "none", "clip": 0.01, "optimizer.name": "rmsprop"},
    "gan": {"loss": "non-saturating", "penalty": "none"},
}


def set_key(c: ml_collections.ConfigDict, key: str, value) -> None:
  """Sets dotted `key` of `c` to the Python `value`; `optimizer.KEY` sets both
  networks' KEY, as on the command line."""
  section, _, leaf = key.partition(".")
  if section == "optimizer" and leaf in schema.optimizer_section():
    for network in schema.NETWORKS:
      set_key(c, f"optimizer.{network}.{leaf}", value)
    return
  node = c
  *path, leaf = key.split(".")
  for part in path:
    node = node[part]
  if leaf not in node:  # A typo would add a key that nothing reads.
    raise KeyError(f"{key} is not a key of the config")
  node[leaf] = value


def tiny_config(setup: str = "wgan-gp", **overrides) -> ml_collections.ConfigDict:
  """A seconds-long toy run of `setup` (SETUPS): small MLPs, small batch, few steps."""
  c = configs.load("toy_8gaussians")
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
  for key, value in {**SETUPS[setup], **overrides}.items():
    set_key(c, key, value)
  configs.validate(c)
  return c
