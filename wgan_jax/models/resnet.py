"""The WGAN-GP paper's ResNet generator and critic (gan_cifar_resnet.py for
32x32, the ResNet of gan_64x64.py for 64x64).

Residual blocks: norm, ReLU, 3x3 conv, norm, ReLU, 3x3 conv, plus a shortcut
(identity, or a 1x1 conv with the same resampling). Up-sampling is nearest
neighbour before the conv (UpsampleConv); down-sampling is a 2x2 mean pool
after the conv (ConvMeanPool), or before it on the shortcut (MeanPoolConv).
The generator uses batch norm; the CIFAR-10 critic no normalisation, the
64x64 critic layer norm in every block (gan_64x64.py's `Normalize` under
WGAN-GP). Weights start as tflib's: uniform with std sqrt(4 / (fan_in +
fan_out)) for the "He" convolutions, sqrt(2 / (fan_in + fan_out)) (Glorot)
for the shortcuts, the first critic convolution, the linear layers and the
CIFAR-10 generator's output convolution; in the 64x64 network the first
convolution of each block has no bias.

The blocks' normalisation is injectable (`ResidualBlock.norm` may build a
module that also reads class labels), and the generator's layers and the
critic's features are methods, so models/conditional.py builds the
class-conditional networks from these same blocks.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wgan_jax.models import improved, spectral

# tflib's conv2d: he_init std sqrt(4 / (fan_in + fan_out)), else sqrt(2 / (...)).
_HE = nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")
_GLOROT = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
def _upsample(x: jax.Array) -> jax.Array:
  n, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)


def _mean_pool(x: jax.Array) -> jax.Array:
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _plain_conv(features: int, size: int, init=_HE, bias: bool = True) -> nn.Conv:
  return nn.Conv(features, (size, size), padding="SAME", kernel_init=init, use_bias=bias)


class ResidualBlock(nn.Module):
  features: int
  resample: str | None = None  # "up", "down" or None
  # "batch", "layer", "none", "spectral" (every convolution spectrally normalised,
  # no normalisation layer), or a factory of a module called as
  # module(y, labels, train) (conditional batch norm: models/conditional.py).
  norm: str | Callable[[], nn.Module] = "batch"
  axis_name: str | None = None  # pmap axis for global batch statistics
  first_bias: bool = True  # gan_64x64.py's blocks have none on their first conv

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, labels: jax.Array | None = None) -> jax.Array:
    in_features = x.shape[-1]
    sn = self.norm == "spectral"
    _conv = lambda *args, **kwargs: spectral.normalized(self, _plain_conv(*args, **kwargs), sn)

    def bn(y):
      if callable(self.norm):
        return self.norm()(y, labels, train)
      if self.norm == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                            axis_name=self.axis_name)(y)
      if self.norm == "layer":
        return nn.LayerNorm(epsilon=1e-5, reduction_axes=(1, 2, 3), feature_axes=-1)(y)
      return y

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
      y = _conv(self.features, 3, bias=self.first_bias)(_upsample(y))
    else:
      y = _conv(in_features if self.resample == "down" else self.features, 3,
                bias=self.first_bias)(y)
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
    return self.layers(z, train)

  def layers(self, z: jax.Array, train: bool, block_norm: str | Callable[[], nn.Module] = "batch",
             labels: jax.Array | None = None) -> jax.Array:
    """The network, with `block_norm` (given `labels`) in the residual blocks;
    the last norm is batch norm either way (gan_cifar_resnet.py's OutputN gets
    no labels)."""
    blocks = len(self.multipliers) - 1
    if 4 * 2 ** blocks != self.image_size:
      raise ValueError(f"{blocks} up-sampling blocks make {4 * 2 ** blocks}x{4 * 2 ** blocks} "
                       f"images, not {self.image_size}x{self.image_size}")
    first = self.dim * self.multipliers[0]
    cifar = self.image_size == 32
    x = nn.Dense(4 * 4 * first, kernel_init=_GLOROT)(z).reshape(z.shape[0], 4, 4, first)
    for m in self.multipliers[1:]:
      x = ResidualBlock(self.dim * m, "up", norm=block_norm, axis_name=self.axis_name,
                        first_bias=cifar)(x, train, labels)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     axis_name=self.axis_name)(x)
    # gan_cifar_resnet.py's output conv is Glorot (he_init=False), gan_64x64.py's He.
    return jnp.tanh(_plain_conv(self.channels, 3, _GLOROT if cifar else _HE)(nn.relu(x)))


class ResNetCritic(nn.Module):
  """The CIFAR-10 critic (`multipliers` (1, 1, 1, 1)): an optimised first
  down block, a down block, two plain blocks, ReLU, global mean pool, linear.
  For 64x64, `multipliers` (1, 2, 4, 8, 8) with every block after the first
  conv down-sampling, flattened 4x4 map, linear (gan_64x64.py). With
  `minibatch_kernels`, the linear map takes concat(x, o(x)) (models/improved.py)."""
  image_size: int = 32
  dim: int = 128
  multipliers: Sequence[int] = (1, 1, 1, 1)
  norm: str = "none"  # "none" (gan_cifar_resnet.py), "layer" (gan_64x64.py) or "spectral"
  minibatch_kernels: int = 0  # B; 0: no minibatch discrimination
  minibatch_kernel_dim: int = improved.DEFAULT_KERNEL_DIM
  axis_name: str | None = None  # pmap axis (minibatch discrimination over all devices)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    h = self.features(x, train)
    return self.linear(1)(h).reshape(h.shape[0])

  def linear(self, features: int):
    """An output layer on the features (spectrally normalised with the rest)."""
    return spectral.normalized(self, nn.Dense(features, kernel_init=_GLOROT),
                               self.norm == "spectral")

  def features(self, x: jax.Array, train: bool) -> jax.Array:
    """What the output layer reads: the pooled (32x32) or flattened (64x64) last
    map, sown as "intermediates"/"features", with the minibatch features
    appended when `minibatch_kernels` is set."""
    _conv = lambda *args, **kwargs: spectral.normalized(self, _plain_conv(*args, **kwargs),
                                                        self.norm == "spectral")
    if self.image_size == 32:
      # OptimizedResBlockDisc1: conv, ReLU, ConvMeanPool + MeanPoolConv shortcut.
      shortcut = _conv(self.dim, 1, _GLOROT)(_mean_pool(x))
      y = _mean_pool(_conv(self.dim, 3)(nn.relu(_conv(self.dim, 3)(x))))
      x = shortcut + y
      for i, m in enumerate(self.multipliers[1:]):
        x = ResidualBlock(self.dim * m, "down" if i == 0 else None, norm=self.norm)(x, train)
      x = jnp.mean(nn.relu(x), axis=(1, 2))
    else:
      x = _conv(self.dim * self.multipliers[0], 3, _GLOROT)(x)
      size = self.image_size
      for m in self.multipliers[1:]:
        x = ResidualBlock(self.dim * m, "down", norm=self.norm, first_bias=False)(x, train)
        size //= 2
      if size != 4:
        raise ValueError(f"critic multipliers {tuple(self.multipliers)} reduce "
                         f"{self.image_size}x images to {size}x{size}, not 4x4")
      x = x.reshape(x.shape[0], -1)
    self.sow("intermediates", "features", x)
    if self.minibatch_kernels:
      x = jnp.concatenate([x, improved.MinibatchDiscrimination(
          self.minibatch_kernels, self.minibatch_kernel_dim, self.axis_name)(x)], axis=-1)
    return x


# ---------------------------------------------------------------- factories (models/registry.py)

def generator(cfg, data_shape, *, axis_name=None, convolutions="auto", techniques=None):
  del convolutions, techniques  # Stride-1 convolutions only; batch norm only.
  height, _, channels = data_shape
  return ResNetGenerator(image_size=height, channels=channels, dim=cfg.dim,
                         multipliers=tuple(cfg.multipliers), axis_name=axis_name)


def critic(cfg, data_shape, *, axis_name=None, convolutions="auto", techniques=None):
  del convolutions  # No batch norm: axis_name is for minibatch discrimination only.
  return ResNetCritic(image_size=data_shape[0], dim=cfg.dim, multipliers=tuple(cfg.multipliers),
                      norm=cfg.norm, axis_name=axis_name,
                      **improved.critic_settings(techniques))
