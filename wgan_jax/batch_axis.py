"""How an update sees its batch, so that random numbers and means are those of
the global batch however it is split.

Under `jax.jit` over a device mesh an update sees the whole batch (XLA splits
it). Under `jax.pmap(axis_name=...)` each device sees its share: numbers drawn
in the program are drawn for the global batch and each device takes its rows
(`local`), and means over the batch are averaged over the devices (`mean`), so
every device computes what one device computes on the whole batch.
"""
from __future__ import annotations

import dataclasses

import jax

from wgan_jax.state import PyTree


def local_slice(x: jax.Array, axis_name: str, axis: int = 0) -> jax.Array:
  """This device's share of `x` along `axis` inside `jax.pmap(axis_name=...)`:
  device i of n takes the i-th of n equal slices, the rows it would hold of a
  batch split over the devices."""
  n = jax.lax.axis_size(axis_name)
  if x.shape[axis] % n:
    raise ValueError(f"axis {axis} of shape {x.shape} does not split over {n} devices")
  size = x.shape[axis] // n
  return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(axis_name) * size, size, axis)


@dataclasses.dataclass(frozen=True)
class BatchAxis:
  """The pmap axis an update runs under (`name`), or None: the whole batch."""
  name: str | None = None

  def size(self, local: int) -> int:
    """The global batch, from this device's `local` share."""
    return local if self.name is None else local * jax.lax.axis_size(self.name)

  def local(self, x: jax.Array, axis: int = 0) -> jax.Array:
    """This device's rows of `x`, drawn for the global batch along `axis`."""
    return x if self.name is None else local_slice(x, self.name, axis)

  def mean(self, tree: PyTree) -> PyTree:
    """Mean over the devices. Losses and metrics are means over each device's
    shard; the shards are equal, so this is the global batch's mean. So are
    gradients, also through cross-device batch norm: the transpose of its
    pmean hands every device the cotangents of all devices' losses."""
    return tree if self.name is None else jax.lax.pmean(tree, self.name)
