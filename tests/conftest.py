"""Test set-up: 8 fake CPU devices and quiet, deterministic JAX, set before JAX starts."""
import hashlib
import importlib.metadata
import io
import os
import sys
import tempfile


# Not wgan_jax.xla_cpu's reader of the version: importing wgan_jax sets XLA_FLAGS,
# which this file must set first.
def _jaxlib_minor() -> tuple[int, int]:
  major, minor = importlib.metadata.version("jaxlib").split(".")[:2]
  return int(major), int(minor)


def xla_flags(devices: int) -> str:
  """`XLA_FLAGS` for a test process with `devices` fake CPU devices. LLVM's
  optimisation is off: the tests compile hundreds of small programs and run
  each a few times, so the compile is most of their time and optimised code
  buys none of it back (BUILD.md, "Tests"). A collective's threads on 2 cores
  that other test processes keep busy can take longer to meet than XLA:CPU waits
  before it aborts the process: the wait is 10 minutes (a test that truly hangs
  ends by its own timeout), where jaxlib is known to have the flag (XLA aborts
  on one it does not know)."""
  flags = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
  if (0, 10) <= _jaxlib_minor() < (0, 12):
    flags += " --xla_cpu_collective_call_terminate_timeout_seconds=600"
  return flags


os.environ.setdefault("XLA_FLAGS", xla_flags(8))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Computed-once files (the digit classifier, converted weights) go to a folder of
# this test run, shared by its pytest-xdist workers and the processes the tests
# start; no user's weights. The files are written atomically, so two workers
# computing one at the same time is waste, not damage.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
  os.environ["WGAN_JAX_CACHE"] = os.path.join(tempfile.gettempdir(), f"wgan_jax_test_cache_{_RUN}")
  os.makedirs(os.environ["WGAN_JAX_CACHE"], exist_ok=True)
else:
  os.environ["WGAN_JAX_CACHE"] = tempfile.mkdtemp(prefix="wgan_jax_test_cache_")
os.environ.pop("WGAN_JAX_INCEPTION_WEIGHTS", None)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


# --- Tiny image data sets written by the tests (real JPEG/PNG/WebP bytes). ---

import lmdb  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
from PIL import Image  # pylint: disable=g-import-not-at-top,wrong-import-position

LSUN_SIZES = [(60, 80), (90, 60), (60, 80), (90, 60), (64, 64), (70, 100)]  # (h, w)


def picture(h: int, w: int, i: int) -> np.ndarray:
  """A gradient that differs from image to image."""
  y, x = np.mgrid[0:h, 0:w]
  rgb = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, (37 * i) % 256)], axis=-1)
  return rgb.astype(np.uint8)


def encode(array: np.ndarray, fmt: str) -> bytes:
  out = io.BytesIO()
  Image.fromarray(array).save(out, fmt)
  return out.getvalue()


@pytest.fixture(scope="session")
def lsun_root(tmp_path_factory) -> str:
  """A parent folder holding bedroom_train_lmdb: 5 JPEGs and 1 WebP under sha1 keys."""
  root = tmp_path_factory.mktemp("lsun")
  env = lmdb.open(str(root / "bedroom_train_lmdb"), map_size=1 << 24)
  with env.begin(write=True) as txn:
    for i, (h, w) in enumerate(LSUN_SIZES):
      key = hashlib.sha1(str(i).encode()).hexdigest().encode()
      txn.put(key, encode(picture(h, w, i), "WEBP" if i == 5 else "JPEG"))
  env.close()
  return str(root)


# Processes a test started (its module appends them): killed when the test ends,
# however it ends, so a test that fails half-way leaves nothing running.
STARTED: list = []


@pytest.fixture(autouse=True)
def no_process_left_behind():
  yield
  while STARTED:
    proc = STARTED.pop()
    if proc.poll() is None:
      proc.kill()
      proc.communicate()


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory) -> str:
  """A PyTorch file of the FID Inception's state dict with random weights."""
  # pylint: disable=import-outside-toplevel
  from tests import torch_references as refs
  from wgan_jax.metrics import inception
  torch = refs.import_torch()
  path = str(tmp_path_factory.mktemp("weights") / "random_inception.pth")
  torch.save(refs.to_torch_state_dict(inception.random_variables(0)), path)
  return path
