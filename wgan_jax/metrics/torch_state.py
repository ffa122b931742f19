"""Reads a PyTorch state dict file (`.pth`) into numpy arrays without
executing pickled code and without PyTorch.

Both layouts `torch.save` writes are read: the zip archive (PyTorch >= 1.6:
`archive/data.pkl` plus one file per storage) and the legacy stream (pickled
header, pickled object, the storage keys, then each storage's bytes), which
is what pytorch-fid's weights file of 2019 uses. The unpickler rebuilds only
dicts and tensors: any other global in the pickle (which is how a malicious
file would run code) is refused with `TorchStateError`. Every object it hands
the pickle is made for this one load and takes no attributes.

Nothing is read before it is bounded: the pickle first (at most
`MAX_PICKLE_BYTES`), which declares every tensor and storage; the storages
together may declare at most `max_bytes`, and a caller's `check` sees the
declared names, shapes and dtypes before a single storage byte is read (or, in
a zip, decompressed). A crafted file cannot make the reader allocate more than
`max_bytes`, nor what the file does not hold.
"""
from __future__ import annotations

import collections
import contextlib
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Callable

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# Far above any network a metric uses (pytorch-fid's Inception: 95 MB).
MAX_BYTES = 1 << 30
# A state dict's pickle names its tensors (pytorch-fid's: 40 kB); a zip's data.pkl
# is refused above this before it is decompressed.
MAX_PICKLE_BYTES = 1 << 26

# torch.<Name>Storage -> the dtype of its elements.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchStateError(ValueError):
  """The file is not a state dict this reader rebuilds (or is damaged)."""


class _StorageType:
  __slots__ = ("dtype",)

  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


class _Storage:
  """A storage's elements, read when a tensor needs them."""
  __slots__ = ("dtype", "numel", "load", "_array")

  def __init__(self, dtype: np.dtype, numel: int, load: Callable[[], np.ndarray] | None):
    self.dtype, self.numel, self.load, self._array = dtype, numel, load, None

  @property
  def array(self) -> np.ndarray:
    if self._array is None:
      if self.load is None:
        raise TorchStateError("a storage's bytes are missing: the file is damaged")
      self._array = self.load()
    return self._array


class _Tensor:
  """A tensor as the pickle describes it; its values are cut from the storage
  once every storage is read (the legacy layout stores them after the pickle)."""
  __slots__ = ("storage", "offset", "size", "stride")

  def __init__(self, storage: _Storage, offset: int, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def _check(self, max_bytes: int) -> None:
    offset, size, stride = self.offset, self.size, self.stride
    if not all(isinstance(v, int) for v in (offset, *size, *stride)) or len(size) != len(stride):
      raise TorchStateError(f"a tensor of size {size} and stride {stride}: the file is damaged")
    if any(n < 0 for n in size) or any(s < 0 for s in stride) or offset < 0:
      raise TorchStateError(f"a tensor of size {size} and stride {stride}: the file is damaged")
    if int(np.prod(size, dtype=object)) * self.storage.dtype.itemsize > max_bytes:
      raise TorchStateError(f"a tensor of size {size} is larger than {max_bytes} bytes")

  def placeholder(self, max_bytes: int) -> np.ndarray:
    """An array of the declared shape and dtype that holds no memory (all strides
    0) and reads nothing: what a `check` of the names and shapes looks at."""
    self._check(max_bytes)
    return np.broadcast_to(np.zeros((), self.storage.dtype.newbyteorder("=")), self.size)

  def value(self, max_bytes: int) -> np.ndarray:
    self._check(max_bytes)
    offset, size, stride = self.offset, self.size, self.stride
    flat = self.storage.array
    end = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset
    if end > flat.size:
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


class _Unpickler(pickle.Unpickler):
  """Globals limited to dicts, tensors and storage types, each made for this
  load (a BUILD opcode cannot change what the next load sees)."""

  def __init__(self, file: BinaryIO, storage: Callable[[Any], _Storage]):
    super().__init__(file)
    self._storage = storage

  def find_class(self, module: str, name: str):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
      return lambda *args: _rebuild_tensor(*args)  # pylint: disable=unnecessary-lambda
    if (module, name) == ("torch._utils", "_rebuild_parameter"):
      return lambda *args: _rebuild_parameter(*args)  # pylint: disable=unnecessary-lambda
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(_STORAGE_DTYPES[name])
    raise TorchStateError(f"the file's pickle asks for {module}.{name}, which a state dict "
                          "of tensors never holds; refusing to load it")

  def persistent_load(self, pid):
    return self._storage(pid)


def _dtype_of(storage_type: Any, pid) -> np.dtype:
  if not isinstance(storage_type, _StorageType):
    raise TorchStateError(f"unsupported storage in the file: {pid!r}")
  return storage_type.dtype


def _checked_numel(numel: Any, dtype: np.dtype, max_bytes: int) -> int:
  if not isinstance(numel, int) or numel < 0 or numel * dtype.itemsize > max_bytes:
    raise TorchStateError(f"a storage of {numel!r} elements: damaged, or larger than "
                          f"{max_bytes} bytes")
  return numel


class _Budget:
  """The bytes the storages declare, all together: at most `max_bytes`, checked
  as the pickle declares each one, before any is read."""

  def __init__(self, max_bytes: int):
    self.max_bytes, self.declared = max_bytes, 0

  def take(self, numel: Any, dtype: np.dtype) -> int:
    numel = _checked_numel(numel, dtype, self.max_bytes)
    self.declared += numel * dtype.itemsize
    if self.declared > self.max_bytes:
      raise TorchStateError(f"its storages declare more than {self.max_bytes:,} bytes in all "
                            "(a crafted or a much larger file); refusing to read them")
    return numel


def _read_zip(archive: zipfile.ZipFile, max_bytes: int) -> Any:
  """The pickle's object; each storage read (decompressed) only when a tensor needs it."""
  names = set(archive.namelist())
  pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
  if len(pickles) != 1:
    raise TorchStateError("a zip file without exactly one data.pkl is not a PyTorch checkpoint")
  prefix = pickles[0][:-len("data.pkl")]
  byteorder = "little"
  if prefix + "byteorder" in names:
    with archive.open(prefix + "byteorder") as f:  # "little" or "big": 16 bytes say it.
      byteorder = f.read(16).decode(errors="replace").strip()
  storages: dict[str, _Storage] = {}
  budget = _Budget(max_bytes)

  def storage(pid):
    # ("storage", storage type, key, location, numel)
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise TorchStateError(f"unsupported persistent id in the file: {pid!r}")
    _, storage_type, key, _, numel = pid
    dtype = _dtype_of(storage_type, pid).newbyteorder("<" if byteorder == "little" else ">")
    if key not in storages:
      numel = budget.take(numel, dtype)
      member = f"{prefix}data/{key}"
      if member not in names or archive.getinfo(member).file_size < numel * dtype.itemsize:
        raise TorchStateError(f"storage {key} is missing or truncated: the file is damaged")
      def load(member=member, dtype=dtype, numel=numel):
        with archive.open(member) as f:  # Decompress no more than the storage's own bytes.
          raw = f.read(numel * dtype.itemsize)
        return np.frombuffer(raw, dtype, numel).astype(dtype.newbyteorder("="), copy=False)
      storages[key] = _Storage(dtype, numel, load)
    elif storages[key].numel != numel:
      raise TorchStateError(f"storage {key} is declared with two sizes: the file is damaged")
    return storages[key]

  info = archive.getinfo(pickles[0])
  limit = min(max_bytes, MAX_PICKLE_BYTES)
  if info.file_size > limit:  # Before decompressing it.
    raise TorchStateError(f"its data.pkl declares {info.file_size:,} bytes, more than the "
                          f"{limit:,} a state dict's pickle needs")
  with archive.open(pickles[0]) as f:
    return _Unpickler(io.BytesIO(f.read(limit)), storage).load()


def _read_legacy(f: BinaryIO, max_bytes: int) -> Any:
  """The pickle's object; the storages' bytes (after it) located, each read only
  when a tensor needs it (`f` stays open until then)."""
  def no_storage(pid):
    raise TorchStateError(f"unexpected persistent id {pid!r}")

  def plain_load():
    return _Unpickler(f, no_storage).load()

  if plain_load() != _LEGACY_MAGIC:
    raise TorchStateError("not a PyTorch file (no zip archive, no legacy magic number)")
  if plain_load() != _LEGACY_PROTOCOL:
    raise TorchStateError("unsupported legacy PyTorch protocol version")
  sys_info = plain_load()
  little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
  storages: dict[str, _Storage] = {}
  budget = _Budget(max_bytes)

  def storage(pid):
    # ("storage", storage type, key, location, numel, view metadata)
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
      raise TorchStateError(f"unsupported persistent id in the file: {pid!r}")
    _, storage_type, key, _, numel, view = pid
    if view is not None:
      raise TorchStateError("storage views (files of PyTorch < 0.4) are not supported")
    dtype = _dtype_of(storage_type, pid)
    if key not in storages:
      storages[key] = _Storage(dtype, budget.take(numel, dtype), None)
    return storages[key]

  result = _Unpickler(f, storage).load()
  keys = plain_load()
  if not isinstance(keys, list):
    raise TorchStateError("the list of storages is missing: the file is damaged")
  left = os.fstat(f.fileno()).st_size - f.tell()
  for key in keys:
    if key not in storages:
      raise TorchStateError(f"storage {key!r} is listed but never used: the file is damaged")
    s = storages[key]
    dtype = s.dtype.newbyteorder("<" if little else ">")
    header = f.read(8)
    if len(header) != 8:
      raise TorchStateError(f"storage {key} is missing: the file is truncated")
    (numel,) = struct.unpack("<q" if little else ">q", header)
    if numel != s.numel:
      raise TorchStateError(f"storage {key} holds {numel!r} elements where the pickle declares "
                            f"{s.numel}: the file is damaged")
    size = numel * dtype.itemsize
    left -= 8 + size
    if left < 0:
      raise TorchStateError(f"storage {key} is truncated: the file is damaged")

    def load(start=f.tell(), size=size, dtype=dtype):
      f.seek(start)
      return np.frombuffer(f.read(size), dtype).astype(dtype.newbyteorder("="), copy=False)
    s.load = load
    f.seek(size, os.SEEK_CUR)
  return result


def load_state_dict(path: str, max_bytes: int = MAX_BYTES,
                    check: Callable[[dict[str, np.ndarray]], None] | None = None
                    ) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch state dict file as numpy arrays, by name; at most
  `max_bytes` of storages are read. `check` (which raises what it likes) is
  first given the declared tensors as arrays that hold no memory (their names,
  shapes and dtypes), before any storage byte is read or decompressed."""
  with contextlib.ExitStack() as opened:
    state = _translated(lambda: _tensors(_read(path, opened, max_bytes)))
    if check is not None:
      check(_translated(lambda: {n: t.placeholder(max_bytes) for n, t in state.items()}))
    return _translated(lambda: _materialise(state, max_bytes))


def _read(path: str, opened: contextlib.ExitStack, max_bytes: int) -> Any:
  """The pickled object of either layout, its storages not yet read; the file
  stays open in `opened`."""
  if zipfile.is_zipfile(path):
    return _read_zip(opened.enter_context(zipfile.ZipFile(path)), max_bytes)
  return _read_legacy(opened.enter_context(open(path, "rb")), max_bytes)


def _translated(read: Callable[[], Any]) -> Any:
  """`read()`, whatever a damaged file makes it raise turned into TorchStateError."""
  try:
    return read()
  except TorchStateError:
    raise
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
          KeyError, AttributeError, IndexError, OverflowError, MemoryError, RecursionError,
          struct.error, UnicodeError, OSError) as e:
    raise TorchStateError(f"cannot be read as a PyTorch state dict ({type(e).__name__}: "
                          f"{str(e)[:200]})") from None


def _tensors(state: Any) -> dict[str, _Tensor]:
  if not isinstance(state, dict):
    raise TorchStateError(f"holds a {type(state).__name__}, not a state dict")
  for name, value in state.items():
    if not isinstance(name, str) or type(value) is not _Tensor:  # pylint: disable=unidiomatic-typecheck
      raise TorchStateError(f"entry {name!r} is a {type(value).__name__}, not a tensor")
  return state


def _materialise(state: dict[str, _Tensor], max_bytes: int) -> dict[str, np.ndarray]:
  out, total = {}, 0
  for name, value in state.items():
    out[name] = value.value(max_bytes - total)
    total += out[name].nbytes
  return out
