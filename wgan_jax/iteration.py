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
compiling 100 unrolled updates. The trainer passes `n_critic` as the chunk, so
the chunks reuse the shapes of an ordinary iteration. Logged critic metrics
then cover the last chunk.
"""
from __future__ import annotations

import functools
import jax
import ml_collections

from wgan_jax import builders, steps
from wgan_jax.data.toy import Sampler
from wgan_jax.devices import Devices
from wgan_jax.state import TrainState

# Separates the data stream from the model's stream under one seed.
DATA_STREAM = 0x64617461



class Iteration:
  """One generator iteration compiled for a spec and a device layout."""

  def __init__(self, spec: steps.GanSpec, devices: Devices, *, unroll: bool, chunk: int,
               sampler: Sampler | None = None, batch_size: int = 0):
    if chunk < 1:
      raise ValueError(f"chunk={chunk} must be at least 1")
    self.spec, self.devices, self.unroll, self.chunk = spec, devices, unroll, chunk
    self.sampler, self.batch_size = sampler, batch_size
    if sampler is None:  # Shapes come from the real data: one jit each.
      program = lambda fn: self.devices.compile(functools.partial(fn, spec, unroll=unroll),
                                                host_data=True)
      critic_only, whole = program(steps.train_critic), program(steps.generator_iteration)
      self._critic_only, self._iteration = (lambda _: critic_only), (lambda _: whole)
    else:  # The update count is a shape inside the program: one compile per count.
      program = lambda fn: functools.cache(lambda count: self.devices.compile(
          functools.partial(self._drawn, fn, count), host_data=False))
      self._critic_only = program(steps.train_critic)
      self._iteration = program(steps.generator_iteration)

  def _drawn(self, fn, count: int, state: TrainState, first: jax.Array):
    """`fn` on real data drawn in the program: update i of the iteration draws
    from fold_in(key of the step, i), however the updates are grouped."""
    key = jax.random.fold_in(jax.random.fold_in(state.rng, DATA_STREAM), state.step)
    real = steps.per_update(lambda k: self.sampler(k, self.batch_size), key, first, count)
    return fn(self.spec, state, self.devices.shard_in_program(real), first, self.unroll)

  def __call__(self, state: TrainState, n_critic: int, real: jax.Array | None = None
               ) -> tuple[TrainState, steps.Metrics]:
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
    return state, self.devices.get(metrics)


def build(config: ml_collections.ConfigDict, spec: steps.GanSpec, devices: Devices,
          sampler: Sampler | None = None) -> Iteration:
  """The compiled generator iteration of `config` over `devices`; `sampler`
  draws the real data inside the program (None: the host feeds it)."""
  return Iteration(spec, devices, unroll=builders.unroll_critic(config), chunk=config.n_critic,
                   sampler=sampler, batch_size=config.batch_size)
