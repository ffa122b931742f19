"""How many critic updates precede each generator update (`n_critic`,
`n_critic_schedule`, a sweep over n_critic): one rule for the trainer, the
input pipeline and the optimizers' schedules."""
from __future__ import annotations

import ml_collections
import numpy as np

# The reference schedule's long phases: this many critic updates.
REFERENCE_LONG_PHASE = 100


def max_n_critic(config: ml_collections.ConfigDict) -> int:
  """The critic updates an ordinary iteration runs: n_critic, or the largest swept."""
  s = config.get("sweep")
  if s is not None and s.key == "n_critic":
    return int(max(s.grid))
  return config.n_critic


def n_critic_at(step: int, config: ml_collections.ConfigDict) -> int:
  """Critic updates before generator update number `step` (0-based).

  "wgan_reference" is the WGAN code's rule: 100 for the first 25 generator
  iterations and every 500th one, so the critic is near optimal when it matters.
  """
  if config.n_critic_schedule == "wgan_reference" and (step < 25 or step % 500 == 0):
    return REFERENCE_LONG_PHASE
  return max_n_critic(config)


def n_critic_schedule(config: ml_collections.ConfigDict, start: int = 0,
                      stop: int | None = None) -> np.ndarray:
  """`n_critic_at` of generator steps [start, stop) (default: to the end)."""
  stop = config.num_generator_steps if stop is None else stop
  return np.array([n_critic_at(s, config) for s in range(start, stop)], np.int64)


def critic_updates(config: ml_collections.ConfigDict) -> int:
  """The critic's optimizer updates over the whole run (its schedules' length):
  `n_critic_schedule(config).sum()`, counted without walking every step."""
  steps, usual = config.num_generator_steps, max_n_critic(config)
  if config.n_critic_schedule != "wgan_reference":
    return steps * usual
  # Long phases: steps 0..24, then every 500th step from 500 on.
  long = min(steps, 25) + (max(steps - 1, 0) // 500 if steps > 500 else 0)
  return long * REFERENCE_LONG_PHASE + (steps - long) * usual
