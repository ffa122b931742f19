"""One tf.data pipeline for every image data set.

Each source gives encoded (or raw) images for this process's share; the shared
tail decodes, resizes the short side to `image_size` (area averaging when
shrinking, bilinear when growing), centre-crops a square, rounds to uint8
pixels (as PIL does before the references' ToTensor), shuffles with the seed,
repeats, batches, stacks each generator iteration's critic batches and
prefetches. Pixels cross to the accelerator as uint8 and become floats there
(`updates.real_to_float`): a quarter of the bytes of float32. Index-like sources (LSUN key indices, folder paths,
digits) are shuffled in full each epoch, which costs a few bytes an image; tfds
sources shuffle files and then `shuffle_buffer` still-encoded examples, so the
buffer holds bytes rather than decoded pixels.

The stream of a (config, seed, process) is fixed, so a position in it (how
many elements this process has read) is all a checkpoint needs: a pipeline
built with `start=position` continues exactly where the saved one was. Each
batch comes with the position after it; skipping happens before decoding.

With `data.labels` every element carries its class from the source on (tfds's
"label", sklearn's targets, a folder's class subdirectory), so shuffling,
skipping, dropping an undecodable image and batching keep each image with its
label, and the images are the same as without labels. Batches are then
(position, images, labels int32 [batch]).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
import time
from typing import Any, Callable, Iterator
import warnings

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from wgan_jax import data
from wgan_jax.data import DataError

try:  # tf only feeds data: keep it off the accelerator the model trains on.
  tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError):  # already initialised by someone else
  pass


FOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# Formats PIL may recognise that tf.io.decode_image can also decode.
_TF_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
DEFAULT_LSUN_DIR = "~/data/lsun"
# Images a source tries to decode when opened before it declares none decodable.
PROBE_LIMIT = 100
# An image folder's images above this many pixels (e.g. 6000 x 6000) are resized
# and cropped once, when the folder is opened, rather than decoded at full size at
# every draw; at most SHRINK_LIMIT of them, so that opening stays bounded too.
LARGE_PIXELS = 1 << 25
SHRINK_LIMIT = 100


@dataclasses.dataclass(frozen=True)
class ImageSource:
  """One process's share of a data set: cheap elements and how to decode them."""
  ds: tf.data.Dataset                    # this process's elements, one epoch, unshuffled
  decode: Callable[[tf.Tensor], tf.Tensor]  # element -> [h, w, c] pixels in [0, 255]
  shuffle_buffer: int
  may_fail: bool = False                 # drop elements whose decode fails (logged by tf)
  # Elements are (element, label int32) pairs, labels in [0, num_classes).
  labels: bool = False
  num_classes: int = 0


# ---------------------------------------------------------------- geometry

def resize_and_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """[h, w, c] pixels in [0, 255] -> [size, size, c] uint8: short side to size, centre crop."""
  image = tf.cast(image, tf.float32)
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  # Integer rounding of the long side, so the geometry is exact and testable.
  nh = tf.where(h <= w, size, (h * size + w // 2) // w)
  nw = tf.where(h <= w, (w * size + h // 2) // h, size)
  shape = tf.stack([nh, nw])
  # Area averaging is antialiased and twice as fast as antialiased bilinear when
  # shrinking; it would be nearest-neighbour when growing, where bilinear is right.
  image = tf.cond(tf.minimum(h, w) >= size,
                  lambda: tf.image.resize(image, shape, method="area"),
                  lambda: tf.image.resize(image, shape, method="bilinear"))
  top, left = (nh - size) // 2, (nw - size) // 2
  image = image[top:top + size, left:left + size]
  image = tf.ensure_shape(image, [size, size, None])
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _decoder(channels: int) -> Callable[[tf.Tensor], tf.Tensor]:
  def decode(data: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    return tf.ensure_shape(image, [None, None, channels])
  return decode


# ---------------------------------------------------------------- sources

def tfds_source(cfg, seed, process_index, process_count, labels=False) -> ImageSource:
  name = cfg.name
  try:
    builder = tfds.builder(name, data_dir=cfg.dir or None)
  except Exception as e:  # pylint: disable=broad-except  # tfds raises what its parser raises
    where = cfg.dir or "tfds's default data_dir"
    raise DataError(f"{name} under {where} cannot be read ({type(e).__name__}: "
                    f"{' '.join(str(e).split())[:160]}); its dataset_info.json or files are "
                    f"damaged: rebuild it with `tfds build {name} --data_dir=...` on a machine "
                    "with internet and copy it here again") from e
  split = tfds.even_splits(_first(cfg.split, cfg.get("limit", 0)), n=process_count)[process_index]
  try:
    ds = builder.as_dataset(
        split=split, shuffle_files=True,
        read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False),
        decoders={"image": tfds.decode.SkipDecoding()})
  except (AssertionError, tfds.core.registered.DatasetNotFoundError) as e:
    data_dir = cfg.dir or os.path.dirname(os.path.dirname(builder.data_dir))
    raise DataError(
        f"{name} is not prepared under {data_dir}: on a machine with internet run "
        f"`tfds build {name} --data_dir={data_dir}` (or python -c \"import tensorflow_datasets "
        f"as tfds; tfds.builder('{name}', data_dir='{data_dir}').download_and_prepare()\"), "
        f"copy the folder here and pass --experiment.data.dir={data_dir}") from e
  decode, buffer = _decoder(data.data_shape(cfg)[2]), max(1, cfg.shuffle_buffer)
  if labels:  # The ClassLabel feature of cifar10 and mnist.
    ds = ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ImageSource(ds, decode, buffer, labels=True, num_classes=data.get(name).num_classes)
  ds = ds.map(lambda ex: ex["image"], num_parallel_calls=tf.data.AUTOTUNE)
  return ImageSource(ds, decode, buffer)


def _first(split: str, limit: int) -> str:
  """tfds split `split` cut to its first `limit` examples (all of them at 0)."""
  if not limit:
    return split
  if "[" in split:
    raise DataError(f"data.split={split!r} is already a slice and data.limit={limit} cuts "
                    "it again: give one of them")
  return f"{split}[:{limit}]"


def _shard(items: np.ndarray, cfg, process_index: int, process_count: int, where: str):
  """This process's share of the first `data.limit` items (all of them at 0)."""
  share = items[:cfg.get("limit", 0) or None][process_index::process_count]
  if len(share) == 0:
    raise DataError(f"{cfg.name}: {len(items)} images under {where} leave none for process "
                    f"{process_index} of {process_count}; use more data or fewer processes")
  return share


def _first_decodable(items, read, where: str, limit: int = PROBE_LIMIT) -> None:
  """A DataError unless one of the first `limit` items decodes: a source that
  yields nothing decodable would otherwise be skipped through forever."""
  from wgan_jax.data import lsun  # pylint: disable=import-outside-toplevel
  errors = []
  for item in itertools.islice(items, limit):
    try:
      tf.io.decode_image(read(item), expand_animations=False)
      return
    except (tf.errors.OpError, OSError, KeyError, ValueError, lsun.lmdb.Error) as e:
      errors.append(f"{item}: {type(e).__name__}")
  raise DataError(f"none of the first {len(errors)} images of {where} can be decoded (e.g. "
                  f"{errors[0]}); check the files, or point --experiment.data.dir elsewhere")


def lsun_source(cfg, seed, process_index, process_count, labels=False) -> ImageSource:
  del seed, labels  # No labels: `open_source` refuses them.
  from wgan_jax.data import lsun  # pylint: disable=import-outside-toplevel
  root = os.path.abspath(os.path.expanduser(cfg.dir or DEFAULT_LSUN_DIR))
  if os.path.isfile(root) and os.path.basename(root) != "data.mdb":
    raise DataError(f"--experiment.data.dir={cfg.dir} is a file; pass the LMDB folder "
                    "(bedroom_train_lmdb, holding data.mdb) or its parent")
  path = lsun.find_lmdb(os.path.dirname(root) if os.path.isfile(root) else root, "bedroom",
                        cfg.split)
  if path is None:
    raise DataError(
        f"LSUN bedrooms not found at {root}: download bedroom_train_lmdb.zip from "
        "http://dl.yf.io/lsun/scenes/ (or with the LSUN download.py: python download.py "
        "-c bedroom), unzip it, and pass --experiment.data.dir=/path/to/bedroom_train_lmdb")
  try:
    keys = lsun.read_keys(path)
  except lsun.lmdb.Error as e:
    raise DataError(f"{path}/data.mdb is not a readable LMDB ({type(e).__name__}: "
                    f"{' '.join(str(e).split())[:120]}); download and unzip "
                    "bedroom_train_lmdb.zip again") from e
  keys = _shard(keys, cfg, process_index, process_count, path)
  reader = lsun.LmdbReader(path, keys)
  _first_decodable(range(len(keys)), reader, path)
  logging.info("lsun_bedroom: %d images for process %d of %d in %s",
               len(keys), process_index, process_count, path)

  def read(index: tf.Tensor) -> tf.Tensor:
    data = tf.numpy_function(reader, [index], tf.string, stateful=False)
    return tf.ensure_shape(data, [])

  decode = _decoder(3)
  # Shuffle key indices and read after: the buffer holds 8 bytes an image, not JPEGs.
  # A value that does not decode is skipped (and counted by the stream's positions).
  return ImageSource(tf.data.Dataset.range(len(keys)), lambda i: decode(read(i)), len(keys),
                     may_fail=True)


def _scan_one(path: str) -> tuple[int, int] | None:
  """(width, height) of the image at `path` if PIL's verify passes and TF decodes
  its format, else None."""
  try:
    with open(path, "rb") as f:
      from PIL import Image  # pylint: disable=import-outside-toplevel
      with Image.open(f) as image:
        fmt, size = image.format, image.size
        image.verify()
    return size if fmt in _TF_FORMATS else None
  except Exception:  # pylint: disable=broad-except
    return None


def _utf8(path: str) -> bool:
  """Whether `path` is valid UTF-8 (TF's strings are; os.walk gives other bytes as
  surrogates, which TF cannot take)."""
  try:
    path.encode("utf-8")
    return True
  except UnicodeEncodeError:
    return False


def _shown(path: str) -> str:
  """`path` printable whatever its bytes (b"\\xff" for a byte that is not UTF-8)."""
  return os.fsencode(path).decode("utf-8", "backslashreplace")


def _image_paths(root: str) -> list[str]:
  """The paths under `root` named like images, sorted. Symbolic links are followed,
  each folder and file once (a folder linked into itself is not a source of
  endless copies)."""
  paths, seen_folders, seen_files = [], set(), set()
  for folder, dirs, files in os.walk(root, followlinks=True):
    stat = os.stat(folder)
    if (stat.st_dev, stat.st_ino) in seen_folders:
      dirs[:] = []
      continue
    seen_folders.add((stat.st_dev, stat.st_ino))
    dirs.sort()
    for name in files:
      path = os.path.join(folder, name)
      real = os.path.realpath(path)
      if name.lower().endswith(FOLDER_EXTENSIONS) and real not in seen_files:
        seen_files.add(real)
        paths.append(path)
  paths.sort()
  return paths


def _scan(root: str) -> tuple[list[str], list[str], dict[str, tuple[int, int]]]:
  """(readable, skipped, each readable image's (width, height)) under `root`.
  Skipped: names that are not UTF-8 (not opened), and files that fail PIL's verify."""
  paths = _image_paths(root)
  named = [p for p in paths if _utf8(p)]
  from PIL import Image  # pylint: disable=import-outside-toplevel
  # Large images are this module's to handle (`LARGE_PIXELS`): no warning from PIL.
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
      sizes = list(pool.map(_scan_one, named))
  readable = [p for p, size in zip(named, sizes) if size]
  skipped = sorted(set(paths) - set(readable))
  return readable, skipped, {p: size for p, size in zip(named, sizes) if size}


def scan_image_folder(root: str) -> tuple[list[str], list[str]]:
  """(readable, skipped) image paths under `root`, each sorted; skipped ones fail PIL's
  verify, or have names that are not UTF-8. Symbolic links are followed, each folder
  and file once."""
  readable, skipped, _ = _scan(root)
  return readable, skipped


def _class_of(path: str, root: str) -> str:
  """The immediate subdirectory of `root` holding `path` ("" at the top level)."""
  parts = os.path.relpath(path, root).split(os.sep)
  return parts[0] if len(parts) > 1 else ""


def _classes(paths: list[str], root: str) -> list[str]:
  names = sorted({_class_of(p, root) for p in paths} - {""})
  return names if len(names) > 1 else []  # One class is no labels.


def folder_classes(root: str) -> list[str]:
  """The class names of an image folder, sorted (label i is the i-th): its
  immediate subdirectories holding files named like images (at any depth, with
  UTF-8 names), when there are at least two; [] otherwise. Files are not opened."""
  return _classes([p for p in _image_paths(root) if _utf8(p)], root)


def folder_root(cfg) -> str:
  """The image folder of data config `cfg`, absolute, or a DataError saying what to pass."""
  accepted = "/".join(e[1:] for e in FOLDER_EXTENSIONS)
  if not cfg.dir:
    raise DataError(f"image_folder needs a folder of {accepted} images: pass "
                    "--experiment.data.dir=/path/to/images")
  root = os.path.abspath(os.path.expanduser(cfg.dir))
  if os.path.exists(root) and not os.path.isdir(root):
    raise DataError(f"image folder {root} is a file: pass --experiment.data.dir=/path/to/"
                    f"images, a folder holding {accepted} files (any nesting)")
  if not os.path.isdir(root):
    raise DataError(f"image folder {root} does not exist: pass --experiment.data.dir=/path/to/"
                    f"images, a folder holding {accepted} files (any nesting)")
  return root


def folder_source(cfg, seed, process_index, process_count, labels=False) -> ImageSource:
  del seed
  accepted = "/".join(e[1:] for e in FOLDER_EXTENSIONS)
  root = folder_root(cfg)
  readable, skipped, sizes = _scan(root)
  unnamed = [p for p in skipped if not _utf8(p)]
  if unnamed:
    logging.warning("image_folder: skipped %d files whose names are not UTF-8 (e.g. %s); "
                    "rename them to train on them", len(unnamed), _shown(unnamed[0]))
  if len(skipped) > len(unnamed):
    logging.warning("image_folder: skipped %d unreadable files of %d under %s",
                    len(skipped) - len(unnamed), len(readable) + len(skipped), root)
  if not readable:
    raise DataError(f"no readable images under {root} ({len(skipped)} unreadable): put "
                    f"{accepted} files there (any nesting, any case) or point "
                    "--experiment.data.dir elsewhere")
  if labels:  # Classes from every file named like an image, as `folder_classes` counts them.
    classes = _classes(sorted(p for p in readable + skipped if _utf8(p)), root)
    if not classes:
      raise data.no_labels_error(f"image folder {root}", "its images are not in two or "
                                 "more class subdirectories")
    loose = [p for p in readable if not _class_of(p, root)]
    if loose:
      raise DataError(f"{len(loose)} images directly under {root} (e.g. {loose[0]}) are in "
                      f"none of its {len(classes)} class subdirectories: move each into its "
                      "class's, or drop data.labels")
  paths = _shard(np.array(readable), cfg, process_index, process_count, root)
  _first_decodable(paths, lambda p: tf.io.read_file(str(p)), root)
  decode = _decoder(3)
  # PIL's verify does not catch every broken file (a truncated JPEG passes it).
  read = _shrinking_large(lambda p: decode(tf.io.read_file(p)), [str(p) for p in paths], sizes,
                          cfg.image_size)
  if labels:
    index = {name: i for i, name in enumerate(classes)}
    targets = np.array([index[_class_of(p, root)] for p in paths], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((paths, targets))
    return ImageSource(ds, read, len(paths), may_fail=True, labels=True,
                       num_classes=len(classes))
  ds = tf.data.Dataset.from_tensor_slices(paths)
  return ImageSource(ds, read, len(paths), may_fail=True)


def _shrinking_large(read: Callable[[tf.Tensor], tf.Tensor], paths: list[str],
                     sizes: dict[str, tuple[int, int]], size: int
                     ) -> Callable[[tf.Tensor], tf.Tensor]:
  """`read` (path -> pixels), but for images of more than LARGE_PIXELS (the first
  SHRINK_LIMIT of them) the pixels `resize_and_crop(read(path), size)` computed
  now, once: the pipeline's resize of those is then exact and cheap, so the result
  is the same, without decoding e.g. 10000 x 10000 pixels at every draw."""
  large = [p for p in paths if sizes[p][0] * sizes[p][1] > LARGE_PIXELS]
  if not large:
    return read
  shrunk, done = [], []
  for path in large[:SHRINK_LIMIT]:
    try:
      shrunk.append(resize_and_crop(read(tf.constant(path)), size).numpy())
      done.append(path)
    except tf.errors.OpError:
      pass  # Decoded (and skipped) at each draw, as a broken file is.
  width, height = sizes[large[0]]
  what = (f"are resized to {size}x{size} once, now, rather than decoded at full size at "
          "every draw" if len(large) <= SHRINK_LIMIT else
          f"; the first {SHRINK_LIMIT} are resized to {size}x{size} once, now, the other "
          f"{len(large) - SHRINK_LIMIT} decoded at full size at every draw: shrink them on disk "
          "for a faster input pipeline")
  logging.warning("image_folder: %d images of more than %.1f megapixels (e.g. %s, %dx%d)%s%s",
                  len(large), LARGE_PIXELS / 1e6, large[0], width, height,
                  "" if what.startswith(";") else " ", what)
  if not done:
    return read
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(tf.constant(done), tf.range(len(done), dtype=tf.int64)),
      default_value=-1)
  pixels = tf.constant(np.stack(shrunk))

  def read_or_look_up(path: tf.Tensor) -> tf.Tensor:
    index = table.lookup(path)
    return tf.cond(index >= 0, lambda: tf.gather(pixels, tf.maximum(index, 0)),
                   lambda: read(path))
  return read_or_look_up


def digits_source(cfg, seed, process_index, process_count, labels=False) -> ImageSource:
  del seed
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  digits = load_digits()
  images = digits.images.astype(np.float32)[..., None] * (255.0 / 16.0)
  images = _shard(images, cfg, process_index, process_count, "sklearn's load_digits")
  if labels:
    targets = _shard(digits.target.astype(np.int32), cfg, process_index, process_count,
                     "sklearn's load_digits")
    return ImageSource(tf.data.Dataset.from_tensor_slices((images, targets)), lambda x: x,
                       len(images), labels=True, num_classes=10)
  return ImageSource(tf.data.Dataset.from_tensor_slices(images), lambda x: x, len(images))


# ---------------------------------------------------------------- pipeline

def open_source(cfg: ml_collections.ConfigDict, seed: int, process_index: int = 0,
                process_count: int = 1, labels: bool | None = None) -> ImageSource:
  """This process's share of data set `cfg.name`, or a DataError saying how to get it.
  Its elements carry class labels if `labels` (default: `cfg.labels`, False if absent)."""
  if cfg.name not in data.names(data.IMAGE):
    raise DataError(f"unknown image data set {cfg.name!r}; use one of "
                    f"{', '.join(data.names(data.IMAGE))}")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
  labels = bool(cfg.get("labels", False)) if labels is None else labels
  if labels and not data.get(cfg.name).num_classes:
    raise data.no_labels_error(cfg.name)
  opener = data.open_source(cfg.name)
  if labels:
    return opener(cfg, seed, process_index, process_count, labels=True)
  return opener(cfg, seed, process_index, process_count)


def build_image_dataset(cfg: ml_collections.ConfigDict, batch_size: int, seed: int,
                        process_index: int = 0, process_count: int = 1, start: int = 0,
                        source: ImageSource | None = None) -> tf.data.Dataset:
  """Infinite dataset of (position, images) batches: images uint8 [batch_size, H, W, C];
  position (int64) counts the elements of this process's stream read up to and
  including the batch (unreadable ones too), so `start=position` resumes right after it.
  With labels (`source.labels`; the source defaults to `cfg.labels`) the batches are
  (position, images, labels int32 [batch_size]), the images the same as without."""
  source = source or open_source(cfg, seed, process_index, process_count)
  size = cfg.image_size
  # Labels ride in each element from the source on: shuffle, skip and ignore_errors
  # move or drop an image and its label together.
  ds = source.ds.shuffle(source.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat().skip(start).enumerate(start + 1)
  if source.labels:
    ds = ds.map(lambda end, xy: (end, resize_and_crop(source.decode(xy[0]), size), xy[1]),
                num_parallel_calls=tf.data.AUTOTUNE)
  else:
    ds = ds.map(lambda end, x: (end, resize_and_crop(source.decode(x), size)),
                num_parallel_calls=tf.data.AUTOTUNE)
  if source.may_fail:
    ds = ds.ignore_errors(log_warning=True)
  ds = ds.batch(batch_size, drop_remainder=True)
  ds = ds.map(lambda ends, *rest: (ends[-1], *rest)).prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)


def critic_stacks(ds: tf.data.Dataset, sizes: np.ndarray, default_size: int) -> tf.data.Dataset:
  """(position, images) batches -> (position, stack [k, batch, H, W, C]): the real
  batches of one generator iteration each, `sizes[i]` of them for the i-th
  iteration from here (the critic schedule) and `default_size` after the last.
  Labelled batches (position, images, labels) give (position, stack, labels [k, batch]).
  Built by tf.data (group_by_window keyed by iteration), off the Python thread."""
  sizes = np.asarray(sizes, np.int64)
  bounds = tf.constant(np.concatenate([[0], np.cumsum(sizes)]), tf.int64)
  sizes_t = tf.constant(np.append(sizes, default_size), tf.int64)
  known, default = tf.constant(len(sizes), tf.int64), tf.constant(default_size, tf.int64)

  def iteration(update, _):
    last = bounds[-1]
    inside = tf.searchsorted(bounds, [update], side="right", out_type=tf.int64)[0] - 1
    return tf.where(update < last, inside, known + (update - last) // default)

  size = lambda key: sizes_t[tf.minimum(key, known)]
  ds = ds.enumerate().group_by_window(iteration, lambda _, window: window.batch(1 << 30),
                                      window_size_func=size)
  return ds.map(lambda _, batch: (batch[0][-1], *batch[1:])).prefetch(2)


class Batches:
  """The image batches of a `build_image_dataset` as numpy arrays, or (images, labels)
  where it has labels; `position` is the stream position after the last batch
  handed out (what a checkpoint saves)."""

  def __init__(self, ds: tf.data.Dataset, start: int = 0):
    self._it = ds.as_numpy_iterator()
    self.position = start

  def __iter__(self) -> "Batches":
    return self

  def __next__(self) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    position, *batch = next(self._it)
    self.position = int(position)
    return batch[0] if len(batch) == 1 else tuple(batch)


def decode_throughput(cfg: ml_collections.ConfigDict, batch_size: int, seconds: float
                      ) -> tuple[int, float]:
  """(images, seconds) the input pipeline alone delivers (read, decode, resize,
  crop, batch) in at least `seconds`, after a first batch that fills the
  shuffle buffer and starts the workers."""
  batches = Batches(build_image_dataset(cfg, batch_size, seed=0))
  next(batches)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    next(batches)
    count += batch_size
  return count, time.perf_counter() - start


def evaluation_batches(cfg: ml_collections.ConfigDict, num: int, batch_size: int,
                       seed: int = 0, labels: bool = False) -> tuple[Iterator[Any], int]:
  """The real images a metric compares against: up to `num` of the whole data set
  (every process reads the same ones), in batches of uint8 [batch_size, H, W, C],
  as the training pipeline resizes and crops them, and how many there will be
  (`num` where the set's size is not known up front). A set larger than `num`
  is drawn from by a shuffle buffer with a fixed `seed`, the same on every call.
  Images only, whatever `cfg.labels` says; with `labels`, the same images in the
  same order as (images, int32 [batch_size] classes) pairs (the seeded shuffle
  orders (element, label) pairs as it orders the elements alone)."""
  source = open_source(cfg, seed, labels=labels)
  size = int(source.ds.cardinality())
  total = min(num, size) if size >= 0 else num
  ds = source.ds.shuffle(source.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
  prepare = lambda x: resize_and_crop(source.decode(x), cfg.image_size)
  ds = ds.map((lambda x, y: (prepare(x), y)) if labels else prepare,
              num_parallel_calls=tf.data.AUTOTUNE)
  if source.may_fail:
    ds = ds.ignore_errors(log_warning=True)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.take(num).batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)
  return ds.as_numpy_iterator(), total
