"""Image pipelines: every source on tiny data the test writes or mocks, geometry, seeds, shards, errors."""
import hashlib
import logging
import os

import lmdb
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits

from tests.conftest import encode, picture
from wgan_jax import data
from wgan_jax.data import images


def data_config(name: str, image_size: int = 32, root: str = "", split: str = "train",
                shuffle_buffer: int = 16) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(name=name, image_size=image_size, dir=str(root),
                                        split=split, shuffle_buffer=shuffle_buffer,
                                        dequantize=False, labels=False))


def first_batch(cfg, batch_size: int = 4, seed: int = 0, **kw) -> np.ndarray:
  """The first batch, as the uint8 pixels that cross to the devices."""
  return next(images.Batches(images.build_image_dataset(cfg, batch_size, seed, **kw)))


def scaled(pixels: np.ndarray) -> np.ndarray:
  """uint8 pixels as the critic sees them (updates.real_to_float): [-1, 1]."""
  return pixels.astype(np.float32) / 127.5 - 1.0


def digests(batches) -> list[str]:
  return [hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()
          for b in batches for x in b]





@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
  """Nested jpg / PNG / webp images, a corrupt .jpg and a text file."""
  root = tmp_path_factory.mktemp("folder")
  (root / "a" / "b").mkdir(parents=True)
  (root / "c").mkdir()
  Image.fromarray(picture(48, 40, 0)).save(root / "one.jpg")
  Image.fromarray(picture(40, 64, 1)).save(root / "a" / "two.PNG")
  Image.fromarray(picture(50, 50, 2)).save(root / "a" / "b" / "three.webp")
  Image.fromarray(picture(36, 36, 3)).convert("L").save(root / "c" / "four.jpeg")
  (root / "c" / "broken.jpg").write_bytes(b"not an image at all")
  (root / "c" / "notes.txt").write_text("ignored")
  return str(root)


def test_image_shape_and_names():
  assert data.names(data.IMAGE) == ("lsun_bedroom", "cifar10", "mnist", "celeb_a",
                                    "image_folder", "digits")
  assert data.names(data.TOY) == ("8gaussians", "25gaussians", "swissroll")
  assert data.data_shape(data_config("mnist", 28)) == (28, 28, 1)
  assert data.data_shape(data_config("digits", 16)) == (16, 16, 1)
  assert data.data_shape(data_config("lsun_bedroom", 64)) == (64, 64, 3)
  # Every registered source exists where the registry says.
  for name in data.DATASETS:
    assert callable(data.open_source(name)), name


def test_digits_batch_values():
  b = first_batch(data_config("digits", 16), batch_size=8)
  assert b.shape == (8, 16, 16, 1) and b.dtype == np.uint8
  assert b.min() == 0 and b.max() == 255
  # At the native 8x8 the pixels are load_digits' values 0..16 scaled by 255/16 and
  # rounded to uint8 (within half a level of 16/255).
  b8 = first_batch(data_config("digits", 8), batch_size=8)
  levels = b8.astype(np.float64) * 16 / 255
  np.testing.assert_allclose(levels, np.round(levels), atol=0.5 * 16 / 255)
  reference = {x.tobytes() for x in load_digits().images.astype(np.int64)}
  assert all(np.round(x[..., 0]).astype(np.int64).tobytes() in reference for x in levels)


@pytest.mark.parametrize("name,size,channels", [("cifar10", 32, 3), ("mnist", 32, 1),
                                                ("celeb_a", 24, 3)])
def test_tfds_batches(name, size, channels, tmp_path):
  # Mock pixels are uniform on 0..255: cifar10 at its native 32 keeps them exactly,
  # mnist's 28 -> 32 upsampling stays near them, celeb_a's 218x178 -> 24 averages to grey.
  cfg = data_config(name, size, root=tmp_path)
  with tfds.testing.mock_data(num_examples=12):
    pixels = first_batch(cfg, batch_size=4)
    again = first_batch(cfg, batch_size=4)
    other = first_batch(cfg, batch_size=4, seed=1)
  assert pixels.shape == (4, size, size, channels) and pixels.dtype == np.uint8
  b = scaled(pixels)
  if name == "cifar10":
    assert b.min() == -1.0 and b.max() > 0.99
  elif name == "mnist":
    assert b.min() < -0.9 and b.max() > 0.9
  else:
    assert abs(b.mean()) < 0.05 and 0.02 < b.std() < 0.3
  np.testing.assert_array_equal(pixels, again)
  assert not np.array_equal(pixels, other)


@pytest.mark.parametrize("name", ["cifar10", "mnist", "celeb_a"])
def test_tfds_not_prepared_is_one_line(name, tmp_path):
  with pytest.raises(images.DataError) as err:
    images.build_image_dataset(data_config(name, root=tmp_path), 4, 0)
  msg = str(err.value)
  assert "\n" not in msg
  assert f"`tfds build {name} --data_dir={tmp_path}`" in msg
  assert f"--experiment.data.dir={tmp_path}" in msg


def test_lsun_batch_from_parent_and_lmdb_dir(lsun_root):
  b = first_batch(data_config("lsun_bedroom", 32, root=lsun_root), batch_size=4)
  assert b.shape == (4, 32, 32, 3) and b.dtype == np.uint8
  assert b.min() < 26 and b.max() > 229  # gradients run 0..~250
  direct = first_batch(data_config("lsun_bedroom", 32,
                                   root=os.path.join(lsun_root, "bedroom_train_lmdb")), 4)
  np.testing.assert_array_equal(b, direct)


def test_lsun_missing_is_one_line(tmp_path):
  with pytest.raises(images.DataError) as err:
    images.build_image_dataset(data_config("lsun_bedroom", root=tmp_path), 4, 0)
  msg = str(err.value)
  assert "\n" not in msg
  assert msg.startswith(f"LSUN bedrooms not found at {tmp_path}: ")
  assert "http://dl.yf.io/lsun/scenes/" in msg and "python download.py -c bedroom" in msg


def test_folder_scan_and_batch(folder, caplog):
  readable, skipped = images.scan_image_folder(folder)
  assert [os.path.relpath(p, folder) for p in readable] == [
      "a/b/three.webp", "a/two.PNG", "c/four.jpeg", "one.jpg"]
  assert [os.path.relpath(p, folder) for p in skipped] == ["c/broken.jpg"]
  with caplog.at_level(logging.WARNING):
    b = first_batch(data_config("image_folder", 24, root=folder), batch_size=6)
  assert f"image_folder: skipped 1 unreadable files of 5 under {folder}" in caplog.text
  assert b.shape == (6, 24, 24, 3) and b.dtype == np.uint8
  # The grayscale JPEG comes out with three equal channels.
  gray = [x for x in b if np.allclose(x[..., 0], x[..., 1]) and np.allclose(x[..., 1], x[..., 2])]
  assert len(gray) >= 1


def test_folder_survives_a_file_that_passes_verify_but_fails_to_decode(tmp_path):
  Image.fromarray(picture(40, 40, 0)).save(tmp_path / "good.png")
  jpeg = encode(picture(64, 64, 1), "JPEG")
  (tmp_path / "truncated.jpg").write_bytes(jpeg[:jpeg.index(b"\xff\xda") + 40])  # mid-scan
  readable, skipped = images.scan_image_folder(str(tmp_path))
  assert len(readable) == 2 and skipped == []  # PIL's verify does not see the truncation
  b = first_batch(data_config("image_folder", 16, root=tmp_path), batch_size=3)
  assert b.shape == (3, 16, 16, 3)
  assert len(set(digests([b]))) == 1  # only good.png is left


@pytest.mark.parametrize("case", ["missing", "empty", "no_images", "unset"])
def test_folder_errors_are_one_line(case, tmp_path):
  root = tmp_path / "imgs"
  if case != "missing":
    root.mkdir()
  if case == "no_images":
    (root / "readme.txt").write_text("x")
    (root / "bad.png").write_bytes(b"\x89PNG but not really")
  cfg = data_config("image_folder", root="" if case == "unset" else root)
  with pytest.raises(images.DataError) as err:
    images.build_image_dataset(cfg, 4, 0)
  msg = str(err.value)
  assert "\n" not in msg
  assert "jpg/jpeg/png/webp" in msg and "--experiment.data.dir" in msg
  if case != "unset":
    assert str(root) in msg
  if case == "no_images":
    assert "(1 unreadable)" in msg


def test_resize_short_side_and_centre_crop():
  # 40 high, 80 wide, left half black, right half white -> 32x64 -> middle 32 columns.
  wide = np.zeros((40, 80, 3), np.uint8)
  wide[:, 40:] = 255
  out = images.resize_and_crop(tf.constant(wide), 32).numpy()
  assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  # Area averaging at scale 0.8: resized column 31 covers source 38.75..40 (all black),
  # column 32 covers 40..41.25 (all white); the crop keeps columns 16..47.
  np.testing.assert_array_equal(out[:, :16], 0)
  np.testing.assert_array_equal(out[:, 16:], 255)
  # The transpose: top black, bottom white, cropped in the middle rows.
  tall = np.transpose(wide, (1, 0, 2))
  np.testing.assert_array_equal(images.resize_and_crop(tf.constant(tall), 32).numpy(),
                                np.transpose(out, (1, 0, 2)))
  # A white right fifth (cols 64..79, resized 51.2..64) lies wholly outside the crop (16..48).
  quarter = np.zeros((40, 80, 3), np.uint8)
  quarter[:, 64:] = 255
  np.testing.assert_array_equal(images.resize_and_crop(tf.constant(quarter), 32).numpy(), 0)


def test_growing_is_bilinear_not_nearest():
  # 2x2, left black, right white -> 4x4: half-pixel bilinear gives 0, 63.75, 191.25,
  # 255, rounded to uint8 (nearest neighbour would give 0, 0, 255, 255).
  tiny = np.array([[0, 255], [0, 255]], np.uint8)[..., None]
  out = images.resize_and_crop(tf.constant(tiny), 4).numpy()
  assert out.shape == (4, 4, 1)
  np.testing.assert_array_equal(out[..., 0], np.tile([0, 64, 191, 255], (4, 1)))


def test_geometry_through_the_folder_pipeline(tmp_path):
  wide = np.zeros((40, 80, 3), np.uint8)
  wide[:, 40:] = 255
  Image.fromarray(wide).save(tmp_path / "half.png")
  b = first_batch(data_config("image_folder", 32, root=tmp_path), batch_size=1)
  np.testing.assert_array_equal(b[0], images.resize_and_crop(tf.constant(wide), 32).numpy())


@pytest.mark.parametrize("name", ["digits", "lsun_bedroom", "image_folder"])
def test_same_seed_same_batches_other_seed_differs(name, lsun_root, folder):
  root = {"digits": "", "lsun_bedroom": lsun_root, "image_folder": folder}[name]
  cfg = data_config(name, 16, root=root)
  a = first_batch(cfg, batch_size=4, seed=7)
  b = first_batch(cfg, batch_size=4, seed=7)
  c = first_batch(cfg, batch_size=4, seed=8)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def take(cfg, n_batches, batch_size, **kw):
  it = images.Batches(images.build_image_dataset(cfg, batch_size, 0, **kw))
  return [next(it) for _ in range(n_batches)]


@pytest.mark.parametrize("name,total", [("lsun_bedroom", 6), ("image_folder", 4)])
def test_processes_read_disjoint_shares(name, total, lsun_root, folder):
  cfg = data_config(name, 16, root=lsun_root if name == "lsun_bedroom" else folder)
  whole = set(digests(take(cfg, total, 1)))
  assert len(whole) == total
  # One epoch of each process's share: half the images each, no overlap, all covered.
  shares = [set(digests(take(cfg, total // 2, 1, process_index=i, process_count=2)))
            for i in range(2)]
  assert [len(s) for s in shares] == [total // 2, total // 2]
  assert not shares[0] & shares[1]
  assert shares[0] | shares[1] == whole


def test_digits_processes_read_disjoint_shares():
  ref = load_digits().images.astype(np.int64)
  cfg = data_config("digits", 8)
  seen = []
  for i, n in enumerate([899, 898]):  # 1,797 images split two ways
    (b,) = take(cfg, 1, n, process_index=i, process_count=2)
    seen.append({np.round(x[..., 0] * (16 / 255)).astype(np.int64).tobytes() for x in b})
    assert seen[-1] == {x.tobytes() for x in ref[i::2]}
  assert len(seen[0] | seen[1]) == len({x.tobytes() for x in ref})


def test_data_limit_trains_on_the_first_images_of_the_set_across_processes():
  ref = load_digits().images.astype(np.int64)
  cfg = data_config("digits", 8)
  cfg.limit = 7
  seen = set()
  for i, n in enumerate([4, 3]):  # the first 7 split two ways, whatever the shares
    (b,) = take(cfg, 1, n, process_index=i, process_count=2)
    share = {np.round(x[..., 0] * (16 / 255)).astype(np.int64).tobytes() for x in b}
    assert share == {x.tobytes() for x in ref[:7][i::2]}
    seen |= share
  assert seen == {x.tobytes() for x in ref[:7]}
  # The stream repeats those 7 only.
  many = first_batch(cfg, batch_size=70)
  assert {np.round(x[..., 0] * (16 / 255)).astype(np.int64).tobytes() for x in many} == seen


def test_data_limit_on_a_sliced_tfds_split_is_one_line(tmp_path):
  cfg = data_config("mnist", 32, root=tmp_path, split="train[:50%]")
  cfg.limit = 10
  with tfds.testing.mock_data(num_examples=12):
    with pytest.raises(images.DataError, match=r"^data.split='train\[:50%\]' is already a slice "
                       r"and data.limit=10 cuts it again: give one of them$"):
      images.build_image_dataset(cfg, 4, 0)
  # tfds cuts the split itself (its mock data ignores slices, so the string is checked).
  assert images._first("train", 10) == "train[:10]" and images._first("test", 0) == "test"


def test_unknown_name():
  with pytest.raises(images.DataError, match="unknown image data set 'svhn'; use one of "
                     "lsun_bedroom, cifar10, mnist, celeb_a, image_folder, digits"):
    images.build_image_dataset(data_config("svhn"), 4, 0)


def test_empty_share_is_a_data_error(tmp_path):
  Image.fromarray(picture(20, 20, 0)).save(tmp_path / "only.png")
  with pytest.raises(images.DataError, match="1 images under .* leave none for process 1 of 2"):
    images.build_image_dataset(data_config("image_folder", root=tmp_path), 1, 0,
                               process_index=1, process_count=2)


def test_decode_throughput_counts_images(lsun_root, monkeypatch):
  # A clock that advances 0.1 s a reading: the loop reads it once before
  # starting, once per batch, and once at the end.
  ticks = iter(np.arange(0, 100, 0.1))
  monkeypatch.setattr(images.time, "perf_counter", lambda: float(next(ticks)))
  count, seconds = images.decode_throughput(data_config("lsun_bedroom", 16, root=lsun_root),
                                            4, 0.35)
  # Readings 0.1, 0.2, 0.3 fall inside 0.35 s: three batches of 4, then the end at 0.5.
  assert count == 12
  assert seconds == pytest.approx(0.5)


def positioned(cfg, n_batches, batch_size, start=0):
  it = images.Batches(images.build_image_dataset(cfg, batch_size, 3, start=start), start)
  out = []
  for _ in range(n_batches):
    out.append(next(it))
  return out, it.position


@pytest.fixture(scope="module")
def truncated_folder(tmp_path_factory) -> str:
  """Four good images and a truncated JPEG that passes PIL's verify but not decoding."""
  root = tmp_path_factory.mktemp("truncated")
  for i in range(4):
    Image.fromarray(picture(20 + i, 24, i)).save(root / f"{i}.png")
  data = encode(picture(40, 40, 9), "JPEG")
  (root / "9.jpg").write_bytes(data[:-20])
  return str(root)


@pytest.mark.parametrize("name", ["digits", "lsun_bedroom", "image_folder"])
def test_stream_resumes_from_its_position(name, lsun_root, truncated_folder):
  """A pipeline started at a saved position continues the stream exactly,
  across epoch boundaries and past a file that fails to decode."""
  root = {"digits": "", "lsun_bedroom": lsun_root, "image_folder": truncated_folder}[name]
  cfg = data_config(name, 16, root=root)
  whole, _ = positioned(cfg, 7, 3)
  head, position = positioned(cfg, 3, 3)
  tail, _ = positioned(cfg, 4, 3, start=position)
  for a, b in zip(whole, head + tail):
    np.testing.assert_array_equal(a, b)
  # 9 images handed out; the truncated JPEG is read (and dropped) once an epoch of 5.
  assert position == (9 if name != "image_folder" else 11)


def test_tfds_stream_resumes_from_its_position(tmp_path):
  cfg = data_config("cifar10", 32, root=tmp_path, shuffle_buffer=4)
  with tfds.testing.mock_data(num_examples=10):
    whole, _ = positioned(cfg, 6, 4)
    head, position = positioned(cfg, 2, 4)
    tail, _ = positioned(cfg, 4, 4, start=position)
  assert position == 8
  for a, b in zip(whole, head + tail):
    np.testing.assert_array_equal(a, b)


def test_lsun_shuffle_buffer_holds_indices_not_bytes(lsun_root):
  source = images.open_source(data_config("lsun_bedroom", 16, root=lsun_root), 0)
  assert source.ds.element_spec.dtype == tf.int64


def test_critic_stacks_follow_the_schedule():
  """Each generator iteration's batches, stacked by tf.data as the schedule
  says (100-update phases and all), in stream order, with their positions."""
  cfg = data_config("digits", 8)
  flat, _ = positioned(cfg, 3 + 1 + 2 + 2 + 2, 4)
  ds = images.build_image_dataset(cfg, 4, 3)
  stacks = images.critic_stacks(ds, np.array([3, 1, 2]), default_size=2).as_numpy_iterator()
  first = 0
  for size in (3, 1, 2, 2, 2):  # the schedule, then the default
    position, stack = next(stacks)
    assert stack.shape == (size, 4, 8, 8, 1) and stack.dtype == np.uint8
    np.testing.assert_array_equal(stack, np.stack(flat[first:first + size]))
    first += size
    assert position == 4 * first


def test_lsun_skips_a_value_that_does_not_decode_and_counts_it(tmp_path):
  env = lmdb.open(str(tmp_path / "bedroom_train_lmdb"), map_size=1 << 24)
  with env.begin(write=True) as txn:
    for i in range(4):
      txn.put(f"{i:04d}".encode(), encode(picture(40, 40, i), "JPEG"))
    txn.put(b"0002x", b"\xff\xd8 not a jpeg at all")  # sorts between good ones
  env.close()
  cfg = data_config("lsun_bedroom", 16, root=tmp_path)
  batches, position = positioned(cfg, 4, 2)  # two epochs of 4 good images
  assert all(b.shape == (2, 16, 16, 3) for b in batches)
  # 8 good images handed out; the bad value is read, and counted, once an epoch of 5.
  assert 9 <= position <= 10


def test_lsun_whose_data_mdb_is_no_lmdb_is_one_line(tmp_path):
  folder = tmp_path / "bedroom_train_lmdb"
  folder.mkdir()
  (folder / "data.mdb").write_bytes(b"")
  for content in (b"", b"garbage" * 1000):
    (folder / "data.mdb").write_bytes(content)
    with pytest.raises(images.DataError) as err:
      images.open_source(data_config("lsun_bedroom", root=tmp_path), 0)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{folder}/data.mdb is not a readable LMDB (")
    assert message.endswith("download and unzip bedroom_train_lmdb.zip again")


def test_a_damaged_tfds_dataset_info_is_one_line(tmp_path):
  info = tmp_path / "cifar10" / "3.0.2" / "dataset_info.json"
  info.parent.mkdir(parents=True)
  info.write_text("{garbage")
  with pytest.raises(images.DataError) as err:
    images.open_source(data_config("cifar10", root=tmp_path), 0)
  message = str(err.value)
  assert "\n" not in message
  assert message.startswith(f"cifar10 under {tmp_path} cannot be read (ParseError: ")
  assert "rebuild it with `tfds build cifar10 --data_dir=...`" in message


@pytest.mark.parametrize("name", ["image_folder", "lsun_bedroom"])
def test_a_data_dir_that_is_a_file_says_so(name, tmp_path):
  path = tmp_path / "images.zip"
  path.write_bytes(b"PK")
  with pytest.raises(images.DataError, match="is a file"):
    images.open_source(data_config(name, root=path), 0)


def test_a_folder_linked_into_itself_counts_each_image_once(tmp_path):
  root = tmp_path / "images"
  (root / "sub").mkdir(parents=True)
  Image.fromarray(picture(20, 20, 0)).save(root / "a.png")
  Image.fromarray(picture(20, 20, 1)).save(root / "sub" / "b.png")
  os.symlink(root, root / "sub" / "loop")  # images/sub/loop -> images
  os.symlink(root / "a.png", root / "sub" / "also_a.png")
  readable, skipped = images.scan_image_folder(str(root))
  assert [os.path.relpath(p, root) for p in readable] == ["a.png", "sub/b.png"]
  assert skipped == []
