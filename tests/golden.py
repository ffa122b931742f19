"""Numbers held: every experiment (and a few variants no experiment covers)
trained for a few generator iterations at a tiny size from a fixed seed, its
final state summarised leaf by leaf. `tests/test_golden.py` asserts the code
still computes them; a refactor keeps them, an intended change rewrites them
and says why (BUILD.md, "Numbers held").

  python -m tests.golden            # compare every case, print the worst leaf of each
  python -m tests.golden --write    # record (after an intended change only)
  python -m tests.golden --calibrate OLD.json   # how records of another CPU kind sit

Each array is held to a tolerance of its own: at --write the case also trains
from its initial state nudged by a millionth, twice, and an array that rounding
moves (the bias of a Wasserstein critic's last layer, whose gradient cancels;
Adam's second moment of a gradient that is rounding noise; a bf16 network's
optimizer state) is held to NOISE_MARGIN times what the nudges moved it, every
other array to RTOL. So a record holds on every CPU kind, whose XLA:CPU code and
kernels round differently, and still catches a change.

Image experiments run on one fixed random uint8 batch of their data set's
shape (the benchmark's synthetic data), so no data set is needed and the
input pipeline is not part of what is held.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "states.json")
# Generator iterations per case: the first ones, where the reference schedule's
# long critic phase and every warm-up (EMA, instance noise, lr decay) act.
ITERATIONS = 3
# What an array may move, relative to its sum of |x|: three iterations on the same
# CPU kind agree to float rounding (XLA:CPU's threads may sum in another order), not
# bit for bit; an array that rounding drives may move NOISE_MARGIN times what the
# nudged runs moved it (BUILD.md, "Numbers held": the margin against three CPU
# kinds' records).
RTOL = 3e-4
NOISE_MARGIN = 100.0
# The nudged runs a recording makes, and the relative size of their nudges to the
# initial state. A bf16 network casts a millionth away: its nudge is half a bf16
# rounding step, as another CPU kind's bf16 kernels (native AVX-512 BF16 or
# emulated) round differently.
NUDGED_RUNS = 2
NUDGE = 1e-6
NUDGE_BF16 = 2.0 ** -9
# Overrides that make an experiment tiny; each applies where its key exists.
TINY = {
    "batch_size": "8",
    "model.generator.features": "16", "model.critic.features": "16",
    "model.generator.ngf": "8", "model.critic.ndf": "8",
    "model.generator.dim": "8", "model.critic.dim": "8",
    "techniques.minibatch_kernels": "4", "techniques.vbn_reference_size": "8",
}
# DCGAN and MLP images shrink; a ResNet's size is fixed by its multipliers.
TINY_IMAGE_SIZE = {"dcgan": "16", "mlp": "16"}
# Variants for what no experiment sets (experiment, overrides), named.
VARIANTS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "toy_8gaussians+lp": ("toy_8gaussians", (("penalty", "lp"),)),
    "toy_8gaussians+r1": ("toy_8gaussians", (("penalty", "r1"), ("gp_weight", "1.0"))),
    "toy_8gaussians+dragan": ("toy_8gaussians", (("penalty", "dragan"),)),
    "toy_8gaussians_gan+minimax": ("toy_8gaussians_gan", (("gan_generator_loss", "minimax"),)),
    "toy_8gaussians_gan+r1": ("toy_8gaussians_gan", (("penalty", "r1"),)),
    "toy_8gaussians_gan+feature_matching": ("toy_8gaussians_gan",
                                            (("techniques.feature_matching", "true"),)),
    "toy_8gaussians+spectral+ema+bf16": ("toy_8gaussians", (
        ("model.critic.norm", "spectral"), ("ema.decay", "0.9"), ("precision", "bf16"))),
    "toy_8gaussians_clip+historical": ("toy_8gaussians_clip",
                                       (("techniques.historical_averaging", "0.01"),)),
    "digits_dcgan_gp+feature_matching": ("digits_dcgan_gan_improved", (
        ("techniques.feature_matching", "true"), ("techniques.minibatch_kernels", "0"))),
    "cifar10_resnet_acgan+projection": ("cifar10_resnet_acgan",
                                        (("model.critic.head", "projection"),)),
}


def cases() -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
  """Every held case: each experiment as it is, then the variants."""
  from wgan_jax import configs  # pylint: disable=import-outside-toplevel
  return {**{name: (name, ()) for name in configs.known_experiments()}, **VARIANTS}


def tiny_config(experiment: str, overrides=()):
  """`experiment` with `overrides`, shrunk: tiny networks, batch and images."""
  from wgan_jax import configs  # pylint: disable=import-outside-toplevel
  config = configs.load(experiment)
  for key, text in overrides:
    configs.override(config, key, text)
  shrink = dict(TINY)
  if "image_size" in config.data and config.model.critic.name in TINY_IMAGE_SIZE:
    shrink["data.image_size"] = TINY_IMAGE_SIZE[config.model.critic.name]
  for key, text in shrink.items():
    node = config
    *path, leaf = key.split(".")
    for part in path:
      node = node.get(part) if node is not None else None
    if node is not None and leaf in node and not (key.startswith("techniques.")
                                                  and not node[leaf]):
      configs.override(config, key, text)
  configs.validate(config)
  return config


def summarise(state) -> dict[str, list[float]]:
  """Each array of `state` by path: [sum, sum of |x|, sum of x^2] in float64."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    x = np.asarray(jax.device_get(leaf))
    if x.dtype == np.uint32:  # An RNG key: its bits, exactly.
      x = x.astype(np.float64)
    x = x.astype(np.float64)
    out[jax.tree_util.keystr(path)] = [float(x.sum()), float(np.abs(x).sum()),
                                       float(np.square(x).sum())]
  return out


def nudge(state, seed: int, size: float = NUDGE):
  """`state` with each floating-point array scaled by 1 + size * N(0, 1), elementwise."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  leaves, treedef = jax.tree_util.tree_flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(treedef, [
      leaf * (1 + size * jax.random.normal(key, leaf.shape, jnp.float32)).astype(leaf.dtype)
      if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf
      for leaf, key in zip(leaves, keys)])


def run_case(experiment: str, overrides=(), nudge_seed: int | None = None) -> dict[str, Any]:
  """`ITERATIONS` generator iterations of the tiny `experiment` on one device
  (from its initial state nudged by `nudge_seed`, if given): the final state's
  summary and the last iteration's metrics."""
  # pylint: disable=import-outside-toplevel
  import jax
  from wgan_jax import run
  from wgan_jax.configs.n_critic import n_critic_at
  from wgan_jax.devices import Devices
  config = tiny_config(experiment, overrides)
  parts = run.build(config, Devices.single(), synthetic=True)
  stream = parts.stream(0)
  state = parts.create_state()
  if nudge_seed is not None:
    state = nudge(state, nudge_seed, NUDGE_BF16 if config.precision == "bf16" else NUDGE)
  metrics = {}
  for step in range(ITERATIONS):
    n_critic = n_critic_at(step, parts.config)
    state, metrics = parts.iteration(state, n_critic, stream.next(n_critic))
  metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
  return {"state": summarise(parts.devices.global_view(state)), "metrics": metrics}


def deviation(held: list[float], now: list[float]) -> float:
  """How far an array's summary [sum, sum of |x|, sum of x^2] moved: the change of
  each sum over the array's held sum of |x| (sum of x^2 for the last), the largest."""
  (s0, a0, q0), (s1, a1, q1) = held, now
  return max(abs(s0 - s1) / max(a0, 1e-30), abs(a0 - a1) / max(a0, 1e-30),
             abs(q0 - q1) / max(q0, 1e-30))


def rounding_noise(record: dict[str, Any], nudged: list[dict[str, Any]]) -> dict[str, float]:
  """Each array's largest deviation from `record` over the `nudged` runs."""
  return {path: max(deviation(held, run["state"][path]) for run in nudged)
          for path, held in record["state"].items()}


def tolerance(held: dict[str, Any], path: str, rtol: float) -> float:
  """What array `path` of record `held` may move: `rtol`, or NOISE_MARGIN times the
  rounding noise recorded for it where that is more."""
  return max(rtol, NOISE_MARGIN * held.get("noise", {}).get(path, 0.0))


def compare(held: dict[str, Any], now: dict[str, Any], rtol: float) -> list[str]:
  """What of `now` differs from `held`: missing or new arrays, and arrays whose
  deviation is past their tolerance."""
  problems = []
  if held["state"].keys() != now["state"].keys():
    gone = sorted(held["state"].keys() - now["state"].keys())
    new = sorted(now["state"].keys() - held["state"].keys())
    problems.append(f"arrays gone: {gone[:4]}, new: {new[:4]}")
  for path in held["state"].keys() & now["state"].keys():
    moved, allowed = deviation(held["state"][path], now["state"][path]), tolerance(
        held, path, rtol)
    if moved > allowed:
      (s0, a0, _), (s1, a1, _) = held["state"][path], now["state"][path]
      problems.append(f"{path}: sum {s0:.9g} -> {s1:.9g}, |x| {a0:.9g} -> {a1:.9g} "
                      f"(moved {moved:.2g}, holds to {allowed:.2g})")
  return sorted(problems)


def machine() -> str:
  """Where a record was made: jaxlib's version and the CPU's vector extensions,
  by which XLA:CPU and its kernels pick their code (and so their rounding)."""
  import jaxlib  # pylint: disable=import-outside-toplevel
  extensions: set[str] = set()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      line = next((l for l in f if l.startswith("flags")), "")
    extensions = {x for x in line.partition(":")[2].split() if x.startswith(("avx", "amx", "fma"))}
  except OSError:
    pass
  return f"jaxlib {jaxlib.__version__}, {platform.machine()}: {' '.join(sorted(extensions))}"


def record_case(experiment: str, overrides=()) -> dict[str, Any]:
  """A case's record: its numbers, this machine, and each array's rounding noise."""
  record = run_case(experiment, overrides)
  nudged = [run_case(experiment, overrides, nudge_seed=seed) for seed in range(NUDGED_RUNS)]
  return {**record, "machine": machine(), "noise": rounding_noise(record, nudged)}


def load() -> dict[str, Any]:
  """The recorded cases ({} before the first recording)."""
  if not os.path.exists(RECORD):
    return {}
  with open(RECORD) as f:
    return json.load(f)


def calibrate(held: dict[str, Any], other: dict[str, Any]) -> None:
  """Print how the records of `other` (another CPU kind's, made of the same code)
  sit against `held`'s: per case, the array that moved most for its tolerance."""
  for name in sorted(held.keys() & other.keys()):
    record = held[name]
    worst = max(((deviation(record["state"][p], other[name]["state"][p])
                  / tolerance(record, p, RTOL), p)
                 for p in record["state"].keys() & other[name]["state"].keys()),
                default=(0.0, ""))
    print(f"{name}: {worst[0]:.3g} of its tolerance at {worst[1]}")


def main(argv: list[str]) -> int:
  write = "--write" in argv
  names = [a for a in argv if not a.startswith("--")]
  held = load()
  if "--calibrate" in argv:
    with open(names[0]) as f:
      calibrate(held, json.load(f))
    return 0
  results = dict(held)
  for name, (experiment, overrides) in cases().items():
    if names and name not in names:
      continue
    if write:
      results[name] = record_case(experiment, overrides)
      noisy = sum(v > RTOL / NOISE_MARGIN for v in results[name]["noise"].values())
      print(f"{name}: recorded {len(results[name]['state'])} arrays, {noisy} held to their "
            "rounding noise")
    else:
      problems = compare(held[name], run_case(experiment, overrides), RTOL) \
          if name in held else ["not recorded"]
      print(f"{name}: {'ok' if not problems else problems[0]} ({len(problems)} differ)")
  if write:
    os.makedirs(os.path.dirname(RECORD), exist_ok=True)
    with open(RECORD, "w") as f:
      json.dump(results, f, indent=1, sort_keys=True)
  return 0


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import tests.conftest  # noqa: F401  pylint: disable=unused-import  (the tests' XLA flags)
  sys.exit(main(sys.argv[1:]))
