"""DiffAugment (wgan_jax/augment.py) against a loop-by-loop NumPy port of the
authors' DiffAugment_pytorch.py, given the same random numbers; what each op
does to a single pixel, its gradients, and the draw/apply contract a
data-parallel step relies on."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_jax import augment
from wgan_jax.configs import schema

ALL = augment.POLICIES

# One program per shape and policy: on a CPU far cheaper than op-by-op dispatch.
_apply = jax.jit(augment.apply, static_argnums=2)
_draw = jax.jit(augment.draw, static_argnums=(1, 2, 3, 4))


# ----------------------------------------------------------------------------
# The reference, ported to NumPy and NHWC with its index arithmetic kept.
# ----------------------------------------------------------------------------


def _ref_color(x, p):
  u = lambda name: np.asarray(p[name], np.float64).reshape(-1, 1, 1, 1)
  x = x + (u("brightness") - 0.5)
  mean = x.mean(axis=3, keepdims=True)
  x = (x - mean) * (u("saturation") * 2) + mean
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  return (x - mean) * (u("contrast") + 0.5) + mean


def _ref_translation(x, t):
  """x_pad[clamp(i + t + 1, 0, H + 1)] from a 1-pixel zero padding."""
  n, h, w, _ = x.shape
  pad = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
  out = np.empty_like(x)
  for b in range(n):
    for i in range(h):
      for j in range(w):
        out[b, i, j] = pad[b, min(max(i + t[b, 0] + 1, 0), h + 1),
                           min(max(j + t[b, 1] + 1, 0), w + 1)]
  return out


def _ref_cutout_mask(n, h, w, offset):
  c_h, c_w = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
  mask = np.ones((n, h, w))
  for b in range(n):
    for a in range(c_h):
      for c in range(c_w):
        i = min(max(a + offset[b, 0] - c_h // 2, 0), h - 1)
        j = min(max(c + offset[b, 1] - c_w // 2, 0), w - 1)
        mask[b, i, j] = 0
  return mask


def _reference(x, p, policy):
  x = np.asarray(x, np.float64)
  if "color" in policy:
    x = _ref_color(x, p)
  if "translation" in policy:
    x = _ref_translation(x, np.asarray(p["translation"]))
  if "cutout" in policy:
    x = x * _ref_cutout_mask(*x.shape[:3], np.asarray(p["cutout"]))[..., None]
  return x


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


# ----------------------------------------------------------------------------
# apply is the reference.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",), ALL])
@pytest.mark.parametrize("channels", [3, 1])
def test_apply_matches_reference(policy, channels):
  x = _images((2, 8, 8, channels), seed=channels)
  for seed in range(3):
    p = _draw(jax.random.key(seed), policy, 2, 8, 8)
    out = _apply(x, p, policy)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_allclose(out, _reference(x, p, policy), rtol=0, atol=2e-6)


@pytest.mark.parametrize("h, w", [(8, 8), (5, 7)])
def test_every_shift_and_offset_matches_reference(h, w):
  """All cutout offsets the reference can draw (odd sides too), and shifts
  beyond the drawn range (the whole image moved off)."""
  c_h, c_w = augment.cutout_size(h, w)
  rows, cols = range(h + 1 - c_h % 2), range(w + 1 - c_w % 2)
  offsets = np.array(list(itertools.product(rows, cols)), np.int32)
  x = _images((len(offsets), h, w, 2))
  p = {"cutout": jnp.asarray(offsets)}
  np.testing.assert_array_equal(_apply(x, p, ("cutout",)),
                                _reference(x, p, ("cutout",)).astype(np.float32))
  shifts = np.array(list(itertools.product(range(-h - 1, h + 2), (-w, -2, 0, 1, w))), np.int32)
  x = _images((len(shifts), h, w, 2))
  p = {"translation": jnp.asarray(shifts)}
  np.testing.assert_array_equal(_apply(x, p, ("translation",)),
                                _reference(x, p, ("translation",)).astype(np.float32))


def test_saturation_of_one_channel_is_the_identity():
  """The mean over one channel is the pixel itself, in the reference
  (x.mean(dim=1) of an [n, 1, H, W] tensor) and here: with brightness and
  contrast neutral (u = 0.5), colour leaves a 1-channel image as it is,
  whatever saturation u, while it changes a 3-channel one."""
  sat = jnp.array([0.0, 0.9])
  p = {"brightness": jnp.full(2, 0.5), "saturation": sat, "contrast": jnp.full(2, 0.5)}
  gray = _images((2, 8, 8, 1))
  np.testing.assert_allclose(_apply(gray, p, ("color",)), gray, rtol=0, atol=1e-6)
  np.testing.assert_array_equal(_ref_color(np.asarray(gray, np.float64), p), gray)
  rgb = _images((2, 8, 8, 3))
  out = _apply(rgb, p, ("color",))
  mean = jnp.mean(rgb, axis=3, keepdims=True)
  np.testing.assert_allclose(out[0], jnp.broadcast_to(mean[0], (8, 8, 3)), atol=1e-6)
  assert float(jnp.max(jnp.abs(out - rgb))) > 0.1


# ----------------------------------------------------------------------------
# Translation and cutout: what happens to pixels.
# ----------------------------------------------------------------------------


def test_translation_moves_a_pixel_by_minus_the_drawn_shift():
  """Output pixel (i, j) is input (i + t_h, j + t_w): a bright pixel at (r, c)
  lands on (r - t_h, c - t_w); pushed past the edge it is gone."""
  n, size, r, c = 64, 16, 7, 9
  x = jnp.zeros((n, size, size, 1)).at[:, r, c, 0].set(1.0)
  p = _draw(jax.random.key(3), ("translation",), n, size, size)
  t = np.asarray(p["translation"])
  assert t.dtype == np.int32 and t.shape == (n, 2)
  assert set(t.ravel()) == set(range(-2, 3))  # s = int(16 / 8 + 0.5) = 2
  out = np.asarray(_apply(x, p, ("translation",)))
  for b in range(n):
    assert out[b].sum() == 1.0 and out[b, r - t[b, 0], c - t[b, 1], 0] == 1.0
  corner = jnp.zeros((3, 8, 8, 1)).at[:, 0, 7, 0].set(1.0)
  off = {"translation": jnp.array([[1, 0], [0, -1], [1, -1]], jnp.int32)}
  np.testing.assert_array_equal(_apply(corner, off, ("translation",)), 0.0)
  kept = {"translation": jnp.array([[-1, 1]] * 3, jnp.int32)}
  assert float(_apply(corner, kept, ("translation",))[:, 1, 6].sum()) == 3.0


def test_cutout_zeroes_the_square():
  """8x8: a 4x4 square; inside 16 pixels per image, clipped at the borders."""
  x = jnp.ones((4, 8, 8, 3))
  p = {"cutout": jnp.array([[4, 4], [0, 0], [8, 3], [2, 2]], jnp.int32)}
  out = np.asarray(_apply(x, p, ("cutout",)))
  zeros = (out == 0).all(axis=3).sum(axis=(1, 2))
  np.testing.assert_array_equal(zeros, [16, 4, 8, 16])
  assert (out[0, 2:6, 2:6] == 0).all() and (out[3, 0:4, 0:4] == 0).all()
  assert ((out == 0) | (out == 1)).all() and ((out == 0).all(3) == (out == 0).any(3)).all()
  drawn = _draw(jax.random.key(0), ("cutout",), 500, 8, 5)
  assert set(np.asarray(drawn["cutout"][:, 0])) == set(range(9))  # c_h = 4: 0..H
  assert set(np.asarray(drawn["cutout"][:, 1])) == set(range(5))  # c_w = 3: 0..W-1


# ----------------------------------------------------------------------------
# Gradients: the transpose of each op.
# ----------------------------------------------------------------------------


def _grad(x, p, policy, w):
  return jax.jit(jax.grad(lambda x: jnp.sum(augment.apply(x, p, policy) * w)))(x)


def test_gradients_are_the_transposed_ops():
  x, w = _images((2, 8, 8, 3)), _images((2, 8, 8, 3), seed=1)
  wn = np.asarray(w, np.float64)
  p = {"translation": jnp.array([[1, -2], [-3, 0]], jnp.int32),
       "cutout": jnp.array([[0, 5], [4, 4]], jnp.int32),
       "brightness": jnp.array([0.1, 0.7]), "saturation": jnp.array([0.2, 0.9]),
       "contrast": jnp.array([0.3, 0.8])}

  g = np.asarray(_grad(x, p, ("translation",), w))
  back = np.zeros_like(wn)  # input (i, j) went to (i - t_h, j - t_w)
  for b, (t_h, t_w) in enumerate(np.asarray(p["translation"])):
    for i, j in itertools.product(range(8), range(8)):
      if 0 <= i - t_h < 8 and 0 <= j - t_w < 8:
        back[b, i, j] = wn[b, i - t_h, j - t_w]
  np.testing.assert_allclose(g, back, atol=1e-6)
  # The pixels that fell off: image 0's row 0 and columns 6, 7; image 1's rows 5-7.
  assert (g[0, 0] == 0).all() and (g[0, :, 6:] == 0).all() and (g[1, 5:] == 0).all()

  g = np.asarray(_grad(x, p, ("cutout",), w))
  np.testing.assert_allclose(g, wn * _ref_cutout_mask(2, 8, 8, np.asarray(p["cutout"]))[..., None],
                             atol=1e-7)

  # colour is x -> c x + (1 - c) mean_HWC x after x -> s x + (1 - s) mean_C x.
  s = 2 * np.asarray(p["saturation"], np.float64).reshape(-1, 1, 1, 1)
  c = np.asarray(p["contrast"], np.float64).reshape(-1, 1, 1, 1) + 0.5
  g1 = c * wn + (1 - c) * wn.mean(axis=(1, 2, 3), keepdims=True)
  g2 = s * g1 + (1 - s) * g1.mean(axis=3, keepdims=True)
  np.testing.assert_allclose(_grad(x, p, ("color",), w), g2, atol=1e-6)

  g = _grad(x, p, ALL, w)
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0


# ----------------------------------------------------------------------------
# draw/apply: determinism, jit, vmap, the data-parallel contract.
# ----------------------------------------------------------------------------


def test_draw_is_a_function_of_the_key_and_each_op_has_its_own_stream():
  key = jax.random.key(7)
  p = _draw(key, ALL, 4, 16, 16)
  assert {k: (v.shape, v.dtype) for k, v in p.items()} == {
      "brightness": ((4,), jnp.float32), "saturation": ((4,), jnp.float32),
      "contrast": ((4,), jnp.float32), "translation": ((4, 2), jnp.int32),
      "cutout": ((4, 2), jnp.int32)}
  again = _draw(key, ALL, 4, 16, 16)
  other = _draw(jax.random.key(8), ALL, 4, 16, 16)
  for name in p:
    np.testing.assert_array_equal(p[name], again[name])
    assert not np.array_equal(p[name], other[name]), name
  # Each colour op its own numbers (not one draw reused).
  for one, two in itertools.combinations(("brightness", "saturation", "contrast"), 2):
    assert not np.allclose(p[one], p[two]), (one, two)
  # Switching a policy on or off leaves the others' numbers alone.
  alone = _draw(key, ("translation",), 4, 16, 16)
  assert list(alone) == ["translation"]
  np.testing.assert_array_equal(alone["translation"], p["translation"])
  assert augment.draw(key, (), 4, 16, 16) == {}


def test_jit_vmap_and_the_rows_of_a_global_draw():
  x = _images((4, 8, 8, 3))
  key = jax.random.key(1)
  eager = augment.augment(x, key, ALL)  # op by op
  jitted = jax.jit(augment.augment, static_argnums=2)(x, key, ALL)
  np.testing.assert_allclose(jitted, eager, rtol=0, atol=1e-6)
  assert float(jnp.max(jnp.abs(eager - x))) > 0.1
  assert augment.augment(x, key, ()) is x

  # A device holding rows 2:4 of the global batch, given rows 2:4 of the global draw.
  p = _draw(key, ALL, 4, 8, 8)
  rows = jax.tree.map(lambda a: a[2:4], p)
  np.testing.assert_allclose(_apply(x[2:4], rows, ALL), eager[2:4], rtol=0, atol=1e-6)

  # vmap over a leading device-like axis: the same numbers.
  grouped = jax.tree.map(lambda a: a.reshape((2, 2) + a.shape[1:]), p)
  out = jax.jit(jax.vmap(functools.partial(augment.apply, policy=ALL)))(
      x.reshape(2, 2, 8, 8, 3), grouped)
  np.testing.assert_allclose(out.reshape(x.shape), eager, rtol=0, atol=1e-6)

  half = jax.jit(augment.augment, static_argnums=2)(x.astype(jnp.bfloat16), key, ALL)
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(half.astype(jnp.float32), eager, atol=0.1)


# ----------------------------------------------------------------------------
# Policies.
# ----------------------------------------------------------------------------


def test_parse_policy():
  assert schema.parse_policy("color,translation,cutout") == ALL
  assert schema.parse_policy(" cutout , color ") == ("color", "cutout")
  assert schema.parse_policy("translation,") == ("translation",)
  assert schema.parse_policy("") == () and schema.parse_policy("  ") == ()
  with pytest.raises(ValueError, match=r"'colour'.*known: color, translation, cutout"):
    schema.parse_policy("colour,cutout")
  with pytest.raises(ValueError, match=r"'cutout' repeated.*known: color"):
    schema.parse_policy("cutout,color,cutout")
  with pytest.raises(ValueError, match="'flip'"):
    augment.apply(_images((1, 8, 8, 1)), {}, ("flip",))


# ----------------------------------------------------------------------------
# data.mirror: real images flipped left-right at random as they become floats.
# ----------------------------------------------------------------------------


def _pmap_over_8(fn, *args):
  """`fn(*args)` under pmap over 8 devices, with the pmap BatchAxis; the rows
  each device returns, put back in order."""
  from wgan_jax.batch_axis import BatchAxis  # pylint: disable=import-outside-toplevel
  axis = BatchAxis("data")
  out = jax.pmap(lambda *a: fn(*a, axis), axis_name="data", in_axes=0)(*args)
  return np.asarray(out).reshape(-1, *out.shape[2:])


def test_mirror_flips_half_the_real_images_and_never_changes_one_otherwise():
  from wgan_jax import critic_inputs  # pylint: disable=import-outside-toplevel
  from wgan_jax.batch_axis import BatchAxis  # pylint: disable=import-outside-toplevel
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (64, 6, 5, 3)), jnp.uint8)
  as_float = lambda key: critic_inputs.real_to_float(images, key, False, BatchAxis(), True)
  batches = np.asarray(jax.jit(jax.vmap(as_float))(
      jax.random.split(jax.random.key(0), 50)))  # 50 batches of 64
  # Back to the pixels (x / 127.5 - 1 is exact to within an ulp): a pixel-exact comparison.
  pixels = np.rint((batches + 1.0) * 127.5).astype(np.uint8)
  plain = np.asarray(images)
  same = (pixels == plain).all(axis=(2, 3, 4))
  flipped = (pixels == plain[:, :, ::-1]).all(axis=(2, 3, 4))
  assert (same ^ flipped).all()  # each image exactly itself or its mirror (none symmetric)
  assert abs(flipped.mean() - 0.5) < 0.03, flipped.mean()  # 3,200 draws: sd 0.009
  # Every image is flipped in some batches and not in others; the bits differ by batch.
  assert 0.25 < flipped.mean(axis=0).min() and flipped.mean(axis=0).max() < 0.75
  assert not (flipped[0] == flipped[1]).all()
  # Off, or float data (the toy sets): nothing moves.
  key = jax.random.key(1)
  off = np.asarray(critic_inputs.real_to_float(images, key, False, BatchAxis()))
  np.testing.assert_array_equal(np.rint((off + 1.0) * 127.5).astype(np.uint8), plain)
  points = jnp.ones((4, 2))
  assert critic_inputs.real_to_float(points, key, False, BatchAxis(), True) is points


def test_mirror_is_the_same_on_one_device_and_over_8():
  from wgan_jax import critic_inputs  # pylint: disable=import-outside-toplevel
  from wgan_jax.batch_axis import BatchAxis  # pylint: disable=import-outside-toplevel
  images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (16, 4, 4, 1)), jnp.uint8)
  key = jax.random.key(3)
  for dequantize in (False, True):
    whole = critic_inputs.real_to_float(images, key, dequantize, BatchAxis(), True)
    shards = images.reshape(8, 2, 4, 4, 1)
    keys = jnp.broadcast_to(jax.random.key_data(key), (8, *jax.random.key_data(key).shape))
    split = _pmap_over_8(lambda x, k, axis: critic_inputs.real_to_float(
        x, jax.random.wrap_key_data(k), dequantize, axis, True), shards, keys)
    np.testing.assert_array_equal(split, whole)
    assert not np.array_equal(np.asarray(whole), np.asarray(
        critic_inputs.real_to_float(images, key, dequantize, BatchAxis())))


# ----------------------------------------------------------------------------
# ADA's gates: each op applied to an image with probability p.
# ----------------------------------------------------------------------------


def test_gates_apply_each_op_to_the_images_they_choose():
  x = _images((256, 8, 8, 3))
  key = jax.random.key(4)
  p = _draw(key, ALL, 256, 8, 8)
  gates = augment.draw_gates(key, ALL, 256)
  assert {k: v.shape for k, v in gates.items()} == {op: (256,) for op in ALL}
  for one, two in itertools.combinations(ALL, 2):  # each op its own draw
    assert not np.allclose(gates[one], gates[two])
  on = {op: jnp.ones(256, bool) for op in ALL}
  off = {op: jnp.zeros(256, bool) for op in ALL}
  np.testing.assert_array_equal(augment.apply(x, p, ALL, on), augment.apply(x, p, ALL))
  np.testing.assert_array_equal(augment.apply(x, p, ALL, off), x)
  # One op on a chosen image: that image is that op's output, the others themselves.
  for op in ALL:
    chosen = {**off, op: jnp.arange(256) % 3 == 0}
    out = np.asarray(augment.apply(x, p, ALL, chosen))
    alone = np.asarray(augment.apply(x, p, (op,)))
    np.testing.assert_array_equal(out[::3], alone[::3])
    keep = np.arange(256) % 3 != 0
    np.testing.assert_array_equal(out[keep], np.asarray(x)[keep])


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_adaptive_augment_applies_each_op_with_probability_p_on_any_device_count(p):
  from wgan_jax import critic_inputs  # pylint: disable=import-outside-toplevel
  from wgan_jax.batch_axis import BatchAxis  # pylint: disable=import-outside-toplevel
  n = 512
  transform = critic_inputs.AdaptiveAugment(("translation",), p=jnp.float32(p))
  x = jnp.zeros((n, 8, 8, 1)).at[:, 4, 4, 0].set(1.0)  # a dot that moves or stays
  key = jax.random.key(5)
  drawn = transform.draw(key, x.shape, BatchAxis())
  out = np.asarray(transform.apply(x, drawn, 0))
  moved = out[:, 4, 4, 0] != 1.0
  shifted = (np.asarray(drawn[0]["translation"]) != 0).any(axis=1)
  gated = np.asarray(drawn[1]["translation"]) < p
  np.testing.assert_array_equal(moved, gated & shifted)  # moved exactly where gated and shifted
  assert abs(gated.mean() - p) < 0.07, gated.mean()  # 512 draws: sd at most 0.022
  assert transform.metrics(0) == {"ada_p": pytest.approx(p)}
  # Over 8 devices, each drawing for the global batch and taking its rows: the same.
  bound = lambda pp: critic_inputs.with_probability((transform,), pp)[0]
  split = _pmap_over_8(lambda xs, pp, axis: bound(pp).apply(xs, bound(pp).draw(
      key, xs.shape, axis), 0), x.reshape(8, n // 8, 8, 8, 1), jnp.full((8,), p))
  np.testing.assert_array_equal(split, out)
