"""Evaluation during and after training, chosen by the kind of data set
(`make_evaluator`): toy sets (exact W1, modes, figure) and image sets (a grid
of samples from a fixed noise batch). Every process evaluates (the numbers
are the same); process 0 alone writes the files."""
from __future__ import annotations

import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wgan_jax import data, ema, generators, plots, sweeps, updates
from wgan_jax.configs.rules import ConfigError
from wgan_jax.inflight import NonFiniteError
from wgan_jax.data.toy import ToyDataset, get_toy_dataset
from wgan_jax import metrics as metric_names
from wgan_jax import scoring
from wgan_jax.metrics import domain, image_metrics
from wgan_jax.metrics import toy as toy_metrics
from wgan_jax.state import TrainState, generator_steps

GRID_SIZE = 128


def _finite(samples: np.ndarray, state: TrainState) -> np.ndarray:
  """`samples`, or a NonFiniteError: a non-finite sample is never scored or drawn."""
  if not np.all(np.isfinite(samples)):
    raise NonFiniteError(f"non-finite generator samples at the evaluation of generator step "
                         f"{generator_steps(state)}; lower optimizer.lr or check the data")
  return samples


class ToyEvaluator:
  """Exact W1 against a fixed real sample, its floor, mode statistics, figure.

  Reference samples, the noise batch and the plotting grid are fixed at
  construction, so evaluations at different steps compare like with like.
  """

  def __init__(self, spec: updates.GanSpec, dataset: ToyDataset, num_samples: int,
               key: jax.Array, batch_norm: str = "batch", batch_size: int = 256):
    k_real, k_floor, k_noise = jax.random.split(key, 3)
    self.spec, self.dataset = spec, dataset
    self.batch_norm, self.batch_size = batch_norm, batch_size
    self.real = np.asarray(dataset.sample(k_real, num_samples))
    # W1 between two independent real samples: what sampling noise alone gives.
    self.w1_floor = toy_metrics.exact_w1(self.real, np.asarray(dataset.sample(k_floor, num_samples)))
    self.noise = updates.sample_noise(spec, k_noise, num_samples)
    lim = float(np.abs(self.real).max()) * 1.15
    self.grid_x, self.grid_y = np.meshgrid(np.linspace(-lim, lim, GRID_SIZE),
                                           np.linspace(-lim, lim, GRID_SIZE))
    grid = jnp.asarray(np.stack([self.grid_x.ravel(), self.grid_y.ravel()], 1), jnp.float32)
    critic = lambda c, x: updates.critic_values(spec, c, x)
    if spec.batch_dependent_critic:
      # Each point's value depends on its batch, at a quadratic cost: a grid row a batch.
      rows = grid.reshape(GRID_SIZE, GRID_SIZE, -1)
      self._critic_on_grid = jax.jit(lambda c: jax.lax.map(lambda r: critic(c, r), rows))
    else:
      self._critic_on_grid = jax.jit(lambda c: critic(c, grid))

  best_metric = None  # No checkpoint carries a score.

  def samples(self, state: TrainState) -> np.ndarray:
    return _finite(generators.generate(self.spec.generator, ema.sampling_generator(state),
                                       self.noise, self.batch_norm, self.batch_size), state)

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
    title = f"{self.dataset.name}, step {generator_steps(state)}: W1 {metrics['w1']:.4f} " \
            f"(floor {self.w1_floor:.4f})"
    path = os.path.join(workdir, f"toy_{tag}.png") if jax.process_index() == 0 else None
    image = plots.toy_figure(path, self.real, fake,
                             self.grid_x, self.grid_y, values, title)
    return metrics, image


class RunScores:
  """The scores `config.eval.metrics` names (FID, KID, IS, PR, DC, intra-FID,
  domain), of the generator at a step, written to `eval_<step>.json`. The Inception weights are
  loaded (and checked) at construction; without any configured, the Inception
  metrics are left out with one message."""

  def __init__(self, config: ml_collections.ConfigDict, spec: updates.GanSpec):
    from wgan_jax.metrics import inception_weights  # pylint: disable=import-outside-toplevel
    self.config, self.spec = config, spec
    names = metric_names.parse(config.eval.metrics, metric_names.IN_TRAINING)
    self._scorer = None
    if metric_names.of_family(names, "domain") and not domain.supported(config.data.name):
      # An experiment's default, kept when only the data set is overridden.
      logging.warning("the domain scores are off: %s has no digit classifier (%s do)",
                      config.data.name, ", ".join(domain.SUPPORTED))
      names = tuple(n for n in names if n not in metric_names.of_family(names, "domain"))
    if metric_names.of_family(names, "inception"):
      if inception_weights.resolve(config.eval.inception_weights or None) is None:
        logging.warning("FID, KID, IS and precision/recall are off: no Inception weights; "
                        "%s (as --experiment.eval.inception_weights=PATH)",
                        inception_weights.HOW_TO_GET)
        names = tuple(n for n in names if n not in metric_names.INCEPTION)
      else:
        scoring.check_counts(names, config.eval.num_samples, config.eval.reference_samples,
                             "eval.")
        scoring.check_classes(names, config, config.eval.num_samples, "eval.metrics")
        weights = inception_weights.load(config.eval.inception_weights or None)
        self._scorer = image_metrics.InceptionScorer(weights, config.eval.fid_resize,
                                                     config.eval.batch_size)
    self.names = names

  def __call__(self, state: TrainState, workdir: str) -> dict[str, float]:
    """The scores (and `eval_<step>.json`); a score that cannot be computed (e.g. a
    near-singular covariance product) is a warning here, not the end of the run."""
    step = generator_steps(state)
    try:
      report = self._report(state, workdir, step)
    except ValueError as e:
      logging.warning("the scores of step %d could not be computed: %s", step, e)
      return {}
    scoring.write_report(workdir, step, report)
    return report["metrics"]

  def _report(self, state: TrainState, workdir: str, step: int) -> dict[str, Any]:
    return scoring.evaluate(
        self.names, config=self.config, workdir=workdir, step=step, module=self.spec.generator,
        generator=ema.sampling_generator(state), num_samples=self.config.eval.num_samples,
        reference_samples=self.config.eval.reference_samples, seed=self.config.seed,
        scorer=lambda: self._scorer)


class ImageEvaluator:
  """A grid of samples from a fixed noise batch, so grids at different steps
  show the same latent points (a conditional generator's: a class a column);
  saved as `samples_{tag}.png`; and the scores of `RunScores`, if any are
  configured."""

  def __init__(self, spec: updates.GanSpec, num_samples: int, key: jax.Array,
               batch_norm: str = "batch", batch_size: int = 64, scores: RunScores | None = None):
    self.spec, self.batch_norm, self.batch_size = spec, batch_norm, batch_size
    classes = generators.balanced_labels(num_samples, max(spec.num_classes, 1))
    self.noise = updates.generator_input(spec, updates.sample_noise(spec, key, num_samples), classes)
    self.columns = spec.num_classes or None
    self.scores = scores if scores is not None and scores.names else None

  @property
  def best_metric(self) -> str | None:
    """The score a checkpoint carries, so the best one is kept (the first metric
    computed that the registry says keeps one: FID)."""
    return None if self.scores is None else metric_names.best_metric(self.scores.names)

  def __call__(self, state: TrainState, workdir: str, tag: str) -> tuple[dict[str, Any], np.ndarray]:
    grid = plots.readable_grid(_finite(generators.generate(
        self.spec.generator, ema.sampling_generator(state), self.noise, self.batch_norm,
        self.batch_size), state), self.columns)
    if jax.process_index() == 0:
      plots.save_png(os.path.join(workdir, f"samples_{tag}.png"), grid)
    return (self.scores(state, workdir) if self.scores else {}), grid


class SweepEvaluator:
  """Every model of a sweep evaluated by one evaluator, each in its own
  folder (`sweeps.model_dir`); metrics as lists over the models, images
  stacked [K, H, W, C]."""

  best_metric = None  # Each model has its own best: no checkpoint carries one.

  def __init__(self, evaluator: ToyEvaluator | ImageEvaluator, sweep: sweeps.Sweep):
    self.evaluator, self.sweep = evaluator, sweep

  def __call__(self, state: TrainState, workdir: str, tag: str
               ) -> tuple[dict[str, list[Any]], np.ndarray]:
    metrics: dict[str, list[Any]] = {}
    images = []
    nets = state.replace(generator=state.generator.replace(opt_state=None),
                         critic=state.critic.replace(opt_state=None))
    for m in range(self.sweep.size):
      where = sweeps.model_dir(workdir, m, self.sweep.size)
      if jax.process_index() == 0:
        os.makedirs(where, exist_ok=True)
      try:
        one, image = self.evaluator(sweeps.model_slice(nets, m), where, tag)
      except NonFiniteError as e:
        raise NonFiniteError(f"model {m} of the sweep: {e}") from e
      for k, v in one.items():
        metrics.setdefault(k, []).append(v)
      images.append(image)
    return metrics, np.stack(images)


Evaluator = ToyEvaluator | ImageEvaluator | SweepEvaluator


def make_evaluator(config: ml_collections.ConfigDict, spec: updates.GanSpec,
                   sweep: sweeps.Sweep | None = None) -> Evaluator:
  """The evaluation of `config`'s kind of data, from fixed keys of its seed (a
  sweep's models all scored against the same reference and noise)."""
  key = jax.random.PRNGKey(config.seed + 1)
  sampling = dict(batch_norm=config.sampling_batch_norm, batch_size=config.batch_size)
  if data.is_toy(config.data):
    toy = ToyEvaluator(spec, get_toy_dataset(config.data.name), config.eval_samples, key,
                       **sampling)
    return toy if sweep is None else SweepEvaluator(toy, sweep)
  from wgan_jax.metrics import inception_weights  # pylint: disable=import-outside-toplevel
  try:
    scores = RunScores(config, spec) if config.eval.metrics else None
  except inception_weights.WeightsError as e:
    raise ConfigError(f"eval.inception_weights: {e}") from None
  images = ImageEvaluator(spec, config.eval_samples, key, **sampling, scores=scores)
  return images if sweep is None else SweepEvaluator(images, sweep)
