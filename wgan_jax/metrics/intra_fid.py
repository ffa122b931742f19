"""Intra-class FID (Miyato & Koyama 2018) of a class-conditional generator: the
FID of each class's samples against the real images of that class, and their
mean. A conditional generator's samples are balanced (sample i of class
i mod K: `generators.balanced_labels`); the real images carry their data set's
labels (`image_metrics.reference(..., labels=True)`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from wgan_jax.metrics import features
from wgan_jax.metrics.features import Features, GaussianStats, Reference

# Per class: the fewest (generated, real) samples of each class (image_metrics.too_few_samples).
MINIMUM = features.Minimum(2, 2, "a covariance needs two samples", per_class=True)


def score(generated: Features, real: Reference | Features) -> dict[str, Any]:
  per_class = class_fids(generated, real)
  return {"intra_fid": float(np.mean(per_class)), "intra_fid_per_class": per_class}


def class_fids(generated: Features, real: Reference | Features) -> list[float]:
  """The FID of each class the generated samples hold, in class order."""
  if generated.labels is None:
    raise ValueError("intra_fid needs each generated sample's class: score a class-conditional "
                     "run's generator (--workdir), or leave intra_fid out of the metrics")
  if real.labels is None:
    raise ValueError("intra_fid needs the real images' classes, and the reference holds none: "
                     "use a data set with labels (digits, mnist, cifar10, a folder of class "
                     "folders), or leave intra_fid out of the metrics")
  fids = []
  for label in np.unique(generated.labels):
    ours, theirs = generated.labels == label, real.labels == label
    least = min(ours.sum(), theirs.sum())
    if least < MINIMUM.generated:
      raise ValueError(f"intra_fid: class {label} has {ours.sum()} generated and "
                       f"{theirs.sum()} real images; {MINIMUM.why} of each class in each set")
    reference = features.derived(real, ("class_stats", int(label)),
                                 lambda: GaussianStats.of(real.pool[theirs]))
    fids.append(features.frechet_distance(GaussianStats.of(generated.pool[ours]), reference))
  return fids
