"""FID, KID, IS and precision/recall against closed forms and brute force."""
import itertools
import warnings

import numpy as np
import pytest
from scipy import linalg

from wgan_jax.metrics import features


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
  rng = np.random.default_rng(0)
  mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
  var_a, var_b = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
  a = features.GaussianStats(mu_a, np.diag(var_a), 100)
  b = features.GaussianStats(mu_b, np.diag(var_b), 100)
  expected = np.sum((mu_a - mu_b) ** 2) + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
  assert features.frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)
  assert features.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_equals_the_symmetric_square_root_form():
  # Tr((S_a S_b)^1/2) = Tr((S_a^1/2 S_b S_a^1/2)^1/2): an independent computation.
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(400, 8)), rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) + 1.0
  a, b = features.GaussianStats.of(x), features.GaussianStats.of(y)
  root_a = linalg.sqrtm(a.sigma).real
  symmetric = linalg.eigvalsh(root_a @ b.sigma @ root_a)
  expected = (np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma) + np.trace(b.sigma)
              - 2 * np.sum(np.sqrt(np.maximum(symmetric, 0))))
  assert features.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
  np.testing.assert_allclose(a.sigma, np.cov(x, rowvar=False))


def test_frechet_distance_with_singular_covariances_is_finite():
  # Fewer samples than dimensions: singular covariances.
  rng = np.random.default_rng(2)
  a = features.GaussianStats.of(rng.normal(size=(6, 20)))
  b = features.GaussianStats.of(rng.normal(size=(6, 20)) + 0.5)
  value = features.frechet_distance(a, b)
  assert np.isfinite(value) and value > 0


def test_mmd2_unbiased_is_the_double_sum_over_distinct_pairs():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(7, 4)), rng.normal(size=(7, 4)) + 0.3
  k = lambda a, b: (a @ b / 4 + 1) ** 3
  m = len(x)
  within = sum(k(x[i], x[j]) + k(y[i], y[j])
               for i, j in itertools.product(range(m), repeat=2) if i != j) / (m * (m - 1))
  between = sum(k(x[i], y[j]) for i, j in itertools.product(range(m), repeat=2)) / (m * m)
  assert features.mmd2_unbiased(x, y) == pytest.approx(within - 2 * between, rel=1e-10)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
  rng = np.random.default_rng(4)
  same = features.kernel_inception_distance(rng.normal(size=(300, 16)),
                                            rng.normal(size=(300, 16)), subsets=20,
                                            subset_size=100)
  shifted = features.kernel_inception_distance(rng.normal(size=(300, 16)) + 0.5,
                                               rng.normal(size=(300, 16)), subsets=20,
                                               subset_size=100)
  assert abs(same[0]) < 3 * same[1] + 1e-3
  assert shifted[0] > 10 * abs(same[0]) and shifted[0] > 3 * shifted[1]
  with pytest.raises(ValueError, match="at least 1000 samples"):
    features.kernel_inception_distance(np.zeros((10, 2)), np.zeros((10, 2)))


def test_inception_score_of_confident_balanced_and_of_uniform_predictions():
  classes, n = 10, 1000
  confident = np.full((n, classes), -30.0)
  confident[np.arange(n), np.arange(n) % classes] = 30.0
  mean, std = features.inception_score(confident, splits=1)
  assert mean == pytest.approx(classes, rel=1e-9) and std == 0
  # Ten shuffled splits hold the classes almost evenly: just under 10 each.
  mean, std = features.inception_score(confident)
  assert 9.0 < mean < classes and 0 < std < 0.5
  mean, _ = features.inception_score(np.zeros((n, classes)))
  assert mean == pytest.approx(1.0, abs=1e-12)


def test_inception_score_is_the_definition_on_the_shuffled_splits():
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(200, 6)) * 3
  shuffled = logits[np.random.RandomState(features.SEED).permutation(200)]
  scores = []
  for chunk in np.split(shuffled, 10):
    p = np.exp(chunk) / np.exp(chunk).sum(1, keepdims=True)
    marginal = p.mean(0)
    scores.append(np.exp(np.mean([np.sum(row * np.log(row / marginal)) for row in p])))
  mean, std = features.inception_score(logits)
  assert mean == pytest.approx(np.mean(scores), rel=1e-10)
  assert std == pytest.approx(np.std(scores), rel=1e-8)


def test_precision_recall_is_the_k_nearest_neighbour_rule():
  rng = np.random.default_rng(6)
  real, generated = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.8

  def brute(points, centres, k):
    radii = [sorted(np.linalg.norm(centres - c, axis=1))[k] for c in centres]
    return np.mean([any(np.linalg.norm(p - c) <= r for c, r in zip(centres, radii))
                    for p in points])

  precision, recall = features.precision_recall(generated, real, batch=7)
  assert precision == pytest.approx(brute(generated, real, 3))
  assert recall == pytest.approx(brute(real, generated, 3))
  assert 0 < precision < 1 and 0 < recall < 1
  assert features.precision_recall(real, real) == (1.0, 1.0)


def test_kid_is_and_pr_equal_torch_fidelity_on_the_same_features():
  """torch-fidelity's own functions (its defaults: seed 2020, 10 IS splits, k = 3)."""
  from tests import torch_references as refs  # pylint: disable=import-outside-toplevel
  torch = refs.import_torch()
  refs.import_torch_fidelity_inception()
  # pylint: disable=import-outside-toplevel
  from torch_fidelity import metric_isc, metric_kid, metric_prc
  rng = np.random.default_rng(5)
  generated = rng.normal(size=(300, 16)).astype(np.float32)
  real = (rng.normal(size=(250, 16)) * 1.3 + 0.2).astype(np.float32)
  kid = metric_kid.kid_features_to_metric(
      torch.from_numpy(generated), torch.from_numpy(real), kid_subsets=20, kid_subset_size=100,
      kid_degree=3, kid_gamma=None, kid_coef0=1, kid_kernel="poly", rng_seed=2020, verbose=False)
  ours = features.kernel_inception_distance(generated, real, subsets=20, subset_size=100)
  assert ours == pytest.approx((kid[metric_kid.KEY_METRIC_KID_MEAN],
                                kid[metric_kid.KEY_METRIC_KID_STD]), rel=1e-5)
  logits = rng.normal(size=(300, 20)) * 3
  isc = metric_isc.isc_features_to_metric(torch.from_numpy(logits), splits=10)
  assert features.inception_score(logits) == pytest.approx(
      (isc[metric_isc.KEY_METRIC_ISC_MEAN], isc[metric_isc.KEY_METRIC_ISC_STD]), rel=1e-10)
  prc = metric_prc.prc_features_to_metric(
      torch.from_numpy(generated), torch.from_numpy(real), prc_neighborhood=3,
      prc_batch_size=10000, save_cpu_ram=False, verbose=False)
  # torch-fidelity averages in float32.
  assert features.precision_recall(generated, real) == pytest.approx(
      (prc[metric_prc.KEY_METRIC_PRECISION], prc[metric_prc.KEY_METRIC_RECALL]), rel=1e-6)
  assert 0 < prc[metric_prc.KEY_METRIC_PRECISION] < 1 and 0 < prc[metric_prc.KEY_METRIC_RECALL] < 1


def test_frechet_distance_is_torch_fidelitys_and_equals_pytorch_fids_sqrtm():
  from tests import torch_references as refs  # pylint: disable=import-outside-toplevel
  _, fid_score = refs.import_pytorch_fid()
  refs.import_torch_fidelity_inception()
  from torch_fidelity import metric_fid  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(6)
  # pytorch-fid's `sqrtm` is itself inexact where the covariances are singular.
  for n, d, rel in ((6, 20, 1e-8), (40, 64, 1e-8), (500, 16, 1e-12), (300, 128, 1e-12)):
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 1.2 + 0.3
    a, b = features.GaussianStats.of(x), features.GaussianStats.of(y)
    ours = features.frechet_distance(a, b)
    fidelity = metric_fid.fid_statistics_to_metric({"mu": a.mu, "sigma": a.sigma},
                                                   {"mu": b.mu, "sigma": b.sigma}, False)
    assert ours == pytest.approx(fidelity[metric_fid.KEY_METRIC_FID], rel=1e-12), (n, d)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      sqrtm = fid_score.calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert ours == pytest.approx(sqrtm, rel=rel), (n, d)
