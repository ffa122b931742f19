"""Experiment configs: loading by name, command-line overrides, validation.

The schema (every key, its default and its rule) is `schema.py`; the model and
data-set registries own the rules of their sections. Experiments are modules
of the `experiments` package, found by name; they import the schema, not this
module.
"""
from __future__ import annotations

import ast
import copy
import importlib
import pkgutil
from typing import Any, Sequence

import ml_collections

from wgan_jax import schema, sweeps, techniques
from wgan_jax.rules import ConfigError, check

__all__ = ["ConfigError", "load", "override", "validate", "from_dict", "from_command_line",
           "check_resumable", "flatten", "known_experiments"]


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
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      value = (value,)  # One value: `--experiment.sweep.grid=0.05`.
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


def validate(config: ml_collections.ConfigDict) -> None:
  """Rejects settings that cannot train, each with what to change: every key
  against its rule, then the model and data sections against their registries."""
  from wgan_jax import data, models  # pylint: disable=import-outside-toplevel
  check(config, schema.RULES)
  check(config.model, schema.MODEL_RULES, "model.")
  check(config.optimizer, schema.OPTIMIZER_RULES, "optimizer.")
  check(config.eval, schema.EVAL_RULES, "eval.")
  check(config.techniques, schema.TECHNIQUES_RULES, "techniques.")
  check(config.ema, schema.EMA_RULES, "ema.")
  problem = _penalty_problem(config)
  if problem:
    raise ConfigError(problem)
  problem = techniques.config_problem(config)
  if problem:
    raise ConfigError(problem)
  check(config.sweep, schema.SWEEP_RULES, "sweep.")
  problem = sweeps.problem(config, {"clip": schema.RULES["clip"],
                                   "gp_weight": schema.RULES["gp_weight"],
                                   "n_critic": schema.RULES["n_critic"],
                                   "optimizer.lr": schema.OPTIMIZER_RULES["lr"]})
  if problem:
    raise ConfigError(problem)
  data.check_config(config.data)
  data.check_eval_samples(config)
  if config.augment and data.get(config.data.name).kind == data.TOY:
    raise ConfigError(f"augment={config.augment!r} augments images; {config.data.name} is a toy "
                      "set of points: set augment=''")
  _check_eval_metrics(config)
  models.check_config(config)


def _penalty_problem(config: ml_collections.ConfigDict) -> str | None:
  """A penalty that contradicts the objective."""
  if config.objective == "wgan" and config.penalty not in ("auto", "none"):
    return (f"penalty={config.penalty!r} with objective='wgan', which clips the critic's "
            "weights instead: use objective=wgan-gp (the Wasserstein loss with a penalty)")
  if config.objective == "wgan-gp" and config.penalty == "none":
    return ("objective='wgan-gp' with penalty='none' leaves the critic unconstrained: use "
            "objective=wgan for weight clipping, or another penalty")
  return None


def _check_eval_metrics(config: ml_collections.ConfigDict) -> None:
  """Scores that make sense for the run's data set."""
  from wgan_jax import data, metrics  # pylint: disable=import-outside-toplevel
  names = metrics.parse(config.eval.metrics, metrics.IN_TRAINING)
  if names and data.get(config.data.name).kind == data.TOY:
    raise ConfigError(f"eval.metrics={config.eval.metrics!r} scores images; {config.data.name} "
                      "is a toy set, whose exact W1 every evaluation reports: set eval.metrics=''")


# Settings that change the shapes or structure of what a checkpoint holds.
_SHAPE_KEYS = ("model", "data.name", "data.image_size", "optimizer.name", "optimizer.schedule",
               "sweep", "techniques.minibatch_kernel", "techniques.vbn_reference_size")
# ... and a value whose being zero or not does (the moving average exists or not).
_ZERO_SHAPE_KEYS = ("ema.decay",)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"a": {"b": (1,)}} -> {"a.b": [1]}: the dotted keys of the command line, with
  sequences as lists (as a config reads back from JSON)."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
  return out


def check_resumable(saved: dict[str, Any], config: ml_collections.ConfigDict, workdir: str,
                    step: int | None) -> list[str]:
  """Whether `config` may resume the run saved (at `step`) in `workdir`.

  Another experiment, or a setting that changes what the checkpoint holds,
  is a ConfigError; returns the other differences as "key: saved -> now"
  (e.g. a longer run or a new learning rate), which may change.
  """
  name = saved.get("experiment")
  source = f"step {step}" if step is not None else "its config.json"
  if name != config.experiment:
    raise ConfigError(
        f"{workdir} holds checkpoints of experiment {name!r} ({source}), not "
        f"{config.experiment!r}: resume it with --workdir={workdir} alone, or pass another "
        "--workdir")
  old, new = flatten(_with_added_keys(saved)), flatten(config.to_dict())
  changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  # A sweep's models were initialised from seed, seed + 1, ...: another seed would
  # mislabel them. How a device loops over them changes nothing saved.
  shaped = [k for k in changed if (k.startswith(_SHAPE_KEYS) and k != "sweep.loop")
            or (k in _ZERO_SHAPE_KEYS and (not old.get(k)) != (not new.get(k)))
            or (k == "seed" and sweeps.from_config(config) is not None)]
  if shaped:
    raise ConfigError(
        f"{workdir} was trained with "
        + ", ".join(f"{k}={old.get(k)!r}" for k in shaped)
        + f" ({source}), this command sets "
        + ", ".join(f"{k}={new.get(k)!r}" for k in shaped)
        + ": the checkpoint cannot hold that; drop those overrides or pass another --workdir")
  return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed]


# Keys added to the schema after runs were saved, with what the code did before the
# key existed: (section, architecture or data set it applies to or None, key, old value).
# A run saved without one resumes as it was trained, not with today's defaults.
_ADDED_KEYS = (
    ("", None, "generator_batch_multiple", 1),
    ("", None, "sampling_batch_norm", "running"),
    ("", None, "convolutions", "auto"),
    ("", None, "critic_loop", "auto"),
    ("data", "image", "dequantize", False),
    ("model.generator", "mlp", "weight_init", "lecun"),
    ("model.critic", "mlp", "weight_init", "lecun"),
    ("model.critic", "resnet", "norm", "none"),
    ("model.generator", "mlp", "norm", "none"),
    ("", None, "techniques", schema.techniques_section().to_dict()),
    ("", None, "sweep", {"key": "", "grid": [], "seeds": 1, "loop": "auto"}),
    ("model.critic", "mlp", "norm", "none"),
    ("", None, "penalty", "auto"),
    ("", None, "ema", {"decay": 0.0, "start": 0}),
    ("", None, "precision", "f32"),
    ("", None, "augment", ""),
    ("data", "image", "labels", False),
)


def _with_added_keys(saved: dict[str, Any]) -> dict[str, Any]:
  """`saved` with every key the schema gained since, at the value the code that
  wrote it behaved as."""
  from wgan_jax import data  # pylint: disable=import-outside-toplevel
  saved = copy.deepcopy(saved)
  for path, applies_to, key, old in _ADDED_KEYS:
    section = saved
    for part in filter(None, path.split(".")):
      section = section.get(part) if isinstance(section, dict) else None
    if not isinstance(section, dict) or key in section:
      continue
    if applies_to == "image":
      entry = data.DATASETS.get(section.get("name"))
      if entry is None or entry.kind != data.IMAGE:
        continue
    elif applies_to is not None and section.get("name") != applies_to:
      continue
    section[key] = copy.deepcopy(old)
  return saved


def _restore_values(config: ml_collections.ConfigDict, saved: dict[str, Any]) -> None:
  """Sets `config`'s keys to the `saved` values; a section saved with another
  `name` (architecture, data set) replaces today's whole section."""
  for key, value in saved.items():
    if key not in config:
      continue  # A key since removed from the schema.
    current = config[key]
    if isinstance(current, ml_collections.ConfigDict) and isinstance(value, dict):
      if "name" in current and current.get("name") != value.get("name"):
        config[key] = ml_collections.ConfigDict(value)
      else:
        _restore_values(current, value)
    else:
      config[key] = tuple(value) if isinstance(current, tuple) else value


def from_dict(saved: dict[str, Any], overrides: Sequence[tuple[str, str]] = ()
              ) -> ml_collections.ConfigDict:
  """A config saved with a run (e.g. in a checkpoint), with overrides, validated.
  Keys added to the experiment since the run was saved keep their defaults."""
  saved = _with_added_keys(saved)
  if saved.get("experiment") in known_experiments():
    config = load(saved["experiment"])
    _restore_values(config, saved)
  else:
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
