"""`wgan_jax.evaluate` against what an adversary feeds it, as real processes:
too few samples for a score, images that cannot be scored, foreign and damaged
.npz files, a decompression bomb for Inception weights, SIGINT / SIGTERM. Each
ends in one `error:` line (or scores with a one-line warning), the documented
exit code, no traceback, within a bound on its wall time, and leaves nothing
partial behind."""
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest

from tests.conftest import ROOT, STARTED
from wgan_jax.metrics import image_metrics, inception_weights, torch_state
from wgan_jax.metrics.features import Features

# Real processes: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
  """The processes' cache (converted weights), one for the module: converted once."""
  return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def junk_weights(tmp_path) -> str:
  """A weights file that is none: a process that reads it fails on it, so an
  error about anything else shows that it was not read."""
  path = tmp_path / "junk.pth"
  path.write_bytes(b"<html>404</html>")
  return str(path)


def _env(cache: str) -> dict:
  return dict(os.environ, PYTHONPATH=ROOT, WGAN_JAX_CACHE=cache)


def evaluate(cache: str, *args, timeout: float = 300):
  """(exit code, stdout, stderr, seconds) of `python -m wgan_jax.evaluate args`."""
  started = time.monotonic()
  result = subprocess.run([sys.executable, "-m", "wgan_jax.evaluate", *args], env=_env(cache),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
  return result.returncode, result.stdout, result.stderr, time.monotonic() - started


def assert_one_line(err: str, line: str) -> None:
  """`line` is stderr's last line and its only error; no traceback."""
  assert "Traceback" not in err, err[-3000:]
  lines = err.strip().splitlines()
  assert lines and lines[-1] == line, err[-3000:]
  assert [l for l in lines if l.startswith("error:")] == [line], err[-3000:]


def images(path, n: int, h: int, w: int, c: int = 3, seed: int = 0):
  rng = np.random.RandomState(seed)
  np.savez(path, samples=rng.randint(0, 256, (n, h, w, c)).astype(np.uint8))
  return str(path)


def leftovers(*folders) -> list[str]:
  """Temporary files a write cut short would leave (files.py names them *.tmp)."""
  return [os.path.join(d, f) for folder in folders for d, _, names in os.walk(folder)
          for f in names if f.endswith(".tmp")]


# --------------------------------------------------------------- too few samples


IS_WHY = ("the Inception Score averages over 10 splits of them, at least a sample each")
PR_WHY = "each sample's ball reaches to its k-th nearest other sample of its set, k = 3"


@pytest.mark.parametrize("metrics,generated,real,message", [
    ("fid,kid,is", 4, 12, "is needs at least 10 generated images ({is_why}), but "
                          "--samples={samples} holds 4: score more, or leave is out of --metrics"),
    ("fid,pr", 12, 3, "pr needs at least 4 real images ({pr_why}), but --reference={reference} "
                      "holds 3: score more, or leave pr out of --metrics"),
    ("kid,pr", 3, 12, "pr needs at least 4 generated images ({pr_why}), but --samples={samples} "
                      "holds 3: score more, or leave pr out of --metrics"),
], ids=["is", "pr real", "pr generated"])
def test_too_few_samples_are_refused_before_the_weights_are_read(
    tmp_path, cache, junk_weights, metrics, generated, real, message):
  """The count check comes before the weights are read (they are junk here)
  and before any Inception pass: no NaN printed, no FID thrown away after it."""
  samples = images(tmp_path / "s.npz", generated, 16, 16)
  reference = images(tmp_path / "r.npz", real, 16, 16, seed=1)
  code, out, err, seconds = evaluate(cache, f"--samples={samples}", f"--reference={reference}",
                                     f"--metrics={metrics}", f"--inception_weights={junk_weights}")
  assert code == 2 and seconds < 60, (code, seconds, err[-2000:])
  assert_one_line(err, "error: " + message.format(samples=samples, reference=reference,
                                                  is_why=IS_WHY, pr_why=PR_WHY))
  assert out == ""


@pytest.mark.parametrize("flags,message", [
    (["--metrics=fid,is", "--num_samples=4"],
     f"is needs at least 10 generated images ({IS_WHY}), but --num_samples=4: score more, or "
     "leave is out of --metrics"),
    (["--metrics=pr", "--reference_samples=3"],
     f"pr needs at least 4 real images ({PR_WHY}), but --reference_samples=3: score more, or "
     "leave pr out of --metrics"),
], ids=["is", "pr"])
def test_too_few_samples_of_a_run_are_refused_before_it_is_restored(tmp_path, cache, flags,
                                                                    message):
  # The workdir does not even exist: the counts are checked first.
  code, _, err, seconds = evaluate(cache, f"--workdir={tmp_path / 'nowhere'}", *flags)
  assert code == 2 and seconds < 60, (code, seconds, err[-2000:])
  assert_one_line(err, f"error: {message}")
  assert os.listdir(tmp_path) == []


def test_a_run_asking_is_of_too_few_samples_stops_before_training(tmp_path, cache, junk_weights):
  """eval.metrics with "is" and eval.num_samples < 10 used to write NaN into
  summary.json (not JSON); now it is bad input, found before the workdir is made."""
  workdir = tmp_path / "run"
  started = time.monotonic()
  result = subprocess.run(
      [sys.executable, "-m", "wgan_jax.train", "--experiment=digits_dcgan_gp",
       "--experiment.num_generator_steps=2", "--experiment.eval.metrics=fid,is",
       "--experiment.eval.num_samples=4", f"--experiment.eval.inception_weights={junk_weights}",
       f"--workdir={workdir}"], env=_env(cache), capture_output=True, text=True, timeout=300,
      cwd=ROOT)
  seconds = time.monotonic() - started
  assert result.returncode == 2 and seconds < 120, (result.returncode, result.stderr[-2000:])
  assert_one_line(result.stderr, f"error: is needs at least 10 generated images ({IS_WHY}), "
                                 "but eval.num_samples=4: score more, or leave is out of "
                                 "eval.metrics")
  assert not workdir.exists()


def test_no_score_is_ever_nan():
  """Defence in depth: whatever slips past the checks (here: NaN features) is
  an error naming the score, never a NaN in a report or on stdout."""
  rng = np.random.default_rng(0)
  good = Features(rng.normal(size=(12, 8)), rng.normal(size=(12, 5)))
  assert all(math.isfinite(v) for v in image_metrics.score(("fid", "is", "pr"), good,
                                                           good).values())
  logits = good.logits.copy()
  logits[3, 2] = np.nan
  with pytest.raises(ValueError, match=r"^the scores is_mean=nan, is_std=nan are not finite"):
    image_metrics.score(("fid", "is"), Features(good.pool, logits), good)
  from wgan_jax.metrics import features  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match="needs at least 10 samples, got 9"):
    features.inception_score(np.zeros((9, 5)))
  with pytest.raises(ValueError, match="need at least 4 samples in each set, got 12 and 3"):
    features.precision_recall(np.zeros((12, 2)), np.zeros((3, 2)))


# --------------------------------------------------------------- what cannot be scored


@pytest.mark.parametrize("shape", [(4, 0, 0, 3), (4, 8, 0, 1)])
def test_images_without_pixels_are_refused(tmp_path, cache, junk_weights, shape):
  samples = tmp_path / "s.npz"
  np.savez(samples, samples=np.zeros(shape, np.uint8))
  reference = images(tmp_path / "r.npz", 12, 16, 16)
  code, _, err, seconds = evaluate(cache, f"--samples={samples}", f"--reference={reference}",
                                   f"--inception_weights={junk_weights}")
  assert code == 2 and seconds < 60, (code, seconds, err[-2000:])
  assert_one_line(err, f"error: --samples={samples}: 'samples' {shape} are images of "
                       f"{shape[1]}x{shape[2]} pixels, which hold nothing to score; save the "
                       "images themselves")


def test_sets_of_different_sizes_are_said_before_the_weights_are_read(tmp_path, cache,
                                                                      junk_weights):
  samples = images(tmp_path / "s.npz", 12, 16, 16)
  reference = images(tmp_path / "r.npz", 12, 32, 32, 1)
  code, _, err, _ = evaluate(cache, f"--samples={samples}", f"--reference={reference}",
                             "--metrics=fid", f"--inception_weights={junk_weights}")
  assert code == 2 and "Traceback" not in err
  warnings = [l for l in err.splitlines() if l.startswith("warning: --samples")]
  assert warnings == ["warning: --samples are 16x16 images and --reference 32x32: each set is "
                      "resized to 299x299 on its own (tf1), so the scores also measure the "
                      "difference in size; compare images of one size"], err[-2000:]
  assert err.strip().splitlines()[-1].startswith(f"error: {junk_weights}: ")


def test_tiny_images_are_scored_with_a_warning_and_finite_json(tmp_path, cache, weights_path):
  """1x1 images score (each is one colour to the Inception), with one line
  that says so; 10 samples are the fewest IS takes: finite, and the last line
  is strict JSON."""
  samples = images(tmp_path / "s.npz", 10, 1, 1)
  reference = images(tmp_path / "r.npz", 10, 1, 1, seed=1)
  code, out, err, seconds = evaluate(
      cache, f"--samples={samples}", f"--reference={reference}", "--metrics=fid,kid,is,pr",
      "--batch_size=8", f"--inception_weights={weights_path}", timeout=600)
  assert code == 0, err[-3000:]
  assert "Traceback" not in err
  assert (f"warning: --samples (1x1) and --reference (1x1) images are resized up to 299x299 "
          "(tf1) from under 16 pixels a side: the Inception sees mostly the interpolation, and "
          "the scores compare with no paper's") in err.splitlines()

  def no_constant(name):
    raise AssertionError(f"{name} in the JSON line")
  scores = json.loads(out.strip().splitlines()[-1], parse_constant=no_constant)
  assert set(scores) == {"fid", "kid_mean", "kid_std", "kid_subset_size", "is_mean", "is_std",
                         "precision", "recall"}
  assert all(math.isfinite(v) for v in scores.values())
  # One sample a split: p(y|x) is the split's marginal, so each split scores exp(0).
  assert scores["is_mean"] == pytest.approx(1.0) and 0 <= scores["precision"] <= 1
  print(f"tiny images scored in {seconds:.1f} s")


# --------------------------------------------------------------- foreign and damaged files


def _cut_array_data(path):
  """An .npz whose samples.npy header promises more bytes than it holds."""
  header = np.lib.format.header_data_from_array_1_0(np.zeros((4, 8, 8, 3), np.uint8))
  with zipfile.ZipFile(path, "w") as archive:
    with archive.open("samples.npy", "w") as f:
      np.lib.format.write_array_header_1_0(f, header)
      f.write(b"\0" * 10)


def _bit_flipped(path):
  """An .npz with a byte of its array's data changed: the CRC no longer matches."""
  np.savez(path, samples=np.zeros((4, 8, 8, 3), np.uint8))
  data = bytearray(path.read_bytes())
  assert len(data) > 1000 and not any(data[480:520])  # the array's zeros
  data[500] ^= 0xFF
  path.write_bytes(bytes(data))


def _npy(path):
  with open(path, "wb") as f:
    np.save(f, np.zeros((4, 8, 8, 3), np.uint8))


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_text("x,y\n1,2\n"),
     "is not an .npz (not a zip archive); save the images with np.savez(path, samples=images) "
     "or `python -m wgan_jax.sample --npz=...`"),
    (lambda p: p.write_bytes(b""),
     "is not an .npz (empty); save the images with np.savez(path, samples=images) or "
     "`python -m wgan_jax.sample --npz=...`"),
    (_npy,
     "is an .npy file (one array), not an .npz; save the images with "
     "np.savez(path, samples=images)"),
    (lambda p: p.write_bytes(open(images(p.parent / "whole.npz", 4, 8, 8), "rb").read()[:300]),
     "cannot be read as an .npz (a zip archive cut short or damaged: no central directory); "
     "write it again"),
    (_cut_array_data,
     "cannot be read as an .npz (ValueError: EOF: reading array data, expected 768 bytes got "
     "10); write it again"),
    (_bit_flipped, "cannot be read as an .npz (BadZipFile: Bad CRC-32 for file 'samples.npy'); "
                   "write it again"),
], ids=["csv", "empty", "npy", "cut short", "array cut short", "bit flipped"])
def test_foreign_and_damaged_files_are_one_line_naming_the_file(tmp_path, cache, junk_weights,
                                                                make, message):
  samples = tmp_path / "samples.npz"
  make(samples)
  reference = images(tmp_path / "r.npz", 12, 8, 8)
  code, _, err, seconds = evaluate(cache, f"--samples={samples}", f"--reference={reference}",
                                   f"--inception_weights={junk_weights}")
  assert code == 2 and seconds < 60, (code, seconds, err[-2000:])
  last = err.strip().splitlines()[-1]
  assert last.startswith(f"error: --samples={samples} {message}"), last
  assert_one_line(err, last)
  assert "allow_pickle" not in err


# --------------------------------------------------------------- a decompression bomb


def _pickled_int(n: int) -> bytes:
  if -2**31 <= n < 2**31:
    return b"J" + struct.pack("<i", n)
  raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
  return b"\x8a" + bytes([len(raw)]) + raw


def _pickled_str(s: str) -> bytes:
  raw = s.encode()
  return b"X" + struct.pack("<I", len(raw)) + raw


def _state_dict_pickle(tensors: dict[str, tuple[str, int, tuple[int, ...]]]) -> bytes:
  """The data.pkl torch.save writes for {name: (storage key, storage numel,
  size)} of contiguous float32 tensors, opcode by opcode (no PyTorch needed)."""
  out = [b"\x80\x02}"]                                      # PROTO 2, EMPTY_DICT
  for name, (key, numel, size) in tensors.items():
    stride = tuple(int(np.prod(size[i + 1:])) for i in range(len(size)))
    out += [_pickled_str(name), b"ctorch._utils\n_rebuild_tensor_v2\n", b"("]
    out += [b"(", _pickled_str("storage"), b"ctorch\nFloatStorage\n", _pickled_str(key),
            _pickled_str("cpu"), _pickled_int(numel), b"tQ"]  # TUPLE, BINPERSID
    out += [_pickled_int(0), b"(", *map(_pickled_int, size), b"t",
            b"(", *map(_pickled_int, stride), b"t", b"\x89}tRs"]  # False, {}, REDUCE, SETITEM
  return b"".join(out) + b"."


def _zeros_deflated(size: int, chunk: int = 1 << 24) -> tuple[bytes, int]:
  """A raw deflate stream of `size` zero bytes and their CRC-32, quickly: one
  chunk compressed and repeated (a full flush makes every copy the same bytes)."""
  assert size % chunk == 0
  compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
  zeros = bytes(chunk)
  block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
  assert compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH) == block
  crc = 0
  for _ in range(size // chunk):
    crc = zlib.crc32(zeros, crc)
  return block * (size // chunk) + compressor.flush(), crc


def _write_zip(path, entries: dict[str, tuple[bytes, int, int, int]]) -> None:
  """A zip of {name: (data as stored, method (0 stored, 8 deflated), CRC-32,
  size once decompressed)}, written by hand: zipfile would have to compress
  the gigabytes itself."""
  local, central = [], []
  offset = 0
  for name, (data, method, crc, size) in entries.items():
    raw = name.encode()
    fields = (20, 0, method, 0, 0, crc, len(data), size, len(raw))
    header = struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + raw
    central.append(struct.pack("<IH", 0x02014B50, 20) + struct.pack("<HHHHHIIIH", *fields) +
                   struct.pack("<HHHHII", 0, 0, 0, 0, 0, offset) + raw)
    local += [header, data]
    offset += len(header) + len(data)
  directory = b"".join(central)
  with open(path, "wb") as f:
    f.write(b"".join(local) + directory + struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(directory), offset, 0))


def _crafted_pth(path, tensors: dict[str, tuple[str, int, tuple[int, ...]]],
                 storage_bytes: int) -> None:
  """A zip-layout .pth of `tensors`; each storage entry holds `storage_bytes`
  zero bytes, deflated."""
  pickled = _state_dict_pickle(tensors)
  deflated, crc = _zeros_deflated(storage_bytes)
  entries = {"archive/data.pkl": (pickled, 0, zlib.crc32(pickled), len(pickled)),
             "archive/byteorder": (b"little", 0, zlib.crc32(b"little"), 6)}
  for key, _, _ in tensors.values():
    entries[f"archive/data/{key}"] = (deflated, 8, crc, storage_bytes)
  _write_zip(path, entries)


def test_the_crafted_reader_files_are_what_they_claim(tmp_path):
  """The hand-made pickle and zip read back: a sound tensor, and 1 GB entries."""
  path = tmp_path / "small.pth"
  _crafted_pth(path, {"w": ("0", 12, (3, 4))}, 1 << 24)
  read = torch_state.load_state_dict(str(path))
  assert list(read) == ["w"] and read["w"].shape == (3, 4) and not read["w"].any()
  with zipfile.ZipFile(path) as archive:
    assert archive.testzip() is None    # every CRC right


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> str:
  """3 MB on disk, three storages of 1 GB each once decompressed (the probe's file)."""
  path = tmp_path_factory.mktemp("bomb") / "bomb.pth"
  gib = 1 << 30
  _crafted_pth(path, {f"w{i}": (str(i), gib // 4, (gib // 4,)) for i in range(3)}, gib)
  assert path.stat().st_size < 4e6
  with zipfile.ZipFile(path) as archive:
    assert [i.file_size for i in archive.infolist()][2:] == [gib] * 3
    with archive.open("archive/data/0") as f:  # the stream is sound where we look
      assert f.read(1 << 22) == bytes(1 << 22)
  return str(path)


# Runs argv[2:] and writes its peak RSS (KB) to argv[1]. A small process of its
# own: a child's peak counts the memory of the process it was forked from (Linux
# carries it over the exec), so measured from pytest it would be pytest's.
_MEASURED = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
             "open(sys.argv[1], 'w').write(str(resource.getrusage("
             "resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)")


def _peak(tmp_path, cache: str, *args) -> tuple[int, str, float, float]:
  """(exit code, stderr, seconds, peak RSS in MB) of `python -m wgan_jax.evaluate args`."""
  rss = tmp_path / "peak_rss"
  started = time.monotonic()
  result = subprocess.run([sys.executable, "-c", _MEASURED, str(rss), sys.executable, "-m",
                           "wgan_jax.evaluate", *args], env=_env(cache), capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
  return (result.returncode, result.stderr, time.monotonic() - started,
          int(rss.read_text()) / 1024)


def test_a_decompression_bomb_is_refused_before_it_costs_memory(tmp_path, cache, bomb,
                                                                junk_weights):
  samples = images(tmp_path / "s.npz", 12, 16, 16)
  files = [f"--samples={samples}", f"--reference={samples}", "--metrics=fid"]
  code, err, seconds, peak_mb = _peak(tmp_path, cache, *files, f"--inception_weights={bomb}")
  assert code == 2 and seconds < 60, (code, seconds, err[-2000:])
  assert_one_line(err, f"error: {bomb}: a storage of {(1 << 30) // 4} elements: damaged, or "
                       f"larger than {inception_weights.max_bytes()} bytes; "
                       f"{inception_weights.HOW_TO_GET}")
  # 3 GB once decompressed (the reader used to take 1 GB of it, and copy it, before it
  # refused: 2 GB more); now the bomb costs what a 16-byte junk file costs.
  code, _, _, junk_mb = _peak(tmp_path, cache, *files, f"--inception_weights={junk_weights}")
  assert code == 2
  assert peak_mb < junk_mb + 128 and peak_mb < 512, (peak_mb, junk_mb)
  print(f"bomb refused in {seconds:.1f} s at a peak RSS of {peak_mb:.0f} MB "
        f"(junk weights: {junk_mb:.0f} MB)")


def test_names_and_shapes_are_checked_before_any_storage_is_decompressed(tmp_path,
                                                                         monkeypatch):
  """A file within the byte bound, of other tensors: refused by its declared
  names and shapes; no storage entry of the zip is even opened."""
  path = tmp_path / "other.pth"
  mb64 = 1 << 26
  _crafted_pth(path, {"fc.weight": ("0", mb64 // 4, (mb64 // 4 // 2048, 2048)),
                      "head.weight": ("1", 10, (10,))}, mb64)
  opened = []
  open_member = zipfile.ZipFile.open

  def recording(self, name, *args, **kwargs):
    opened.append(getattr(name, "filename", name))
    return open_member(self, name, *args, **kwargs)
  monkeypatch.setattr(zipfile.ZipFile, "open", recording)
  monkeypatch.setenv("WGAN_JAX_CACHE", str(tmp_path / "cache"))
  with pytest.raises(inception_weights.WeightsError) as e:
    inception_weights.load(str(path))
  assert str(e.value).startswith(f"{path} is not the FID Inception's state dict (")
  assert " missing, 1 unexpected, 1 mis-shaped tensors, e.g. " in str(e.value)
  assert opened == ["archive/byteorder", "archive/data.pkl"], opened


def test_the_storages_together_are_bounded_before_any_is_read(tmp_path, monkeypatch):
  """Four storages of 16 MB, each within a 48 MB bound, together beyond it."""
  path = tmp_path / "many.pth"
  mb16 = 1 << 24
  _crafted_pth(path, {f"w{i}": (str(i), mb16 // 4, (mb16 // 4,)) for i in range(4)}, mb16)
  opened = []
  open_member = zipfile.ZipFile.open
  monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: (
      opened.append(name), open_member(self, name, *a, **k))[1])
  with pytest.raises(torch_state.TorchStateError,
                     match=r"^its storages declare more than 50,331,648 bytes in all"):
    torch_state.load_state_dict(str(path), max_bytes=3 * mb16)
  assert opened == ["archive/byteorder", "archive/data.pkl"], opened
  assert len(torch_state.load_state_dict(str(path), max_bytes=4 * mb16)) == 4


# --------------------------------------------------------------- signals


def _start(cache: str, *args) -> subprocess.Popen:
  proc = subprocess.Popen([sys.executable, "-m", "wgan_jax.evaluate", *args], env=_env(cache),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
  STARTED.append(proc)
  return proc


def _catches(pid: int, sig: int) -> bool:
  """Whether process `pid` has a handler of its own for `sig` (Linux)."""
  with open(f"/proc/{pid}/status") as f:
    caught = next(int(l.split()[1], 16) for l in f if l.startswith("SigCgt:"))
  return bool(caught >> (sig - 1) & 1)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_loading_is_one_line(tmp_path, cache, junk_weights, sig, code):
  """Sent the moment the module has its handler, while JAX is still loading."""
  samples = images(tmp_path / "s.npz", 12, 16, 16)
  proc = _start(cache, f"--samples={samples}", f"--reference={samples}",
                f"--inception_weights={junk_weights}")
  deadline = time.monotonic() + 30
  while not _catches(proc.pid, signal.SIGTERM):
    assert proc.poll() is None and time.monotonic() < deadline
    time.sleep(0.005)
  proc.send_signal(sig)
  started = time.monotonic()
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == code and time.monotonic() - started < 10, (proc.returncode, err)
  assert_one_line(err, f"error: stopped by {sig.name} during start-up; nothing was written")
  assert sorted(os.listdir(tmp_path)) == ["junk.pth", "s.npz"]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_evaluation_is_one_line(tmp_path, cache, weights_path, sig, code):
  """Sent once the inputs are read and checked (the warning line): the
  weights load, the Inception compiles or runs; it stops with one line, and
  no temporary file is left in the cache it may have been writing."""
  samples = images(tmp_path / "s.npz", 40, 16, 16)
  reference = images(tmp_path / "r.npz", 40, 16, 16, seed=1)
  proc = _start(cache, f"--samples={samples}", f"--reference={reference}", "--batch_size=8",
                f"--inception_weights={weights_path}")
  for line in proc.stderr:
    if line.startswith("warning: 40 generated samples"):
      break
  else:
    pytest.fail(f"no warning line: exit {proc.wait()}")
  proc.send_signal(sig)
  started = time.monotonic()
  out, rest = proc.communicate(timeout=300)
  seconds = time.monotonic() - started
  assert proc.returncode == code, (proc.returncode, rest[-3000:])
  # At worst it waits for the compile it is in (a C++ call Python cannot interrupt).
  assert seconds < 120, seconds
  assert_one_line(rest, f"error: stopped by {sig.name} during the evaluation; nothing was "
                        "written")
  assert not any(l.startswith("{") for l in out.splitlines())
  assert sorted(os.listdir(tmp_path)) == ["r.npz", "s.npz"]
  assert leftovers(cache) == []
  print(f"{sig.name}: stopped {seconds:.1f} s after the signal")
