"""How important is the clipping value c? (the WGAN paper's open question)

WGAN with weight clipping on 8 Gaussians for c in {0.001, 0.01, 0.1}, several
seeds each, as one sweep program: the exact W1 to the data and the critic's
estimate over training (`open_questions`).
"""
from __future__ import annotations

from typing import Any

from wgan_jax.studies import open_questions

DESCRIPTION = "WGAN's clip value c in {0.001, 0.01, 0.1}: exact W1 and the critic's estimate over training"


FULL = open_questions.Sweep(grid=(0.001, 0.01, 0.1), seeds=3, steps=2000, every=100)
# A test's: long enough for the critics to reach the scale each c allows.
TINY = open_questions.Sweep(grid=(0.001, 0.01, 0.1), seeds=2, steps=200, every=100)


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  return open_questions.run_sweep(out_dir, "clip_sweep", "clip", TINY if tiny else FULL, tiny,
                                  question="How important is c?")
