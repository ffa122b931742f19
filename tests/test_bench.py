"""The benchmark entry point runs and reports every figure it promises, and
its FLOP count is the whole iteration's."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from tests.conftest import ROOT
from tests.helpers import tiny_config
from wgan_jax import bench, builders, updates

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow


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
  # MLP 64 at batch 64: forward ~2*64*(2*64 + 2*64*64 + 64) FLOP; an iteration
  # is tens of forward passes, so tens of MFLOP.
  assert 0.005 < figures["gflop_per_iteration"] < 0.2
  assert figures["matmul_peak_gflop_per_s"] > 1
  assert 0 < figures["share_of_matmul_peak"] < 1.5
  assert "generator_iters_per_s" in result.stdout



@pytest.mark.parametrize("setup", ["wgan-gp", "wgan", "gan"])
def test_iteration_flops_are_those_of_the_whole_unrolled_iteration(setup):
  """XLA counts a loop body once, so the bench adds up one critic update, one
  fake batch and one generator update; with the updates written out (no loop)
  XLA counts the whole program, which that sum must match."""
  config = tiny_config(setup, n_critic=3, batch_size=64,
                       **{"model.generator.features": 64, "model.critic.features": 64})
  spec = builders.make_spec(config, (2,))
  state = builders.init_state(spec, (2,), 0)
  parts = bench.iteration_flops(spec, state, 3, 64, (2,))
  whole = jax.jit(lambda s, r: updates.generator_iteration(spec, s, r, 0, unroll=True)).lower(
      state, jnp.zeros((3, 64, 2))).compile()
  assert parts["iteration"] == pytest.approx(bench._flops(whole), rel=0.03)  # pylint: disable=protected-access


def test_bench_memory_reports_the_iteration_and_the_largest_batch_each_device_holds(tmp_path):
  out = tmp_path / "memory.json"
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("XLA_FLAGS", None)
  result = subprocess.run(
      [sys.executable, "-m", "wgan_jax.bench", "--experiment=toy_8gaussians",
       "--experiment.batch_size=64", "--experiment.n_critic=2",
       *(f"--experiment.model.{net}.{key}={value}" for net in ("generator", "critic")
         for key, value in (("features", 32), ("depth", 2))), "--memory", f"--json={out}"],
      capture_output=True, text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  figures = json.loads(out.read_text())
  assert figures["per_device_batch"] == 64 and figures["memory_peak_estimate_mib"] > 0
  v5e, v4, h100 = (figures[f"largest_batch_per_device_{k}"] for k in ("tpu_v5e", "tpu_v4", "h100"))
  # A toy MLP's iteration is a few KB an example: hundreds of thousands fit 16 GiB, and
  # twice the memory holds about twice the batch.
  assert 10**5 < v5e < v4 < h100
  assert v4 / v5e == pytest.approx(2, rel=0.05) and h100 / v4 == pytest.approx(60e9 / 2**35, rel=0.05)
