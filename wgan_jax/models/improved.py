"""Layers of "Improved Techniques for Training GANs" (Salimans et al. 2016):
minibatch discrimination for critics, virtual batch norm for generators.

Minibatch discrimination (section 3.2; the paper's code, `MinibatchLayer` of
improved-gan's nn.py, B = 100 kernels of C = 5 dimensions): M = x T with
T of shape [A, B, C]; c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_L1);
o(x_i)_b = sum over j != i of c_b(x_i, x_j) (the code masks the example itself
out, so an example alone scores 0); the critic's final linear map takes
concat(x_i, o(x_i)). T starts ~ N(0, 0.05) as there; the code's weight
normalisation, bias and data-dependent initialisation are left out (the
critic's next linear map has a bias of its own). The minibatch is the global
batch: under `jax.jit` over a mesh XLA computes it whole; under `jax.pmap`
(`axis_name` set) every device gathers M of all devices and compares its own
examples with all of them.

Virtual batch norm (section 3.4): each example is normalised with the
statistics of a reference batch fixed at the start of training combined with
the example itself, mean and mean square weighted 1/(R+1) for the example and
R/(R+1) for the reference batch of R (tf-gan's `VBN`; over the spatial axes
too for feature maps); the reference batch itself is normalised with its own
statistics. Generators run their reference noise through the same layers
beside the batch (two streams, one set of parameters), so every layer's
reference statistics come from the current parameters, and an example's
output does not depend on the rest of its batch.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# Salimans et al.'s code: MinibatchLayer(num_kernels=100, dim_per_kernel=5), theta ~ N(0, 0.05).
DEFAULT_KERNELS, DEFAULT_KERNEL_DIM = 100, 5
_T_INIT = nn.initializers.normal(0.05)
# Name of the generators' reference noise in their `batch_stats` collection.
VBN_REFERENCE = "vbn_reference"


def minibatch_features(m: jax.Array, others: jax.Array, offset: jax.Array | int = 0
                       ) -> jax.Array:
  """o(x_i)_b = sum over j != i of exp(-||M_{i,b} - others_{j,b}||_1).

  `m`: [n, B, C], this batch's rows; `others`: [N, B, C], the whole minibatch,
  in which row i of `m` is row `offset + i` (excluded from its own sum)."""
  dist = jnp.sum(jnp.abs(m[:, None] - others[None]), axis=-1)  # [n, N, B]
  self_pair = (offset + jnp.arange(m.shape[0]))[:, None] == jnp.arange(others.shape[0])[None]
  return jnp.sum(jnp.where(self_pair[:, :, None], 0.0, jnp.exp(-dist)), axis=1)


class MinibatchDiscrimination(nn.Module):
  """x [n, ...] (A features once flattened) -> o(x) [n, B]."""
  kernels: int = DEFAULT_KERNELS      # B
  kernel_dim: int = DEFAULT_KERNEL_DIM  # C
  axis_name: str | None = None  # the pmap axis: o(x) over all devices' examples

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    t = self.param("T", _T_INIT, (x.shape[-1], self.kernels, self.kernel_dim), jnp.float32)
    m = jnp.einsum("na,abc->nbc", x, t.astype(x.dtype))
    if self.axis_name is None:
      return minibatch_features(m, m)
    others = jax.lax.all_gather(m, self.axis_name, tiled=True)
    return minibatch_features(m, others, jax.lax.axis_index(self.axis_name) * m.shape[0])


class VirtualBatchNorm(nn.Module):
  """Normalises (reference, x) -> both normalised, features on the last axis."""
  epsilon: float = 1e-5
  scale_init: Callable = nn.initializers.ones

  @nn.compact
  def __call__(self, reference: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    features = x.shape[-1]
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    axes = tuple(range(reference.ndim - 1))  # batch and spatial
    ref_mean = jnp.mean(reference, axes)
    ref_sq = jnp.mean(jnp.square(reference), axes)
    own = tuple(range(1, x.ndim - 1))  # an example's spatial axes (none for vectors)
    w = 1.0 / (reference.shape[0] + 1)
    mean = w * jnp.mean(x, own, keepdims=True) + (1 - w) * ref_mean
    sq = w * jnp.mean(jnp.square(x), own, keepdims=True) + (1 - w) * ref_sq

    def normalise(y, mean, sq):
      var = jnp.maximum(sq - jnp.square(mean), 0.0)
      return (y - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias

    return normalise(reference, ref_mean, ref_sq), normalise(x, mean, sq)


def reference_noise(module: nn.Module, size: int, shape: Sequence[int]) -> jax.Array:
  """The generator's reference noise [size, *shape] ~ N(0, 1) (`shape`: one noise
  vector's), a `batch_stats` variable drawn once at `init` (from the params
  stream) and kept in the state."""
  return module.variable("batch_stats", VBN_REFERENCE, lambda: jax.random.normal(
      module.make_rng("params"), (size, *shape), jnp.float32)).value


def streams(reference: jax.Array | None, z: jax.Array) -> list[jax.Array]:
  """What a generator computes on: [z], or [reference, z] under virtual batch norm."""
  return [z] if reference is None else [reference, z]


def each(layer: Callable[[jax.Array], jax.Array], xs: Sequence[jax.Array]) -> list[jax.Array]:
  """One layer (one set of parameters) applied to every stream."""
  return [layer(x) for x in xs]


# ---------------------------------------------------------------- the factories' settings


def generator_settings(techniques) -> dict:
  """A generator's virtual batch norm settings from a run's `techniques.Techniques`
  (None: the defaults)."""
  return {} if techniques is None else {"vbn_reference_size": techniques.vbn_reference_size}


def critic_settings(techniques) -> dict:
  """A critic's minibatch discrimination settings (None: none)."""
  if techniques is None:
    return {}
  return dict(minibatch_kernels=techniques.minibatch_kernels,
              minibatch_kernel_dim=techniques.minibatch_kernel_dim)
