"""Points of the generator's noise space: drawn (optionally truncated, as
BigGAN's truncation trick) and paths between them (linear and spherical).

The noise is a standard normal; in high dimension its mass sits on a shell of
radius sqrt(dim), which a straight line between two points leaves (its middle
is shorter by up to 1/sqrt(2)), so spherical interpolation is the default for
walks whose every frame should look like a sample.
"""
from __future__ import annotations

import jax
import numpy as np

PATHS = ("slerp", "linear")


def draw(key: jax.Array, num: int, dim: int, truncation: float | None = None) -> np.ndarray:
  """[num, dim] standard normal noise; with `truncation` psi every coordinate
  beyond [-psi, psi] is drawn again (a normal truncated to it): fewer unusual
  samples, better-looking and less diverse."""
  if truncation is None:
    return np.asarray(jax.random.normal(key, (num, dim)))
  if not truncation > 0:
    raise ValueError(f"truncation={truncation} must be > 0 (the threshold psi beyond which "
                     "noise is drawn again; 0.5 to 1 is usual)")
  return np.asarray(jax.random.truncated_normal(key, -truncation, truncation, (num, dim)))


def path(start: np.ndarray, end: np.ndarray, steps: int, kind: str = "slerp") -> np.ndarray:
  """[..., steps, dim]: `steps` points from `start` to `end` ([..., dim]),
  both included, along a straight line or the great circle (magnitudes
  interpolated linearly, so a path between two shells stays between them)."""
  if kind not in PATHS:
    raise ValueError(f"unknown path {kind!r}; use one of {', '.join(PATHS)}")
  if steps < 2:
    raise ValueError(f"a path needs at least 2 steps (its two ends), got {steps}")
  start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
  t = np.linspace(0.0, 1.0, steps)[:, None]
  a, b = start[..., None, :], end[..., None, :]
  if kind == "linear":
    return (a + t * (b - a)).astype(np.float32)
  norm_a = np.linalg.norm(a, axis=-1, keepdims=True)
  norm_b = np.linalg.norm(b, axis=-1, keepdims=True)
  unit_a, unit_b = a / np.maximum(norm_a, 1e-12), b / np.maximum(norm_b, 1e-12)
  omega = np.arccos(np.clip((unit_a * unit_b).sum(-1, keepdims=True), -1.0, 1.0))
  sin = np.sin(omega)
  # Nearly parallel ends: the great circle is the line.
  safe = np.where(sin < 1e-6, 1.0, sin)
  direction = np.where(sin < 1e-6, (1 - t) * unit_a + t * unit_b,
                       (np.sin((1 - t) * omega) * unit_a + np.sin(t * omega) * unit_b) / safe)
  return (direction * ((1 - t) * norm_a + t * norm_b)).astype(np.float32)
