"""Convolutions for the image models that avoid XLA:CPU's slow code paths.

XLA lowers the gradients of a strided convolution to convolutions with a
dilated operand: a transposed convolution's weight gradient and a strided
convolution's input gradient. On XLA:CPU those run 3-25x slower than an
ordinary convolution doing the same arithmetic (BUILD.md, design notes).
Both are transposed convolutions, and a transposed convolution with stride s
splits into s*s output phases; each phase is an ordinary stride-1
convolution of the input with the kernel taps that reach it. So:

- `conv_transpose` / `ConvTranspose` compute exactly what
  `lax.conv_transpose` / `flax.linen.ConvTranspose` compute (same parameter,
  same output) as stride-1 convolutions, whose gradients are stride-1 too.
- `conv` / `Conv` compute `lax.conv_general_dilated` / `flax.linen.Conv`,
  forward and weight gradient as XLA does them, and the input gradient as
  such a `conv_transpose`.

GPUs (cuDNN) and TPUs run the dilated forms natively, so the layers choose
per backend (`impl`, the config's `convolutions`): "phase_split" on CPU,
"xla" (plain `lax` convolutions) elsewhere; both compute the same function
with the same parameters, so checkpoints move between them.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wgan_jax.configs.schema import CONVOLUTION_IMPLS as IMPLS

Initializer = Callable[..., jax.Array]
Padding = Sequence[tuple[int, int]]
_DN = ("NHWC", "HWIO", "NHWC")
# Output phases of fewer channels than this are computed as one convolution:
# narrower matmuls leave most of an AVX-512 register (16 floats) empty.
_MIN_PHASE_FEATURES = 16


def backend_impl() -> str:
  """The formulation for the default backend: the phase split on XLA:CPU, whose
  dilated-convolution gradients are slow; XLA's own on GPU and TPU."""
  return "phase_split" if jax.default_backend() == "cpu" else "xla"


def phase_split(impl: str) -> bool:
  """Whether convolutions formulated by `impl` ("auto": `backend_impl()`) use the phase split."""
  impl = backend_impl() if impl == "auto" else impl
  if impl not in IMPLS:
    raise ValueError(f"unknown convolution impl {impl!r}; expected one of auto, "
                     f"{', '.join(IMPLS)}")
  return impl == "phase_split"


def _phase_taps(k: int, s: int, lo: int, phase: int) -> tuple[list[int], int]:
  """Kernel taps t (ascending input offset) that reach output phase `phase`,
  and the input offset of the first.

  With x dilated by s and padded by `lo`, output o = s*q + phase reads input
  q + (phase + t - lo) / s through tap t, whenever that is an integer.
  """
  taps = [t for t in range(k) if (phase + t - lo) % s == 0]
  return taps, (phase + taps[0] - lo) // s if taps else 0


def _out_size(size: int, k: int, s: int, pad: tuple[int, int]) -> int:
  return (size - 1) * s + 1 + pad[0] + pad[1] - k + 1


def _separate_phases(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                     padding: Padding) -> jax.Array:
  """One stride-1 convolution per output phase, interleaved."""
  (kh, kw), (sh, sw) = kernel.shape[:2], strides
  n, h, w, _ = x.shape
  out_h, out_w = _out_size(h, kh, sh, padding[0]), _out_size(w, kw, sw, padding[1])
  # Every phase computes ceil(out / s) positions; the surplus is cropped below.
  q_h, q_w = -(-out_h // sh), -(-out_w // sw)
  rows = []
  for a in range(sh):
    taps_h, d_h = _phase_taps(kh, sh, padding[0][0], a)
    cols = []
    for b in range(sw):
      taps_w, d_w = _phase_taps(kw, sw, padding[1][0], b)
      if not (taps_h and taps_w):  # stride > kernel: no tap reaches this phase
        cols.append(jnp.zeros((n, q_h, q_w, kernel.shape[-1]), x.dtype))
        continue
      # The taps of a phase are every s-th: a strided slice (a gather's
      # gradient would be a scatter, slow on XLA:CPU).
      sub = kernel[taps_h[0]::sh, taps_w[0]::sw]
      # Output q reads inputs q + d .. q + d + len(taps) - 1: pad (or crop) to match.
      pads = ((-d_h, q_h - h + d_h + len(taps_h) - 1), (-d_w, q_w - w + d_w + len(taps_w) - 1))
      cols.append(jax.lax.conv_general_dilated(x, sub, (1, 1), pads, dimension_numbers=_DN))
    rows.append(jnp.stack(cols, axis=3))  # [n, q_h, q_w, sw, c]
  y = jnp.stack(rows, axis=2)  # [n, q_h, sh, q_w, sw, c]
  return y.reshape(n, q_h * sh, q_w * sw, y.shape[-1])[:, :out_h, :out_w]


def _fused_plan(k: int, s: int, lo: int) -> tuple[int, int, list[list[int]]]:
  """How all s phases of one spatial axis become one convolution.

  Outputs are grouped in blocks of s starting `shift` outputs early: block r
  holds outputs s*r - shift + j, j < s, and output j of block r reads input
  r + e through tap t = s*e - j + shift + lo. The shift is chosen so that
  the blocks' input windows [e_min, e_max] are narrowest (for DCGAN's k=4,
  s=2, torch padding 1: two taps, not three). Returns the shift, e_min and
  the tap table [window, s] (-1 where no tap reaches).
  """
  best = None
  for shift in range(s):
    offsets = [(t + j - shift - lo) // s for j in range(s) for t in range(k)
               if (t + j - shift - lo) % s == 0]
    lo_e, hi_e = min(offsets), max(offsets)
    if best is None or hi_e - lo_e < best[2] - best[1]:
      best = (shift, lo_e, hi_e)
  shift, lo_e, hi_e = best
  taps = lambda e: [t if 0 <= t < k else -1 for t in (s * e - j + shift + lo for j in range(s))]
  return shift, lo_e, [taps(e) for e in range(lo_e, hi_e + 1)]


def _fused_phases(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                  padding: Padding) -> jax.Array:
  """All output phases as the channels of one stride-1 convolution, then
  depth-to-space: one matmul s*s times wider, for narrow outputs."""
  (kh, kw), (sh, sw) = kernel.shape[:2], strides
  n, h, w, _ = x.shape
  c_in, c_out = kernel.shape[2:]
  out_h, out_w = _out_size(h, kh, sh, padding[0]), _out_size(w, kw, sw, padding[1])
  shift_h, e_h, table_h = _fused_plan(kh, sh, padding[0][0])
  shift_w, e_w, table_w = _fused_plan(kw, sw, padding[1][0])
  # Combined kernel [window_h, window_w, c_in, (sh, sw, c_out)], zero where no
  # tap reaches, from static slices (their gradient is cheap, a gather's is not).
  zero = jnp.zeros((c_in, c_out), kernel.dtype)
  tap = lambda t_h, t_w: kernel[t_h, t_w] if t_h >= 0 and t_w >= 0 else zero
  combined = jnp.stack([
      jnp.stack([
          jnp.concatenate([tap(t_h, t_w) for t_h in table_h[e_h] for t_w in table_w[e_w]], -1)
          for e_w in range(len(table_w))])
      for e_h in range(len(table_h))])
  blocks_h, blocks_w = -(-(out_h + shift_h) // sh), -(-(out_w + shift_w) // sw)
  pads = ((-e_h, blocks_h - 1 + e_h + len(table_h) - 1 - (h - 1)),
          (-e_w, blocks_w - 1 + e_w + len(table_w) - 1 - (w - 1)))
  # Padding as its own op: with it inside the convolution, XLA:CPU computes
  # this weight gradient on a path ~40x slower (per-phase convolutions are
  # the other way round: each would copy its padded input).
  x = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
  y = jax.lax.conv_general_dilated(x, combined, (1, 1), "VALID", dimension_numbers=_DN)
  y = y.reshape(n, blocks_h, blocks_w, sh, sw, c_out).transpose(0, 1, 3, 2, 4, 5)
  y = y.reshape(n, blocks_h * sh, blocks_w * sw, c_out)
  return y[:, shift_h:shift_h + out_h, shift_w:shift_w + out_w]


def _single_position(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                     padding: Padding) -> jax.Array | None:
  """A 1x1 input (DCGAN's noise): output o is x @ kernel[lo - o], one matmul
  instead of a convolution over mostly padding. None where some output is
  reached by no tap."""
  (kh, kw), (lo_h, lo_w) = kernel.shape[:2], (padding[0][0], padding[1][0])
  out_h, out_w = (_out_size(1, k, s, pad) for k, s, pad in zip((kh, kw), strides, padding))
  if not (0 <= lo_h - out_h + 1 and lo_h < kh and 0 <= lo_w - out_w + 1 and lo_w < kw):
    return None
  taps = kernel[lo_h - out_h + 1:lo_h + 1, lo_w - out_w + 1:lo_w + 1][::-1, ::-1]
  return jnp.einsum("nc,hwcd->nhwd", x.reshape(x.shape[0], -1), taps)


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                   padding: Padding) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=NHWC/HWIO)`
  (explicit padding, `transpose_kernel=False`) as stride-1 convolutions."""
  if x.shape[1:3] == (1, 1):
    outer = _single_position(x, kernel, strides, padding)
    if outer is not None:
      return outer
  if kernel.shape[-1] < _MIN_PHASE_FEATURES and max(strides) > 1:
    return _fused_phases(x, kernel, strides, padding)
  return _separate_phases(x, kernel, strides, padding)


def _lax_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...], padding: Padding
              ) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
         padding: tuple[tuple[int, int], ...]) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, padding, NHWC/HWIO)`
  (explicit padding, as hashable tuples) with the input gradient computed
  by `conv_transpose`."""
  return _lax_conv(x, kernel, strides, padding)


def _conv_fwd(x, kernel, strides, padding):
  return _lax_conv(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, residuals, dy):
  x, kernel = residuals
  # The weight gradient as XLA computes it: a convolution over the batch.
  _, kernel_vjp = jax.vjp(lambda k: _lax_conv(x, k, strides, padding), kernel)
  (d_kernel,) = kernel_vjp(dy)
  # The input gradient is a transposed convolution of dy with the flipped
  # kernel; its padding restores the input's size (rows the stride skipped
  # at the end get zeros).
  pads = tuple((k - 1 - lo, size + lo - 1 - (out - 1) * s)
               for k, (lo, _), size, out, s in zip(kernel.shape[:2], padding, x.shape[1:3],
                                                   dy.shape[1:3], strides))
  d_x = conv_transpose(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3), strides, pads)
  return d_x, d_kernel


conv.defvjp(_conv_fwd, _conv_bwd)


def _explicit_padding(padding: int | Padding, kernel_size: Sequence[int]) -> tuple:
  if isinstance(padding, str):
    raise ValueError(f"layers.Conv takes integer or explicit padding, not {padding!r}")
  if isinstance(padding, int):
    return tuple((padding, padding) for _ in kernel_size)
  return tuple((int(lo), int(hi)) for lo, hi in padding)


class _Convolution(nn.Module):
  """The `kernel` (kh, kw, in, out) and `bias` parameters of flax's
  convolution layers; subclasses say how the kernel is applied."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: int | Padding = ((0, 0), (0, 0))
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  impl: str = "auto"  # "auto" (backend_impl()) or one of IMPLS

  def _convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    y = self._convolve(x, kernel.astype(x.dtype))
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32).astype(x.dtype)
    return y


class Conv(_Convolution):
  """Drop-in for `nn.Conv` with integer or explicit padding (default 0, where
  flax's is "SAME"): same `kernel` (and `bias`) parameters, same function,
  fast input gradient when strided."""
  padding: int | Padding = 0

  def _convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    strides = tuple(self.strides)
    padding = _explicit_padding(self.padding, self.kernel_size)
    if max(strides) > 1 and phase_split(self.impl):
      return conv(x, kernel, strides, padding)
    return _lax_conv(x, kernel, strides, padding)  # Stride 1: XLA's gradients are ordinary.


class ConvTranspose(_Convolution):
  """Drop-in for `nn.ConvTranspose` with explicit integer padding: same
  `kernel` parameter (shape kh, kw, in, out), same function."""
  padding: Padding = ((0, 0), (0, 0))

  def _convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    if phase_split(self.impl):
      return conv_transpose(x, kernel, self.strides, self.padding)
    return jax.lax.conv_transpose(x, kernel, tuple(self.strides), tuple(self.padding),
                                  dimension_numbers=_DN)


def torch_padding(kernel_size: int, padding: int) -> tuple[tuple[int, int], tuple[int, int]]:
  """Explicit lax padding of a PyTorch `ConvTranspose2d(k, s, padding=p)`."""
  pad = kernel_size - 1 - padding
  return ((pad, pad), (pad, pad))
