"""Memorisation: how near a generator's samples sit to the images it trained on.

Every distance is Euclidean between rows (flattened pixels in [-1, 1], or a
network's features), found by `neighbours` on the devices. With d(x) the
distance from x to its nearest training image:

- the memorisation ratio: the mean d over samples over the mean d over real
  images the run never saw. About 1 for a generator as new as fresh data, 0
  for copies, below 1 when samples sit closer to the training images than new
  real images do.
- the closer-than-training shares: the share of samples whose d is below a
  quantile (the median, the 5th percentile) of the training images' distances
  to their nearest other training image. A new real image drawn as the
  training images were lands below the median half the time and below the 5th
  percentile 5% of the time (data in some order, cut by `data.limit`, is not so
  drawn: compare with held-out images' shares); copies land below both always.
"""
from __future__ import annotations

import numpy as np

from wgan_jax.metrics import neighbours

# The quantiles (percent) of the training images' spacing the shares are taken below.
QUANTILES = {"median": 50.0, "p5": 5.0}
# Training images whose spacing is computed against all of them; more are subsampled,
# so the cost stays at ROWS x training images rather than its square.
SPACING_ROWS = 10_000


def pixel_rows(images: np.ndarray) -> np.ndarray:
  """uint8 images [N, ...] -> float32 rows [N, D] in [-1, 1], as the critic sees them."""
  images = np.asarray(images)
  return images.reshape(len(images), -1).astype(np.float32) / 127.5 - 1.0


def nearest_distances(rows: np.ndarray, train: np.ndarray) -> np.ndarray:
  """Each row's Euclidean distance to its nearest training row ([N, D] and [T, D])."""
  distances, _ = neighbours.nearest(rows, train, k=1)
  return np.asarray(distances)[:, 0]


def ratio(sample_distances: np.ndarray, unseen_distances: np.ndarray) -> float:
  """Mean nearest-training distance of the samples over that of unseen real images."""
  return float(np.mean(sample_distances) / np.mean(unseen_distances))


def memorisation_ratio(samples: np.ndarray, train: np.ndarray, unseen: np.ndarray) -> float:
  """The ratio in pixels of uint8 `samples`, training images `train` and `unseen`
  real images, all of one shape: 1 for a generator as new as fresh data, 0 for copies."""
  train_rows = pixel_rows(train)
  return ratio(nearest_distances(pixel_rows(samples), train_rows),
               nearest_distances(pixel_rows(unseen), train_rows))


def training_spacing(train: np.ndarray, rows: int = SPACING_ROWS, seed: int = 0) -> np.ndarray:
  """Training rows' distances to their nearest other training row: every row's,
  or, past `rows` rows, those of `rows` drawn with `seed` (each against all)."""
  if len(train) < 2:
    raise ValueError(f"{len(train)} training image(s): spacing needs at least 2")
  if len(train) <= rows:
    return np.asarray(neighbours.kth_distances(train, 1))
  drawn = np.sort(np.random.default_rng(seed).choice(len(train), rows, replace=False))
  # A drawn row finds itself at distance 0 first (or a duplicate, equally 0): take the second.
  distances, _ = neighbours.nearest(train[drawn], train, k=2)
  return np.asarray(distances)[:, 1]


def thresholds(spacing: np.ndarray) -> dict[str, float]:
  """The QUANTILES of the training spacing, by name."""
  return {name: float(np.percentile(spacing, q)) for name, q in QUANTILES.items()}


def closer_shares(sample_distances: np.ndarray, spacing: np.ndarray) -> dict[str, float]:
  """The share of samples nearer a training image than each threshold of the
  training images' spacing: "closer_than_median", "closer_than_p5"."""
  sample_distances = np.asarray(sample_distances)
  return {f"closer_than_{name}": float(np.mean(sample_distances < value))
          for name, value in thresholds(spacing).items()}


def summary(samples: np.ndarray, train: np.ndarray, unseen: np.ndarray | None, k: int
            ) -> tuple[dict, np.ndarray, np.ndarray]:
  """(numbers, distances [N, k], indices [N, k] into `train`) of each sample row's
  k nearest training rows; with `unseen` real rows, the ratio against them and their own
  shares (what a generator as new as fresh data scores), else None for both."""
  distances, indices = neighbours.nearest(samples, train, k)
  spacing = training_spacing(train)
  held = None if unseen is None else nearest_distances(unseen, train)
  numbers = {
      **closer_shares(distances[:, 0], spacing),
      "memorisation_ratio": None if held is None else ratio(distances[:, 0], held),
      "held_out": None if held is None else closer_shares(held, spacing),
      "training_spacing": {**thresholds(spacing), "over": len(spacing)},
      "mean_nearest_distance": {"samples": float(distances[:, 0].mean()),
                                "held_out": None if held is None else float(held.mean())},
  }
  return numbers, np.asarray(distances), np.asarray(indices)
