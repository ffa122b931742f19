"""MLP generator and critic: the WGAN-GP toy networks and the WGAN paper's MLPs."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """ReLU hidden layers, then a linear map reshaped to `output_shape`.

  The toy generator (noise 2 -> 3x512 -> 2), the toy critic (2 -> 3x512 -> 1)
  and the WGAN paper's MLP generator/critic are all this module; an image
  input is flattened first and an image output gets `tanh`.
  """
  features: int = 512
  depth: int = 3
  output_shape: Sequence[int] = (2,)
  output_activation: str = "linear"  # "linear" or "tanh"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    del train  # No batch statistics: same function in training and sampling.
    x = x.reshape((x.shape[0], -1))
    for _ in range(self.depth):
      x = nn.relu(nn.Dense(self.features)(x))
    size = 1
    for d in self.output_shape:
      size *= d
    x = nn.Dense(size)(x)
    if self.output_activation == "tanh":
      x = jnp.tanh(x)
    return x.reshape((x.shape[0],) + tuple(self.output_shape))
