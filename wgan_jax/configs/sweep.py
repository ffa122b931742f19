"""A config's sweep (section `sweep`): which models one program trains.

A sweep trains `seeds` models for each value of one hyperparameter (`key`,
`grid`), or `seeds` models alone when no key is swept. Model m is value
`m // seeds` with seed `config.seed + m % seeds`; on an image set every model
trains on the same batches (the data's order is `config.seed`'s). How the models
are trained together is `wgan_jax/sweeps.py`'s; what they are is decided here,
without JAX.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import ml_collections
import numpy as np

from wgan_jax.configs import schema

# Where a swept key acts, for the keys that do not act in every run: the rule,
# and the words that name it.
_ACTS_WHERE: dict[str, tuple[Callable[[ml_collections.ConfigDict], bool], str]] = {
    "clip": (lambda c: c.clip > 0, "with weight clipping (clip > 0)"),
    "penalty_weight": (lambda c: c.penalty != "none",
                       f"with a penalty (penalty={'|'.join(schema.PENALTIES[1:])})"),
}


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


def problem(config: ml_collections.ConfigDict) -> str | None:
  """What makes `config.sweep` unusable, or None."""
  s = config.sweep
  if not s.key and s.grid:
    return (f"sweep.grid={tuple(s.grid)} without sweep.key: name the key they are for "
            f"({', '.join(schema.SWEEPABLE)})")
  if s.key and not s.grid:
    return f"sweep.key={s.key!r} needs sweep.grid, e.g. --experiment.sweep.grid=1,2"
  for v in s.grid:
    wrong = (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
             or (s.key == "n_critic" and v != int(v)))
    problem_ = (f"is not a {'whole ' if s.key == 'n_critic' else ''}number" if wrong
                else schema.SWEPT_RULES[s.key](int(v) if s.key == "n_critic" else v))
    if problem_:
      return f"sweep.grid value {v!r} for {s.key} {problem_}"
  if from_config(config) is None:
    return None
  if config.parallelism != "jit" or config.shard_state:
    return ("a sweep runs under parallelism='jit' with shard_state=False (its model axis is "
            "split over the devices)")
  if config.seed + s.seeds - 1 > 2**31 - 1:
    return f"seed={config.seed} + sweep.seeds={s.seeds} runs past the largest seed, 2**31 - 1"
  acts, where = _ACTS_WHERE.get(s.key, (lambda c: True, ""))
  if not acts(config):
    return (f"sweep.key={s.key!r} acts only {where}; this run has clip={config.clip!r}, "
            f"penalty={config.penalty!r}")
  if s.key == "n_critic":
    if config.n_critic_schedule != "constant":
      return "a sweep over n_critic needs n_critic_schedule='constant'"
    if any(config.optimizer[n].schedule != "constant" for n in schema.NETWORKS):
      return ("a sweep over n_critic needs optimizer.schedule='constant': the linear decay "
              "counts critic updates, which differ between the models")
    if config.techniques.feature_matching:
      return ("a sweep over n_critic cannot use techniques.feature_matching: the generator "
              "matches the real batch of the last critic update, which differs between the "
              "models")
  return None
