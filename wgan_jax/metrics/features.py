"""Scores of two sets of image features, as the field computes them.

- FID: the Frechet distance between Gaussians fitted to the two sets (float64 on
  the host, torch-fidelity's formula, which equals pytorch-fid's).
- KID: the unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3,
  mean and standard deviation over random subsets (Binkowski et al. 2018;
  torch-fidelity's defaults: 100 subsets of 1,000, seed 2020).
- IS: exp(E KL(p(y|x) || p(y))) over 10 splits of shuffled samples (Salimans et
  al. 2016; torch-fidelity's shuffle with seed 2020, float64).
- Precision and recall (Kynkaanniemi et al. 2019): the share of one set inside
  the union of the other's k-nearest-neighbour balls, k = 3.

Every function takes numpy arrays: features [N, D] (Inception pool features,
or a domain classifier's) or logits [N, classes].
"""
from __future__ import annotations

import dataclasses

import numpy as np

# torch-fidelity's defaults, so that the numbers compare.
KID_SUBSETS, KID_SUBSET_SIZE, KID_DEGREE, KID_COEF0 = 100, 1000, 3, 1.0
IS_SPLITS = 10
PR_NEIGHBOURHOOD = 3
SEED = 2020


@dataclasses.dataclass(frozen=True)
class Minimum:
  """The fewest generated and real samples a score is defined for, and why
  (each metric module's `MINIMUM`, checked before any image is scored)."""
  generated: int
  real: int
  why: str


@dataclasses.dataclass(frozen=True)
class GaussianStats:
  """Mean and covariance of a set of features (float64), what FID compares."""
  mu: np.ndarray
  sigma: np.ndarray
  count: int

  @classmethod
  def of(cls, features: np.ndarray) -> "GaussianStats":
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
      raise ValueError(f"need features [N >= 2, D], got shape {features.shape}")
    return cls(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
  """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), as torch-fidelity
  computes it: the trace of the root is the sum of the roots of the eigenvalues
  of S_a S_b. They are those of the PSD S_a^(1/2) S_b S_a^(1/2), real and
  non-negative but for rounding, so no matrix root (pytorch-fid's `sqrtm`, five
  times slower at 2048 features) and no singular case to handle."""
  diff = a.mu - b.mu
  eigenvalues = np.linalg.eigvals(a.sigma @ b.sigma).astype(np.complex128)
  root_trace = np.sqrt(eigenvalues).real.sum()
  return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * root_trace)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  return (x @ y.T / x.shape[1] + KID_COEF0) ** KID_DEGREE


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """The unbiased MMD^2 estimate between equal-size sets with the KID kernel."""
  m = len(x)
  k_xx, k_yy, k_xy = (_polynomial_kernel(x, x), _polynomial_kernel(y, y),
                      _polynomial_kernel(x, y))
  within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(within - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(generated: np.ndarray, real: np.ndarray,
                              subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                              seed: int = SEED) -> tuple[float, float]:
  """(mean, std) of the unbiased MMD^2 over `subsets` random subsets of each set."""
  generated, real = np.asarray(generated, np.float64), np.asarray(real, np.float64)
  if min(len(generated), len(real)) < subset_size:
    raise ValueError(f"KID needs at least {subset_size} samples in each set, got "
                     f"{len(generated)} and {len(real)}")
  rng = np.random.RandomState(seed)
  mmds = np.zeros(subsets)
  for i in range(subsets):
    x = generated[rng.choice(len(generated), subset_size, replace=False)]
    y = real[rng.choice(len(real), subset_size, replace=False)]
    mmds[i] = mmd2_unbiased(x, y)
  return float(np.mean(mmds)), float(np.std(mmds))


def inception_score(logits: np.ndarray, splits: int = IS_SPLITS, seed: int = SEED
                    ) -> tuple[float, float]:
  """(mean, std) over `splits` of exp(E_x KL(p(y|x) || p(y))), in float64."""
  logits = np.asarray(logits, np.float64)
  if len(logits) < splits:  # An empty split's score is NaN.
    raise ValueError(f"the Inception Score in {splits} splits needs at least {splits} samples, "
                     f"got {len(logits)}")
  logits = logits[np.random.RandomState(seed).permutation(len(logits))]
  log_p = logits - logits.max(axis=1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
  p = np.exp(log_p)
  n, scores = len(logits), []
  for i in range(splits):
    chunk, log_chunk = p[i * n // splits:(i + 1) * n // splits], \
        log_p[i * n // splits:(i + 1) * n // splits]
    marginal = chunk.mean(axis=0, keepdims=True)
    scores.append(np.exp((chunk * (log_chunk - np.log(marginal))).sum(axis=1).mean()))
  return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_distances(x: np.ndarray, k: int, batch: int) -> np.ndarray:
  """Each row's distance to its k-th nearest other row of `x`."""
  out = []
  for start in range(0, len(x), batch):
    d = _distances(x[start:start + batch], x)
    out.append(np.partition(d, k, axis=1)[:, k])  # column 0 is the row itself
  return np.concatenate(out)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
  return np.sqrt(np.maximum(squared, 0.0))


def _inside_any_ball(points: np.ndarray, centres: np.ndarray, radii: np.ndarray,
                     batch: int) -> float:
  inside = [(_distances(points[s:s + batch], centres) <= radii[None]).any(axis=1)
            for s in range(0, len(points), batch)]
  return float(np.concatenate(inside).mean())


def precision_recall(generated: np.ndarray, real: np.ndarray, k: int = PR_NEIGHBOURHOOD,
                     batch: int = 2000) -> tuple[float, float]:
  """(precision, recall): the share of generated samples inside the union of the
  real samples' k-NN balls, and of real samples inside the generated ones'."""
  generated, real = np.asarray(generated, np.float64), np.asarray(real, np.float64)
  if min(len(generated), len(real)) <= k:  # Each sample's k-th nearest *other* sample.
    raise ValueError(f"precision and recall with k = {k} need at least {k + 1} samples in "
                     f"each set, got {len(generated)} and {len(real)}")
  precision = _inside_any_ball(generated, real, _kth_neighbour_distances(real, k, batch), batch)
  recall = _inside_any_ball(real, generated, _kth_neighbour_distances(generated, k, batch),
                            batch)
  return precision, recall


# ----------------------------------------------------------------------------
# Feature sets, as the metrics take them.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Features:
  pool: np.ndarray            # float32 [N, 2048]: FID, KID, precision/recall
  logits: np.ndarray | None   # float32 [N, 1008] without the bias: IS


@dataclasses.dataclass(frozen=True)
class Reference:
  """Real features, with their Gaussian computed once, and what they are."""
  pool: np.ndarray
  stats: GaussianStats
  description: str


def real_stats(real: Reference | Features) -> GaussianStats:
  """The Gaussian of the real features (a reference keeps it cached)."""
  return real.stats if isinstance(real, Reference) else GaussianStats.of(real.pool)
