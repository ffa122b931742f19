"""Sweeps: K models trained as one compiled program (config section `sweep`).

A sweep trains `seeds` models for each value of one hyperparameter (`key`,
`grid`), or `seeds` models alone when no key is swept. Every array of the
state gains a leading model axis, and one compiled generator iteration
trains every model (`iteration.ModelAxis`: vmapped, or mapped one after
another on CPU), so K small models cost one dispatch per step instead of K.
The swept values enter the program as numbers (the optimizers, the penalty
weight and the clip bound are built inside the mapped function from them);
a sweep over `n_critic` runs the largest count for every model and lets each
model apply only its first n_critic updates.

Which models a config's sweep trains is configs/sweep.py's (no JAX); model m
is value `m // seeds` with seed `config.seed + m % seeds`. The model
axis is split over the devices (no communication between models: each
device trains its share of whole models): in one process over as many as K
divides by, across processes over all of them (K a multiple of their count).
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import jax

from wgan_jax.configs.sweep import Sweep, from_config  # noqa: F401  (what a sweep is)

# The TensorBoard runs of the models: workdir/models/00, 01, ...
MODELS_DIR = "models"


def model_dir(workdir: str, m: int, count: int) -> str:
  """Where model `m` of a sweep of `count` keeps its TensorBoard run and
  evaluation files (names of one width, so they sort)."""
  return os.path.join(workdir, MODELS_DIR, f"{m:0{max(2, len(str(count - 1)))}d}")


def devices_for(sweep: Sweep, devices: Sequence[jax.Device]) -> list[jax.Device]:
  """The devices the sweep's models are split over: all of them when K divides
  by their count; in one process, else the most that K divides by (a
  ValueError across processes, which must all take part)."""
  count = math.gcd(sweep.size, len(devices))
  if count != len(devices) and jax.process_count() > 1:
    raise ValueError(f"the sweep trains {sweep.size} models, which do not split over "
                     f"{len(devices)} devices; use a multiple of the device count "
                     "(sweep.seeds or sweep.grid)")
  return list(devices)[:count]


def model_slice(tree: Any, m: int) -> Any:
  """Model `m`'s arrays of a tree with a leading model axis."""
  return jax.tree.map(lambda x: x[m], tree)
