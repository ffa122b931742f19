"""Generated images as pixels: the one rule that turns the generator's [-1, 1]
floats into uint8 (the inverse of the input pipeline's x / 127.5 - 1), for
grids, `sample --npz` and every metric, on the host (numpy) or in a compiled
program (jax)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def to_uint8(images):
  """[-1, 1] floats -> uint8 pixels; numpy in, numpy out; jax in, jax out."""
  xp = jnp if isinstance(images, jax.Array) else np
  x = xp.asarray(images, xp.float32)
  return xp.clip(xp.rint((x + 1.0) * 127.5), 0, 255).astype(xp.uint8)
