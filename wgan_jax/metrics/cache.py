"""Where computed-once files live (converted weights, reference statistics,
trained classifiers): `$WGAN_JAX_CACHE`, else `~/.cache/wgan_jax`. Files are
`.npz` of plain arrays (no pickles), written atomically so a killed process
never leaves half a file under the final name."""
from __future__ import annotations

import os
import zipfile

import numpy as np

from wgan_jax import files

ENV = "WGAN_JAX_CACHE"


def cache_dir(*parts: str) -> str:
  """The cache folder (or a sub-folder of it), created if needed."""
  root = os.environ.get(ENV) or os.path.join(os.path.expanduser("~"), ".cache", "wgan_jax")
  path = os.path.join(root, *parts)
  os.makedirs(path, exist_ok=True)
  return path


def save_arrays(path: str, arrays: dict[str, np.ndarray]) -> None:
  files.write_atomically(path, lambda f: np.savez(f, **arrays), unique=True)


def load_arrays(path: str) -> dict[str, np.ndarray] | None:
  """The arrays saved at `path`, or None if there are none or they do not read back."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
    return None
