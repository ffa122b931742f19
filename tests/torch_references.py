"""pytorch-fid's and torch-fidelity's Inception networks, for the cross-checks.

PyTorch, pytorch-fid and torch-fidelity are test-only (BUILD.md: installing
them). torchvision comes without its dependencies: the wheels served here are
CUDA builds whose compiled detection ops do not load beside the CPU build of
PyTorch, and torchvision's import registers fake kernels for those ops. The
Inception blocks pytorch-fid builds on are plain Python, so the import skips
only that registration module; nothing the networks run is replaced.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from flax import traverse_util


def import_torch():
  return pytest.importorskip("torch", reason="PyTorch is not installed (tests/install_references.sh)")


def _import_torchvision():
  try:
    import torchvision  # pylint: disable=import-outside-toplevel
  except RuntimeError:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
      del sys.modules[name]
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations")
    import torchvision  # pylint: disable=import-outside-toplevel
  return torchvision


def _reference(what: str, load):
  """`load()` of a reference implementation, or the test is skipped with the reason."""
  import_torch()
  try:
    _import_torchvision()
    return load()
  except ImportError as e:
    pytest.skip(f"{what} is not importable ({e}); tests/install_references.sh installs it")


def import_pytorch_fid():
  """(pytorch_fid.inception, pytorch_fid.fid_score), or the test is skipped."""
  def load():
    from pytorch_fid import fid_score, inception  # pylint: disable=import-outside-toplevel
    return inception, fid_score
  return _reference("pytorch-fid", load)


def import_torch_fidelity_inception():
  """torch-fidelity's FeatureExtractorInceptionV3 class, or the test is skipped."""
  def load():
    from torch_fidelity import feature_extractor_inceptionv3 as fe  # pylint: disable=import-outside-toplevel
    return fe.FeatureExtractorInceptionV3
  return _reference("torch-fidelity", load)


def to_torch_state_dict(variables) -> dict:
  """The Flax network's variables as the PyTorch state dict they were read from."""
  torch = import_torch()
  state = {}
  for path, value in traverse_util.flatten_dict(variables).items():
    collection, *module, leaf = path
    name = ".".join(module)
    value = np.array(value, np.float32)
    if collection == "batch_stats":
      state[f"{name}.running_{leaf}"] = value
      if leaf == "mean":
        state[f"{name}.num_batches_tracked"] = np.array(0, np.int64)
    elif leaf == "kernel":
      state[f"{name}.weight"] = value.T if value.ndim == 2 else value.transpose(3, 2, 0, 1)
    else:
      state[f"{name}.{'weight' if leaf == 'scale' else 'bias'}"] = value
  return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sorted(state.items())}
