"""`wgan_jax.evaluate` and evaluation during training, as real processes: a tiny
digits run scored by FID (random Inception weights) and the digit classifier
while it trains, the best checkpoint kept; the same generator scored from its
workdir and from `sample --npz` files agrees; bad files are one line."""
import json

import numpy as np
import pytest

from tests.runs import IMAGE, finished_steps, run_module
from wgan_jax import configs

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

TINY_EVAL = ["--experiment.eval.num_samples=16", "--experiment.eval.reference_samples=24",
             "--experiment.eval.batch_size=8"]


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, weights_path):
  """4 generator steps of digits, FID and domain scores at steps 2 and 4, one
  checkpoint kept besides the best."""
  workdir = tmp_path_factory.mktemp("scored")
  args = [a for a in IMAGE if not a.startswith(("--experiment.num_generator_steps",
                                                "--experiment.eval_every",
                                                "--experiment.checkpoint_every"))]
  result = run_module(
      "wgan_jax.train", *args, "--experiment.num_generator_steps=6",
      "--experiment.eval_every=2", "--experiment.checkpoint_every=3",
      "--experiment.keep_checkpoints=1", "--experiment.eval.metrics=fid,domain",
      f"--experiment.eval.inception_weights={weights_path}", *TINY_EVAL,
      f"--workdir={workdir}", timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


def test_training_scores_each_evaluation_and_keeps_the_best_checkpoint(scored_run):
  workdir, result = scored_run
  reports = {s: json.loads((workdir / f"eval_{s}.json").read_text()) for s in (2, 4, 6)}
  for step, report in reports.items():
    assert report["step"] == step
    assert set(report["metrics"]) == {"fid", "domain_fd", "domain_classes_covered",
                                      "domain_kl", "domain_confidence"}
    assert report["metrics"]["fid"] > 0 and 0 <= report["metrics"]["domain_kl"]
    assert report["protocol"]["num_samples"] == 16
    assert report["protocol"]["reference"] == "digits train, 24 images at 16px"
    assert "NOT the official FID weights" in report["protocol"]["network"]
    assert "biased upward" in report["protocol"]["note"]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["fid"] == reports[6]["metrics"]["fid"]
  assert summary["domain_fd"] == reports[6]["metrics"]["domain_fd"]
  best = min((2, 4), key=lambda s: reports[s]["metrics"]["fid"])
  assert summary["best_fid_step"] == best
  assert summary["best_fid"] == pytest.approx(reports[best]["metrics"]["fid"], rel=1e-9)
  # keep_checkpoints=1: the newest, and the best besides it.
  assert finished_steps(str(workdir)) == sorted({best, 6})
  assert "FID, KID, IS and precision/recall are off" not in result.stderr


def test_workdir_and_npz_files_give_the_same_scores(scored_run, weights_path, tmp_path):
  workdir, _ = scored_run
  result = run_module("wgan_jax.evaluate", f"--workdir={workdir}", "--step=6",
                      "--metrics=fid,kid,is,pr", "--num_samples=16", "--reference_samples=24",
                      "--batch_size=8", f"--inception_weights={weights_path}", timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  from_workdir = json.loads(lines[-1])
  assert set(from_workdir) == {"fid", "kid_mean", "kid_std", "kid_subset_size", "is_mean",
                               "is_std", "precision", "recall"}
  assert lines[0].startswith("protocol: step 6, seed 0, note 16 generated samples")
  assert [l.split(":")[0] for l in lines[1:-1]] == list(from_workdir)
  assert json.loads((workdir / "eval_6.json").read_text())["metrics"] == from_workdir
  # The first evaluation at step 6 (in training) and this one agree.
  assert from_workdir["fid"] == pytest.approx(
      json.loads((workdir / "eval_6.json").read_text())["metrics"]["fid"], rel=1e-6)

  samples = tmp_path / "samples.npz"
  result = run_module("wgan_jax.sample", f"--workdir={workdir}", "--step=6", "--num=16",
                      f"--npz={samples}", f"--out={tmp_path / 'grid.png'}", timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  config = configs.from_dict(json.loads((workdir / "config.json").read_text()))
  batches, total = images.evaluation_batches(config.data, 24, 8)
  assert total == 24
  real = np.concatenate(list(batches))
  assert real.shape == (24, 16, 16, 1) and real.dtype == np.uint8
  reference = tmp_path / "reference.npz"
  np.savez(reference, samples=real)
  result = run_module("wgan_jax.evaluate", f"--samples={samples}", f"--reference={reference}",
                      "--metrics=fid,kid,is,pr", "--batch_size=8",
                      f"--inception_weights={weights_path}", timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  from_files = json.loads(result.stdout.strip().splitlines()[-1])
  assert "warning: 16 generated samples: FID and KID at fewer than 50,000" in result.stderr
  assert set(from_files) == set(from_workdir)
  for name in ("fid", "kid_mean", "is_mean"):
    assert from_files[name] == pytest.approx(from_workdir[name], rel=1e-3), name


def _evaluate_files(samples, reference, *extra):
  return run_module("wgan_jax.evaluate", f"--samples={samples}", f"--reference={reference}",
                    *extra, timeout=120)


@pytest.mark.parametrize("case,message", [
    ("missing", "error: --samples=SAMPLES: no such file; pass an .npz written by"),
    ("no_key", "error: --samples=SAMPLES has no array 'samples' (it has: images); save the "
               "images under that key"),
    ("float", "error: --samples=SAMPLES: 'samples' must be uint8 images [N, H, W, 1 or 3], "
              "got float32 (4, 8, 8, 3)"),
    ("damaged", "error: --samples=SAMPLES cannot be read as an .npz"),
    ("one_image", "error: --samples=SAMPLES holds 1 image(s); at least 2 are needed"),
])
def test_bad_image_files_are_one_line_exit_2(tmp_path, case, message):
  samples, reference = tmp_path / "samples.npz", tmp_path / "reference.npz"
  np.savez(reference, samples=np.zeros((4, 8, 8, 3), np.uint8))
  if case == "no_key":
    np.savez(samples, images=np.zeros((4, 8, 8, 3), np.uint8))
  elif case == "float":
    np.savez(samples, samples=np.zeros((4, 8, 8, 3), np.float32))
  elif case == "damaged":
    samples.write_bytes(b"PK\x03\x04 not really a zip")
  elif case == "one_image":
    np.savez(samples, samples=np.zeros((1, 8, 8, 3), np.uint8))
  result = _evaluate_files(samples, reference)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message.replace("SAMPLES", str(samples))), lines


def test_missing_weights_and_mixed_modes_are_one_line_exit_2(tmp_path):
  samples = tmp_path / "s.npz"
  np.savez(samples, samples=np.zeros((4, 8, 8, 3), np.uint8))
  cases = [
      (_evaluate_files(samples, samples),
       "error: FID needs the Inception weights: download https://github.com/mseitzer/pytorch-fid/"
       "releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth and pass "
       "--inception_weights=PATH or set $WGAN_JAX_INCEPTION_WEIGHTS (README: Evaluation)"),
      (_evaluate_files(samples, samples, "--metrics=domain"),
       "error: --metrics=domain needs a run (--workdir); with --samples/--reference use some "
       "of fid, kid, is, pr, dc"),
      # Intra-FID needs the classes a run's generator was asked for; files carry none.
      (_evaluate_files(samples, samples, "--metrics=fid,intra_fid"),
       "error: --metrics=intra_fid needs a run (--workdir); with --samples/--reference use "
       "some of fid, kid, is, pr, dc"),
      (run_module("wgan_jax.evaluate", f"--samples={samples}", timeout=120),
       "error: --samples and --reference go together: the generated and the real images"),
      (run_module("wgan_jax.evaluate", timeout=120),
       "error: pass either --workdir=DIR (a training run) or --samples=A.npz with "
       "--reference=B.npz (two sets of images)"),
  ]
  for result, message in cases:
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [message]


def test_critic_w_measures_every_checkpoint_of_a_toy_run(tmp_path):
  from tests.helpers import tiny_config  # pylint: disable=import-outside-toplevel
  from wgan_jax import loop  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "toy")
  loop.train_and_evaluate(tiny_config(num_generator_steps=4, checkpoint_every=2,
                                         eval_every=0), workdir)
  result = run_module("wgan_jax.evaluate", f"--workdir={workdir}", "--metrics=critic_w",
                      "--critic_updates=20", "--critic_seeds=2", timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads(result.stdout.strip().splitlines()[-1])["critic_w"]
  assert [r["step"] for r in rows] == [2, 4]
  for row in rows:
    assert {"estimate", "estimate_ci", "w1", "w1_floor", "k", "k_ci"} <= set(row)
    assert row["w1"] > row["w1_floor"] > 0
    assert row["k"] == pytest.approx(row["estimate"] / row["w1"])
  saved = json.loads((tmp_path / "toy" / "critic_w.json").read_text())
  assert [r["step"] for r in saved] == [2, 4]
  assert saved[0]["protocol"].startswith("mlp 512x3 c=0.01; 20 RMSProp updates (lr 5e-05")
  assert "2 seeds, 95% t-interval" in saved[0]["protocol"]
  table = result.stdout.strip().splitlines()[:-1]
  assert any(line.split()[:1] == ["2"] for line in table)
  assert any(line.split()[:1] == ["4"] for line in table)
  result = run_module("wgan_jax.evaluate", f"--workdir={workdir}", "--metrics=critic_w,fid",
                      timeout=120)
  assert result.returncode == 2
  assert result.stderr.strip() == ("error: --metrics=critic_w runs alone: it trains a critic "
                                   "per checkpoint; ask for the other metrics in another call")
