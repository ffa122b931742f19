"""Improved precision and recall (Kynkäänniemi et al. 2019) on Inception pool
features: k-nearest-neighbour manifolds of each set (features.py; the neighbours
on the devices, neighbours.py)."""
from __future__ import annotations

from wgan_jax.metrics import features
from wgan_jax.metrics.features import Features, Reference

# The fewest (generated, real) samples it is defined for (image_metrics.too_few_samples).
MINIMUM = features.Minimum(
    features.PR_NEIGHBOURHOOD + 1, features.PR_NEIGHBOURHOOD + 1,
    f"each sample's ball reaches to its k-th nearest other sample of its set, "
    f"k = {features.PR_NEIGHBOURHOOD}")


def score(generated: Features, real: Reference | Features) -> dict[str, float]:
  k = features.PR_NEIGHBOURHOOD
  precision, recall = features.precision_recall(generated.pool, real.pool, k,
                                                real_radii=features.neighbour_radii(real, k))
  return {"precision": precision, "recall": recall}
