"""Differentiable Augmentation (DiffAugment; Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training"): random colour, translation and
cutout applied to every image the critic sees, real and generated alike, as
functions differentiable in the images, so the generator is trained through
them.

The formulas are those of the authors' code (mit-han-lab/data-efficient-gans,
DiffAugment_pytorch.py), in NHWC instead of NCHW:

- color: brightness x + (u - 0.5); saturation (x - mean_C x) * 2u + mean_C x;
  contrast (x - mean_HWC x) * (u + 0.5) + mean_HWC x; each u ~ U[0, 1) per
  example, its own draw, applied in that order;
- translation (ratio 1/8): output pixel (i, j) is input pixel (i + t_h, j + t_w),
  0 where that lies outside the image, t ~ U{-s, ..., s} per example with
  s = int(size / 8 + 0.5); the content thus moves by (-t_h, -t_w);
- cutout (ratio 1/2): a square of int(size / 2 + 0.5) pixels a side zeroed,
  its rows [o_h - c_h // 2, o_h - c_h // 2 + c_h) (clipped to the image), with
  o_h ~ U{0, ..., H - (c_h % 2)} per example; likewise for the columns.

Drawing the random numbers (`draw`) is apart from applying them (`apply`), so a
data-parallel step can draw for the global batch and give each device its rows:
an augmentation is then the same whatever the number of devices.

Adaptive augmentation (ADA, wgan_jax/ada.py) applies each op of the policy to
an image with probability p: `draw_gates` draws a u ~ U[0, 1) per op and image,
and `apply(..., applied={op: u < p})` leaves an image as it is where an op is off.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from wgan_jax.configs.schema import AUGMENT_POLICIES as POLICIES  # the order applied


TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5

# The random numbers each policy needs, each drawn from its own stream
# fold_in(key, constant), so switching a policy on or off leaves the others' draws alone.
_PARAMS = {"color": ("brightness", "saturation", "contrast"),
           "translation": ("translation",), "cutout": ("cutout",)}
_STREAMS = {"brightness": 0, "saturation": 1, "contrast": 2, "translation": 3, "cutout": 4}
# ADA's gates, one stream per op, apart from the ops' own numbers.
_GATE_STREAMS = {"color": 5, "translation": 6, "cutout": 7}


def _check(policy: tuple[str, ...]) -> None:
  unknown = [p for p in policy if p not in POLICIES]
  if unknown:
    raise ValueError(f"unknown DiffAugment policy {unknown[0]!r}; known: {', '.join(POLICIES)}")


def translation_shift(height: int, width: int) -> tuple[int, int]:
  """The largest shift along each axis: int(size * 1/8 + 0.5)."""
  return int(height * TRANSLATION_RATIO + 0.5), int(width * TRANSLATION_RATIO + 0.5)


def cutout_size(height: int, width: int) -> tuple[int, int]:
  """The cut-out square's sides: int(size * 1/2 + 0.5)."""
  return int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)


def draw(key: jax.Array, policy: tuple[str, ...], n: int, height: int,
         width: int) -> dict[str, jax.Array]:
  """All random numbers of one augmentation of n images of height x width,
  as the reference draws them; every array has leading axis n:
  brightness, saturation, contrast: [n] float32 u ~ U[0, 1);
  translation: [n, 2] int32 (t_h, t_w), each in [-s, s];
  cutout: [n, 2] int32 (o_h, o_w), o_h in [0, H - c_h % 2] (the square's
  centre for odd c_h; its start is o_h - c_h // 2)."""
  _check(policy)
  params = {}
  for name in (name for p in policy for name in _PARAMS[p]):
    k = jax.random.fold_in(key, _STREAMS[name])
    if name == "translation":
      s_h, s_w = translation_shift(height, width)
      params[name] = jax.random.randint(k, (n, 2), jnp.array([-s_h, -s_w]),
                                        jnp.array([s_h + 1, s_w + 1]), jnp.int32)
    elif name == "cutout":
      c_h, c_w = cutout_size(height, width)
      # The reference's randint(0, H + (1 - c_h % 2)): high exclusive.
      params[name] = jax.random.randint(k, (n, 2), 0, jnp.array(
          [height + 1 - c_h % 2, width + 1 - c_w % 2]), jnp.int32)
    else:
      params[name] = jax.random.uniform(k, (n,), jnp.float32)
  return params


def draw_gates(key: jax.Array, policy: tuple[str, ...], n: int) -> dict[str, jax.Array]:
  """ADA's gates for n images: for each op of `policy`, [n] float32 u ~ U[0, 1);
  the op applies to an image where its u < p."""
  _check(policy)
  return {op: jax.random.uniform(jax.random.fold_in(key, _GATE_STREAMS[op]), (n,), jnp.float32)
          for op in policy}


def _per_example(u: jax.Array, x: jax.Array) -> jax.Array:
  return u.astype(x.dtype).reshape((-1, 1, 1, 1))


def _color(x: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
  x = x + (_per_example(params["brightness"], x) - 0.5)
  mean = jnp.mean(x, axis=3, keepdims=True)  # one channel: x itself, so the identity
  x = (x - mean) * (_per_example(params["saturation"], x) * 2) + mean
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * (_per_example(params["contrast"], x) + 0.5) + mean


def _shift_axis(image: jax.Array, t: jax.Array, axis: int) -> jax.Array:
  """out[i] = image[i + t] along `axis`, 0 where i + t is off the image (the
  reference's gather from a 1-pixel zero padding with clamped indices)."""
  size = image.shape[axis]
  src = jnp.arange(size) + t
  inside = (src >= 0) & (src < size)
  moved = jnp.take(image, jnp.clip(src, 0, size - 1), axis=axis)
  inside = inside.reshape((size,) + (1,) * (image.ndim - 1 - axis))
  # where, not a multiply: the clamped duplicates get no gradient.
  return jnp.where(inside, moved, jnp.zeros((), image.dtype))


def _translation(x: jax.Array, shift: jax.Array) -> jax.Array:
  def one(image, t):
    return _shift_axis(_shift_axis(image, t[0], 0), t[1], 1)
  return jax.vmap(one)(x, shift)


def _cutout(x: jax.Array, offset: jax.Array) -> jax.Array:
  c_h, c_w = cutout_size(x.shape[1], x.shape[2])
  start = offset - jnp.array([c_h // 2, c_w // 2])  # [n, 2]
  # The reference clamps the square's indices into the image; as the square
  # always overlaps the image, that is the square clipped to it.
  rows = jnp.arange(x.shape[1])[None, :] - start[:, :1]   # [n, H]
  cols = jnp.arange(x.shape[2])[None, :] - start[:, 1:]   # [n, W]
  in_rows = (rows >= 0) & (rows < c_h)
  in_cols = (cols >= 0) & (cols < c_w)
  keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
  return x * keep[..., None].astype(x.dtype)


def apply(x: jax.Array, params: dict[str, jax.Array], policy: tuple[str, ...],
          applied: dict[str, jax.Array] | None = None) -> jax.Array:
  """The augmented batch: x [n, H, W, C] float with the random numbers `params`
  of `draw`, the policies taken in POLICIES order. Same shape and dtype;
  differentiable in x (for fixed params it is affine in x). `applied` (ADA):
  per op a [n] bool, the images it transforms (None: all)."""
  _check(policy)
  ops = {"color": lambda x: _color(x, params),
         "translation": lambda x: _translation(x, params["translation"]),
         "cutout": lambda x: _cutout(x, params["cutout"])}
  for op in POLICIES:
    if op not in policy:
      continue
    out = ops[op](x)
    # where, not a blend: an image the op skips is exactly itself, and so is its gradient.
    x = out if applied is None else jnp.where(applied[op].reshape((-1, 1, 1, 1)), out, x)
  return x


def augment(x: jax.Array, key: jax.Array, policy: tuple[str, ...]) -> jax.Array:
  """DiffAugment of x [n, H, W, C] with fresh random numbers from `key`; the
  identity for policy ()."""
  if not policy:
    return x
  return apply(x, draw(key, policy, *x.shape[:3]), policy)
