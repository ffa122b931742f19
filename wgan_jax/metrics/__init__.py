"""What a generator is measured by: exact W1 on toy sets (`toy`), the
Inception metrics (`inception`, `features`, `image_metrics`), a digit
classifier's (`domain`) and a fixed critic's estimate (`yardstick`).

The metrics a run's `eval.metrics` and `wgan_jax.evaluate --metrics` name are
registered here, once: each is computed from one family of features (the
Inception network's, the digit classifier's, a trained critic) by `score` in
its own module. Nothing here imports JAX, so the config layer reads the names.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Metric:
  name: str
  # What it is computed from: "inception" features (one pass serves every metric
  # of the family), the "domain" classifier, a trained "critic".
  family: str
  # The module whose `score` computes it from its family's inputs: Inception
  # features (generated, real), or the domain's (data config, uint8 samples). A
  # critic family metric is a study over a run's checkpoints (its module's own API).
  module: str
  # A run keeps the checkpoint of its lowest value beside the newest ones (the
  # first such metric the run names).
  keeps_best: bool = False
  in_training: bool = True  # scored at a run's evaluations (else: on request only)
  # Needs a class-conditional generator and the real images' classes (per-class scores).
  conditional: bool = False

  def score(self) -> Callable[..., dict[str, Any]]:
    return importlib.import_module(self.module).score


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("fid", "inception", "wgan_jax.metrics.fid", keeps_best=True),
    Metric("kid", "inception", "wgan_jax.metrics.kid"),
    Metric("is", "inception", "wgan_jax.metrics.inception_score"),
    Metric("pr", "inception", "wgan_jax.metrics.precision_recall"),
    Metric("dc", "inception", "wgan_jax.metrics.density_coverage"),
    Metric("intra_fid", "inception", "wgan_jax.metrics.intra_fid", conditional=True),
    Metric("domain", "domain", "wgan_jax.metrics.domain"),
    # A fresh critic per checkpoint: a study, not a periodic evaluation.
    Metric("critic_w", "critic", "wgan_jax.checkpoint_critics", in_training=False),
)}
ALL = tuple(REGISTRY)
IN_TRAINING = tuple(n for n, m in REGISTRY.items() if m.in_training)
INCEPTION = tuple(n for n, m in REGISTRY.items() if m.family == "inception")


def of_family(names: tuple[str, ...], family: str) -> tuple[str, ...]:
  """The metrics of `names` computed from `family`, in order."""
  return tuple(n for n in names if REGISTRY[n].family == family)


def conditional(names: tuple[str, ...]) -> tuple[str, ...]:
  """The metrics of `names` that need a class-conditional generator, in order."""
  return tuple(n for n in names if REGISTRY[n].conditional)


def best_metric(names: tuple[str, ...]) -> str | None:
  """The metric a run keeps its best checkpoint by: the first of `names` that
  keeps one, or None."""
  return next((n for n in names if REGISTRY[n].keeps_best), None)


def parse(text: str, allowed: tuple[str, ...] = ALL) -> tuple[str, ...]:
  """"fid, kid" -> ("fid", "kid"): known names, in order, once each; a
  ValueError of one line otherwise. "" -> ()."""
  names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
  unknown = [n for n in names if n not in allowed]
  if unknown:
    raise ValueError(f"unknown metric {unknown[0]!r}; use some of {', '.join(allowed)}")
  return names
