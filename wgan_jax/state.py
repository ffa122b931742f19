"""Training state as pure pytrees: nothing hides in Python objects."""
from __future__ import annotations

from typing import Any

import flax
import jax
import numpy as np

PyTree = Any


@flax.struct.dataclass
class NetState:
  """One network: its parameters, batch-norm statistics and optimizer state,
  and spectral normalisation's power-iteration vectors (models/spectral.py)."""
  params: PyTree
  batch_stats: PyTree  # {} for a network without batch norm
  opt_state: PyTree
  spectral: PyTree = flax.struct.field(default_factory=dict)  # {} without spectral norm


@flax.struct.dataclass
class TrainState:
  """Generator and critic, the number of generator iterations done, the base
  RNG key (each iteration folds in `step`, so the stream is a function of the
  step alone and resumes exactly), the generator's moving average, and
  adaptive augmentation's probability.

  A field added here with an empty default restores from checkpoints saved
  before it existed (checkpointing restores partially, after checking every
  array the state has is in the checkpoint)."""
  step: jax.Array
  rng: jax.Array
  generator: NetState
  critic: NetState
  # The exponential moving average of the generator's params and batch stats
  # (`ema.decay` > 0; wgan_jax/ema.py), {"params": ..., "batch_stats": ...}; {} without.
  generator_ema: PyTree = flax.struct.field(default_factory=dict)
  # Adaptive augmentation's probability p and the critic statistics summed since
  # its last adjustment (`ada.enabled`; wgan_jax/ada.py); {} without.
  ada: PyTree = flax.struct.field(default_factory=dict)


def generator_steps(state: TrainState) -> int:
  """The generator iterations `state` has done, on the host (a sweep's
  models, stacked on a leading axis, have all done the same number)."""
  step = state.step
  if isinstance(step, jax.Array) and not step.is_fully_addressable:
    step = step.addressable_data(0)
  return int(np.ravel(jax.device_get(step))[0])
