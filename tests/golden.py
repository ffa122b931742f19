"""Numbers held: every experiment (and a few variants no experiment covers)
trained for a few generator iterations at a tiny size from a fixed seed, its
final state summarised leaf by leaf. `tests/test_golden.py` asserts the code
still computes them; a refactor keeps them, an intended change rewrites them
and says why (BUILD.md, "Numbers held").

  python -m tests.golden            # compare every case, print the worst leaf of each
  python -m tests.golden --write    # record (after an intended change only)
  python -m tests.golden --write --here NAME   # add this CPU kind's numbers beside the record

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


def run_case(experiment: str, overrides=()) -> dict[str, Any]:
  """`ITERATIONS` generator iterations of the tiny `experiment` on one device:
  the final state's summary and the last iteration's metrics."""
  # pylint: disable=import-outside-toplevel
  import jax
  from wgan_jax import run
  from wgan_jax.configs.n_critic import n_critic_at
  from wgan_jax.devices import Devices
  parts = run.build(tiny_config(experiment, overrides), Devices.single(), synthetic=True)
  stream = parts.stream(0)
  state = parts.create_state()
  metrics = {}
  for step in range(ITERATIONS):
    n_critic = n_critic_at(step, parts.config)
    state, metrics = parts.iteration(state, n_critic, stream.next(n_critic))
  metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
  return {"state": summarise(parts.devices.global_view(state)), "metrics": metrics}


def compare(held: dict[str, Any], now: dict[str, Any], rtol: float) -> list[str]:
  """What of `now` differs from `held`: missing or new arrays, and sums off by
  more than `rtol` of the array's sum of |x| (with 1e-30 for all-zero ones)."""
  problems = []
  if held["state"].keys() != now["state"].keys():
    gone = sorted(held["state"].keys() - now["state"].keys())
    new = sorted(now["state"].keys() - held["state"].keys())
    problems.append(f"arrays gone: {gone[:4]}, new: {new[:4]}")
  for path in held["state"].keys() & now["state"].keys():
    (s0, a0, q0), (s1, a1, q1) = held["state"][path], now["state"][path]
    scale = max(a0, 1e-30)
    if abs(s0 - s1) > rtol * scale or abs(a0 - a1) > rtol * scale or abs(q0 - q1) > rtol * max(
        q0, 1e-30):
      problems.append(f"{path}: sum {s0:.9g} -> {s1:.9g}, |x| {a0:.9g} -> {a1:.9g}")
  return sorted(problems)


def machine() -> str:
  """What a case's numbers depend on besides the code: jaxlib's version and the
  CPU's vector extensions, by which XLA:CPU and its kernels pick their code. Three
  iterations of a clipped, bf16 or batch-normed case carry the rounding
  differences between two CPU kinds far past any tolerance that would still
  catch a change (BUILD.md, "Numbers held")."""
  import jaxlib  # pylint: disable=import-outside-toplevel
  extensions: set[str] = set()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      line = next((l for l in f if l.startswith("flags")), "")
    extensions = {x for x in line.partition(":")[2].split() if x.startswith(("avx", "amx", "fma"))}
  except OSError:
    pass
  return f"jaxlib {jaxlib.__version__}, {platform.machine()}: {' '.join(sorted(extensions))}"


def record_for(record: dict[str, Any], here: str) -> dict[str, Any] | None:
  """What a case holds on CPU kind `here`: its numbers recorded there (the record
  itself, or one kept beside it under "elsewhere"), the record if it names no
  machine (the older ones, made on CI's kind), else None: not held here."""
  if here in record.get("elsewhere", {}):
    return record["elsewhere"][here]
  return record if record.get("machine") in (None, here) else None


def load() -> dict[str, Any]:
  """The recorded cases ({} before the first recording)."""
  if not os.path.exists(RECORD):
    return {}
  with open(RECORD) as f:
    return json.load(f)


def main(argv: list[str]) -> int:
  write, here = "--write" in argv, "--here" in argv
  names = [a for a in argv if not a.startswith("--")]
  held = load()
  results = dict(held) if write else {}
  for name, (experiment, overrides) in cases().items():
    if names and name not in names:
      continue
    now = run_case(experiment, overrides)
    if write and here and name in held:
      results[name] = {**held[name], "elsewhere": {**held[name].get("elsewhere", {}),
                                                   machine(): now}}
      print(f"{name}: recorded {len(now['state'])} arrays beside the record, for this CPU kind")
    elif write:
      results[name] = {**now, "machine": machine()}
      print(f"{name}: recorded {len(now['state'])} arrays")
    else:
      record = record_for(held[name], machine()) if name in held else None
      problems = compare(record, now, 1e-5) if record else ["not recorded for this CPU kind"]
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
