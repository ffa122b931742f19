"""A classifier two-sample test (Lopez-Paz & Oquab 2017): how well a classifier
tells two sets apart, by its cross-validated accuracy. 0.5: it cannot, the sets
look alike to it; 1.0: every example is told apart.

The classifier is an L2-regularised logistic regression on the rows as given
(images: pixels in [-1, 1] as the critic sees them, `memorisation.pixel_rows`):
cheap enough for every evaluation (seconds at a few thousand 16x16 images on a
CPU). The inputs are not standardised per pixel: a pixel that is nearly always 0
in the data would then weigh a difference of 1 in 255, which no one sees, as much
as a stroke (real digits with a background of 0 to 2 were told from real ones 98%
of the time; BUILD.md, "Domain metrics for digits").
"""
from __future__ import annotations

import numpy as np

FOLDS = 5
REGULARISATION = 0.25  # sklearn's C: the inverse of the L2 weight
# Each fold's test split holds this many examples of each set at least.
MINIMUM_PER_FOLD = 10


def minimum(folds: int = FOLDS) -> int:
  """The fewest examples of each set the test is defined for."""
  return folds * MINIMUM_PER_FOLD


def classifier_accuracy(a: np.ndarray, b: np.ndarray, folds: int = FOLDS, seed: int = 0) -> float:
  """The mean held-out accuracy over `folds` stratified folds of a logistic
  regression telling rows of `a` [N, ...] from rows of `b` [M, ...] (flattened).
  The larger set is subsampled to the smaller's size, so chance is 0.5."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  from sklearn.model_selection import StratifiedKFold, cross_val_score  # pylint: disable=import-outside-toplevel

  n = min(len(a), len(b))
  if n < minimum(folds):
    raise ValueError(f"a two-sample test in {folds} folds needs at least {minimum(folds)} "
                     f"examples of each set, got {len(a)} and {len(b)}")
  rng = np.random.RandomState(seed)
  a = np.asarray(a, np.float32).reshape(len(a), -1)[rng.choice(len(a), n, replace=False)]
  b = np.asarray(b, np.float32).reshape(len(b), -1)[rng.choice(len(b), n, replace=False)]
  x = np.concatenate([a, b])
  y = np.concatenate([np.zeros(n), np.ones(n)])
  model = LogisticRegression(C=REGULARISATION, max_iter=3000)
  split = StratifiedKFold(folds, shuffle=True, random_state=seed)
  return float(np.mean(cross_val_score(model, x, y, cv=split)))
