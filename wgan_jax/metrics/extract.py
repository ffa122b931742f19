"""Evaluation passes over many images, data parallel over every device.

A `FeaturePass` compiles `fn(constants, batch) -> outputs` once, with the
constants (network weights, a generator) replicated and each batch split
along the mesh's `data` axis, and runs it over host batches: uint8 images of a
data set or an .npz, or noise that the same program turns into images. Every
process passes the same batches (each device takes its rows), so the outputs
on the host are the same everywhere.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable, Iterator

import jax
from jax.experimental import multihost_utils
import numpy as np

from wgan_jax import placement, progress

PyTree = Any


class ExtractionProgress:
  """`what: done/total (share), rate, ETA` on stderr from process 0, at most
  every `every_s` seconds and once at the end."""

  def __init__(self, what: str, total: int, every_s: float = 5.0, stream=None):
    self.what, self.total, self.every_s = what, total, every_s
    self.stream = stream if stream is not None else sys.stderr
    self.start = self.last = time.monotonic()
    self.done = 0

  def update(self, n: int) -> None:
    self.done += n
    now = time.monotonic()
    if (now - self.last >= self.every_s or self.done >= self.total) and jax.process_index() == 0:
      self.last = now
      rate = self.done / max(now - self.start, 1e-9)
      eta = (self.total - self.done) / rate if rate > 0 else float("inf")
      print(f"{self.what}: {self.done:,}/{self.total:,} ({100 * self.done / self.total:.1f}%), "
            f"{rate:,.1f}/s, ETA {progress.duration(eta)}", file=self.stream, flush=True)


def batches_of(array: np.ndarray, batch: int) -> Iterator[np.ndarray]:
  for start in range(0, len(array), batch):
    yield array[start:start + batch]


def _to_host(x: jax.Array) -> np.ndarray:
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


class FeaturePass:
  """`fn` over batches of `batch_size` rows (a multiple of the device count),
  the last one filled up with its own first rows and cut back."""

  def __init__(self, fn: Callable[[PyTree, jax.Array], Any], constants: PyTree,
               batch_size: int, mesh: jax.sharding.Mesh | None = None):
    self.mesh = mesh if mesh is not None else placement.make_mesh()
    placement.check_batch_divisible(batch_size, self.mesh)
    self.batch_size = batch_size
    self._batch = placement.batch_sharding(self.mesh)
    self._constants = placement.replicate(constants, self.mesh)
    self.program = jax.jit(fn, in_shardings=(placement.replicated_sharding(self.mesh),
                                             self._batch), out_shardings=self._batch)

  def _put(self, batch: np.ndarray) -> jax.Array:
    return jax.make_array_from_callback(batch.shape, self._batch, lambda index: batch[index])

  def run(self, batches: Iterable[np.ndarray], total: int, what: str,
          constants: PyTree | None = None) -> list[np.ndarray]:
    """The outputs for every row of `batches` (at most `batch_size` rows each,
    `total` in all), concatenated along the batch; `constants` replaces the
    constructor's (new values, same shapes: no recompilation)."""
    if constants is not None:
      self._constants = placement.replicate(constants, self.mesh)
    progress = ExtractionProgress(what, total)
    outputs, pending = [], None
    for batch in batches:
      n = len(batch)
      if n > self.batch_size:
        raise ValueError(f"a batch of {n} rows is more than batch_size {self.batch_size}")
      full = np.resize(batch, (self.batch_size, *batch.shape[1:])) if n < self.batch_size else batch
      result = self.program(self._constants, self._put(np.ascontiguousarray(full)))
      # One batch in flight: the device computes the next while the host copies this one.
      if pending is not None:
        outputs.append(self._fetch(*pending, progress))
      pending = (result, n)
    if pending is not None:
      outputs.append(self._fetch(*pending, progress))
    if not outputs:
      raise ValueError(f"{what}: no images")
    return [np.concatenate(parts) for parts in zip(*outputs)]

  @staticmethod
  def _fetch(result, n: int, progress: ExtractionProgress) -> list[np.ndarray]:
    parts = [_to_host(x)[:n] for x in jax.tree.leaves(result)]
    progress.update(n)
    return parts
