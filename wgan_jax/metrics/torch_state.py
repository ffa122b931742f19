"""Reads a PyTorch state dict file (`.pth`) into numpy arrays without
executing pickled code and without PyTorch.

Both layouts `torch.save` writes are read: the zip archive (PyTorch >= 1.6:
`archive/data.pkl` plus one file per storage) and the legacy stream (pickled
header, pickled object, the storage keys, then each storage's bytes), which
is what pytorch-fid's weights file of 2019 uses. The unpickler rebuilds only
dicts and tensors: any other global in the pickle (which is how a malicious
file would run code) is refused with `TorchStateError`.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> the dtype of its elements.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchStateError(ValueError):
  """The file is not a state dict this reader rebuilds (or is damaged)."""


class _StorageType:
  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


class _Storage:
  """A storage's bytes, read when a tensor needs them."""

  def __init__(self, dtype: np.dtype, load):
    self.dtype, self._load, self._array = dtype, load, None

  @property
  def array(self) -> np.ndarray:
    if self._array is None:
      self._array = self._load()
    return self._array


class _Tensor:
  """A tensor as the pickle describes it; its values are cut from the storage
  once every storage is read (the legacy layout stores them after the pickle)."""

  def __init__(self, storage: _Storage, offset: int, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def value(self) -> np.ndarray:
    flat, offset, size, stride = self.storage.array, self.offset, self.size, self.stride
    end = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset
    if offset < 0 or end > flat.size or any(s < 0 for s in stride):
      raise TorchStateError(f"a tensor of size {size} reaches past its storage "
                            f"({flat.size} elements): the file is damaged")
    item = flat.itemsize
    return np.array(np.lib.stride_tricks.as_strided(
        flat[offset:], size, tuple(s * item for s in stride), writeable=False))


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *_) -> _Tensor:
  if not isinstance(storage, _Storage):
    raise TorchStateError("a tensor without a storage: the file is damaged")
  return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data: _Tensor, *_) -> _Tensor:
  return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
  def __init__(self, file: BinaryIO, storage):
    super().__init__(file)
    self._storage = storage

  def find_class(self, module: str, name: str):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise TorchStateError(f"the file's pickle asks for {module}.{name}, which a state dict "
                            "of tensors never holds; refusing to load it") from None

  def persistent_load(self, pid):
    return self._storage(pid)


def _dtype_of(storage_type: Any, pid) -> np.dtype:
  if not isinstance(storage_type, _StorageType):
    raise TorchStateError(f"unsupported storage in the file: {pid!r}")
  return storage_type.dtype


def _read_zip(archive: zipfile.ZipFile) -> Any:
  pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
  if len(pickles) != 1:
    raise TorchStateError("a zip file without exactly one data.pkl is not a PyTorch checkpoint")
  prefix = pickles[0][:-len("data.pkl")]
  byteorder = "little"
  if prefix + "byteorder" in archive.namelist():
    byteorder = archive.read(prefix + "byteorder").decode().strip()
  storages: dict[str, _Storage] = {}

  def storage(pid):
    # ("storage", storage type, key, location, numel)
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise TorchStateError(f"unsupported persistent id in the file: {pid!r}")
    _, storage_type, key, _, numel = pid
    dtype = _dtype_of(storage_type, pid).newbyteorder("<" if byteorder == "little" else ">")
    if key not in storages:
      def load(key=key, dtype=dtype, numel=numel):
        raw = archive.read(f"{prefix}data/{key}")
        if len(raw) < numel * dtype.itemsize:
          raise TorchStateError(f"storage {key} is truncated: the file is damaged")
        return np.frombuffer(raw, dtype, numel).astype(dtype.newbyteorder("="))
      storages[key] = _Storage(dtype, load)
    return storages[key]

  with archive.open(pickles[0]) as f:
    return _Unpickler(io.BytesIO(f.read()), storage).load()


def _read_legacy(f: BinaryIO) -> Any:
  def plain_load():
    return _Unpickler(f, lambda pid: (_ for _ in ()).throw(
        TorchStateError(f"unexpected persistent id {pid!r}"))).load()

  if plain_load() != _LEGACY_MAGIC:
    raise TorchStateError("not a PyTorch file (no zip archive, no legacy magic number)")
  if plain_load() != _LEGACY_PROTOCOL:
    raise TorchStateError("unsupported legacy PyTorch protocol version")
  sys_info = plain_load()
  little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
  storages: dict[str, _Storage] = {}

  def storage(pid):
    # ("storage", storage type, key, location, numel, view metadata)
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
      raise TorchStateError(f"unsupported persistent id in the file: {pid!r}")
    _, storage_type, key, _, _, view = pid
    if view is not None:
      raise TorchStateError("storage views (files of PyTorch < 0.4) are not supported")
    if key not in storages:
      storages[key] = _Storage(_dtype_of(storage_type, pid), None)
    return storages[key]

  result = _Unpickler(f, storage).load()
  keys = plain_load()
  for key in keys:
    if key not in storages:
      raise TorchStateError(f"storage {key} is listed but never used: the file is damaged")
    s = storages[key]
    dtype = s.dtype.newbyteorder("<" if little else ">")
    header = f.read(8)
    if len(header) != 8:
      raise TorchStateError(f"storage {key} is missing: the file is truncated")
    (numel,) = struct.unpack("<q" if little else ">q", header)
    raw = f.read(numel * dtype.itemsize)
    if len(raw) != numel * dtype.itemsize:
      raise TorchStateError(f"storage {key} is truncated: the file is damaged")
    array = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))
    s._load = lambda array=array: array  # pylint: disable=protected-access
  return result


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch state dict file as numpy arrays, by name."""
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:
        state = _read_zip(archive)
        state = _materialise(state)
    else:
      with open(path, "rb") as f:
        state = _materialise(_read_legacy(f))
  except TorchStateError:
    raise
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
          KeyError, AttributeError, IndexError) as e:
    raise TorchStateError(f"cannot be read as a PyTorch state dict ({type(e).__name__}: {e})"
                          ) from None
  return state


def _materialise(state: Any) -> dict[str, np.ndarray]:
  if not isinstance(state, dict):
    raise TorchStateError(f"holds a {type(state).__name__}, not a state dict")
  for name, value in state.items():
    if not isinstance(name, str) or not isinstance(value, _Tensor):
      raise TorchStateError(f"entry {name!r} is a {type(value).__name__}, not a tensor")
  return {name: value.value() for name, value in state.items()}
