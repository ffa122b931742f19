"""Noise for sampling: the truncation trick, paths between noise points, which
class each sample is of, and readable grids."""
import jax
import numpy as np
import pytest

from wgan_jax import configs, generators, latents, plots


def test_truncation_draws_every_coordinate_within_psi_and_none_is_the_plain_stream():
  key = jax.random.PRNGKey(3)
  plain = latents.draw(key, 4000, 16)
  np.testing.assert_array_equal(plain, np.asarray(jax.random.normal(key, (4000, 16))))
  assert np.abs(plain).max() > 3  # the tails the trick removes are there without it
  for psi in (0.5, 1.0, 2.0):
    z = latents.draw(key, 4000, 16, truncation=psi)
    assert np.abs(z).max() <= psi
    # A normal truncated to [-psi, psi], not clipped to it: no mass piled on the edges.
    assert np.mean(np.abs(z) > 0.99 * psi) < 0.02
    # Its standard deviation is the truncated normal's (1 - 2 psi phi(psi) / (2 Phi(psi) - 1)).
    phi = np.exp(-psi ** 2 / 2) / np.sqrt(2 * np.pi)
    mass = float(jax.scipy.special.erf(psi / np.sqrt(2)))
    assert abs(z.std() - np.sqrt(1 - 2 * psi * phi / mass)) < 0.01
  with pytest.raises(ValueError, match="truncation=0 must be > 0"):
    latents.draw(key, 4, 16, truncation=0)


def test_paths_start_and_end_at_their_points_and_slerp_keeps_the_norm():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(5, 128)), rng.normal(size=(5, 128))
  for kind in latents.PATHS:
    walk = latents.path(a, b, 7, kind)
    assert walk.shape == (5, 7, 128)
    np.testing.assert_allclose(walk[:, 0], a, atol=1e-5)
    np.testing.assert_allclose(walk[:, -1], b, atol=1e-5)
  norms = lambda w: np.linalg.norm(w, axis=-1)
  linear, slerp = latents.path(a, b, 7, "linear"), latents.path(a, b, 7, "slerp")
  # Nearly orthogonal 128-d normals: the line's middle is ~1/sqrt(2) of the ends' norm,
  # the great circle's stays between the ends' norms.
  assert (norms(linear)[:, 3] < 0.8 * (norms(a) + norms(b)) / 2).all()
  low, high = np.minimum(norms(a), norms(b))[:, None], np.maximum(norms(a), norms(b))[:, None]
  assert ((norms(slerp) >= low - 1e-4) & (norms(slerp) <= high + 1e-4)).all()
  # Equal angles between consecutive points of the great circle.
  unit = slerp / norms(slerp)[..., None]
  angles = np.arccos(np.clip((unit[:, 1:] * unit[:, :-1]).sum(-1), -1, 1))
  np.testing.assert_allclose(angles, angles[:, :1].repeat(6, 1), rtol=1e-3)
  # Parallel ends (the same point): a path that stays there, not NaN.
  np.testing.assert_allclose(latents.path(a, a, 4, "slerp"), a[:, None].repeat(4, 1), atol=1e-5)
  with pytest.raises(ValueError, match="unknown path 'cubic'"):
    latents.path(a, b, 4, "cubic")
  with pytest.raises(ValueError, match="at least 2 steps"):
    latents.path(a, b, 1)


def _config(conditional: bool):
  name = "digits_resnet_acgan" if conditional else "digits_dcgan_gp"
  return configs.load(name)


def test_classes_asked_for_are_drawn_in_turn_and_checked_against_the_generator():
  conditional = _config(True)
  z = generators.noise(conditional, 6, 0, classes=[3, 7])
  dim = conditional.model.noise_dim
  assert list(z[:, dim:].argmax(1)) == [3, 7, 3, 7, 3, 7]
  # The noise is the same stream, whatever the classes.
  np.testing.assert_array_equal(z[:, :dim], generators.noise(conditional, 6, 0)[:, :dim])
  assert generators.grid_columns(conditional, [3, 7]) == 2
  assert generators.grid_columns(conditional, [3]) is None
  assert generators.grid_columns(conditional) == 10
  with pytest.raises(configs.ConfigError, match=r"--class=10: this run's generator draws "
                     r"classes 0..9"):
    generators.noise(conditional, 6, 0, classes=[3, 10])
  with pytest.raises(configs.ConfigError, match="unconditional"):
    generators.noise(_config(False), 6, 0, classes=[3])


def test_interpolation_rows_walk_between_the_noise_points_of_their_row_and_keep_the_class():
  config = _config(True)
  dim = config.model.noise_dim
  walk = generators.interpolation_noise(config, 3, 5, seed=1, classes=[4, 2])
  assert walk.shape == (15, dim + 10)
  ends = latents.draw(jax.random.PRNGKey(1), 6, dim)
  rows = walk.reshape(3, 5, -1)
  np.testing.assert_allclose(rows[:, 0, :dim], ends[:3], atol=1e-5)
  np.testing.assert_allclose(rows[:, -1, :dim], ends[3:], atol=1e-5)
  assert (rows[..., dim:].argmax(-1) == np.array([4, 2, 4])[:, None]).all()


def test_small_images_are_shown_large_enough_to_read():
  images = np.zeros((4, 16, 16, 1), np.float32)
  assert plots.image_grid(images).shape == (35, 35, 3)
  grid = plots.readable_grid(images)
  assert grid.shape == (140, 140, 3)  # 16 -> 64 pixels an image
  np.testing.assert_array_equal(grid[::4, ::4], plots.image_grid(images))
  assert plots.readable_grid(np.zeros((4, 64, 64, 3), np.float32)).shape == (131, 131, 3)
  assert plots.readable_grid(images, scale=1).shape == (35, 35, 3)
  assert plots.there_and_back(4) == [0, 1, 2, 3, 2, 1]
