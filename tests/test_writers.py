"""Where a run's values go: TensorBoard event files written without TensorFlow,
read back by TensorBoard's own reader; a failed background write as one OSError
naming the file; the progress line's schedule, rate and time left."""
import builtins
import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from tests.conftest import ROOT
from wgan_jax import event_files, progress, writers

_WRITE = """
import json, sys
import numpy as np
from wgan_jax import writers
board = writers.TensorBoard(sys.argv[1])
board.write_hparams({"optimizer.lr": 1e-4, "experiment": "toy_8gaussians", "clip": None,
                     "augment": ["translation", "cutout"], "n_critic": np.int64(5)})
for step in (10, 20):
  board.write_scalars(step, {"train/critic_loss": -step / 10, "eval/w1": np.float32(step)})
pixels = np.arange(2 * 5 * 7 * 3, dtype=np.uint8).reshape(2, 5, 7, 3)
board.write_images(20, {"samples": pixels})
board.close()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")))
"""


def test_event_files_are_what_tensorboard_reads_and_need_no_tensorflow(tmp_path):
  done = subprocess.run([sys.executable, "-c", _WRITE, str(tmp_path)], capture_output=True,
                        text=True, cwd=ROOT, timeout=120,
                        env=dict(os.environ, PYTHONPATH=ROOT))
  assert done.returncode == 0, done.stderr[-3000:]
  assert json.loads(done.stdout.splitlines()[-1]) == []  # TensorFlow never imported
  names = [p.name for p in tmp_path.iterdir()]
  assert len(names) == 1 and names[0].startswith("events.out.tfevents.")

  board = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
  board.Reload()
  value = lambda event: tensor_util.make_ndarray(event.tensor_proto)
  loss = board.Tensors("train/critic_loss")
  assert [e.step for e in loss] == [10, 20]
  assert [float(value(e)) for e in loss] == pytest.approx([-1.0, -2.0])
  assert [float(value(e)) for e in board.Tensors("eval/w1")] == [10.0, 20.0]
  assert board.SummaryMetadata("eval/w1").plugin_data.plugin_name == "scalars"

  # Images as tf.summary.image stores them: [width, height, png, png].
  (images,) = board.Tensors("samples")
  stored = value(images)
  assert images.step == 20 and board.SummaryMetadata("samples").plugin_data.plugin_name == "images"
  assert stored[:2].tolist() == [b"7", b"5"] and len(stored) == 4
  pixels = np.arange(2 * 5 * 7 * 3, dtype=np.uint8).reshape(2, 5, 7, 3)
  for png, expected in zip(stored[2:], pixels):
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), expected)

  # Hyperparameters for the HParams tab; what is not a number or string as its text.
  metadata = board.SummaryMetadata("_hparams_/session_start_info")
  assert metadata.plugin_data.plugin_name == "hparams"
  session = plugin_data_pb2.HParamsPluginData.FromString(
      metadata.plugin_data.content).session_start_info
  assert session.hparams["optimizer.lr"].number_value == pytest.approx(1e-4)
  assert session.hparams["n_critic"].number_value == 5
  assert session.hparams["experiment"].string_value == "toy_8gaussians"
  assert session.hparams["augment"].string_value == "['translation', 'cutout']"
  assert session.hparams["clip"].string_value == "None"


def test_a_background_write_that_fails_is_an_oserror_naming_the_event_file(tmp_path,
                                                                             monkeypatch):
  """A full disk under TensorBoard's file: the loop's next call raises the write's
  own error with the path, as the one-line report needs (not a wrapper of it)."""
  monkeypatch.setattr(event_files, "open",
                      lambda path, mode: builtins.open("/dev/full", mode),
                      raising=False)
  board = writers.TensorBoard(str(tmp_path))
  with pytest.raises(OSError) as raised:
    board.write_scalars(1, {"train/critic_loss": 1.0})
    board.flush()
  assert raised.value.errno == 28 and raised.value.filename == board._events.path  # pylint: disable=protected-access
  assert raised.value.filename.startswith(str(tmp_path / "events.out.tfevents."))


class _Recorder(writers.MetricWriter):
  def __init__(self):
    self.scalars = []

  def write_scalars(self, step, scalars):
    self.scalars.append((step, dict(scalars)))


def test_progress_reports_every_interval_each_minute_and_at_the_last():
  now = [0.0]
  recorder = _Recorder()
  report = progress.Progress(total=100, every=10, writer=recorder, clock=lambda: now[0])
  lines = {}
  for done in range(1, 101):
    now[0] += 30.0 if done == 1 else (70.0 if done == 35 else 0.5)  # the first: the compile
    line = report(done)
    if line:
      lines[done] = line
  # Iteration 1 starts the clock; 35 comes over a minute after 30; 100 is the last.
  assert list(lines) == [10, 20, 30, 35, 40, 50, 60, 70, 80, 90, 100]
  assert lines[10] == "generator iteration 10 of 100 (10%), 2 a second, 45 s left"
  assert lines[35] == "generator iteration 35 of 100 (35%), 0.0694 a second, 15 min 36 s left"
  assert lines[100] == "generator iteration 100 of 100 (100%), 2 a second"
  assert [s for s, _ in recorder.scalars] == list(lines)
  assert recorder.scalars[0][1] == {"steps_per_sec": pytest.approx(2.0)}
  assert progress.RATE_KEY in writers.PROGRESS_KEYS  # the console leaves it to this line


@pytest.mark.parametrize("seconds,said", [(0.4, "0 s"), (59, "59 s"), (250, "4 min 10 s"),
                                          (7500, "2 h 05 min"), (3 * 86400 + 7 * 3600, "3 d 07 h"),
                                          (float("inf"), "?")])
def test_durations_read_as_a_person_says_them(seconds, said):
  assert progress.duration(seconds) == said
