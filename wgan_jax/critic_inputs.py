"""What the critic sees: real batches scaled to floats (and mirrored at
random, `data.mirror`), and every input, real or generated, passed through the
run's transforms (DiffAugment or ADA, instance noise) in both updates.

A transform's random numbers are drawn for the global batch apart from their
use (`draw`, then `apply`), so a device under pmap takes its rows, and a batch
split into micro-batches takes each micro-batch's rows: the numbers are the
same however the batch is split. Input i of an update (real 0, generated 1 in
the critic update; generated 0, real 1 in the generator's) draws from
fold_in(fold_in(update key, the transform's stream), i).
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import jax
import jax.numpy as jnp

from wgan_jax import ada, augment
from wgan_jax.batch_axis import BatchAxis
from wgan_jax.state import PyTree

Metrics = dict[str, jax.Array]
# Folded into a critic update's key for the noise that dequantises its real batch,
# and for the bits that mirror its images.
_DEQUANTIZE_STREAM = 0x64657175
_MIRROR_STREAM = 0x6d697272


def mirrored(real: jax.Array, key: jax.Array, axis: BatchAxis) -> jax.Array:
  """Each image of `real` [n, H, W, C] flipped left-right with probability 1/2
  (StyleGAN2-ADA's --mirror): the bits drawn for the global batch, this
  device's rows taken, so they do not depend on the device count."""
  flip = axis.local(jax.random.bernoulli(jax.random.fold_in(key, _MIRROR_STREAM), 0.5,
                                         (axis.size(real.shape[0]),)))
  return jnp.where(flip.reshape((-1, 1, 1, 1)), jnp.flip(real, axis=2), real)


def real_to_float(real: jax.Array, key: jax.Array, dequantize: bool, axis: BatchAxis,
                  mirror: bool = False) -> jax.Array:
  """A real batch as the critic takes it: uint8 pixels (as they cross to the
  device) scaled to [-1, 1], or dequantised as gan_cifar_resnet.py does
  (2 (x / 256 - 0.5) + U(0, 1/128)); float data (the toy sets) unchanged.
  `mirror`: the images first flipped at random (`mirrored`). `key` is the
  critic update's."""
  if real.dtype != jnp.uint8:
    return real
  if mirror:
    real = mirrored(real, key, axis)
  x = real.astype(jnp.float32)
  if not dequantize:
    return x / 127.5 - 1.0
  shape = (axis.size(real.shape[0]), *real.shape[1:])
  noise = axis.local(jax.random.uniform(
      jax.random.fold_in(key, _DEQUANTIZE_STREAM), shape, jnp.float32, 0.0, 1.0 / 128))
  return 2.0 * (x / 256.0 - 0.5) + noise


class Transform(Protocol):
  stream: int  # folded into the update's key

  def draw(self, key: jax.Array, shape: tuple[int, ...], axis: BatchAxis) -> PyTree:
    """The numbers for this device's rows of a batch of `shape` (leading batch axis)."""

  def apply(self, x: jax.Array, drawn: PyTree, step: jax.Array) -> jax.Array:
    """`x` transformed at generator step `step`."""

  def metrics(self, step: jax.Array) -> Metrics:
    """What the iteration logs of the transform."""


@dataclasses.dataclass(frozen=True)
class DiffAugment:
  """DiffAugment (Zhao et al. 2020; augment.py) with `policy`."""
  policy: tuple[str, ...]
  stream: int = 0x61756777

  def draw(self, key, shape, axis):
    drawn = augment.draw(key, self.policy, axis.size(shape[0]), shape[1], shape[2])
    return jax.tree.map(axis.local, drawn)

  def apply(self, x, drawn, step):
    del step
    return augment.apply(x, drawn, self.policy)

  def metrics(self, step):
    del step
    return {}


@dataclasses.dataclass(frozen=True)
class AdaptiveAugment:
  """ADA (Karras et al. 2020; ada.py): each op of `policy` (augment.py)
  applied to an image with probability `p`, which the iteration reads from
  the state (`with_probability`) before the updates run."""
  policy: tuple[str, ...]
  p: jax.Array | float = 0.0
  stream: int = 0x61646170

  def draw(self, key, shape, axis):
    n = axis.size(shape[0])
    drawn = (augment.draw(key, self.policy, n, shape[1], shape[2]),
             augment.draw_gates(key, self.policy, n))
    return jax.tree.map(axis.local, drawn)

  def apply(self, x, drawn, step):
    del step
    params, gates = drawn
    applied = {op: u < self.p for op, u in gates.items()}
    return augment.apply(x, params, self.policy, applied)

  def metrics(self, step):
    del step
    return {ada.P_METRIC: jnp.asarray(self.p, jnp.float32)}


def with_probability(transforms: tuple[Transform, ...], p: jax.Array
                     ) -> tuple[Transform, ...]:
  """`transforms` with ADA's probability set to `p` (the state's)."""
  return tuple(dataclasses.replace(t, p=p) if isinstance(t, AdaptiveAugment) else t
               for t in transforms)


@dataclasses.dataclass(frozen=True)
class InstanceNoise:
  """N(0, sigma_t^2) on every critic input (Arjovsky & Bottou 2017), sigma_t
  annealed linearly from `sigma0` to 0 at generator step `steps`."""
  sigma0: float
  steps: int
  stream: int = 0x696e6f69

  def std(self, step: jax.Array) -> jax.Array:
    frac = jnp.asarray(step, jnp.float32) / self.steps
    return self.sigma0 * jnp.maximum(0.0, 1.0 - frac)

  def draw(self, key, shape, axis):
    return axis.local(jax.random.normal(key, (axis.size(shape[0]), *shape[1:]), jnp.float32))

  def apply(self, x, drawn, step):
    return x + self.std(step) * drawn.astype(x.dtype)

  def metrics(self, step):
    return {"instance_noise_std": self.std(step)}


def draw_all(transforms: tuple[Transform, ...], key: jax.Array, i: int,
             shape: tuple[int, ...], axis: BatchAxis) -> tuple:
  """Every transform's numbers for input `i` of an update, a batch of `shape`."""
  return tuple(t.draw(jax.random.fold_in(jax.random.fold_in(key, t.stream), i), shape, axis)
               for t in transforms)


def apply_all(transforms: tuple[Transform, ...], x: jax.Array, drawn: tuple,
              step: jax.Array) -> jax.Array:
  """`x` through every transform, in order, with the numbers `draw_all` drew."""
  for t, d in zip(transforms, drawn):
    x = t.apply(x, d, step)
  return x


def metrics(transforms: tuple[Transform, ...], step: jax.Array) -> Metrics:
  out = {}
  for t in transforms:
    out.update(t.metrics(step))
  return out
