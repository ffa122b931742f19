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

Model m is value `m // seeds` with seed `config.seed + m % seeds`. The model
axis is split over the devices (no communication between models: each
device trains its share of whole models): in one process over as many as K
divides by, across processes over all of them (K a multiple of their count).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from wgan_jax import losses

# What a sweep may vary besides the seed: each enters the program as a number.
SWEEPABLE = ("clip", "gp_weight", "optimizer.lr", "n_critic")
# Where a swept key acts, for the keys that do not act in every run: the rule,
# and the words that name it.
_ACTS_WHERE: dict[str, tuple[Callable[[ml_collections.ConfigDict], bool], str]] = {
    "clip": (lambda c: c.objective == "wgan", "under objective='wgan' (weight clipping)"),
    "gp_weight": (lambda c: losses.penalty_of(c.objective, c.penalty) != "none",
                  f"with a penalty (objective='wgan-gp', or penalty={'|'.join(losses.PENALTIES)})"),
}
# The TensorBoard runs of the models: workdir/models/00, 01, ...
MODELS_DIR = "models"


@dataclasses.dataclass(frozen=True)
class Sweep:
  key: str                      # "" when only the seed varies
  values: tuple[float, ...]     # one group of `seeds` models per value
  seed_values: tuple[int, ...]  # the seeds of each group

  @property
  def size(self) -> int:
    return len(self.seed_values) * max(len(self.values), 1)

  def value(self, m: int) -> float | None:
    return self.values[m // len(self.seed_values)] if self.key else None

  def seed(self, m: int) -> int:
    return self.seed_values[m % len(self.seed_values)]

  def model(self, m: int) -> dict[str, Any]:
    """What distinguishes model `m`: {"model": m, "seed": s[, key: value]}."""
    out: dict[str, Any] = {"model": m, "seed": self.seed(m)}
    if self.key:
      out[self.key] = self.value(m)
    return out

  def hparams(self) -> dict[str, np.ndarray]:
    """The swept values per model, [K] each ({} for a seeds-only sweep)."""
    if not self.key:
      return {}
    dtype = np.int32 if self.key == "n_critic" else np.float32
    return {self.key: np.array([self.value(m) for m in range(self.size)], dtype)}

  def seed_array(self) -> np.ndarray:
    return np.array([self.seed(m) for m in range(self.size)], np.int32)


def from_config(config: ml_collections.ConfigDict) -> Sweep | None:
  """The sweep of `config`, or None for a run of one model (no model axis)."""
  section = config.get("sweep")
  if section is None or (section.seeds == 1 and not section.key):
    return None
  values = tuple(int(v) if section.key == "n_critic" else float(v) for v in section.grid)
  return Sweep(section.key, values, tuple(config.seed + i for i in range(section.seeds)))


def problem(config: ml_collections.ConfigDict, rules: Mapping[str, Callable[[Any], str | None]]
            ) -> str | None:
  """What makes `config.sweep` unusable, or None; `rules`: the rule of each
  sweepable key, which every value of the grid must pass."""
  from wgan_jax import data  # pylint: disable=import-outside-toplevel
  s = config.sweep
  if not s.key and s.grid:
    return (f"sweep.grid={tuple(s.grid)} without sweep.key: name the key they are for "
            f"({', '.join(SWEEPABLE)})")
  if s.key and not s.grid:
    return f"sweep.key={s.key!r} needs sweep.grid, e.g. --experiment.sweep.grid=1,2"
  for v in s.grid:
    wrong = (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
             or (s.key == "n_critic" and v != int(v)))
    problem_ = (f"is not a {'whole ' if s.key == 'n_critic' else ''}number" if wrong
                else rules[s.key](int(v) if s.key == "n_critic" else v))
    if problem_:
      return f"sweep.grid value {v!r} for {s.key} {problem_}"
  if from_config(config) is None:
    return None
  if config.parallelism != "jit" or config.shard_state:
    return ("a sweep runs under parallelism='jit' with shard_state=False (its model axis is "
            "split over the devices)")
  if data.get(config.data.name).kind != data.TOY:
    return ("sweeps train toy-set models (their data is drawn in the program); "
            f"data.name={config.data.name!r} is an image set")
  if config.seed + s.seeds - 1 > 2**31 - 1:
    return f"seed={config.seed} + sweep.seeds={s.seeds} runs past the largest seed, 2**31 - 1"
  acts, where = _ACTS_WHERE.get(s.key, (lambda c: True, ""))
  if not acts(config):
    return (f"sweep.key={s.key!r} acts only {where}; this run has "
            f"objective={config.objective!r}, penalty={config.penalty!r}")
  if s.key == "n_critic":
    if config.critic_schedule != "constant":
      return "a sweep over n_critic needs critic_schedule='constant'"
    if config.optimizer.schedule != "constant":
      return ("a sweep over n_critic needs optimizer.schedule='constant': the linear decay "
              "counts critic updates, which differ between the models")
    if config.techniques.feature_matching:
      return ("a sweep over n_critic cannot use techniques.feature_matching: the generator "
              "matches the real batch of the last critic update, which differs between the "
              "models")
  return None


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


def max_critic_updates(config: ml_collections.ConfigDict) -> int:
  """The critic updates one iteration runs: n_critic, or the largest swept one."""
  s = config.get("sweep")
  if s is not None and s.key == "n_critic":
    return int(max(s.grid))
  return config.n_critic


def model_slice(tree: Any, m: int) -> Any:
  """Model `m`'s arrays of a tree with a leading model axis."""
  return jax.tree.map(lambda x: x[m], tree)
