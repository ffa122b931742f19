"""The compiled generator iteration: `build(config, spec, devices, sampler)` is
the one way the trainer, `bench` and the tests get it.

An `Iteration` runs `iteration(state, n_critic, real)` -> (state, metrics):
the n_critic critic updates (each on its own real batch, fake batch and key)
and the generator update as one XLA program over the run's devices. Real data
comes either from the host (`real`: [n_critic, batch, ...] on the devices,
uint8 images) or is drawn inside the program (`sampler`, the toy sets).

Where the critic updates are written out (XLA:CPU, `builders.unroll_critic`),
an unusually long phase (the reference schedule's 100) runs as chunks of
`chunk` critic updates, each its own call, then one program with the rest and
the generator update: the numbers are those of one long program, without
compiling 100 unrolled updates. `build` passes `n_critic` as the chunk, so
the chunks reuse the shapes of an ordinary iteration. Logged critic metrics
then cover the last chunk.

A sweep (`sweeps`) adds a model axis (`ModelAxis`): the same iteration for
each of K models, each with its own swept values, in the same one program; a
host batch (image sets) goes whole to every device, and every model trains on it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import ml_collections
import numpy as np

from wgan_jax import builders, data, placement, sweeps, updates
from wgan_jax.configs import n_critic
from wgan_jax.data.toy import Sampler
from wgan_jax.devices import Devices
from wgan_jax.state import TrainState

# Separates the data stream from the model's stream under one seed.
DATA_STREAM = 0x64617461


@dataclasses.dataclass(frozen=True)
class ModelAxis:
  """A sweep's models (`sweeps`): their swept values ([K] arrays by key), the
  spec of one model given its values (traced inside the program), and how a
  device runs its share of the models: "vmap" (batched matmuls) or "map" (one
  model after another inside the program; XLA:CPU's batched matmuls are
  slower than its plain ones)."""
  hparams: dict[str, np.ndarray]
  spec_of: Callable[[dict[str, jax.Array]], updates.GanSpec]
  loop: str = "vmap"

  def run(self, one: Callable, state: TrainState, mesh: jax.sharding.Mesh, *shared):
    """`one(spec, state_of_one_model, *shared)` for every model: each device runs
    its models (the model axis is split over `mesh`) on the `shared` arrays, which
    every device holds whole (a host batch); no data crosses devices."""
    def local(hparams, state, *shared):
      fn = lambda hparams, state: one(self.spec_of(hparams), state, *shared)
      if self.loop == "vmap":
        return jax.vmap(fn)(hparams, state)
      return jax.lax.map(lambda args: fn(*args), (hparams, state))
    models = jax.sharding.PartitionSpec(placement.DATA_AXIS)
    whole = jax.sharding.PartitionSpec()
    return jax.shard_map(local, mesh=mesh, in_specs=(models, models, *(whole,) * len(shared)),
                         out_specs=models)(self.hparams, state, *shared)


def model_axis(config: ml_collections.ConfigDict, data_shape: tuple[int, ...],
               sweep: sweeps.Sweep | None) -> ModelAxis | None:
  """The model axis of `config`'s `sweep`, or None for one model."""
  if sweep is None:
    return None
  return ModelAxis(sweep.hparams(),
                   lambda hparams: builders.make_spec(config, data_shape, swept=hparams),
                   builders.model_loop(config))


class Iteration:
  """One generator iteration compiled for a spec and a device layout."""

  def __init__(self, spec: updates.GanSpec, devices: Devices, *, unroll: bool, chunk: int,
               sampler: Sampler | None = None, batch_size: int = 0,
               models: ModelAxis | None = None):
    if chunk < 1:
      raise ValueError(f"chunk={chunk} must be at least 1")
    self.spec, self.devices, self.unroll, self.chunk = spec, devices, unroll, chunk
    self.sampler, self.batch_size, self.models = sampler, batch_size, models
    if sampler is None:  # Shapes come from the real data: one jit each.
      program = lambda fn: self.devices.compile(functools.partial(self._hosted, fn),
                                                host_data=True)
      critic_only, whole = program(updates.train_critic), program(updates.generator_iteration)
      self._critic_only, self._iteration = (lambda _: critic_only), (lambda _: whole)
    else:  # The update count is a shape inside the program: one compile per count.
      program = lambda fn: functools.cache(lambda count: self.devices.compile(
          functools.partial(self._drawn, fn, count), host_data=False))
      self._critic_only = program(updates.train_critic)
      self._iteration = program(updates.generator_iteration)

  def _hosted(self, fn, state: TrainState, real: jax.Array, first: jax.Array):
    """`fn` on real data from the host; a sweep's models each take the whole batch."""
    if self.models is None:
      return fn(self.spec, state, real, first, self.unroll)
    return self.models.run(lambda spec, one, real: fn(spec, one, real, first, self.unroll),
                           state, self.devices.mesh, real)

  def _drawn(self, fn, count: int, state: TrainState, first: jax.Array):
    """`fn` on real data drawn in the program: update i of the iteration draws
    from fold_in(key of the step, i), however the updates are grouped. A
    sweep maps it over the model axis, each model with its own spec."""
    if self.models is None:
      return self._drawn_one(fn, count, self.spec, state, first)
    return self.models.run(lambda spec, one: self._drawn_one(fn, count, spec, one, first),
                           state, self.devices.mesh)

  def _drawn_one(self, fn, count: int, spec: updates.GanSpec, state: TrainState,
                 first: jax.Array):
    key = jax.random.fold_in(jax.random.fold_in(state.rng, DATA_STREAM), state.step)
    real = updates.per_update(lambda k: self.sampler(k, self.batch_size), key, first, count)
    return fn(spec, state, self.devices.shard_in_program(real), first, self.unroll)

  def __call__(self, state: TrainState, n_critic: int, real: jax.Array | None = None
               ) -> tuple[TrainState, updates.Metrics]:
    """Generator iteration on the laid-out `state` (donated); metrics in the global view."""
    if (real is None) != (self.sampler is not None):
      raise ValueError("real data goes to an iteration without a sampler, and only there")

    def args(first: int, count: int) -> tuple:
      if real is None:
        return (first,)
      whole = first == 0 and count == n_critic
      return (real if whole else self.devices.slice_updates(real, first, first + count), first)

    first = 0
    if self.unroll:
      while n_critic - first > self.chunk:
        state = self._critic_only(self.chunk)(state, *args(first, self.chunk))[0]
        first += self.chunk
    state, metrics = self._iteration(n_critic - first)(state, *args(first, n_critic - first))
    return state, self.devices.global_view(metrics)


def build(config: ml_collections.ConfigDict, spec: updates.GanSpec, devices: Devices,
          sampler: Sampler | None = None, sweep: sweeps.Sweep | None = None) -> Iteration:
  """The compiled generator iteration of `config` over `devices` (run.build
  makes it); `sampler` draws the real data inside the program (None: the host
  feeds it). A `sweep`'s iteration trains all its models."""
  models = model_axis(config, data.data_shape(config.data), sweep)
  # The chunk of an unusually long phase: an ordinary iteration's count (a sweep
  # over n_critic runs its largest for every model, in one program).
  chunk = n_critic.max_n_critic(config)
  return Iteration(spec, devices, unroll=builders.unroll_critic(config), chunk=chunk,
                   sampler=sampler, batch_size=config.batch_size, models=models)
