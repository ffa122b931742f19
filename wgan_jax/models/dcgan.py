"""DCGAN generator and critic, as in the WGAN reference code (models/dcgan.py).

Generator: a 4x4 map of ngf * isize / 8 channels from the noise, then 4x4
stride-2 transposed convolutions halving the channels and doubling the size,
batch norm and ReLU, `n_extra_layers` 3x3 convolutions, a last transposed
convolution to the image channels and tanh. Critic: the mirror image with
4x4 stride-2 convolutions, LeakyReLU(0.2), normalisation on every layer but
the first, and a final 4x4 valid convolution to one value (no sigmoid).
No biases; weights ~ N(0, 0.02), normalisation scales ~ N(1, 0.02).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from wgan_jax.models.layers import Conv, ConvTranspose, torch_padding
from wgan_jax.rules import at_least, choice

NORMS = ("batch", "layer", "none")
GENERATOR_NORMS = ("batch", "none")
GENERATOR_RULES = {"ngf": at_least(1, 4096), "n_extra_layers": at_least(0, 16),
                   "norm": choice(*GENERATOR_NORMS)}
CRITIC_RULES = {"ndf": at_least(1, 4096), "n_extra_layers": at_least(0, 16),
                "norm": choice(*NORMS)}
_W_INIT = nn.initializers.normal(0.02)


def _scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _norm(kind: str, train: bool, axis_name: str | None) -> nn.Module | None:
  if kind == "batch":
    # PyTorch's BatchNorm2d: momentum 0.1 (flax counts the other way), eps 1e-5.
    # Under pmap, `axis_name` makes the statistics those of the global batch.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        scale_init=_scale_init, axis_name=axis_name)
  if kind == "layer":
    # WGAN-GP's critic layer norm: statistics over (H, W, C) of each example.
    return nn.LayerNorm(epsilon=1e-5, reduction_axes=(1, 2, 3), feature_axes=-1,
                        scale_init=_scale_init)
  if kind == "none":
    return None
  raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


def _apply_norm(kind: str, x: jax.Array, train: bool, axis_name: str | None = None
                ) -> jax.Array:
  norm = _norm(kind, train, axis_name)
  return x if norm is None else norm(x)


def image_size_problem(size: int) -> str | None:
  """Why DCGAN cannot make `size`x`size` images, or None."""
  if size < 16 or size % 16:
    return (f"data.image_size={size} does not suit DCGAN: use a multiple of 16 "
            "(16, 32, 64, ...)")
  return None


def check_image_size(size: int) -> None:
  problem = image_size_problem(size)
  if problem:
    raise ValueError(problem)


class DCGANGenerator(nn.Module):
  image_size: int = 64
  channels: int = 3
  ngf: int = 64
  n_extra_layers: int = 0
  norm: str = "batch"  # "batch" or "none" (the WGAN paper's no-BN generator)
  axis_name: str | None = None  # pmap axis for global batch statistics
  convolutions: str = "auto"  # "auto" or one of layers.IMPLS

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
    check_image_size(self.image_size)
    cngf = self.ngf * self.image_size // 8
    x = z.reshape(z.shape[0], 1, 1, -1)
    # 1x1 -> 4x4: PyTorch's ConvTranspose2d(nz, cngf, 4, 1, 0).
    x = ConvTranspose(cngf, (4, 4), (1, 1), torch_padding(4, 0), use_bias=False,
                      kernel_init=_W_INIT, impl=self.convolutions)(x)
    x = nn.relu(_apply_norm(self.norm, x, train, self.axis_name))
    size = 4
    while size < self.image_size // 2:
      cngf //= 2
      x = ConvTranspose(cngf, (4, 4), (2, 2), torch_padding(4, 1), use_bias=False,
                        kernel_init=_W_INIT, impl=self.convolutions)(x)
      x = nn.relu(_apply_norm(self.norm, x, train, self.axis_name))
      size *= 2
    for _ in range(self.n_extra_layers):
      x = Conv(cngf, (3, 3), padding=1, use_bias=False, kernel_init=_W_INIT,
               impl=self.convolutions)(x)
      x = nn.relu(_apply_norm(self.norm, x, train, self.axis_name))
    x = ConvTranspose(self.channels, (4, 4), (2, 2), torch_padding(4, 1), use_bias=False,
                      kernel_init=_W_INIT, impl=self.convolutions)(x)
    return jnp.tanh(x)


class DCGANCritic(nn.Module):
  image_size: int = 64
  ndf: int = 64
  n_extra_layers: int = 0
  norm: str = "batch"  # "batch", "layer" (WGAN-GP) or "none"
  axis_name: str | None = None  # pmap axis for global batch statistics
  convolutions: str = "auto"  # "auto" or one of layers.IMPLS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    check_image_size(self.image_size)
    conv = lambda f, k, s, p: Conv(f, (k, k), (s, s), padding=p, use_bias=False,
                                   kernel_init=_W_INIT, impl=self.convolutions)
    norm = lambda y: _apply_norm(self.norm, y, train, self.axis_name)
    x = nn.leaky_relu(conv(self.ndf, 4, 2, 1)(x), 0.2)
    cndf, size = self.ndf, self.image_size // 2
    for _ in range(self.n_extra_layers):
      x = nn.leaky_relu(norm(conv(cndf, 3, 1, 1)(x)), 0.2)
    while size > 4:
      cndf *= 2
      x = nn.leaky_relu(norm(conv(cndf, 4, 2, 1)(x)), 0.2)
      size //= 2
    x = conv(1, 4, 1, 0)(x)  # 4x4 -> 1x1
    return x.reshape(x.shape[0])
