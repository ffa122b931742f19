"""Layers shared by the image models.

`ConvTranspose` computes exactly what `flax.linen.ConvTranspose` computes (same
parameter, same output) without lowering to a strided `lax.conv_transpose`:
on XLA:CPU the weight gradient of that op is ~25x slower than it needs to be.
A transposed convolution with stride s splits into s*s output phases; each
phase is an ordinary stride-1 convolution of the input with the subset of
kernel taps that reach it. The phases are then interleaved (depth-to-space).
The arithmetic is the same; only the slow code path is avoided.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]
_DN = ("NHWC", "HWIO", "NHWC")


def _phase_taps(k: int, s: int, lo: int, phase: int) -> tuple[list[int], int]:
  """Kernel taps t (ascending input offset) that reach output phase `phase`,
  and the input offset of the first.

  With x dilated by s and padded by `lo`, output o = s*q + phase reads input
  q + (phase + t - lo) / s through tap t, whenever that is an integer.
  """
  taps = [t for t in range(k) if (phase + t - lo) % s == 0]
  return taps, (phase + taps[0] - lo) // s if taps else 0


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                   padding: Sequence[tuple[int, int]]) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=NHWC/HWIO)`
  (explicit padding, `transpose_kernel=False`) as stride-1 convolutions."""
  (kh, kw), (sh, sw) = kernel.shape[:2], strides
  (lo_h, hi_h), (lo_w, hi_w) = padding
  n, h, w, _ = x.shape
  out_h = (h - 1) * sh + 1 + lo_h + hi_h - kh + 1
  out_w = (w - 1) * sw + 1 + lo_w + hi_w - kw + 1
  # Every phase computes ceil(out / s) positions; the surplus is cropped below.
  q_h, q_w = -(-out_h // sh), -(-out_w // sw)

  rows = []
  for a in range(sh):
    taps_h, d_h = _phase_taps(kh, sh, lo_h, a)
    cols = []
    for b in range(sw):
      taps_w, d_w = _phase_taps(kw, sw, lo_w, b)
      sub = kernel[jnp.array(taps_h)][:, jnp.array(taps_w)]
      # Output q reads inputs q + d .. q + d + len(taps) - 1: pad (or crop) to match.
      pads = ((-d_h, q_h - h + d_h + len(taps_h) - 1), (-d_w, q_w - w + d_w + len(taps_w) - 1))
      cols.append(jax.lax.conv_general_dilated(x, sub, (1, 1), pads, dimension_numbers=_DN))
    rows.append(jnp.stack(cols, axis=3))  # [n, q_h, q_w, sw, c]
  y = jnp.stack(rows, axis=2)  # [n, q_h, sh, q_w, sw, c]
  return y.reshape(n, q_h * sh, q_w * sw, y.shape[-1])[:, :out_h, :out_w]


class ConvTranspose(nn.Module):
  """Drop-in for `nn.ConvTranspose` with explicit integer padding: same
  `kernel` parameter (shape kh, kw, in, out), same function."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0))
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    y = conv_transpose(x, kernel.astype(x.dtype), self.strides, self.padding)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32).astype(x.dtype)
    return y


def torch_padding(kernel_size: int, padding: int) -> tuple[tuple[int, int], tuple[int, int]]:
  """Explicit lax padding of a PyTorch `ConvTranspose2d(k, s, padding=p)`."""
  pad = kernel_size - 1 - padding
  return ((pad, pad), (pad, pad))
