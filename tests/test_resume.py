"""Exact resume: a run killed (SIGKILL) or stopped (SIGTERM, SIGINT) at a random
step and run again ends bit-identical to an uninterrupted run.

Each run is a real `python -m wgan_jax.train` process; the final checkpoints
are compared array by array, optimizer states and batch statistics included.
"""
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import ROOT

TOY = ["--experiment=toy_8gaussians", "--experiment.batch_size=32", "--experiment.n_critic=2",
       "--experiment.model.generator.features=32", "--experiment.model.critic.features=32",
       "--experiment.num_generator_steps=200", "--experiment.log_every=10",
       "--experiment.eval_every=0", "--experiment.eval_samples=200",
       "--experiment.checkpoint_every=5"]
# DCGAN with batch norm on shuffled digits: data order, batch stats and RMSProp all matter.
IMAGE = ["--experiment=digits_dcgan_gp", "--experiment.objective=wgan",
         "--experiment.optimizer.name=rmsprop", "--experiment.optimizer.lr=5e-5",
         "--experiment.model.critic.norm=batch", "--experiment.model.generator.ngf=8",
         "--experiment.model.critic.ndf=8", "--experiment.batch_size=8",
         "--experiment.n_critic=2", "--experiment.num_generator_steps=40",
         "--experiment.log_every=5", "--experiment.eval_every=0",
         "--experiment.eval_samples=16", "--experiment.checkpoint_every=2"]


def command(args, workdir):
  return [sys.executable, "-m", "wgan_jax.train", *args, f"--workdir={workdir}"]


def run(args, workdir, **kw):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run(command(args, workdir), capture_output=True, text=True, env=env,
                        timeout=600, **kw)


def finished_steps(workdir):
  try:
    return sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())
  except FileNotFoundError:
    return []


def interrupt(args, workdir, sig, after_step):
  """Starts a run and sends `sig` once a checkpoint at `after_step` or later is finished."""
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.Popen(command(args, workdir), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env)
  deadline = time.monotonic() + 300
  while not any(s >= after_step for s in finished_steps(workdir)):
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.01)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  return proc.returncode, err


def final_state(workdir, step):
  """Every array of the checkpoint at `step`, by item and path."""
  out = {}
  for item in ("generator", "critic"):
    tree = ocp.PyTreeCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), item))
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      out[item + jax.tree_util.keystr(path)] = np.asarray(leaf)
  return out


def assert_bit_identical(a, b):
  assert a.keys() == b.keys()
  differ = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not differ, f"{len(differ)} of {len(a)} arrays differ, e.g. {differ[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Final states of uninterrupted toy and image runs."""
  out = {}
  for name, args, total in (("toy", TOY, 200), ("image", IMAGE, 40)):
    workdir = str(tmp_path_factory.mktemp(f"reference_{name}"))
    result = run(args, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    out[name] = final_state(workdir, total)
  return out


@pytest.mark.parametrize("name,args,total,every", [("toy", TOY, 200, 5), ("image", IMAGE, 40, 2)])
def test_sigkill_at_a_random_step_then_rerun_is_bit_identical(name, args, total, every,
                                                              reference, tmp_path):
  seed = random.randrange(1 << 30)
  after = random.Random(seed).randrange(every, total * 3 // 4, every)
  returncode, _ = interrupt(args, str(tmp_path), signal.SIGKILL, after)
  assert returncode == -signal.SIGKILL
  killed_at = max(finished_steps(str(tmp_path)))
  assert after <= killed_at < total, f"seed {seed}"

  result = run(args, str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resumed from" in result.stderr and f"at generator step {killed_at}" in result.stderr
  assert_bit_identical(final_state(str(tmp_path), total), reference[name])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_saves_exits_zero_and_resumes_exactly(sig, reference, tmp_path):
  returncode, err = interrupt(TOY, str(tmp_path), sig, 20)
  assert returncode == 0, err[-3000:]
  step = max(finished_steps(str(tmp_path)))
  assert 20 <= step < 200
  line = err.strip().splitlines()[-1]
  assert line == (f"stopped by {sig.name} at generator step {step}: checkpoint in "
                  f"{tmp_path / 'checkpoints' / str(step)}; run the same command to resume")
  assert not (tmp_path / "summary.json").exists()

  # The saved config travels with the checkpoint: --workdir alone resumes the run.
  env = dict(os.environ, PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, "-m", "wgan_jax.train", f"--workdir={tmp_path}"],
                          capture_output=True, text=True, env=env, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"at generator step {step}" in result.stderr
  assert_bit_identical(final_state(str(tmp_path), 200), reference["toy"])
