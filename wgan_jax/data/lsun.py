"""LSUN scenes from the official LMDB export (e.g. `bedroom_train_lmdb`).

tfds's `lsun/bedroom` needs tensorflow-io, which does not support current TF,
so the LMDB is read directly: values are encoded images (JPEG or WebP) keyed
by image id. The sorted key list is read once and kept in memory (about 40
bytes a key: 120 MB for the 3 million bedrooms); tf.data then runs over key
indices and looks each value up through one read-only environment per process.
"""
from __future__ import annotations

import os
import threading

import lmdb
import numpy as np

_ENVS: dict[str, lmdb.Environment] = {}
_ENVS_LOCK = threading.Lock()


def find_lmdb(root: str, scene: str = "bedroom", split: str = "train") -> str | None:
  """The LMDB directory under `root` (the export itself or its parent), or None."""
  root = os.path.abspath(os.path.expanduser(root))
  split = "val" if split in ("val", "validation") else split
  for candidate in (root, os.path.join(root, f"{scene}_{split}_lmdb")):
    if os.path.isfile(os.path.join(candidate, "data.mdb")):
      return candidate
  return None


def _env(path: str) -> lmdb.Environment:
  # LMDB forbids opening one file twice in a process: share one environment.
  with _ENVS_LOCK:
    env = _ENVS.get(path)
    if env is None:
      env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False,
                      max_readers=512)
      _ENVS[path] = env
    return env


def read_keys(path: str) -> np.ndarray:
  """All keys of the LMDB at `path`, sorted, as a 1-D bytes array."""
  with _env(path).begin(buffers=False) as txn:
    keys = list(txn.cursor().iternext(keys=True, values=False))
  keys.sort()
  # Fixed-width "S" arrays drop trailing NUL bytes: keep such keys as objects.
  if any(k.endswith(b"\0") for k in keys):
    return np.array(keys, dtype=object)
  return np.array(keys, dtype=bytes) if keys else np.array([], dtype=object)


class LmdbReader:
  """`reader(i)` -> the value of the i-th key of `keys` (bytes), for tf.numpy_function."""

  def __init__(self, path: str, keys: np.ndarray):
    self.path = path
    self.keys = keys

  def __call__(self, index: np.ndarray) -> bytes:
    key = self.keys[int(index)]
    with _env(self.path).begin(buffers=False) as txn:
      value = txn.get(key)
    if value is None:
      raise KeyError(f"LMDB {self.path} has no value for key {key!r}")
    return value
