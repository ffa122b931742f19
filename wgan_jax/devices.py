"""Where a run's state and batches live on its devices (config `parallelism`).

`Devices` is the run's data parallelism: `jax.jit` over a Mesh of every device
of every process (the state replicated, or with `shard_state` split along
`data` too; each real batch sharded along `data`), or `jax.pmap` (a copy of
the state per device, the updates averaging over the `data` axis).

Two views of a state: the *global view*, what checkpoints hold and restore
into (under jit the laid-out state itself; under pmap the first device's
copy), and the *layout* the compiled updates take (`put_state` turns one into
the other, `global_view` back).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
from jax.sharding import SingleDeviceSharding
import numpy as np

from wgan_jax import placement
from wgan_jax.batch_axis import local_slice
from wgan_jax.state import PyTree

StepFn = Callable[..., tuple[PyTree, dict[str, jax.Array]]]


class DoesNotFit(ValueError):
  """A compiled program needs more memory on a device than its allocator has."""


def allocator_limit(device: jax.Device) -> int | None:
  """Bytes the device's allocator may hand out, where it says (GPUs, TPUs); None
  where it does not (CPUs)."""
  stats = device.memory_stats()
  return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def _size(n: int) -> str:
  unit = next(u for u in (3, 2, 1, 0) if n >= 2**(10 * u) or u == 0)
  return f"{n / 2**(10 * unit):.1f} {('bytes', 'KiB', 'MiB', 'GiB')[unit]}"


def check_fits(compile_program: Callable[[], jax.stages.Compiled], device: jax.Device) -> None:
  """A one-line DoesNotFit when XLA's estimate of what the program needs on each
  device (arguments, outputs not aliased to them, temporaries, code) is more than
  `device`'s allocator has. Where the device reports no limit (CPUs) the program
  is not compiled here at all."""
  limit = allocator_limit(device)
  if limit is None:
    return
  analysis = compile_program().memory_analysis()
  if analysis is None:
    return
  needed = program_bytes(analysis)
  if needed > limit:
    raise DoesNotFit(f"XLA's estimate of the compiled iteration is {_size(needed)} on each "
                     f"device (state and batch {_size(analysis.argument_size_in_bytes)}, "
                     f"temporaries {_size(analysis.temp_size_in_bytes)}), more than the "
                     f"{_size(limit)} that {device.device_kind} {device.id}'s allocator has")


def program_bytes(analysis: Any) -> int:
  """What a compiled program needs on each device, from its `memory_analysis()`:
  arguments, outputs not aliased to them (a donated state's are), temporaries, code."""
  return (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
          - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes
          + analysis.generated_code_size_in_bytes)


class Devices:
  """The devices a run uses and how its state and batches are laid out on them.

  Default: every device of every process (`devices` narrows it, e.g. to one).
  """

  def __init__(self, parallelism: str = "jit",
               devices: Sequence[jax.Device] | None = None, shard_state: bool = False,
               shard_models: bool = False):
    if parallelism not in placement.PARALLELISMS:
      raise ValueError(f"parallelism={parallelism!r}; use one of "
                       f"{', '.join(placement.PARALLELISMS)}")
    if (shard_state or shard_models) and parallelism == "pmap":
      raise ValueError("shard_state and sweeps need parallelism='jit' (pmap keeps a copy per "
                       "device)")
    self.pmap, self.shard_state = parallelism == "pmap", shard_state
    # A sweep (`sweeps`): every array has a leading model axis, split over the
    # devices; each device trains its models on whole batches.
    self.shard_models = shard_models
    self.mesh = placement.make_mesh(devices)
    self.axis_name = placement.DATA_AXIS if self.pmap else None
    # This process's devices of the mesh: pmap's devices.
    self._local = [d for d in self.mesh.devices.flat if d.process_index == jax.process_index()]
    self._everywhere = placement.replicated_sharding(self.mesh)
    self._batches = placement.batch_sharding(self.mesh, 1)  # [k, batch, ...]
    self._models = placement.batch_sharding(self.mesh, 0)   # [models, ...]

  @classmethod
  def single(cls) -> "Devices":
    return cls("jit", jax.devices()[:1])

  @property
  def count(self) -> int:
    return self.mesh.size

  def check_batch(self, global_batch: int) -> None:
    """A one-line ValueError unless `global_batch` splits over the devices."""
    placement.check_batch_divisible(global_batch, self.mesh)

  def process_batch(self, global_batch: int) -> int:
    """Rows of each global batch this process reads (ValueError if it does not split)."""
    return placement.process_batch_size(global_batch, self.mesh)

  # ------------------------------------------------------------------ state

  def view_sharding(self, leaf) -> jax.sharding.Sharding:
    """Where the global view keeps an array shaped like `leaf`."""
    if self.pmap:
      return SingleDeviceSharding(self._local[0])
    if self.shard_models:
      return self._models
    if self.shard_state:
      return placement.sharded_along_data(leaf, self.mesh)
    return self._everywhere

  def view_shardings(self, tree: PyTree) -> PyTree:
    return jax.tree.map(self.view_sharding, tree)

  def put_state(self, view: PyTree) -> PyTree:
    """A global-view state (created or restored) laid out for the updates."""
    if self.pmap:
      return placement.pmap_replicate(view, self._local)
    return jax.device_put(view, self.view_shardings(view))

  def global_view(self, tree: PyTree) -> PyTree:
    """The global view of a laid-out state or of metrics: what checkpoints take."""
    return placement.pmap_unreplicate(tree) if self.pmap else tree

  def gathered(self, tree: PyTree) -> PyTree:
    """The global view with every array whole on every device (evaluation, checks:
    with `shard_state` no process holds all of an array)."""
    if self.pmap or not (self.shard_state or self.shard_models):
      return self.global_view(tree)
    return self._gather(tree)

  @functools.cached_property
  def _gather(self) -> Callable[[PyTree], PyTree]:
    # One jitted identity: it compiles once per state structure, not per call.
    return jax.jit(lambda t: t, out_shardings=self._everywhere)

  # ------------------------------------------------------------------ programs

  def compile(self, fn: StepFn, host_data: bool) -> StepFn:
    """`fn(state, [real,] first)` compiled over the devices; it donates the state."""
    if self.pmap:
      in_axes = (0, 0, None) if host_data else (0, None)
      return jax.pmap(fn, axis_name=self.axis_name, in_axes=in_axes, donate_argnums=0,
                      devices=self._local)
    compiled = {}

    def run(state, *args):
      if not compiled:
        compiled["fn"] = self.jit(fn, state)
        # Compiled ahead of the call, which then finds it in JAX's cache: a program too
        # big for the devices stops here, before it allocates anything.
        check_fits(lambda: compiled["fn"].lower(state, *args).compile(), self._local[0])
      return compiled["fn"](state, *args)

    return run

  def jit(self, fn: StepFn, state: PyTree) -> StepFn:
    """`fn` jitted over the mesh for a state laid out as `state` is: the state keeps
    that layout (see `put_state`), the metrics are everywhere; it donates the state."""
    layout = jax.tree.map(lambda x: x.sharding, state)
    return jax.jit(fn, out_shardings=(layout, self._everywhere), donate_argnums=0)

  def shard_in_program(self, real: jax.Array) -> jax.Array:
    """Real data drawn inside the program for the global batch ([k, batch, ...]):
    split along `data`, so each device works on its rows only."""
    if self.pmap:
      return local_slice(real, self.axis_name, axis=1)
    if self.shard_models:  # Each model's batch stays whole, where its model is.
      return real
    return jax.lax.with_sharding_constraint(real, self._batches)

  def put_batch(self, local: np.ndarray) -> jax.Array:
    """This process's rows [k, local batch, ...] on the devices, as the program
    takes them (the transfer is asynchronous)."""
    if self.pmap:
      return placement.pmap_shard(placement.split_for_pmap(local, len(self._local), axis=1),
                                 self._local)
    if self.shard_models:  # Every device trains its models on the whole batch.
      return jax.make_array_from_process_local_data(self._everywhere, local)
    return placement.global_batch_from_local(local, self.mesh, self._batches)

  def slice_updates(self, real: PyTree, start: int, stop: int) -> PyTree:
    """Critic updates [start, stop) of real batches laid out by `real` (images,
    or images and labels)."""
    if self.pmap:
      return jax.tree.map(lambda x: x[:, start:stop], real)
    return jax.tree.map(lambda x: x[start:stop], real)
