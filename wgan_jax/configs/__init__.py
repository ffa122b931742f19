"""Experiment configs: loading by name, command-line overrides, validation,
resuming, and configs saved by older versions. Imports no JAX, Flax or
TensorFlow, so `--help` and a bad override answer at once.

The schema (every key, its default and its rule) is `schema.py`; checks
across keys `checks.py`; old keys `migration.py`; the sweep `sweep.py`; the
model and data-set registries own the rules of their sections. Experiments
are modules of the `experiments` package, found by name; they import the
schema, not this module.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os
import pkgutil
import re
import sys
from typing import Any, Sequence

from absl import logging
import ml_collections

from wgan_jax.configs import checks, migration, schema, sweep
from wgan_jax.configs.rules import ConfigError, check

__all__ = ["ConfigError", "load", "override", "validate", "from_dict", "from_command_line",
           "check_resumable", "flatten", "known_experiments", "describe_experiments"]


def _nearest(name: str, known: Sequence[str], prefix: str = "") -> str:
  """"; did you mean 'prefix.x'?" for the closest of `known` to `name`, or ""."""
  close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
  return f"; did you mean {prefix + close[0]!r}?" if close else ""


# The experiments ship beside the package (pyproject: packages wgan_jax*, experiments*).
_EXPERIMENTS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "experiments")


def _experiments_package():
  """The `experiments` package shipped with wgan_jax, whatever the working
  directory holds: a folder named `experiments` there would otherwise come first
  on the import path and hide every experiment."""
  loaded = sys.modules.get("experiments")
  if loaded is not None and [os.path.realpath(p) for p in getattr(loaded, "__path__", [])] == [
      os.path.realpath(_EXPERIMENTS_DIR)]:
    return loaded
  spec = importlib.util.spec_from_file_location(
      "experiments", os.path.join(_EXPERIMENTS_DIR, "__init__.py"),
      submodule_search_locations=[_EXPERIMENTS_DIR])
  package = importlib.util.module_from_spec(spec)
  sys.modules["experiments"] = package
  spec.loader.exec_module(package)
  return package


def known_experiments() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(_experiments_package().__path__)
                if not m.name.startswith("_"))


def describe_experiments() -> dict[str, str]:
  """Each experiment's one-line description: its docstring's first clause."""
  out = {}
  _experiments_package()
  for name in known_experiments():
    doc = " ".join((importlib.import_module(f"experiments.{name}").__doc__ or "").split())
    ends = [m.start() for m in re.finditer(r": |\. (?=[A-Z])", doc)]
    first = doc[:ends[0]] if ends else doc.rstrip(".")
    out[name] = first if len(first) <= 100 else first[:99].rsplit(" ", 1)[0] + " ..."
  return out


def load(name: str) -> ml_collections.ConfigDict:
  """The config of experiment `name` (a module in `experiments/`)."""
  known = known_experiments()
  if name not in known:
    raise ConfigError(f"unknown experiment {name!r}{_nearest(name, known)} (known: "
                      f"{', '.join(known)}; see --help)")
  _experiments_package()
  config = importlib.import_module(f"experiments.{name}").get_config()
  with config.unlocked():
    config.experiment = name
  return config


def _parse_value(key: str, text: str, current: Any) -> Any:
  """`text` read as the type of the current value, or a ConfigError."""
  expected = {bool: "boolean", int: "whole number", float: "number", str: "string"}.get(
      type(current), type(current).__name__)
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
    expected = "list such as 1,2"
  else:
    raise ConfigError(f"config key {key!r} holds a {expected} and cannot be set "
                      "from the command line")
  raise ConfigError(f"bad value for {key!r}: {text!r} is not a {expected} "
                    f"(current value: {current!r})")


def _set(config: ml_collections.ConfigDict, key: str, text: str) -> None:
  node, parts = config, key.split(".")
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      where = ".".join(parts[:i])
      known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      raise ConfigError(f"unknown config key {key!r}"
                        f"{_nearest(part, known, where + '.' if where else '')}"
                        + (f" (keys under {where!r}: {', '.join(known)})" if where and known
                           else f" (top-level keys: {', '.join(known)})" if known else ""))
    if i < len(parts) - 1:
      node = node[part]
  current = node[parts[-1]]
  if isinstance(current, ml_collections.ConfigDict):
    raise ConfigError(f"config key {key!r} is a section; set one of its keys: "
                      f"{', '.join(sorted(current.keys()))}")
  node[parts[-1]] = _parse_value(key, text, current)


def override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
  """Sets dotted `key` of `config` from command-line `text`, type-checked. Old
  key names are translated (migration.py, one log line each); `optimizer.KEY`
  sets KEY of every network's optimizer."""
  if key in migration.OLD_OVERRIDES:
    logging.warning("--experiment.%s: %s", key, migration.OLD_OVERRIDES[key](config, text))
    return
  if key in migration.RENAMED:
    logging.warning("--experiment.%s: %s is now %s", key, key, migration.RENAMED[key])
    key = migration.RENAMED[key]
  if key == "sweep.key" and text in migration.RENAMED:
    text = migration.RENAMED[text]
  section, _, leaf = key.partition(".")
  if section == "optimizer" and leaf and "." not in leaf and leaf not in schema.NETWORKS:
    shorthand = list(schema.optimizer_section())
    if leaf not in shorthand:
      raise ConfigError(f"unknown config key {key!r}{_nearest(leaf, shorthand, 'optimizer.')} "
                        f"(optimizer.KEY "
                        f"sets both networks', optimizer.generator.KEY or optimizer.critic.KEY "
                        f"one network's; keys: {', '.join(shorthand)})")
    value = _parse_value(key, text, config.optimizer.generator[leaf])
    for network in schema.NETWORKS:
      config.optimizer[network][leaf] = value
    return
  _set(config, key, text)


def validate(config: ml_collections.ConfigDict) -> None:
  """Rejects settings that cannot train, each with what to change: every key
  against its rule, the checks across keys, then the model and data sections
  against their registries."""
  # pylint: disable=import-outside-toplevel
  from wgan_jax import data
  from wgan_jax.models import registry
  check(config, schema.RULES)
  check(config.model, schema.MODEL_RULES, "model.")
  for network in schema.NETWORKS:
    check(config.optimizer[network], schema.OPTIMIZER_RULES, f"optimizer.{network}.")
  check(config.eval, schema.EVAL_RULES, "eval.")
  check(config.techniques, schema.TECHNIQUES_RULES, "techniques.")
  check(config.ema, schema.EMA_RULES, "ema.")
  check(config.acgan, schema.ACGAN_RULES, "acgan.")
  check(config.ada, schema.ADA_RULES, "ada.")
  check(config.sweep, schema.SWEEP_RULES, "sweep.")
  data.check_config(config.data)
  data.check_eval_samples(config)
  toy = data.is_toy(config.data)
  for problem in (checks.objective_problem(config), checks.techniques_problem(config),
                  checks.accumulation_problem(config), checks.eval_problem(config, toy),
                  checks.ada_problem(config, toy),
                  checks.transfer_problem(config),
                  sweep.problem(config)):
    if problem:
      raise ConfigError(problem)
  registry.check_config(config)


# Settings that change the shapes or structure of what a checkpoint holds.
_SHAPE_KEYS = ("model", "data.name", "data.image_size", "optimizer.generator.name",
               "optimizer.critic.name", "optimizer.generator.schedule",
               "optimizer.critic.schedule", "sweep", "techniques.minibatch_kernel",
               "techniques.vbn_reference_size")
# ... and values whose being zero or not does (a moving average, a chained
# optimizer state).
_ZERO_SHAPE_KEYS = ("ema.decay", "clip", "techniques.historical_averaging", "ada.enabled")


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
  old, new = flatten(migration.upgrade(saved)[0]), flatten(config.to_dict())
  changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  # A sweep's models were initialised from seed, seed + 1, ...: another seed would
  # mislabel them. How a device loops over them changes nothing saved.
  shaped = [k for k in changed if (k.startswith(_SHAPE_KEYS) and k != "sweep.loop")
            or (k in _ZERO_SHAPE_KEYS and (not old.get(k)) != (not new.get(k)))
            or (k == "seed" and sweep.from_config(config) is not None)]
  if shaped:
    raise ConfigError(
        f"{workdir} was trained with "
        + ", ".join(f"{k}={old.get(k)!r}" for k in shaped)
        + f" ({source}), this command sets "
        + ", ".join(f"{k}={new.get(k)!r}" for k in shaped)
        + ": the checkpoint cannot hold that; drop those overrides or pass another --workdir")
  return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed]


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
  """A config saved with a run (e.g. in a checkpoint), in today's keys (one log
  line per translation), with overrides, validated. Keys added to the
  experiment since the run was saved keep what the run was trained with."""
  saved, notes = migration.upgrade(saved)
  for note in notes:
    logging.warning("the saved config of %s: %s", saved.get("experiment"), note)
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
