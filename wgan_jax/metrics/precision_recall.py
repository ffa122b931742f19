"""Improved precision and recall (Kynkäänniemi et al. 2019) on Inception pool
features: k-nearest-neighbour manifolds of each set (features.py)."""
from __future__ import annotations

from wgan_jax.metrics import features
from wgan_jax.metrics.features import Features, Reference


def score(generated: Features, real: Reference | Features) -> dict[str, float]:
  precision, recall = features.precision_recall(generated.pool, real.pool)
  return {"precision": precision, "recall": recall}
