"""Experiment configs: the shared schema, loading by name, overrides, validation.

Every experiment in `experiments/` starts from `base_config()` and changes
what it needs, so all experiments share one schema and an override that names
a key no experiment has is caught as a typo.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
from typing import Any, Sequence

import ml_collections

from wgan_jax import losses, optim, parallel


class ConfigError(ValueError):
  """A bad experiment name, override or setting: reported as one line, exit 2."""


CRITIC_SCHEDULES = ("constant", "wgan_reference")


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every experiment (WGAN-GP on 8gaussians)."""
  c = ml_collections.ConfigDict()
  c.experiment = ""           # filled in by `load`
  c.seed = 0
  # Data parallelism over every device of every process: "jit" (one program over
  # a device mesh, the batch sharded) or "pmap"; both give the same numbers.
  c.parallelism = "jit"
  # jit only: split parameters and optimizer states along the devices too (each holds
  # 1/N of every array whose largest axis divides by N; XLA gathers them per step).
  c.shard_state = False

  c.objective = "wgan-gp"     # wgan | wgan-gp | gan
  c.n_critic = 5              # critic updates per generator update
  # "wgan_reference": the WGAN code's rule, 100 critic updates for the first 25
  # generator iterations and every 500th one, n_critic otherwise.
  c.critic_schedule = "constant"
  c.gp_weight = 10.0          # WGAN-GP's lambda
  c.clip = 0.01               # WGAN's c (used by objective "wgan" only)
  c.gan_generator_loss = "non-saturating"  # or "minimax" (objective "gan" only)

  c.batch_size = 256
  c.num_generator_steps = 10_000

  c.data = ml_collections.ConfigDict()
  c.data.name = "8gaussians"

  c.model = ml_collections.ConfigDict()
  c.model.noise_dim = 2
  c.model.generator = ml_collections.ConfigDict(
      dict(name="mlp", features=512, depth=3, output_activation="linear"))
  c.model.critic = ml_collections.ConfigDict(dict(name="mlp", features=512, depth=3))

  # One optimizer definition, instantiated separately for generator and critic.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"   # adam | rmsprop
  c.optimizer.lr = 1e-4
  c.optimizer.schedule = "constant"  # constant | linear (decay to 0 by the last step)
  c.optimizer.b1 = 0.5        # adam
  c.optimizer.b2 = 0.9        # adam
  c.optimizer.decay = 0.99    # rmsprop (PyTorch's alpha)
  c.optimizer.eps = 1e-8      # rmsprop

  c.log_every = 100           # generator iterations between scalar logs
  c.eval_every = 1000         # ... between evaluations and figures (0: only at the end)
  c.eval_samples = 2500       # toy: points for exact W1; images: samples in the grid
  c.checkpoint_every = 1000   # generator iterations between checkpoints (0: only at the end)
  c.keep_checkpoints = 3      # how many recent checkpoints to keep
  # After a non-finite loss or gradient: 0 stops the run (exit 1); N > 0 restores
  # the last good checkpoint with a new RNG stream, up to N times.
  c.nonfinite_restarts = 0
  return c


def known_experiments() -> list[str]:
  import experiments  # pylint: disable=import-outside-toplevel
  return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                if not m.name.startswith("_"))


def load(name: str) -> ml_collections.ConfigDict:
  """The config of experiment `name` (a module in `experiments/`)."""
  known = known_experiments()
  if name not in known:
    raise ConfigError(f"unknown experiment {name!r}; known experiments: {', '.join(known)}")
  config = importlib.import_module(f"experiments.{name}").get_config()
  with config.unlocked():
    config.experiment = name
  return config


def _parse_value(key: str, text: str, current: Any) -> Any:
  """`text` read as the type of the current value, or a ConfigError."""
  expected = type(current).__name__
  if isinstance(current, bool):
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
  elif isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      pass
  elif isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      pass
  elif isinstance(current, str):
    return text
  elif isinstance(current, (tuple, list)):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = None
    if isinstance(value, (tuple, list)):
      return type(current)(value)
  else:
    raise ConfigError(f"config key {key!r} holds a {expected} and cannot be set "
                      "from the command line")
  raise ConfigError(f"bad value for {key!r}: {text!r} is not a {expected} "
                    f"(current value: {current!r})")


def override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
  """Sets dotted `key` of `config` from command-line `text`, type-checked."""
  node, parts = config, key.split(".")
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      where = ".".join(parts[:i])
      known = ", ".join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else ""
      raise ConfigError(f"unknown config key {key!r}"
                        + (f"; keys under {where!r}: {known}" if where and known
                           else f"; top-level keys: {known}" if known else ""))
    if i < len(parts) - 1:
      node = node[part]
  current = node[parts[-1]]
  if isinstance(current, ml_collections.ConfigDict):
    raise ConfigError(f"config key {key!r} is a section; set one of its keys: "
                      f"{', '.join(sorted(current.keys()))}")
  node[parts[-1]] = _parse_value(key, text, current)


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def validate(config: ml_collections.ConfigDict) -> None:
  """Rejects settings that cannot train, each with what to change."""
  _check(config.objective in losses.OBJECTIVES,
         f"objective={config.objective!r} is unknown; use one of {', '.join(losses.OBJECTIVES)}")
  _check(config.gan_generator_loss in losses.GAN_GENERATOR_LOSSES,
         f"gan_generator_loss={config.gan_generator_loss!r} is unknown; use one of "
         f"{', '.join(losses.GAN_GENERATOR_LOSSES)}")
  _check(config.n_critic >= 1, f"n_critic={config.n_critic} must be at least 1")
  _check(config.critic_schedule in CRITIC_SCHEDULES,
         f"critic_schedule={config.critic_schedule!r} is unknown; use one of "
         f"{', '.join(CRITIC_SCHEDULES)}")
  _check(config.clip > 0, f"clip={config.clip} must be positive (WGAN clips weights to [-c, c])")
  _check(config.gp_weight >= 0, f"gp_weight={config.gp_weight} must be non-negative")
  _check(config.batch_size >= 1, f"batch_size={config.batch_size} must be at least 1")
  _check(config.num_generator_steps >= 0,
         f"num_generator_steps={config.num_generator_steps} must be non-negative")
  _check(config.log_every >= 1, f"log_every={config.log_every} must be at least 1")
  _check(config.eval_every >= 0, f"eval_every={config.eval_every} must be non-negative")
  _check(config.eval_samples >= 2, f"eval_samples={config.eval_samples} must be at least 2")
  _check(config.checkpoint_every >= 0,
         f"checkpoint_every={config.checkpoint_every} must be non-negative")
  _check(config.keep_checkpoints >= 1,
         f"keep_checkpoints={config.keep_checkpoints} must be at least 1")
  _check(config.parallelism in parallel.PARALLELISMS,
         f"parallelism={config.parallelism!r} is unknown; use jit or pmap")
  _check(not (config.shard_state and config.parallelism == "pmap"),
         "shard_state=True needs parallelism='jit' (pmap keeps a full copy per device)")
  _check(config.nonfinite_restarts >= 0,
         f"nonfinite_restarts={config.nonfinite_restarts} must be non-negative")
  _check(config.model.noise_dim >= 1, f"model.noise_dim={config.model.noise_dim} must be positive")
  _check(config.optimizer.name in optim.OPTIMIZERS,
         f"optimizer.name={config.optimizer.name!r} is unknown; use one of "
         f"{', '.join(optim.OPTIMIZERS)}")
  _check(config.optimizer.lr > 0, f"optimizer.lr={config.optimizer.lr} must be positive")
  _check(config.optimizer.schedule in optim.LR_SCHEDULES,
         f"optimizer.schedule={config.optimizer.schedule!r} is unknown; use one of "
         f"{', '.join(optim.LR_SCHEDULES)}")
  _check_data_and_models(config)


# Keys each architecture reads from its model section.
_MODEL_KEYS = {
    ("generator", "mlp"): ("features", "depth", "output_activation"),
    ("critic", "mlp"): ("features", "depth"),
    ("generator", "dcgan"): ("ngf", "n_extra_layers", "norm"),
    ("critic", "dcgan"): ("ndf", "n_extra_layers", "norm"),
    ("generator", "resnet"): ("dim", "multipliers"),
    ("critic", "resnet"): ("dim", "multipliers"),
}
_IMAGE_DATA_KEYS = ("image_size", "dir", "split", "shuffle_buffer")


def _check_data_and_models(config: ml_collections.ConfigDict) -> None:
  from wgan_jax import data, models  # pylint: disable=import-outside-toplevel
  from wgan_jax.models import dcgan  # pylint: disable=import-outside-toplevel

  name = config.data.name
  known = data.TOY_DATASETS + data.IMAGE_DATASETS
  _check(name in known, f"data.name={name!r} is unknown; use one of {', '.join(known)}")
  is_image = name in data.IMAGE_DATASETS
  if is_image:
    missing = [k for k in _IMAGE_DATA_KEYS if k not in config.data]
    _check(not missing, f"data.name={name!r} is an image data set and needs data."
           f"{', data.'.join(missing)}; start from an image experiment such as digits_dcgan_gp")
    _check(config.data.image_size >= 4,
           f"data.image_size={config.data.image_size} must be at least 4")

  for role, registry in (("generator", models.GENERATORS), ("critic", models.CRITICS)):
    section = config.model[role]
    arch = section.name
    _check(arch in registry, f"model.{role}.name={arch!r} is unknown; use one of "
           f"{', '.join(registry)}")
    missing = [k for k in _MODEL_KEYS[(role, arch)] if k not in section]
    _check(not missing, f"model.{role}.name={arch!r} needs model.{role}."
           f"{f', model.{role}.'.join(missing)}; start from an experiment that uses {arch}")
    _check(is_image or arch not in models.IMAGE_ONLY,
           f"model.{role}.name={arch!r} needs image data, but data.name={name!r} is 2-D")
    if arch == "dcgan":
      size = config.data.image_size
      _check(size >= 16 and size % 16 == 0,
             f"data.image_size={size} does not suit DCGAN: use a multiple of 16 (16, 32, 64, ...)")
      _check(section.norm in dcgan.NORMS and (role == "critic" or section.norm != "layer"),
             f"model.{role}.norm={section.norm!r} is unknown; use one of "
             f"{', '.join(dcgan.NORMS if role == 'critic' else ('batch', 'none'))}")
  critic = config.model.critic
  _check(not (config.objective == "wgan-gp" and critic.name == "dcgan" and critic.norm == "batch"),
         "objective='wgan-gp' forbids batch norm in the critic (the gradient penalty is per "
         "example); set --experiment.model.critic.norm=layer or none")


# Settings that change the shapes or structure of what a checkpoint holds.
_SHAPE_KEYS = ("model", "data.name", "data.image_size", "optimizer.name", "optimizer.schedule")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"a": {"b": 1}} -> {"a.b": 1}: the dotted keys of the command line."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_resumable(saved: dict[str, Any], config: ml_collections.ConfigDict, workdir: str,
                    step: int) -> list[str]:
  """Whether `config` may resume the run saved (at `step`) in `workdir`.

  Another experiment, or a setting that changes what the checkpoint holds,
  is a ConfigError; returns the other differences as "key: saved -> now"
  (e.g. a longer run or a new learning rate), which may change.
  """
  name = saved.get("experiment")
  if name != config.experiment:
    raise ConfigError(
        f"{workdir} holds checkpoints of experiment {name!r} (step {step}), not "
        f"{config.experiment!r}: resume it with --workdir={workdir} alone, or pass another "
        "--workdir")
  old, new = flatten(saved), flatten(config.to_dict())
  changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  shaped = [k for k in changed if k.startswith(_SHAPE_KEYS)]
  if shaped:
    raise ConfigError(
        f"{workdir} was trained with "
        + ", ".join(f"{k}={old.get(k)!r}" for k in shaped)
        + " (step " + str(step) + "), this command sets "
        + ", ".join(f"{k}={new.get(k)!r}" for k in shaped)
        + ": the checkpoint cannot hold that; drop those overrides or pass another --workdir")
  return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed]


def from_dict(saved: dict[str, Any], overrides: Sequence[tuple[str, str]] = ()
              ) -> ml_collections.ConfigDict:
  """A config saved with a run (e.g. in a checkpoint), with overrides, validated."""
  config = ml_collections.ConfigDict(saved)
  for key, text in overrides:
    override(config, key, text)
  validate(config)
  return config


def from_command_line(experiment: str, overrides: Sequence[tuple[str, str]]
                      ) -> ml_collections.ConfigDict:
  """Loads `experiment`, applies (key, text) overrides in order, validates."""
  config = load(experiment)
  for key, text in overrides:
    override(config, key, text)
  validate(config)
  return config
