"""Spectral normalisation of a critic's layers (Miyato et al. 2018).

Each weight matrix (a convolution kernel flattened to [k*k*c_in, c_out]) is
divided by an estimate of its largest singular value, from one step of power
iteration per forward pass starting at the vector the last update left.

The vectors live in their own variable collection, `COLLECTION`, never in
`batch_stats`: a spectrally normalised critic is still per-example (the
gradient penalty stays exact, real and fake batches may share one forward
pass), and the steps tell the two apart (`NetState.spectral`). The power
iteration advances only where the caller makes the collection mutable, which
`updates.critic_step` does for its first forward pass and nothing else does: the
generator's update, the penalty's extra pass and evaluation all read the
vectors as the critic's last update left them.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax

COLLECTION = "spectral"


def normalized(parent: nn.Module, layer: nn.Module, enabled: bool = True
               ) -> Callable[[jax.Array], jax.Array]:
  """`layer` (created inside `parent`'s compact method), spectrally normalised
  when `enabled`: a function of the layer's input."""
  if not enabled:
    return layer
  wrapped = nn.SpectralNorm(layer, collection_name=COLLECTION)
  advance = parent.is_mutable_collection(COLLECTION)
  return lambda x: wrapped(x, update_stats=advance)
