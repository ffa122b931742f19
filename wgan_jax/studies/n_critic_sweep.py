"""How important is it to train the critic to convergence? (the WGAN paper's
open question)

WGAN with weight clipping on 8 Gaussians for n_critic in {1, 2, 5, 10, 25}
critic updates per generator update, several seeds each, as one sweep
program (every model runs 25 updates a step and applies its first n_critic):
the exact W1 to the data and the critic's estimate at equal generator
iterations (`open_questions`).
"""
from __future__ import annotations

from typing import Any

from wgan_jax.studies import open_questions

DESCRIPTION = "WGAN's n_critic in {1, 2, 5, 10, 25}: exact W1 and the critic's estimate over training"


FULL = open_questions.Sweep(grid=(1, 2, 5, 10, 25), seeds=2, steps=1000, every=50)
# A test's: the untrained critic of n_critic 1 against a trained one.
TINY = open_questions.Sweep(grid=(1, 5), seeds=2, steps=300, every=50, width=128)


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  return open_questions.run_sweep(out_dir, "n_critic_sweep", "n_critic",
                                  TINY if tiny else FULL, tiny,
                                  question="How important is n_critic?")
