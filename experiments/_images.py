"""Shared set-up of the image experiments: data keys and the WGAN paper's DCGAN."""
import ml_collections

from wgan_jax.configs import schema


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
      limit=0,                 # the first N images only (small data); 0: all
      mirror=False,            # real images flipped left-right at random (data/__init__.py)
  ))
  c.batch_size = batch_size
  c.model.noise_dim = 100
  c.model.generator = ml_collections.ConfigDict(
      dict(name="dcgan", ngf=64, n_extra_layers=0, norm="batch", draw_size=0,
           output_activation="tanh"))
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


def digits_dcgan(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The small DCGAN of every 16x16 digits experiment, so that their objectives are
  compared on one architecture. The digits are 8x8 scans enlarged to 16x16: the
  generator draws at 8x8 (a 4x4 map of 64 channels, as at 16x16 with ngf 32) and
  enlarges the same way, and its clip, unlike tanh, reaches the blank background.
  Either alone leaves the samples easy to tell from real digits; both, not (BUILD.md,
  "The digits recipe against the test")."""
  c.model.generator.update(ngf=64, draw_size=8, output_activation="hardtanh")
  c.model.critic.ndf = 32
  return c


def wgan_paper(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The WGAN paper's defaults: RMSProp 5e-5, c = 0.01, n_critic 5 with 100
  critic updates for the first 25 and every 500th generator iteration."""
  c.loss = "wasserstein"
  c.penalty = "none"
  c.clip = 0.01
  c.n_critic = 5
  c.n_critic_schedule = "wgan_reference"
  schema.set_optimizers(c, name="rmsprop", lr=5e-5, decay=0.99, eps=1e-8)
  c.num_generator_steps = 100_000
  return c


def wgan_gp_paper(c: ml_collections.ConfigDict, lr: float = 1e-4,
                  b1: float = 0.0) -> ml_collections.ConfigDict:
  """WGAN-GP's image defaults: lambda 10, n_critic 5, Adam(lr, b1, 0.9), no
  batch norm in the critic (layer norm instead)."""
  c.loss = "wasserstein"
  c.penalty = "gp"
  c.penalty_weight = 10.0
  c.n_critic = 5
  schema.set_optimizers(c, name="adam", lr=lr, b1=b1, b2=0.9)
  if c.model.critic.name == "dcgan":
    c.model.critic.norm = "layer"
  c.num_generator_steps = 100_000
  return c
