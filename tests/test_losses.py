"""The adversarial losses and the penalties against hand-computed values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_jax import losses, penalties
from wgan_jax.batch_axis import BatchAxis

F_REAL, F_FAKE = jnp.array([2.0, -1.0, 0.5]), jnp.array([0.5, -3.0, 1.5])


def test_wasserstein_loss():
  f_real, f_fake = jnp.array([1.0, 3.0]), jnp.array([-1.0, 0.0])
  assert float(losses.wasserstein_estimate(f_real, f_fake)) == pytest.approx(2.5)
  assert float(losses.critic_loss("wasserstein", f_real, f_fake)) == pytest.approx(-2.5)
  assert float(losses.generator_loss("wasserstein", f_fake)) == pytest.approx(0.5)


def test_standard_gan_losses_match_binary_cross_entropy():
  d_real, d_fake = jax.nn.sigmoid(F_REAL), jax.nn.sigmoid(F_FAKE)
  expected = -jnp.mean(jnp.log(d_real)) - jnp.mean(jnp.log(1 - d_fake))
  for loss in ("minimax", "non-saturating"):  # The same discriminator.
    assert float(losses.critic_loss(loss, F_REAL, F_FAKE)) == pytest.approx(float(expected),
                                                                             rel=1e-6)
  assert float(losses.generator_loss("non-saturating", F_FAKE)) == pytest.approx(
      float(-jnp.mean(jnp.log(d_fake))), rel=1e-6)
  assert float(losses.generator_loss("minimax", F_FAKE)) == pytest.approx(
      float(jnp.mean(jnp.log(1 - d_fake))), rel=1e-6)
  smoothed = -jnp.mean(0.9 * jnp.log(d_real) + 0.1 * jnp.log(1 - d_real)) - jnp.mean(
      jnp.log(1 - d_fake))
  assert float(losses.critic_loss("minimax", F_REAL, F_FAKE, 0.1)) == pytest.approx(
      float(smoothed), rel=1e-6)
  metrics = losses.critic_metrics("non-saturating", F_REAL, F_FAKE)
  assert float(metrics["d_real"]) == pytest.approx(float(jnp.mean(d_real)), rel=1e-6)
  assert set(losses.critic_metrics("hinge", F_REAL, F_FAKE)) == {"wasserstein_estimate"}


def test_hinge_loss():
  # Critic: mean(max(0, 1 - f(real))) + mean(max(0, 1 + f(fake))); generator: -mean f(fake).
  critic = np.mean(np.maximum(0, 1 - np.array(F_REAL))) + np.mean(
      np.maximum(0, 1 + np.array(F_FAKE)))
  assert float(losses.critic_loss("hinge", F_REAL, F_FAKE)) == pytest.approx(critic, rel=1e-6)
  assert critic == pytest.approx((0 + 2 + 0.5) / 3 + (1.5 + 0 + 2.5) / 3)
  assert float(losses.generator_loss("hinge", F_FAKE)) == pytest.approx(-np.mean(F_FAKE))


def test_least_squares_loss():
  # LSGAN with a = 0, b = c = 1.
  critic = 0.5 * np.mean((np.array(F_REAL) - 1) ** 2) + 0.5 * np.mean(np.array(F_FAKE) ** 2)
  assert float(losses.critic_loss("least-squares", F_REAL, F_FAKE)) == pytest.approx(critic,
                                                                                     rel=1e-6)
  assert float(losses.generator_loss("least-squares", F_FAKE)) == pytest.approx(
      0.5 * np.mean((np.array(F_FAKE) - 1) ** 2), rel=1e-6)


@pytest.mark.parametrize("loss", ["wasserstein", "minimax", "non-saturating", "hinge",
                                  "least-squares"])
def test_every_loss_pushes_the_critic_up_on_real_and_the_generator_up_on_fake(loss):
  # The critic's side decreases as f(real) rises and f(fake) falls; the generator's
  # as f(fake) rises: the signs every loss must share (at f = 1/4, inside every margin).
  f = jnp.full(4, 0.25)
  g_real, g_fake = jax.grad(lambda r, k: losses.critic_loss(loss, r, k), argnums=(0, 1))(f, f)
  assert float(jnp.sum(g_real)) < 0 < float(jnp.sum(g_fake))
  assert float(jnp.sum(jax.grad(lambda k: losses.generator_loss(loss, k))(f))) < 0


def test_interpolate_endpoints_and_midpoint():
  real = jnp.ones((3, 2, 2, 1))
  fake = jnp.zeros((3, 2, 2, 1))
  out = penalties.interpolate(real, fake, jnp.array([1.0, 0.0, 0.25]))
  np.testing.assert_allclose(out[0], 1.0)
  np.testing.assert_allclose(out[1], 0.0)
  np.testing.assert_allclose(out[2], 0.25)


def test_gradient_penalty_of_linear_critic_on_images():
  # f(x) = <w, x> has gradient w everywhere: the norm runs over all non-batch
  # axes, so the penalty is (||w||_F - 1)^2 whatever the interpolates.
  w = jnp.arange(12, dtype=jnp.float32).reshape(2, 3, 2) / 10.0
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
  x_hat = jax.random.normal(jax.random.PRNGKey(0), (5, 2, 3, 2))
  penalty, norms = penalties.gradient_penalty(critic, x_hat)
  norm_w = float(jnp.sqrt(jnp.sum(w ** 2)))  # sqrt(506)/10 = 2.2494...
  np.testing.assert_allclose(norms, norm_w, rtol=1e-6)
  assert float(penalty) == pytest.approx((norm_w - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_of_quadratic_critic():
  # f(x) = ||x||^2 / 2 has gradient x: penalty = mean((||x|| - 1)^2).
  x_hat = jnp.array([[3.0, 4.0], [0.6, 0.8], [0.0, 2.0]])
  penalty, norms = penalties.gradient_penalty(lambda x: 0.5 * jnp.sum(x ** 2, axis=1), x_hat)
  np.testing.assert_allclose(norms, [5.0, 1.0, 2.0], rtol=1e-6)
  assert float(penalty) == pytest.approx((16.0 + 0.0 + 1.0) / 3, rel=1e-6)


def test_gradient_penalty_with_zero_gradient_is_finite():
  # A constant critic has zero input gradient: the epsilon inside the square
  # root keeps the penalty (=1) and its parameter gradient free of NaN.
  def penalty(scale):
    return penalties.gradient_penalty(lambda x: scale * jnp.sum(x * 0.0, axis=1),
                                   jnp.ones((4, 3)))[0]

  value, grad = jax.value_and_grad(penalty)(2.0)
  assert float(value) == pytest.approx(1.0, abs=1e-5)
  assert np.isfinite(float(grad))


def test_each_penalty_takes_its_points_and_value():
  real, fake = jnp.ones((4, 3)), -jnp.ones((4, 3))
  key, axis = jax.random.PRNGKey(0), BatchAxis()
  assert np.array_equal(penalties.PENALTY["r1"].points(real, fake, key, axis), real)
  assert np.array_equal(penalties.PENALTY["r2"].points(real, fake, key, axis), fake)
  between = penalties.PENALTY["gp"].points(real, fake, key, axis)
  assert np.all(np.abs(np.asarray(between)) <= 1) and not np.allclose(between, real)
  assert np.array_equal(penalties.PENALTY["lp"].points(real, fake, key, axis), between)
  # Slopes of 3 and 0.5: two-sided (gp, dragan), one-sided (lp), squared norm / 2 (r1, r2).
  norms = jnp.array([3.0, 0.5])
  sq = norms ** 2
  value = lambda name: float(penalties.PENALTY[name].value(sq, norms))
  assert value("gp") == value("dragan") == pytest.approx((4 + 0.25) / 2)
  assert value("lp") == pytest.approx(4 / 2)
  assert value("r1") == value("r2") == pytest.approx((9 + 0.25) / 4)
