"""Generator iterations on devices: where the state lives, how real data
reaches the compiled program, and how that program is compiled.

`Devices` is the run's data parallelism (config `parallelism`): `jax.jit` over
a Mesh of every device of every process (the state replicated, or with
`shard_state` split along `data` too; each real batch sharded along `data`),
or `jax.pmap` (a copy of the state per device, the steps averaging over the
`data` axis). A `Feed` runs one generator
iteration, `feed(state, n_critic)`: `ToyFeed` draws the real data inside the
program, `HostFeed` takes it from this process's input pipeline.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterator, Sequence

import jax
import numpy as np

from wgan_jax import parallel, steps
from wgan_jax.data import toy
from wgan_jax.state import PyTree, TrainState

# Separates the data stream from the model's stream under one seed.
_DATA_STREAM = 0x64617461

StepFn = Callable[..., tuple[TrainState, steps.Metrics]]


def unroll_critic_loop() -> bool:
  """Whether to write the critic updates out instead of looping (XLA:CPU only;
  see `steps.critic_updates`)."""
  return jax.default_backend() == "cpu"


class Devices:
  """The devices a run uses and how its state and batches are laid out on them.

  Default: one device (tools, tests); the trainer passes all devices.
  """

  def __init__(self, parallelism: str = "jit",
               devices: Sequence[jax.Device] | None = None, shard_state: bool = False):
    if parallelism not in parallel.PARALLELISMS:
      raise ValueError(f"parallelism={parallelism!r}; use one of "
                       f"{', '.join(parallel.PARALLELISMS)}")
    if shard_state and parallelism == "pmap":
      raise ValueError("shard_state needs parallelism='jit' (pmap keeps a copy per device)")
    self.pmap, self.shard_state = parallelism == "pmap", shard_state
    self.mesh = parallel.make_mesh(devices)
    self.axis_name = parallel.DATA_AXIS if self.pmap else None
    self._replicated = parallel.replicated(self.mesh)
    self._batches = parallel.batch_sharding(self.mesh, 1)  # [k, batch, ...]

  @classmethod
  def single(cls) -> "Devices":
    return cls("jit", jax.devices()[:1])

  @property
  def count(self) -> int:
    return self.mesh.size

  def process_batch(self, global_batch: int) -> int:
    """Rows of each global batch this process reads (ValueError if it does not split)."""
    return parallel.process_batch_size(global_batch, self.mesh)

  def put(self, state: PyTree) -> PyTree:
    """A global-view state (as created or restored) laid out for the steps:
    replicated, or with `shard_state` each array split along `data`."""
    if self.pmap:
      return parallel.pmap_replicate(state)
    if self.shard_state:
      return jax.device_put(state, jax.tree.map(
          lambda x: parallel.sharded_along_data(x, self.mesh), state))
    return parallel.replicate(state, self.mesh)

  def get(self, tree: PyTree) -> PyTree:
    """The global view of a state or metrics: what checkpoints take."""
    return parallel.pmap_unreplicate(tree) if self.pmap else tree

  def replicated(self, tree: PyTree) -> PyTree:
    """The global view with every array whole on every device (evaluation, checks:
    with `shard_state` no process holds all of an array)."""
    if self.pmap or not self.shard_state:
      return self.get(tree)
    return jax.jit(lambda t: t, out_shardings=self._replicated)(tree)

  def compile(self, fn: StepFn, host_data: bool) -> StepFn:
    """`fn(state, [real,] first)` compiled over the devices; it donates the state."""
    if self.pmap:
      in_axes = (0, 0, None) if host_data else (0, None)
      return jax.pmap(fn, axis_name=self.axis_name, in_axes=in_axes, donate_argnums=0)
    compiled = {}

    def run(state, *args):
      if not compiled:  # The state keeps the layout it came in with (see `put`).
        layout = jax.tree.map(lambda x: x.sharding, state)
        compiled["fn"] = jax.jit(fn, out_shardings=(layout, self._replicated),
                                 donate_argnums=0)
      return compiled["fn"](state, *args)

    return run

  def shard_in_program(self, real: jax.Array) -> jax.Array:
    """Real data drawn inside the program for the global batch ([k, batch, ...]):
    split along `data`, so each device works on its rows only."""
    if self.pmap:
      return steps.local_slice(real, self.axis_name, axis=1)
    return jax.lax.with_sharding_constraint(real, self._batches)

  def real(self, local: np.ndarray) -> jax.Array:
    """This process's rows [k, local batch, ...] as the program's input."""
    if self.pmap:
      return parallel.split_for_pmap(local, jax.local_device_count(), axis=1)
    return parallel.global_batch_from_local(local, self.mesh, self._batches)


class Feed:
  """Runs generator iterations on real data from one source.

  `__call__(state, n_critic)` does one whole iteration. Where the critic
  updates are unrolled (CPU), an unusually long one (the reference schedule's
  100) runs as chunks of `chunk` critic updates, each its own call, and then
  one program with the rest and the generator update: the numbers are the
  same as one long program, without compiling 100 unrolled updates. Logged
  critic metrics then cover the last chunk.
  """

  def __init__(self, spec: steps.GanSpec, chunk: int, devices: Devices | None = None):
    self.spec, self.chunk, self.unroll = spec, chunk, unroll_critic_loop()
    self.devices = devices or Devices.single()

  def critic_only(self, state: TrainState, first: int, count: int, real) -> TrainState:
    raise NotImplementedError

  def iteration(self, state: TrainState, first: int, count: int, real):
    raise NotImplementedError

  def real_batches(self, n_critic: int) -> np.ndarray | None:
    """The iteration's real data, or None where it is made inside the program."""
    return None

  def data_position(self) -> int | None:
    """Where this process's data stream stands, for the checkpoint (None: the
    data is a function of the step)."""
    return None

  def __call__(self, state: TrainState, n_critic: int) -> tuple[TrainState, steps.Metrics]:
    real = self.real_batches(n_critic)
    part = lambda a, b: None if real is None else self.devices.real(real[a:b])
    first = 0
    if self.unroll:
      while n_critic - first > self.chunk:
        state = self.critic_only(state, first, self.chunk, part(first, first + self.chunk))
        first += self.chunk
    return self.iteration(state, first, n_critic - first, part(first, n_critic))


class ToyFeed(Feed):
  """Real batches drawn on device, inside the compiled program."""

  def __init__(self, spec: steps.GanSpec, chunk: int, dataset: toy.ToyDataset, batch: int,
               devices: Devices | None = None):
    super().__init__(spec, chunk, devices)
    self.dataset, self.batch = dataset, batch
    compile_for = lambda fn: functools.cache(lambda count: self.devices.compile(
        functools.partial(self._toy, fn, count), host_data=False))
    self._critic_only = compile_for(steps.critic_updates)
    self._iteration = compile_for(steps.generator_iteration)

  def _toy(self, fn, count: int, state: TrainState, first: jax.Array):
    key = jax.random.fold_in(jax.random.fold_in(state.rng, _DATA_STREAM), state.step)
    real = steps.per_update(lambda k: self.dataset.sample(k, self.batch), key, first, count)
    return fn(self.spec, state, self.devices.shard_in_program(real), first, self.unroll)

  def critic_only(self, state, first, count, real):
    return self._critic_only(count)(state, first)[0]

  def iteration(self, state, first, count, real):
    state, metrics = self._iteration(count)(state, first)
    return state, self.devices.get(metrics)


class HostFeed(Feed):
  """Real batches from a host iterator of this process's rows. Dispatch is
  asynchronous, so the next batches are read while the devices still run."""

  def __init__(self, spec: steps.GanSpec, chunk: int, batches: Iterator[np.ndarray],
               devices: Devices | None = None):
    super().__init__(spec, chunk, devices)
    self.batches = batches
    compile_for = lambda fn: self.devices.compile(
        functools.partial(fn, spec, unroll=self.unroll), host_data=True)
    self._critic_only = compile_for(steps.critic_updates)
    self._iteration = compile_for(steps.generator_iteration)

  def real_batches(self, n_critic: int) -> np.ndarray:
    return np.stack([next(self.batches) for _ in range(n_critic)])

  def data_position(self) -> int:
    return self.batches.position

  def critic_only(self, state, first, count, real):
    return self._critic_only(state, real, first)[0]

  def iteration(self, state, first, count, real):
    state, metrics = self._iteration(state, real, first)
    return state, self.devices.get(metrics)
