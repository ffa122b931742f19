"""A generator's scores by name, for `wgan_jax.evaluate --workdir` and for
evaluation during training: the Inception metrics against the run's data set
and the digit classifier's. Every report carries its protocol (samples,
reference, network, resize). (The fixed critic's estimate, a study across
checkpoints, is `yardstick.py`.)"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Iterable

from absl import logging
import flax.linen as nn
import jax
import ml_collections

from wgan_jax import files, generators, models, pixels
from wgan_jax import metrics as metrics_names
from wgan_jax.configs.rules import ConfigError
from wgan_jax.metrics import image_metrics
from wgan_jax.state import NetState


def evaluate(names: Iterable[str], *, config: ml_collections.ConfigDict, workdir: str, step: int,
             module: nn.Module, generator: NetState, num_samples: int, reference_samples: int,
             seed: int, scorer: Callable[[], image_metrics.InceptionScorer] | None = None
             ) -> dict[str, Any]:
  """{"step", "metrics", "protocol"} of the metrics `names` for `generator`;
  `scorer` makes the Inception scorer when an Inception metric is asked for."""
  names = tuple(names)
  run = _Generator(config, module, generator, num_samples, seed)
  metrics: dict[str, Any] = {}
  protocol: dict[str, Any] = {"seed": seed}
  for family, fn in FAMILIES.items():
    chosen = metrics_names.of_family(names, family)
    if chosen:
      scores, said = fn(chosen, run, reference_samples=reference_samples, scorer=scorer)
      metrics.update(image_metrics.finite(scores))
      protocol.update(said)
  return {"step": step, "metrics": metrics, "protocol": protocol}


def check_counts(names: Iterable[str], num_samples: int, reference_samples: int,
                 prefix: str) -> None:
  """A ConfigError (one line) if `num_samples` generated or `reference_samples`
  real images are too few for one of the metrics `names`: checked before
  anything is restored, generated or scored. `prefix` spells the settings:
  "--" for evaluate's flags, "eval." for a run's config."""
  problem = image_metrics.too_few_samples(
      metrics_names.of_family(tuple(names), "inception"),
      (num_samples, f"{prefix}num_samples={num_samples}"),
      (reference_samples, f"{prefix}reference_samples={reference_samples}"), f"{prefix}metrics")
  if problem:
    raise ConfigError(problem)


@dataclasses.dataclass(frozen=True)
class _Generator:
  """What a family scores: `num_samples` samples of `generator` from `seed`'s noise."""
  config: ml_collections.ConfigDict
  module: nn.Module
  generator: NetState
  num_samples: int
  seed: int

  def noise(self):
    return generators.noise(self.config, self.num_samples, self.seed)


def _inception_family(names, run: _Generator, *, reference_samples: int, scorer, **_):
  """The Inception metrics: one feature pass over the samples and the reference."""
  inception_scorer = scorer()
  protocol = {}
  note = image_metrics.few_samples_note(run.num_samples)
  if note:
    logging.warning("%s", note)
    protocol["note"] = note
  reference = image_metrics.reference(run.config.data, reference_samples, inception_scorer)
  # The data set may hold fewer images than asked for: said before the generator's pass.
  count = len(reference.pool)
  problem = image_metrics.too_few_samples(
      names, (run.num_samples, f"{run.num_samples} are generated"),
      (count, f"the reference holds {count} ({reference.description})"), "the metrics")
  if problem:
    raise ValueError(problem)
  generated = inception_scorer.of_generator(run.module, run.generator, run.noise(),
                                            run.config.sampling_batch_norm, run.config.batch_size)
  protocol.update(num_samples=run.num_samples, reference=reference.description,
                  network=inception_scorer.describe())
  return image_metrics.score(names, generated, reference), protocol


def _domain_family(names, run: _Generator, **_):
  """The digit classifier's scores of the samples."""
  from wgan_jax.metrics import domain  # pylint: disable=import-outside-toplevel
  if not domain.supported(run.config.data.name):
    raise ValueError(f"--metrics=domain: {run.config.data.name} has no domain classifier; "
                     f"it is there for {', '.join(domain.SUPPORTED)}")
  samples = generators.generate(run.module, run.generator, run.noise(),
                                run.config.sampling_batch_norm, run.config.batch_size)
  classes = models.num_classes(run.config)
  asked = generators.balanced_labels(run.num_samples, classes) if classes else None
  scores = {}
  for name in names:
    scores.update(metrics_names.REGISTRY[name].score()(run.config.data,
                                                        pixels.to_uint8(samples), asked=asked))
  return scores, {"domain_samples": run.num_samples}


# How each family of in-training metrics is scored (metrics/__init__.py).
FAMILIES = {"inception": _inception_family, "domain": _domain_family}


def report_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, f"eval_{step}.json")


def write_report(workdir: str, step: int, report: dict[str, Any]) -> None:
  """`eval_<step>.json` in the workdir (process 0), written whole or not at all."""
  if jax.process_index() == 0:
    files.write_text_atomically(report_path(workdir, step),
                                json.dumps(report, indent=2, allow_nan=False) + "\n")
