"""A run that starts from another run's networks (`init_from=WORKDIR[:STEP]`):
fine-tuning, or transfer to a small data set, with the critic's first layers
optionally frozen (FreezeD: Mo et al. 2020).

The generator's and the critic's parameters, batch-norm statistics and
spectral-norm vectors are read from the other run's checkpoint; the optimizer
states, the step, the RNG stream and the moving average (a copy of the loaded
generator) start fresh, as a new run's. Once the new run has saved a
checkpoint it resumes from its own, so resume stays exact.
"""
from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import optax

from wgan_jax import checkpointing, ema
from wgan_jax.configs.rules import ConfigError
from wgan_jax.state import NetState, TrainState

# What a network brings from the other run (its optimizer state stays fresh).
CARRIED = ("params", "batch_stats", "spectral")


def parse_source(text: str) -> tuple[str, int | None]:
  """"DIR" -> (DIR, None: its newest checkpoint); "DIR:STEP" -> (DIR, STEP)."""
  head, colon, tail = text.rpartition(":")
  if colon and tail.isdigit():
    return head, int(tail)
  return text, None


def source_step(config: ml_collections.ConfigDict) -> tuple[str, int]:
  """(workdir, step) that `config.init_from` names, checked: a ConfigError of
  one line when there is no such run or checkpoint."""
  workdir, step = parse_source(config.init_from)
  prefix = f"init_from={config.init_from}"
  if not os.path.isdir(workdir):
    raise ConfigError(f"{prefix}: no such directory; name a training run's workdir, "
                      "optionally with :STEP")
  steps = checkpointing.finished_steps(workdir)
  if not steps:
    raise ConfigError(f"{prefix}: {workdir} holds no finished checkpoint; train it first or "
                      "name another run")
  if step is None:
    return workdir, steps[-1]
  if step not in steps:
    raise ConfigError(f"{prefix}: {workdir} has no checkpoint of step {step}; it has "
                      f"{', '.join(map(str, steps))}")
  return workdir, step


def check(config: ml_collections.ConfigDict, like: TrainState) -> None:
  """That the run `config.init_from` names exists and holds networks shaped as
  `like`'s (this run's abstract state): a ConfigError of one line naming the
  first array that differs. Reads no array."""
  workdir, step = source_step(config)
  try:
    checkpointing.check_networks(workdir, step, _parts(like))
  except checkpointing.CheckpointError as e:
    raise _mismatch(config, e) from None


def initial_state(config: ml_collections.ConfigDict, fresh: TrainState) -> TrainState:
  """`fresh` (a new run's state, in its shardings) with the networks of the run
  `config.init_from` names (`check`ed)."""
  workdir, step = source_step(config)
  try:
    loaded = checkpointing.restore_networks(workdir, step, _parts(fresh))
  except checkpointing.CheckpointError as e:
    raise _mismatch(config, e) from None
  generator = fresh.generator.replace(**loaded["generator"])
  critic = fresh.critic.replace(**loaded["critic"])
  moving = ema.initial(generator) if config.ema.decay else fresh.generator_ema
  return fresh.replace(generator=generator, critic=critic, generator_ema=moving)


def _parts(state: TrainState) -> dict[str, dict[str, Any]]:
  """What is carried of each network: `CARRIED`, where it holds arrays."""
  def carried(net: NetState) -> dict[str, Any]:
    parts = {name: getattr(net, name) for name in CARRIED}
    return {name: tree for name, tree in parts.items() if jax.tree.leaves(tree)}
  return {"generator": carried(state.generator), "critic": carried(state.critic)}


def _mismatch(config: ml_collections.ConfigDict, error: checkpointing.CheckpointError
              ) -> ConfigError:
  if isinstance(error, checkpointing.MismatchError):
    return ConfigError(f"init_from={config.init_from}: {error.mismatch}; init_from needs a run "
                       "of the same generator and critic architectures")
  return ConfigError(f"init_from={config.init_from}: {error}")


# ----------------------------------------------------------------------------
# FreezeD.
# ----------------------------------------------------------------------------


def layer_order(module: nn.Module, *inputs: Any) -> tuple[str, ...]:
  """The names of `module`'s top-level submodules that hold parameters, in the
  order its forward pass calls them (from the input up): the order a tree of
  its parameters loses, since pytrees sort dict keys."""
  called: list[str] = []

  def record(next_fun, args, kwargs, context):
    path = context.module.path
    if len(path) == 1 and path[0] not in called:
      called.append(path[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *inputs, train=False))
  with_params = set(shapes.get("params", {}))
  return tuple(name for name in called if name in with_params)


def frozen_critic_layers(config: ml_collections.ConfigDict, critic: nn.Module,
                         *inputs: Any) -> tuple[str, ...]:
  """The critic's first `config.freeze_critic_layers` layers (`layer_order`);
  a ConfigError of one line when it has no more layers than that."""
  count = config.freeze_critic_layers
  if not count:
    return ()
  order = layer_order(critic, *inputs)
  if count >= len(order):
    raise ConfigError(f"freeze_critic_layers={count}: the critic has {len(order)} layers "
                      f"({', '.join(order)}); freeze fewer, so that some still learn")
  return order[:count]


def freeze(names: tuple[str, ...]) -> optax.GradientTransformation:
  """Zero updates for the top-level parameters `names` (after the optimizer and
  any clipping): they keep the values they were loaded with."""
  def mask(params):
    return {key: jax.tree.map(lambda _, frozen=key in names: frozen, tree)
            for key, tree in params.items()}
  return optax.masked(optax.set_to_zero(), mask)
