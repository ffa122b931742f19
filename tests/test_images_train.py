"""Image experiments end to end: train on every data path, then sample from
what was saved (generator restored alone)."""
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits

from tests.runs import final_state, run_module
from wgan_jax import checkpointing, configs, generators, loop

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow


def _shrink(name, **overrides):
  """A seconds-long version of an image experiment."""
  defaults = {"batch_size": "8", "num_generator_steps": "2", "log_every": "1",
              "eval_every": "0", "eval_samples": "4", "checkpoint_every": "1",
              "n_critic_schedule": "constant", "n_critic": "2"}
  defaults.update(overrides)
  return configs.from_command_line(name, list(defaults.items()))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  """A real digits_dcgan_gp run, short but long enough to learn digit shapes. On
  one device with XLA's optimisation: what is tested is what it learns, and 8 fake
  devices of 8 images each, compiled for the tests, take three times as long."""
  workdir = tmp_path_factory.mktemp("digits")
  result = run_module("wgan_jax.train", "--experiment=digits_dcgan_gp", f"--workdir={workdir}",
                      "--experiment.num_generator_steps=300", "--experiment.checkpoint_every=150",
                      "--experiment.eval_every=150", "--experiment.log_every=50",
                      env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_digits_training_writes_checkpoints_grids_and_summary(digits_run):
  summary = json.loads((digits_run / "summary.json").read_text())
  assert summary["generator_steps"] == 300
  assert summary["train_wasserstein_estimate"] > 0
  # The experiment's default scores: the digit classifier's, at each evaluation.
  for step in (150, 300):
    report = json.loads((digits_run / f"eval_{step}.json").read_text())
    assert report["protocol"]["domain_samples"] == 2000
    assert sorted(report["metrics"]) == ["domain_c2st", "domain_classes_covered",
                                         "domain_confidence", "domain_fd", "domain_kl"]
  assert summary["domain_fd"] == report["metrics"]["domain_fd"] > 0
  # What the recipe is for: samples a linear two-sample test finds hard to tell from
  # the digits already at 300 iterations (0.69 here; drawn at 16x16 with tanh: 0.98 at 500).
  assert summary["domain_c2st"] < 0.8, summary
  assert 1 <= summary["domain_classes_covered"] <= 10 and summary["domain_kl"] >= 0
  assert sorted(os.listdir(digits_run / "checkpoints")) == ["150", "300"]
  for name in ("samples_000150.png", "samples_final.png"):
    with Image.open(digits_run / name) as im:
      # 8x8 grid of 16x16 images, 1px gaps, shown 4 times as large
      assert im.size == (4 * (8 * 17 + 1), 4 * (8 * 17 + 1))


def _sample(workdir, *args):
  return run_module("wgan_jax.sample", f"--workdir={workdir}", *args)


def test_sample_same_seed_same_images_and_digits_not_noise(digits_run, tmp_path):
  a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
  for path, seed in ((a, 1), (b, 1), (c, 2)):
    result = _sample(digits_run, "--num=200", f"--npz={path}", f"--seed={seed}",
                     f"--out={tmp_path / 'grid.png'}")
    assert result.returncode == 0, result.stderr[-3000:]
  samples = np.load(a)["samples"]
  assert samples.shape == (200, 16, 16, 1) and samples.dtype == np.uint8
  assert int(np.load(a)["step"]) == 300
  np.testing.assert_array_equal(samples, np.load(b)["samples"])
  assert not np.array_equal(samples, np.load(c)["samples"])
  assert (tmp_path / "grid.png").exists()

  # Samples lie near real digits (nearest-neighbour distance in the data's
  # own 8x8 space), noise with the same pixel values does not.
  real = load_digits().data / 16.0

  def nearest_real(images_uint8):
    x = images_uint8[..., 0].astype(np.float32) / 255.0
    x = x.reshape(-1, 8, 2, 8, 2).mean(axis=(2, 4)).reshape(len(x), 64)  # 16x16 -> 8x8
    return float(np.sqrt(((x[:, None] - real[None]) ** 2).sum(-1).min(1)).mean())

  noise = np.random.default_rng(0).permutation(samples.reshape(-1)).reshape(samples.shape)
  ours, theirs = nearest_real(samples), nearest_real(noise)
  # Held-out real digits sit ~1.05 from the rest; noise ~2.6.
  assert ours < 0.7 * theirs, (ours, theirs)


def test_interpolation_walks_between_samples_and_truncation_narrows_them(digits_run, tmp_path):
  rows, steps = 3, 5
  result = _sample(digits_run, "--interpolate=slerp", f"--num={rows}", f"--steps={steps}",
                   f"--out={tmp_path / 'walk.png'}", f"--gif={tmp_path / 'walk.gif'}",
                   f"--npz={tmp_path / 'walk.npz'}", "--seed=4")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stderr.strip().endswith(f"{tmp_path / 'walk.npz'}")
  walk = np.load(tmp_path / "walk.npz")["samples"].reshape(rows, steps, 16, 16, 1)
  # The ends of row r are the samples r and rows + r of the same seed.
  ends = _sample(digits_run, f"--num={2 * rows}", "--seed=4", f"--npz={tmp_path / 'ends.npz'}",
                 f"--out={tmp_path / 'ends.png'}")
  assert ends.returncode == 0, ends.stderr[-3000:]
  samples = np.load(tmp_path / "ends.npz")["samples"].astype(int)
  # Batch norm sees another batch (the path's points): the same digit, not the same bits.
  assert np.abs(walk[:, 0].astype(int) - samples[:rows]).mean() < 20
  assert np.abs(walk[:, -1].astype(int) - samples[rows:]).mean() < 20
  # Consecutive frames change by less than the path's ends differ.
  step_change = np.abs(np.diff(walk.astype(int), axis=1)).mean()
  assert step_change < 0.6 * np.abs(walk[:, -1].astype(int) - walk[:, 0]).mean()
  with Image.open(tmp_path / "walk.png") as grid:
    assert grid.size == (4 * (steps * 17 + 1), 4 * (rows * 17 + 1))
  with Image.open(tmp_path / "walk.gif") as gif:
    assert gif.n_frames == 2 * steps - 2 and gif.info["loop"] == 0

  spread, said = {}, {}
  for norm in ("running", "batch"):
    for psi in ("", "0.3"):
      path = tmp_path / f"t{norm}{psi}.npz"
      args = [f"--truncation={psi}"] if psi else []
      result = _sample(digits_run, "--num=200", f"--npz={path}", f"--out={tmp_path / 't.png'}",
                       f"--experiment.sampling_batch_norm={norm}", *args)
      assert result.returncode == 0, result.stderr[-3000:]
      x = np.load(path)["samples"].reshape(200, -1).astype(np.float32) / 255
      spread[norm, psi] = float(np.linalg.norm(x - x.mean(0), axis=1).mean())
      said[norm, psi] = "undoes most of the truncation" in result.stderr
  # Truncated noise, samples closer to the typical one: less diverse. Batch norm by
  # each batch's own statistics undoes it (said), by the running averages it does not.
  assert spread["running", "0.3"] < 0.6 * spread["running", ""], spread
  assert spread["batch", "0.3"] > 0.9 * spread["batch", ""], spread
  assert said == {("running", ""): False, ("running", "0.3"): False, ("batch", ""): False,
                  ("batch", "0.3"): True}


def test_evaluate_scores_truncated_noise_in_its_own_report(digits_run):
  common = ("--metrics=domain", "--num_samples=300", "--experiment.sampling_batch_norm=running")
  result = run_module("wgan_jax.evaluate", f"--workdir={digits_run}", *common, "--truncation=0.3")
  assert result.returncode == 0, result.stderr[-3000:]
  truncated = json.loads((digits_run / "eval_300_psi0.3.json").read_text())
  assert truncated["protocol"]["truncation"] == 0.3
  assert json.loads(result.stdout.strip().splitlines()[-1]) == truncated["metrics"]
  plain = run_module("wgan_jax.evaluate", f"--workdir={digits_run}", *common)
  assert plain.returncode == 0, plain.stderr[-3000:]
  untruncated = json.loads(plain.stdout.strip().splitlines()[-1])
  # This DCGAN's batch norm, fitted to unit-variance noise, fades truncated samples:
  # farther from the digits, not nearer.
  assert truncated["metrics"]["domain_fd"] > untruncated["domain_fd"]
  bad = run_module("wgan_jax.evaluate", f"--workdir={digits_run}", "--truncation=0")
  assert bad.returncode == 2 and bad.stderr.strip().startswith(
      "error: --truncation=0.0 must be > 0")


def test_sample_errors_are_one_line_with_exit_code_2(digits_run, tmp_path):
  cases = [
      ([f"--workdir={tmp_path}"], f"error: no checkpoint in {tmp_path}"),
      ([f"--workdir={digits_run}", "--step=7"], "error: no checkpoint for step 7"),
      ([f"--workdir={digits_run}", "--experiment=digits_dcgan_gp",
        "--experiment.model.generator.ngf=16"],
       "error: the state saved at step 300 does not match the experiment: "
       "generator/batch_stats/BatchNorm_0/mean has shape (64,) in the checkpoint but (16,) "
       "in the model"),
      ([f"--workdir={digits_run}", "--num=0"], "error: --num=0 must be at least 1"),
      ([f"--workdir={digits_run}", "--truncation=-0.5"], "error: --truncation=-0.5 must be > 0"),
      ([f"--workdir={digits_run}", "--class=3"],
       "error: --class=3: this run's generator is unconditional (it draws no class); drop "
       "--class"),
      ([f"--workdir={digits_run}", "--steps=4"], "error: --steps is for --interpolate"),
      ([f"--workdir={digits_run}", "--interpolate=slerp", "--steps=1"],
       "error: --steps=1 must be from 2 to 64"),
      ([f"--workdir={digits_run}", "--interpolate=cubic"], "error: flag --interpolate=cubic"),
      ([f"--workdir={digits_run}", "--interpolate=linear", f"--gif={tmp_path}/a.png"],
       f"error: --gif={tmp_path}/a.png must end in .gif"),
  ]
  for args, message in cases:
    result = run_module("wgan_jax.sample", *args)
    assert result.returncode == 2, (args, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), (args, result.stderr[-2000:])


def _train_then_sample(config, workdir):
  summary = loop.train_and_evaluate(config, str(workdir))
  assert summary["generator_steps"] == config.num_generator_steps
  step, metadata = checkpointing.read_metadata(str(workdir))
  assert step == config.num_generator_steps
  assert metadata["config"]["experiment"] == config.experiment
  samples = generators.from_checkpoint(config, str(workdir), step, 3, seed=0)
  return samples


def test_cifar10_resnet_gp_on_mock_tfds(tmp_path):
  config = _shrink("cifar10_resnet_gp", **{"model.generator.dim": "8", "model.critic.dim": "8"})
  with tfds.testing.mock_data(num_examples=32):
    samples = _train_then_sample(config, tmp_path)
  assert samples.shape == (3, 32, 32, 3)
  assert np.all(np.abs(samples) <= 1.0)


def test_bedrooms_dcgan_on_a_tiny_lsun_lmdb(tmp_path, lsun_root):
  config = _shrink("bedrooms_dcgan", **{"data.dir": lsun_root, "data.image_size": "16",
                                        "model.generator.ngf": "8", "model.critic.ndf": "8",
                                        "batch_size": "8"})
  samples = _train_then_sample(config, tmp_path)
  assert samples.shape == (3, 16, 16, 3)


def test_bedrooms_reference_schedule_runs_long_critic_phases(tmp_path, lsun_root):
  config = _shrink("bedrooms_dcgan_gp", **{
      "data.dir": lsun_root, "data.image_size": "16", "model.generator.ngf": "4",
      "model.critic.ndf": "4", "batch_size": "8", "num_generator_steps": "1",
      "n_critic_schedule": "wgan_reference", "n_critic": "5"})
  samples = _train_then_sample(config, tmp_path)  # 100 critic updates, in chunks of 5
  assert samples.shape == (3, 16, 16, 3)
  # Adam counted 100 critic updates and 1 generator update, and the input
  # pipeline handed out 100 real batches of 8.
  state = final_state(str(tmp_path), 1)
  assert int(state["critic/opt_state/0/count"]) == 100
  assert int(state["generator/opt_state/0/count"]) == 1
  assert checkpointing.read_metadata(str(tmp_path), 1)[1]["data_position"] == [800]


def test_bedrooms_mlp_on_an_image_folder(tmp_path, lsun_root):
  folder = tmp_path / "images"
  folder.mkdir()
  for i in range(6):
    Image.new("RGB", (20 + i, 24), (40 * i, 10, 200)).save(folder / f"{i}.png")
  config = _shrink("bedrooms_mlp", **{"data.name": "image_folder", "data.dir": str(folder),
                                      "data.image_size": "16", "model.generator.features": "16",
                                      "model.critic.ndf": "8", "batch_size": "8"})
  samples = _train_then_sample(config, tmp_path / "run")
  assert samples.shape == (3, 16, 16, 3)
