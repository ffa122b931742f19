"""Class labels from the image pipelines: every label stays with its image through
shuffle, resume, dropped files, batching, stacking and the devices."""
import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits

from tests.conftest import encode, picture
from wgan_jax import data, inputs
from wgan_jax.data import images
from wgan_jax.devices import Devices

CLASSES = ("ant", "bee", "cat")  # label i: red channel 60 i + 30


def data_config(name: str, image_size: int = 8, root: str = "", labels: bool = True,
                shuffle_buffer: int = 16) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(name=name, image_size=image_size, dir=str(root),
                                        split="train", shuffle_buffer=shuffle_buffer,
                                        dequantize=False, labels=labels))


def read(cfg, n_batches: int, batch_size: int, seed: int = 3, start: int = 0):
  """n_batches from `start`, and the position after them."""
  it = images.Batches(images.build_image_dataset(cfg, batch_size, seed, start=start), start)
  return [next(it) for _ in range(n_batches)], it.position


def digits_targets() -> dict[bytes, set[int]]:
  """Each sklearn digit's pixels (0..16) -> the targets of the samples that have them."""
  d = load_digits()
  out: dict[bytes, set[int]] = {}
  for image, target in zip(d.images.astype(np.int64), d.target):
    out.setdefault(image.tobytes(), set()).add(int(target))
  return out


def digit_levels(pixels: np.ndarray) -> bytes:
  """An 8x8 uint8 batch image back to load_digits' levels (the source scales by 255/16)."""
  return np.round(pixels[..., 0] * (16 / 255)).astype(np.int64).tobytes()


@pytest.fixture(scope="module")
def classes_folder(tmp_path_factory) -> str:
  """3 class subdirectories (one nested deeper), 7 good PNGs whose red channel is
  the class, a truncated JPEG (passes PIL's verify, fails decoding) and a broken file."""
  root = tmp_path_factory.mktemp("classes")
  for name in CLASSES:
    (root / name / "deeper").mkdir(parents=True)
  counts = (3, 2, 2)
  for label, (name, n) in enumerate(zip(CLASSES, counts)):
    for i in range(n):
      pixels = np.full((12 + i, 10, 3), (60 * label + 30, 20 * i + 10, 7 * label), np.uint8)
      where = root / name / ("deeper" if label == 2 and i == 1 else "")
      Image.fromarray(pixels).save(where / f"{i}.png")
  jpeg = encode(picture(40, 40, 1), "JPEG")
  (root / "bee" / "truncated.jpg").write_bytes(jpeg[:jpeg.index(b"\xff\xda") + 40])
  (root / "cat" / "broken.png").write_bytes(b"not an image")
  return str(root)


def test_num_classes_of_every_set(classes_folder, tmp_path):
  expected = {"cifar10": 10, "mnist": 10, "digits": 10, "lsun_bedroom": 0, "celeb_a": 0,
              "8gaussians": 0}
  assert {n: data.num_classes(data_config(n)) for n in expected} == expected
  assert data.num_classes(data_config("image_folder", root=classes_folder)) == 3
  assert images.folder_classes(classes_folder) == list(CLASSES)
  # Images at the top level only, or in one subdirectory: no labels.
  Image.fromarray(picture(20, 20, 0)).save(tmp_path / "top.png")
  assert data.num_classes(data_config("image_folder", root=tmp_path)) == 0
  (tmp_path / "only").mkdir()
  Image.fromarray(picture(20, 20, 1)).save(tmp_path / "only" / "a.png")
  assert data.num_classes(data_config("image_folder", root=tmp_path)) == 0
  # What a run conditions on: nothing with labels off or absent.
  assert data.label_classes(data_config("digits")) == 10
  assert data.label_classes(data_config("digits", labels=False)) == 0
  unlabelled = data_config("lsun_bedroom")
  del unlabelled["labels"]
  assert data.label_classes(unlabelled) == 0
  assert "labels" in data.IMAGE_RULES and data.IMAGE_RULES["labels"](True) is None
  assert data.IMAGE_RULES["labels"]("yes") is not None


@pytest.mark.parametrize("name", ["lsun_bedroom", "celeb_a"])
def test_labels_of_a_set_without_them_is_one_line(name, tmp_path):
  line = (f"{name} has no class labels; train it unconditionally: drop data.labels "
          "(or set it False)")
  for ask in (lambda cfg: data.label_classes(cfg), lambda cfg: images.open_source(cfg, 0)):
    with pytest.raises(data.DataError) as err:
      ask(data_config(name, root=tmp_path))
    assert str(err.value) == line


def test_a_folder_without_classes_is_one_line(tmp_path):
  Image.fromarray(picture(20, 20, 0)).save(tmp_path / "top.png")
  cfg = data_config("image_folder", root=tmp_path)
  for ask in (data.label_classes, lambda c: images.open_source(c, 0)):
    with pytest.raises(data.DataError) as err:
      ask(cfg)
    assert str(err.value) == (f"image folder {tmp_path} has no class labels (its images are "
                              "not in two or more class subdirectories); train it "
                              "unconditionally: drop data.labels (or set it False)")
  # Images beside two class subdirectories belong to neither.
  for name in ("a", "b"):
    (tmp_path / name).mkdir()
    Image.fromarray(picture(20, 20, 1)).save(tmp_path / name / "x.png")
  with pytest.raises(data.DataError, match=r"^1 images directly under .* \(e.g. .*top.png\) "
                     "are in none of its 2 class subdirectories"):
    images.open_source(cfg, 0)


def test_digits_labels_are_their_images_targets():
  targets = digits_targets()
  batches, position = read(data_config("digits"), 4, 256)
  assert position == 1024
  labels = np.concatenate([b[1] for b in batches])
  assert all(b[1].dtype == np.int32 and b[1].shape == (256,) for b in batches)
  assert all(b[0].dtype == np.uint8 and b[0].shape == (256, 8, 8, 1) for b in batches)
  pixels = np.concatenate([b[0] for b in batches])
  # Every image is a load_digits image, and its label is that sample's target.
  assert all(label in targets[digit_levels(x)] for x, label in zip(pixels, labels))
  assert sorted(np.unique(labels)) == list(range(10))
  # Not a coincidence of few labels: a random pairing would miss nine in ten.
  assert sum(len(targets[digit_levels(x)]) == 1 for x in pixels) > 1000


def folder_label(image: np.ndarray) -> int:
  return round((float(image[..., 0].mean()) - 30) / 60)


def test_folder_labels_are_subdirectories_and_a_broken_file_drops_its_label(classes_folder):
  source = images.open_source(data_config("image_folder", root=classes_folder), 0)
  assert source.labels and source.num_classes == 3
  cfg = data_config("image_folder", 8, root=classes_folder)
  batches, position = read(cfg, 7, 3)  # three epochs of the 7 good images
  pixels = np.concatenate([b[0] for b in batches])
  labels = np.concatenate([b[1] for b in batches])
  # The red channel says the class each image was written into.
  np.testing.assert_array_equal(labels, [folder_label(x) for x in pixels])
  assert np.bincount(labels).tolist() == [9, 6, 6]
  # The truncated JPEG is read, and dropped with its label, once an epoch of 8.
  assert 22 <= position <= 24


@pytest.mark.parametrize("name", ["digits", "image_folder"])
def test_labelled_stream_resumes_from_its_position(name, classes_folder):
  cfg = data_config(name, 8, root=classes_folder if name == "image_folder" else "")
  whole, _ = read(cfg, 7, 3)
  head, position = read(cfg, 3, 3)
  tail, _ = read(cfg, 4, 3, start=position)
  # 9 images handed out; the folder's truncated JPEG is read once an epoch of 8.
  assert position == 9 if name == "digits" else 10 <= position <= 11
  for (a, la), (b, lb) in zip(whole, head + tail):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)


@pytest.mark.parametrize("name", ["digits", "image_folder"])
def test_images_without_labels_are_unchanged(name, classes_folder):
  """The same images, batches and positions as a pipeline with labels off."""
  root = classes_folder if name == "image_folder" else ""
  labelled, p1 = read(data_config(name, 8, root=root), 5, 4)
  plain, p2 = read(data_config(name, 8, root=root, labels=False), 5, 4)
  assert p1 == p2
  assert all(isinstance(b, np.ndarray) for b in plain)
  for (images_part, _), b in zip(labelled, plain):
    np.testing.assert_array_equal(images_part, b)


def test_tfds_mock_labels_pair_with_their_images(tmp_path):
  cfg = data_config("cifar10", 32, root=tmp_path, shuffle_buffer=4)
  with tfds.testing.mock_data(num_examples=12):
    # The mock's own pairing, read straight from tfds (cifar10 at 32 is exact pixels).
    ds = tfds.builder("cifar10", data_dir=str(tmp_path)).as_dataset(split="train")
    truth = {ex["image"].tobytes(): int(ex["label"]) for ex in tfds.as_numpy(ds)}
    batches, position = read(cfg, 6, 4)  # two epochs
    plain, _ = read(data_config("cifar10", 32, root=tmp_path, shuffle_buffer=4,
                                labels=False), 6, 4)
  assert position == 24 and len(truth) == 12
  labels = np.concatenate([b[1] for b in batches])
  assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 10
  assert len(set(labels.tolist())) > 1
  pairs = [(x.tobytes(), int(label)) for b in batches for x, label in zip(*b)]
  assert all(truth[x] == label for x, label in pairs)
  for (a, _), b in zip(batches, plain):
    np.testing.assert_array_equal(a, b)


def test_critic_stacks_stack_labels():
  cfg = data_config("digits")
  flat, _ = read(cfg, 3 + 1 + 2 + 2, 4)
  stacks = images.critic_stacks(images.build_image_dataset(cfg, 4, 3), np.array([3, 1]), 2)
  it, first = stacks.as_numpy_iterator(), 0
  for size in (3, 1, 2, 2):
    position, stack, labels = next(it)
    assert labels.shape == (size, 4) and labels.dtype == np.int32
    np.testing.assert_array_equal(stack, np.stack([b[0] for b in flat[first:first + size]]))
    np.testing.assert_array_equal(labels, np.stack([b[1] for b in flat[first:first + size]]))
    first += size
    assert position == 4 * first


def run_config(labels: bool) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      data=data_config("digits", labels=labels), seed=0, batch_size=16, n_critic=2,
      num_generator_steps=10, n_critic_schedule="constant"))


@pytest.mark.parametrize("parallelism", ["jit", "pmap"])
def test_the_stream_puts_labels_on_the_devices_like_the_images(parallelism):
  assert jax.device_count() == 8
  devices = Devices(parallelism)
  targets = digits_targets()
  source = inputs.open_data(run_config(True), devices)
  assert source.num_classes == 10
  real, labels = source.stream(0, 0).next(2)
  plain = inputs.open_data(run_config(False), devices).stream(0, 0).next(2)
  assert isinstance(plain, jax.Array)
  np.testing.assert_array_equal(np.asarray(real), np.asarray(plain))
  assert labels.dtype == np.int32
  if parallelism == "jit":
    assert real.shape == (2, 16, 8, 8, 1) and labels.shape == (2, 16)
    assert labels.sharding.mesh == real.sharding.mesh
    assert tuple(labels.sharding.spec) == tuple(real.sharding.spec)[:2] == (None, "data")
    # Each device holds the labels of exactly the rows of images it holds.
    image_rows = {s.device: s.index[:2] for s in real.addressable_shards}
    assert {s.device: s.index for s in labels.addressable_shards} == image_rows
    assert all(s.data.shape == (2, 2) for s in labels.addressable_shards)
  else:
    assert real.shape == (8, 2, 2, 8, 8, 1) and labels.shape == (8, 2, 2)
    assert ([s.device for s in labels.addressable_shards]
            == [s.device for s in real.addressable_shards])
  pixels, values = np.asarray(real).reshape(-1, 8, 8, 1), np.asarray(labels).reshape(-1)
  assert all(label in targets[digit_levels(x)] for x, label in zip(pixels, values))


def test_synthetic_labels():
  devices = Devices("jit")
  plain = inputs.open_data(run_config(False), devices, synthetic=True).stream(0, 0).next(3)
  real, labels = inputs.open_data(run_config(True), devices, synthetic=True).stream(0, 0).next(3)
  np.testing.assert_array_equal(np.asarray(real), np.asarray(plain))
  assert labels.shape == (3, 16) and labels.dtype == np.int32
  assert tuple(labels.sharding.spec) == tuple(real.sharding.spec)[:2] == (None, "data")
  values = np.asarray(labels)
  assert values.min() >= 0 and values.max() < 10 and len(np.unique(values)) > 3
