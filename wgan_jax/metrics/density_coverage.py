"""Density and coverage (Naeem et al. 2020) on Inception pool features: how
densely the generated samples fill the real samples' k-NN balls, and the share
of those balls they reach (features.py; the neighbours on the devices,
neighbours.py)."""
from __future__ import annotations

from wgan_jax.metrics import features
from wgan_jax.metrics.features import Features, Reference

# The fewest (generated, real) samples it is defined for (image_metrics.too_few_samples).
MINIMUM = features.Minimum(
    1, features.DC_NEIGHBOURHOOD + 1,
    f"each real sample's ball reaches to its k-th nearest other real sample, "
    f"k = {features.DC_NEIGHBOURHOOD}")


def score(generated: Features, real: Reference | Features) -> dict[str, float]:
  k = features.DC_NEIGHBOURHOOD
  density, coverage = features.density_coverage(generated.pool, real.pool, k,
                                                 real_radii=features.neighbour_radii(real, k))
  return {"density": density, "coverage": coverage}
