"""The bad-input table of BUILD.md: each row is a real command line that gets one
line saying what is wrong and how to fix it, exit code 2, no traceback, and
leaves every file in the workdir as it was."""
import hashlib
import os

import pytest

from tests.helpers import tiny_config
from tests.runs import run_module
from wgan_jax import loop

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow


def snapshot(workdir):
  """Every file under `workdir` with its size, mtime and digest (None if absent)."""
  if not os.path.exists(workdir):
    return None
  out = {}
  for folder, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        out[path] = (os.path.getsize(path), os.stat(path).st_mtime_ns,
                     hashlib.sha1(f.read()).hexdigest())
  return out


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  """A finished 2-step toy_8gaussians run (tiny widths) with checkpoints."""
  workdir = str(tmp_path_factory.mktemp("toy_run"))
  config = tiny_config(num_generator_steps=2, checkpoint_every=1, eval_every=0)
  loop.train_and_evaluate(config, workdir)
  return workdir


# (name, module, arguments, where the workdir is, the error line's start). WORKDIR is
# replaced by the workdir: "new" a path that does not exist yet, "run" a finished toy run.
TABLE = [
    ("unknown experiment", "wgan_jax.train", ["--experiment=nope"], "new",
     "error: unknown experiment 'nope' (known: bedrooms_dcgan, bedrooms_dcgan_gan"),
    ("unknown override key", "wgan_jax.train", ["--experiment.optimizer.lrr=1"], "new",
     "error: unknown config key 'optimizer.lrr'; did you mean 'optimizer.lr'? (optimizer.KEY "
     "sets both networks'"),
    ("wrongly typed value", "wgan_jax.train", ["--experiment.n_critic=five"], "new",
     "error: bad value for 'n_critic': 'five' is not a whole number (current value: 5)"),
    ("a flag's value of the wrong type", "wgan_jax.sample", ["--num=five"], "run",
     "error: flag --num=five: 'five' is not a whole number; see --helpfull"),
    ("a boolean flag's value", "wgan_jax.evaluate", ["--raw_generator=maybe"], "run",
     "error: flag --raw_generator=maybe: 'maybe' is not true or false; see --helpfull"),
    ("override without a value", "wgan_jax.train", ["--experiment.seed"], "new",
     "error: --experiment.seed needs a value: --experiment.seed=VALUE"),
    ("unknown flag", "wgan_jax.train", ["--bogus=1"], "new",
     "error: Unknown command line flag 'bogus'"),
    ("n_critic < 1", "wgan_jax.train", ["--experiment.n_critic=0"], "new",
     "error: n_critic=0 must be at least 1"),
    ("negative clip", "wgan_jax.train",
     ["--experiment=bedrooms_dcgan", "--experiment.clip=-0.01"], "new",
     "error: clip=-0.01 must be 0 (off) or a positive bound c: weights are clipped to [-c, c]"),
    ("DCGAN image size not a multiple of 16", "wgan_jax.train",
     ["--experiment=digits_dcgan_gp", "--experiment.data.image_size=24"], "new",
     "error: data.image_size=24 does not suit DCGAN: use a multiple of 16"),
    ("batch size not divisible by the device count", "wgan_jax.train",
     ["--experiment.batch_size=12"], "new",
     "error: batch_size=12 does not split evenly over 8 devices; use a multiple of 8 (e.g. 8 "
     "or 16) or run on fewer devices"),
    ("workdir is a file", "wgan_jax.train", [], "file",
     "error: --workdir=WORKDIR is a file; pass a directory"),
    ("workdir under a file", "wgan_jax.train", [], "under_file",
     "error: --workdir=WORKDIR cannot be created: "),
    ("workdir not writable", "wgan_jax.train", [], "/sys/wgan_jax_run",
     "error: --workdir=/sys/wgan_jax_run is not writable (EACCES in /sys)"),
    ("workdir holds another experiment", "wgan_jax.train", ["--experiment=toy_25gaussians"],
     "run", "error: WORKDIR holds checkpoints of experiment 'toy_8gaussians' (step 2), not "
            "'toy_25gaussians': resume it with --workdir=WORKDIR alone, or pass another --workdir"),
    ("override that changes the checkpoint's shapes", "wgan_jax.train",
     ["--experiment.model.critic.features=64"], "run",
     "error: WORKDIR was trained with model.critic.features=32 (step 2), this command sets "
     "model.critic.features=64: the checkpoint cannot hold that"),
    ("missing data set", "wgan_jax.train",
     ["--experiment=bedrooms_dcgan", "--experiment.data.dir=/nonexistent/lsun"], "new",
     "error: LSUN bedrooms not found at /nonexistent/lsun: download bedroom_train_lmdb.zip"),
    ("a file named checkpoints in the workdir", "wgan_jax.train", [], "checkpoints_file",
     "error: WORKDIR/checkpoints is a file, not a folder of checkpoints: move it away or pass "
     "another --workdir"),
    ("a workdir name longer than the file system allows", "wgan_jax.train", [], "long_name",
     "error: --workdir=WORKDIR has a name of 300 bytes (aaaaaaaaaaaaaaaaaaaa...); the file "
     "system allows 255: pass a shorter path"),
    ("a dangling symbolic link as workdir", "wgan_jax.train", [], "dangling",
     "error: --workdir=WORKDIR is a symbolic link to "),
    ("a value out of its range", "wgan_jax.train", ["--experiment.optimizer.b1=2"], "new",
     "error: optimizer.generator.b1=2.0 must be in [0, 1)"),
    ("a seed beyond 32 bits", "wgan_jax.train", ["--experiment.seed=99999999999999999999999"],
     "new", "error: seed=99999999999999999999999 must be at least 0 and at most 2147483647"),
    ("more evaluation samples than exact W1 can hold", "wgan_jax.train",
     ["--experiment.eval_samples=100000"], "new",
     "error: eval_samples=100000 must be at least 2 and at most 10000 (exact W1 solves an N x "
     "N transport problem)"),
    ("a typo in a choice", "wgan_jax.train",
     ["--experiment.model.generator.output_activation=tahn"], "new",
     "error: model.generator.output_activation='tahn' is unknown; use one of linear, tanh"),
    ("a layer count below 0", "wgan_jax.train", ["--experiment.model.generator.depth=-1"], "new",
     "error: model.generator.depth=-1 must be at least 0"),
    ("an infinite learning rate", "wgan_jax.train", ["--experiment.optimizer.lr=inf"], "new",
     "error: optimizer.generator.lr=inf must be at least 0 (0 freezes the network)"),
    ("sample: more samples than one call writes", "wgan_jax.sample", ["--num=200000000"], "run",
     "error: --num=200000000 must be at least 1 and at most 100000; for more, call again with "
     "other --seed values"),
    ("sample: --out into a missing folder", "wgan_jax.sample", ["--out=/nonexistent/x.png"],
     "run", "error: --out=/nonexistent/x.png: the folder /nonexistent does not exist"),
    ("sample: --out without .png", "wgan_jax.sample", ["--out=/tmp/grid"], "run",
     "error: --out=/tmp/grid must end in .png"),
    ("sample: --npz of another kind", "wgan_jax.sample", ["--npz=/tmp/samples.txt"], "run",
     "error: --npz=/tmp/samples.txt must end in .npz"),
    ("sample: an output folder that cannot be written", "wgan_jax.sample", ["--out=/sys/x.png"],
     "run", "error: --out=/sys/x.png cannot be written ("),
    ("sample with no checkpoint", "wgan_jax.sample", [], "new",
     "error: no checkpoint in WORKDIR"),
    ("sample: a step that does not exist", "wgan_jax.sample", ["--step=7"], "run",
     "error: no checkpoint for step 7 in WORKDIR/checkpoints; saved steps: 1, 2"),
    ("train: image scores for a toy set", "wgan_jax.train", ["--experiment.eval.metrics=fid"],
     "new", "error: eval.metrics='fid' scores images; 8gaussians is a toy set, whose exact W1 "
            "every evaluation reports: set eval.metrics=''"),
    ("train: an unknown metric", "wgan_jax.train",
     ["--experiment=digits_dcgan_gp", "--experiment.eval.metrics=fid,fdi"], "new",
     "error: eval.metrics='fid,fdi' unknown metric 'fdi'; use some of fid, kid, is, pr, dc, "
     "intra_fid, domain"),
    ("train: an Inception weights file that is not there", "wgan_jax.train",
     ["--experiment=digits_dcgan_gp", "--experiment.eval.metrics=fid",
      "--experiment.eval.inception_weights=/nonexistent/w.pth"], "new",
     "error: eval.inception_weights: no Inception weights file at /nonexistent/w.pth; download "
     "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
     "pt_inception-2015-12-05-6726825d.pth and pass --inception_weights=PATH"),
    ("evaluate: image scores of a toy run", "wgan_jax.evaluate", ["--metrics=fid"], "run",
     "error: 8gaussians is a toy set of points: use --metrics=critic_w (its exact W1 is in "
     "the run's summary.json)"),
    ("evaluate: an unknown metric", "wgan_jax.evaluate", ["--metrics=fid,bogus"], "run",
     "error: --metrics=fid,bogus: unknown metric 'bogus'; use some of fid, kid, is, pr, "
     "dc, intra_fid, domain, critic_w"),
    ("evaluate with no checkpoint", "wgan_jax.evaluate", [], "new",
     "error: no checkpoint in WORKDIR"),
]


@pytest.mark.parametrize("name,module,args,where,message", TABLE, ids=[row[0] for row in TABLE])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(name, module, args, where, message,
                                                         toy_run, tmp_path):
  del name
  if where == "new":
    workdir = str(tmp_path / "w")
  elif where == "run":
    workdir = toy_run
  elif where == "file":
    workdir = str(tmp_path / "file")
    (tmp_path / "file").write_text("keep me")
  elif where == "under_file":
    (tmp_path / "file").write_text("keep me")
    workdir = str(tmp_path / "file" / "w")
  elif where == "checkpoints_file":
    workdir = str(tmp_path / "w")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "checkpoints"), "w") as f:
      f.write("keep me")
  elif where == "long_name":
    workdir = str(tmp_path / ("a" * 300))
  elif where == "dangling":
    workdir = str(tmp_path / "link")
    os.symlink(tmp_path / "gone", workdir)
  else:
    workdir = where
  before = snapshot(workdir if where != "file" else str(tmp_path))
  result = run_module(module, *args, f"--workdir={workdir}", timeout=300)

  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr[-3000:]
  assert errors[0].startswith(message.replace("WORKDIR", workdir)), errors[0]
  assert snapshot(workdir if where != "file" else str(tmp_path)) == before
