"""Samples from a generator: in training, for evaluation grids, and from a
checkpoint (`wgan_jax.sample`).

Batch norm (config `sampling_batch_norm`): "batch" normalises each generated
batch of `batch_size` by its own statistics, as both reference codes sample
(the WGAN code never puts netG in eval mode; tflib's batch norm always uses
the batch); "running" uses the running averages. In "batch" mode the last,
partial batch is filled up with the first noise rows, so every batch's
statistics come from `batch_size` genuine samples; the fillers are dropped.
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from wgan_jax import (builders, checkpointing, configs, data, models, plots, sweeps, techniques,
                      updates)
from wgan_jax.configs.rules import ConfigError
from wgan_jax.state import NetState


@functools.partial(jax.jit, static_argnames=("module", "batch_statistics"))
def _forward(module: nn.Module, params, batch_stats, z: jax.Array,
             batch_statistics: bool) -> jax.Array:
  return updates.apply_net(module, params, batch_stats, z, train=batch_statistics)[0]


def generate(module: nn.Module, generator: NetState, noise: jax.Array | np.ndarray,
             batch_norm: str, batch_size: int) -> np.ndarray:
  """The generator's samples for `noise` [N, noise_dim], `batch_size` at a time."""
  noise = np.asarray(noise, np.float32)
  n = len(noise)
  batch_size = min(batch_size, n)
  fill = -n % batch_size
  padded = np.concatenate([noise, np.resize(noise, (fill, noise.shape[1]))]) if fill else noise
  batch_statistics = batch_norm == "batch"
  out = [np.asarray(_forward(module, generator.params, generator.batch_stats,
                             padded[i:i + batch_size], batch_statistics))
         for i in range(0, len(padded), batch_size)]
  return np.concatenate(out)[:n]


def saved_config(workdir: str, step: int | None, experiment: str | None = None,
                 overrides: Sequence[tuple[str, str]] = ()) -> tuple[int, ml_collections.ConfigDict]:
  """(step, config) of the checkpoint at `step` (default: the newest): the config
  saved with it, or experiment `experiment` when one is named, with `overrides`."""
  found, metadata = checkpointing.read_metadata(workdir, step)
  if experiment is None:
    return found, configs.from_dict(metadata["config"], overrides)
  return found, configs.from_command_line(experiment, overrides)


def restore(config: ml_collections.ConfigDict, workdir: str, step: int,
            model: int | None = None, raw: bool = False) -> tuple[nn.Module, NetState]:
  """The generator module of `config` and its params and batch statistics at
  `step` (of model `model` of a sweep): the moving average where the run keeps
  one (`ema.decay` > 0) unless `raw`; the critic and the optimizer states are
  never read."""
  sweep = sweeps.from_config(config)
  if (sweep is None) != (model is None):
    raise ConfigError(f"{workdir} holds a sweep of {sweep.size} models: name one with "
                      f"--model=0..{sweep.size - 1}" if sweep else
                      f"{workdir} holds one model, not a sweep: drop --model")
  if sweep is not None and not 0 <= model < sweep.size:
    raise ConfigError(f"--model={model}: the sweep in {workdir} has models 0..{sweep.size - 1}")
  module = models.build_generator(config.model.generator, data.data_shape(config.data),
                                  convolutions=builders.convolutions(config),
                                  techniques=techniques.from_config(config))
  z = jax.ShapeDtypeStruct((2, config.model.noise_dim + models.num_classes(config)), np.float32)
  like = jax.eval_shape(lambda z: module.init(jax.random.PRNGKey(0), z, train=False), z)
  if sweep is not None:  # The checkpoint holds every model: [K, ...] arrays.
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct((sweep.size, *x.shape), x.dtype), like)
  field = "generator_ema" if config.ema.decay and not raw else "generator"
  generator = checkpointing.restore_generator(
      workdir, step, NetState(like["params"], like.get("batch_stats", {}), None), field)
  if sweep is not None:
    generator = generator.replace(params=sweeps.model_slice(generator.params, model),
                                  batch_stats=sweeps.model_slice(generator.batch_stats, model))
  return module, generator


def noise(config: ml_collections.ConfigDict, num: int, seed: int) -> np.ndarray:
  """The generator's input for `num` samples drawn with `seed`: one stream,
  whatever the batching. A conditional generator's sample i is of class
  i mod K (balanced classes; in a grid of K columns, a class a column)."""
  z = jax.random.normal(jax.random.PRNGKey(seed), (num, config.model.noise_dim))
  classes = models.num_classes(config)
  if not classes:
    return np.asarray(z)
  return np.asarray(updates.conditioned_input(z, balanced_labels(num, classes), classes))


def balanced_labels(num: int, classes: int) -> np.ndarray:
  """The classes of `num` conditional samples: sample i of class i mod `classes`."""
  return np.arange(num) % classes


def grid_columns(config: ml_collections.ConfigDict) -> int | None:
  """A sample grid's columns: one per class for a conditional generator (its
  samples from `noise`), else square."""
  return models.num_classes(config) or None


def from_checkpoint(config: ml_collections.ConfigDict, workdir: str, step: int, num: int,
                    seed: int, model: int | None = None, raw: bool = False) -> np.ndarray:
  """`num` samples of the generator saved at `step` (model `model` of a
  sweep; its moving average if kept, unless `raw`), noise seeded by `seed`."""
  module, generator = restore(config, workdir, step, model, raw)
  return generate(module, generator, noise(config, num, seed), config.sampling_batch_norm,
                  config.batch_size)


def save_figure(path: str, samples: np.ndarray, title: str, columns: int | None = None) -> None:
  """An image grid (`columns` wide; None: square), or for a toy set a scatter
  of the points, as PNG."""
  if samples.ndim == 2:
    plots.points_figure(path, samples, title=title)
  else:
    plots.save_png(path, plots.image_grid(samples, columns))
