"""The FID Inception network in Flax, and the two resize conventions.

The network is pytorch-fid's `FIDInceptionV3`: the port of the TensorFlow
graph of 2015-12-05 that the original TTUR FID code runs, with its quirks
(average pooling that leaves padding out of the mean, max pooling in the last
block, batch norm eps 1e-3). It equals pytorch-fid's and torch-fidelity's
networks given the same weights (tests/test_inception.py, BUILD.md). Images
are NHWC here; parameter names follow the PyTorch state dict, so the weights
file maps onto them one to one (`inception_weights.py`).

Every convolution and the final dense layer run at `Precision.HIGHEST`: GPUs
would otherwise multiply in TF32 and move FID.
"""
from __future__ import annotations

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax.configs.schema import FID_RESIZES

INPUT_SIZE = 299
POOL_FEATURES = 2048
NUM_LOGITS = 1008
BATCH_NORM_EPS = 1e-3

# How images reach 299x299 (clean-fid shows this alone moving FID by points):
# "tf1": TensorFlow 1's bilinear resize (no half-pixel offset) on [0, 255],
#   then (x - 128) / 128, as the TTUR code's graph does and torch-fidelity
#   reproduces; "pytorch-fid": x / 255, `F.interpolate(mode="bilinear",
#   align_corners=False)`, then 2x - 1.
RESIZES = FID_RESIZES
DEFAULT_RESIZE = "tf1"

_HIGHEST = jax.lax.Precision.HIGHEST


class BasicConv(nn.Module):
  """Convolution without bias, batch norm in inference mode, ReLU."""
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel, strides=self.stride, use_bias=False,
                padding=((ph, ph), (pw, pw)), precision=_HIGHEST, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BATCH_NORM_EPS, name="bn")(x)
    return nn.relu(x)


def _conv(features: int, kernel: int | tuple[int, int], name: str, stride: int = 1,
          padding: int | tuple[int, int] = 0) -> BasicConv:
  kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
  padding = (padding, padding) if isinstance(padding, int) else padding
  return BasicConv(features, kernel, stride, padding, name=name)


def _average_pool_3x3(x: jax.Array) -> jax.Array:
  # TensorFlow's pooling leaves the padded zeros out of the mean.
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = _conv(64, 1, "branch1x1")(x)
    b5 = _conv(48, 1, "branch5x5_1")(x)
    b5 = _conv(64, 5, "branch5x5_2", padding=2)(b5)
    b3 = _conv(64, 1, "branch3x3dbl_1")(x)
    b3 = _conv(96, 3, "branch3x3dbl_2", padding=1)(b3)
    b3 = _conv(96, 3, "branch3x3dbl_3", padding=1)(b3)
    bp = _conv(self.pool_features, 1, "branch_pool")(_average_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = _conv(384, 3, "branch3x3", stride=2)(x)
    bd = _conv(64, 1, "branch3x3dbl_1")(x)
    bd = _conv(96, 3, "branch3x3dbl_2", padding=1)(bd)
    bd = _conv(96, 3, "branch3x3dbl_3", stride=2)(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], -1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    b1 = _conv(192, 1, "branch1x1")(x)
    b7 = _conv(c7, 1, "branch7x7_1")(x)
    b7 = _conv(c7, (1, 7), "branch7x7_2", padding=(0, 3))(b7)
    b7 = _conv(192, (7, 1), "branch7x7_3", padding=(3, 0))(b7)
    bd = _conv(c7, 1, "branch7x7dbl_1")(x)
    bd = _conv(c7, (7, 1), "branch7x7dbl_2", padding=(3, 0))(bd)
    bd = _conv(c7, (1, 7), "branch7x7dbl_3", padding=(0, 3))(bd)
    bd = _conv(c7, (7, 1), "branch7x7dbl_4", padding=(3, 0))(bd)
    bd = _conv(192, (1, 7), "branch7x7dbl_5", padding=(0, 3))(bd)
    bp = _conv(192, 1, "branch_pool")(_average_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = _conv(192, 1, "branch3x3_1")(x)
    b3 = _conv(320, 3, "branch3x3_2", stride=2)(b3)
    b7 = _conv(192, 1, "branch7x7x3_1")(x)
    b7 = _conv(192, (1, 7), "branch7x7x3_2", padding=(0, 3))(b7)
    b7 = _conv(192, (7, 1), "branch7x7x3_3", padding=(3, 0))(b7)
    b7 = _conv(192, 3, "branch7x7x3_4", stride=2)(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], -1)


class InceptionE(nn.Module):
  """The last two blocks; the second (`max_pool=True`) pools by maximum, a
  quirk of the 2015 graph that FID keeps."""
  max_pool: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = _conv(320, 1, "branch1x1")(x)
    b3 = _conv(384, 1, "branch3x3_1")(x)
    b3 = jnp.concatenate([_conv(384, (1, 3), "branch3x3_2a", padding=(0, 1))(b3),
                          _conv(384, (3, 1), "branch3x3_2b", padding=(1, 0))(b3)], -1)
    bd = _conv(448, 1, "branch3x3dbl_1")(x)
    bd = _conv(384, 3, "branch3x3dbl_2", padding=1)(bd)
    bd = jnp.concatenate([_conv(384, (1, 3), "branch3x3dbl_3a", padding=(0, 1))(bd),
                          _conv(384, (3, 1), "branch3x3dbl_3b", padding=(1, 0))(bd)], -1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
    else:
      pooled = _average_pool_3x3(x)
    bp = _conv(192, 1, "branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class FIDInceptionV3(nn.Module):
  """[N, 299, 299, 3] in [-1, 1] -> (pool features [N, 2048], unbiased logits
  [N, 1008]): the features FID, KID and precision/recall use, and the logits
  without the classifier's bias, as torch-fidelity computes IS ("logits_unbiased")."""

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = _conv(32, 3, "Conv2d_1a_3x3", stride=2)(x)
    x = _conv(32, 3, "Conv2d_2a_3x3")(x)
    x = _conv(64, 3, "Conv2d_2b_3x3", padding=1)(x)
    x = _max_pool_3x3_s2(x)
    x = _conv(80, 1, "Conv2d_3b_1x1")(x)
    x = _conv(192, 3, "Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(max_pool=False, name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    pool = jnp.mean(x, axis=(1, 2))
    return pool, Classifier(name="fc")(pool)


class Classifier(nn.Module):
  """The 1008-way classifier without its bias (`fc/bias` stays in the variables,
  so the weights file maps one to one)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], NUM_LOGITS))
    self.param("bias", nn.initializers.zeros, (NUM_LOGITS,))
    return jnp.dot(x, kernel, precision=_HIGHEST)


# ----------------------------------------------------------------------------
# Resizing to 299x299: one axis at a time, each output a blend of two inputs.
# ----------------------------------------------------------------------------


def _tf1_taps(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """TF1's `resize_bilinear(align_corners=False)`: source x = i * size / out,
  no half-pixel offset, in float32 as torch-fidelity computes it."""
  x = np.arange(out, dtype=np.float32) * np.float32(size / out)
  lo = x.astype(np.int64)
  return lo, np.minimum(lo + 1, size - 1), x - lo.astype(np.float32)


def _torch_taps(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """PyTorch's bilinear `align_corners=False`: source x = (i + 0.5) * size /
  out - 0.5, clamped at 0."""
  x = np.maximum((np.arange(out, dtype=np.float32) + np.float32(0.5)) * np.float32(size / out)
                 - np.float32(0.5), np.float32(0))
  lo = np.minimum(np.floor(x).astype(np.int64), size - 1)
  weight = np.clip(x - lo.astype(np.float32), 0, 1).astype(np.float32)
  return lo, np.minimum(lo + 1, size - 1), weight


def _blend_axis(x: jax.Array, axis: int, taps, tf1: bool) -> jax.Array:
  lo, hi, w = taps
  a, b = jnp.take(x, lo, axis=axis), jnp.take(x, hi, axis=axis)
  shape = [1] * x.ndim
  shape[axis] = len(w)
  w = jnp.asarray(w).reshape(shape)
  # Each in the order its reference computes it.
  return a + (b - a) * w if tf1 else (1 - w) * a + w * b


def to_inception_input(images: jax.Array, resize: str) -> jax.Array:
  """uint8 images [N, H, W, 1 or 3] -> float32 [N, 299, 299, 3] in [-1, 1] by
  convention `resize` (one of RESIZES); gray images are repeated to RGB."""
  if resize not in RESIZES:
    raise ValueError(f"unknown resize {resize!r}; use one of {', '.join(RESIZES)}")
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be [N, H, W, 1 or 3]; got shape {tuple(images.shape)}")
  x = images.astype(jnp.float32)
  if images.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  tf1 = resize == "tf1"
  if not tf1:
    x = x / 255.0
  taps = _tf1_taps if tf1 else _torch_taps
  x = _blend_axis(x, 2, taps(x.shape[2], INPUT_SIZE), tf1)
  x = _blend_axis(x, 1, taps(x.shape[1], INPUT_SIZE), tf1)
  return (x - 128.0) / 128.0 if tf1 else 2.0 * x - 1.0


def features(variables, images: jax.Array, resize: str) -> tuple[jax.Array, jax.Array]:
  """(pool features [N, 2048], unbiased logits [N, 1008]) of uint8 images."""
  return FIDInceptionV3().apply(variables, to_inception_input(images, resize))


def variable_shapes() -> dict:
  """The shapes of the network's variables (no computation)."""
  x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  return jax.eval_shape(lambda x: FIDInceptionV3().init(jax.random.PRNGKey(0), x), x)


def random_variables(seed: int = 0) -> dict:
  """Random weights (scaled by fan-in, so activations stay of order one) and
  random batch-norm statistics, for tests and benchmarks: not a network to
  measure anything with. Drawn from the shapes alone, with no forward pass."""
  rng = np.random.default_rng(seed)
  out = {}
  for path, leaf in sorted(traverse_util.flatten_dict(variable_shapes()).items()):
    if path[-1] == "kernel":
      value = rng.normal(size=leaf.shape) * np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
    elif path[-1] in ("scale", "var"):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:                                  # bias, mean
      value = 0.1 * rng.normal(size=leaf.shape)
    out[path] = jnp.asarray(value, jnp.float32)
  return traverse_util.unflatten_dict(out)
