"""What a run's compiled programs need in memory, from XLA's analysis of the
programs compiled for abstract inputs: nothing is allocated, so it answers for
a model or batch too big for this machine, and for devices it does not have."""
from __future__ import annotations

import copy
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from wgan_jax import builders, configs, data, updates
from wgan_jax.devices import program_bytes

# What a program may allocate on one device of each kind: (name, bytes). JAX takes
# 75% of a GPU's memory by default (XLA_PYTHON_CLIENT_MEM_FRACTION); a TPU's HBM is
# counted whole.
DEVICE_KINDS: dict[str, tuple[str, int]] = {
    "tpu_v5e": ("TPU v5e (16 GiB)", 16 * 2**30),
    "tpu_v4": ("TPU v4 (32 GiB)", 32 * 2**30),
    "h100": ("H100 (80 GB, JAX's 75%)", int(0.75 * 80e9)),
}
# The largest batch is found to within this share of itself.
BATCH_TOLERANCE = 0.02


def _abstract_inputs(config: ml_collections.ConfigDict, per_device: int):
  """(spec, state, real): the iteration's arguments as shapes, one device holding
  `per_device` examples of each of the n_critic batches."""
  shape = data.data_shape(config.data)
  spec = builders.make_spec(config, shape)
  state = jax.eval_shape(lambda: builders.init_state(spec, shape, 0))
  dtype = jnp.float32 if data.is_toy(config.data) else jnp.uint8
  real = jax.ShapeDtypeStruct((config.n_critic, per_device, *shape), dtype)
  if spec.num_classes:
    real = (real, jax.ShapeDtypeStruct((config.n_critic, per_device), jnp.int32))
  return spec, state, real


def _iteration(config: ml_collections.ConfigDict, spec: updates.GanSpec, donate: bool):
  return jax.jit(functools.partial(updates.generator_iteration, spec,
                                   unroll=builders.unroll_critic(config)),
                 donate_argnums=0 if donate else ())


def iteration_memory(config: ml_collections.ConfigDict, devices: int = 1) -> dict[str, Any]:
  """Bytes of one generator iteration compiled for one device holding
  `batch_size / devices` examples (ordinary n_critic), from abstract inputs:
  nothing is allocated, so it answers for a model too big for this machine."""
  per_device = config.batch_size // devices
  spec, state, real = _abstract_inputs(config, per_device)
  analysis = _iteration(config, spec, donate=False).lower(state, real).compile().memory_analysis()
  figures = {"argument": analysis.argument_size_in_bytes, "output": analysis.output_size_in_bytes,
             "temporary": analysis.temp_size_in_bytes,
             "generated_code": analysis.generated_code_size_in_bytes}
  # Each update alone (float inputs, as the iteration hands them over).
  shape = data.data_shape(config.data)
  x = jax.ShapeDtypeStruct((per_device, *shape), jnp.float32)
  labels = jax.ShapeDtypeStruct((per_device,), jnp.int32) if spec.num_classes else None
  key = jax.random.PRNGKey(0)
  critic = jax.jit(lambda c, r, f, y: updates.critic_step(spec, c, r, f, key, labels=y))
  generator = jax.jit(lambda g, c, r: updates.generator_step(spec, g, c, key, per_device, r))
  temporaries = {
      "critic_update": critic.lower(state.critic, x, x, labels).compile().memory_analysis(),
      "generator_update": generator.lower(state.generator, state.critic, x).compile()
                          .memory_analysis()}
  return {"per_device_batch": per_device, "accumulation_steps": config.accumulation_steps,
          **{f"memory_{k}_mib": round(v / 2**20, 2) for k, v in figures.items()},
          **{f"memory_{k}_temporary_mib": round(a.temp_size_in_bytes / 2**20, 2)
             for k, a in temporaries.items()},
          # Donated state: the outputs reuse the arguments' buffers.
          "memory_peak_estimate_mib": round(
              (figures["argument"] + figures["temporary"] + figures["generated_code"]) / 2**20, 2)}


def iteration_bytes(config: ml_collections.ConfigDict, per_device: int) -> int:
  """What the trainer's compiled iteration (state donated) needs on a device holding
  `per_device` examples, counted as `devices.check_fits` counts it before a run."""
  spec, state, real = _abstract_inputs(config, per_device)
  compiled = _iteration(config, spec, donate=True).lower(state, real).compile()
  return program_bytes(compiled.memory_analysis())


def largest_batch(needed: Callable[[int], int], capacity: int, start: int,
                  tolerance: float = BATCH_TOLERANCE,
                  measured: dict[int, int] | None = None) -> int:
  """The largest batch b with needed(b) <= capacity (0 if not even 1), to within
  `tolerance` of itself, for a `needed` that grows with b, nearly linearly: each
  guess is on the line through the two measurements nearest the capacity, kept
  inside the bracket found so far. `measured` (batch: bytes) holds what earlier
  searches of the same program compiled; this one's measurements are added to it."""
  measured = {} if measured is None else measured
  fits = max((b for b, m in measured.items() if m <= capacity), default=0)
  too_big = min((b for b, m in measured.items() if m > capacity), default=None)
  # needed(fits) <= capacity < needed(too_big)

  def measure(b: int) -> bool:
    nonlocal fits, too_big
    measured[b] = needed(b)
    if measured[b] <= capacity:
      fits = max(fits, b)
      return True
    too_big = b if too_big is None else min(too_big, b)
    return False

  if len(measured) < 2:
    measure(start)
    measure(2 * start)
  last_fit = too_big is None
  while too_big is None or too_big - fits > max(1, tolerance * fits):
    (b1, m1), (b2, m2) = sorted(measured.items(), key=lambda p: abs(p[1] - capacity))[:2]
    line = b2 + (capacity - m2) * (b2 - b1) / (m2 - m1) if m2 != m1 else 2 * max(b1, b2)
    # Aim a little past the line, on the side not yet close: the bracket closes from
    # both ends instead of creeping up from one.
    guess = int(line * (1 + tolerance / 4 if last_fit else 1 - tolerance / 4))
    upper = too_big if too_big is not None else float("inf")
    if not fits < guess < upper:  # The line is off: step just past what fits, or halve.
      guess = (fits + max(1, int(tolerance * fits / 2)) if too_big is None
               else 1 if fits == 0 else (fits + too_big) // 2)
    last_fit = measure(guess)
  return fits


def accelerator_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with its "auto" choices as a GPU or TPU makes them
  (`builders.ACCELERATOR_CHOICES`, not XLA:CPU's unrolled loop)."""
  config = copy.deepcopy(config)
  for key, text in builders.ACCELERATOR_CHOICES:
    configs.override(config, key, text)
  return config


def fit(config: ml_collections.ConfigDict,
        capacities: dict[str, int] | None = None) -> dict[str, Any]:
  """The iteration's memory at the config's batch on one device, as a GPU or TPU
  compiles it (`accelerator_config`), and for each device kind of `capacities`
  (bytes by kind; default `DEVICE_KINDS`'s) the largest batch a device can hold."""
  config = accelerator_config(config)
  if capacities is None:
    capacities = {kind: size for kind, (_, size) in DEVICE_KINDS.items()}
  measured: dict[int, int] = {}
  needed = functools.partial(iteration_bytes, config)
  largest = {kind: largest_batch(needed, capacity, config.batch_size, measured=measured)
             for kind, capacity in sorted(capacities.items(), key=lambda item: item[1])}
  return {"per_device_batch": config.batch_size,
          "iteration_mib": round(measured[config.batch_size] / 2**20, 1),
          **{f"largest_batch_per_device_{kind}": largest[kind] for kind in capacities},
          "compiles": len(measured)}
