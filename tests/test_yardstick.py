"""The critic as a yardstick: a fresh clipped critic's estimate of K * W1."""
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_config
from wgan_jax import checkpoint_critics, configs, loop
from wgan_jax.metrics import yardstick as ys
from wgan_jax.configs.rules import ConfigError

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

# A small MLP critic that converges in a few hundred updates.
SMALL = ys.YardstickConfig(critic="mlp", features=64, depth=2, updates=400, batch_size=128,
                           seeds=3, held_out=1000)
# Just enough to run every path.
TINY = ys.YardstickConfig(features=16, depth=1, updates=20, batch_size=32, seeds=2,
                          held_out=200)


def _gaussian(shift, key, n):
  return jax.random.normal(key, (n, 2)) + jnp.stack([shift, 0.0])


def test_estimate_is_proportional_to_w1_of_shifted_gaussians():
  # N(0, I) against N((d, 0), I): W1 = d, for the held-out samples too (x vs x + d).
  held_out = np.random.default_rng(0).normal(size=(SMALL.held_out, 2)).astype(np.float32)
  real = ys.Source(_gaussian, jnp.float32(0.0))
  ks = []
  for d in (0.5, 1.0, 1.5):
    estimate = ys.critic_estimate(real, ys.Source(_gaussian, jnp.float32(d)), held_out,
                                  held_out + np.float32([d, 0.0]), SMALL)
    assert np.all(estimate.per_seed > 0), (d, estimate.per_seed)
    # Trained, not just initialised: the batches agree with the held-out reading.
    np.testing.assert_allclose(estimate.train_last, estimate.per_seed, rtol=0.2)
    ks.append(estimate.mean / d)
  # One K for every shift: the estimate is K * W1 (a square law would spread K 3x).
  assert max(ks) / min(ks) < 1.25, ks
  # The clip bounds K: weights in [-c, c] on a 2 -> 64 -> 64 -> 1 ReLU net, whose
  # layers' operator norms are at most c sqrt(2 * 64), 64 c and 8 c.
  c = SMALL.clip
  assert max(ks) <= math.sqrt(2) * c * 64 * c * 64 * c, ks


def test_seeds_give_a_t_interval_around_the_mean():
  mean, half = ys.mean_interval([1.0, 2.0, 3.0])
  assert mean == 2.0
  assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, 2) * s / sqrt(n)
  held_out = np.random.default_rng(1).normal(size=(SMALL.held_out, 2)).astype(np.float32)
  estimate = ys.critic_estimate(ys.Source(_gaussian, jnp.float32(0.0)),
                                ys.Source(_gaussian, jnp.float32(1.0)), held_out,
                                held_out + np.float32([1.0, 0.0]), SMALL)
  assert len(set(estimate.per_seed.tolist())) == SMALL.seeds  # each seed its own critic
  assert 0 < estimate.interval < estimate.mean
  low, high = estimate.mean - estimate.interval, estimate.mean + estimate.interval
  assert low < estimate.per_seed.mean() < high
  # The same seeds give the same critics.
  again = ys.critic_estimate(ys.Source(_gaussian, jnp.float32(0.0)),
                             ys.Source(_gaussian, jnp.float32(1.0)), held_out,
                             held_out + np.float32([1.0, 0.0]), SMALL)
  np.testing.assert_array_equal(again.per_seed, estimate.per_seed)


def test_spearman_p_value_is_exact_for_few_generators():
  # 4 generators in the same order: 2 of the 24 orders are as extreme (scipy's t: p = 0).
  assert ys.spearman([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]) == pytest.approx((1.0, 1 / 12))
  rho, p = ys.spearman([1, 2, 3, 4], [0.2, 0.1, 0.4, 0.3])
  assert rho == pytest.approx(0.6) and p == pytest.approx(10 / 24)  # |rho| >= 0.6: 10 orders


def test_bad_settings_are_one_line_config_errors():
  with pytest.raises(ConfigError, match=r"yardstick.clip=0.0 must be positive"):
    ys.YardstickConfig(clip=0.0)
  with pytest.raises(ConfigError, match=r"yardstick.seeds=1 must be at least 2"):
    ys.YardstickConfig(seeds=1)
  with pytest.raises(ConfigError, match=r"yardstick.critic='vgg' is unknown"):
    ys.YardstickConfig(critic="vgg")
  # The architecture's keys by the model registry's rules.
  with pytest.raises(ConfigError, match=r"yardstick.norm='group' is unknown"):
    ys.YardstickConfig(norm="group")
  with pytest.raises(ConfigError, match=r"yardstick.features=0 must be at least 1"):
    ys.YardstickConfig(critic="mlp", features=0)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  """A real WGAN-GP run on 8gaussians with checkpoints at steps 2 and 4."""
  workdir = str(tmp_path_factory.mktemp("toy"))
  config = tiny_config("wgan-gp", num_generator_steps=4, checkpoint_every=2, eval_every=0)
  loop.train_and_evaluate(config, workdir)
  return workdir


def test_evaluate_checkpoints_of_a_toy_run(toy_run):
  rows = checkpoint_critics.evaluate_checkpoints(toy_run, yardstick=TINY)
  assert [r["step"] for r in rows] == [2, 4]
  for r in rows:
    assert r["data"] == "8gaussians" and r["critic"] == "mlp 16x1 c=0.01"
    assert len(r["estimates"]) == TINY.seeds
    for key in ("estimate", "estimate_ci", "train_estimate", "w1", "w1_floor", "k", "k_ci"):
      assert np.isfinite(r[key]), (key, r)
    assert r["w1"] > r["w1_floor"] > 0
    assert r["k"] == pytest.approx(r["estimate"] / r["w1"])
    assert r["k_ci"] == pytest.approx(r["estimate_ci"] / r["w1"])
  # Same critic seeds and held-out samples for every generator: step 2 alone reads the same.
  alone = checkpoint_critics.evaluate_checkpoints(toy_run, steps=[2], yardstick=TINY)
  assert alone[0]["estimates"] == rows[0]["estimates"] and alone[0]["w1"] == rows[0]["w1"]
  table = checkpoint_critics.format_table(rows)
  assert "K = estimate / W1" in table and len(table.splitlines()) == 4


def test_k_stability_study_writes_json_figure_and_table(toy_run, tmp_path):
  critics = [TINY, dataclasses.replace(TINY, clip=0.05)]
  table = checkpoint_critics.k_stability_study(str(tmp_path), [toy_run], critics)
  saved = json.loads((tmp_path / "k_stability.json").read_text())
  assert (tmp_path / "k_stability.png").stat().st_size > 10_000
  for label in ("mlp 16x1 c=0.01", "mlp 16x1 c=0.05"):
    rows = saved["rows"][label]
    k = np.array([r["k"] for r in rows])
    summary = saved["summary"][label]["all"]
    assert summary["k_cv"] == pytest.approx(k.std(ddof=1) / abs(k.mean()))
    # Two generators: +1 if the estimate and W1 rank them alike, else -1.
    order = np.sign((rows[1]["estimate"] - rows[0]["estimate"]) * (rows[1]["w1"] - rows[0]["w1"]))
    assert summary["spearman"] == pytest.approx(order)
    assert label in table
  assert "CV of K" in table and "Spearman" in table


def test_evaluate_checkpoints_of_a_digits_run(tmp_path):
  # The trainer's checkpoint of a fresh generator (no iteration, no digit
  # classifier at the end: each would double the test's time); the real
  # digits come from the pipeline.
  config = configs.from_command_line("digits_dcgan_gp", [
      ("model.generator.ngf", "8"), ("model.critic.ndf", "8"), ("batch_size", "8"),
      ("num_generator_steps", "0"), ("eval_every", "0"), ("eval_samples", "4"),
      ("eval.metrics", "")])
  loop.train_and_evaluate(config, str(tmp_path))
  yardstick = ys.YardstickConfig(ndf=8, updates=2, batch_size=16, seeds=2, held_out=32,
                                 real_pool=64)
  rows = checkpoint_critics.evaluate_checkpoints(str(tmp_path), yardstick=yardstick)
  assert len(rows) == 1 and rows[0]["step"] == 0
  assert rows[0]["critic"] == "dcgan ndf=8 norm=none c=0.01"
  assert np.isfinite(rows[0]["estimate"]) and np.isfinite(rows[0]["estimate_ci"])
  assert "w1" not in rows[0] and "k" not in rows[0]
  assert "exact W1" not in checkpoint_critics.format_table(rows)
