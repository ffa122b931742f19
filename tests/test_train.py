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

from tests.conftest import ROOT
from tests.helpers import tiny_config
from wgan_jax import trainer

TINY = ["--experiment.batch_size=32", "--experiment.n_critic=2",
        "--experiment.model.generator.features=32", "--experiment.model.critic.features=32",
        "--experiment.num_generator_steps=6", "--experiment.log_every=2",
        "--experiment.eval_every=3", "--experiment.eval_samples=200"]


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
  assert summary["modes_total"] == 8 and 0 <= summary["modes_covered"] <= 8
  assert 0.0 <= summary["high_quality_share"] <= 1.0
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
              "train/gradient_penalty", "train/critic_grad_norm", "train/generator_grad_norm",
              "train/gp_input_grad_norm"):
    assert steps[tag] == [2, 4, 6], tag
  assert steps["eval/w1"] == [3, 6]
  assert "samples" in tags["tensors"] or "samples" in tags.get("images", [])


@pytest.mark.parametrize("objective", ["wgan", "gan"])
def test_train_and_evaluate_other_objectives(tmp_path, objective):
  config = tiny_config(objective)
  summary = trainer.train_and_evaluate(config, str(tmp_path))
  assert summary["generator_steps"] == config.num_generator_steps
  assert np.isfinite(summary["w1"])
  steps, _ = _scalars(str(tmp_path))
  key = "train/clipped_fraction" if objective == "wgan" else "train/d_real"
  assert steps[key] == [2, 4, 6]


def test_reference_critic_schedule_trains(tmp_path):
  config = tiny_config("wgan", critic_schedule="wgan_reference", num_generator_steps=3)
  summary = trainer.train_and_evaluate(config, str(tmp_path))
  assert summary["generator_steps"] == 3


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
