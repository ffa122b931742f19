"""Inception Score (Salimans et al. 2016): exp E KL(p(y|x) || p(y)) from the
generated images' Inception logits, mean and deviation over splits (features.py)."""
from __future__ import annotations

from wgan_jax.metrics import features
from wgan_jax.metrics.features import Features, Reference

# The fewest (generated, real) samples it is defined for (image_metrics.too_few_samples).
MINIMUM = features.Minimum(
    features.IS_SPLITS, 0,
    f"the Inception Score averages over {features.IS_SPLITS} splits of them, at least a sample "
    "each")


def score(generated: Features, real: Reference | Features) -> dict[str, float]:
  del real  # The score needs no real data.
  mean, std = features.inception_score(generated.logits)
  return {"is_mean": mean, "is_std": std}
