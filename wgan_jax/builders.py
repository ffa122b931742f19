"""What a run is built from: the spec (modules, optimizers, objective), the
initial state (born on the devices in its layout), the critic schedule, and
the per-backend choices. The trainer, `bench` and the tests build from here.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wgan_jax import augment, ema, models, optim, steps, sweeps, techniques
from wgan_jax.models import layers, spectral
from wgan_jax.devices import Devices
from wgan_jax.state import NetState, TrainState

# How many critic updates the reference schedule gives its long phases.
REFERENCE_LONG_PHASE = 100


# ----------------------------------------------------------------------------
# Per-backend choices ("auto" in the config).
# ----------------------------------------------------------------------------


def convolutions(config: ml_collections.ConfigDict) -> str:
  """The config's `convolutions`, "auto" resolved by `layers.backend_impl`."""
  return layers.backend_impl() if config.convolutions == "auto" else config.convolutions


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
# Critic schedule.
# ----------------------------------------------------------------------------


def num_critic_updates(step: int, config: ml_collections.ConfigDict) -> int:
  """Critic updates before generator update number `step` (0-based).

  "wgan_reference" is the WGAN code's rule: 100 for the first 25 generator
  iterations and every 500th one, so the critic is near optimal when it matters.
  """
  if config.critic_schedule == "wgan_reference" and (step < 25 or step % 500 == 0):
    return REFERENCE_LONG_PHASE
  return sweeps.max_critic_updates(config)


def critic_schedule(config: ml_collections.ConfigDict, start: int = 0,
                    stop: int | None = None) -> np.ndarray:
  """`num_critic_updates` of generator steps [start, stop) (default: to the end)."""
  stop = config.num_generator_steps if stop is None else stop
  return np.array([num_critic_updates(s, config) for s in range(start, stop)], np.int64)


# ----------------------------------------------------------------------------
# Spec and state.
# ----------------------------------------------------------------------------


def make_spec(config: ml_collections.ConfigDict, data_shape: tuple[int, ...],
              axis_name: str | None = None, swept: Mapping[str, Any] | None = None
              ) -> steps.GanSpec:
  """Modules, optimizers and objective of `config`; `axis_name`: the pmap axis
  the steps run under (None under jit); `swept`: one model's values of a sweep's
  key (`sweeps.SWEEPABLE`, traced inside the sweep's program)."""
  swept = swept or {}
  clip = swept.get("clip", config.clip) if config.objective == "wgan" else None
  lr = swept.get("optimizer.lr")
  total = config.num_generator_steps
  tech = techniques.from_config(config)
  classes = models.num_classes(config)
  layout = dict(axis_name=axis_name, convolutions=convolutions(config), techniques=tech)
  # With historical averaging, each optimizer keeps its network's running mean.
  history = lambda tx: techniques.with_history(tx, tech.historical_averaging)
  return steps.GanSpec(
      generator=models.build_generator(config.model.generator, data_shape, **layout),
      critic=models.build_critic(config.model.critic, data_shape, **layout),
      generator_tx=history(optim.make_optimizer(config.optimizer, total, lr=lr)),
      critic_tx=history(optim.make_optimizer(config.optimizer,
                                             int(critic_schedule(config).sum()),
                                             clip=clip, lr=lr)),
      objective=config.objective,
      noise_dim=config.model.noise_dim,
      gp_weight=swept.get("gp_weight", config.gp_weight),
      clip=clip,
      critic_updates=swept.get("n_critic"),
      gan_generator_loss=config.gan_generator_loss,
      generator_batch_multiple=config.generator_batch_multiple,
      dequantize=bool(config.data.get("dequantize", False)),
      axis_name=axis_name,
      techniques=tech,
      penalty=config.penalty,
      ema_decay=float(config.ema.decay),
      ema_start=int(config.ema.start),
      compute_dtype=steps.COMPUTE_DTYPES[config.precision],
      augment=augment.parse_policy(config.augment),
      num_classes=classes,
      acgan=classes > 0 and config.model.critic.head == "acgan")


def init_net(module, tx, key: jax.Array, x: jax.Array, clip: float | None = None,
             labels: jax.Array | None = None) -> NetState:
  """A network's initial state for input like `x` (and `labels`, a conditional
  critic's); with `clip`, its weights projected into [-clip, clip]."""
  variables = module.init(key, *((x,) if labels is None else (x, labels)), train=False)
  params = variables["params"]
  if clip is not None:
    # Start inside the feasible set, so weights lie in [-c, c] at every step.
    params = jax.tree.map(lambda p: jnp.clip(p, -clip, clip), params)
  return NetState(params=params, batch_stats=variables.get("batch_stats", {}),
                  opt_state=tx.init(params), spectral=variables.get(spectral.COLLECTION, {}))


def init_state(spec: steps.GanSpec, data_shape: tuple[int, ...], seed: int) -> TrainState:
  """Fresh generator and critic, initialised from `seed` (a pure function)."""
  k_gen, k_critic, k_train = jax.random.split(jax.random.PRNGKey(seed), 3)
  z = steps.generator_input(spec, jnp.zeros((2, spec.noise_dim), jnp.float32),
                            jnp.zeros((2,), jnp.int32))
  x = jnp.zeros((2, *data_shape), jnp.float32)
  generator = init_net(spec.generator, spec.generator_tx, k_gen, z)
  return TrainState(
      step=jnp.zeros((), jnp.int32), rng=k_train, generator=generator,
      critic=init_net(spec.critic, spec.critic_tx, k_critic, x, spec.clip,
                      jnp.zeros((2,), jnp.int32) if spec.num_classes else None),
      generator_ema=ema.initial(generator) if spec.ema_decay else {})


def sweep_state(config: ml_collections.ConfigDict, data_shape: tuple[int, ...],
                sweep: sweeps.Sweep) -> TrainState:
  """The fresh states of a sweep's K models, stacked on a leading model axis:
  model m initialised from its own seed, under its own swept values."""
  def one(hparams, seed):
    return init_state(make_spec(config, data_shape, swept=hparams), data_shape, seed)
  return jax.vmap(one)(sweep.hparams(), sweep.seed_array())


def state_initializer(config: ml_collections.ConfigDict, spec: steps.GanSpec,
                      data_shape: tuple[int, ...]) -> Callable[[], TrainState]:
  """The pure function that makes the run's fresh state: one model from
  `config.seed`, or the sweep's K models with a leading axis."""
  sweep = sweeps.from_config(config)
  if sweep is None:
    return lambda: init_state(spec, data_shape, config.seed)
  return lambda: sweep_state(config, data_shape, sweep)


def abstract_state(spec: steps.GanSpec | Callable[[], TrainState],
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


def create_state(spec: steps.GanSpec | Callable[[], TrainState], data_shape: tuple[int, ...] = (),
                 seed: int = 0, devices: Devices | None = None) -> TrainState:
  """A fresh state in the global view, computed by one jitted program whose
  outputs land in their shardings: a large model is born sharded. `spec`
  (with `data_shape`, `seed`) means one model; a `state_initializer` any state."""
  init = spec if callable(spec) else lambda: init_state(spec, data_shape, seed)
  return jax.jit(init, out_shardings=devices.view_shardings(jax.eval_shape(init)))()


def log_backend_choices(config: ml_collections.ConfigDict) -> None:
  logging.info("backend %s: convolutions %s, critic updates %s", jax.default_backend(),
               convolutions(config), "unrolled" if unroll_critic(config) else "in a loop")
