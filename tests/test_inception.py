"""The FID Inception in Flax: resize conventions, the safe weights reader, and
equality with pytorch-fid's and torch-fidelity's networks (random weights and
random batch-norm statistics, the same images)."""
import io
import os
import pickle
import zipfile

import jax
import numpy as np
import pytest

from tests import torch_references as refs
from wgan_jax.metrics import features as feature_metrics
from wgan_jax.metrics import inception, inception_weights, torch_state

# Real processes and whole trainings: CI's tier, not the development one (README).
pytestmark = pytest.mark.slow

# Max |ours - reference| / max |reference| over a whole output.
FEATURE_TOLERANCE = 1e-4
FID_TOLERANCE = 1e-3

# Every test runs the network on one batch shape, so it compiles once.
BATCH = 6
_network = jax.jit(inception.FIDInceptionV3().apply)


def _features(variables, images: np.ndarray, resize: str):
  n = len(images)
  x = inception.to_inception_input(np.resize(images, (BATCH, *images.shape[1:])), resize)
  return tuple(np.asarray(v)[:n] for v in _network(variables, x))


def _images(seed: int, n: int, size: int = 24, channels: int = 3) -> np.ndarray:
  return np.random.RandomState(seed).randint(0, 256, (n, size, size, channels)).astype(np.uint8)


def _relative(ours: np.ndarray, reference: np.ndarray) -> float:
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


@pytest.fixture(scope="module")
def variables():
  return inception.random_variables(0)


@pytest.fixture(scope="module")
def weights_path(variables, tmp_path_factory) -> str:
  torch = refs.import_torch()
  path = str(tmp_path_factory.mktemp("weights") / "random_inception.pth")
  torch.save(refs.to_torch_state_dict(variables), path)
  return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
  monkeypatch.setenv("WGAN_JAX_CACHE", str(tmp_path / "cache"))
  monkeypatch.delenv(inception_weights.ENV, raising=False)


# ----------------------------------------------------------------- network


def test_network_outputs_pool_features_and_logits_for_gray_and_rgb(variables):
  gray = _images(0, 2, 20, 1)
  pool, logits = _features(variables, gray, "tf1")
  assert pool.shape == (2, inception.POOL_FEATURES) and logits.shape == (2, inception.NUM_LOGITS)
  assert np.all(np.isfinite(pool)) and np.all(np.asarray(pool) >= 0)   # after a ReLU
  assert np.std(np.asarray(pool)) > 0
  rgb_pool, rgb_logits = _features(variables, np.repeat(gray, 3, axis=-1), "tf1")
  np.testing.assert_array_equal(pool, rgb_pool)
  np.testing.assert_array_equal(logits, rgb_logits)
  # The unbiased logits are the pool features times the classifier's kernel.
  kernel = np.asarray(variables["params"]["fc"]["kernel"], np.float64)
  np.testing.assert_allclose(logits, np.asarray(pool, np.float64) @ kernel, rtol=1e-4, atol=1e-5)


def test_network_rejects_other_channel_counts_and_resizes(variables):
  with pytest.raises(ValueError, match=r"\[N, H, W, 1 or 3\]"):
    inception.to_inception_input(_images(0, 1, 8, 4), "tf1")
  with pytest.raises(ValueError, match="unknown resize 'bicubic'; use one of tf1, pytorch-fid"):
    inception.to_inception_input(_images(0, 1, 8), "bicubic")


def test_feature_pass_over_8_devices_equals_one_device(variables):
  """The data-parallel pass (batch split over the 8 fake devices, the last
  batch filled up and cut back) gives each image the one-device features."""
  from wgan_jax.metrics import extract  # pylint: disable=import-outside-toplevel
  assert jax.device_count() == 8
  run = extract.FeaturePass(lambda v, x: inception.features(v, x, "tf1"), variables, 8)
  images = _images(7, 11, 20)
  pool, logits = run.run(extract.batches_of(images, 8), len(images), "test")
  assert pool.shape == (11, inception.POOL_FEATURES) and logits.shape == (11, inception.NUM_LOGITS)
  for start in (0, 6):
    one_pool, one_logits = _features(variables, images[start:start + 5], "tf1")
    # Float rounding of other batch shapes only.
    assert _relative(pool[start:start + 5], one_pool) <= 1e-5
    assert _relative(logits[start:start + 5], one_logits) <= 1e-5


# ----------------------------------------------------------------- resizing


def _resize_by_definition(images: np.ndarray, resize: str) -> np.ndarray:
  """Each output pixel from the convention's source coordinates, in float64."""
  x = images.astype(np.float64)
  if resize == "pytorch-fid":
    x = x / 255.0
  for axis in (1, 2):
    size = x.shape[axis]
    i = np.arange(inception.INPUT_SIZE, dtype=np.float64)
    if resize == "tf1":
      source = i * size / inception.INPUT_SIZE
    else:
      source = np.maximum((i + 0.5) * size / inception.INPUT_SIZE - 0.5, 0.0)
    lo = np.minimum(np.floor(source).astype(int), size - 1)
    hi = np.minimum(lo + 1, size - 1)
    w = (source - lo).reshape([-1 if a == axis else 1 for a in range(4)])
    x = np.take(x, lo, axis) * (1 - w) + np.take(x, hi, axis) * w
  return (x - 128.0) / 128.0 if resize == "tf1" else 2.0 * x - 1.0


@pytest.mark.parametrize("resize", inception.RESIZES)
@pytest.mark.parametrize("size", [7, 32, 64, 400])
def test_resize_follows_its_convention(resize, size):
  images = _images(size, 2, size)
  ours = np.asarray(inception.to_inception_input(images, resize))
  assert ours.shape == (2, 299, 299, 3)
  # Both conventions compute source coordinates in float32 (so do their references).
  np.testing.assert_allclose(ours, _resize_by_definition(images, resize), atol=1e-4)


def test_the_two_resizes_differ_and_agree_at_299():
  small = _images(3, 1, 32)
  tf1 = np.asarray(inception.to_inception_input(small, "tf1"))
  torch_like = np.asarray(inception.to_inception_input(small, "pytorch-fid"))
  assert np.max(np.abs(tf1 - torch_like)) > 0.1   # the half-pixel offset moves edges
  full = _images(4, 1, 299)
  np.testing.assert_array_equal(inception.to_inception_input(full, "tf1"),
                                (full.astype(np.float32) - 128) / 128)
  np.testing.assert_allclose(inception.to_inception_input(full, "pytorch-fid"),
                             2 * (full.astype(np.float32) / 255) - 1, atol=1e-6)


def test_resize_equals_torch_interpolate_and_torch_fidelity_resize():
  torch = refs.import_torch()
  fe = refs.import_torch_fidelity_inception()
  import torch_fidelity.interpolate_compat_tensorflow as tf_compat  # pylint: disable=import-outside-toplevel
  del fe
  images = _images(5, 2, 40)
  nchw = torch.from_numpy(images).permute(0, 3, 1, 2).float()
  reference = torch.nn.functional.interpolate(nchw / 255, size=(299, 299), mode="bilinear",
                                              align_corners=False) * 2 - 1
  ours = np.asarray(inception.to_inception_input(images, "pytorch-fid"))
  np.testing.assert_allclose(ours, reference.permute(0, 2, 3, 1).numpy(), atol=1e-5)
  reference = (tf_compat.interpolate_bilinear_2d_like_tensorflow1x(
      nchw, size=(299, 299), align_corners=False) - 128) / 128
  ours = np.asarray(inception.to_inception_input(images, "tf1"))
  np.testing.assert_allclose(ours, reference.permute(0, 2, 3, 1).numpy(), atol=1e-5)


# ----------------------------------------------------------------- the .pth reader


@pytest.mark.parametrize("zip_layout", [True, False], ids=["zip", "legacy"])
def test_reader_rebuilds_tensors_of_both_layouts(tmp_path, zip_layout):
  torch = refs.import_torch()
  state = {"w": torch.randn(3, 4), "t": torch.randn(4, 3).t(), "slice": torch.arange(10)[2:7],
           "scalar": torch.tensor(2.5, dtype=torch.float64), "half": torch.randn(5).half()}
  path = str(tmp_path / "state.pth")
  torch.save(state, path, _use_new_zipfile_serialization=zip_layout)
  read = torch_state.load_state_dict(path)
  assert sorted(read) == sorted(state)
  for name, tensor in state.items():
    assert read[name].dtype == tensor.numpy().dtype, name
    np.testing.assert_array_equal(read[name], tensor.numpy(), err_msg=name)


class _RunsCode:
  def __reduce__(self):
    return (os.system, ("touch pwned",))


@pytest.mark.parametrize("zip_layout", [True, False], ids=["zip", "legacy"])
def test_reader_refuses_pickled_code(tmp_path, monkeypatch, zip_layout):
  monkeypatch.chdir(tmp_path)
  path = tmp_path / "evil.pth"
  if zip_layout:
    with zipfile.ZipFile(path, "w") as archive:
      archive.writestr("archive/data.pkl", pickle.dumps({"w": _RunsCode()}))
  else:
    with open(path, "wb") as f:
      for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, f)
      pickle.dump({"w": _RunsCode()}, f)
  with pytest.raises(torch_state.TorchStateError, match=r"asks for posix\.system"):
    torch_state.load_state_dict(str(path))
  assert not (tmp_path / "pwned").exists()


class _StorageRef:
  def __init__(self, numel: int):
    self.numel = numel


def _crafted_zip(path, size, stride, numel: int, stored: int) -> None:
  """A zip-layout .pth whose one tensor claims `size`/`stride` over a storage of
  `numel` float32 elements, of which the archive holds `stored`."""
  torch = refs.import_torch()

  class Tensor:
    def __reduce__(self):
      return (torch._utils._rebuild_tensor_v2,  # pylint: disable=protected-access
              (_StorageRef(numel), 0, size, stride, False, {}))

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if isinstance(obj, _StorageRef):
        return ("storage", torch.FloatStorage, "0", "cpu", obj.numel)
      return None

  data = io.BytesIO()
  Pickler(data, protocol=2).dump({"w": Tensor()})
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", data.getvalue())
    archive.writestr("archive/data/0", b"\0" * (4 * stored))


@pytest.mark.parametrize("size,stride,numel,stored,message", [
    ((3, 4), (4, 1), 12, 12, None),
    ((10**6, 10**6), (0, 0), 1, 1, r"a tensor of size \(1000000, 1000000\) is larger than"),
    ((4,), (1,), 10**12, 4, "a storage of 1000000000000 elements: damaged, or larger than"),
    ((3, 4), (4, 1), 12, 5, "storage 0 is missing or truncated"),
    ((3, 4), (4, 2), 12, 12, r"reaches past its storage \(12 elements\)"),
], ids=["sound", "stride 0", "huge storage", "truncated", "out of bounds"])
def test_reader_allocates_only_what_the_file_holds(tmp_path, size, stride, numel, stored,
                                                   message):
  path = str(tmp_path / "crafted.pth")
  _crafted_zip(path, size, stride, numel, stored)
  if message is None:
    assert torch_state.load_state_dict(path)["w"].shape == size
  else:
    with pytest.raises(torch_state.TorchStateError, match=message):
      torch_state.load_state_dict(path)


# ----------------------------------------------------------------- weights


def test_weights_convert_once_and_are_cached(variables, weights_path, tmp_path, monkeypatch):
  weights = inception_weights.load(weights_path)
  flat = jax.tree_util.tree_leaves_with_path(variables)
  loaded = dict(jax.tree_util.tree_leaves_with_path(weights.variables))
  assert len(loaded) == len(flat) == 94 * 5 + 2    # 94 conv + batch norm, the classifier
  for path, value in flat:
    np.testing.assert_array_equal(loaded[path], value, err_msg=jax.tree_util.keystr(path))
  assert not weights.official and "NOT the official FID weights" in weights.describe()
  cached = tmp_path / "cache" / "inception" / f"{weights.sha256}.npz"
  assert cached.is_file()

  def no_reading(path):
    raise AssertionError(f"read {path} again although it is cached")
  monkeypatch.setattr(torch_state, "load_state_dict", no_reading)
  again = inception_weights.load(weights_path)
  np.testing.assert_array_equal(again.variables["params"]["fc"]["kernel"],
                                variables["params"]["fc"]["kernel"])
  monkeypatch.undo()
  monkeypatch.setenv("WGAN_JAX_CACHE", str(tmp_path / "cache"))
  cached.write_bytes(b"damaged")
  inception_weights.load(weights_path)          # converts again and replaces the damage
  assert cached.stat().st_size > 90e6


def test_weights_path_from_the_environment(weights_path, monkeypatch):
  monkeypatch.setenv(inception_weights.ENV, weights_path)
  assert inception_weights.load(None).path == os.path.abspath(weights_path)


def test_weights_errors_are_one_line_naming_path_and_remedy(variables, weights_path, tmp_path):
  torch = refs.import_torch()
  cases = {}
  with pytest.raises(inception_weights.WeightsError) as e:
    inception_weights.load(None)
  cases["none"] = str(e.value)
  missing = str(tmp_path / "nowhere.pth")
  with pytest.raises(inception_weights.WeightsError) as e:
    inception_weights.load(missing)
  cases["missing"] = str(e.value)
  assert missing in cases["missing"]
  junk = tmp_path / "junk.pth"
  junk.write_bytes(b"<html>404</html>")
  with pytest.raises(inception_weights.WeightsError) as e:
    inception_weights.load(str(junk))
  cases["junk"] = str(e.value)
  truncated = tmp_path / "truncated.pth"
  truncated.write_bytes(open(weights_path, "rb").read()[: 50_000_000])
  with pytest.raises(inception_weights.WeightsError) as e:
    inception_weights.load(str(truncated))
  cases["truncated"] = str(e.value)
  state = refs.to_torch_state_dict(variables)
  del state["Mixed_7c.branch_pool.conv.weight"]
  state["fc.weight"] = torch.zeros(10, 2048)
  state["AuxLogits.fc.weight"] = torch.zeros(3)
  wrong = tmp_path / "other_network.pth"
  torch.save(state, str(wrong))
  with pytest.raises(inception_weights.WeightsError) as e:
    inception_weights.load(str(wrong))
  cases["wrong"] = str(e.value)
  assert "(1 missing, 1 unexpected, 1 mis-shaped tensors" in cases["wrong"]
  for name, message in cases.items():
    assert "\n" not in message, name
    assert inception_weights.URL in message, name
  for name in ("junk", "truncated", "wrong"):
    assert name in cases[name] or str(tmp_path) in cases[name]


# ----------------------------------------------------------------- the references


def _pytorch_fid_network(weights_path):
  """pytorch-fid's own InceptionV3 (FID blocks), its weights URL read from our file."""
  torch = refs.import_torch()
  pytorch_fid_inception, fid_score = refs.import_pytorch_fid()
  original = pytorch_fid_inception.load_state_dict_from_url
  pytorch_fid_inception.load_state_dict_from_url = lambda *a, **k: torch.load(weights_path)
  try:
    model = pytorch_fid_inception.InceptionV3([3]).eval()
  finally:
    pytorch_fid_inception.load_state_dict_from_url = original
  return model, fid_score


def test_equals_pytorch_fid_network_and_fid(variables, weights_path):
  torch = refs.import_torch()
  model, fid_score = _pytorch_fid_network(weights_path)
  a, b = _images(10, 6, 28), _images(11, 6, 28) // 2 + 60

  def reference(images):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255   # as ToTensor()
    with torch.no_grad():
      return model(x)[0].squeeze(-1).squeeze(-1).numpy().astype(np.float64)

  weights = inception_weights.load(weights_path)
  ours_a, logits_a = (np.asarray(v, np.float64) for v in _features(weights.variables, a, "pytorch-fid"))
  ours_b, _ = (np.asarray(v, np.float64) for v in _features(weights.variables, b, "pytorch-fid"))
  ref_a, ref_b = reference(a), reference(b)
  assert _relative(ours_a, ref_a) <= FEATURE_TOLERANCE
  assert _relative(ours_b, ref_b) <= FEATURE_TOLERANCE
  fc = torch.load(weights_path)["fc.weight"].numpy().astype(np.float64)
  assert _relative(logits_a, ref_a @ fc.T) <= FEATURE_TOLERANCE

  # The statistics FID compares, not only the distance (with 6 images in 2,048
  # dimensions the covariances are singular).
  ours_stats = feature_metrics.GaussianStats.of(ours_a)
  assert _relative(ours_stats.mu, ref_a.mean(0)) <= FEATURE_TOLERANCE
  assert _relative(ours_stats.sigma, np.cov(ref_a, rowvar=False)) <= 10 * FEATURE_TOLERANCE

  def pytorch_fid_distance(x, y):
    return fid_score.calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False),
                                                y.mean(0), np.cov(y, rowvar=False))
  reference_fid = pytorch_fid_distance(ref_a, ref_b)
  ours = feature_metrics.frechet_distance(feature_metrics.GaussianStats.of(ours_a),
                                          feature_metrics.GaussianStats.of(ours_b))
  assert reference_fid > 0
  assert abs(ours - reference_fid) <= FID_TOLERANCE * reference_fid, (ours, reference_fid)


def test_equals_torch_fidelity_network_and_fid(variables, weights_path):
  torch = refs.import_torch()
  extractor_class = refs.import_torch_fidelity_inception()
  from torch_fidelity import metric_fid  # pylint: disable=import-outside-toplevel
  extractor = extractor_class("inception-v3-compat", ["2048", "logits_unbiased"],
                              feature_extractor_weights_path=weights_path)
  a, b = _images(12, 6, 36), _images(13, 6, 36) // 2 + 60

  def reference(images):
    with torch.no_grad():
      pool, logits = extractor(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    return pool, logits.numpy().astype(np.float64)

  weights = inception_weights.load(weights_path)
  ours_a, logits_a = (np.asarray(v, np.float64) for v in _features(weights.variables, a, "tf1"))
  ours_b, _ = (np.asarray(v, np.float64) for v in _features(weights.variables, b, "tf1"))
  (ref_a, ref_logits_a), (ref_b, _) = reference(a), reference(b)
  assert _relative(ours_a, ref_a.numpy()) <= FEATURE_TOLERANCE
  assert _relative(ours_b, ref_b.numpy()) <= FEATURE_TOLERANCE
  assert _relative(logits_a, ref_logits_a) <= FEATURE_TOLERANCE
  reference_stats = metric_fid.fid_features_to_statistics(ref_a.double())
  ours_stats = feature_metrics.GaussianStats.of(ours_a)
  assert _relative(ours_stats.mu, reference_stats["mu"]) <= FEATURE_TOLERANCE
  assert _relative(ours_stats.sigma, reference_stats["sigma"]) <= 10 * FEATURE_TOLERANCE
  reference_fid = metric_fid.fid_statistics_to_metric(
      metric_fid.fid_features_to_statistics(ref_a.double()),
      metric_fid.fid_features_to_statistics(ref_b.double()), False)[metric_fid.KEY_METRIC_FID]
  ours = feature_metrics.frechet_distance(feature_metrics.GaussianStats.of(ours_a),
                                          feature_metrics.GaussianStats.of(ours_b))
  assert reference_fid > 0
  assert abs(ours - reference_fid) <= FID_TOLERANCE * reference_fid, (ours, reference_fid)
