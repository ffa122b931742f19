"""How a real `wgan_jax.train` process ends when something goes wrong while it
runs: one `error:` line (or the stop line), the exit code, no traceback, a
bound on the wall time, and nothing saved lost. Faults this machine cannot make
for real, and delays that give a signal a known place to land, come from
tests/faulty.py."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, STARTED, encode, picture
from tests.runs import finished_steps, run_module

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

TINY = ["--experiment=toy_8gaussians", "--experiment.batch_size=32", "--experiment.n_critic=2",
        "--experiment.model.generator.features=16", "--experiment.model.critic.features=16",
        "--experiment.num_generator_steps=6", "--experiment.log_every=2",
        "--experiment.eval_every=0", "--experiment.eval_samples=100",
        "--experiment.checkpoint_every=2"]


def start(fault, workdir, *args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "faulty.py"), fault,
                           *TINY, *args, f"--workdir={workdir}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  STARTED.append(proc)
  return proc


def finish(proc, timeout=120):
  """(exit code, last stderr line, stderr, seconds it took)."""
  started = time.monotonic()
  _, err = proc.communicate(timeout=timeout)
  lines = err.strip().splitlines()
  return proc.returncode, lines[-1] if lines else "", err, time.monotonic() - started


def assert_one_line(err, last):
  assert "Traceback" not in err, err[-3000:]
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert errors in ([], [last]), err[-3000:]


def wait_for(predicate, proc, seconds=120):
  deadline = time.monotonic() + seconds
  while not predicate():
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.02)


def test_a_save_that_fails_in_the_background_ends_in_one_line_without_a_hang(tmp_path):
  """A full disk (or exhausted inodes, a folder gone read-only) during Orbax's
  async write of step 4: the one line, exit 1, in seconds; step 2 stays intact
  and resumes. Orbax's waiting threads used to hold the exit for ~300 s."""
  code, last, err, seconds = finish(start("disk_full_at_4", tmp_path))
  assert code == 1 and seconds < 60, (code, seconds)
  assert last == (f"error: could not write the checkpoint of step 4 to {tmp_path}/checkpoints "
                  "([Errno 28] No space left on device); free disk space or make the workdir "
                  "writable, then run the same command: step 2 is the newest intact checkpoint "
                  "and a rerun resumes from it")
  assert_one_line(err, last)
  assert finished_steps(str(tmp_path)) == [2]
  result = run_module("wgan_jax.train", f"--workdir={tmp_path}")
  assert result.returncode == 0 and "at generator step 2" in result.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_start_up_is_one_line(tmp_path, sig, code):
  workdir = tmp_path / "run"
  proc = start("slow_startup", workdir)
  wait_for(lambda: os.path.exists(f"{workdir}.started"), proc)
  proc.send_signal(sig)
  code_, last, err, seconds = finish(proc, timeout=60)
  assert (code_, last) == (code, f"error: stopped by {sig.name} during start-up; no checkpoint "
                                 "was written")
  assert seconds < 30
  assert_one_line(err, last)


def test_a_second_ctrl_c_stops_at_once_with_one_line(tmp_path):
  proc = start("slow_iterations", tmp_path, "--experiment.num_generator_steps=200")
  wait_for(lambda: finished_steps(str(tmp_path)), proc)
  proc.send_signal(signal.SIGINT)
  time.sleep(0.3)  # inside the same 2-second iteration
  proc.send_signal(signal.SIGINT)
  code, last, err, _ = finish(proc, timeout=60)
  newest = max(finished_steps(str(tmp_path)))
  assert code == 130, err[-3000:]
  assert last.startswith("error: stopped by a second Ctrl-C at generator step ")
  assert last.endswith(f" without a final checkpoint; checkpoint {newest} is the newest and "
                       "a rerun resumes from it")
  assert_one_line(err, last)


def test_sigterm_during_the_final_evaluation_and_the_reruns_after_it(tmp_path):
  """Everything is saved before the final evaluation: a SIGTERM there stops it
  with the stop line (exit 0); the rerun evaluates and writes the summary,
  training means included; a rerun after that keeps the summary."""
  workdir = tmp_path / "run"
  proc = start("slow_final_evaluation", workdir)
  wait_for(lambda: os.path.exists(f"{workdir}.evaluating"), proc)  # all saved; it evaluates
  proc.send_signal(signal.SIGTERM)
  code, last, err, _ = finish(proc, timeout=60)
  assert code == 0, err[-3000:]
  assert last == (f"stopped by SIGTERM at generator step 6 during the final evaluation: "
                  f"checkpoint in {workdir}/checkpoints/6; run the same command to evaluate it "
                  "(training is complete)")
  assert not (workdir / "summary.json").exists()

  result = run_module("wgan_jax.train", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["generator_steps"] == 6 and "w1" in summary
  assert "train_critic_loss" in summary  # kept in the checkpoint's metadata
  before = (workdir / "summary.json").read_bytes()
  result = run_module("wgan_jax.train", f"--workdir={workdir}")
  assert result.returncode == 0 and "its summary.json is kept" in result.stderr
  assert (workdir / "summary.json").read_bytes() == before


def test_a_process_without_its_coordinator_says_what_it_waits_for_and_gives_up(tmp_path):
  started = time.monotonic()
  result = run_module("wgan_jax.train", *TINY, f"--workdir={tmp_path}",
                      "--coordinator_address=127.0.0.1:1", "--num_processes=2",
                      "--process_id=1", "--coordinator_timeout=3", timeout=120)
  assert result.returncode == 1 and time.monotonic() - started < 60
  assert ("process 1 of 2: waiting up to 3 s for all 2 processes to reach the coordinator at "
          "127.0.0.1:1 (process 0)") in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last == ("error: process 1 of 2: the 2 processes did not all reach the coordinator at "
                  "127.0.0.1:1 within 3 s; start every process with the same "
                  "--coordinator_address and --num_processes (process 0 on that host), or check "
                  "that they can reach it")
  assert_one_line(result.stderr, last)


def test_a_folder_of_images_none_of_which_decodes_stops_at_start(tmp_path):
  """Every JPEG truncated mid-scan passes PIL's verify but not TF's decode: the
  pipeline used to skip through them forever, logging megabytes a second."""
  folder = tmp_path / "images"
  folder.mkdir()
  jpeg = encode(picture(64, 64, 1), "JPEG")
  for i in range(5):
    (folder / f"{i}.jpg").write_bytes(jpeg[:jpeg.index(b"\xff\xda") + 40])
  result = run_module("wgan_jax.train", "--experiment=digits_dcgan_gp",
                      "--experiment.data.name=image_folder", f"--experiment.data.dir={folder}",
                      f"--workdir={tmp_path / 'run'}", timeout=120)
  last = result.stderr.strip().splitlines()[-1]
  assert result.returncode == 2, result.stderr[-3000:]
  assert last.startswith(f"error: none of the first 5 images of {folder} can be decoded (e.g. ")
  assert_one_line(result.stderr, last)


def test_with_every_metadata_gone_the_workdir_config_names_the_real_problem(tmp_path):
  result = run_module("wgan_jax.train", *TINY, f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  for step in finished_steps(str(tmp_path)):
    os.remove(tmp_path / "checkpoints" / str(step) / "metadata" / "metadata")
  result = run_module("wgan_jax.train", f"--workdir={tmp_path}", timeout=120)
  last = result.stderr.strip().splitlines()[-1]
  assert result.returncode == 2
  # The config comes from config.json; the error is the damage, not an experiment mismatch.
  assert last.startswith(f"error: none of the 3 checkpoints in {tmp_path}/checkpoints restores")
  assert_one_line(result.stderr, last)


@pytest.mark.parametrize("name,what", [
    ("toy_000002.png", "the evaluation files of step 2 in {workdir}"),
    ("toy_final.png", "the final evaluation's files in {workdir}"),
    ("summary.json.tmp", "{workdir}/summary.json"),
])
def test_a_figure_or_summary_that_cannot_be_written_is_one_line(tmp_path, name, what):
  """A full disk (the file is a link to /dev/full) when an evaluation figure or
  the summary is written: the error says what is saved and what to do."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  os.symlink("/dev/full", workdir / name)
  result = run_module("wgan_jax.train", *TINY, "--experiment.eval_every=2",
                      f"--workdir={workdir}", timeout=120)
  last = result.stderr.strip().splitlines()[-1]
  assert result.returncode == 1, result.stderr[-3000:]
  newest = max(finished_steps(str(workdir)))
  assert last == (f"error: could not write {what.format(workdir=workdir)} ([Errno 28] No space "
                  "left on device); free disk space or make the workdir writable, then run the "
                  f"same command: checkpoint {newest} is saved and a rerun resumes from it")
  assert_one_line(result.stderr, last)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("toy_run")
  result = run_module("wgan_jax.train", *TINY, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_sample_falls_back_past_a_damaged_checkpoint_or_names_the_intact_ones(toy_run):
  with open(toy_run / "checkpoints" / "6" / "metadata" / "metadata", "r+b") as f:
    f.truncate(5)
  result = run_module("wgan_jax.sample", f"--workdir={toy_run}", "--num=8", timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "the metadata of checkpoint 6" in result.stderr and "it is damaged" in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f"wrote 8 samples of step 4 to {toy_run}/samples_step4.png")
  result = run_module("wgan_jax.sample", f"--workdir={toy_run}", "--step=6", timeout=120)
  last = result.stderr.strip().splitlines()[-1]
  assert result.returncode == 2
  assert last == (f"error: the metadata of checkpoint 6 in {toy_run}/checkpoints cannot be read "
                  "(JSONDecodeError): it is damaged; pass --step= one of 2, 4")
  assert_one_line(result.stderr, last)


@pytest.mark.parametrize("full", ["png", "npz"])
def test_sample_on_a_full_disk_is_one_line_and_leaves_nothing_it_wrote(toy_run, tmp_path, full):
  """The PNG written and then the .npz failing (or the PNG failing first): what this
  call wrote is removed, a file it did not touch is kept."""
  png, npz = tmp_path / "grid.png", tmp_path / "samples.npz"
  if full == "png":
    os.symlink("/dev/full", png)
    npz.write_bytes(b"a file of the user's")
  else:
    os.symlink("/dev/full", npz)
  started = time.monotonic()
  result = run_module("wgan_jax.sample", f"--workdir={toy_run}", "--step=4", f"--out={png}",
                      f"--npz={npz}", timeout=120)
  last = result.stderr.strip().splitlines()[-1]
  assert result.returncode == 1 and time.monotonic() - started < 60
  assert last == ("error: could not write the samples ([Errno 28] No space left on device): "
                  "free disk space or pass another --out / --npz / --gif; nothing was written")
  assert_one_line(result.stderr, last)
  if full == "png":
    assert npz.read_bytes() == b"a file of the user's"
  else:
    assert not png.exists()


def _lmdb(content):
  def make(root):
    folder = root / "bedroom_train_lmdb"
    folder.mkdir()
    (folder / "data.mdb").write_bytes(content)
    return root, f"error: {folder}/data.mdb is not a readable LMDB ("
  return make


def _tfds_info(root):
  info = root / "cifar10" / "3.0.2" / "dataset_info.json"
  info.parent.mkdir(parents=True)
  info.write_text("{garbage")
  return root, f"error: cifar10 under {root} cannot be read (ParseError: "


def _a_file(root):
  path = root / "images.zip"
  path.write_bytes(b"PK")
  return path, f"error: image folder {path} is a file: pass --experiment.data.dir="


DAMAGED_DATA = {
    "an empty data.mdb": ("bedrooms_dcgan", "lsun_bedroom", _lmdb(b"")),
    "a data.mdb of garbage": ("bedrooms_dcgan", "lsun_bedroom", _lmdb(b"garbage" * 1000)),
    "a damaged tfds dataset_info.json": ("cifar10_resnet_gp", "cifar10", _tfds_info),
    "a data.dir that is a file": ("digits_dcgan_gp", "image_folder", _a_file),
}


@pytest.mark.parametrize("case", DAMAGED_DATA)
def test_damaged_data_stops_at_start_with_one_line(case, tmp_path):
  experiment, name, make = DAMAGED_DATA[case]
  root, message = make(tmp_path)
  started = time.monotonic()
  result = run_module("wgan_jax.train", f"--experiment={experiment}",
                      f"--experiment.data.name={name}", f"--experiment.data.dir={root}",
                      f"--workdir={tmp_path / 'run'}", timeout=120)
  last = result.stderr.strip().splitlines()[-1]
  assert result.returncode == 2 and time.monotonic() - started < 60, result.stderr[-3000:]
  assert last.startswith(message), last
  assert_one_line(result.stderr, last)
  assert not (tmp_path / "run").exists()  # found before anything was written


def test_a_second_trainer_on_a_workdir_in_use_is_refused_and_a_dead_holder_blocks_nothing(
    tmp_path):
  """The probe's case: the same command with another learning rate, started while
  the first trains, used to overwrite its checkpoints and summary."""
  # 30 iterations of 2 s: the second trainer's start-up fits well inside them, and the
  # rerun below has few left to train.
  first = start("slow_iterations", tmp_path, "--experiment.num_generator_steps=30")
  wait_for(lambda: finished_steps(str(tmp_path)), first)
  second = run_module("wgan_jax.train", *TINY, "--experiment.optimizer.lr=1e-4",
                      f"--workdir={tmp_path}")
  last = second.stderr.strip().splitlines()[-1]
  assert second.returncode == 2, second.stderr[-3000:]
  assert re.fullmatch(rf"error: --workdir={re.escape(str(tmp_path))} is in use by process "
                      rf"{first.pid} on \S+ since [\d: -]+ \(.+\): wait for it to "
                      r"end, stop it, or pass another --workdir", last), last
  assert_one_line(second.stderr, last)
  assert first.poll() is None  # The first trains on, its files its own.
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["optimizer"]["critic"]["lr"] == 1e-3
  first.kill()  # SIGKILL: no clean exit, the lock file stays behind ...
  first.communicate()
  assert (tmp_path / ".lock").exists()
  again = run_module("wgan_jax.train", f"--workdir={tmp_path}")  # ... and blocks nothing.
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed from" in again.stderr


def test_sighup_from_a_closed_terminal_saves_and_stops_like_sigterm(tmp_path):
  proc = start("slow_iterations", tmp_path, "--experiment.num_generator_steps=200")
  wait_for(lambda: finished_steps(str(tmp_path)), proc)
  proc.send_signal(signal.SIGHUP)
  code, last, err, seconds = finish(proc, timeout=60)
  assert code == 0, err[-3000:]
  step = int(last.split("generator step ")[1].split(":")[0])
  assert last == (f"stopped by SIGHUP at generator step {step}: checkpoint in "
                  f"{tmp_path}/checkpoints/{step}; run the same command to resume")
  assert step in finished_steps(str(tmp_path)) and seconds < 30
  assert_one_line(err, last)


def test_sighup_during_start_up_is_one_line(tmp_path):
  workdir = tmp_path / "run"
  proc = start("slow_startup", workdir)
  wait_for(lambda: os.path.exists(f"{workdir}.started"), proc)
  proc.send_signal(signal.SIGHUP)
  code, last, err, _ = finish(proc, timeout=60)
  assert (code, last) == (129, "error: stopped by SIGHUP during start-up; no checkpoint was "
                               "written")
  assert_one_line(err, last)


@pytest.mark.parametrize("root", ["/", "link"])
def test_a_system_root_as_workdir_is_refused(tmp_path, root):
  if root == "link":
    os.symlink("/", tmp_path / "link")
    root = str(tmp_path / "link")
  result = run_module("wgan_jax.train", *TINY, f"--workdir={root}")
  assert result.returncode == 2
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: --workdir={root}") and "is a system directory" in last, last
  assert_one_line(result.stderr, last)
  assert not os.path.exists("/checkpoints") and not os.path.exists("/.lock")


def _train_with(patch: str, workdir, *args, env=None):
  """`python -m wgan_jax.train TINY ARGS` with `patch` (Python, run first) installed."""
  code = "\n".join([f"import sys, runpy; sys.path.insert(0, {ROOT!r})", patch,
                    "sys.argv = ['wgan_jax.train'] + sys.argv[1:]",
                    "runpy.run_module('wgan_jax.train', run_name='__main__')"])
  proc = subprocess.Popen([sys.executable, "-c", code, *TINY, *args, f"--workdir={workdir}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})))
  STARTED.append(proc)
  return proc


# From generator step 3 on, one iteration is a call into C that does not return to
# Python for a minute (as a compile of a huge program does): signals cannot be taken.
_STUCK = """import hashlib
from wgan_jax import iteration
call = iteration.Iteration.__call__
def stuck(self, state, *args):
  if int(state.step) >= 3:
    open(sys.argv[-1].split("=")[1] + ".stuck", "w").close()
    hashlib.pbkdf2_hmac("sha256", b"x", b"y", 10**9)  # C, for about a minute
  return call(self, state, *args)
iteration.Iteration.__call__ = stuck"""


def test_a_signal_the_process_cannot_take_still_ends_it_with_one_line(tmp_path):
  workdir = tmp_path / "run"
  proc = _train_with(_STUCK, workdir, env={"WGAN_JAX_SIGNAL_GRACE_S": "3"})
  # Step 2's checkpoint is written in the background: on a loaded machine it may still
  # be in flight when step 3 gets stuck, and the line would rightly name step 1.
  wait_for(lambda: os.path.exists(f"{workdir}.stuck") and finished_steps(str(workdir)) == [2],
           proc)
  proc.send_signal(signal.SIGTERM)
  code, last, err, seconds = finish(proc, timeout=60)
  assert code == 143 and seconds < 15, (code, seconds, err[-3000:])
  assert last == ("error: stopped by SIGTERM: the process did not take the signal within 3 s "
                  "(it was inside one long call into XLA: a compile or a step); checkpoint 2 is "
                  "the newest and a rerun resumes from it")
  assert_one_line(err, last)
  assert finished_steps(str(workdir)) == [2]


# A device whose allocator has 1 KiB, as a GPU's or TPU's reports its size (a CPU
# reports none, so there is no check to make on one).
_SMALL_DEVICES = """from wgan_jax import devices
devices.allocator_limit = lambda device: {limit}"""


def test_a_batch_too_big_for_the_devices_stops_before_training_with_one_line(tmp_path):
  workdir = tmp_path / "run"
  code, last, err, _ = finish(_train_with(_SMALL_DEVICES.format(limit=2**10), workdir))
  assert code == 2, err[-3000:]
  assert re.fullmatch(
      r"error: batch_size=32 does not fit the devices: XLA's estimate of the compiled "
      r"iteration is [\d.]+ KiB on each device \(state and batch [\d.]+ KiB, temporaries "
      r"[\d.]+ KiB\), more than the 1\.0 KiB that cpu \d+'s allocator has; lower batch_size, "
      r"set accumulation_steps \(README: the objective\), or use more devices", last), last
  assert_one_line(err, last)
  assert finished_steps(str(workdir)) == [] and "generator step" not in err
  # With room on the devices the same run trains to its end.
  code, last, err, _ = finish(_train_with(_SMALL_DEVICES.format(limit=2**34), workdir))
  assert code == 0 and finished_steps(str(workdir)) == [2, 4, 6], err[-3000:]


# XLA's allocator failing at generator step 3, as it does for a batch too big for the
# devices (this machine would swap or be killed first).
_OOM = """import jax
from wgan_jax import iteration
call = iteration.Iteration.__call__
def oom(self, state, *args):
  if int(state.step) >= 3:
    raise jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 39.06GiB.")
  return call(self, state, *args)
iteration.Iteration.__call__ = oom"""


def test_out_of_device_memory_is_one_line_that_says_what_to_change(tmp_path):
  code, last, err, _ = finish(_train_with(_OOM, tmp_path))
  assert code == 1, err[-3000:]
  assert last == ("error: out of memory on the devices (RESOURCE_EXHAUSTED: Out of memory while "
                  "trying to allocate 39.06GiB.); lower batch_size, set accumulation_steps "
                  "(README: the objective), or use more devices; checkpoint 2 is the newest and "
                  "a rerun resumes from it")
  assert_one_line(err, last)
