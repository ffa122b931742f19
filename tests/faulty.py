"""`python tests/faulty.py FAULT [train flags]`: the real `wgan_jax.train`, with
a fault installed first that this machine cannot produce for real, or a delay
that gives a signal a known place to land.

FAULT is one of
  disk_full_at_N         the checkpoint of step N fails in Orbax's background thread
                         with ENOSPC, as a full disk or exhausted inodes would;
  slow_startup           start-up writes WORKDIR.started, then takes 60 s;
  slow_iterations        every generator iteration takes 2 s more;
  slow_final_evaluation  the final evaluation writes WORKDIR.evaluating, then takes 60 s
                         more.
"""
import errno
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
from absl import app
from orbax.checkpoint._src.handlers import json_checkpoint_handler

from wgan_jax import evaluators, inputs, iteration, train
from wgan_jax.cli import flags_parser


def disk_full_at(step: int) -> None:
  save_fn = json_checkpoint_handler.JsonCheckpointHandler._save_fn  # pylint: disable=protected-access

  async def failing_save(self, item, directory):
    if os.path.basename(os.path.dirname(str(directory))).startswith(f"{step}."):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return await save_fn(self, item, directory)

  json_checkpoint_handler.JsonCheckpointHandler._save_fn = failing_save  # pylint: disable=protected-access


def slow_startup(workdir: str) -> None:
  open_data = inputs.open_data

  def open_slowly(*args, **kwargs):
    with open(workdir.rstrip("/") + ".started", "w"):
      pass
    time.sleep(60)
    return open_data(*args, **kwargs)

  inputs.open_data = open_slowly


def slow_iterations() -> None:
  call = iteration.Iteration.__call__

  def slowly(self, *args, **kwargs):
    time.sleep(2)
    return call(self, *args, **kwargs)

  iteration.Iteration.__call__ = slowly


def slow_final_evaluation(marker: str) -> None:
  call = evaluators.ToyEvaluator.__call__

  def slowly(self, state, workdir, tag):
    if tag == "final":
      with open(marker, "w"):
        pass
      time.sleep(60)
    return call(self, state, workdir, tag)

  evaluators.ToyEvaluator.__call__ = slowly


if __name__ == "__main__":
  fault = sys.argv.pop(1)
  workdir = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir=")), "")
  if fault.startswith("disk_full_at_"):
    disk_full_at(int(fault.rsplit("_", 1)[1]))
  elif fault == "slow_startup":
    slow_startup(workdir)
  elif fault == "slow_iterations":
    slow_iterations()
  elif fault == "slow_final_evaluation":
    slow_final_evaluation(workdir.rstrip("/") + ".evaluating")
  else:
    sys.exit(f"unknown fault {fault!r}")
  app.run(train.main, flags_parser=flags_parser(default=None))
