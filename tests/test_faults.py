"""Faults: damaged checkpoints, a disk that fills up, non-finite values."""
import errno
import logging
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from orbax.checkpoint._src.handlers import json_checkpoint_handler

from tests.helpers import tiny_config
from wgan_jax import builders, checkpointing, iteration, loop, updates

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow


def config(**overrides):
  return tiny_config(**{"num_generator_steps": 6, "checkpoint_every": 2, "eval_every": 0,
                        "keep_checkpoints": 5, **overrides})


def steps_in(workdir):
  return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def restore_latest(workdir, cfg):
  spec = builders.make_spec(cfg, (2,))
  checkpointer = checkpointing.Checkpointer(workdir, 0, 5)
  state, _ = checkpointer.restore_intact(builders.abstract_state(spec, (2,)))
  checkpointer.close()
  return state


def flip_a_bit(step_dir):
  """The state item written again with one bit of one value flipped, as a bad
  disk or a bad copy would return it: everything reads, one number is wrong."""
  path = os.path.join(step_dir, "state")
  checkpointer = ocp.PyTreeCheckpointer()
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                          checkpointer.metadata(path).item_metadata.tree)
  tree = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  kernel = np.array(tree["critic"]["params"]["Dense_1"]["kernel"])
  kernel.view(np.uint32).flat[7] ^= 1 << 4
  tree["critic"]["params"]["Dense_1"]["kernel"] = kernel
  shutil.rmtree(path)
  checkpointer.save(path, args=ocp.args.PyTreeSave(tree))


def truncate_array_data(item_dir):
  """Halves every data file of an Orbax item (OCDBT keeps arrays in `d/` folders)."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(item_dir) for f in fs
           if os.path.basename(d) == "d"]
  assert files
  for path in files:
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)


DAMAGE = {
    "truncated array data": lambda step_dir: truncate_array_data(
        os.path.join(step_dir, "state")),
    "deleted metadata": lambda step_dir: os.remove(os.path.join(step_dir, "metadata",
                                                                "metadata")),
    "deleted state": lambda step_dir: __import__("shutil").rmtree(
        os.path.join(step_dir, "state")),
    # Loads without an error; the checksums in the metadata catch it.
    "a flipped bit": flip_a_bit,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_checkpoint_is_set_aside_and_the_run_falls_back(damage, tmp_path, caplog):
  workdir = str(tmp_path)
  loop.train_and_evaluate(config(), workdir)
  DAMAGE[damage](os.path.join(workdir, "checkpoints", "6"))

  with caplog.at_level(logging.INFO):
    summary = loop.train_and_evaluate(config(num_generator_steps=8), workdir)
  warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
  assert len(warnings) == 1, caplog.text
  if damage == "a flipped bit":  # Caught by the checksum, not by a failing read.
    assert "critic/params/Dense_1/kernel does not read back as it was written" in warnings[0]
  assert warnings[0].startswith(f"checkpoint {workdir}/checkpoints/6 is damaged (")
  assert warnings[0].endswith(f"moved it to {workdir}/checkpoints/6.damaged and falling back "
                              "to the next older checkpoint")
  assert "resumed from" in caplog.text and "at generator step 4" in caplog.text
  assert summary["generator_steps"] == 8
  # Kept, under a name Orbax ignores; the steps after 4 were trained again.
  assert steps_in(workdir) == ["2", "4", "6", "6.damaged", "8"]

  # No crash loop: the next run resumes from 8 without a word about damage.
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    loop.train_and_evaluate(config(num_generator_steps=10), workdir)
  assert "is damaged" not in caplog.text


def test_every_checkpoint_failing_moves_nothing_and_is_a_clear_error(tmp_path):
  """All failing is more likely a systemic problem than damage to each: keep them as they are."""
  workdir = str(tmp_path)
  loop.train_and_evaluate(config(num_generator_steps=4), workdir)
  for step in ("2", "4"):
    DAMAGE["deleted metadata"](os.path.join(workdir, "checkpoints", step))
  with pytest.raises(checkpointing.CheckpointError) as error:
    loop.train_and_evaluate(config(num_generator_steps=4), workdir)
  assert str(error.value).startswith(
      f"none of the 2 checkpoints in {workdir}/checkpoints restores (the newest, step 4: ")
  assert str(error.value).endswith("nothing was moved: fix the cause, or move them away to "
                                   "start afresh")
  assert steps_in(workdir) == ["2", "4"]


def test_non_finite_parameters_are_never_saved(tmp_path, monkeypatch):
  """Losses are computed before the last update: the parameters it leaves are
  checked on their own, by the step itself (updates.NONFINITE_PARAMS)."""
  generator_step = updates.generator_step

  def poisoned(*args, **kwargs):
    generator, stats, metrics = generator_step(*args, **kwargs)
    # The update of generator step 4 (Adam's count 4) leaves NaN parameters.
    poison = jax.numpy.where(generator.opt_state[0].count == 4, np.nan, 1.0)
    return (generator.replace(params=jax.tree.map(lambda p: p * poison, generator.params)),
            stats, metrics)

  monkeypatch.setattr(updates, "generator_step", poisoned)
  with pytest.raises(loop.NonFiniteError,
                     match="non-finite parameters after generator step 4; lower optimizer.lr"):
    loop.train_and_evaluate(config(), str(tmp_path))
  assert steps_in(str(tmp_path)) == ["2"]


def test_disk_full_during_an_async_save_is_a_clear_error_and_keeps_the_last(
    tmp_path, monkeypatch):
  """The write of step 4 fails in Orbax's background thread, as a full disk would."""
  save_fn = json_checkpoint_handler.JsonCheckpointHandler._save_fn  # pylint: disable=protected-access

  async def failing_save(self, item, directory):
    if os.path.basename(os.path.dirname(str(directory))).startswith("4."):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return await save_fn(self, item, directory)

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", failing_save)
  workdir = str(tmp_path)
  with pytest.raises(checkpointing.CheckpointWriteError) as error:
    loop.train_and_evaluate(config(), workdir)
  assert str(error.value) == (
      f"could not write the checkpoint of step 4 to {workdir}/checkpoints ([Errno 28] No space "
      "left on device); free disk space or make the workdir writable, then run the same "
      "command: step 2 is the newest intact checkpoint and a rerun resumes from it")
  assert [s for s in steps_in(workdir) if s.isdigit()] == ["2"]

  monkeypatch.undo()
  assert int(restore_latest(workdir, config()).step) == 2
  assert loop.train_and_evaluate(config(), workdir)["generator_steps"] == 6


def inject_nan_at(monkeypatch, bad_step, times):
  """Reports a NaN critic loss for generator step `bad_step` (1-based), `times` times."""
  real_call, count = iteration.Iteration.__call__, [0]

  def call(self, state, n_critic, real=None):
    state, metrics = real_call(self, state, n_critic, real)
    if int(state.step) == bad_step and count[0] < times:
      count[0] += 1
      metrics = dict(metrics, critic_loss=jax.numpy.float32(np.nan))
    return state, metrics

  monkeypatch.setattr(iteration.Iteration, "__call__", call)


def test_non_finite_restarts_from_the_last_good_checkpoint_with_a_new_rng(tmp_path, monkeypatch,
                                                                          caplog):
  clean = loop.train_and_evaluate(config(), str(tmp_path / "clean"))
  inject_nan_at(monkeypatch, 5, times=1)
  with caplog.at_level(logging.WARNING):
    summary = loop.train_and_evaluate(config(nonfinite_restarts=2), str(tmp_path / "run"))
  assert ("non-finite critic_loss at generator step 5; lower optimizer.lr or check the data: "
          "restart 1 from the checkpoint of step 4 with a new RNG stream") in caplog.text
  assert summary["nonfinite_restarts"] == 1 and summary["generator_steps"] == 6
  # Same up to step 4, another random stream after it.
  same = restore_latest(str(tmp_path / "clean"), config())
  restarted = restore_latest(str(tmp_path / "run"), config())
  assert not np.array_equal(same.rng, restarted.rng)
  assert clean["train_critic_loss"] != summary["train_critic_loss"]


def test_non_finite_beyond_the_restarts_allowed_stops_and_keeps_the_checkpoint(tmp_path,
                                                                              monkeypatch):
  inject_nan_at(monkeypatch, 5, times=3)
  with pytest.raises(loop.NonFiniteError, match="non-finite critic_loss at generator step 5"):
    loop.train_and_evaluate(config(nonfinite_restarts=2), str(tmp_path))
  assert steps_in(str(tmp_path)) == ["2", "4"]


def test_a_non_finite_generator_is_never_scored():
  """Evaluation between two checks of the metrics used to score a NaN generator
  (exact W1 of NaN points came out 0)."""
  from wgan_jax import evaluators  # pylint: disable=import-outside-toplevel
  cfg = config()
  spec = builders.make_spec(cfg, (2,))
  state = builders.init_state(spec, (2,), cfg.seed)
  state = state.replace(generator=state.generator.replace(params=jax.tree.map(
      lambda p: p * np.nan, state.generator.params)))
  evaluator = evaluators.make_evaluator(cfg, spec)
  with pytest.raises(loop.NonFiniteError, match="non-finite generator samples at the "
                     "evaluation of generator step 0"):
    evaluator(state, "/nonexistent", "000000")
