"""`wgan_jax.nearest` and the memorisation statistics (metrics/memorisation.py):
a tiny digits run on 64 images, its samples beside their nearest training
images, the numbers checked against known cases, bad command lines as one line."""
import json
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.helpers import set_key
from tests.runs import run_module
from tests.test_bad_input import snapshot
from wgan_jax import configs, loop
from wgan_jax.metrics import memorisation, neighbours

LIMIT = 64


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  """A DCGAN of width 8 trained 20 iterations on the first 64 digits at 16x16."""
  workdir = str(tmp_path_factory.mktemp("digits"))
  config = configs.load("digits_dcgan_gp")
  for key, value in {"data.limit": LIMIT, "model.generator.ngf": 8, "model.critic.ndf": 8,
                     "batch_size": 16, "n_critic": 2, "num_generator_steps": 20,
                     "log_every": 10, "eval_every": 0, "checkpoint_every": 20,
                     "eval.metrics": ""}.items():
    set_key(config, key, value)
  configs.validate(config)
  loop.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope="module")
def nearest_run(digits_run, tmp_path_factory):
  """`nearest` in pixels: 3 samples shown with 5 neighbours each, 100 in the statistics."""
  out = str(tmp_path_factory.mktemp("figure") / "nearest.png")
  result = run_module("wgan_jax.nearest", f"--workdir={digits_run}", "--num=3",
                      "--neighbours=5", "--pool=100", "--space=pixels", f"--out={out}",
                      timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(digits_run, "nearest_step20.json"), encoding="utf-8") as f:
    return out, json.load(f), result


def _training_images(workdir):
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    config = configs.from_dict(json.load(f))
  batches, total = images.evaluation_batches(config.data, 10_000, 1024)
  assert total == LIMIT
  return np.concatenate(list(batches))


@pytest.mark.slow
def test_the_figure_is_a_row_a_sample_enlarged_and_its_cells_are_those_images(
    nearest_run, digits_run):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  out, report, _ = nearest_run
  figure = np.asarray(Image.open(out).convert("RGB"))
  # 16x16 digits enlarged 4x to 64 (plots.readable_factor); 2-pixel gaps, a 6-pixel
  # separator after the sample: 2 + 3 x (64 + 2) by 2 + 64 + 6 + 5 x (64 + 2).
  assert figure.shape == (200, 402, 3)
  assert np.all(figure[:, 68:70] == 255)  # the white rule between sample and neighbours
  train = _training_images(digits_run)
  for row, shown in enumerate(report["shown"]):
    top = 2 + row * 66
    sample = figure[top:top + 64, 2:66, :1]
    assert np.array_equal(sample, np.repeat(np.repeat(sample[::4, ::4], 4, 0), 4, 1))
    for col, (index, distance) in enumerate(zip(shown["indices"], shown["distances"])):
      left = 72 + col * 66
      assert np.array_equal(figure[top:top + 64:4, left:left + 64:4, :1], train[index])
      # The distance reported is the pixel distance of these two images, in [-1, 1].
      measured = np.linalg.norm(memorisation.pixel_rows(sample[None, ::4, ::4])
                                - memorisation.pixel_rows(train[index][None]))
      assert measured == pytest.approx(distance, rel=1e-5)


@pytest.mark.slow
def test_the_report_holds_the_statistics_and_indices_into_the_training_set(nearest_run):
  _, report, result = nearest_run
  assert report["step"] == 20 and report["space"] == "pixels" and report["samples"] == 100
  assert report["training_images"] == LIMIT
  # 164 of the 1,797 digits drawn, the few of the 64 training ones among them set aside.
  assert report["held_out_images"] == 100
  assert [len(s["indices"]) for s in report["shown"]] == [5, 5, 5]
  for shown in report["shown"]:
    assert all(0 <= i < LIMIT for i in shown["indices"]) and len(set(shown["indices"])) == 5
    assert shown["distances"] == sorted(shown["distances"]) and shown["distances"][0] > 0
  for shares in (report, report["held_out"]):
    assert 0 <= shares["closer_than_p5"] <= shares["closer_than_median"] <= 1
  spacing = report["training_spacing"]
  assert 0 < spacing["p5"] < spacing["median"] and spacing["over"] == LIMIT
  means = report["mean_nearest_distance"]
  assert report["memorisation_ratio"] == pytest.approx(means["samples"] / means["held_out"])
  # 20 iterations draw blurs, not digits: further from the training set than new digits.
  assert report["memorisation_ratio"] > 1.2 and report["closer_than_median"] == 0.0
  assert json.loads(result.stdout.strip().splitlines()[-1]) == {
      k: report[k] for k in ("step", "space", "closer_than_median", "closer_than_p5",
                             "memorisation_ratio")}


def _digit_rows():
  """scikit-learn's 1,797 digits (8x8) as pixel rows, 600 drawn at random a training
  set: the first 600 would not do, the set runs by writer (BUILD.md)."""
  pixels = (load_digits().images * (255 / 16)).round().astype(np.uint8)
  rows = memorisation.pixel_rows(pixels)[np.random.default_rng(0).permutation(len(pixels))]
  return rows[:600], rows[600:]


def test_copies_score_zero_held_out_digits_one_and_noise_is_far():
  train, held = _digit_rows()
  numbers, distances, indices = memorisation.summary(train[100:300], train, held, 2)
  assert numbers["memorisation_ratio"] == 0.0
  assert numbers["closer_than_median"] == 1.0 and numbers["closer_than_p5"] == 1.0
  assert 0.45 < numbers["held_out"]["closer_than_median"] < 0.6
  assert np.array_equal(indices[:, 0], np.arange(100, 300)) and np.all(distances[:, 0] == 0)

  # New digits land below the training images' median spacing about half the time,
  # below its 5th percentile about 5% of the time (0.53 and 0.079 here).
  numbers, _, _ = memorisation.summary(held, train, held, 1)
  assert numbers["memorisation_ratio"] == 1.0
  assert 0.45 < numbers["closer_than_median"] < 0.6
  assert 0.02 < numbers["closer_than_p5"] < 0.12
  assert numbers["held_out"] == {k: numbers[k] for k in ("closer_than_median", "closer_than_p5")}
  assert numbers["training_spacing"]["over"] == 600

  noise = np.random.default_rng(0).uniform(-1, 1, (300, 64)).astype(np.float32)
  numbers, _, _ = memorisation.summary(noise, train, held, 1)
  assert numbers["memorisation_ratio"] > 3
  assert numbers["closer_than_median"] == 0.0 and numbers["closer_than_p5"] == 0.0
  numbers, _, _ = memorisation.summary(noise, train, None, 1)
  assert numbers["memorisation_ratio"] is None and numbers["held_out"] is None


def test_a_large_training_set_is_spaced_from_a_sample_of_its_rows():
  train, _ = _digit_rows()
  every = memorisation.training_spacing(train)
  np.testing.assert_array_equal(every, neighbours.kth_distances(train, 1))
  drawn = np.sort(np.random.default_rng(3).choice(len(train), 50, replace=False))
  np.testing.assert_allclose(memorisation.training_spacing(train, rows=50, seed=3),
                             every[drawn], rtol=1e-12)


def test_memorisation_ratio_is_zero_for_copies_and_one_for_fresh_data():
  rng = np.random.default_rng(0)
  train, unseen = (rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8) for n in (50, 40))
  assert memorisation.memorisation_ratio(train[:20], train, unseen) == 0.0
  assert memorisation.memorisation_ratio(unseen, train, unseen) == 1.0
  fresh = rng.integers(0, 256, (400, 4, 4, 1), dtype=np.uint8)
  assert abs(memorisation.memorisation_ratio(fresh, train, unseen) - 1.0) < 0.1


# (flags, the error line's start); WORKDIR is the digits run.
BAD = [
    (["--workdir=WORKDIR/none"], "error: --workdir=WORKDIR/none is not a directory; pass the "
                                 "directory of a training run"),
    (["--num=0"], "error: --num=0 must be at least 1 and at most 256"),
    (["--num=257"], "error: --num=257 must be at least 1 and at most 256"),
    (["--neighbours=0"], "error: --neighbours=0 must be at least 1 and at most 32"),
    (["--neighbours=33"], "error: --neighbours=33 must be at least 1 and at most 32"),
    (["--neighbours=4", "--experiment.data.limit=3"],
     "error: --neighbours=4 with 3 training image(s): pass at most 3"),
    (["--space=domain", "--experiment.data.name=cifar10"],
     "error: --space=domain needs a digit data set (digits, mnist); cifar10 has no classifier"),
    (["--space=inception"], "error: --space=inception needs the Inception weights: download"),
    (["--out=/sys/nearest.png"], "error: --out=/sys/nearest.png cannot be written (EACCES in "
                                 "/sys); pass another path"),
    # The config of a toy run (the check reads nothing else), without training one.
    (["--experiment=toy_8gaussians"], "error: this run's data set, 8gaussians, is a toy set "
                                      "of 2-D points: nearest neighbours are for image runs"),
]


@pytest.mark.slow
def test_bad_command_lines_are_one_line_exit_2_and_write_nothing(digits_run):
  before = snapshot(digits_run)
  for flags, message in BAD:
    args = [f.replace("WORKDIR", digits_run) for f in flags]
    if not any(a.startswith("--workdir=") for a in args):
      args.append(f"--workdir={digits_run}")
    result = run_module("wgan_jax.nearest", *args, timeout=300)
    expected = message.replace("WORKDIR", digits_run)
    assert result.returncode == 2, (flags, result.stderr[-2000:])
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(expected), (
        flags, result.stderr)
    assert result.stdout == ""
  assert snapshot(digits_run) == before
  assert not os.path.exists("/sys/nearest.png")
