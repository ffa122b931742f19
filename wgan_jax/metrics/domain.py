"""Domain metrics for the digit data sets (`digits`, `mnist`): a small classifier
trained once on the real labelled images and cached, and what it says about
generated ones.

- `domain_fd`: the Frechet distance between Gaussians fitted to the classifier's
  features (the 64 pre-activations of its last hidden layer: pre-ReLU, so no
  dead unit makes the covariance singular) of generated and real images.
- `domain_classes_covered`: how many of the 10 classes hold at least a quarter
  of their real share of the generated samples (argmax labels). Stacked MNIST
  (Metz et al. 2017; Srivastava et al. 2017) counts a mode covered by a single
  sample, which is right for 1,000 modes and 26,000 samples but not for 10
  classes: the classifier's 1-2% errors on blurry or odd samples would put one
  in almost every class. A quarter of the share leaves those errors out (one
  class of 1,000 samples leaks well under 25 to any other) and still counts a
  class the generator draws rarely.
- `domain_kl`: KL(p_generated || p_real) of the argmax class distributions,
  p_real from the data set's labels, as the stacked-MNIST papers report it
  (there against the uniform). No smoothing is needed: every class has real
  examples, and an empty generated class adds 0 log 0 = 0. One class alone
  gives log(1 / p_real(class)), about log 10 = 2.30; five of ten classes, log 2.
- `domain_confidence`: the mean top softmax probability on generated images
  (noise and blur lower it).
- `domain_c2st`: a classifier two-sample test on the pixels in [-1, 1], not
  standardised per pixel (`two_sample.py`):
  the cross-validated accuracy of a logistic regression telling generated from
  real images, 0.5 when it cannot; scored with 50 or more of each.

Images are uint8 [N, H, W, C] at the run's image size, as the input pipeline
gives real ones and `wgan_jax.sample --npz` writes generated ones (generator
outputs in [-1, 1] become uint8 with `pixels.to_uint8`). The training images
are made by the pipeline's own resize (`images.resize_and_crop`) from the same
source arrays, so the classifier sees what the critic sees.

The trained parameters are cached as an .npz under domain/ of the cache folder
(`metrics.cache`: $WGAN_JAX_CACHE or ~/.cache/wgan_jax), named by data set,
image shape, recipe version, training steps and seed; a damaged file is
retrained and replaced.

  python -m wgan_jax.metrics.domain --calibrate [--image_size=16]
  python -m wgan_jax.metrics.domain --npz=samples.npz [--data=digits]
"""
from __future__ import annotations

import argparse
import functools
import os

from absl import logging
import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from wgan_jax import data
from wgan_jax.metrics import cache, memorisation
from wgan_jax.metrics import two_sample as two_sample_test
from wgan_jax.metrics.features import GaussianStats, frechet_distance

# Bump when anything below changes the trained parameters: old cache files are then unused.
RECIPE_VERSION = 1
SUPPORTED = ("digits", "mnist")
NUM_CLASSES = 10
FEATURES = 64
TRAIN_STEPS, BATCH, LEARNING_RATE = 800, 128, 1e-3
HOLDOUT_SHARE, SPLIT_SEED = 0.2, 0
# A class is covered when it holds at least this fraction of its real share.
COVERAGE_FRACTION = 0.25
APPLY_BATCH = 512
# Generated samples a score should use: below a few hundred the Gaussian fit of
# 64 features is biased upwards (real vs real at N = 64 scores ~8x N = 900; BUILD.md).
RECOMMENDED_SAMPLES = 1000


def supported(data_name: str) -> bool:
  """Whether data set `data_name` has a domain classifier."""
  return data_name in SUPPORTED


# ---------------------------------------------------------------- labelled real images

def _resize_all(pixels, size: int) -> np.ndarray:
  """Source arrays or a tf.data dataset of [h, w, c] pixels -> uint8 [N, size, size, c]
  through the pipeline's resize, so the classifier sees the critic's real images."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  ds = pixels if isinstance(pixels, tf.data.Dataset) else tf.data.Dataset.from_tensor_slices(pixels)
  ds = ds.map(lambda x: images.resize_and_crop(x, size)).batch(4096)
  return np.concatenate(list(ds.as_numpy_iterator()))


def _digits(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  source = load_digits()
  # As `images.digits_source` makes them: 0..16 scaled to 0..255.
  pixels = source.images.astype(np.float32)[..., None] * (255.0 / 16.0)
  return _resize_all(pixels, cfg.image_size), source.target.astype(np.int32)


def _mnist(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  images.tfds_source(cfg, 0, 0, 1)  # the project's one-line DataError if it is not prepared
  ds = tfds.builder(cfg.name, data_dir=cfg.dir or None).as_dataset(split=cfg.split)
  labels = np.array([int(y) for y in ds.map(lambda ex: ex["label"]).as_numpy_iterator()],
                    np.int32)
  return _resize_all(ds.map(lambda ex: ex["image"]), cfg.image_size), labels


def load_labelled(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [N, S, S, C] images at cfg.image_size, int32 [N] labels) of data set cfg.name."""
  if not supported(cfg.name):
    raise ValueError(f"no domain classifier for data set {cfg.name!r}; one of {SUPPORTED}")
  return {"digits": _digits, "mnist": _mnist}[cfg.name](cfg)


def holdout_split(count: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, held-out) indices: a fixed 20% held out."""
  order = np.random.RandomState(SPLIT_SEED).permutation(count)
  held = int(round(count * HOLDOUT_SHARE))
  return np.sort(order[held:]), np.sort(order[:held])


# ---------------------------------------------------------------- the classifier

class Classifier(nn.Module):
  """Two strided 3x3 convolutions, a 64-unit hidden layer (the features) and a 10-way head."""
  features: int = FEATURES
  classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = x.astype(jnp.float32) / 127.5 - 1.0  # uint8 as the critic scales it
    x = nn.relu(nn.Conv(32, (3, 3), strides=2)(x))
    x = nn.relu(nn.Conv(64, (3, 3), strides=2)(x))
    features = nn.Dense(self.features)(x.reshape(x.shape[0], -1))
    return features, nn.Dense(self.classes)(nn.relu(features))


def train_classifier(images: np.ndarray, labels: np.ndarray, steps: int = TRAIN_STEPS,
                     seed: int = 0) -> dict:
  """Params of a `Classifier` trained with Adam on (images, labels); the same
  inputs and seed give the same params."""
  model, tx = Classifier(), optax.adam(LEARNING_RATE)
  params = model.init(jax.random.PRNGKey(seed), jnp.asarray(images[:1]))["params"]
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss(p):
      _, logits = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng, batch = np.random.RandomState(seed), min(BATCH, len(images))
  order, at = rng.permutation(len(images)), 0
  for _ in range(steps):
    if at + batch > len(order):  # a fresh shuffle each epoch, fixed batch shape
      order, at = rng.permutation(len(images)), 0
    index = order[at:at + batch]
    at += batch
    params, opt_state = step(params, opt_state, images[index], labels[index])
  return jax.device_get(params)


@functools.partial(jax.jit, static_argnums=0)
def _apply(model: Classifier, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  return model.apply({"params": params}, x)


def features_and_logits(params: dict, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Classifier (features [N, 64], logits [N, 10]) of uint8 images, in fixed-size
  batches so that one compiled program serves every N."""
  feats, logits = [], []
  for start in range(0, len(images), APPLY_BATCH):
    chunk = images[start:start + APPLY_BATCH]
    padded = np.zeros((APPLY_BATCH,) + chunk.shape[1:], np.uint8)
    padded[:len(chunk)] = chunk
    f, l = jax.device_get(_apply(Classifier(), params, padded))
    feats.append(f[:len(chunk)])
    logits.append(l[:len(chunk)])
  return np.concatenate(feats), np.concatenate(logits)


# ---------------------------------------------------------------- cache

def cache_path(name: str, shape: tuple[int, ...], steps: int, seed: int) -> str:
  h, w, c = shape
  return os.path.join(cache.cache_dir("domain"),
                      f"{name}_{h}x{w}x{c}_r{RECIPE_VERSION}_s{steps}_seed{seed}.npz")


def _save(path: str, params: dict, accuracy: float) -> None:
  flat = {"params/" + "/".join(k): np.asarray(v)
          for k, v in traverse_util.flatten_dict(params).items()}
  cache.save_arrays(path, dict(accuracy=np.float64(accuracy), **flat))


def _load(path: str, like: dict) -> tuple[dict, float]:
  """(params, held-out accuracy) from `path`; ValueError unless they fit the tree `like`."""
  stored = cache.load_arrays(path)
  if stored is None or "accuracy" not in stored:
    raise ValueError("not a readable array file")
  accuracy = float(stored.pop("accuracy"))
  params = traverse_util.unflatten_dict(
      {tuple(k.split("/")[1:]): v for k, v in stored.items()})
  want = {k: v.shape for k, v in traverse_util.flatten_dict(like).items()}
  got = {k: v.shape for k, v in traverse_util.flatten_dict(params).items()}
  if want != got or not np.isfinite(accuracy):
    raise ValueError("the arrays are not this classifier's parameters")
  return params, accuracy


def trained_classifier(cfg: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray,
                       steps: int = TRAIN_STEPS, seed: int = 0) -> tuple[dict, float]:
  """(params, held-out accuracy): from the cache, or trained on 80% of (images, labels)
  and cached; a damaged cache file is retrained and replaced."""
  path = cache_path(cfg.name, images.shape[1:], steps, seed)
  like = jax.eval_shape(lambda: Classifier().init(jax.random.PRNGKey(0), images[:1]))["params"]
  if os.path.exists(path):
    try:
      return _load(path, like)
    except ValueError as e:
      logging.warning("domain classifier cache %s is damaged (%s); retraining it", path, e)
  train, held = holdout_split(len(images))
  params = train_classifier(images[train], labels[train], steps, seed)
  _, logits = features_and_logits(params, images[held])
  accuracy = float((logits.argmax(1) == labels[held]).mean())
  logging.info("domain classifier for %s %s: held-out accuracy %.4f; cached in %s",
               cfg.name, images.shape[1:], accuracy, path)
  _save(path, params, accuracy)
  return params, accuracy


# ---------------------------------------------------------------- scores

def class_histogram(logits: np.ndarray) -> np.ndarray:
  """The share of each class among the argmax labels."""
  return np.bincount(logits.argmax(1), minlength=NUM_CLASSES) / len(logits)


def classes_covered(p_generated: np.ndarray, p_real: np.ndarray) -> int:
  return int(np.sum(p_generated >= COVERAGE_FRACTION * p_real))


def class_kl(p_generated: np.ndarray, p_real: np.ndarray) -> float:
  """KL(p_generated || p_real); p_real > 0 everywhere, empty generated classes add 0."""
  inside = p_generated > 0
  return float(np.sum(p_generated[inside] * np.log(p_generated[inside] / p_real[inside])))


class DomainScorer:
  """The domain metrics of one data config (`config.data`): classifier, real
  reference statistics and class prior made once, then `scorer(fake_uint8)`."""

  def __init__(self, cfg: ml_collections.ConfigDict, steps: int = TRAIN_STEPS, seed: int = 0):
    if not supported(cfg.name):
      raise ValueError(f"no domain classifier for data set {cfg.name!r}; one of {SUPPORTED}")
    self.shape = tuple(data.data_shape(cfg))
    self.images, self.labels = load_labelled(cfg)
    self.params, self.accuracy = trained_classifier(cfg, self.images, self.labels, steps, seed)
    self.reference = GaussianStats.of(self.features(self.images)[0])
    self.class_prior = np.bincount(self.labels, minlength=NUM_CLASSES) / len(self.labels)

  def check(self, images: np.ndarray, what: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
      raise ValueError(f"{what} must be uint8 pixels, got {images.dtype} (generator outputs "
                       "in [-1, 1] become uint8 with wgan_jax.pixels.to_uint8)")
    if images.ndim != 4 or images.shape[1:] != self.shape or len(images) < 2:
      raise ValueError(f"{what} must be [N >= 2, {', '.join(map(str, self.shape))}], "
                       f"got {list(images.shape)}")
    return images

  def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features_and_logits(self.params, images)

  def __call__(self, fake: np.ndarray, real: np.ndarray | None = None,
               asked: np.ndarray | None = None) -> dict[str, float]:
    """Domain metrics of generated uint8 images against the full real set (or `real`);
    with `asked` (a conditional generator's class of each image), also the share the
    classifier puts in the class asked for (chance: 0.1)."""
    feats, logits = self.features(self.check(fake, "generated images"))
    agreement = ({} if asked is None else
                 {"domain_class_agreement": float(np.mean(logits.argmax(1) == asked))})
    reference = (self.reference if real is None
                 else GaussianStats.of(self.features(self.check(real, "real images"))[0]))
    p = class_histogram(logits)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    against = self.images if real is None else real
    two_sample = ({"domain_c2st": two_sample_test.classifier_accuracy(
        memorisation.pixel_rows(fake), memorisation.pixel_rows(against))}
                  if min(len(fake), len(against)) >= two_sample_test.minimum() else {})
    return {
        "domain_fd": frechet_distance(GaussianStats.of(feats), reference),
        "domain_classes_covered": float(classes_covered(p, self.class_prior)),
        "domain_kl": class_kl(p, self.class_prior),
        "domain_confidence": float(np.max(probs, axis=1).mean()),
        **two_sample,
        **agreement,
    }


_SCORERS: dict[tuple, DomainScorer] = {}


def scorer(cfg: ml_collections.ConfigDict, steps: int = TRAIN_STEPS, seed: int = 0
           ) -> DomainScorer:
  """One `DomainScorer` per (data set, location, split, image size, steps, seed) per process."""
  key = (cfg.name, cfg.get("dir", ""), cfg.get("split", "train"), cfg.image_size, steps, seed)
  if key not in _SCORERS:
    _SCORERS[key] = DomainScorer(cfg, steps, seed)
  return _SCORERS[key]


def data_config(name: str = "digits", image_size: int = 16, data_dir: str = "",
                split: str = "train") -> ml_collections.ConfigDict:
  """An image data section as experiments write it (for callers without a run's config)."""
  return ml_collections.ConfigDict(dict(name=name, image_size=image_size, dir=data_dir,
                                        split=split, shuffle_buffer=1, dequantize=False))


def domain_metrics(fake: np.ndarray, real: np.ndarray | None = None, data_name: str = "digits",
                   data_dir: str = "", steps: int = TRAIN_STEPS) -> dict[str, float]:
  """Domain metrics of uint8 [N, S, S, C] generated images of data set `data_name`
  at size S, against its full real set (or `real`)."""
  fake = np.asarray(fake)
  if fake.ndim != 4:
    raise ValueError(f"generated images must be [N, S, S, C] uint8, got {list(fake.shape)}")
  return scorer(data_config(data_name, fake.shape[1], data_dir), steps)(fake, real)


# ---------------------------------------------------------------- calibration

def blur(images: np.ndarray, sigma: float = 1.0) -> np.ndarray:
  """A Gaussian blur of `sigma` pixels over height and width, back to uint8."""
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  out = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma, 0))
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def faint_background(images: np.ndarray, levels: int = 3, seed: int = 0) -> np.ndarray:
  """Blank (0) pixels raised to 0..`levels`-1 of 255 at random: a difference no
  one sees, as a generator's tanh that stops short of -1 leaves it."""
  noise = np.random.RandomState(seed).randint(0, levels, images.shape)
  return (images + (images == 0) * noise).astype(np.uint8)


def calibrate(image_size: int = 16, name: str = "digits", data_dir: str = "",
              steps: int = TRAIN_STEPS, seed: int = 0) -> dict[str, dict[str, float]]:
  """The metrics of known cases, each against the other half of the real set
  (halves split by a fixed seed): rows name -> metrics (and `n`, the sample count)."""
  s = scorer(data_config(name, image_size, data_dir), steps, seed)
  order = np.random.RandomState(1).permutation(len(s.images))
  a, b = np.sort(order[:len(order) // 2]), np.sort(order[len(order) // 2:])
  half, reference = s.images[a], s.images[b]
  labels = s.labels[a]
  _, held = holdout_split(len(s.images))
  cases = {
      "real (half A vs half B)": half,
      "blurred real (sigma 1 px)": blur(half),
      "faint background (blank pixels 0-2)": faint_background(half),
      "one class only (0)": half[labels == 0],
      "mode-dropped (classes 0-4)": half[labels < 5],
      "uniform noise": np.random.RandomState(2).randint(0, 256, half.shape).astype(np.uint8),
  }
  rows = {k: dict(n=float(len(v)), **s(v, reference)) for k, v in cases.items()}
  # As the trainer scores: images unseen by the classifier against the full real set.
  rows["real held-out 20% vs full set"] = dict(n=float(len(held)), **s(s.images[held]))
  return rows


def format_table(rows: dict[str, dict[str, float]]) -> str:
  lines = ["| case | N | domain_fd | classes_covered | domain_kl | confidence | c2st |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for case, m in rows.items():
    c2st = m.get("domain_c2st")
    lines.append(f"| {case} | {m['n']:.0f} | {m['domain_fd']:.3f} | "
                 f"{m['domain_classes_covered']:.0f} | {m['domain_kl']:.4f} | "
                 f"{m['domain_confidence']:.3f} | {'-' if c2st is None else f'{c2st:.3f}'} |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--calibrate", action="store_true", help="print the calibration table")
  parser.add_argument("--npz", help="score the 'samples' of a wgan_jax.sample --npz file")
  parser.add_argument("--data", default="digits", choices=SUPPORTED)
  parser.add_argument("--data_dir", default="")
  parser.add_argument("--image_size", type=int, default=16)
  args = parser.parse_args(argv)
  if args.calibrate:
    s = scorer(data_config(args.data, args.image_size, args.data_dir))
    print(f"{args.data} at {s.shape}: classifier held-out accuracy {s.accuracy:.4f}")
    print(format_table(calibrate(args.image_size, args.data, args.data_dir)))
  if args.npz:
    with np.load(args.npz, allow_pickle=False) as f:
      samples = f["samples"]
    for k, v in domain_metrics(samples, data_name=args.data, data_dir=args.data_dir).items():
      print(f"{k} {v:.6g}")
  if not (args.calibrate or args.npz):
    parser.error("pass --calibrate or --npz=FILE")


if __name__ == "__main__":
  main()


def score(data_cfg: ml_collections.ConfigDict, samples: np.ndarray,
          asked: np.ndarray | None = None) -> dict[str, float]:
  """The registry's entry (metrics/__init__.py): the digit classifier's scores of
  uint8 `samples` against the real images of `data_cfg` (and, given the class each
  sample was asked for, how many it draws)."""
  return scorer(data_cfg)(samples, asked=asked)
