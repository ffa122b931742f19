"""The FID Inception's weights: pytorch-fid's file, read safely, checked,
converted once to a cached array file.

The user provides `pt_inception-2015-12-05-6726825d.pth` (README: where to get
it) by `--inception_weights=PATH` or `$WGAN_JAX_INCEPTION_WEIGHTS`. It is read
with `torch_state` (no pickled code runs), every tensor is checked against the
network's shapes, and the converted variables are cached under the file's
SHA-256, which every report names: numbers from other weights are not FID.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os

import jax
import numpy as np
from flax import traverse_util

from wgan_jax.metrics import cache, inception, torch_state

ENV = "WGAN_JAX_INCEPTION_WEIGHTS"
FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FILE_NAME)
# The SHA-256 of the FID weights (torch.hub names the file by its first 8 hex
# digits), as torch-fidelity publishes it for its copy of the same weights
# (95,628,359 bytes). Only a file with this digest is reported as the official one.
OFFICIAL_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
HOW_TO_GET = (f"download {URL} and pass --inception_weights=PATH or set ${ENV} (README: "
              "Evaluation)")


class WeightsError(ValueError):
  """Missing or wrong weights: one line naming the path and what to do."""


@dataclasses.dataclass(frozen=True)
class InceptionWeights:
  variables: dict
  path: str
  sha256: str

  @property
  def official(self) -> bool:
    return self.sha256 == OFFICIAL_SHA256

  def describe(self) -> str:
    kind = "pytorch-fid's weights" if self.official else "NOT the official FID weights"
    return f"{os.path.basename(self.path)} (sha256 {self.sha256[:12]}, {kind})"


def resolve(path: str | None) -> str | None:
  """The weights file named by the flag, else by the environment, else None."""
  return path or os.environ.get(ENV) or None


def located(path: str | None) -> str:
  """The weights file `resolve` names, or a WeightsError if none is named or
  none is there: the checks that cost nothing, for a command to make first."""
  path = resolve(path)
  if path is None:
    raise WeightsError(f"FID needs the Inception weights: {HOW_TO_GET}")
  if not os.path.isfile(path):
    raise WeightsError(f"no Inception weights file at {path}; {HOW_TO_GET}")
  return path


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


@functools.cache  # The network traced once (a load checks it twice).
def _expected() -> dict[str, tuple[int, ...]]:
  return {"/".join(k): tuple(v.shape) for k, v in
          traverse_util.flatten_dict(inception.variable_shapes()).items()}


def max_bytes() -> int:
  """The most storage bytes a weights file may make the reader take: the
  network's tensors in float64 (pytorch-fid's file holds them in float32,
  95 MB), and a little for the batch norms' step counters."""
  return 8 * sum(int(np.prod(shape)) for shape in _expected().values()) + (1 << 20)


def convert(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """PyTorch names and layouts -> the Flax network's flat variables
  ("params/Mixed_5b/branch1x1/conv/kernel", ...); batch-norm step counters dropped."""
  out = {}
  for name, value in state.items():
    *module, leaf = name.split(".")
    path = "/".join(module)
    kind = module[-1] if module else ""
    if leaf == "num_batches_tracked":
      continue
    if kind == "conv" and leaf == "weight" and value.ndim == 4:
      out[f"params/{path}/kernel"] = value.transpose(2, 3, 1, 0)      # OIHW -> HWIO
    elif kind == "bn" and leaf in ("weight", "bias"):
      out[f"params/{path}/{'scale' if leaf == 'weight' else 'bias'}"] = value
    elif kind == "bn" and leaf in ("running_mean", "running_var"):
      out[f"batch_stats/{path}/{leaf[len('running_'):]}"] = value
    elif path == "fc" and leaf == "weight" and value.ndim == 2:
      out["params/fc/kernel"] = value.T
    elif path == "fc" and leaf == "bias":
      out["params/fc/bias"] = value
    else:
      out[f"unexpected/{name}"] = value
  return out


def check(flat: dict[str, np.ndarray], path: str) -> None:
  """WeightsError unless `flat` holds exactly the network's variables, in float, of their shapes."""
  expected = _expected()
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  wrong = sorted(k for k in set(expected) & set(flat) if tuple(flat[k].shape) != expected[k])
  if missing or unexpected or wrong:
    examples = (missing + unexpected + wrong)[:2]
    raise WeightsError(
        f"{path} is not the FID Inception's state dict ({len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors, e.g. "
        f"{', '.join(examples)}); {HOW_TO_GET}")
  if any(not np.issubdtype(v.dtype, np.floating) for v in flat.values()):
    raise WeightsError(f"{path} holds non-float tensors where the Inception's weights go; "
                       f"{HOW_TO_GET}")


def load(path: str | None) -> InceptionWeights:
  """The weights at `path` (flag value or None for `$WGAN_JAX_INCEPTION_WEIGHTS`),
  from the cache when this file was converted before."""
  path = located(path)
  try:
    sha256 = _sha256(path)
  except OSError as e:
    raise WeightsError(f"cannot read {path} ({e.strerror}); {HOW_TO_GET}") from None
  cached = os.path.join(cache.cache_dir("inception"), f"{sha256}.npz")
  flat = cache.load_arrays(cached)
  if flat is not None:
    try:
      check(flat, cached)
    except WeightsError:
      flat = None
  if flat is None:
    try:
      # Names and shapes are checked as the file declares them, before any
      # tensor is read: a crafted file is refused before it costs memory.
      state = torch_state.load_state_dict(path, max_bytes(),
                                          check=lambda declared: check(convert(declared), path))
    except torch_state.TorchStateError as e:
      raise WeightsError(f"{path}: {e}; {HOW_TO_GET}") from None
    flat = convert(state)
    check(flat, path)
    flat = {k: np.asarray(v, np.float32) for k, v in flat.items()}
    if jax.process_index() == 0:
      cache.save_arrays(cached, flat)
  variables = traverse_util.unflatten_dict({tuple(k.split("/")): jax.numpy.asarray(v)
                                            for k, v in flat.items()})
  return InceptionWeights(variables, os.path.abspath(path), sha256)
