"""The studies that train GANs (as sweeps, through the real trainer), each on
its tiny setting: files written, the numbers there and consistent."""
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

from PIL import Image
import pytest

from tests.conftest import ROOT
from wgan_jax.studies import (clip_sweep, estimate_vs_quality, improved_techniques,
                              mode_collapse, modern_training, n_critic_sweep)

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow


def _files(out, name):
  with Image.open(out / f"{name}.png") as image:
    assert image.size[0] > 500
  return json.loads((out / f"{name}.json").read_text(),
                    parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_mode_collapse_reports_modes_per_objective(tmp_path):
  result = mode_collapse.run(str(tmp_path), tiny=True)
  assert result == _files(tmp_path, "mode_collapse")
  assert set(result["final"]) == {"gan", "wgan", "wgan-gp"}
  for curve in result["curves"].values():
    assert curve["step"] == [2, 4]
    assert all(0 <= m <= 25 for m in curve["modes_covered"]["mean"])
    assert all(0 <= q <= 1 for q in curve["high_quality_share"]["max"])
  # Each setting trained its own run, kept for TensorBoard.
  assert (tmp_path / "runs" / "mode_collapse" / "wgan-gp" / "summary.json").is_file()


def test_clip_and_n_critic_sweeps_report_w1_and_estimate_per_value(tmp_path):
  for study, key, values in ((clip_sweep, "clip", ["0.01", "0.1"]),
                             (n_critic_sweep, "n_critic", ["1", "3"])):
    result = study.run(str(tmp_path), tiny=True)
    assert result == _files(tmp_path, result["study"])
    assert result["key"] == key and list(result["by_value"]) == values
    for curves in result["by_value"].values():
      assert len(curves["w1"]["mean"]) == len(result["eval_step"]) == 2
      assert all(w > result["w1_floor"] > 0 for w in curves["final_w1"])
      assert all(math.isfinite(e) for e in curves["final_estimate"])
    # Different values are different models.
    finals = [c["final_w1"][0] for c in result["by_value"].values()]
    assert finals[0] != finals[1]


def test_estimate_vs_quality_ranks_estimate_against_w1_and_digit_fd(tmp_path):
  result = estimate_vs_quality.run(str(tmp_path), tiny=True)
  assert result == _files(tmp_path, "estimate_vs_quality")
  assert set(result["runs"]) == {"8gaussians wgan-gp", "digits wgan-gp"}  # tiny: no WGAN run
  for run in result["runs"].values():
    assert len(run["estimate"][0]) == len(run["quality"][0]) == len(run["step"]) >= 2
    assert all(-1 <= rho <= 1 for rho in run["spearman"])
  assert result["runs"]["digits wgan-gp"]["measure"] == "digit-classifier FD"


def test_improved_techniques_scores_techniques_against_gan_and_wgan_gp(tmp_path):
  result = improved_techniques.run(str(tmp_path), tiny=True)
  assert result == _files(tmp_path, "improved_techniques")
  toy = result["toy"]["results"]
  assert list(toy) == list(improved_techniques.TINY_TOY)
  for scores in toy.values():
    assert 0 <= scores["modes_covered"][0] <= 25 and scores["w1"][0] > 0
  assert len({scores["w1"][0] for scores in toy.values()}) == len(toy)  # Different runs.
  assert result["digits"]["results"] == {}
  # The full setting: every technique alone on the GAN, on both data sets.
  full = result["settings"]
  assert list(full["toy"]) == ["gan", *improved_techniques.TECHNIQUES, "all of them", "wgan-gp"]
  assert full["digits"]["gan"]["techniques.minibatch_kernels"] == 0
  assert full["digits"]["minibatch discrimination"]["techniques.minibatch_kernels"] == 100


def test_modern_training_scores_each_technique_against_wgan_gp(tmp_path):
  result = modern_training.run(str(tmp_path), tiny=True)
  assert result == _files(tmp_path, "modern_training")
  toy = result["toy"]["results"]
  assert list(toy) == list(modern_training.TINY_TOY)
  for scores in toy.values():
    assert 0 <= scores["modes_covered"][0] <= 25 and scores["w1"][0] > 0
    assert scores["evaluated"] == "generator"
  assert len({scores["w1"][0] for scores in toy.values()}) == len(toy)  # Different runs.
  assert result["digits"]["results"] == {}
  # The full setting: every technique alone on WGAN-GP, R1 at gamma 1, the EMA runs
  # evaluated with their average.
  full = result["settings"]
  assert list(full["toy"]) == ["wgan-gp", "lp", "r1", "dragan", "spectral", "ema", "bf16"]
  assert full["toy"]["r1"] == {"experiment": "toy_25gaussians", "penalty": "r1",
                               "penalty_weight": 1.0}
  assert full["digits"]["spectral"]["model.critic.norm"] == "spectral"
  assert full["digits"]["diffaugment"]["augment"] == "color,translation,cutout"
  assert modern_training._evaluated(full["digits"]["ema 0.999"]) == "moving average"


def _study(out, *args):
  """`python -m wgan_jax.studies estimate_vs_quality --tiny --out=OUT`, every
  generator iteration 2 s slower, so that a signal lands inside a run."""
  code = ("import sys, runpy; sys.path.insert(0, 'tests'); import faulty; "
          "faulty.slow_iterations(); "
          "sys.argv = ['wgan_jax.studies', 'estimate_vs_quality', '--tiny', '--out=' + sys.argv[1]]; "
          "runpy.run_module('wgan_jax.studies', run_name='__main__')")
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.Popen([sys.executable, "-c", code, str(out), *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_signal_stops_the_study_with_one_line_and_a_rerun_continues(tmp_path):
  out = tmp_path / "out"
  proc = _study(out)
  logged = out / "runs" / "estimate_vs_quality" / "wgan-gp" / "metrics.jsonl"
  deadline = time.monotonic() + 300
  while not (logged.exists() and logged.read_text().strip()):
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err[-3000:]
  assert "Traceback" not in err
  last = err.strip().splitlines()[-1]
  assert re.fullmatch(r"error: estimate_vs_quality: stopped by SIGINT at generator step \d+ of "
                      r"the run in .*/runs/estimate_vs_quality/wgan-gp; nothing was written: run "
                      r"the same command to continue", last), last
  assert not (out / "estimate_vs_quality.json").exists()
  stopped_at = int(last.split("generator step ")[1].split()[0])
  assert 0 < stopped_at < 6

  rerun = subprocess.run([sys.executable, "-m", "wgan_jax.studies", "estimate_vs_quality",
                          "--tiny", f"--out={out}"], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  result = json.loads((out / "estimate_vs_quality.json").read_text())
  steps = result["runs"]["8gaussians wgan-gp"]["step"]
  assert steps[-1] == 6  # The whole run, resumed where the signal stopped it.
  lines = [json.loads(l) for l in logged.read_text().splitlines()]
  assert [l["step"] for l in lines if "train/critic_loss" in l] == sorted(
      {l["step"] for l in lines if "train/critic_loss" in l})  # Each step logged once.
