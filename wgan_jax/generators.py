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

from wgan_jax import (builders, checkpointing, configs, data, latents, models, plots, sweeps,
                      techniques, updates)
from wgan_jax.configs.rules import ConfigError
from wgan_jax.state import NetState


@functools.partial(jax.jit, static_argnames=("module", "batch_statistics"))
def forward(module: nn.Module, params, batch_stats, z: jax.Array,
            batch_statistics: bool) -> jax.Array:
  """The generator's images for noise `z`: the one program that `sample`, grids,
  scores and the exported sampling program run."""
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
  out = [np.asarray(forward(module, generator.params, generator.batch_stats,
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


def _module_and_shapes(config: ml_collections.ConfigDict) -> tuple[nn.Module, dict]:
  """`config`'s generator module and its variables' shapes (nothing allocated)."""
  module = models.build_generator(config.model.generator, data.data_shape(config.data),
                                  convolutions=builders.convolutions(config),
                                  techniques=techniques.from_config(config))
  z = jax.ShapeDtypeStruct((2, config.model.noise_dim + models.num_classes(config)), np.float32)
  return module, jax.eval_shape(lambda z: module.init(jax.random.PRNGKey(0), z, train=False), z)


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
  module, like = _module_and_shapes(config)
  if sweep is not None:  # The checkpoint holds every model: [K, ...] arrays.
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct((sweep.size, *x.shape), x.dtype), like)
  field = "generator_ema" if config.ema.decay and not raw else "generator"
  generator = checkpointing.restore_generator(
      workdir, step, NetState(like["params"], like.get("batch_stats", {}), None), field)
  if sweep is not None:
    generator = generator.replace(params=sweeps.model_slice(generator.params, model),
                                  batch_stats=sweeps.model_slice(generator.batch_stats, model))
  return module, generator


def normalises_each_batch(config: ml_collections.ConfigDict) -> bool:
  """Whether the generator's samples are normalised by their own batch's
  statistics (batch norm under `sampling_batch_norm="batch"`), which undoes
  most of a truncation of the noise."""
  if config.sampling_batch_norm != "batch":
    return False
  return bool(_module_and_shapes(config)[1].get("batch_stats"))


def noise(config: ml_collections.ConfigDict, num: int, seed: int,
          truncation: float | None = None, classes: Sequence[int] | None = None) -> np.ndarray:
  """The generator's input for `num` samples drawn with `seed`: one stream,
  whatever the batching (`truncation`: `latents.draw`'s). A conditional
  generator's sample i is of class `classes[i mod len(classes)]` (default: all
  its classes, balanced; in a grid of a column a class, a class a column)."""
  z = latents.draw(jax.random.PRNGKey(seed), num, config.model.noise_dim, truncation)
  return _conditioned(config, z, class_labels(config, num, classes))


def interpolation_noise(config: ml_collections.ConfigDict, rows: int, steps: int, seed: int,
                        kind: str = "slerp", truncation: float | None = None,
                        classes: Sequence[int] | None = None) -> np.ndarray:
  """[rows * steps, input]: `rows` paths of `steps` points (`latents.path`)
  between two noise points each (those `noise` draws for 2 x `rows` samples
  with `seed`: row r from point r to point rows + r); a conditional path keeps
  one class, row r's as sample r's in `noise`. Row-major: a row's points are
  consecutive, so a grid of `steps` columns shows a path a row."""
  z = latents.draw(jax.random.PRNGKey(seed), 2 * rows, config.model.noise_dim, truncation)
  walked = latents.path(z[:rows], z[rows:], steps, kind).reshape(rows * steps, -1)
  labels = class_labels(config, rows, classes)
  return _conditioned(config, walked, None if labels is None else np.repeat(labels, steps))


def class_labels(config: ml_collections.ConfigDict, num: int,
                 classes: Sequence[int] | None = None) -> np.ndarray | None:
  """The classes of `num` samples of `config`'s generator (None: unconditional):
  `classes` in turn (default: all, `balanced_labels`); a ConfigError of one
  line for a class the generator does not draw, or for classes asked of an
  unconditional generator."""
  count = models.num_classes(config)
  if classes is None:
    return balanced_labels(num, count) if count else None
  if not count:
    raise ConfigError(f"--class={','.join(map(str, classes))}: this run's generator is "
                      "unconditional (it draws no class); drop --class")
  wrong = [k for k in classes if not 0 <= k < count]
  if wrong or not classes:
    raise ConfigError(f"--class={wrong[0] if wrong else ''}: this run's generator draws classes "
                      f"0..{count - 1}; pass one or more of them, comma-separated")
  return np.asarray(classes)[np.arange(num) % len(classes)]


def _conditioned(config: ml_collections.ConfigDict, z: np.ndarray,
                 labels: np.ndarray | None) -> np.ndarray:
  if labels is None:
    return np.asarray(z)
  return np.asarray(updates.conditioned_input(z, labels, models.num_classes(config)))


def balanced_labels(num: int, classes: int) -> np.ndarray:
  """The classes of `num` conditional samples: sample i of class i mod `classes`."""
  return np.arange(num) % classes


def grid_columns(config: ml_collections.ConfigDict,
                 classes: Sequence[int] | None = None) -> int | None:
  """A sample grid's columns: one per class drawn by a conditional generator
  (its samples from `noise`), else square (so also for one class asked)."""
  count = len(classes) if classes is not None else models.num_classes(config)
  return count if count > 1 else None


def from_checkpoint(config: ml_collections.ConfigDict, workdir: str, step: int, num: int,
                    seed: int, model: int | None = None, raw: bool = False,
                    inputs: np.ndarray | None = None) -> np.ndarray:
  """`num` samples of the generator saved at `step` (model `model` of a
  sweep; its moving average if kept, unless `raw`): of `inputs` if given
  (from `noise` or `interpolation_noise`), else of `noise` seeded by `seed`."""
  inputs = noise(config, num, seed) if inputs is None else inputs
  module, generator = restore(config, workdir, step, model, raw)
  return generate(module, generator, inputs, config.sampling_batch_norm, config.batch_size)


def save_figure(path: str, samples: np.ndarray, title: str, columns: int | None = None,
                scale: int | None = None) -> None:
  """An image grid (`columns` wide, None: square; enlarged `scale` times,
  None: to a readable size), or for a toy set a scatter of the points, as PNG."""
  if samples.ndim == 2:
    plots.points_figure(path, samples, title=title)
  else:
    plots.save_png(path, plots.readable_grid(samples, columns, scale))
