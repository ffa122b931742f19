"""What a run's compiled programs need in memory, from XLA's analysis of the
programs compiled for abstract inputs: nothing is allocated, so it answers for
a model or batch too big for this machine."""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from wgan_jax import builders, data, updates


def iteration_memory(config: ml_collections.ConfigDict, devices: int = 1) -> dict[str, Any]:
  """Bytes of one generator iteration compiled for one device holding
  `batch_size / devices` examples (ordinary n_critic), from abstract inputs:
  nothing is allocated, so it answers for a model too big for this machine."""
  shape = data.data_shape(config.data)
  spec = builders.make_spec(config, shape)
  state = jax.eval_shape(lambda: builders.init_state(spec, shape, 0))
  per_device = config.batch_size // devices
  dtype = jnp.float32 if data.get(config.data.name).kind == data.TOY else jnp.uint8
  real = jax.ShapeDtypeStruct((config.n_critic, per_device, *shape), dtype)
  if spec.num_classes:
    real = (real, jax.ShapeDtypeStruct((config.n_critic, per_device), jnp.int32))
  program = jax.jit(functools.partial(updates.generator_iteration, spec,
                                      unroll=builders.unroll_critic(config)))
  analysis = program.lower(state, real).compile().memory_analysis()
  figures = {"argument": analysis.argument_size_in_bytes, "output": analysis.output_size_in_bytes,
             "temporary": analysis.temp_size_in_bytes,
             "generated_code": analysis.generated_code_size_in_bytes}
  # Each update alone (float inputs, as the iteration hands them over).
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
