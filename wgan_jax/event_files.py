"""TensorBoard event files, written without TensorFlow.

One `EventFile` is one TensorBoard run: scalars, images and hyperparameters as
`tf.summary` writes them (tensor summaries with the scalars, images and hparams
plugins' metadata, in a TFRecord file named as TensorFlow names it), so
TensorBoard and its `EventAccumulator` read them alike. The records and protos
come from the `tensorboard` package, which needs no TensorFlow: a toy run's
process starts without importing it (about 5 s a process on a CPU), and JAX's
accelerator images, which ship no TensorFlow, can write a run's logs.
"""
from __future__ import annotations

import io
import itertools
import os
import socket
import time
from typing import Any, Mapping

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

# Files opened by this process: a second run in the same second gets its own name.
_OPENED = itertools.count()


def png(image: np.ndarray) -> bytes:
  """A [H, W, C] uint8 image (C = 1, 3 or 4) as PNG bytes."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  image = np.asarray(image)
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
  return buffer.getvalue()


class EventFile:
  """A TensorBoard run in `logdir`: `events.out.tfevents.<time>.<host>.<pid>.<n>.v2`."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_OPENED)}.v2")
    self.path = os.path.join(logdir, name)
    self._file = open(self.path, "wb")  # pylint: disable=consider-using-with
    self._records = RecordWriter(self._file)
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())

  def _summary(self, step: int, summary: summary_pb2.Summary) -> None:
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Each value as a float32 scalar tensor (`tf.summary.scalar`)."""
    summary = summary_pb2.Summary()
    for tag, value in scalars.items():
      summary.value.add(tag=tag, metadata=scalar_metadata.create_summary_metadata("", ""),
                        tensor=tensor_util.make_tensor_proto(np.float32(value)))
    self._summary(step, summary)

  def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Each uint8 [N, H, W, C] (or [H, W, C]) batch as PNGs (`tf.summary.image`):
    the tensor [width, height, png, ...]."""
    summary = summary_pb2.Summary()
    for tag, batch in images.items():
      batch = np.asarray(batch)
      batch = batch[None] if batch.ndim == 3 else batch
      height, width = batch.shape[1:3]
      encoded = [str(width).encode(), str(height).encode(), *(png(image) for image in batch)]
      summary.value.add(
          tag=tag, metadata=image_metadata.create_summary_metadata("", ""),
          tensor=tensor_util.make_tensor_proto(np.array(encoded, dtype=object)))
    self._summary(step, summary)

  def hparams(self, hparams: Mapping[str, Any]) -> None:
    """The run's settings for TensorBoard's HParams tab (strings, numbers, booleans)."""
    values = {}
    for key, value in hparams.items():
      value = value.item() if isinstance(value, np.generic) else value
      values[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    self._summary(0, hparams_summary.hparams_pb(values))

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    self._records.close()
