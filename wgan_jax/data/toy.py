"""The WGAN-GP paper's 2-D toy distributions, sampled on device.

Defined as in the paper's reference code (gan_toy.py):
  8gaussians:  centres (±1, 0), (0, ±1), (±1/√2, ±1/√2) scaled by 2, std 0.02,
               every point divided by 1.414;
  25gaussians: centres 2·{-2..2}², std 0.05, divided by 2.828;
  swissroll:   sklearn's make_swiss_roll(noise=0.25), columns 0 and 2, / 7.5.
The reference draws 25gaussians from a fixed set of 100,000 points; here every
batch is a fresh draw from the same mixture, so the sampler is a pure function
of a key and runs inside the compiled training step.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import data

Sampler = Callable[[jax.Array, int], jax.Array]


@dataclasses.dataclass(frozen=True)
class ToyDataset:
  name: str
  sample: Sampler                 # (key, n) -> [n, 2] float32
  centers: np.ndarray | None      # mixture centres, for mode metrics
  std: float | None               # per-coordinate std of each mode


def _mixture(centers: np.ndarray, std: float) -> Sampler:
  centers_j = jnp.asarray(centers, jnp.float32)

  def sample(key: jax.Array, n: int) -> jax.Array:
    k_mode, k_noise = jax.random.split(key)
    idx = jax.random.randint(k_mode, (n,), 0, centers_j.shape[0])
    return centers_j[idx] + std * jax.random.normal(k_noise, (n, 2), jnp.float32)

  return sample


def eight_gaussians() -> ToyDataset:
  s = 1.0 / math.sqrt(2)
  unit = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)])
  scale = 1.414
  centers = (2.0 * unit / scale).astype(np.float32)
  return ToyDataset("8gaussians", _mixture(centers, 0.02 / scale), centers, 0.02 / scale)


def twenty_five_gaussians() -> ToyDataset:
  scale = 2.828
  grid = np.array([(2.0 * x, 2.0 * y) for x in range(-2, 3) for y in range(-2, 3)])
  centers = (grid / scale).astype(np.float32)
  return ToyDataset("25gaussians", _mixture(centers, 0.05 / scale), centers, 0.05 / scale)


def swissroll() -> ToyDataset:
  noise, scale = 0.25, 7.5

  def sample(key: jax.Array, n: int) -> jax.Array:
    # sklearn.datasets.make_swiss_roll: t = 1.5π(1 + 2u), (t cos t, 21v, t sin t)
    # plus N(0, noise²) on every coordinate; the reference keeps x and z.
    k_t, k_noise = jax.random.split(key)
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(k_t, (n,), jnp.float32))
    xz = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1)
    return (xz + noise * jax.random.normal(k_noise, (n, 2), jnp.float32)) / scale

  return ToyDataset("swissroll", sample, None, None)


def get_toy_dataset(name: str) -> ToyDataset:
  """The toy data set `name` of the registry (`wgan_jax.data`)."""
  entry = data.get(name)
  if entry.kind != data.TOY:
    raise ValueError(f"{name!r} is not a toy data set; toy sets: {', '.join(data.names(data.TOY))}")
  return data.open_source(name)()
