"""Objectives and the gradient penalty against hand-computed values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_jax import losses


def test_wasserstein_losses():
  f_real, f_fake = jnp.array([1.0, 3.0]), jnp.array([-1.0, 0.0])
  assert float(losses.wasserstein_estimate(f_real, f_fake)) == pytest.approx(2.5)
  assert float(losses.critic_loss("wgan", f_real, f_fake)) == pytest.approx(-2.5)
  assert float(losses.critic_loss("wgan-gp", f_real, f_fake)) == pytest.approx(-2.5)
  assert float(losses.generator_loss("wgan", f_fake)) == pytest.approx(0.5)


def test_gan_losses_match_binary_cross_entropy():
  logits_real, logits_fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  d_real, d_fake = jax.nn.sigmoid(logits_real), jax.nn.sigmoid(logits_fake)
  expected = -jnp.mean(jnp.log(d_real)) - jnp.mean(jnp.log(1 - d_fake))
  assert float(losses.critic_loss("gan", logits_real, logits_fake)) == pytest.approx(
      float(expected), rel=1e-6)
  assert float(losses.generator_loss("gan", logits_fake, "non-saturating")) == pytest.approx(
      float(-jnp.mean(jnp.log(d_fake))), rel=1e-6)
  assert float(losses.generator_loss("gan", logits_fake, "minimax")) == pytest.approx(
      float(jnp.mean(jnp.log(1 - d_fake))), rel=1e-6)


def test_unknown_objective_is_rejected():
  with pytest.raises(ValueError, match="unknown objective"):
    losses.critic_loss("hinge", jnp.zeros(2), jnp.zeros(2))
  with pytest.raises(ValueError, match="gan_generator_loss"):
    losses.generator_loss("gan", jnp.zeros(2), "wasserstein")


def test_interpolate_endpoints_and_midpoint():
  real = jnp.ones((3, 2, 2, 1))
  fake = jnp.zeros((3, 2, 2, 1))
  out = losses.interpolate(real, fake, jnp.array([1.0, 0.0, 0.25]))
  np.testing.assert_allclose(out[0], 1.0)
  np.testing.assert_allclose(out[1], 0.0)
  np.testing.assert_allclose(out[2], 0.25)


def test_gradient_penalty_of_linear_critic_on_images():
  # f(x) = <w, x> has gradient w everywhere: the norm runs over all non-batch
  # axes, so the penalty is (||w||_F - 1)^2 whatever the interpolates.
  w = jnp.arange(12, dtype=jnp.float32).reshape(2, 3, 2) / 10.0
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
  x_hat = jax.random.normal(jax.random.PRNGKey(0), (5, 2, 3, 2))
  penalty, norms = losses.gradient_penalty(critic, x_hat)
  norm_w = float(jnp.sqrt(jnp.sum(w ** 2)))  # sqrt(506)/10 = 2.2494...
  np.testing.assert_allclose(norms, norm_w, rtol=1e-6)
  assert float(penalty) == pytest.approx((norm_w - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_of_quadratic_critic():
  # f(x) = ||x||^2 / 2 has gradient x: penalty = mean((||x|| - 1)^2).
  x_hat = jnp.array([[3.0, 4.0], [0.6, 0.8], [0.0, 2.0]])
  penalty, norms = losses.gradient_penalty(lambda x: 0.5 * jnp.sum(x ** 2, axis=1), x_hat)
  np.testing.assert_allclose(norms, [5.0, 1.0, 2.0], rtol=1e-6)
  assert float(penalty) == pytest.approx((16.0 + 0.0 + 1.0) / 3, rel=1e-6)


def test_gradient_penalty_with_zero_gradient_is_finite():
  # A constant critic has zero input gradient: the epsilon inside the square
  # root keeps the penalty (=1) and its parameter gradient free of NaN.
  def penalty(scale):
    return losses.gradient_penalty(lambda x: scale * jnp.sum(x * 0.0, axis=1),
                                   jnp.ones((4, 3)))[0]

  value, grad = jax.value_and_grad(penalty)(2.0)
  assert float(value) == pytest.approx(1.0, abs=1e-5)
  assert np.isfinite(float(grad))
