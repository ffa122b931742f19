"""Evaluation during and after training, chosen by the kind of data set
(`make_evaluator`): toy sets (exact W1, modes, figure) and image sets (a grid
of samples from a fixed noise batch). Every process evaluates (the numbers
are the same); process 0 alone writes the files."""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wgan_jax import data, generation, plots, steps
from wgan_jax.inflight import NonFiniteError
from wgan_jax.data.toy import ToyDataset, get_toy_dataset
from wgan_jax.metrics import toy as toy_metrics
from wgan_jax.state import TrainState

GRID_SIZE = 128


def _finite(samples: np.ndarray, state: TrainState) -> np.ndarray:
  """`samples`, or a NonFiniteError: a non-finite sample is never scored or drawn."""
  if not np.all(np.isfinite(samples)):
    raise NonFiniteError(f"non-finite generator samples at the evaluation of generator step "
                         f"{int(jax.device_get(state.step))}; lower optimizer.lr or check the data")
  return samples


class ToyEvaluator:
  """Exact W1 against a fixed real sample, its floor, mode statistics, figure.

  Reference samples, the noise batch and the plotting grid are fixed at
  construction, so evaluations at different steps compare like with like.
  """

  def __init__(self, spec: steps.GanSpec, dataset: ToyDataset, num_samples: int,
               key: jax.Array, batch_norm: str = "batch", batch_size: int = 256):
    k_real, k_floor, k_noise = jax.random.split(key, 3)
    self.spec, self.dataset = spec, dataset
    self.batch_norm, self.batch_size = batch_norm, batch_size
    self.real = np.asarray(dataset.sample(k_real, num_samples))
    # W1 between two independent real samples: what sampling noise alone gives.
    self.w1_floor = toy_metrics.exact_w1(self.real, np.asarray(dataset.sample(k_floor, num_samples)))
    self.noise = steps.sample_noise(spec, k_noise, num_samples)
    lim = float(np.abs(self.real).max()) * 1.15
    self.grid_x, self.grid_y = np.meshgrid(np.linspace(-lim, lim, GRID_SIZE),
                                           np.linspace(-lim, lim, GRID_SIZE))
    grid = jnp.asarray(np.stack([self.grid_x.ravel(), self.grid_y.ravel()], 1), jnp.float32)
    self._critic_on_grid = jax.jit(lambda c: steps.apply_net(
        spec.critic, c.params, c.batch_stats, grid, train=False)[0])

  def samples(self, state: TrainState) -> np.ndarray:
    return _finite(generation.generate(self.spec.generator, state.generator, self.noise,
                                       self.batch_norm, self.batch_size), state)

  def metrics(self, fake: np.ndarray) -> dict[str, float]:
    w1 = toy_metrics.exact_w1(fake, self.real)
    out = {"w1": w1, "w1_floor": self.w1_floor, "w1_over_floor": w1 / self.w1_floor}
    if self.dataset.centers is not None:
      out.update(toy_metrics.mode_stats(fake, self.dataset.centers, self.dataset.std))
    return out

  def __call__(self, state: TrainState, workdir: str, tag: str) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of the current generator and the figure, saved as `toy_{tag}.png`."""
    fake = self.samples(state)
    metrics = self.metrics(fake)
    values = np.asarray(self._critic_on_grid(state.critic)).reshape(GRID_SIZE, GRID_SIZE)
    title = f"{self.dataset.name}, step {int(state.step)}: W1 {metrics['w1']:.4f} " \
            f"(floor {self.w1_floor:.4f})"
    path = os.path.join(workdir, f"toy_{tag}.png") if jax.process_index() == 0 else None
    image = plots.toy_figure(path, self.real, fake,
                             self.grid_x, self.grid_y, values, title)
    return metrics, image


class ImageEvaluator:
  """A grid of samples from a fixed noise batch, so grids at different steps
  show the same latent points; saved as `samples_{tag}.png`."""

  def __init__(self, spec: steps.GanSpec, num_samples: int, key: jax.Array,
               batch_norm: str = "batch", batch_size: int = 64):
    self.spec, self.batch_norm, self.batch_size = spec, batch_norm, batch_size
    self.noise = steps.sample_noise(spec, key, num_samples)

  def __call__(self, state: TrainState, workdir: str, tag: str) -> tuple[dict[str, Any], np.ndarray]:
    grid = plots.image_grid(_finite(generation.generate(
        self.spec.generator, state.generator, self.noise, self.batch_norm, self.batch_size), state))
    if jax.process_index() == 0:
      plots.save_png(os.path.join(workdir, f"samples_{tag}.png"), grid)
    return {}, grid


Evaluator = ToyEvaluator | ImageEvaluator


def make_evaluator(config: ml_collections.ConfigDict, spec: steps.GanSpec) -> Evaluator:
  """The evaluation of `config`'s kind of data, from fixed keys of its seed."""
  key = jax.random.PRNGKey(config.seed + 1)
  sampling = dict(batch_norm=config.sampling_batch_norm, batch_size=config.batch_size)
  if data.get(config.data.name).kind == data.TOY:
    return ToyEvaluator(spec, get_toy_dataset(config.data.name), config.eval_samples, key,
                        **sampling)
  return ImageEvaluator(spec, config.eval_samples, key, **sampling)
