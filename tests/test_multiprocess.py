"""A real multi-process run on one machine: 2 processes x 2 CPU devices on
localhost (gloo collectives) train, checkpoint and resume through the real
`python -m wgan_jax.train`, and end where one process with 4 devices ends."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, xla_flags
from tests.runs import TOY, TOY_STEPS, final_state, finished_steps

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

ARGS = [a for a in TOY if "num_generator_steps" not in a and "checkpoint_every" not in a] + [
    "--experiment.checkpoint_every=2", "--experiment.optimizer.schedule=constant"]  # Same LR in both legs.


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, steps, processes, devices_each):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             XLA_FLAGS=xla_flags(devices_each))
  args = [sys.executable, "-m", "wgan_jax.train", *ARGS,
          f"--experiment.num_generator_steps={steps}", f"--workdir={workdir}"]
  if processes > 1:
    port = free_port()
    args.append(f"--coordinator_address=127.0.0.1:{port}")
    args.append(f"--num_processes={processes}")
  procs = [subprocess.Popen(args + ([f"--process_id={i}"] if processes > 1 else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
           for i in range(processes)]
  results = []
  for proc in procs:
    _, err = proc.communicate(timeout=600)
    results.append((proc.returncode, err))
  for returncode, err in results:
    assert returncode == 0, err[-3000:]
  return [err for _, err in results]


def test_two_processes_train_checkpoint_resume_like_one_with_four_devices(tmp_path):
  reference = tmp_path / "one_process"
  logs = launch(reference, 6, processes=1, devices_each=4)
  assert "4 devices (jit), 1 processes" in logs[0]

  workdir = tmp_path / "two_processes"
  logs = launch(workdir, 4, processes=2, devices_each=2)
  for log in logs:
    assert "4 devices (jit), 2 processes" in log
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  # Resume (both processes restore together), two more iterations.
  logs = launch(workdir, 6, processes=2, devices_each=2)
  for log in logs:
    assert "at generator step 4" in log
  # Files from process 0 only; both processes held the same parameters (the
  # trainer asserts it across processes at the end).
  assert os.path.exists(workdir / "summary.json")

  a, b = final_state(str(workdir), 6), final_state(str(reference), 6)
  assert a.keys() == b.keys()
  for key in a:
    # Cross-process (gloo) and in-process all-reduces may sum in another order.
    np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_sigterm_to_one_process_stops_all_at_the_same_step(tmp_path):
  """The processes agree on the stop through JAX's preemption service (no
  device collective): SIGTERM to process 1 alone saves one checkpoint at a
  step both reach, both exit 0, and `--workdir` alone resumes both there."""
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             XLA_FLAGS=xla_flags(2))
  args = [sys.executable, "-m", "wgan_jax.train", *TOY, f"--workdir={tmp_path}",
          f"--coordinator_address=127.0.0.1:{free_port()}", "--num_processes=2"]
  procs = [subprocess.Popen(args + [f"--process_id={i}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
  deadline = time.monotonic() + 300
  while not os.path.isdir(tmp_path / "checkpoints" / "10"):
    assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.02)
  procs[1].send_signal(signal.SIGTERM)
  lines = []
  for proc in procs:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    lines.append(err.strip().splitlines()[-1])
  step = max(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert 10 <= step < TOY_STEPS
  expected = (f"stopped by a preemption notice (SIGTERM to one of the processes) at generator "
              f"step {step}: checkpoint in {tmp_path / 'checkpoints' / str(step)}; run the same "
              "command to resume")
  assert lines == [expected, expected]
  assert not (tmp_path / "summary.json").exists()
  # Both resume there from the saved config and finish together.
  port = free_port()
  resumed = [subprocess.Popen(
      [sys.executable, "-m", "wgan_jax.train", f"--workdir={tmp_path}",
       f"--experiment.num_generator_steps={step + 2}",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
  for proc in resumed:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert f"at generator step {step}" in err
  assert (tmp_path / "summary.json").exists()


def test_processes_started_with_different_settings_stop_at_once_with_one_line(tmp_path):
  """The probe's case: one process given 40 generator steps, the other 20 (before,
  both trained apart and then waited for each other forever)."""
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(2))
  port = free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "wgan_jax.train", *ARGS, f"--experiment.num_generator_steps={steps}",
       f"--workdir={tmp_path / 'w'}", f"--coordinator_address=127.0.0.1:{port}",
       "--num_processes=2", f"--process_id={i}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
      for i, steps in enumerate((40, 20))]
  started = time.monotonic()
  ends = [proc.communicate(timeout=300) for proc in procs]
  assert time.monotonic() - started < 120
  for proc, (_, err) in zip(procs, ends):
    assert proc.returncode == 2, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: the 2 processes were started with different settings (process 1 has "
        "num_generator_steps=20 where process 0 has 40): start every process with the same "
        "command")
  assert not (tmp_path / "w" / "checkpoints").exists()  # Nothing was trained.


def _training_child(proc) -> int:
  """The training process under a multi-process run's launcher (supervisor.py)."""
  with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
    children = [int(p) for p in f.read().split()]
  assert len(children) == 1, children
  return children[0]


@pytest.mark.parametrize("victim", [1, 0])
def test_a_lost_process_ends_the_others_with_one_line(tmp_path, victim):
  """SIGKILL to a worker's training (victim 1) or to the coordinator's (victim 0):
  the other process ends with one line naming what was lost and the newest
  checkpoint, not JAX's abort and thread dump, and soon."""
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(2))
  port = free_port()
  workdir = tmp_path / "w"
  procs = [subprocess.Popen(
      [sys.executable, "-m", "wgan_jax.train", *ARGS, "--experiment.num_generator_steps=100000",
       f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
       f"--process_id={i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
      for i in range(2)]
  try:
    deadline = time.monotonic() + 300
    while not finished_steps(str(workdir)):
      assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-3000:]
      assert time.monotonic() < deadline
      time.sleep(0.1)
    os.kill(_training_child(procs[victim]), signal.SIGKILL)
    started = time.monotonic()
    _, err = procs[1 - victim].communicate(timeout=240)
    seconds = time.monotonic() - started
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()
  survivor = 1 - victim
  assert procs[survivor].returncode == 1, err[-3000:]
  last = err.strip().splitlines()[-1]
  lost = ("process 1 stopped sending heartbeats (it died, or hangs)" if victim == 1
          else "process 0, the coordinator, is gone")
  assert last.startswith(f"error: process {survivor} of 2: {lost}; "), last
  assert re.search(r"checkpoint \d+ is the newest and a rerun resumes from it: restart every "
                   r"process with the same command$", last), last
  assert "Traceback" not in err and "Fatal Python error" not in err and "F1206" not in err
  assert seconds < 30, seconds  # Not JAX's heartbeat timeout (about 80 s).
