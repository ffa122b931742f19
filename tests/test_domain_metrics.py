"""Domain metrics of the digit sets: known cases score as they must, the cache is
written once, reused and repaired, bad input is a clear error."""
import logging
import math
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from wgan_jax.data import images as image_data
from wgan_jax.metrics import cache, domain, two_sample

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

TINY_STEPS = 30  # cache tests: a classifier that trains in a second


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
  """The default digits scorer at 16x16, its cache in a temporary folder."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv(cache.ENV, str(tmp_path_factory.mktemp("cache")))
    yield domain.DomainScorer(domain.data_config("digits", 16))


@pytest.fixture(scope="module")
def halves(scorer):
  order = np.random.RandomState(1).permutation(len(scorer.images))
  a, b = order[:len(order) // 2], order[len(order) // 2:]
  return scorer.images[a], scorer.labels[a], scorer.images[b]


def test_classifier_sees_the_pipeline_images_and_learns_them(scorer):
  assert scorer.shape == (16, 16, 1)
  assert scorer.images.shape == (1797, 16, 16, 1) and scorer.images.dtype == np.uint8
  cfg = domain.data_config("digits", 16)
  # The training pipeline's first batch holds images of the classifier's set.
  batch = next(image_data.Batches(image_data.build_image_dataset(cfg, 8, seed=0)))
  known = {x.tobytes() for x in scorer.images}
  assert all(x.tobytes() in known for x in batch)
  assert scorer.accuracy > 0.95
  np.testing.assert_allclose(scorer.class_prior.sum(), 1.0)
  assert scorer.class_prior.min() > 0.09


def test_real_against_real_is_near_zero_with_every_class(scorer, halves):
  a, _, b = halves
  m = scorer(a, b)
  assert set(m) == {"domain_fd", "domain_classes_covered", "domain_kl", "domain_confidence",
                    "domain_c2st"}
  assert m["domain_fd"] < 20 and m["domain_classes_covered"] == 10 and m["domain_kl"] < 0.02
  assert m["domain_confidence"] > 0.95
  # Two halves of the same set: the two-sample classifier is at chance, or below it
  # (images that occur in both halves are held out under the other half's label).
  assert 0.4 < m["domain_c2st"] < 0.56
  # Against the full set (the trainer's reference) as well.
  full = scorer(a)
  assert full["domain_fd"] < m["domain_fd"] and full["domain_classes_covered"] == 10


def test_class_agreement_counts_the_images_of_the_class_asked_for(scorer, halves):
  a, labels, b = halves
  right = scorer(a, b, asked=labels)
  assert right["domain_class_agreement"] > 0.95  # the classifier's accuracy on real digits
  wrong = scorer(a, b, asked=(labels + 1) % 10)
  assert wrong["domain_class_agreement"] < 0.05
  # The other scores do not depend on what was asked.
  assert {k: v for k, v in wrong.items() if k != "domain_class_agreement"} == scorer(a, b)


def test_one_class_covers_one_and_has_a_large_kl(scorer, halves):
  a, labels, b = halves
  m = scorer(a[labels == 3], b)
  assert m["domain_classes_covered"] == 1
  assert m["domain_kl"] == pytest.approx(math.log(1 / scorer.class_prior[3]), abs=0.1)
  assert m["domain_fd"] > 50 * scorer(a, b)["domain_fd"]


def test_dropped_modes_and_blur_and_noise_are_far(scorer, halves):
  a, labels, b = halves
  real = scorer(a, b)["domain_fd"]
  dropped = scorer(a[labels < 5], b)
  assert dropped["domain_classes_covered"] == 5
  assert dropped["domain_kl"] == pytest.approx(math.log(2), abs=0.05)
  blurred = scorer(domain.blur(a), b)
  assert blurred["domain_fd"] > 4 * real and blurred["domain_c2st"] > 0.8
  noise = np.random.RandomState(0).randint(0, 256, a.shape).astype(np.uint8)
  m = scorer(noise, b)
  assert m["domain_fd"] > 100 * real and m["domain_confidence"] < scorer(a, b)["domain_confidence"]
  assert m["domain_c2st"] > 0.99


def test_a_background_no_one_sees_is_no_difference_to_the_two_sample_test(scorer, halves):
  """Real digits whose blank pixels hold 0 to 2 of 255 instead of 0: standardised
  per pixel, the nearly constant background weighed as much as a stroke and the
  test told them from real digits 98% of the time (0.60 now: the background's sum
  is still a difference a linear classifier finds)."""
  a, _, b = halves
  faint = domain.faint_background(a)
  assert np.abs(faint.astype(int) - a).max() == 2 and np.all(faint[a > 0] == a[a > 0])
  faint_score = scorer(faint, b)["domain_c2st"]
  assert faint_score < 0.65
  assert scorer(domain.blur(a), b)["domain_c2st"] > faint_score + 0.2  # what one sees, it tells


def test_the_two_sample_test_is_at_chance_for_one_distribution_and_not_for_two():
  rng = np.random.RandomState(0)
  same = two_sample.classifier_accuracy(rng.normal(size=(400, 20)), rng.normal(size=(600, 20)))
  assert abs(same - 0.5) < 0.06
  shifted = rng.normal(size=(400, 20))
  shifted[:, 0] += 1.0  # one coordinate shifted by one standard deviation
  apart = two_sample.classifier_accuracy(shifted, rng.normal(size=(400, 20)))
  assert 0.62 < apart < 0.8  # the Bayes accuracy of a unit shift: Phi(0.5) = 0.69
  with pytest.raises(ValueError, match="at least 50 examples of each set, got 49 and 400"):
    two_sample.classifier_accuracy(shifted[:49], shifted)


def test_coverage_and_kl_rules():
  prior = np.full(10, 0.1)
  # A quarter of the real share (2.5%) counts; a classifier's stray 1% does not.
  assert domain.classes_covered(np.array([0.03] * 4 + [0.02, 0.86] + [0.0] * 4), prior) == 5
  assert domain.classes_covered(np.array([0.91] + [0.01] * 9), prior) == 1
  assert domain.class_kl(prior, prior) == 0.0
  assert domain.class_kl(np.eye(10)[0], prior) == pytest.approx(math.log(10))
  assert domain.class_histogram(np.eye(10)[[1, 1, 2, 9]]).tolist() == \
      [0, 0.5, 0.25, 0, 0, 0, 0, 0, 0, 0.25]


@pytest.mark.parametrize("bad,match", [
    (np.zeros((4, 16, 16, 1), np.float32), "uint8 pixels.*pixels.to_uint8"),
    (np.zeros((4, 8, 8, 1), np.uint8), r"\[N >= 2, 16, 16, 1\], got \[4, 8, 8, 1\]"),
    (np.zeros((4, 16, 16, 3), np.uint8), r"got \[4, 16, 16, 3\]"),
    (np.zeros((16, 16, 1), np.uint8), r"got \[16, 16, 1\]"),
    (np.zeros((1, 16, 16, 1), np.uint8), r"got \[1, 16, 16, 1\]"),
])
def test_bad_images_are_a_clear_value_error(scorer, bad, match):
  with pytest.raises(ValueError, match=match):
    scorer(bad)
  with pytest.raises(ValueError, match=match):
    scorer(scorer.images[:4], real=bad)


def test_domain_metrics_makes_one_scorer_per_size(tmp_path, monkeypatch, scorer):
  monkeypatch.setenv(cache.ENV, str(tmp_path))
  monkeypatch.setattr(domain, "_SCORERS", {})
  m = domain.domain_metrics(scorer.images[:300], steps=TINY_STEPS)
  again = domain.domain_metrics(scorer.images[:300], steps=TINY_STEPS)
  assert m == again and len(domain._SCORERS) == 1
  with pytest.raises(ValueError, match="no domain classifier for data set 'cifar10'"):
    domain.DomainScorer(domain.data_config("cifar10", 32))
  with pytest.raises(ValueError, match=r"\[N, S, S, C\] uint8, got \[300, 256\]"):
    domain.domain_metrics(scorer.images[:300].reshape(300, -1))
  assert domain.supported("digits") and domain.supported("mnist")
  assert not domain.supported("cifar10")


def test_cache_is_written_reused_and_a_damaged_one_retrained(tmp_path, monkeypatch, caplog):
  monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
  cfg = domain.data_config("digits", 8)
  first = domain.DomainScorer(cfg, steps=TINY_STEPS)
  path = domain.cache_path("digits", (8, 8, 1), TINY_STEPS, 0)
  assert os.path.dirname(path) == str(tmp_path / "cache" / "domain")
  assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no temporary left
  with np.load(path, allow_pickle=False) as f:
    assert "params/Dense_0/kernel" in f.files and float(f["accuracy"]) == first.accuracy
  calls = []
  train = domain.train_classifier
  monkeypatch.setattr(domain, "train_classifier",
                      lambda *a, **k: calls.append(1) or train(*a, **k))
  mtime = os.stat(path).st_mtime_ns
  second = domain.DomainScorer(cfg, steps=TINY_STEPS)
  assert not calls and os.stat(path).st_mtime_ns == mtime
  assert second.accuracy == first.accuracy
  sample = first.images[:50]
  assert second(sample) == first(sample)

  for damage in (b"not a zip file", open(path, "rb").read()[:200]):
    with open(path, "wb") as f:
      f.write(damage)
    with caplog.at_level(logging.WARNING):
      third = domain.DomainScorer(cfg, steps=TINY_STEPS)
    assert f"domain classifier cache {path} is damaged" in caplog.text
    # Retrained to the same parameters (the recipe is deterministic) and replaced.
    assert third(sample) == first(sample)
    caplog.clear()
  assert len(calls) == 2
  domain.DomainScorer(cfg, steps=TINY_STEPS)
  assert len(calls) == 2

  # Parameters of another shape (e.g. another recipe written under this name) are damage too.
  domain._save(path, {"Dense_0": {"kernel": np.zeros((3, 3))}}, 0.5)
  domain.DomainScorer(cfg, steps=TINY_STEPS)
  assert len(calls) == 3


def test_mnist_reads_labelled_tfds_images(tmp_path, monkeypatch):
  monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
  cfg = domain.data_config("mnist", 32, str(tmp_path / "tfds"))
  with tfds.testing.mock_data(num_examples=20):
    s = domain.DomainScorer(cfg, steps=2)
  assert s.images.shape == (20, 32, 32, 1) and s.images.dtype == np.uint8
  assert s.labels.shape == (20,) and 0 <= s.labels.min() and s.labels.max() < 10
  assert np.isfinite(list(s(s.images).values())).all()
  assert os.path.isfile(domain.cache_path("mnist", (32, 32, 1), 2, 0))


def test_mnist_not_prepared_is_the_projects_data_error(tmp_path):
  with pytest.raises(image_data.DataError, match="mnist is not prepared"):
    domain.DomainScorer(domain.data_config("mnist", 32, str(tmp_path)))


def test_calibration_table_has_every_case(monkeypatch, scorer):
  monkeypatch.setattr(domain, "_SCORERS", {("digits", "", "train", 16, domain.TRAIN_STEPS, 0):
                                           scorer})
  rows = domain.calibrate(16)
  assert rows["one class only (0)"]["domain_classes_covered"] == 1
  assert rows["uniform noise"]["domain_fd"] > rows["blurred real (sigma 1 px)"]["domain_fd"] \
      > rows["real (half A vs half B)"]["domain_fd"]
  table = domain.format_table(rows)
  assert table.count("\n") == len(rows) + 1 and "| real (half A vs half B) | 898 |" in table
