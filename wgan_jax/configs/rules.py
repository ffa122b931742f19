"""Rules for config values: each key's allowed range or choices, checked
before anything is created. A rule is `(value) -> problem or None`; the
registries (models, data sets) and the config schema own their keys' rules.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import ml_collections

# (value) -> what is wrong with it, or None.
Rule = Callable[[Any], str | None]


class ConfigError(ValueError):
  """A bad experiment name, override or setting: reported as one line, exit 2."""


def _explained(problem: str, why: str) -> str:
  return f"{problem} ({why})" if why else problem


def choice(*options: Any) -> Rule:
  def rule(value):
    if value not in options:
      return f"is unknown; use one of {', '.join(map(str, options))}"
    return None
  return rule


def at_least(low: float, high: float | None = None, why: str = "") -> Rule:
  """low <= value (<= high); finite. `why` explains the bound in the error."""
  def rule(value):
    if not math.isfinite(value) or value < low or (high is not None and value > high):
      return _explained(f"must be at least {low}"
                        + (f" and at most {high}" if high is not None else ""), why)
    return None
  return rule


def positive(high: float | None = None, why: str = "") -> Rule:
  """0 < value (<= high); finite. `why` explains the bound in the error."""
  def rule(value):
    if not math.isfinite(value) or value <= 0 or (high is not None and value > high):
      return _explained("must be positive"
                        + (f" and at most {high}" if high is not None else ""), why)
    return None
  return rule


def in_unit_interval(closed_high: bool = False) -> Rule:
  """0 <= value < 1 (or <= 1): decays, momenta."""
  def rule(value):
    if not (0.0 <= value < 1.0 or (closed_high and value == 1.0)):
      return f"must be in [0, 1{']' if closed_high else ')'}"
    return None
  return rule


def any_value(value: Any) -> str | None:
  del value
  return None


def check(section: ml_collections.ConfigDict, rules: Mapping[str, Rule], prefix: str = "",
          owner: str = "", hint: str = "") -> None:
  """Every key of `rules` is in `section` and passes its rule, or a ConfigError
  naming the key (`prefix` + key), its value and the rule. A missing key is
  reported as what `owner` (e.g. "model.critic.name='dcgan'") needs."""
  missing = [k for k in rules if k not in section]
  if missing:
    raise ConfigError((f"{owner} needs {prefix}{missing[0]}" if owner
                       else f"{prefix}{missing[0]} is missing") + (f"; {hint}" if hint else ""))
  for key, rule in rules.items():
    problem = rule(section[key])
    if problem:
      raise ConfigError(f"{prefix}{key}={section[key]!r} {problem}")
