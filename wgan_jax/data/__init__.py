"""The data-set registry: every data set's name, kind, shape rule, config keys
and where its source lives.

Kinds: "toy" sets are 2-D points sampled on device inside the compiled step
(`toy`); "image" sets come from tf.data (`images`, `lsun`) as uint8 pixels.
Sources are named as "module:function" and imported when data is opened, so
configs validate without importing TensorFlow (as scenic's registry does).

Class labels (`data.labels`, for class-conditional models): a set's classes are
fixed here, or, for `image_folder`, one per immediate subdirectory holding
images (`num_classes` scans the folder). `label_classes` is what a run
conditions on: 0 with labels off, a DataError where the set has none.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import ml_collections

from wgan_jax.configs.rules import ConfigError, Rule, any_value, at_least, check, choice

TOY, IMAGE = "toy", "image"


class DataError(RuntimeError):
  """Missing or unusable data: the message is one line saying what is missing and how to get it."""

  def __init__(self, message: str):
    super().__init__(" ".join(message.split("\n")))


# `DataSet.num_classes` of a set whose classes are its folder's subdirectories.
PER_SUBDIRECTORY = -1


@dataclasses.dataclass(frozen=True)
class DataSet:
  name: str
  kind: str            # TOY or IMAGE
  source: str          # "module:function" that opens it
  channels: int = 0    # images: 1 (grayscale) or 3
  num_classes: int = 0  # class labels (0: none), or PER_SUBDIRECTORY


DATASETS: dict[str, DataSet] = {d.name: d for d in (
    DataSet("8gaussians", TOY, "wgan_jax.data.toy:eight_gaussians"),
    DataSet("25gaussians", TOY, "wgan_jax.data.toy:twenty_five_gaussians"),
    DataSet("swissroll", TOY, "wgan_jax.data.toy:swissroll"),
    DataSet("lsun_bedroom", IMAGE, "wgan_jax.data.images:lsun_source", 3),
    DataSet("cifar10", IMAGE, "wgan_jax.data.images:tfds_source", 3, 10),
    DataSet("mnist", IMAGE, "wgan_jax.data.images:tfds_source", 1, 10),
    DataSet("celeb_a", IMAGE, "wgan_jax.data.images:tfds_source", 3),
    DataSet("image_folder", IMAGE, "wgan_jax.data.images:folder_source", 3, PER_SUBDIRECTORY),
    DataSet("digits", IMAGE, "wgan_jax.data.images:digits_source", 1, 10),
)}

# Keys of an image data section, with their rules.
IMAGE_RULES: dict[str, Rule] = {
    "image_size": at_least(4, 4096),
    "dir": any_value,               # "" = the data set's default location
    "split": any_value,
    "shuffle_buffer": at_least(1, 1 << 26),
    # Real images as gan_cifar_resnet.py feeds them: 2 (x / 256 - 0.5) + U(0, 1/128)
    # instead of x / 127.5 - 1.
    "dequantize": any_value,
    # Each real image comes with its class (int32), for class-conditional models.
    "labels": choice(False, True),
    # Train on the first `limit` images only (small-data experiments); 0: all of them.
    "limit": at_least(0),
    # Each real image flipped left-right with probability 1/2 as the critic takes it
    # (critic_inputs.mirrored); generated images never.
    "mirror": choice(False, True),
}


# The most evaluation samples per kind: exact W1 solves an N x N transport problem
# (10,000 points: an 800 MB cost matrix); an image grid of 1,024 is 32 x 32 images.
EVAL_SAMPLES_MAX = {TOY: 10_000, IMAGE: 1_024}
EVAL_SAMPLES_WHY = {TOY: "exact W1 solves an N x N transport problem",
                    IMAGE: "the images of one sample grid"}


def get(name: str) -> DataSet:
  if name not in DATASETS:
    raise ConfigError(f"data.name={name!r} is unknown; use one of {', '.join(DATASETS)}")
  return DATASETS[name]


def names(kind: str | None = None) -> tuple[str, ...]:
  return tuple(n for n, d in DATASETS.items() if kind is None or d.kind == kind)


def check_config(cfg: ml_collections.ConfigDict) -> None:
  """The data section's keys and values, or a ConfigError saying what to change."""
  check(cfg, {"name": choice(*DATASETS)}, "data.")
  if get(cfg.name).kind == IMAGE:
    check(cfg, IMAGE_RULES, "data.", owner=f"data.name={cfg.name!r} is an image data set and",
          hint="start from an image experiment such as digits_dcgan_gp")


def check_eval_samples(config: ml_collections.ConfigDict) -> None:
  """`eval_samples` within what the data set's evaluation can hold."""
  kind = get(config.data.name).kind
  check(config, {"eval_samples": at_least(2, EVAL_SAMPLES_MAX[kind],
                                          why=EVAL_SAMPLES_WHY[kind])})


def is_toy(cfg: ml_collections.ConfigDict) -> bool:
  """Whether data config `cfg` is a 2-D toy set (points, not images)."""
  return get(cfg.name).kind == TOY


def data_shape(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The shape of one example of data config `cfg`: (2,) for a toy set,
  (image_size, image_size, channels) for images."""
  entry = get(cfg.name)
  if entry.kind == TOY:
    return (2,)
  return (cfg.image_size, cfg.image_size, entry.channels)


def open_source(name: str) -> Callable[..., Any]:
  """The function that opens data set `name` (imports its module)."""
  module, function = get(name).source.split(":")
  return getattr(importlib.import_module(module), function)


def num_classes(cfg: ml_collections.ConfigDict) -> int:
  """The class labels data set `cfg` has (0: none). An image folder has one class
  per immediate subdirectory holding images, when there are at least two."""
  entry = get(cfg.name)
  if entry.num_classes != PER_SUBDIRECTORY:
    return entry.num_classes
  # The folder's layout is its source's to read (importing it imports TensorFlow).
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  return len(images.folder_classes(images.folder_root(cfg)))


def no_labels_error(name: str, why: str = "") -> DataError:
  """The one line saying set `name` cannot give the labels asked of it."""
  return DataError(f"{name} has no class labels{f' ({why})' if why else ''}; train it "
                   "unconditionally: drop data.labels (or set it False)")


def label_classes(cfg: ml_collections.ConfigDict) -> int:
  """The classes a run on data config `cfg` conditions on: 0 with `data.labels`
  off (or absent), else the set's classes, or a DataError where it has none."""
  if not cfg.get("labels", False):
    return 0
  classes = num_classes(cfg)
  if not classes and get(cfg.name).num_classes == PER_SUBDIRECTORY:
    from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
    raise no_labels_error(f"image folder {images.folder_root(cfg)}",
                          "its images are not in two or more class subdirectories")
  if not classes:
    raise no_labels_error(cfg.name)
  return classes
