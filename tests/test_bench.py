"""The benchmark entry point runs and reports every figure it promises."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_bench_reports_rates_flops_and_peak_share(tmp_path):
  out = tmp_path / "bench.json"
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("XLA_FLAGS", None)  # One device, as a user would run it.
  result = subprocess.run(
      [sys.executable, "-m", "wgan_jax.bench", "--experiment=toy_8gaussians",
       "--experiment.batch_size=64", "--experiment.model.generator.features=64",
       "--experiment.model.critic.features=64", "--iters=3", "--repeats=1",
       f"--json={out}"], capture_output=True, text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  figures = json.loads(out.read_text())
  assert figures["experiment"] == "toy_8gaussians" and figures["n_critic"] == 5
  assert figures["generator_iters_per_s"] > 0
  assert figures["real_examples_per_s"] == pytest.approx(
      figures["generator_iters_per_s"] * 5 * 64, rel=0.01)
  # MLP 64 at batch 64: forward ~2*64*(2*64 + 2*64*64 + 64) FLOP; an iteration
  # is tens of forward passes, so tens of MFLOP.
  assert 0.005 < figures["gflop_per_iteration"] < 0.2
  assert figures["matmul_peak_gflop_per_s"] > 1
  assert 0 < figures["share_of_matmul_peak"] < 1.5
  assert "generator_iters_per_s" in result.stdout

