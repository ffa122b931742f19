"""Nearest neighbours on the devices (metrics/neighbours.py) against float64
numpy over the whole distance matrix: the host path they replace.

`python -m tests.test_neighbours [ROWS]` times precision/recall and density/
coverage of ROWS x ROWS 2048-d features both ways (BUILD.md, "Evaluation
figures on this CPU")."""
import sys
import time

import numpy as np
import pytest

from wgan_jax.metrics import features, neighbours


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Every pairwise distance in float64, as the metrics computed them before."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
  return np.sqrt(np.maximum(squared, 0.0))


def kth(x: np.ndarray, k: int) -> np.ndarray:
  return np.partition(distances(x, x), k, axis=1)[:, k]  # column 0: the row itself


def counts(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
  return (distances(points, centres) <= radii[None]).sum(axis=1)


def gaussian_features(rows: int, width: int, seed: int, shift: float = 0.0) -> np.ndarray:
  """Float32 features off the origin, as Inception's are (its pool is positive)."""
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(rows, width)) * 1.5 + 4.0 + shift).astype(np.float32)


def test_precision_recall_and_counts_equal_float64_on_thousands_of_rows():
  real = gaussian_features(3000, 256, 0)
  generated = gaussian_features(2500, 256, 1, shift=0.15)
  real_radii, generated_radii = kth(real, 3), kth(generated, 3)
  ours = neighbours.kth_distances(real, 3)
  np.testing.assert_allclose(ours, real_radii, rtol=1e-9)
  expected = counts(generated, real, real_radii)
  np.testing.assert_array_equal(neighbours.count_within(generated, real, ours), expected)
  precision = (expected > 0).mean()
  recall = (counts(real, generated, generated_radii) > 0).mean()
  assert 0.05 < precision < 0.95 and 0.05 < recall < 0.95  # Neither trivially 0 nor 1.
  assert features.precision_recall(generated, real) == (precision, recall)


def test_kth_distances_of_inception_width_features_equal_float64():
  x = gaussian_features(700, 2048, 2)
  for k in (1, 3, 5):
    np.testing.assert_allclose(neighbours.kth_distances(x, k, block=96), kth(x, k), rtol=1e-9)


def test_nearest_merges_key_blocks_and_query_blocks(monkeypatch):
  # 301 keys in 5 blocks of 61 (the last one padded), 101 queries in 5 steps of
  # 24 over the 8 devices (the last step filled up and cut back).
  monkeypatch.setattr(neighbours, "KEY_BLOCK", 64)
  keys, queries = gaussian_features(301, 32, 3), gaussian_features(101, 32, 4)
  found, index = neighbours.nearest(queries, keys, k=5, block=24)
  every = distances(queries, keys)
  expected = np.argsort(every, axis=1)[:, :5]
  np.testing.assert_array_equal(index, expected)
  np.testing.assert_allclose(found, np.take_along_axis(every, expected, 1), rtol=1e-9)
  assert np.all(np.diff(found, axis=1) >= 0)


@pytest.mark.parametrize("tolerance", [0.0, 1.0])
def test_counts_do_not_depend_on_which_side_decides(monkeypatch, tolerance):
  # Tolerance 1: every pair is decided on the host; 0: every pair on the device.
  monkeypatch.setattr(neighbours, "KEY_BLOCK", 128)
  real, generated = gaussian_features(400, 64, 5), gaussian_features(300, 64, 6, shift=0.2)
  radii = kth(real, 3)
  expected = counts(generated, real, radii)
  assert 0 < (expected > 0).mean() < 1
  monkeypatch.setattr(neighbours, "TOLERANCE", tolerance)
  np.testing.assert_array_equal(neighbours.count_within(generated, real, radii, block=64),
                                expected)


def test_a_point_on_a_ball_edge_is_decided_as_its_radius_was_measured():
  # Each ball holds its centre (at 0), the k - 1 rows nearer than the k-th and
  # the k-th exactly on its edge: inside with <=, outside with < (density and
  # coverage). So the counts over all points add up to N (k + 1) and N k.
  x = gaussian_features(500, 128, 7)
  radii = neighbours.kth_distances(x, 4)
  assert neighbours.count_within(x, x, radii).sum() == 500 * 5
  assert neighbours.count_within(x, x, radii, strict=True).sum() == 500 * 4


def test_duplicate_rows_are_neighbours_at_distance_zero():
  x = gaussian_features(50, 16, 8)
  x = np.concatenate([x, x[:10]])
  radii = neighbours.kth_distances(x, 1)
  assert np.all(radii[:10] == 0) and np.all(radii[50:] == 0) and np.all(radii[10:50] > 0)
  np.testing.assert_allclose(radii, kth(x, 1), rtol=1e-9, atol=1e-6)


def test_bad_input_is_one_line():
  x = np.zeros((5, 3), np.float32)
  with pytest.raises(ValueError, match=r"needs 1 <= k < rows; got k = 5 with 5 rows"):
    neighbours.kth_distances(x, 5)
  with pytest.raises(ValueError, match=r"need 1 <= k <= keys \(5\)"):
    neighbours.nearest(x, x, 6)
  with pytest.raises(ValueError, match="differ in width: 4 and 3"):
    neighbours.nearest(np.zeros((2, 4)), x)
  with pytest.raises(ValueError, match=r"one per centre, shape \(5,\); got \(4,\)"):
    neighbours.count_within(x, x, np.ones(4))
  with pytest.raises(ValueError, match="must be float features"):
    neighbours.nearest(np.zeros((2, 3), np.int32), x)
  with pytest.raises(ValueError, match="keys hold NaN or infinite values"):
    neighbours.nearest(x, np.full((2, 3), np.nan))


# ------------------------------------------------------------ the host path, timed


def host_kth(x: np.ndarray, k: int, batch: int = 2000) -> np.ndarray:
  """The k-th neighbour distances as features.py computed them before: float64,
  2,000 rows of the distance matrix at a time."""
  return np.concatenate([np.partition(distances(x[s:s + batch], x), k, axis=1)[:, k]
                         for s in range(0, len(x), batch)])


def host_counts(points, centres, radii, strict=False, batch: int = 2000) -> np.ndarray:
  inside = np.less if strict else np.less_equal
  return np.concatenate([inside(distances(points[s:s + batch], centres), radii[None]).sum(1)
                         for s in range(0, len(points), batch)])


def host_scores(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
  """Precision/recall (k = 3) and density/coverage (k = 5) on the host."""
  generated64, real64 = generated.astype(np.float64), real.astype(np.float64)
  r3, g3, r5 = host_kth(real64, 3), host_kth(generated64, 3), host_kth(real64, 5)
  nearest = np.concatenate([distances(real64[s:s + 2000], generated64).min(1)
                            for s in range(0, len(real64), 2000)])
  return {"precision": (host_counts(generated64, real64, r3) > 0).mean(),
          "recall": (host_counts(real64, generated64, g3) > 0).mean(),
          "density": host_counts(generated64, real64, r5, strict=True).sum() / (5 * len(generated)),
          "coverage": (nearest < r5).mean()}


def test_the_timed_host_path_is_the_reference():
  real, generated = gaussian_features(500, 32, 9), gaussian_features(400, 32, 10, shift=0.3)
  host = host_scores(generated, real)
  assert (host["precision"], host["recall"]) == features.precision_recall(generated, real)
  assert (host["density"], host["coverage"]) == pytest.approx(
      features.density_coverage(generated, real), rel=1e-12)
  assert 0 < host["precision"] < 1 and 0 < host["coverage"] < 1


def _time(rows: int) -> None:
  """Both ways, as an evaluation runs them: the metric modules against a
  reference (which keeps the real set's neighbours for PR and DC)."""
  # pylint: disable=import-outside-toplevel
  from wgan_jax.metrics import density_coverage, precision_recall
  real, generated = gaussian_features(rows, 2048, 0), gaussian_features(rows, 2048, 1, 0.05)

  def scores(n):
    reference = features.Reference(real[:n], features.GaussianStats.of(real[:n]), "timed")
    mine = features.Features(generated[:n], None)
    out = dict(precision_recall.score(mine, reference))
    middle = time.perf_counter()
    out.update(density_coverage.score(mine, reference))
    return out, middle

  scores(64)  # compiled once, outside the timing (other shapes compile again below)
  start = time.perf_counter()
  ours, middle = scores(rows)
  end = time.perf_counter()
  print(f"devices: pr {middle - start:.1f} s, then dc {end - middle:.1f} s: {ours}", flush=True)
  start = time.perf_counter()
  host = host_scores(generated, real)
  print(f"host float64: pr and dc {time.perf_counter() - start:.1f} s: {host}")
  assert all(ours[k] == pytest.approx(host[k], rel=1e-12) for k in host), (ours, host)


if __name__ == "__main__":
  _time(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
