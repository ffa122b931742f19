"""Sweeps: K models as one vmapped program, each equal to its own run."""
import json
import os
import re

import jax
import numpy as np
import pytest

from tests import golden
from tests.helpers import tiny_config
from tests.runs import run_module
from wgan_jax import configs, generators, sweeps, loop, writers
from wgan_jax import run as run_lib
from wgan_jax.configs.n_critic import n_critic_at
from wgan_jax.devices import Devices
from wgan_jax.inflight import NonFiniteError, check_finite
from wgan_jax.configs.rules import ConfigError

SMALL = dict(batch_size=16, n_critic=2, **{"model.generator.features": 16,
                                            "model.critic.features": 16})


def _train(config, devices, steps=2):
  parts = run_lib.build(config, devices)
  state = parts.create_state()
  for step in range(steps):
    state, metrics = parts.iteration(state, n_critic_at(step, config))
  return jax.device_get(state), metrics


@pytest.mark.parametrize("setup,key,grid,model,value,loop", [
    # clip traced in the projection and the init; the models batched
    ("wgan", "clip", (0.01, 0.1), 3, 0.1, "vmap"),
    # model 1 applies 1 of 3 updates; the models one after another
    ("wgan-gp", "n_critic", (1, 3), 1, 1, "map"),
])
def test_each_model_of_a_sweep_equals_its_own_run(setup, key, grid, model, value, loop):
  sweep_config = tiny_config(setup, **SMALL, **{"sweep.key": key, "sweep.grid": grid,
                                                    "sweep.seeds": 2, "sweep.loop": loop,
                                                    "optimizer.schedule": "constant"})
  # Model m is value m // seeds with seed seed + m % seeds.
  one_config = tiny_config(setup, **{**SMALL, key: value, "seed": model % 2,
                                          "optimizer.schedule": "constant"})
  swept, swept_metrics = _train(sweep_config, Devices("jit", jax.devices()[:4],
                                                      shard_models=True))
  alone, alone_metrics = _train(one_config, Devices.single())
  assert swept.critic.params["Dense_0"]["kernel"].shape[0] == 4

  def distance(m):  # relative, over every parameter of both networks
    a = np.concatenate([np.ravel(x[m]) for x in jax.tree.leaves((swept.generator.params,
                                                                 swept.critic.params))])
    b = np.concatenate([np.ravel(x) for x in jax.tree.leaves((alone.generator.params,
                                                              alone.critic.params))])
    return np.linalg.norm(a - b) / np.linalg.norm(b)

  # Equal up to float rounding (vmapped matmuls round differently, and RMSProp's
  # first steps amplify it); every other model is much further off.
  assert distance(model) < 1e-3
  assert distance(model) < 0.1 * min(distance(m) for m in range(4) if m != model)
  np.testing.assert_array_equal(swept.step[model], alone.step)
  for name, v in alone_metrics.items():
    np.testing.assert_allclose(swept_metrics[name][model], v, rtol=1e-2, atol=1e-6)
  if key == "clip":  # Every model's weights within its own bound.
    bounds = np.array([abs(swept.critic.params["Dense_0"]["kernel"][m]).max() for m in range(4)])
    assert np.all(bounds <= np.repeat(grid, 2)) and bounds[2] > 0.01


def test_sweep_config_errors_are_one_line():
  cases = {
      (("sweep.key", "clip"), ("sweep.grid", (0.1,))):
          "sweep.key='clip' acts only with weight clipping (clip > 0); this run has clip=0.0, "
          "penalty='gp'",
      (("sweep.key", "penalty_weight"), ("sweep.grid", (1.0,)), ("penalty", "none"),
       ("clip", 0.01)):
          "sweep.key='penalty_weight' acts only with a penalty (penalty=gp|lp|r1|r2|dragan); "
          "this run has clip=0.01, penalty='none'",
      # The old name of the key, as a saved sweep or an old command line has it.
      (("sweep.key", "gp_weight"), ("sweep.grid", (1.0,)), ("penalty", "none"),
       ("loss", "non-saturating")): "sweep.key='penalty_weight' acts only with a penalty",
      (("sweep.grid", (0.1,)),): "without sweep.key",
      (("sweep.key", "lr"),): "sweep.key='lr' cannot be swept; use one of clip, penalty_weight",
      (("sweep.key", "penalty_weight"),): "needs sweep.grid",
      (("sweep.key", "n_critic"), ("sweep.grid", (1, 5))): "optimizer.schedule='constant'",
      (("sweep.key", "n_critic"), ("sweep.grid", (1.5,)), ("optimizer.schedule", "constant")):
          "sweep.grid value 1.5 for n_critic is not a whole number",
      # Each value passes its key's own rule.
      (("sweep.key", "n_critic"), ("sweep.grid", (5, 100000)), ("optimizer.schedule", "constant")):
          "sweep.grid value 100000 for n_critic must be at least 1 and at most 1000",
      (("sweep.key", "optimizer.lr"), ("sweep.grid", (-1.0,))):
          "for optimizer.lr must be at least 0",
      (("sweep.key", "clip"), ("sweep.grid", (0.0,)), ("penalty", "none"), ("clip", 0.01)):
          "sweep.grid value 0.0 for clip must be positive",
      (("sweep.key", "optimizer.lr"), ("sweep.grid", "1e999")): "is not a number",
      (("sweep.key", "optimizer.lr"), ("sweep.grid", "('a',)")): "'a' for optimizer.lr is not a",
      (("sweep.seeds", 3), ("seed", 2**31 - 2)): "runs past the largest seed",
      (("sweep.seeds", 2), ("shard_state", True)): "shard_state=False",
  }
  for overrides, message in cases.items():
    experiment = dict(overrides).get("experiment", "toy_8gaussians")
    overrides = [(k, v) for k, v in overrides if k != "experiment"]
    config = configs.load(experiment)
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
      for key, value in overrides:
        configs.override(config, key, repr(value) if isinstance(value, tuple) else str(value))
      configs.validate(config)
    assert "\n" not in str(e.value)
  with pytest.raises(ConfigError, match="under parallelism='jit'"):
    tiny_config(**{"sweep.seeds": 2, "parallelism": "pmap"})
  # The penalty's weight acts under any loss that has one: e.g. R1's gamma.
  r1 = tiny_config("gan", penalty="r1", **{"sweep.key": "penalty_weight",
                                           "sweep.grid": (0.1, 1.0)})
  assert sweeps.from_config(r1).hparams()["penalty_weight"].tolist() == pytest.approx([0.1, 1.0])


def test_a_sweep_splits_its_models_over_the_devices_that_divide_them():
  sweep = lambda k: sweeps.from_config(tiny_config(**{"sweep.seeds": k}))
  assert len(sweeps.devices_for(sweep(16), jax.devices())) == 8
  assert len(sweeps.devices_for(sweep(12), jax.devices())) == 4
  assert len(sweeps.devices_for(sweep(3), jax.devices())) == 1


def test_sweep_labels_and_hparams():
  sweep = sweeps.from_config(tiny_config("wgan", **{"sweep.key": "clip", "sweep.grid": (0.01, 0.1),
                                                    "sweep.seeds": 3, "seed": 5}))
  assert sweep.size == 6
  assert [sweep.model(m) for m in (0, 4)] == [{"model": 0, "seed": 5, "clip": 0.01},
                                              {"model": 4, "seed": 6, "clip": 0.1}]
  np.testing.assert_array_equal(sweep.hparams()["clip"], np.float32([.01, .01, .01, .1, .1, .1]))
  assert sweeps.from_config(tiny_config()) is None  # One model: no model axis.


def test_nonfinite_metrics_name_the_models():
  with pytest.raises(NonFiniteError, match=r"non-finite critic_loss of models 1, 3 at generator step 7"):
    check_finite({"critic_loss": np.array([0.0, np.nan, 1.0, np.inf])}, 7)
  with pytest.raises(NonFiniteError, match=r"non-finite parameters of model 2 after"):
    check_finite({"nonfinite_params": np.array([0.0, 0.0, 3.0, 0.0])}, 7)


@pytest.mark.slow
def test_sweep_trains_logs_evaluates_resumes_and_samples_per_model(tmp_path):
  config = tiny_config(**SMALL, **{"sweep.seeds": 8, "num_generator_steps": 4, "eval_every": 0,
                                   "checkpoint_every": 2, "log_every": 2})
  workdir = str(tmp_path / "sweep")
  summary = loop.train_and_evaluate(config, workdir)
  assert [m["seed"] for m in summary["models"]] == list(range(8))
  assert len(summary["w1"]) == 8 and all(w > 0 for w in summary["w1"])
  assert len(set(summary["w1"])) == 8  # Eight different models.
  for m in (0, 7):
    where = sweeps.model_dir(workdir, m, 8)
    assert os.path.isfile(os.path.join(where, "toy_final.png"))
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(where))
  lines = writers.read_metrics(workdir)
  trained = [line for line in lines if "train/critic_loss" in line]
  assert [line["step"] for line in trained] == [2, 4]
  assert all(len(line["train/critic_loss"]) == 8 for line in trained)
  assert any(len(line.get("eval/w1", [])) == 8 for line in lines)

  # Resume: the model axis comes back from the checkpoint and training continues.
  config.num_generator_steps = 6
  resumed = loop.train_and_evaluate(config, workdir)
  assert resumed["generator_steps"] == 6 and len(resumed["w1"]) == 8
  saved = json.loads((tmp_path / "sweep" / "summary.json").read_text())
  assert saved["generator_steps"] == 6

  points = generators.from_checkpoint(config, workdir, 6, 50, seed=0, model=5)
  assert points.shape == (50, 2) and np.all(np.isfinite(points))
  other = generators.from_checkpoint(config, workdir, 6, 50, seed=0, model=4)
  assert not np.allclose(points, other)
  with pytest.raises(ConfigError, match="sweep of 8 models: name one with --model=0..7"):
    generators.from_checkpoint(config, workdir, 6, 50, seed=0)


def test_resuming_a_sweep_keeps_its_seeds_and_may_change_its_loop():
  saved = tiny_config(**{"sweep.seeds": 2}).to_dict()
  with pytest.raises(ConfigError, match="seed=0 .* this command sets seed=7"):
    configs.check_resumable(saved, tiny_config(**{"sweep.seeds": 2, "seed": 7}), "W", 3)
  assert configs.check_resumable(saved, tiny_config(**{"sweep.seeds": 2, "sweep.loop": "vmap"}),
                                 "W", 3) == ["sweep.loop: 'auto' -> 'vmap'"]
  one = configs.load("toy_8gaussians_clip")
  configs.override(one, "sweep.grid", "0.05")  # One value needs no trailing comma.
  assert one.sweep.grid == (0.05,)


def test_a_resumed_run_forgets_what_it_logged_after_its_checkpoint(tmp_path):
  writer = writers.JsonLines(str(tmp_path / writers.METRICS_FILE))
  for step in (2, 4, 6):
    writer.write_scalars(step, {"train/loss": np.array([step, np.nan])})
  writer.close()
  writers.forget_after(str(tmp_path), 4)
  lines = writers.read_metrics(str(tmp_path))
  assert [line["step"] for line in lines] == [2, 4]
  assert lines[0]["train/loss"] == [2.0, None]  # Strict JSON: NaN as null.


def _image_run(config, devices=None, steps=2):
  parts = run_lib.build(config, devices)
  state, stream = parts.create_state(), parts.stream(0)
  for step in range(steps):
    count = n_critic_at(step, config)
    state, _ = parts.iteration(state, count, stream.next(count))
  return jax.device_get(state)


@pytest.mark.slow
def test_an_image_sweeps_models_train_on_the_same_batches_each_as_its_own_run():
  """Each device holds the host batch whole and trains its models on it: a value
  sweep's model equals the run of its value, every other model is far off."""
  constant = [("optimizer.schedule", "constant")]
  swept = _image_run(golden.tiny_config("digits_dcgan_gp", constant + [
      ("sweep.key", "penalty_weight"), ("sweep.grid", "(1.0, 10.0)"), ("sweep.loop", "map")]))
  alone = _image_run(golden.tiny_config("digits_dcgan_gp", constant + [("penalty_weight", "10")]),
                     Devices.single())
  params = lambda s, m=None: np.concatenate([np.ravel(x if m is None else x[m])
                                             for x in jax.tree.leaves((s.generator.params,
                                                                       s.critic.params))])
  distance = lambda m: (np.linalg.norm(params(swept, m) - params(alone))
                        / np.linalg.norm(params(alone)))
  # Equal up to float rounding (measured 7e-9); the other value's model 1e-2 away.
  assert distance(1) < 1e-6 and distance(0) > 1e-3


@pytest.mark.slow
def test_an_image_sweep_evaluates_resumes_and_samples_per_model(tmp_path):
  config = golden.tiny_config("digits_dcgan_gp", [
      ("sweep.seeds", "2"), ("num_generator_steps", "2"), ("eval_every", "2"),
      ("checkpoint_every", "2"), ("log_every", "2"), ("eval.num_samples", "200")])
  workdir = str(tmp_path / "sweep")
  summary = loop.train_and_evaluate(config, workdir)
  assert [m["seed"] for m in summary["models"]] == [0, 1]
  assert len(summary["domain_fd"]) == 2 and summary["domain_fd"][0] != summary["domain_fd"][1]
  for m in (0, 1):  # each model's grid and scores in its own folder
    where = sweeps.model_dir(workdir, m, 2)
    assert os.path.isfile(os.path.join(where, "samples_final.png"))
    report = json.loads(open(os.path.join(where, "eval_2.json")).read())
    assert report["metrics"]["domain_fd"] == summary["domain_fd"][m]
  config.num_generator_steps = 4
  resumed = loop.train_and_evaluate(config, workdir)
  assert resumed["generator_steps"] == 4 and len(resumed["domain_fd"]) == 2
  images = generators.from_checkpoint(config, workdir, 4, 8, seed=0, model=1)
  assert images.shape == (8, 16, 16, 1) and np.all(np.isfinite(images))
  assert not np.allclose(images, generators.from_checkpoint(config, workdir, 4, 8, seed=0,
                                                            model=0))
  # `evaluate --model` scores one model and writes beside that model's own reports.
  os.remove(os.path.join(sweeps.model_dir(workdir, 1, 2), "eval_4.json"))
  result = run_module("wgan_jax.evaluate", f"--workdir={workdir}", "--model=1",
                      "--metrics=domain", "--num_samples=200")
  assert result.returncode == 0, result.stderr[-3000:]
  scores = json.loads(result.stdout.strip().splitlines()[-1])
  report = json.loads(open(os.path.join(sweeps.model_dir(workdir, 1, 2), "eval_4.json")).read())
  assert report["metrics"] == scores and scores["domain_fd"] == pytest.approx(
      resumed["domain_fd"][1], rel=1e-6)
  assert not os.path.exists(os.path.join(workdir, "eval_4.json"))


def test_an_image_sweep_across_processes_is_refused(monkeypatch):
  config = golden.tiny_config("digits_dcgan_gp", [("sweep.seeds", "2")])
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(ConfigError, match=re.escape(
      "a sweep on an image set (digits) runs in one process: every model trains on the whole "
      "batch, and a process reads only its share; run it on one host, or sweep a toy set")):
    run_lib.devices_for(config)
