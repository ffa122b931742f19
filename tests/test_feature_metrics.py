"""FID, KID, IS, precision/recall, density/coverage and intra-class FID against
closed forms, brute force and the reference implementations' formulas."""
import itertools
import warnings

import numpy as np
import pytest
from scipy import linalg

from wgan_jax.metrics import features, neighbours


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


# ------------------------------------------------------------ density and coverage


def prdc_density_coverage(real: np.ndarray, fake: np.ndarray, nearest_k: int
                          ) -> tuple[float, float]:
  """clovaai/generative-evaluation-prdc's compute_density and compute_coverage,
  transcribed: float64 numpy over the whole distance matrices."""
  def pairwise(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.sqrt(np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2 * x @ y.T, 0))

  def kth_value(unsorted, k):  # prdc's get_kth_value
    indices = np.argpartition(unsorted, k, axis=-1)[..., :k]
    return np.take_along_axis(unsorted, indices, axis=-1).max(axis=-1)

  radii = kth_value(pairwise(real, real), nearest_k + 1)
  distance_real_fake = pairwise(real, fake)
  density = (1.0 / nearest_k) * (distance_real_fake < radii[:, None]).sum(axis=0).mean()
  coverage = (distance_real_fake.min(axis=1) < radii).mean()
  return float(density), float(coverage)


def test_density_and_coverage_are_prdcs_formulas():
  rng = np.random.default_rng(7)
  real = (rng.normal(size=(1500, 64)) + 3).astype(np.float32)
  found = []
  # The same distribution, a narrower one (many samples on many balls' edges:
  # this case once counted a pair twice) and a wider one.
  for scale, shift in ((1.0, 0.0), (0.7, 0.1), (1.3, 0.2)):
    fake = (rng.normal(size=(1200, 64)) * scale + 3 + shift).astype(np.float32)
    expected = prdc_density_coverage(real, fake, 5)
    assert features.density_coverage(fake, real) == pytest.approx(expected, rel=1e-12)
    found.append(expected)
  (same_density, same_coverage), narrow, wide = found
  assert 0.9 < same_density < 1.1 and 0.5 < same_coverage < 1
  assert narrow[0] > 10 * same_density and wide[0] < 0.1 * same_density


def test_density_and_coverage_of_known_cases():
  rng = np.random.default_rng(8)
  real = rng.normal(size=(600, 16))
  # Identical sets: each real ball holds its own centre and the k - 1 real
  # samples nearer than its k-th (prdc's strict inequality leaves the k-th out).
  assert features.density_coverage(real, real) == (1.0, 1.0)
  # Far apart: no generated sample in any ball.
  assert features.density_coverage(real + 100.0, real) == (0.0, 0.0)
  # Two real modes; the generated samples crowd the middle of one of them.
  modes = np.concatenate([rng.normal(size=(300, 16)), rng.normal(size=(300, 16)) + 20.0])
  crowded = rng.normal(size=(600, 16)) * 0.05
  density, coverage = features.density_coverage(crowded, modes)
  # Dense where they are; half the real balls (the other mode's) out of reach.
  assert density > 10 and 0 < coverage < 0.5
  assert (density, coverage) == pytest.approx(prdc_density_coverage(modes, crowded, 5),
                                              rel=1e-12)
  with pytest.raises(ValueError, match="need at least 6 real samples and one generated, "
                                       "got 5 and 3"):
    features.density_coverage(real[:3], real[:5])


def test_dc_scores_a_reference_with_its_radii_kept():
  from wgan_jax.metrics import density_coverage, precision_recall  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(9)
  pool = rng.normal(size=(300, 8))
  reference = features.Reference(pool, features.GaussianStats.of(pool), "test")
  generated = features.Features(rng.normal(size=(200, 8)) * 0.8, None)
  scores = density_coverage.score(generated, reference)
  assert (scores["density"], scores["coverage"]) == pytest.approx(
      prdc_density_coverage(pool, generated.pool, 5), rel=1e-12)
  pr = precision_recall.score(generated, reference)
  assert (pr["precision"], pr["recall"]) == features.precision_recall(generated.pool, pool)
  # One pass over the reference served both k.
  assert set(reference.derived) == {("neighbours", 5)}
  np.testing.assert_array_equal(features.neighbour_radii(reference, 5),
                                neighbours.kth_distances(pool, 5))
  np.testing.assert_array_equal(features.neighbour_radii(reference, 3),
                                neighbours.kth_distances(pool, 3))
  # A reference of PR's minimum (4) has no 5th neighbour to keep: PR's 3rd it is.
  small = features.Reference(pool[:4], features.GaussianStats.of(pool[:4]), "test")
  pr = precision_recall.score(generated, small)
  assert (pr["precision"], pr["recall"]) == features.precision_recall(generated.pool, pool[:4])
  assert set(small.derived) == {("neighbours", 3)}


# ------------------------------------------------------------ intra-class FID


def test_intra_fid_scores_each_class_against_its_own_real_images():
  from wgan_jax.metrics import intra_fid  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(10)
  # Two classes far apart; samples balanced (sample i of class i mod 2).
  centres = np.array([[0.0] * 6, [8.0] * 6])
  real_labels = np.repeat([0, 1], 400)
  real_pool = rng.normal(size=(800, 6)) + centres[real_labels]
  reference = features.Reference(real_pool, features.GaussianStats.of(real_pool), "test",
                                 real_labels)
  labels = np.arange(800) % 2
  right = features.Features(rng.normal(size=(800, 6)) + centres[labels], None, labels)
  swapped = features.Features(right.pool, None, 1 - labels)  # each class drawn as the other
  good, bad = intra_fid.score(right, reference), intra_fid.score(swapped, reference)
  overall = features.frechet_distance(features.GaussianStats.of(right.pool), reference.stats)
  assert overall < 0.2 and good["intra_fid"] < 0.3
  # Each class 8 apart in 6 dimensions from its own: a squared mean distance of 384.
  assert bad["intra_fid"] == pytest.approx(384, rel=0.05)
  assert len(bad["intra_fid_per_class"]) == 2
  assert bad["intra_fid"] == pytest.approx(np.mean(bad["intra_fid_per_class"]), rel=1e-12)
  for label, value in enumerate(good["intra_fid_per_class"]):
    ours = features.GaussianStats.of(right.pool[labels == label])
    theirs = features.GaussianStats.of(real_pool[real_labels == label])
    assert value == pytest.approx(features.frechet_distance(ours, theirs), rel=1e-12)
  assert set(reference.derived) == {("class_stats", 0), ("class_stats", 1)}


def test_intra_fid_without_classes_or_with_too_few_is_one_line():
  from wgan_jax.metrics import image_metrics, intra_fid  # pylint: disable=import-outside-toplevel
  pool = np.random.default_rng(11).normal(size=(10, 3))
  labelled = features.Features(pool, None, np.arange(10) % 2)
  with pytest.raises(ValueError, match="^intra_fid needs each generated sample's class"):
    intra_fid.score(features.Features(pool, None), labelled)
  with pytest.raises(ValueError, match="^intra_fid needs the real images' classes"):
    intra_fid.score(labelled, features.Features(pool, None))
  lonely = features.Features(pool, None, np.array([0] * 9 + [1]))
  with pytest.raises(ValueError, match="class 1 has 5 generated and 1 real images"):
    intra_fid.score(labelled, lonely)
  # The per-class minimum, times the classes: 2 of each of 10.
  assert image_metrics.too_few_samples(("intra_fid",), (19, "19 are generated"), None, "--metrics",
                                       classes=10) == (
      "intra_fid needs at least 20 generated images (a covariance needs two samples of each of "
      "10 classes), but 19 are generated: score more, or leave intra_fid out of --metrics")
  assert image_metrics.too_few_samples(("intra_fid",), (20, ""), (20, ""), "--metrics",
                                       classes=10) is None
  assert image_metrics.too_few_of_a_class(("intra_fid",), np.array([0, 0, 1, 2, 2]), 3,
                                          "the reference", "--metrics") == (
      "intra_fid needs at least 2 real images of each class (a covariance needs two samples), "
      "but class 1 has 1 in the reference: use more reference images, or leave intra_fid out "
      "of --metrics")


def test_intra_fid_of_an_unconditional_run_is_a_config_error():
  # pylint: disable=import-outside-toplevel
  from wgan_jax import configs, scoring
  from wgan_jax.configs.rules import ConfigError
  with pytest.raises(ConfigError, match=r"^intra_fid in --metrics scores each class of a "
                     r"class-conditional generator, and this run's is unconditional: train a "
                     r"conditional model \(e.g. --experiment=digits_resnet_acgan\), or leave "
                     "intra_fid out of --metrics$"):
    scoring.check_classes(("fid", "intra_fid"), configs.load("digits_dcgan_gp"), 100, "--metrics")
  conditional = configs.load("digits_resnet_acgan")
  scoring.check_classes(("fid", "intra_fid"), conditional, 20, "--metrics")
  with pytest.raises(ConfigError, match="needs at least 20 generated images"):
    scoring.check_classes(("intra_fid",), conditional, 19, "--metrics")
  scoring.check_classes(("fid", "dc"), configs.load("digits_dcgan_gp"), 100, "--metrics")


def test_the_labelled_reference_holds_the_same_images_with_their_classes():
  # pylint: disable=import-outside-toplevel
  from sklearn.datasets import load_digits
  from wgan_jax import configs
  from wgan_jax.data import images
  config = configs.load("digits_resnet_acgan")
  batches, total = images.evaluation_batches(config.data, 300, 64, seed=0)
  plain = np.concatenate(list(batches))
  batches, labelled_total = images.evaluation_batches(config.data, 300, 64, seed=0, labels=True)
  pairs = list(batches)
  pixels, labels = np.concatenate([p for p, _ in pairs]), np.concatenate([l for _, l in pairs])
  assert total == labelled_total == 300 and len(labels) == 300
  np.testing.assert_array_equal(pixels, plain)
  assert np.bincount(labels, minlength=10).min() > 10  # every digit, shuffled in
  # Each image's label is its digit's: at 8 pixels (sklearn's own size) each
  # image is nearest to the sklearn image it came from.
  config.data.image_size = 8
  batches, _ = images.evaluation_batches(config.data, 300, 64, seed=0, labels=True)
  pairs = list(batches)
  pixels, labels = np.concatenate([p for p, _ in pairs]), np.concatenate([l for _, l in pairs])
  digits = load_digits()
  source = digits.images.reshape(len(digits.images), -1) * (255.0 / 16.0)
  nearest = np.argmin(((pixels.reshape(300, -1)[:, None] - source[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_array_equal(labels, digits.target[nearest])
