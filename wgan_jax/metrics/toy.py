"""Toy-set evaluation: exact W1 by optimal transport, modes covered, sample quality."""
from __future__ import annotations

import os

# POT would otherwise import TensorFlow and PyTorch backends it never uses here.
for _backend in ("TENSORFLOW", "PYTORCH", "CUPY"):
  os.environ.setdefault(f"POT_BACKEND_DISABLE_{_backend}", "1")

import numpy as np  # pylint: disable=g-import-not-at-top
import ot  # pylint: disable=g-import-not-at-top


def exact_w1(x: np.ndarray, y: np.ndarray) -> float:
  """Exact W1 between two equal-weight point clouds (POT's network simplex)."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  cost = ot.dist(x, y, metric="euclidean")
  return float(ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost, numItermax=10_000_000))


def mode_stats(samples: np.ndarray, centers: np.ndarray, std: float) -> dict[str, float]:
  """Modes covered and the share of high-quality samples.

  A sample is high quality when it lies within 3 standard deviations of its
  nearest centre; a mode is covered when at least one high-quality sample is
  nearest to it.
  """
  samples = np.asarray(samples, np.float64)
  d = np.linalg.norm(samples[:, None, :] - centers[None, :, :], axis=-1)
  nearest = np.argmin(d, axis=1)
  high_quality = d[np.arange(len(samples)), nearest] <= 3.0 * std
  covered = np.unique(nearest[high_quality])
  return {"modes_covered": int(covered.size), "modes_total": int(len(centers)),
          "high_quality_share": float(np.mean(high_quality))}
