"""Real `python -m wgan_jax.train` processes for the resume tests and the soak
script: start, interrupt, rerun, and read back every array of a checkpoint."""
import os
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from tests.conftest import ROOT

TOY_STEPS = 120
TOY = ["--experiment=toy_8gaussians", "--experiment.batch_size=32", "--experiment.n_critic=2",
       "--experiment.model.generator.features=32", "--experiment.model.critic.features=32",
       f"--experiment.num_generator_steps={TOY_STEPS}", "--experiment.log_every=10",
       "--experiment.eval_every=0", "--experiment.eval_samples=200",
       "--experiment.checkpoint_every=5"]
# DCGAN with batch norm on shuffled digits: data order, batch stats and RMSProp all matter.
IMAGE = ["--experiment=digits_dcgan_gp", "--experiment.penalty=none", "--experiment.clip=0.01",
         "--experiment.optimizer.name=rmsprop", "--experiment.optimizer.lr=5e-5",
         "--experiment.model.critic.norm=batch", "--experiment.model.generator.ngf=8",
         "--experiment.model.critic.ndf=8", "--experiment.batch_size=8",
         "--experiment.n_critic=2", "--experiment.num_generator_steps=40",
         "--experiment.log_every=5", "--experiment.eval_every=0",
         "--experiment.eval_samples=16", "--experiment.checkpoint_every=2"]


def command(args, workdir):
  return [sys.executable, "-m", "wgan_jax.train", *args, f"--workdir={workdir}"]


def run_module(module, *args, timeout=600, env=None):
  """`python -m module args` from the repository root (with `env` added to this
  process's environment); its result, output captured."""
  env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        env=env, timeout=timeout, cwd=ROOT)


def run(args, workdir):
  """A training run to its end."""
  return run_module("wgan_jax.train", *args, f"--workdir={workdir}")


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
  """Every array of the TrainState saved at `step` (whatever fields it has: the
  step, the RNG key, parameters, batch statistics, optimizer states, ...), by
  path such as "critic/opt_state/0/count"."""
  checkpointer = ocp.PyTreeCheckpointer()
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  # As numpy arrays: the saving run's device layout need not exist here.
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                          checkpointer.metadata(path).item_metadata.tree)
  tree = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  return {"/".join(str(k.key) for k in p): np.asarray(leaf)
          for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def assert_bit_identical(a, b):
  assert a.keys() == b.keys()
  # The whole state, not a list of fields: step and RNG key are in it too.
  assert {"step", "rng"} <= a.keys() and any(k.startswith("critic/opt_state/") for k in a)
  differ = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not differ, f"{len(differ)} of {len(a)} arrays differ, e.g. {differ[:3]}"
