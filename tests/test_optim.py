"""Optimizers: weight clipping as an optax projection, PyTorch-equivalent RMSProp."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from wgan_jax import optim


def _opt(**kw):
  base = dict(name="rmsprop", lr=5e-5, schedule="constant", b1=0.5, b2=0.9, decay=0.99,
              eps=1e-8)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_clip_weights_lands_every_weight_in_the_ball():
  clip = 0.01
  rng = np.random.default_rng(0)
  tx = optax.chain(optax.sgd(1.0), optim.clip_weights(clip))
  params = {"a": jnp.asarray(rng.uniform(-clip, clip, (64, 64)), jnp.float32),
            "b": {"c": jnp.asarray(rng.uniform(-clip, clip, (128,)), jnp.float32)}}
  state = tx.init(params)
  for scale in (1e-5, 1e-3, 1.0, 1e3):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(0, scale, p.shape), p.dtype), params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    for leaf in jax.tree.leaves(params):
      # Exactly within the float32 bound, not merely close to it.
      assert jnp.max(jnp.abs(leaf)) <= np.float32(clip)
  # Large steps saturate: most weights end at +-c (to within 1e-6 relative).
  assert float(jnp.mean(jnp.abs(params["a"]) >= clip * (1 - 1e-6))) > 0.9


@pytest.mark.parametrize("clip", [0.01, 0.0123, 0.25, 1.0])
def test_clip_weights_never_rounds_past_the_bound(clip):
  # p + (target - p) can round one ulp past the target on large steps; the
  # transform must hold the bound exactly anyway, powers of two included.
  rng = np.random.default_rng(1)
  tx = optim.clip_weights(clip)
  params = {"p": jnp.asarray(rng.uniform(-clip, clip, 100_000), jnp.float32)}
  for scale in (1e-6, 1e-3, 1e-2, 1.0, 100.0):
    grads = {"p": jnp.asarray(rng.normal(0, scale, 100_000), jnp.float32)}
    updates, _ = tx.update(grads, optax.EmptyState(), params)
    params = optax.apply_updates(params, updates)
    assert jnp.max(jnp.abs(params["p"])) <= np.float32(clip)


def test_clip_weights_leaves_interior_updates_alone():
  tx = optim.clip_weights(1.0)
  params = {"w": jnp.array([0.1, -0.2, 0.9])}
  updates, _ = tx.update({"w": jnp.array([0.05, 0.05, 0.5])}, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [0.05, 0.05, 0.1], rtol=1e-6)


@pytest.mark.parametrize("clip", [0.0, -0.01])
def test_clip_weights_rejects_non_positive_clip(clip):
  with pytest.raises(ValueError, match="clip must be positive"):
    optim.clip_weights(clip)


def test_rmsprop_matches_pytorch_update_rule():
  # torch.optim.RMSprop: v = a v + (1 - a) g^2; p -= lr g / (sqrt(v) + eps).
  tx = optim.make_optimizer(_opt(lr=0.1), num_updates=10)
  p, g = jnp.array([1.0]), jnp.array([2.0])
  state = tx.init({"p": p})
  v = 0.0
  expected = 1.0
  params = {"p": p}
  for _ in range(3):
    updates, state = tx.update({"p": g}, state, params)
    params = optax.apply_updates(params, updates)
    v = 0.99 * v + 0.01 * 4.0
    expected -= 0.1 * 2.0 / (np.sqrt(v) + 1e-8)
  np.testing.assert_allclose(params["p"], [expected], rtol=1e-5)


def test_linear_schedule_decays_to_zero():
  lr = optim.learning_rate(_opt(lr=1e-3, schedule="linear"), num_updates=100)
  assert float(lr(0)) == pytest.approx(1e-3)
  assert float(lr(50)) == pytest.approx(5e-4)
  assert float(lr(100)) == pytest.approx(0.0)
