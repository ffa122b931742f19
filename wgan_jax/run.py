"""A run, built once: `build(config, devices)` turns a validated config into
everything a training loop needs: the devices and their layout, the data, the
spec (networks, optimizers, loss terms), the sweep, the compiled generator
iteration, the initial and the abstract state, and the evaluator. The
trainer, the benchmark, the studies and the tests build from here; nothing
wires these parts again.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import ml_collections

from wgan_jax import builders, data, evaluators, inputs, iteration, placement, sweeps, updates
from wgan_jax.configs.rules import ConfigError
from wgan_jax.devices import Devices
from wgan_jax.state import TrainState


def devices_for(config: ml_collections.ConfigDict) -> Devices:
  """Every device of every process, laid out as `config` asks (a sweep's models
  split over the devices, each model on whole batches), or a ConfigError when
  the batch does not split over them."""
  if config.parallelism == "pmap" and jax.process_count() > 1:
    raise ConfigError("parallelism='pmap' runs within one process; with several processes use "
                      "parallelism='jit' (the default)")
  sweep = sweeps.from_config(config)
  if sweep is not None and jax.process_count() > 1 and not data.is_toy(config.data):
    raise ConfigError(f"a sweep on an image set ({config.data.name}) runs in one process: every "
                      "model trains on the whole batch, and a process reads only its share; "
                      "run it on one host, or sweep a toy set")
  try:
    if sweep is not None:
      return Devices("jit", sweeps.devices_for(sweep, placement.sorted_devices()),
                     shard_models=True)
    devices = Devices(config.parallelism, shard_state=config.shard_state)
    devices.check_batch(config.batch_size)
    return devices
  except ValueError as e:
    raise ConfigError(str(e)) from e


def _check_micro_batches(config: ml_collections.ConfigDict, devices: Devices) -> None:
  k = config.accumulation_steps
  per_device = config.batch_size // (1 if devices.shard_models else devices.count)
  if per_device % k:
    raise ConfigError(f"accumulation_steps={k} does not divide the {per_device} examples each "
                      f"of the {devices.count} devices holds of batch_size={config.batch_size}: "
                      "use a divisor of it, or another batch size")


@dataclasses.dataclass(frozen=True)
class Run:
  """The parts of a run of `config` on `devices`."""
  config: ml_collections.ConfigDict
  devices: Devices
  data_shape: tuple[int, ...]
  sweep: sweeps.Sweep | None
  # Where the data comes from: drawn in the program (toy sets), a tf.data stream,
  # or one fixed random batch (synthetic, for the benchmark and golden numbers).
  source: inputs.DrawnData | inputs.ImageData | inputs.SyntheticImages
  # What the compiled updates run (under pmap: with the device axis).
  spec: updates.GanSpec
  iteration: iteration.Iteration
  # The pure function that makes the fresh state (one model, or a sweep's models).
  init: Callable[[], TrainState]

  @functools.cached_property
  def global_spec(self) -> updates.GanSpec:
    """The spec outside pmap, for what runs on the global view (evaluation, FLOPs)."""
    if not self.devices.pmap:
      return self.spec
    return builders.make_spec(self.config, self.data_shape)

  @functools.cached_property
  def evaluator(self) -> evaluators.Evaluator:
    """The in-training evaluator (a ConfigError for unusable evaluation settings)."""
    return evaluators.make_evaluator(self.config, self.global_spec, self.sweep)

  @functools.cached_property
  def abstract_state(self) -> TrainState:
    """The state's shapes, dtypes and shardings: a restore target that allocates nothing."""
    return builders.abstract_state(self.init, devices=self.devices)

  def create_state(self) -> TrainState:
    """A fresh state in the global view, born in its shardings."""
    return builders.create_state(self.init, devices=self.devices)

  def stream(self, step: int, position: int = 0) -> inputs.Stream:
    """The real data from generator step `step` on, at data-stream `position`."""
    return self.source.stream(step, position)


def build(config: ml_collections.ConfigDict, devices: Devices | None = None, *,
          synthetic: bool = False) -> Run:
  """The run of validated `config` on `devices` (default: `devices_for(config)`).
  `synthetic`: image sets as one fixed random batch (no data set needed). Missing
  data is a DataError here, before anything is written."""
  devices = devices_for(config) if devices is None else devices
  _check_micro_batches(config, devices)
  source = inputs.open_data(config, devices, synthetic=synthetic)
  shape = data.data_shape(config.data)
  spec = builders.make_spec(config, shape, devices.axis_name)
  sweep = sweeps.from_config(config)
  return Run(config=config, devices=devices, data_shape=shape, sweep=sweep, source=source,
             spec=spec, iteration=iteration.build(config, spec, devices, source.sampler, sweep),
             init=builders.state_initializer(config, spec, shape, sweep))
