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
             seed: int, scorer: Callable[[], image_metrics.InceptionScorer] | None = None,
             truncation: float | None = None) -> dict[str, Any]:
  """{"step", "metrics", "protocol"} of the metrics `names` for `generator`, and
  "details" where a metric gives a list (intra_fid_per_class): "metrics" holds
  numbers only, as logs and TensorBoard take them. `scorer` makes the Inception
  scorer when an Inception metric is asked for."""
  names = tuple(names)
  check_classes(names, config, num_samples, "the metrics")  # Before anything is generated.
  run = _Generator(config, module, generator, num_samples, seed, truncation)
  metrics: dict[str, Any] = {}
  details: dict[str, Any] = {}
  protocol: dict[str, Any] = {"seed": seed}
  if truncation is not None:
    protocol["truncation"] = truncation
  for family, fn in FAMILIES.items():
    chosen = metrics_names.of_family(names, family)
    if chosen:
      scores, said = fn(chosen, run, reference_samples=reference_samples, scorer=scorer)
      for name, value in image_metrics.finite(scores).items():
        (details if isinstance(value, list) else metrics)[name] = value
      protocol.update(said)
  report = {"step": step, "metrics": metrics, "protocol": protocol}
  return {**report, "details": details} if details else report


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


def check_classes(names: Iterable[str], config: ml_collections.ConfigDict, num_samples: int,
                  metrics_key: str) -> None:
  """A ConfigError (one line) if a per-class metric of `names` (intra_fid) is
  asked of an unconditional run, or of too few samples for its classes: checked
  before anything is generated. `metrics_key` names the flag or key listing them."""
  asked = metrics_names.conditional(tuple(names))
  if not asked:
    return
  classes = models.num_classes(config)
  if not classes:
    raise ConfigError(f"{asked[0]} in {metrics_key} scores each class of a class-conditional "
                      "generator, and this run's is unconditional: train a conditional model "
                      "(e.g. --experiment=digits_resnet_acgan), or leave "
                      f"{asked[0]} out of {metrics_key}")
  problem = image_metrics.too_few_samples(asked, (num_samples, f"{num_samples} are generated"),
                                          None, metrics_key, classes)
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
  truncation: float | None = None  # the truncation trick's psi (latents.draw)

  def noise(self):
    return generators.noise(self.config, self.num_samples, self.seed, self.truncation)

  def labels(self):
    """The class of each sample of `noise` (None: unconditional)."""
    return generators.class_labels(self.config, self.num_samples)


def _inception_family(names, run: _Generator, *, reference_samples: int, scorer, **_):
  """The Inception metrics: one feature pass over the samples and the reference."""
  inception_scorer = scorer()
  protocol = {}
  note = image_metrics.few_samples_note(run.num_samples)
  if note:
    logging.warning("%s", note)
    protocol["note"] = note
  per_class = metrics_names.conditional(names)
  reference = image_metrics.reference(run.config.data, reference_samples, inception_scorer,
                                      labels=bool(per_class))
  # The data set may hold fewer images than asked for: said before the generator's pass.
  count = len(reference.pool)
  classes = models.num_classes(run.config)
  problem = image_metrics.too_few_samples(
      names, (run.num_samples, f"{run.num_samples} are generated"),
      (count, f"the reference holds {count} ({reference.description})"), "the metrics", classes)
  if not problem and per_class:
    problem = image_metrics.too_few_of_a_class(
        per_class, reference.labels, classes, f"the reference ({reference.description})",
        "the metrics")
  if problem:
    raise ValueError(problem)
  generated = inception_scorer.of_generator(run.module, run.generator, run.noise(),
                                            run.config.sampling_batch_norm, run.config.batch_size)
  generated = dataclasses.replace(generated, labels=run.labels())
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


def report_path(workdir: str, step: int, truncation: float | None = None) -> str:
  """`eval_<step>.json`, or of samples of truncated noise `eval_<step>_psi<psi>.json`."""
  return os.path.join(workdir, f"eval_{step}.json" if truncation is None
                      else f"eval_{step}_psi{truncation:g}.json")


def write_report(workdir: str, step: int, report: dict[str, Any]) -> None:
  """`report_path`'s file in the workdir (process 0), written whole or not at all."""
  if jax.process_index() == 0:
    path = report_path(workdir, step, report["protocol"].get("truncation"))
    files.write_text_atomically(path, json.dumps(report, indent=2, allow_nan=False) + "\n")
