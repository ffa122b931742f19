"""Scores a trained generator, or two sets of images, as the field does.

  python -m wgan_jax.evaluate --workdir=DIR [--step=N] [--metrics=fid,kid,is,pr]
      [--num_samples=50000] [--inception_weights=PATH] [--fid_resize=tf1]
  python -m wgan_jax.evaluate --samples=A.npz --reference=B.npz [--metrics=...]
  python -m wgan_jax.evaluate --workdir=DIR --metrics=domain     # digits / mnist runs
  python -m wgan_jax.evaluate --workdir=DIR --metrics=critic_w   # a fresh critic per checkpoint

With --workdir the generator alone is restored (the newest checkpoint that
reads back, or --step), samples are generated and scored against the run's
data set, `eval_<step>.json` is written in the workdir, and one line per
metric is printed. With --samples/--reference, both files hold uint8 images
[N, H, W, C] under the key "samples" (as `wgan_jax.sample --npz` writes them).
The last line printed is always one JSON object of the metrics.
"""
from __future__ import annotations

from wgan_jax import startup

startup.quiet_console()
startup.stop_quietly_while_loading("nothing was written")

# pylint: disable=wrong-import-position
import json
import os
import signal
import sys
from typing import Callable
import zipfile
import zlib

from absl import app, flags, logging
import jax
import numpy as np

from wgan_jax import configs, files, metrics
from wgan_jax.cli import flags_parser, usage_error
from wgan_jax.metrics import inception
from wgan_jax.preemption import StopRequested, StopSignals, raise_on_signals, watch_signals

# The critic yardstick's metric (a study over a run's checkpoints).
(CRITIC,) = (n for n, m in metrics.REGISTRY.items() if m.family == "critic")

# Precision/recall and density/coverage are asked for by name: at 50,000 x 50,000
# their distances take about half an hour of a 2-core CPU (BUILD.md).
DEFAULT_METRICS = "fid,kid,is"

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest intact one).")
_SAMPLES = flags.DEFINE_string("samples", None, ".npz of generated uint8 images [N, H, W, C].")
_REFERENCE = flags.DEFINE_string("reference", None, ".npz of real uint8 images [N, H, W, C].")
_METRICS = flags.DEFINE_string("metrics", DEFAULT_METRICS,
                               f"Comma-separated, of: {', '.join(metrics.ALL)}.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 50_000, "Generated samples to score.")
_REFERENCE_SAMPLES = flags.DEFINE_integer("reference_samples", 50_000,
                                          "Real images in the reference statistics (at most).")
_WEIGHTS = flags.DEFINE_string("inception_weights", None,
                               "pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                               "(default: $WGAN_JAX_INCEPTION_WEIGHTS).")
_RESIZE = flags.DEFINE_enum("fid_resize", inception.DEFAULT_RESIZE, inception.RESIZES,
                            "How images reach 299x299: TF1's bilinear resize of the TTUR code "
                            "(as torch-fidelity) or pytorch-fid's F.interpolate.")
_BATCH = flags.DEFINE_integer("batch_size", 200, "Images per Inception batch, all devices.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generator's noise (as wgan_jax.sample's).")
_RAW = flags.DEFINE_bool("raw_generator", False, "Score the generator itself, not the "
                        "moving average of its weights that a run with ema.decay > 0 keeps "
                        "and is scored with by default.")
_TRUNCATION = flags.DEFINE_float("truncation", None, "Score samples of truncated noise "
                                 "(the truncation trick, as wgan_jax.sample's): the "
                                 "quality/diversity trade-off, one psi a call; written to "
                                 "eval_<step>_psi<psi>.json.")
_MODEL = flags.DEFINE_integer("model", None, "Which model of a sweep (its index, as in "
                              "WORKDIR/models/NN and summary.json's `models`).")
_CRITIC = flags.DEFINE_enum("critic", "auto", ("auto", "mlp", "dcgan"),
                            "critic_w: the fresh critic's architecture (auto: mlp on toy sets, "
                            "dcgan on images).")
_CRITIC_CLIP = flags.DEFINE_float("critic_clip", 0.01, "critic_w: its clip value c.")
_CRITIC_UPDATES = flags.DEFINE_integer("critic_updates", 1000, "critic_w: its RMSProp updates.")
_CRITIC_SEEDS = flags.DEFINE_integer("critic_seeds", 5,
                                     "critic_w: critics per checkpoint (the interval's).")

MAX_SAMPLES = 1_000_000
MAX_REFERENCE_SAMPLES = 10_000_000


# Images smaller than this a side are mostly the resize's interpolation by the
# time they reach the Inception's 299x299 (the smallest this project trains on: 16).
TINY_SIDE = 16
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


# What reading a damaged or foreign file raises (numpy's, zipfile's, the OS's).
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, NotImplementedError,
               RuntimeError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error)


def load_images(flag: str, path: str) -> np.ndarray:
  """uint8 images [N, H, W, 1 or 3] of an .npz, or a ValueError of one line
  naming the file and what is wrong. The array's header is checked before its
  data is read."""
  if not os.path.isfile(path):
    raise ValueError(f"{flag}={path}: no such file; pass an .npz written by "
                     "`python -m wgan_jax.sample --npz=...` or np.savez(path, samples=images)")
  arrays, dtype, shape = [], None, ()
  try:
    foreign = _not_an_npz(path)
    if foreign is None:
      with zipfile.ZipFile(path) as archive:
        arrays = [n[:-len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
        if "samples" in arrays:
          with archive.open("samples.npy") as f:
            dtype, shape = _npy_header(f)
  except _UNREADABLE as e:
    raise ValueError(f"{flag}={path} cannot be read as an .npz ({_reason(e)}); "
                     "write it again") from None
  if foreign is not None:
    raise ValueError(f"{flag}={path} {foreign}")
  if "samples" not in arrays:
    raise ValueError(f"{flag}={path} has no array 'samples' (it has: "
                     f"{', '.join(arrays) or 'nothing'}); save the images under that key")
  _check_images(flag, path, dtype, shape)
  try:
    with np.load(path, allow_pickle=False) as f:
      return f["samples"]
  except _UNREADABLE as e:
    raise ValueError(f"{flag}={path} cannot be read as an .npz ({_reason(e)}); "
                     "write it again") from None


def _not_an_npz(path: str) -> str | None:
  """What the file at `path` is if it is no zip archive (numpy would try it as a
  pickle), or None."""
  if zipfile.is_zipfile(path):
    return None
  with open(path, "rb") as f:
    head = f.read(len(_NPY_MAGIC))
  if head.startswith(_ZIP_MAGIC):
    return ("cannot be read as an .npz (a zip archive cut short or damaged: no central "
            "directory); write it again")
  if head.startswith(_NPY_MAGIC):
    return ("is an .npy file (one array), not an .npz; save the images with "
            "np.savez(path, samples=images)")
  return (f"is not an .npz ({'empty' if not head else 'not a zip archive'}); save the images "
          "with np.savez(path, samples=images) or `python -m wgan_jax.sample --npz=...`")


def _npy_header(f) -> tuple[np.dtype, tuple]:
  """(dtype, shape) from the header of the .npy in `f`, its data left unread."""
  version = np.lib.format.read_magic(f)
  read = {(1, 0): np.lib.format.read_array_header_1_0,
          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
  if read is None:
    raise ValueError(f"an .npy format version {version} this numpy does not read")
  shape, _, dtype = read(f)
  return dtype, shape


def _check_images(flag: str, path: str, dtype: np.dtype, shape: tuple) -> None:
  if dtype != np.uint8 or len(shape) != 4 or shape[-1] not in (1, 3):
    raise ValueError(f"{flag}={path}: 'samples' must be uint8 images [N, H, W, 1 or 3], got "
                     f"{dtype} {shape}")
  if shape[0] < 2:
    raise ValueError(f"{flag}={path} holds {shape[0]} image(s); at least 2 are needed")
  if min(shape[1:3]) < 1:
    raise ValueError(f"{flag}={path}: 'samples' {shape} are images of {shape[1]}x{shape[2]} "
                     "pixels, which hold nothing to score; save the images themselves")


def _reason(e: BaseException) -> str:
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def size_note(generated: np.ndarray, real: np.ndarray, resize: str) -> str | None:
  """What to say of images that reach the Inception's input size unlike each
  other (both sets are resized to 299x299 each on its own) or from a tiny size."""
  sizes = {"--samples": generated.shape[1:3], "--reference": real.shape[1:3]}
  (h, w), (rh, rw) = sizes.values()
  tiny = [f"{flag} ({a}x{b})" for flag, (a, b) in sizes.items() if min(a, b) < TINY_SIDE]
  if (h, w) != (rh, rw):
    return (f"--samples are {h}x{w} images and --reference {rh}x{rw}: each set is resized to "
            f"{inception.INPUT_SIZE}x{inception.INPUT_SIZE} on its own ({resize}), so the scores "
            "also measure the difference in size; compare images of one size")
  if tiny:
    return (f"{' and '.join(tiny)} images are resized up to {inception.INPUT_SIZE}x"
            f"{inception.INPUT_SIZE} ({resize}) from under {TINY_SIDE} pixels a side: the "
            "Inception sees mostly the interpolation, and the scores compare with no paper's")
  return None


def _print_metrics(scores: dict[str, float], protocol: str) -> None:
  """The protocol, one line per metric, then the metrics as one JSON object."""
  print(f"protocol: {protocol}")
  for name, value in scores.items():
    print(f"{name}: {value:.6g}")
  print(json.dumps(scores, allow_nan=False))


def _write_whole(path: str, write: Callable[[], None]) -> None:
  """`write()`, which writes `path` whole or not at all, with SIGINT / SIGTERM
  held until it ends: a stop during it says whether `path` was written."""
  with StopSignals() as stop, stop.deferred():
    write()
  if stop.received:
    stopped = StopRequested(stop.received)
    stopped.written = path
    raise stopped


def _inception_scorer(batch: int):
  from wgan_jax.metrics import image_metrics, inception_weights  # pylint: disable=import-outside-toplevel
  weights = inception_weights.load(_WEIGHTS.value)
  return image_metrics.InceptionScorer(weights, _RESIZE.value, batch)


def evaluate_files(names: tuple[str, ...]) -> dict[str, float]:
  from wgan_jax.metrics import image_metrics  # pylint: disable=import-outside-toplevel
  of_files = [n for n in metrics.INCEPTION if n not in metrics.conditional(metrics.INCEPTION)]
  other = [n for n in names if n not in of_files]
  if other:
    raise ValueError(f"--metrics={','.join(other)} needs a run (--workdir); with --samples/"
                     f"--reference use some of {', '.join(of_files)}")
  from wgan_jax.metrics import inception_weights  # pylint: disable=import-outside-toplevel
  generated = load_images("--samples", _SAMPLES.value)
  real = load_images("--reference", _REFERENCE.value)
  # What costs nothing first: the weights are named, the sets are large enough.
  inception_weights.located(_WEIGHTS.value)
  problem = image_metrics.too_few_samples(
      names, (len(generated), f"--samples={_SAMPLES.value} holds {len(generated)}"),
      (len(real), f"--reference={_REFERENCE.value} holds {len(real)}"), "--metrics")
  if problem:
    raise ValueError(problem)
  for note in (size_note(generated, real, _RESIZE.value),
               image_metrics.few_samples_note(len(generated))):
    if note:
      print(f"warning: {note}", file=sys.stderr)
  # A batch no larger than the sets: the last batch is filled up, and its padding computed.
  scorer = _inception_scorer(min(_BATCH.value, max(len(generated), len(real))))
  scores = image_metrics.score(names, scorer.of_array(generated, "samples"),
                               scorer.of_array(real, "reference"))
  _print_metrics(scores, f"{len(generated):,} vs {len(real):,} images, {scorer.describe()}")
  return scores


def evaluate_run(workdir: str, step: int | None, names: tuple[str, ...],
                 experiment: str | None, overrides) -> dict[str, float]:
  from wgan_jax import checkpointing, data, generators  # pylint: disable=import-outside-toplevel
  from wgan_jax import scoring, sweeps  # pylint: disable=import-outside-toplevel

  # Before anything is restored or generated.
  scoring.check_counts(names, _NUM_SAMPLES.value, _REFERENCE_SAMPLES.value, "--")

  def load(candidate):
    found, config = generators.saved_config(workdir, candidate, experiment, overrides)
    return (found, config, *generators.restore(config, workdir, found, _MODEL.value,
                                               _RAW.value))

  found, config, module, generator = checkpointing.newest_readable(workdir, step, load)
  if data.is_toy(config.data):
    raise ValueError(f"{config.data.name} is a toy set of points: use --metrics=critic_w "
                     "(its exact W1 is in the run's summary.json)")
  if _TRUNCATION.value is not None and generators.normalises_each_batch(config):
    print("warning: --truncation with sampling_batch_norm=batch: the generator's batch norm "
          "normalises each batch by its own statistics, which undoes most of the truncation; "
          "add --experiment.sampling_batch_norm=running", file=sys.stderr)
  report = scoring.evaluate(
      names, config=config, workdir=workdir, step=found, module=module, generator=generator,
      num_samples=_NUM_SAMPLES.value, reference_samples=_REFERENCE_SAMPLES.value, seed=_SEED.value,
      scorer=(lambda: _inception_scorer(
          min(_BATCH.value, max(_NUM_SAMPLES.value, _REFERENCE_SAMPLES.value)))),
      truncation=_TRUNCATION.value)
  # A sweep's model: beside the reports its training wrote (WORKDIR/models/NN).
  where = (workdir if _MODEL.value is None
           else sweeps.model_dir(workdir, _MODEL.value, sweeps.from_config(config).size))
  _write_whole(scoring.report_path(where, found, _TRUNCATION.value),
               lambda: scoring.write_report(where, found, report))
  protocol = ", ".join(f"{k} {v}" for k, v in report["protocol"].items())
  _print_metrics(report["metrics"], f"step {found}, {protocol}")
  return report["metrics"]


def evaluate_critic(workdir: str, step: int | None, overrides) -> list[dict]:
  """A fresh critic's estimate of K * W1 at `step`, or at every checkpoint:
  a table, `critic_w.json` in the workdir, and the rows as the JSON last line."""
  # pylint: disable=import-outside-toplevel
  from wgan_jax import checkpoint_critics
  from wgan_jax.metrics import yardstick
  critic = yardstick.YardstickConfig(critic=_CRITIC.value, clip=_CRITIC_CLIP.value,
                                     updates=_CRITIC_UPDATES.value, seeds=_CRITIC_SEEDS.value)
  model = _MODEL.value
  rows = checkpoint_critics.evaluate_checkpoints(workdir, None if step is None else [step],
                                                critic, overrides, model)
  numbers = [{k: v for k, v in r.items() if isinstance(v, (int, float))} for r in rows]
  if jax.process_index() == 0:
    path = os.path.join(workdir, "critic_w.json" if model is None else
                        f"critic_w_model{model:02d}.json")
    _write_whole(path, lambda: files.write_text_atomically(path, json.dumps(rows, indent=2) + "\n"))
  print(checkpoint_critics.format_table(rows))
  print(json.dumps({CRITIC: numbers}))
  return rows


def main(parsed) -> None:
  # A signal stuck behind one long call into XLA (a compile) still ends in one line.
  watch_signals(lambda: "nothing was written")
  raise_on_signals()  # From here a signal raises StopRequested: one line below.
  try:
    _main(parsed)
  except StopRequested as e:
    for sig in startup.STOP_SIGNALS:
      signal.signal(sig, signal.SIG_IGN)  # Leaving already: one line, whatever comes next.
    written = getattr(e, "written", None)
    # The workdir's files are written whole or not at all (files.py), cache entries too.
    print(f"error: stopped by {e.reason} " + (f"after writing {written}" if written else
                                               "during the evaluation; nothing was written"),
          file=sys.stderr, flush=True)
    sys.exit(e.exit_code)


def _main(parsed) -> None:
  experiment, overrides, _ = parsed
  logging.set_verbosity(logging.ERROR)   # A tool: its output is a few lines and the files.
  try:
    names = metrics.parse(_METRICS.value)
  except ValueError as e:
    usage_error(f"--metrics={_METRICS.value}: {e}")
  if not names:
    usage_error(f"--metrics={_METRICS.value!r} names no metric; use some of {', '.join(metrics.ALL)}")
  two_sets = _SAMPLES.value is not None or _REFERENCE.value is not None
  if two_sets == (_WORKDIR.value is not None):
    usage_error("pass either --workdir=DIR (a training run) or --samples=A.npz with "
                "--reference=B.npz (two sets of images)")
  if two_sets and not (_SAMPLES.value and _REFERENCE.value):
    usage_error("--samples and --reference go together: the generated and the real images")
  if not 2 <= _NUM_SAMPLES.value <= MAX_SAMPLES:
    usage_error(f"--num_samples={_NUM_SAMPLES.value} must be in [2, {MAX_SAMPLES:,}]")
  if not 2 <= _REFERENCE_SAMPLES.value <= MAX_REFERENCE_SAMPLES:
    usage_error(f"--reference_samples={_REFERENCE_SAMPLES.value} must be in "
                f"[2, {MAX_REFERENCE_SAMPLES:,}]")
  if _BATCH.value < 1:
    usage_error(f"--batch_size={_BATCH.value} must be at least 1")
  if _TRUNCATION.value is not None and not _TRUNCATION.value > 0:
    usage_error(f"--truncation={_TRUNCATION.value} must be > 0: the threshold psi beyond which "
                "noise is drawn again (leave it out for none)")
  if _TRUNCATION.value is not None and two_sets:
    usage_error("--truncation draws a run's noise: it goes with --workdir, not --samples")

  from wgan_jax import checkpointing  # pylint: disable=import-outside-toplevel
  from wgan_jax.data import DataError  # pylint: disable=import-outside-toplevel
  from wgan_jax.metrics import inception_weights  # pylint: disable=import-outside-toplevel
  try:
    if two_sets:
      evaluate_files(names)
    elif metrics.of_family(names, "critic"):
      if len(names) > 1:
        usage_error(f"--metrics={CRITIC} runs alone: it trains a critic per checkpoint; "
                    "ask for the other metrics in another call")
      evaluate_critic(_WORKDIR.value, _STEP.value, overrides)
    else:
      evaluate_run(_WORKDIR.value, _STEP.value, names, experiment, overrides)
  except (ValueError, configs.ConfigError, checkpointing.CheckpointError,
          inception_weights.WeightsError, DataError) as e:
    usage_error(str(e))
  except OSError as e:
    print(f"error: {e.strerror or e}: {e.filename or ''}; nothing was written", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(default=None))
