"""KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial
kernel on Inception pool features, mean and deviation over subsets (features.py)."""
from __future__ import annotations

from wgan_jax.metrics import features
from wgan_jax.metrics.features import Features, Reference

# The fewest (generated, real) samples it is defined for (image_metrics.too_few_samples).
MINIMUM = features.Minimum(2, 2, "the unbiased MMD needs two samples of each set")


def score(generated: Features, real: Reference | Features) -> dict[str, float]:
  size = min(features.KID_SUBSET_SIZE, len(generated.pool), len(real.pool))
  mean, std = features.kernel_inception_distance(generated.pool, real.pool, subset_size=size)
  return {"kid_mean": mean, "kid_std": std, "kid_subset_size": size}
