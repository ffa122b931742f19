"""The real entry points end to end on tiny configs."""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
import tensorflow as tf

from tests.conftest import ROOT
from tests.helpers import tiny_config
from tests.runs import final_state, run_module
from wgan_jax import loop

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

TINY = ["--experiment.batch_size=32", "--experiment.n_critic=2",
        "--experiment.model.generator.features=32", "--experiment.model.critic.features=32",
        "--experiment.num_generator_steps=6", "--experiment.log_every=2",
        "--experiment.eval_every=3", "--experiment.eval_samples=200"]


def _last_values(workdir):
  acc = event_accumulator.EventAccumulator(workdir, size_guidance={"tensors": 0})
  acc.Reload()
  return {t: float(tf.make_ndarray(acc.Tensors(t)[-1].tensor_proto))
          for t in acc.Tags()["tensors"] if t.startswith(("eval/", "train/"))}


def _scalars(workdir):
  acc = event_accumulator.EventAccumulator(workdir, size_guidance={"scalars": 0, "tensors": 0})
  acc.Reload()
  tags = acc.Tags()
  return {t: [e.step for e in acc.Tensors(t)] for t in tags["tensors"]}, tags


def test_train_cli_writes_summary_events_and_figures(tmp_path):
  workdir = tmp_path / "run"
  env = dict(os.environ, PYTHONPATH=ROOT)
  result = subprocess.run(
      [sys.executable, "-m", "wgan_jax.train", "--experiment=toy_8gaussians", *TINY,
       f"--workdir={workdir}"], capture_output=True, text=True, cwd=tmp_path, env=env,
      timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]

  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["experiment"] == "toy_8gaussians"
  assert summary["generator_steps"] == 6
  assert summary["modes_total"] == 8
  assert summary["w1"] > 0 and summary["w1_floor"] > 0
  assert summary["w1_over_floor"] == pytest.approx(summary["w1"] / summary["w1_floor"])
  assert json.loads((workdir / "config.json").read_text())["n_critic"] == 2

  # One figure per evaluation: step 3 and the end; both real PNGs.
  pngs = sorted(os.path.basename(p) for p in glob.glob(str(workdir / "toy_*.png")))
  assert pngs == ["toy_000003.png", "toy_final.png"]
  with Image.open(workdir / "toy_final.png") as im:
    assert im.size == (600, 600)

  steps, tags = _scalars(str(workdir))
  for tag in ("train/wasserstein_estimate", "train/critic_loss", "train/generator_loss",
              "train/gp_penalty", "train/critic_grad_norm", "train/generator_grad_norm",
              "train/gp_input_grad_norm"):
    assert steps[tag] == [2, 4, 6], tag
  assert "train/nonfinite_params" not in steps  # a check, not a training curve
  assert steps["eval/w1"] == [3, 6]
  assert "samples" in tags["tensors"] or "samples" in tags.get("images", [])
  # The summary holds what the events logged last: evaluation and training means.
  last = _last_values(str(workdir))
  for key in ("w1", "modes_covered", "high_quality_share"):
    assert summary[key] == pytest.approx(last[f"eval/{key}"], rel=1e-6), key
  assert summary["train_critic_loss"] == pytest.approx(last["train/critic_loss"], rel=1e-6)


@pytest.mark.parametrize("setup", ["wgan", "gan"])
def test_train_and_evaluate_other_setups(tmp_path, setup):
  config = tiny_config(setup)
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary["generator_steps"] == config.num_generator_steps
  assert np.isfinite(summary["w1"])
  steps, _ = _scalars(str(tmp_path))
  key = "train/clipped_fraction" if setup == "wgan" else "train/d_real"
  assert steps[key] == [2, 4, 6]


def test_reference_critic_schedule_trains(tmp_path):
  # A linear schedule: its optimizer state counts the updates of each network.
  config = tiny_config("wgan", n_critic_schedule="wgan_reference", num_generator_steps=3,
                       **{"optimizer.schedule": "linear"})
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary["generator_steps"] == 3
  state = final_state(str(tmp_path), 3)
  counts = {k: int(v) for k, v in state.items() if k.endswith("/count")}
  assert counts == {"critic/opt_state/0/1/count": 300, "generator/opt_state/1/count": 3}, counts


def test_non_finite_loss_stops_with_one_line_error(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  result = subprocess.run(
      [sys.executable, "-m", "wgan_jax.train", "--experiment=toy_8gaussians", *TINY,
       "--experiment.optimizer.lr=1e30", "--experiment.optimizer.schedule=constant",
       "--experiment.checkpoint_every=1", "--experiment.log_every=100",
       f"--workdir={tmp_path}"], capture_output=True, text=True, env=env, timeout=300)
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert re.match(r"error: non-finite [a-z_, ]+ at generator step (\d+);", last), last
  assert "Traceback" not in result.stderr
  # With a checkpoint due at every step, none is written at or after the first
  # non-finite step, although the log interval had not ended.
  bad_step = int(re.search(r"generator step (\d+)", last).group(1))
  saved = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
  assert max(saved, default=0) < bad_step, (saved, bad_step)


def test_pmap_training_through_the_cli(tmp_path):
  """The production pmap path, end to end: 8 devices, checkpoints, resume."""
  args = ["--experiment=toy_8gaussians", *TINY, "--experiment.parallelism=pmap",
          "--experiment.checkpoint_every=3", f"--workdir={tmp_path}"]
  result = run_module("wgan_jax.train", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "8 devices (pmap), 1 processes; 4 examples a batch on each device" in result.stderr
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "6"]
  assert int(final_state(str(tmp_path), 6)["step"]) == 6
  result = run_module("wgan_jax.train", *args[:-1], "--experiment.num_generator_steps=8",
                      f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "at generator step 6" in result.stderr
  assert json.loads((tmp_path / "summary.json").read_text())["generator_steps"] == 8


def test_hundreds_of_iterations_on_8_devices_with_no_host_read_between(tmp_path):
  """XLA:CPU's in-process collectives deadlocked with dozens of iterations in
  flight and no host read (log_every > the run): the trainer keeps at most
  `inflight.DEPTH` iterations in flight."""
  result = run_module(
      "wgan_jax.train", "--experiment=toy_8gaussians", "--experiment.batch_size=32",
      "--experiment.n_critic=2", "--experiment.model.generator.features=16",
      "--experiment.model.critic.features=16", "--experiment.num_generator_steps=300",
      "--experiment.log_every=1000", "--experiment.eval_every=0",
      "--experiment.eval_samples=100", "--experiment.checkpoint_every=0",
      f"--workdir={tmp_path}", timeout=400)
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads((tmp_path / "summary.json").read_text())["generator_steps"] == 300
