"""XLA:CPU's convolutions for wgan_jax, chosen before JAX starts its backend.

jaxlib 0.10 and 0.11 hand convolutions on CPU to YNNPACK. On the DCGAN
shapes XLA's own (Eigen) convolutions are ~1.4x faster there (BUILD.md,
Benchmark), so `configure` turns YNNPACK's convolutions off and leaves its
matmuls on. It only touches the `XLA_FLAGS` environment variable, which JAX
reads once, when its first backend starts: importing `wgan_jax` before any
JAX computation is enough. GPUs and TPUs ignore the flag.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
from typing import MutableMapping

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
_SETTING = FLAG.split("=", 1)[0]
# XLA aborts on a flag it does not know: only jaxlib releases known to have it.
_JAXLIB_WITH_FLAG = ((0, 10), (0, 12))


def _jaxlib_version() -> tuple[int, int] | None:
  try:
    major, minor = importlib.metadata.version("jaxlib").split(".")[:2]
    return int(major), int(minor)
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return None


def _backends_started() -> bool:
  bridge = sys.modules.get("jax._src.xla_bridge")
  try:
    return bool(bridge and bridge.backends_are_initialized())
  except AttributeError:
    return False


def configure(environ: MutableMapping[str, str] = os.environ,
              jaxlib_version: tuple[int, int] | None = None) -> bool:
  """Appends `FLAG` to `XLA_FLAGS`; returns whether it did. Leaves them alone
  when they already choose YNNPACK's fusions (the user's setting wins), when
  jaxlib is not a release known to accept the flag, or when JAX's backends
  have started (too late to matter)."""
  version = jaxlib_version or _jaxlib_version()
  flags = environ.get("XLA_FLAGS", "")
  if (_SETTING in flags or version is None
      or not _JAXLIB_WITH_FLAG[0] <= version < _JAXLIB_WITH_FLAG[1] or _backends_started()):
    return False
  environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
  return True


# LLVM's optimisation of the generated code: off in a process that compiles programs
# only to read their memory analysis (buffer assignment comes before code generation,
# so the figures are the same; the compiles take half the time).
NO_CODE_OPTIMISATION = "--xla_backend_optimization_level=0"


def without_code_optimisation(environ: MutableMapping[str, str] = os.environ) -> bool:
  """Appends `NO_CODE_OPTIMISATION` to `XLA_FLAGS` unless they set the level already
  or JAX's backends have started; returns whether it did."""
  flags = environ.get("XLA_FLAGS", "")
  if NO_CODE_OPTIMISATION.split("=", 1)[0] in flags or _backends_started():
    return False
  environ["XLA_FLAGS"] = f"{flags} {NO_CODE_OPTIMISATION}".strip()
  return True
