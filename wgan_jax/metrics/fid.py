"""FID (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to
the generated and the real Inception pool features (features.py)."""
from __future__ import annotations

from wgan_jax.metrics import features
from wgan_jax.metrics.features import Features, Reference, real_stats

# The fewest (generated, real) samples it is defined for (image_metrics.too_few_samples).
MINIMUM = features.Minimum(2, 2, "a covariance needs two samples")


def score(generated: Features, real: Reference | Features) -> dict[str, float]:
  return {"fid": features.frechet_distance(features.GaussianStats.of(generated.pool),
                                           real_stats(real))}
