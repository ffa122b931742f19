"""Soak: train a toy experiment while killing (SIGKILL) and restarting it at random
moments, then compare its final parameters with an uninterrupted run's.

  python tests/soak.py [--kills=20] [--seed=S] [--workdir=/tmp/soak]

Not a unit test (minutes long); its output is reported in BUILD.md.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.runs import (TOY, assert_bit_identical, command, final_state,  # pylint: disable=wrong-import-position
                        finished_steps, run)
from tests.conftest import ROOT  # pylint: disable=wrong-import-position

STEPS = 600
ARGS = [a for a in TOY if "num_generator_steps" not in a] + [
    f"--experiment.num_generator_steps={STEPS}"]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--seed", type=int, default=None)
  parser.add_argument("--workdir", default="/tmp/wgan_jax_soak")
  args = parser.parse_args()
  seed = random.randrange(1 << 30) if args.seed is None else args.seed
  rng = random.Random(seed)
  shutil.rmtree(args.workdir, ignore_errors=True)
  reference_dir, soak_dir = (os.path.join(args.workdir, d) for d in ("reference", "soak"))
  print(f"soak: seed {seed}, {args.kills} kills, {STEPS} generator iterations, "
        "checkpoint every 5")

  start = time.perf_counter()
  result = run(ARGS, reference_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  print(f"uninterrupted run: {time.perf_counter() - start:.1f} s")

  env = dict(os.environ, PYTHONPATH=ROOT)
  kills = 0
  while kills < args.kills:
    before = max(finished_steps(soak_dir), default=0)
    proc = subprocess.Popen(command(ARGS, soak_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    launched = time.perf_counter()
    if rng.random() < 0.25:  # During start-up or compilation.
      moment = "start-up"
      time.sleep(rng.uniform(0.2, 5.0))
    else:  # Mid-training: a random moment after the next save, often during one.
      moment = "training"
      while max(finished_steps(soak_dir), default=0) <= before and proc.poll() is None:
        time.sleep(0.01)
      time.sleep(rng.uniform(0.0, 1.0))
    if proc.poll() is not None:
      raise SystemExit(f"the run ended before kill {kills + 1}: use more steps or fewer kills")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    delay = time.perf_counter() - launched
    kills += 1
    after = max(finished_steps(soak_dir), default=0)
    leftovers = [n for n in os.listdir(os.path.join(soak_dir, "checkpoints"))
                 if not n.isdigit()] if os.path.isdir(os.path.join(soak_dir, "checkpoints")) else []
    print(f"kill {kills:2d} after {delay:4.1f} s ({moment}): newest checkpoint "
          f"{before:3d} -> {after:3d}"
          + (f"; unfinished saves left: {len(leftovers)}" if leftovers else ""))

  result = run(ARGS, soak_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  resumed = [l for l in result.stderr.splitlines() if "resumed from" in l]
  print("final run:", resumed[-1].split("] ")[-1] if resumed else "started afresh")
  a, b = final_state(soak_dir, STEPS), final_state(reference_dir, STEPS)
  assert_bit_identical(a, b)
  print(f"final parameters, batch stats and optimizer states: {len(a)} arrays, all "
        f"bit-identical to the uninterrupted run ({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
  main()
