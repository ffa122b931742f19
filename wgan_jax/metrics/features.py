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
- Density and coverage (Naeem et al. 2020, the `prdc` package's formulas, k = 5):
  how many real k-NN balls hold each generated sample, over k; the share of real
  balls that hold a generated sample.

The k-NN metrics find their neighbours on the devices (neighbours.py), with
ball membership decided as float64 decides it.

Every function takes numpy arrays: features [N, D] (Inception pool features,
or a domain classifier's) or logits [N, classes].
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from wgan_jax.metrics import neighbours

# torch-fidelity's defaults, so that the numbers compare.
KID_SUBSETS, KID_SUBSET_SIZE, KID_DEGREE, KID_COEF0 = 100, 1000, 3, 1.0
IS_SPLITS = 10
PR_NEIGHBOURHOOD = 3
DC_NEIGHBOURHOOD = 5  # prdc's and the paper's
SEED = 2020


@dataclasses.dataclass(frozen=True)
class Minimum:
  """The fewest generated and real samples a score is defined for, and why
  (each metric module's `MINIMUM`, checked before any image is scored)."""
  generated: int
  real: int
  why: str
  # The counts are of each class's samples (intra-class metrics of conditional runs).
  per_class: bool = False


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


def precision_recall(generated: np.ndarray, real: np.ndarray, k: int = PR_NEIGHBOURHOOD,
                     batch: int = neighbours.QUERY_BLOCK,
                     real_radii: np.ndarray | None = None) -> tuple[float, float]:
  """(precision, recall): the share of generated samples inside the union of the
  real samples' k-NN balls, and of real samples inside the generated ones'.
  `batch`: query rows a step on the devices; `real_radii`: the real samples'
  k-th neighbour distances, if known (`neighbour_radii`)."""
  if min(len(generated), len(real)) <= k:  # Each sample's k-th nearest *other* sample.
    raise ValueError(f"precision and recall with k = {k} need at least {k + 1} samples in "
                     f"each set, got {len(generated)} and {len(real)}")
  if real_radii is None:
    real_radii = neighbours.kth_distances(real, k, block=batch)
  generated_radii = neighbours.kth_distances(generated, k, block=batch)
  inside_real = neighbours.count_within(generated, real, real_radii, block=batch)
  inside_generated = neighbours.count_within(real, generated, generated_radii, block=batch)
  return float((inside_real > 0).mean()), float((inside_generated > 0).mean())


def density_coverage(generated: np.ndarray, real: np.ndarray, k: int = DC_NEIGHBOURHOOD,
                     batch: int = neighbours.QUERY_BLOCK,
                     real_radii: np.ndarray | None = None) -> tuple[float, float]:
  """(density, coverage) as `prdc` computes them, with its strict inequality:
  density = sum over generated Y_j of #{real X_i : ||Y_j - X_i|| < r_i} / (k M),
  coverage = #{X_i : some ||Y_j - X_i|| < r_i} / N, r_i the distance from X_i to
  its k-th nearest other real sample."""
  if len(real) <= k or len(generated) < 1:
    raise ValueError(f"density and coverage with k = {k} need at least {k + 1} real samples "
                     f"and one generated, got {len(real)} and {len(generated)}")
  if real_radii is None:
    real_radii = neighbours.kth_distances(real, k, block=batch)
  inside = neighbours.count_within(generated, real, real_radii, strict=True, block=batch)
  nearest_generated = neighbours.nearest(real, generated, 1, block=batch)[0][:, 0]
  return float(inside.sum() / (k * len(generated))), float((nearest_generated < real_radii).mean())


# ----------------------------------------------------------------------------
# Feature sets, as the metrics take them.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Features:
  pool: np.ndarray            # float32 [N, 2048]: FID, KID, precision/recall, ...
  logits: np.ndarray | None   # float32 [N, 1008] without the bias: IS
  # int [N]: each sample's class, where known (a conditional generator's, a
  # labelled data set's): intra-class metrics.
  labels: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Reference:
  """Real features, with their Gaussian computed once, and what they are."""
  pool: np.ndarray
  stats: GaussianStats
  description: str
  labels: np.ndarray | None = None  # int [N], where the data set has classes
  # What the metrics derive from the real set alone (k-NN radii, per-class
  # Gaussians), kept for the next evaluation against the same reference.
  derived: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)


def real_stats(real: Reference | Features) -> GaussianStats:
  """The Gaussian of the real features (a reference keeps it cached)."""
  return real.stats if isinstance(real, Reference) else GaussianStats.of(real.pool)


def derived(real: Reference | Features, key: tuple, compute: Callable[[], Any]) -> Any:
  """`compute()`, kept in a reference under `key` for the next call."""
  if not isinstance(real, Reference):
    return compute()
  if key not in real.derived:
    real.derived[key] = compute()
  return real.derived[key]


def neighbour_radii(real: Reference | Features, k: int) -> np.ndarray:
  """Each real sample's distance to its k-th nearest other one. A reference
  keeps its nearest neighbours up to the largest k of PR and DC from one pass."""
  most = max(k, min(max(PR_NEIGHBOURHOOD, DC_NEIGHBOURHOOD), len(real.pool) - 1))
  # Column 0: the sample itself (or a duplicate of it, at the same distance 0).
  return derived(real, ("neighbours", most),
                 lambda: neighbours.nearest(real.pool, real.pool, most + 1)[0])[:, k]
