"""Shared set-up of the image experiments: data keys and the WGAN paper's DCGAN."""
import ml_collections

from wgan_jax import schema


def image_config(data: str, image_size: int, batch_size: int = 64) -> ml_collections.ConfigDict:
  """Image data, DCGAN generator and critic (ngf = ndf = 64, nz = 100)."""
  c = schema.base_config()
  c.data = ml_collections.ConfigDict(dict(
      name=data,
      image_size=image_size,
      dir="",              # data location; "" = the data set's default (see README)
      split="train",
      shuffle_buffer=10_000,
      dequantize=False,
      labels=False,            # class labels for conditional training (data/__init__.py)
  ))
  c.batch_size = batch_size
  c.model.noise_dim = 100
  c.model.generator = ml_collections.ConfigDict(
      dict(name="dcgan", ngf=64, n_extra_layers=0, norm="batch"))
  c.model.critic = ml_collections.ConfigDict(
      dict(name="dcgan", ndf=64, n_extra_layers=0, norm="batch"))
  c.log_every = 100
  c.eval_every = 500       # the WGAN reference writes samples every 500 iterations
  c.eval_samples = 64      # images in the sample grid
  c.checkpoint_every = 1000
  # FID of 50,000 samples at each evaluation, the best checkpoint kept by it;
  # off, with one message, until the Inception weights are given (README).
  c.eval.metrics = "fid"
  return c


def wgan_paper(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The WGAN paper's defaults: RMSProp 5e-5, c = 0.01, n_critic 5 with 100
  critic updates for the first 25 and every 500th generator iteration."""
  c.objective = "wgan"
  c.clip = 0.01
  c.n_critic = 5
  c.critic_schedule = "wgan_reference"
  c.optimizer.name = "rmsprop"
  c.optimizer.lr = 5e-5
  c.optimizer.decay = 0.99
  c.optimizer.eps = 1e-8
  c.num_generator_steps = 100_000
  return c


def wgan_gp_paper(c: ml_collections.ConfigDict, lr: float = 1e-4,
                  b1: float = 0.0) -> ml_collections.ConfigDict:
  """WGAN-GP's image defaults: lambda 10, n_critic 5, Adam(lr, b1, 0.9), no
  batch norm in the critic (layer norm instead)."""
  c.objective = "wgan-gp"
  c.gp_weight = 10.0
  c.n_critic = 5
  c.optimizer.name = "adam"
  c.optimizer.lr = lr
  c.optimizer.b1 = b1
  c.optimizer.b2 = 0.9
  if c.model.critic.name == "dcgan":
    c.model.critic.norm = "layer"
  c.num_generator_steps = 100_000
  return c
