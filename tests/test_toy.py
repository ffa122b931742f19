"""Toy data sets and their evaluation: exact W1, modes, sample quality."""
import jax
import numpy as np
import pytest
from sklearn.datasets import make_swiss_roll

from wgan_jax.data import toy
from wgan_jax.metrics import toy as toy_metrics


def test_eight_gaussians_matches_reference_definition():
  ds = toy.get_toy_dataset("8gaussians")
  radii = np.linalg.norm(ds.centers, axis=1)
  np.testing.assert_allclose(radii, 2 / 1.414, rtol=1e-6)
  assert ds.std == pytest.approx(0.02 / 1.414)
  x = np.asarray(ds.sample(jax.random.PRNGKey(0), 20_000))
  assert x.shape == (20_000, 2) and x.dtype == np.float32
  nearest = np.argmin(np.linalg.norm(x[:, None] - ds.centers[None], axis=-1), axis=1)
  residual = x - ds.centers[nearest]
  np.testing.assert_allclose(residual.std(axis=0), ds.std, rtol=0.05)
  np.testing.assert_allclose(np.bincount(nearest, minlength=8) / 20_000, 1 / 8, atol=0.015)


def test_twenty_five_gaussians_matches_reference_definition():
  ds = toy.get_toy_dataset("25gaussians")
  assert ds.centers.shape == (25, 2)
  np.testing.assert_allclose(sorted(set(np.round(ds.centers[:, 0] * 2.828, 5))),
                             [-4, -2, 0, 2, 4], atol=1e-4)
  assert ds.std == pytest.approx(0.05 / 2.828)


def test_swissroll_matches_sklearn_distribution():
  ours = np.asarray(toy.get_toy_dataset("swissroll").sample(jax.random.PRNGKey(0), 1500))
  ref_a = make_swiss_roll(1500, noise=0.25, random_state=0)[0][:, [0, 2]] / 7.5
  ref_b = make_swiss_roll(1500, noise=0.25, random_state=1)[0][:, [0, 2]] / 7.5
  floor = toy_metrics.exact_w1(ref_a, ref_b)
  # Our sampler is as close to sklearn's as two sklearn samples are to each other.
  assert toy_metrics.exact_w1(ours, ref_a) < 1.5 * floor


def test_unknown_toy_dataset():
  with pytest.raises(ValueError, match="is unknown; use one of 8gaussians, 25gaussians, swissroll"):
    toy.get_toy_dataset("9gaussians")


def test_exact_w1_of_a_translation_is_its_length():
  x = np.random.default_rng(0).normal(size=(300, 2))
  assert toy_metrics.exact_w1(x, x) == pytest.approx(0.0, abs=1e-9)
  # Translating a cloud by d costs at most |d|, and the optimum is exactly |d|
  # for the identity coupling of a cloud and its translate.
  assert toy_metrics.exact_w1(x, x + np.array([0.3, 0.4])) == pytest.approx(0.5, rel=1e-6)


def test_mode_stats():
  ds = toy.get_toy_dataset("8gaussians")
  std = ds.std
  exact = np.repeat(ds.centers, 10, axis=0)
  assert toy_metrics.mode_stats(exact, ds.centers, std) == {
      "modes_covered": 8, "modes_total": 8, "high_quality_share": 1.0}
  # Three modes hit, plus far-off points that are nearest to others but not high quality.
  some = np.concatenate([ds.centers[:3] + np.array([2.5 * std, 0.0]), ds.centers[3:] * 0.5])
  stats = toy_metrics.mode_stats(some, ds.centers, std)
  assert stats["modes_covered"] == 3
  assert stats["high_quality_share"] == pytest.approx(3 / 8)
  # Just outside 3 standard deviations is not high quality.
  outside = ds.centers + np.array([3.01 * std, 0.0])
  assert toy_metrics.mode_stats(outside, ds.centers, std)["modes_covered"] == 0
