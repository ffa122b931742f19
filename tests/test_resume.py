"""Exact resume: a run killed (SIGKILL) or stopped (SIGTERM, SIGINT) at a random
step and run again ends bit-identical to an uninterrupted run.

Each run is a real `python -m wgan_jax.train` process; the final checkpoints
are compared array by array, optimizer states and batch statistics included.
"""
import random
import signal

import pytest

from tests.runs import (IMAGE, TOY, TOY_STEPS, assert_bit_identical, final_state,
                        finished_steps, interrupt, run)

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Final states of uninterrupted toy and image runs."""
  out = {}
  for name, args, total in (("toy", TOY, TOY_STEPS), ("image", IMAGE, 40)):
    workdir = str(tmp_path_factory.mktemp(f"reference_{name}"))
    result = run(args, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    out[name] = final_state(workdir, total)
  return out


@pytest.mark.parametrize("name,args,total,every", [("toy", TOY, TOY_STEPS, 5), ("image", IMAGE, 40, 2)])
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
  assert 20 <= step < TOY_STEPS
  line = err.strip().splitlines()[-1]
  assert line == (f"stopped by {sig.name} at generator step {step}: checkpoint in "
                  f"{tmp_path / 'checkpoints' / str(step)}; run the same command to resume")
  assert not (tmp_path / "summary.json").exists()

  # The saved config travels with the checkpoint: --workdir alone resumes the run.
  result = run([], str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"at generator step {step}" in result.stderr
  assert_bit_identical(final_state(str(tmp_path), TOY_STEPS), reference["toy"])
