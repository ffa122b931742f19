"""MLP generator and critic: the WGAN-GP toy networks and the WGAN paper's MLPs."""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wgan_jax.models import improved, spectral
from wgan_jax.models.registry import MLP_INITS as INITS


def _torch_bias_init(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def _dense(features: int, fan_in: int, init: str, last: bool) -> nn.Dense:
  if init == "tflib":
    scale, mode = (1.0, "fan_avg") if last else (2.0, "fan_in")
    return nn.Dense(features, kernel_init=nn.initializers.variance_scaling(scale, mode, "uniform"))
  if init == "torch":
    return nn.Dense(features, kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in",
                                                                           "uniform"),
                    bias_init=_torch_bias_init(fan_in))
  if init == "lecun":
    return nn.Dense(features)
  raise ValueError(f"unknown init {init!r}; expected one of {INITS}")


class MLP(nn.Module):
  """ReLU hidden layers, then a linear map reshaped to `output_shape`.

  The toy generator (noise 2 -> 3x512 -> 2), the toy critic (2 -> 3x512 -> 1)
  and the WGAN paper's MLP generator/critic are all this module; an image
  input is flattened first, and an image output gets `tanh` if asked. The
  last hidden features are sown as "intermediates"/"features" (feature
  matching); `norm` "virtual" (generators) and `minibatch_kernels` (critics)
  add the layers of models/improved.py, `norm` "spectral" (critics)
  normalises every layer's weights by their spectral norm.
  """
  features: int = 512
  depth: int = 3
  output_shape: Sequence[int] = (2,)
  output_activation: str = "linear"  # "linear" or "tanh"
  weight_init: str = "lecun"  # one of INITS (a field may not be called `init`: Module.init)
  norm: str = "none"  # one of GENERATOR_NORMS (generators), CRITIC_NORMS (critics)
  vbn_reference_size: int = 64  # R, with norm "virtual"
  minibatch_kernels: int = 0  # B; 0: no minibatch discrimination
  minibatch_kernel_dim: int = improved.DEFAULT_KERNEL_DIM
  axis_name: str | None = None  # pmap axis (minibatch discrimination over all devices)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    del train  # No batch statistics: same function in training and sampling.
    sn = self.norm == "spectral"
    reference = (improved.reference_noise(self, self.vbn_reference_size, x.shape[1:])
                 if self.norm == "virtual" else None)
    xs = [y.reshape((y.shape[0], -1)) for y in improved.streams(reference, x)]
    for _ in range(self.depth):
      dense = spectral.normalized(
          self, _dense(self.features, xs[-1].shape[-1], self.weight_init, last=False), sn)
      xs = improved.each(dense, xs)
      if self.norm == "virtual":
        xs = improved.VirtualBatchNorm()(*xs)
      xs = [nn.relu(y) for y in xs]
    x = xs[-1]
    self.sow("intermediates", "features", x)
    if self.minibatch_kernels:
      x = jnp.concatenate([x, improved.MinibatchDiscrimination(
          self.minibatch_kernels, self.minibatch_kernel_dim, self.axis_name)(x)], axis=-1)
    x = spectral.normalized(self, _dense(math.prod(self.output_shape), x.shape[-1],
                                         self.weight_init, last=True), sn)(x)
    if self.output_activation == "tanh":
      x = jnp.tanh(x)
    return x.reshape((x.shape[0],) + tuple(self.output_shape))


# ---------------------------------------------------------------- factories (models/registry.py)

def generator(cfg, data_shape, *, axis_name=None, convolutions="auto", techniques=None):
  del axis_name, convolutions  # No batch statistics, no convolutions.
  return MLP(features=cfg.features, depth=cfg.depth, output_shape=data_shape,
             output_activation=cfg.output_activation, weight_init=cfg.weight_init,
             norm=cfg.norm, **improved.generator_settings(techniques))


def critic(cfg, data_shape, *, axis_name=None, convolutions="auto", techniques=None):
  del data_shape, convolutions  # axis_name: for minibatch discrimination only
  return MLP(features=cfg.features, depth=cfg.depth, output_shape=(),
             weight_init=cfg.weight_init, norm=cfg.norm, axis_name=axis_name,
             **improved.critic_settings(techniques))
