"""The theory's studies: each study's claims on its tiny setting, and the CLI."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from wgan_jax import studies
from wgan_jax.studies import report

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

NAMES = ("parallel_lines", "xy_game", "critic_vs_discriminator", "vanishing_gradients",
         "divergences", "weight_clipping")


def _strict(token):
  raise ValueError(f"non-strict JSON token {token}")


def _written(tmp_path, name, result):
  """The study's two files: a real PNG, and strict JSON equal to what run returned."""
  with Image.open(tmp_path / f"{name}.png") as im:
    im.verify()
  with Image.open(tmp_path / f"{name}.png") as im:
    assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 300
  content = json.loads((tmp_path / f"{name}.json").read_text(), parse_constant=_strict)
  assert content == result
  assert content["study"] == name and content["settings"]["tiny"] is True
  return content


def test_registry_names_modules_and_descriptions():
  assert set(NAMES) <= set(studies.STUDIES)
  for name in studies.STUDIES:
    assert studies.description(name) and "\n" not in studies.description(name)
  for name in NAMES:
    module = studies.get(name)
    assert module.__name__ == studies.STUDIES[name] and callable(module.run)
    # --list reads DESCRIPTION from the source: it must be the module's own.
    assert studies.description(name) == module.DESCRIPTION
  with pytest.raises(ValueError, match="unknown study 'nope'; known studies: parallel_lines, "):
    studies.get("nope")


def test_json_is_strict_and_says_what_its_nulls_are():
  assert json.loads(report.json_text({"a": [1.0, math.inf], "null_means": "+inf"}))["a"] == [1.0,
                                                                                           None]
  with pytest.raises(ValueError, match="null_means"):
    report.json_text({"a": [math.inf]})
  for bad in (math.nan, -math.inf):
    with pytest.raises(ValueError, match="no NaN or -inf"):
      report.json_text({"a": np.array([0.0, bad]), "null_means": "+inf"})


def test_parallel_lines(tmp_path):
  r = _written(tmp_path, "parallel_lines", studies.get("parallel_lines").run(str(tmp_path),
                                                                                tiny=True))
  theta = np.array(r["theta"])
  assert all(len(r[k]) == len(theta) for k in ("tv", "kl", "kl_reverse", "js", "w1",
                                               "w1_samples", "critic"))
  assert 0.0 in theta and theta.min() == -1 and theta.max() == 1
  off = theta != 0
  np.testing.assert_array_equal(r["w1"], np.abs(theta))
  np.testing.assert_array_equal(np.array(r["js"])[off], math.log(2))
  np.testing.assert_array_equal(np.array(r["tv"])[off], 1.0)
  assert r["null_means"] == "+inf"
  assert all(v is None for k in ("kl", "kl_reverse") for v in np.array(r[k])[off])
  zero = int(np.flatnonzero(~off)[0])
  assert [r[k][zero] for k in ("tv", "kl", "kl_reverse", "js", "w1")] == [0.0] * 5
  np.testing.assert_allclose(r["w1_samples"], np.abs(theta), atol=0.06)
  critic = np.array(r["critic"])
  # WGAN-GP's optimum overshoots W1 slightly (slope 1 + W1 / (2 lambda)): a loose tolerance.
  np.testing.assert_allclose(critic, np.abs(theta), atol=0.12)
  for side in (theta >= 0, theta <= 0):
    by_distance = critic[side][np.argsort(np.abs(theta[side]))]
    assert np.all(np.diff(by_distance) > 0), by_distance


def test_xy_game(tmp_path):
  r = _written(tmp_path, "xy_game", studies.get("xy_game").run(str(tmp_path), tiny=True))
  eta = r["settings"]["eta"]
  sim, alt = r["simultaneous"], r["alternating"]
  assert sim["x"][:2] == [1.0, 1.0 - eta] and sim["y"][:2] == [1.0, 1.0 + eta]
  assert alt["x"][:2] == [1.0, 1.0 - eta] and alt["y"][1] == pytest.approx(1 + eta * (1 - eta))
  radius = np.array(sim["radius"])
  np.testing.assert_allclose(radius[1:] / radius[:-1], math.sqrt(1 + eta**2), atol=1e-6)
  assert r["growth_factor_measured"] == pytest.approx(math.sqrt(1 + eta**2), abs=1e-6)
  assert r["growth_factor_theory"] == math.sqrt(1 + eta**2)
  alt_radius = np.array(alt["radius"])
  low, high = r["alternating_radius_bound"]
  assert low - 1e-9 <= alt_radius.min() and alt_radius.max() <= high + 1e-9
  assert alt_radius.max() <= math.sqrt(2) + 1e-9 < radius[-1] / 1.5


def test_critic_vs_discriminator(tmp_path):
  r = _written(tmp_path, "critic_vs_discriminator",
               studies.get("critic_vs_discriminator").run(str(tmp_path), tiny=True))
  n = len(r["grid"])
  for key in ("d", "critic_clipped", "critic_gp", "grad_minimax", "grad_non_saturating",
              "grad_critic_clipped", "grad_critic_gp"):
    assert len(r[key]) == n, key
  s = r["summary"]
  assert s["d_at_fake_mean"] < 1e-3 and s["d_at_real_mean"] > 0.999
  g = s["grad_at_fake_mean"]
  # The saturated discriminator hands the fakes (almost) nothing; the critics do.
  assert g["grad_minimax"] < 1e-3 * g["grad_critic_gp"]
  assert g["grad_minimax"] < 1e-3 * s["grad_critic_clipped_at_fake_mean_normalized"]
  assert g["grad_non_saturating"] > 1.0 and 0.5 < g["grad_critic_gp"] < 2.0
  # The GP critic is close to linear between the two means (slope ~1 on [-2, 2]).
  grid, critic_gp = np.array(r["grid"]), np.array(r["critic_gp"])
  inside = (grid >= -2) & (grid <= 2)
  slope = np.polyfit(grid[inside], critic_gp[inside], 1)[0]
  assert 0.7 < slope < 1.5
  residual = critic_gp[inside] - np.polyval(np.polyfit(grid[inside], critic_gp[inside], 1),
                                            grid[inside])
  assert np.max(np.abs(residual)) < 0.3


def test_vanishing_gradients(tmp_path):
  r = _written(tmp_path, "vanishing_gradients",
               studies.get("vanishing_gradients").run(str(tmp_path), tiny=True))
  seeds, points = r["settings"]["seeds"], len(r["steps"])
  assert r["steps"][0] == 0 and r["steps"][-1] == r["settings"]["steps"]
  for key in ("minimax", "non_saturating", "wgan"):
    assert len(r["mean"][key]) == points
    assert np.array(r["per_seed"][key]).shape == (seeds, points)
  minimax, non_saturating = np.array(r["per_seed"]["minimax"]), np.array(
      r["per_seed"]["non_saturating"])
  # Vanishes as D learns: on average from its start, and in every seed from its peak
  # (a random D's first value varies).
  assert r["summary"]["minimax_end"] < 0.2 * r["summary"]["minimax_start"]
  assert np.all(minimax[:, -1] < 0.2 * minimax.max(axis=1))
  assert np.all(non_saturating[:, -1] > 10 * non_saturating[:, 0])   # grows
  wgan = np.array(r["mean"]["wgan"])
  assert wgan[-1] > 0.5 * np.max(wgan[points // 2:])                 # does not decay
  assert r["summary"]["wgan_second_half_max_over_min"] < 2.0


def _cli(*args, cwd):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", "wgan_jax.studies", *args], check=False,
                        capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_divergences_optimal_discriminator_kl_asymmetry_and_earth_mover(tmp_path):
  r = _written(tmp_path, "divergences", studies.get("divergences").run(str(tmp_path), tiny=True))
  opt = r["optimal_discriminator"]
  # V(D*) = 2 JS - 2 log 2, by quadrature, to the quadrature's precision.
  assert opt["value_at_d_star"] == pytest.approx(opt["two_js_minus_two_log_two"], abs=1e-9)
  assert 0.3 < opt["js"] < math.log(2)  # Overlapping, different: between 0 and log 2.
  # D* beats the undecided D = 1/2 (whose V is -2 log 2, the value at p_r = p_g).
  assert opt["value_at_half"] == pytest.approx(-2 * math.log(2))
  assert opt["value_at_d_star"] > opt["value_at_half"] + 0.5
  # A discriminator trained on samples comes out as D* where the data are, and its
  # V reaches V(D*) from below (on the same held-out samples).
  assert opt["d_trained_max_abs_error"] < 0.05
  assert opt["value_d_star_samples"] - 0.005 < opt["value_trained_samples"] <= \
      opt["value_d_star_samples"]
  kl = r["kl_against_js"]
  kl_pq, kl_qp = np.array(kl["kl_pq"]), np.array(kl["kl_qp"])
  js_pq, js_qp = np.array(kl["js_pq"]), np.array(kl["js_qp"])
  assert np.all(np.abs(kl_pq - kl_qp) > 0.4)  # Asymmetric at every mu (unequal widths).
  np.testing.assert_allclose(js_pq, js_qp, rtol=1e-9)  # Symmetric.
  assert np.all(js_pq < math.log(2)) and js_pq[-1] > 0.95 * math.log(2)  # Bounded, saturating.
  assert kl_pq[-1] > 10 * js_pq[-1] and np.all(np.diff(kl_pq) > 0)  # Unbounded, growing.
  emd = r["earth_mover"]
  assert emd["p"] == [3, 2, 1, 4] and emd["q"] == [1, 2, 4, 3]
  assert emd["carried"] == [2, 2, -1]  # The post's plan: 2, then 2, then 1 back.
  assert emd["w_running_plan"] == 5 and emd["w_exact_ot"] == pytest.approx(5.0, abs=1e-9)


def test_weight_clipping_explodes_or_vanishes_where_the_penalty_does_not(tmp_path):
  r = _written(tmp_path, "weight_clipping",
               studies.get("weight_clipping").run(str(tmp_path), tiny=True))
  summary, critics = r["summary"], r["critics"]
  assert [len(c["weight_grad_norm"]) for c in critics.values()] == [13] * 4
  penalty = summary["gradient penalty"]
  # The penalty's critic: signal about constant through the 12 layers, no weight at a bound.
  assert 0.7 < penalty["signal_ratio_per_layer"] < 1.4 and penalty["signal_span"] < 10
  assert penalty["share_at_extremes"] < 0.01
  assert all(0.05 < g < 20 for g in critics["gradient penalty"]["weight_grad_norm"][1:])
  # c = 0.1 explodes: the weights' gradients 100x the penalty's and more, the
  # backpropagated signal growing geometrically towards the input.
  big = summary["clip c=0.1"]
  assert big["median_weight_grad_vs_penalty"] > 100
  assert big["signal_ratio_per_layer"] < 0.7 and big["signal_span"] > 100
  # c = 0.01 and 0.001 vanish: a millionth of the penalty's or less, shrinking towards the input.
  for c in ("clip c=0.01", "clip c=0.001"):
    assert summary[c]["median_weight_grad_vs_penalty"] < 1e-6, c
    assert summary[c]["signal_ratio_per_layer"] > 5 and summary[c]["signal_span"] > 1e6, c
  # Clipping piles the weights at +-c; the trainer's clipped_fraction says so.
  for c in ("clip c=0.1", "clip c=0.01", "clip c=0.001"):
    assert summary[c]["clipped_fraction"] > 0.15, c
    assert summary[c]["share_at_extremes"] > 30 * penalty["share_at_extremes"] + 0.1, c
  counts = np.array(critics["clip c=0.01"]["histogram"]["counts"])
  assert counts[0] + counts[-1] > 0.8 * counts.sum()  # Two spikes, at -c and +c.


def test_earth_mover_refuses_unequal_mass():
  with pytest.raises(ValueError, match="the piles hold 10 and 9 shovelfuls"):
    studies.get("divergences").earth_mover((3, 2, 1, 4), (1, 2, 3, 3))


def test_cli_lists_the_studies(tmp_path):
  result = _cli("--list", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert [line.split()[0] for line in lines] == list(studies.STUDIES)
  for line, name in zip(lines, studies.STUDIES):
    assert line.endswith(f"  {studies.description(name)}")
  assert set(NAMES) <= {line.split()[0] for line in lines}


@pytest.mark.parametrize("args, message", [
    (("nope",), "unknown study 'nope'; use one of parallel_lines, xy_game"),
    ((), "no study named: python -m wgan_jax.studies NAME"),
])
def test_cli_bad_name_is_one_line(tmp_path, args, message):
  result = _cli(*args, cwd=tmp_path)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]
  assert message in result.stderr and "Traceback" not in result.stderr
  assert not os.listdir(tmp_path)


def test_cli_runs_a_tiny_study(tmp_path):
  result = _cli("xy_game", "--tiny", "--out=out", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(tmp_path / "out")) == ["xy_game.json", "xy_game.png"]
  assert "wrote out/xy_game.png and out/xy_game.json" in result.stdout
  json.loads((tmp_path / "out" / "xy_game.json").read_text(), parse_constant=_strict)
