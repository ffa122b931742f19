"""A generator's scores by name, for `wgan_jax.evaluate --workdir` and for
evaluation during training: the Inception metrics against the run's data set
and the digit classifier's. Every report carries its protocol (samples,
reference, network, resize). (The fixed critic's estimate, a study across
checkpoints, is `yardstick.py`.)"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

from absl import logging
import flax.linen as nn
import jax
import ml_collections

from wgan_jax import files, generation, pixels
from wgan_jax import metrics as metrics_names
from wgan_jax.metrics import image_metrics
from wgan_jax.state import NetState


def evaluate(names: Iterable[str], *, config: ml_collections.ConfigDict, workdir: str, step: int,
             module: nn.Module, generator: NetState, num_samples: int, reference_samples: int,
             seed: int, scorer: Callable[[], image_metrics.InceptionScorer] | None = None
             ) -> dict[str, Any]:
  """{"step", "metrics", "protocol"} of the metrics `names` for `generator`;
  `scorer` makes the Inception scorer when an Inception metric is asked for."""
  names = tuple(names)
  metrics: dict[str, Any] = {}
  protocol: dict[str, Any] = {"seed": seed}
  inception_names = [n for n in names if n in metrics_names.INCEPTION]
  if inception_names:
    inception_scorer = scorer()
    note = image_metrics.few_samples_note(num_samples)
    if note:
      logging.warning("%s", note)
      protocol["note"] = note
    reference = image_metrics.reference(config.data, reference_samples, inception_scorer)
    generated = inception_scorer.of_generator(
        module, generator, generation.noise(config, num_samples, seed),
        config.sampling_batch_norm, config.batch_size)
    metrics.update(image_metrics.score(inception_names, generated, reference))
    protocol.update(num_samples=num_samples, reference=reference.description,
                    network=inception_scorer.describe())
  if metrics_names.DOMAIN in names:
    from wgan_jax.metrics import domain  # pylint: disable=import-outside-toplevel
    if not domain.supported(config.data.name):
      raise ValueError(f"--metrics=domain: {config.data.name} has no domain classifier; "
                       f"it is there for {', '.join(domain.SUPPORTED)}")
    samples = generation.generate(module, generator, generation.noise(config, num_samples, seed),
                                  config.sampling_batch_norm, config.batch_size)
    metrics.update(domain.scorer(config.data)(pixels.to_uint8(samples)))
    protocol["domain_samples"] = num_samples
  return {"step": step, "metrics": metrics, "protocol": protocol}


def report_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, f"eval_{step}.json")


def write_report(workdir: str, step: int, report: dict[str, Any]) -> None:
  """`eval_<step>.json` in the workdir (process 0), written whole or not at all."""
  if jax.process_index() == 0:
    files.write_text_atomically(report_path(workdir, step), json.dumps(report, indent=2) + "\n")
