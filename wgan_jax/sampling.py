"""Generating from a checkpointed generator (used by `wgan_jax.sample`)."""
from __future__ import annotations

import jax
import ml_collections
import numpy as np

from wgan_jax import checkpointing, models, plots
from wgan_jax.data import data_shape
from wgan_jax.state import NetState


def generate(config: ml_collections.ConfigDict, workdir: str, step: int, num: int,
             seed: int) -> np.ndarray:
  """`num` samples of the generator saved at `step`, noise seeded by `seed`,
  batch norm in inference mode."""
  shape = data_shape(config.data)
  generator = models.build_generator(config.model.generator, shape)
  z = jax.ShapeDtypeStruct((2, config.model.noise_dim), np.float32)
  like = jax.eval_shape(lambda z: generator.init(jax.random.PRNGKey(0), z, train=False), z)
  restored = checkpointing.restore_generator(
      workdir, step, NetState(like["params"], like.get("batch_stats", {}), None))
  noise = jax.random.normal(jax.random.PRNGKey(seed), (num, config.model.noise_dim))
  variables = {"params": restored.params}
  if restored.batch_stats:
    variables["batch_stats"] = restored.batch_stats
  return np.asarray(jax.jit(lambda v, z: generator.apply(v, z, train=False))(variables, noise))


def save_png(path: str, config: ml_collections.ConfigDict, samples: np.ndarray) -> None:
  """An image grid, or for a toy set a scatter of the points."""
  if samples.ndim == 2:
    plots.points_figure(path, samples, title=f"{config.experiment}: {len(samples)} samples")
  else:
    plots.save_png(path, plots.image_grid(samples))
