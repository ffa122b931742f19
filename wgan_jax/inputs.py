"""Real data for the compiled iteration, by the kind of data set.

`open_data(config, devices)` checks that the data is there (before anything
is written) and returns:

- `DrawnData` for the toy sets: a `sampler` the compiled program calls; no
  host stream (`stream` gives batches of None).
- `ImageData` for image sets: `stream(step, position)` starts this process's
  tf.data pipeline at a data-stream position and hands out each generator
  iteration's uint8 stack [k, batch, H, W, C] already on the devices,
  `PREFETCH` iterations ahead (the transfer overlaps the running step).
- `SyntheticImages` (`synthetic=True`, the benchmark): one random uint8 batch.

With `data.labels` (class-conditional training) an image stream's `next`
gives the pair (images [k, batch, H, W, C] uint8, labels [k, batch] int32),
the labels laid out on the devices as the images are (split along the batch
axis); without it, the images alone, as before. Synthetic labels are uniform
in [0, classes). Each data's `num_classes` says how many classes its labels
have (0: no labels).

Streams report `position`: how far this process's data stream has been read
by the iterations handed out, what a checkpoint saves (None when the data is
a function of the step).
"""
from __future__ import annotations

import collections
from typing import Protocol

from absl import logging
import jax
import ml_collections
import numpy as np

from wgan_jax import data
from wgan_jax.configs.n_critic import n_critic_schedule
from wgan_jax.devices import Devices
from wgan_jax.data.toy import Sampler

# Iterations whose real batches are on their way to the devices ahead of use.
PREFETCH = 2


# One generator iteration's real data on the devices: the image stack, or with
# `data.labels` the pair (image stack, label stack [k, batch] int32).
Real = jax.Array | tuple[jax.Array, jax.Array]


class Stream(Protocol):
  position: int | None

  def next(self, n_critic: int) -> Real | None:
    """The real batches of the next generator iteration, on the devices: images
    [k, batch, H, W, C], or (images, labels [k, batch]) with `data.labels`."""


class _NoStream:
  """Data drawn inside the program: nothing to feed, no position to save."""
  position = None

  def next(self, n_critic: int) -> None:
    del n_critic


class DrawnData:
  """A toy set: sampled on device inside the compiled step."""

  def __init__(self, config: ml_collections.ConfigDict):
    from wgan_jax.data import toy  # pylint: disable=import-outside-toplevel
    self.dataset = toy.get_toy_dataset(config.data.name)
    self.sampler: Sampler | None = self.dataset.sample
    self.num_classes = 0

  def stream(self, step: int, position: int) -> Stream:
    del step, position
    return _NoStream()


class _ImageStream:
  """This process's iteration stacks from tf.data, prefetched to the devices.
  Images that fail to decode are skipped by the pipeline; the positions count
  them, and the stream reports how many."""

  def __init__(self, batches, devices: Devices, position: int, batch: int, where: str):
    self._batches, self._devices, self._batch, self._where = batches, devices, batch, where
    self._ahead: collections.deque[tuple[int, Real]] = collections.deque()
    self.position = position
    self.skipped = 0

  def next(self, n_critic: int) -> Real:
    while len(self._ahead) <= PREFETCH:
      position, *arrays = next(self._batches)
      # Labels [k, batch] split along the batch axis as the images [k, batch, ...] are.
      real = tuple(self._devices.put_batch(a) for a in arrays)
      self._ahead.append((int(position), real[0] if len(real) == 1 else real))
    position, real = self._ahead.popleft()
    stack = real[0] if isinstance(real, tuple) else real
    updates = stack.shape[1] if self._devices.pmap else stack.shape[0]
    if updates != n_critic:
      raise RuntimeError(f"the input pipeline stacked {stack.shape} for {n_critic} critic "
                         "updates: its schedule differs from the trainer's")
    skipped = position - self.position - n_critic * self._batch
    if skipped:
      self.skipped += skipped
      logging.warning("%s: skipped %d images that do not decode (%d so far)", self._where,
                      skipped, self.skipped)
    self.position = position
    return real


class ImageData:
  """An image set: this process's share, read by tf.data."""
  sampler: Sampler | None = None

  def __init__(self, config: ml_collections.ConfigDict, devices: Devices):
    from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
    self._images, self._config, self._devices = images, config, devices
    self._index, self._count = jax.process_index(), jax.process_count()
    # Opened now: missing data fails here, before anything is written.
    self._source = images.open_source(config.data, config.seed, self._index, self._count)
    # Classes of the labels the stream hands out (0: images alone, no `data.labels`).
    self.num_classes = self._source.num_classes
    self._batch = devices.process_batch(config.batch_size)  # This process's rows.

  def stream(self, step: int, position: int) -> Stream:
    """The stream from generator step `step` on, at data-stream `position`."""
    c = self._config
    ds = self._images.build_image_dataset(c.data, self._batch, c.seed, self._index, self._count,
                                          start=position, source=self._source)
    stacks = self._images.critic_stacks(ds, n_critic_schedule(c, step), c.n_critic)
    return _ImageStream(stacks.as_numpy_iterator(), self._devices, position, self._batch,
                        c.data.dir or c.data.name)


class _Repeated:
  """The same device-resident stack for every iteration of a given size."""
  position = None

  def __init__(self, batch: np.ndarray, labels: np.ndarray | None, devices: Devices):
    self._batch, self._labels, self._devices, self._stacks = batch, labels, devices, {}

  def _stack(self, batch: np.ndarray, n_critic: int) -> jax.Array:
    stack = np.broadcast_to(batch, (n_critic, *batch.shape))
    return self._devices.put_batch(np.ascontiguousarray(stack))

  def next(self, n_critic: int) -> Real:
    if n_critic not in self._stacks:
      stack = self._stack(self._batch, n_critic)
      if self._labels is not None:
        stack = (stack, self._stack(self._labels, n_critic))
      self._stacks[n_critic] = stack
    return self._stacks[n_critic]


class SyntheticImages:
  """Random uint8 images of the data set's shape (and with `data.labels` random
  labels of its classes): the benchmark needs no data."""
  sampler: Sampler | None = None

  def __init__(self, config: ml_collections.ConfigDict, devices: Devices):
    shape = (devices.process_batch(config.batch_size), *data.data_shape(config.data))
    rng = np.random.default_rng(0)
    self._batch = rng.integers(0, 256, shape, dtype=np.uint8)
    # An image folder's classes are counted from the folder (a DataError without one).
    classes = data.label_classes(config.data)
    self._labels = rng.integers(0, classes, shape[:1], dtype=np.int32) if classes else None
    self.num_classes = classes
    self._devices = devices

  def stream(self, step: int, position: int) -> Stream:
    del step, position
    return _Repeated(self._batch, self._labels, self._devices)


def open_data(config: ml_collections.ConfigDict, devices: Devices, synthetic: bool = False
              ) -> DrawnData | ImageData | SyntheticImages:
  """The real data of `config` for `devices` (a DataError if it is missing)."""
  if data.is_toy(config.data):
    return DrawnData(config)
  return SyntheticImages(config, devices) if synthetic else ImageData(config, devices)
