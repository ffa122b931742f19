"""FID, KID, IS, precision/recall, density/coverage and intra-class FID of
generated images, by the field's protocol.

- The network: the FID Inception (`inception.py`) with the user's weights
  file, resize convention named in every report (`tf1` by default).
- Generated images: `num_samples` (50,000 by default, as papers report),
  turned into uint8 pixels exactly as `wgan_jax.sample --npz` saves them, so a
  run scored in training, by `evaluate --workdir` and from an .npz agree.
- Reference: up to `reference_samples` real images of the run's data set as
  the training pipeline sizes them; their features are computed once per (data
  set, location, split, image size, count, shuffle, resize, weights digest) and
  cached, with their class labels where a metric needs them (intra-class FID).
- Scores in float64 on the host (`features.py`); the k-NN metrics' distances
  on the devices, decided as float64 decides them (`neighbours.py`).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
from typing import Any, Iterable

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from wgan_jax import multihost, pixels, placement, updates
from wgan_jax import metrics
from wgan_jax.metrics import cache, extract, features, inception
from wgan_jax.metrics.features import Features, Reference
from wgan_jax.metrics.inception_weights import InceptionWeights
from wgan_jax.state import NetState

PAPER_SAMPLES = 50_000
# The shuffle that draws the reference images from a larger data set.
REFERENCE_SEED = 0
DEFAULT_BATCH = 200


def few_samples_note(num: int) -> str | None:
  """What to say of scores from `num` generated samples, if fewer than papers use."""
  if num >= PAPER_SAMPLES:
    return None
  return (f"{num:,} generated samples: FID and KID at fewer than {PAPER_SAMPLES:,} are biased "
          "upward and do not compare with papers' numbers")


def too_few_samples(names: Iterable[str], generated: tuple[int, str],
                    real: tuple[int, str] | None, metrics_key: str,
                    classes: int = 0) -> str | None:
  """Why the samples are too few for one of the Inception metrics `names` (each
  module's MINIMUM), or None: what to check before any image is scored.
  `generated` and `real` are (count, what says it: "--num_samples=4"); real is
  None while unknown; `metrics_key` is the flag or key that names the metrics;
  `classes` those of a conditional generator (0: unknown or none), whose
  balanced samples a per-class minimum applies to each of."""
  for name in names:
    need: features.Minimum = importlib.import_module(metrics.REGISTRY[name].module).MINIMUM
    times = classes if need.per_class and classes else 1
    why = f"{need.why} of each of {classes} classes" if times > 1 else need.why
    for which, given, least in (("generated", generated, need.generated * times),
                                ("real", real, need.real * times)):
      if given is not None and given[0] < least:
        return (f"{name} needs at least {least} {which} images ({why}), but {given[1]}: "
                f"score more, or leave {name} out of {metrics_key}")
  return None


def too_few_of_a_class(names: Iterable[str], labels: np.ndarray, classes: int,
                       what: str, metrics_key: str) -> str | None:
  """Why a class of the real images (`labels`, described by `what`) is too
  small for one of the per-class metrics `names`, or None."""
  counts = np.bincount(labels, minlength=classes)[:classes]
  for name in names:
    need: features.Minimum = importlib.import_module(metrics.REGISTRY[name].module).MINIMUM
    if need.per_class and counts.min() < need.real:
      label = int(np.argmin(counts))
      return (f"{name} needs at least {need.real} real images of each class ({need.why}), but "
              f"class {label} has {counts[label]} in {what}: use more reference images, or "
              f"leave {name} out of {metrics_key}")
  return None


class InceptionScorer:
  """The Inception's features of images, data parallel over every device."""

  def __init__(self, weights: InceptionWeights, resize: str = inception.DEFAULT_RESIZE,
               batch_size: int = DEFAULT_BATCH, mesh: jax.sharding.Mesh | None = None):
    if resize not in inception.RESIZES:
      raise ValueError(f"unknown resize {resize!r}; use one of {', '.join(inception.RESIZES)}")
    self.weights, self.resize, self.mesh = weights, resize, mesh
    self._generated: dict[tuple, extract.FeaturePass] = {}  # compiled once per generator
    self.references: dict[str, "Reference"] = {}           # kept for the next evaluation
    self._images = extract.FeaturePass(
        lambda v, x: inception.features(v, x, resize), weights.variables,
        _round_up(batch_size, mesh), mesh)

  @property
  def batch_size(self) -> int:
    return self._images.batch_size

  @property
  def program(self):
    """The feature pass, jitted: (Inception variables, uint8 images) -> (pool, logits)."""
    return self._images.program

  def describe(self) -> str:
    return f"Inception {self.weights.describe()}, resize {self.resize}"

  def of_images(self, batches: Iterable[np.ndarray], total: int, what: str) -> Features:
    """Features of uint8 images [N, H, W, 1 or 3] given in batches."""
    pool, logits = self._images.run(batches, total, what)
    return Features(pool, logits)

  def of_array(self, images: np.ndarray, what: str) -> Features:
    return self.of_images(extract.batches_of(images, self._images.batch_size), len(images), what)

  def of_generator(self, module: nn.Module, generator: NetState, noise: np.ndarray,
                   batch_norm: str, batch_size: int) -> Features:
    """Features of the generator's samples for `noise`, `batch_size` at a time
    (in "batch" mode each batch normalised by its own statistics, the last one
    filled up with the first noise rows, as `generators.generate` does); the
    images never leave the devices."""
    batch_statistics = batch_norm == "batch"
    resize = self.resize
    constants = (generator.params, generator.batch_stats, self.weights.variables)

    def fn(constants, z):  # pylint: disable=redefined-outer-name
      params, batch_stats, variables = constants
      x = updates.apply_net(module, params, batch_stats, z, train=batch_statistics)[0]
      return inception.features(variables, pixels.to_uint8(x), resize)

    key = (module, batch_norm, batch_size)
    if key not in self._generated:
      self._generated[key] = extract.FeaturePass(fn, constants, batch_size,
                                                 self._mesh_dividing(batch_size))
    n = len(noise)
    noise = np.asarray(noise, np.float32)
    fill = -n % batch_size
    if fill:
      noise = np.concatenate([noise, np.resize(noise, (fill, noise.shape[1]))])
    pool, logits = self._generated[key].run(extract.batches_of(noise, batch_size), len(noise),
                                            "generated", constants=constants)
    return Features(pool[:n], logits[:n])

  def _mesh_dividing(self, batch: int) -> jax.sharding.Mesh:
    """The devices of this scorer, or as many of them as split `batch` evenly
    (a batch-norm batch is the run's batch size, whatever this host has)."""
    devices = list(self.mesh.devices.flat) if self.mesh is not None else placement.sorted_devices()
    count = max(k for k in range(1, len(devices) + 1) if batch % k == 0)
    return placement.make_mesh(devices[:count])


def _round_up(batch: int, mesh: jax.sharding.Mesh | None) -> int:
  devices = mesh.size if mesh is not None else jax.device_count()
  return -(-batch // devices) * devices


def reference_key(data_cfg: ml_collections.ConfigDict, num: int, scorer: InceptionScorer) -> str:
  """What the reference features depend on, hashed: the images drawn, the network."""
  what = dict(name=data_cfg.name, dir=os.path.abspath(data_cfg.dir) if data_cfg.dir else "",
              split=data_cfg.get("split", ""), image_size=data_cfg.image_size, num=num,
              shuffle_buffer=data_cfg.get("shuffle_buffer", 0), seed=REFERENCE_SEED,
              resize=scorer.resize, weights=scorer.weights.sha256)
  return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


def reference(data_cfg: ml_collections.ConfigDict, num: int, scorer: InceptionScorer,
              labels: bool = False) -> Reference:
  """Features of up to `num` real images of `data_cfg`: computed once and cached
  on disk (by process 0) and in `scorer` for the next call; with `labels`, the
  class of each image too (the data set must have classes)."""
  key = reference_key(data_cfg, num, scorer)
  known = scorer.references.get(key)
  if known is not None and (known.labels is not None or not labels):
    return known
  path = os.path.join(cache.cache_dir("reference"), f"{key}.npz")
  saved = cache.load_arrays(path)
  wanted = ("pool", "labels") if labels else ("pool",)
  # Every process skips the (collective) pass, or none does.
  if multihost.on_every_process(saved is not None and all(k in saved for k in wanted)):
    pool, classes = saved["pool"], saved.get("labels")
  else:
    pool, classes = _reference_features(data_cfg, num, scorer, labels)
    if jax.process_index() == 0:
      cache.save_arrays(path, {"pool": pool} if classes is None else
                        {"pool": pool, "labels": classes})
  split = f" {data_cfg.split}" if data_cfg.get("split") else ""
  description = f"{data_cfg.name}{split}, {len(pool):,} images at {data_cfg.image_size}px"
  scorer.references[key] = Reference(pool, features.GaussianStats.of(pool), description,
                                     classes)
  return scorer.references[key]


def _reference_features(data_cfg: ml_collections.ConfigDict, num: int, scorer: InceptionScorer,
                        labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
  """(pool features, labels or None) of the reference images."""
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel  # TensorFlow
  what = f"reference {data_cfg.name}"
  if not labels:
    batches, total = images.evaluation_batches(data_cfg, num, scorer.batch_size, REFERENCE_SEED)
    return scorer.of_images(batches, total, what).pool, None
  batches, total = images.evaluation_batches(data_cfg, num, scorer.batch_size,
                                              REFERENCE_SEED, labels=True)
  seen: list[np.ndarray] = []

  def images_only():
    for pixels_batch, label_batch in batches:
      seen.append(label_batch)
      yield pixels_batch

  pool = scorer.of_images(images_only(), total, what).pool
  return pool, np.concatenate(seen).astype(np.int64)


def score(names: Iterable[str], generated: Features, real: Reference | Features) -> dict[str, float]:
  """The metrics `names` (of metrics.INCEPTION) of generated features against
  real ones, each by its own module's `score` (metrics/__init__.py)."""
  out: dict[str, float] = {}
  for name in metrics.parse(",".join(names), metrics.INCEPTION):
    out.update(metrics.REGISTRY[name].score()(generated, real))
  return finite(out)


def finite(scores: dict[str, Any]) -> dict[str, Any]:
  """`scores`, or a ValueError naming the first that is NaN or infinite: such a
  number is never printed, stored or compared as a score (nor valid JSON).
  A list of scores (per class) is bad if one of them is."""
  bad = {k: v for k, v in scores.items()
         if (isinstance(v, float) and not math.isfinite(v))
         or (isinstance(v, list) and not all(math.isfinite(x) for x in v))}
  if bad:
    raise ValueError(f"the scores {', '.join(f'{k}={v}' for k, v in bad.items())} are not "
                     "finite (non-finite features: check the network's weights and the images)")
  return scores
