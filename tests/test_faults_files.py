"""Files of the workdir and of the data that a run must get past, or name in one
line (issue 22): a user's file in a checkpoint folder, a damaged or foreign
metrics.jsonl, metrics.jsonl on a full disk, a folder where a file goes, an
image with a name that is not UTF-8, an image of 36 megapixels. Each through the
real `python -m wgan_jax.train`: exit code, the last stderr line, no traceback,
a bound on the wall time, and nothing saved lost."""
import itertools
import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import encode, picture
from tests.runs import finished_steps, run_module
from tests.test_exits import TINY, assert_one_line

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow


def train(workdir, *args, timeout=120):
  """(exit code, last stderr line, stderr, seconds) of a real training process."""
  started = time.monotonic()
  result = run_module("wgan_jax.train", *args, f"--workdir={workdir}", timeout=timeout)
  lines = result.stderr.strip().splitlines()
  return (result.returncode, lines[-1] if lines else "", result.stderr,
          time.monotonic() - started)


def metric_steps(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line)["step"] for line in f]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  """A finished TINY run: checkpoints 2, 4, 6 and metrics.jsonl."""
  workdir = tmp_path_factory.mktemp("toy_run")
  code, _, err, _ = train(workdir, *TINY)
  assert code == 0, err[-3000:]
  return workdir


def copy_of(toy_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(toy_run, workdir)
  return workdir


# --- 4: a user's file in a checkpoint folder that the clean-up removes.


def test_a_users_file_in_a_checkpoint_folder_outlives_the_clean_up(toy_run, tmp_path):
  workdir = copy_of(toy_run, tmp_path)
  (workdir / "checkpoints" / "2" / "important.txt").write_text("my notes")
  code, last, err, seconds = train(workdir, *TINY, "--experiment.num_generator_steps=10",
                                   "--experiment.keep_checkpoints=2")
  assert code == 0 and seconds < 100, err[-3000:]
  assert finished_steps(str(workdir)) == [8, 10]
  kept = workdir / "checkpoints" / "2.kept"
  assert (kept / "important.txt").read_text() == "my notes"
  assert os.listdir(kept) == ["important.txt"]  # only the user's file: the checkpoint is gone
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "2.kept", "8"]
  warnings = [line for line in err.splitlines() if "no longer kept" in line]
  assert len(warnings) == 1, err[-3000:]
  assert warnings[0].endswith(
      f"checkpoint {workdir}/checkpoints/2 is no longer kept (keep_checkpoints), but its folder "
      f"held files the run did not write (important.txt); moved them to {kept}")
  assert_one_line(err, last)


# --- 6: a damaged metrics.jsonl.


def test_a_cut_last_line_of_metrics_jsonl_is_dropped_and_the_run_goes_on(toy_run, tmp_path):
  """What a crash or a full disk leaves: the partial line goes, with one warning."""
  workdir = copy_of(toy_run, tmp_path)
  whole = (workdir / "metrics.jsonl").read_bytes()
  cut = b'{"step": 6, "train/critic_lo\xc3'  # cut inside a UTF-8 character, too
  with open(workdir / "metrics.jsonl", "ab") as f:
    f.write(cut)
  code, last, err, seconds = train(workdir, *TINY, "--experiment.num_generator_steps=8")
  assert code == 0 and seconds < 100, err[-3000:]
  assert "at generator step 6" in err
  warnings = [line for line in err.splitlines() if "ended in a cut line" in line]
  assert len(warnings) == 1 and warnings[0].endswith(
      f"{workdir}/metrics.jsonl ended in a cut line ({len(cut)} bytes, as a crash or a full disk "
      "leaves it); dropped it")
  assert (workdir / "metrics.jsonl").read_bytes().startswith(whole)
  assert sorted(set(metric_steps(workdir))) == [2, 4, 6, 8]  # every line reads back
  assert_one_line(err, last)


FOREIGN = {
    "a garbage line": (b"garbage\n", "is not JSON (Expecting value: b'garbage')"),
    "a line without a step": (b'{"foo": 1}\n', "has no step (b'{\"foo\": 1}')"),
    "a byte that is not UTF-8": (b'{"step": 7, "x": "\xff"}\n',
                                 "is not UTF-8 text (byte 0xff at 18)"),
}


@pytest.mark.parametrize("case", FOREIGN)
def test_a_metrics_jsonl_that_is_not_ours_is_one_line_and_left_as_it_is(toy_run, tmp_path, case):
  workdir = copy_of(toy_run, tmp_path)
  line, problem = FOREIGN[case]
  number = len(metric_steps(workdir)) + 1
  with open(workdir / "metrics.jsonl", "ab") as f:
    f.write(line + b'{"step": 8, "x": 1}\n')
  before = (workdir / "metrics.jsonl").read_bytes()
  code, last, err, seconds = train(workdir, "--experiment.num_generator_steps=8")
  assert code == 2 and seconds < 60, err[-3000:]
  assert last == (f"error: {workdir}/metrics.jsonl is not a metrics file of wgan_jax: line "
                  f"{number} {problem}; move it away (or delete that line), then run the same "
                  "command")
  assert_one_line(err, last)
  assert (workdir / "metrics.jsonl").read_bytes() == before
  assert finished_steps(str(workdir)) == [2, 4, 6]


@pytest.mark.parametrize("resuming", [False, True])
def test_a_folder_at_metrics_jsonl_is_one_line(toy_run, tmp_path, resuming):
  """Found before anything is written: a fresh workdir keeps only what it held."""
  if resuming:
    workdir = copy_of(toy_run, tmp_path)
    os.remove(workdir / "metrics.jsonl")
  else:
    workdir = tmp_path / "run"
  (workdir / "metrics.jsonl").mkdir(parents=True)
  code, last, err, seconds = train(workdir, *TINY, "--experiment.num_generator_steps=8")
  assert code == 2 and seconds < 60, err[-3000:]
  assert last == (f"error: {workdir}/metrics.jsonl is a folder, where the run keeps its "
                  "metrics: move it away or pass another --workdir")
  assert_one_line(err, last)
  if resuming:
    assert finished_steps(str(workdir)) == [2, 4, 6]
  else:
    assert os.listdir(workdir) == ["metrics.jsonl"]


# --- 7: metrics.jsonl on a full disk.


def test_metrics_jsonl_on_a_full_disk_is_one_line_after_the_checkpoint_due(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  os.symlink("/dev/full", workdir / "metrics.jsonl")
  code, last, err, seconds = train(workdir, *TINY)
  assert code == 1 and seconds < 60, err[-3000:]
  assert last == (f"error: could not write {workdir}/metrics.jsonl ([Errno 28] No space left on "
                  "device); free disk space or make the workdir writable, then run the same "
                  "command: checkpoint 2 is saved and a rerun resumes from it")
  assert_one_line(err, last)
  assert finished_steps(str(workdir)) == [2]  # the one due at the step the write failed
  os.remove(workdir / "metrics.jsonl")
  code, last, err, _ = train(workdir, *TINY)
  assert code == 0 and "at generator step 2" in err, err[-3000:]
  assert finished_steps(str(workdir)) == [2, 4, 6]


# --- 17: a link where the run writes a file.


def test_a_link_at_metrics_jsonl_to_a_file_outside_is_refused_and_the_file_untouched(tmp_path):
  outside = tmp_path / "someone_elses.log"
  outside.write_text("theirs\n")
  workdir = tmp_path / "run"
  workdir.mkdir()
  os.symlink(outside, workdir / "metrics.jsonl")
  code, last, err, _ = train(workdir, *TINY)
  assert code == 2, err[-3000:]
  assert last == (f"error: {workdir}/metrics.jsonl is a symbolic link to {outside}; the run "
                  "writes its own files and follows no link to a file (one to a device such as "
                  "/dev/null is kept): remove the link, then run the same command")
  assert_one_line(err, last)
  assert outside.read_text() == "theirs\n"
  assert not (workdir / "checkpoints").exists()


# --- 16: misleading messages.


@pytest.mark.parametrize("name", ["config.json", "summary.json"])
def test_a_folder_where_the_run_writes_a_file_is_named_not_a_full_disk(tmp_path, name):
  workdir = tmp_path / "run"
  (workdir / name).mkdir(parents=True)
  code, last, err, seconds = train(workdir, *TINY)
  assert code == 2 and seconds < 60, err[-3000:]
  assert last == (f"error: {workdir}/{name} is a folder, where the run writes a file: move it "
                  "away, then run the same command")
  assert_one_line(err, last)
  assert os.listdir(workdir) == [name]  # found before anything was written


def test_a_folder_at_an_evaluation_figure_is_named_with_the_checkpoint_kept(tmp_path):
  workdir = tmp_path / "run"
  (workdir / "toy_000002.png").mkdir(parents=True)
  code, last, err, _ = train(workdir, *TINY, "--experiment.eval_every=2")
  assert code == 2, err[-3000:]
  assert last == (f"error: {workdir}/toy_000002.png is a folder, where the run writes a file: "
                  "move it away, then run the same command: checkpoint 2 is saved and a rerun "
                  "resumes from it")
  assert_one_line(err, last)
  assert finished_steps(str(workdir)) == [2]


def test_turning_historical_averaging_on_at_resume_names_the_setting(toy_run, tmp_path):
  """`--workdir` alone with the override, and the experiment named again."""
  workdir = copy_of(toy_run, tmp_path)
  for args in ([], TINY):
    code, last, err, seconds = train(workdir, *args, "--experiment.num_generator_steps=8",
                                     "--experiment.techniques.historical_averaging=0.001")
    assert code == 2 and seconds < 60, err[-3000:]
    assert last == (f"error: {workdir} was trained with techniques.historical_averaging=0.0 "
                    "(step 6), this command sets techniques.historical_averaging=0.001: the "
                    "checkpoint cannot hold that; drop those overrides or pass another --workdir")
    assert "opt_state" not in err
    assert_one_line(err, last)
  assert finished_steps(str(workdir)) == [2, 4, 6]


# --- 8 and 15: image folders.

IMAGES = ["--experiment=digits_dcgan_gp", "--experiment.data.name=image_folder",
          "--experiment.model.generator.ngf=8", "--experiment.model.critic.ndf=8",
          "--experiment.batch_size=8", "--experiment.n_critic=2",
          "--experiment.n_critic_schedule=constant", "--experiment.num_generator_steps=4",
          "--experiment.log_every=2", "--experiment.eval_every=0",
          "--experiment.eval_samples=16", "--experiment.eval.metrics=",
          "--experiment.checkpoint_every=2"]


def image_folder(root, count=4):
  root.mkdir()
  for i in range(count):
    (root / f"{i}.png").write_bytes(encode(picture(20, 24, i), "PNG"))
  return root


def test_an_image_whose_name_is_not_utf8_is_skipped_with_a_count(tmp_path):
  folder = image_folder(tmp_path / "images")
  png = encode(picture(20, 24, 9), "PNG")
  for path in (b"/\xff.png", b"/sub\xfe/a.png"):  # a file's name, a folder's name
    full = os.fsencode(str(folder)) + path
    os.makedirs(os.path.dirname(full), exist_ok=True)
    fd = os.open(full, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, png)
    os.close(fd)
  code, last, err, seconds = train(tmp_path / "run", *IMAGES, f"--experiment.data.dir={folder}")
  assert code == 0 and seconds < 100, err[-3000:]
  assert (f"image_folder: skipped 2 files whose names are not UTF-8 (e.g. {folder}/sub\\xfe/a.png)"
          "; rename them to train on them") in err
  assert "unreadable" not in err
  assert finished_steps(str(tmp_path / "run")) == [2, 4]
  assert_one_line(err, last)


def test_a_huge_image_is_resized_once_with_one_warning(tmp_path):
  """6000 x 6000 pixels (36 megapixels): resized to 16x16 once, when the folder
  is opened, not decoded at full size each time it is drawn."""
  folder = image_folder(tmp_path / "images")
  Image.fromarray(np.full((6000, 6000, 3), 200, np.uint8)).save(folder / "huge.png")
  code, last, err, seconds = train(tmp_path / "run", *IMAGES, f"--experiment.data.dir={folder}")
  assert code == 0 and seconds < 100, err[-3000:]
  warnings = [line for line in err.splitlines() if "megapixels" in line]
  assert len(warnings) == 1 and warnings[0].endswith(
      f"image_folder: 1 images of more than 33.6 megapixels (e.g. {folder}/huge.png, 6000x6000) "
      "are resized to 16x16 once, now, rather than decoded at full size at every draw"), err
  assert "DecompressionBomb" not in err
  assert finished_steps(str(tmp_path / "run")) == [2, 4]  # 64 draws, a fifth of them the huge one
  assert_one_line(err, last)


def test_resizing_once_gives_the_pixels_of_decoding_at_every_draw(tmp_path, monkeypatch):
  """Every image counted as large: the batches are bit-identical to decoding at
  every draw, with and without labels, and no file is read after the source opens."""
  from tests.test_images import data_config  # pylint: disable=import-outside-toplevel
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  folder = tmp_path / "images"
  for i, (h, w) in enumerate([(20, 24), (40, 30), (17, 17), (64, 48), (30, 90), (16, 20)]):
    (folder / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
    (folder / "ab"[i % 2] / f"{i}.png").write_bytes(encode(picture(h, w, i), "PNG"))
  cfg = data_config("image_folder", 16, root=folder)

  def draws(labels, move_away):
    """Six batches, images and labels flattened into one array each."""
    source = images.open_source(cfg, seed=3, labels=labels)
    if move_away:  # Once open, nothing is read from the folder.
      os.rename(folder, tmp_path / "away")
    try:
      batches = images.Batches(images.build_image_dataset(cfg, 4, seed=3, source=source))
      return [np.concatenate([np.ravel(x) for x in (b if labels else (b,))])
              for b in itertools.islice(batches, 6)]
    finally:
      if move_away:
        os.rename(tmp_path / "away", folder)

  each_draw = {labels: draws(labels, move_away=False) for labels in (False, True)}
  monkeypatch.setattr(images, "LARGE_PIXELS", 0)
  for labels in (False, True):
    once = draws(labels, move_away=True)
    assert len(once) == 6
    assert all(np.array_equal(a, b) for a, b in zip(each_draw[labels], once))


def test_an_optimizer_state_that_does_not_fit_names_the_settings_not_a_path(toy_run, tmp_path):
  """A saved config that says historical averaging was on (edited by hand, or by
  another version) while the checkpoint holds no history: the config layer cannot
  see it; the restore names the settings that shape an optimizer state."""
  workdir = copy_of(toy_run, tmp_path)
  for step in (2, 4, 6):
    path = workdir / "checkpoints" / str(step) / "metadata" / "metadata"
    metadata = json.loads(path.read_text())
    metadata["config"]["techniques"]["historical_averaging"] = 0.001
    path.write_text(json.dumps(metadata))
  code, last, err, seconds = train(workdir, "--experiment.num_generator_steps=8")
  assert code == 2 and seconds < 60, err[-3000:]
  assert last == ("error: the state saved at step 6 holds the critic's optimizer state in another "
                  "layout than these settings make: one that shapes it (optimizer.NETWORK.name, "
                  "optimizer.NETWORK.schedule, clip, techniques.historical_averaging) differs "
                  "from the run's; resume with the settings it was trained with, or pass another "
                  "--workdir")
  assert "opt_state" not in err
  assert_one_line(err, last)
  assert finished_steps(str(workdir)) == [2, 4, 6]
