"""The WGAN-GP paper's ResNet generator and critic (gan_cifar_resnet.py for
32x32, the ResNet of gan_64x64.py for 64x64).

Residual blocks: norm, ReLU, 3x3 conv, norm, ReLU, 3x3 conv, plus a shortcut
(identity, or a 1x1 conv with the same resampling). Up-sampling is nearest
neighbour before the conv (UpsampleConv); down-sampling is a 2x2 mean pool
after the conv (ConvMeanPool), or before it on the shortcut (MeanPoolConv).
The generator uses batch norm, the critic no normalisation (WGAN-GP).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_HE = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")
_GLOROT = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def _upsample(x: jax.Array) -> jax.Array:
  n, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)


def _mean_pool(x: jax.Array) -> jax.Array:
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _conv(features: int, size: int, init=_HE) -> nn.Conv:
  return nn.Conv(features, (size, size), padding="SAME", kernel_init=init)


class ResidualBlock(nn.Module):
  features: int
  resample: str | None = None  # "up", "down" or None
  norm: bool = True
  axis_name: str | None = None  # pmap axis for global batch statistics

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    in_features = x.shape[-1]
    bn = lambda y: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                axis_name=self.axis_name)(y) if self.norm else y
    if self.resample is None and in_features == self.features:
      shortcut = x
    elif self.resample == "up":
      shortcut = _conv(self.features, 1, _GLOROT)(_upsample(x))
    elif self.resample == "down":
      shortcut = _mean_pool(_conv(self.features, 1, _GLOROT)(x))
    else:
      shortcut = _conv(self.features, 1, _GLOROT)(x)

    y = nn.relu(bn(x))
    if self.resample == "up":
      y = _conv(self.features, 3)(_upsample(y))
    else:
      y = _conv(in_features if self.resample == "down" else self.features, 3)(y)
    y = nn.relu(bn(y))
    y = _conv(self.features, 3)(y)
    if self.resample == "down":
      y = _mean_pool(y)
    return shortcut + y


class ResNetGenerator(nn.Module):
  """Linear to a 4x4 map, up-sampling residual blocks to `image_size`, then
  BN, ReLU, 3x3 conv to the image channels and tanh."""
  image_size: int = 32
  channels: int = 3
  dim: int = 128
  # Channels (x dim) of the 4x4 map, then of each up-sampling block's output:
  # (1, 1, 1, 1) for CIFAR-10, (8, 8, 4, 2, 1) for 64x64.
  multipliers: Sequence[int] = (1, 1, 1, 1)
  axis_name: str | None = None  # pmap axis for global batch statistics

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
    blocks = len(self.multipliers) - 1
    if 4 * 2 ** blocks != self.image_size:
      raise ValueError(f"{blocks} up-sampling blocks make {4 * 2 ** blocks}x{4 * 2 ** blocks} "
                       f"images, not {self.image_size}x{self.image_size}")
    first = self.dim * self.multipliers[0]
    x = nn.Dense(4 * 4 * first, kernel_init=_GLOROT)(z).reshape(z.shape[0], 4, 4, first)
    for m in self.multipliers[1:]:
      x = ResidualBlock(self.dim * m, "up", axis_name=self.axis_name)(x, train)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     axis_name=self.axis_name)(x)
    return jnp.tanh(_conv(self.channels, 3)(nn.relu(x)))


class ResNetCritic(nn.Module):
  """The CIFAR-10 critic (`multipliers` (1, 1, 1, 1)): an optimised first
  down block, a down block, two plain blocks, ReLU, global mean pool, linear.
  For 64x64, `multipliers` (1, 2, 4, 8, 8) with every block after the first
  conv down-sampling, flattened 4x4 map, linear (gan_64x64.py)."""
  image_size: int = 32
  dim: int = 128
  multipliers: Sequence[int] = (1, 1, 1, 1)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    if self.image_size == 32:
      # OptimizedResBlockDisc1: conv, ReLU, ConvMeanPool + MeanPoolConv shortcut.
      shortcut = _conv(self.dim, 1, _GLOROT)(_mean_pool(x))
      y = _mean_pool(_conv(self.dim, 3)(nn.relu(_conv(self.dim, 3)(x))))
      x = shortcut + y
      for i, m in enumerate(self.multipliers[1:]):
        x = ResidualBlock(self.dim * m, "down" if i == 0 else None, norm=False)(x, train)
      x = jnp.mean(nn.relu(x), axis=(1, 2))
    else:
      x = _conv(self.dim * self.multipliers[0], 3)(x)
      size = self.image_size
      for m in self.multipliers[1:]:
        x = ResidualBlock(self.dim * m, "down", norm=False)(x, train)
        size //= 2
      if size != 4:
        raise ValueError(f"critic multipliers {tuple(self.multipliers)} reduce "
                         f"{self.image_size}x images to {size}x{size}, not 4x4")
      x = x.reshape(x.shape[0], -1)
    return nn.Dense(1, kernel_init=_GLOROT)(x).reshape(x.shape[0])
