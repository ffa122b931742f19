"""What a run is built from: the spec (networks, optimizers, loss terms,
input transforms), the initial state (born on the devices in its layout), and
the per-backend choices. `run.build` puts them together for a loop.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import optax

from wgan_jax import (ada, critic_inputs, ema, models, optim, techniques, terms, transfer,
                      updates)
from wgan_jax.batch_axis import BatchAxis
from wgan_jax import sweeps
from wgan_jax.configs import schema
from wgan_jax.models import layers
from wgan_jax.devices import Devices
from wgan_jax.state import TrainState

# ----------------------------------------------------------------------------
# Per-backend choices ("auto" in the config).
# ----------------------------------------------------------------------------


def convolutions(config: ml_collections.ConfigDict) -> str:
  """The config's `convolutions`, "auto" resolved by `layers.backend_impl`."""
  return layers.backend_impl() if config.convolutions == "auto" else config.convolutions


# What the configs' "auto" choices become on a GPU or TPU (`convolutions`,
# `unroll_critic`, the sweep's `model_loop`), as overrides: the phase-split
# convolutions and the unrolled critic loop are XLA:CPU's.
ACCELERATOR_CHOICES = (("convolutions", "xla"), ("critic_loop", "scan"), ("sweep.loop", "vmap"))


def unroll_critic(config: ml_collections.ConfigDict) -> bool:
  """Whether the critic updates of one program are written out: "auto" on
  XLA:CPU only, where a strided convolution's weight gradient inside a loop
  body runs far slower than outside one (BUILD.md)."""
  if config.critic_loop != "auto":
    return config.critic_loop == "unrolled"
  return jax.default_backend() == "cpu"


def model_loop(config: ml_collections.ConfigDict) -> str:
  """How a device runs its models of a sweep: "auto" maps over them on XLA:CPU,
  whose batched matmuls run slower than one model's after another, and
  vmaps elsewhere (BUILD.md)."""
  if config.sweep.loop != "auto":
    return config.sweep.loop
  return "map" if jax.default_backend() == "cpu" else "vmap"


# ----------------------------------------------------------------------------
# Spec and state.
# ----------------------------------------------------------------------------


def transforms(config: ml_collections.ConfigDict) -> tuple[critic_inputs.Transform, ...]:
  """What every critic input goes through, in order: DiffAugment (or ADA's
  adaptive version of it), instance noise."""
  out = []
  policy = schema.parse_policy(config.augment)
  if policy:
    out.append(critic_inputs.AdaptiveAugment(policy) if config.ada.enabled
               else critic_inputs.DiffAugment(policy))
  t = config.techniques
  if t.instance_noise:
    steps = t.instance_noise_steps or config.num_generator_steps
    out.append(critic_inputs.InstanceNoise(float(t.instance_noise), max(steps, 1)))
  return tuple(out)


def make_spec(config: ml_collections.ConfigDict, data_shape: tuple[int, ...],
              axis_name: str | None = None, swept: Mapping[str, Any] | None = None
              ) -> updates.GanSpec:
  """Networks, optimizers and loss terms of `config`; `axis_name`: the pmap axis
  the updates run under (None under jit); `swept`: one model's values of a
  sweep's key (`schema.SWEEPABLE`, traced inside the sweep's program)."""
  swept = swept or {}
  clip = swept["clip"] if "clip" in swept else (config.clip or None)
  tech = techniques.from_config(config)
  axis = BatchAxis(axis_name)
  layout = dict(axis_name=axis_name, convolutions=convolutions(config), techniques=tech)
  critic = models.build_critic(config.model.critic, data_shape, **layout)
  critic_tx = optim.network_optimizer(config, "critic", swept, clip=clip)
  if config.freeze_critic_layers:  # FreezeD: the first layers keep what init_from loaded.
    classes = models.num_classes(config)
    inputs = (jnp.zeros((2, *data_shape)),) + ((jnp.zeros((2,), jnp.int32),) if classes else ())
    critic_tx = optax.chain(critic_tx, transfer.freeze(
        transfer.frozen_critic_layers(config, critic, *inputs)))
  return updates.GanSpec(
      generator=models.build_generator(config.model.generator, data_shape, **layout),
      critic=critic,
      generator_tx=optim.network_optimizer(config, "generator", swept),
      critic_tx=critic_tx,
      critic_terms=terms.build(terms.CRITIC_TERMS, config, swept, axis),
      generator_terms=terms.build(terms.GENERATOR_TERMS, config, swept, axis),
      noise_dim=config.model.noise_dim,
      transforms=transforms(config),
      num_classes=models.num_classes(config),
      compute_dtype=updates.COMPUTE_DTYPES[config.precision],
      batch_axis=axis,
      generator_batch_multiple=config.generator_batch_multiple,
      accumulation_steps=config.accumulation_steps,
      dequantize=bool(config.data.get("dequantize", False)),
      mirror=bool(config.data.get("mirror", False)),
      batch_dependent_critic=bool(tech.minibatch_kernels),
      n_critic=swept.get("n_critic"),
      clip=clip,
      ema_decay=float(config.ema.decay),
      ema_start=int(config.ema.start),
      ada=ada_controller(config))


def ada_controller(config: ml_collections.ConfigDict) -> ada.Controller | None:
  """The config's adaptive augmentation controller, or None without ADA."""
  if not config.ada.enabled:
    return None
  return ada.Controller(float(config.ada.target), int(config.ada.interval),
                        float(config.ada.speed_images))


def init_state(spec: updates.GanSpec, data_shape: tuple[int, ...], seed: int) -> TrainState:
  """Fresh generator and critic, initialised from `seed` (a pure function)."""
  k_gen, k_critic, k_train = jax.random.split(jax.random.PRNGKey(seed), 3)
  z = updates.generator_input(spec, jnp.zeros((2, spec.noise_dim), jnp.float32),
                            jnp.zeros((2,), jnp.int32))
  x = jnp.zeros((2, *data_shape), jnp.float32)
  generator = updates.init_net(spec.generator, spec.generator_tx, k_gen, z)
  return TrainState(
      step=jnp.zeros((), jnp.int32), rng=k_train, generator=generator,
      critic=updates.init_net(spec.critic, spec.critic_tx, k_critic, x, spec.clip,
                      jnp.zeros((2,), jnp.int32) if spec.num_classes else None),
      generator_ema=ema.initial(generator) if spec.ema_decay else {},
      ada=ada.initial() if spec.ada is not None else {})


def sweep_state(config: ml_collections.ConfigDict, data_shape: tuple[int, ...],
                sweep: sweeps.Sweep) -> TrainState:
  """The fresh states of a sweep's K models, stacked on a leading model axis:
  model m initialised from its own seed, under its own swept values."""
  def one(hparams, seed):
    return init_state(make_spec(config, data_shape, swept=hparams), data_shape, seed)
  return jax.vmap(one)(sweep.hparams(), sweep.seed_array())


def state_initializer(config: ml_collections.ConfigDict, spec: updates.GanSpec,
                      data_shape: tuple[int, ...], sweep: sweeps.Sweep | None = None
                      ) -> Callable[[], TrainState]:
  """The pure function that makes the run's fresh state: one model from
  `config.seed`, or the `sweep`'s K models with a leading axis."""
  if sweep is None:
    return lambda: init_state(spec, data_shape, config.seed)
  return lambda: sweep_state(config, data_shape, sweep)


def abstract_state(spec: updates.GanSpec | Callable[[], TrainState],
                   data_shape: tuple[int, ...] = (), devices: Devices | None = None
                   ) -> TrainState:
  """The state's shapes and dtypes, with the shardings of the global view on
  `devices` where given: a restore target that allocates nothing. `spec`
  (with `data_shape`) means one model; a `state_initializer` any state."""
  init = spec if callable(spec) else lambda: init_state(spec, data_shape, 0)
  shapes = jax.eval_shape(init)
  if devices is None:
    return shapes
  return jax.tree.map(lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                               sharding=sharding),
                      shapes, devices.view_shardings(shapes))


def create_state(spec: updates.GanSpec | Callable[[], TrainState], data_shape: tuple[int, ...] = (),
                 seed: int = 0, devices: Devices | None = None) -> TrainState:
  """A fresh state in the global view, computed by one jitted program whose
  outputs land in their shardings: a large model is born sharded. `spec`
  (with `data_shape`, `seed`) means one model; a `state_initializer` any state."""
  init = spec if callable(spec) else lambda: init_state(spec, data_shape, seed)
  return jax.jit(init, out_shardings=devices.view_shardings(jax.eval_shape(init)))()


def log_backend_choices(config: ml_collections.ConfigDict) -> None:
  logging.info("backend %s: convolutions %s, critic updates %s", jax.default_backend(),
               convolutions(config), "unrolled" if unroll_critic(config) else "in a loop")
