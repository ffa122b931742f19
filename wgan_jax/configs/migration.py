"""Configs written by older versions, and old key names on the command line.

A run saved before a key existed resumes as it was trained, not with today's
defaults (`ADDED_KEYS`: the value the code behaved as). Keys since replaced
are translated, each with one line saying how:

- `objective` (wgan | wgan-gp | gan), `gp_weight`, `gan_generator_loss` and
  the old `penalty="auto"` -> `loss`, `penalty`, `penalty_weight`, `clip`
  (`clip` used to act under objective "wgan" only; elsewhere it is now 0);
- `critic_schedule` -> `n_critic_schedule`;
- one `optimizer` section for both networks -> `optimizer.generator` and
  `optimizer.critic`, each a copy.

On the command line `--experiment.objective=...`, `gp_weight` and
`gan_generator_loss` are translated the same way, and `optimizer.KEY` sets
KEY of both networks' optimizers (a shorthand, not an old name).
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import ml_collections

from wgan_jax.configs import schema
from wgan_jax.configs.rules import ConfigError

OLD_OBJECTIVES = ("wgan", "wgan-gp", "gan")
# What the old objective's weight clipping bound defaulted to.
_OLD_CLIP = 0.01

# Keys added to the schema after runs were saved, with what the code did before the
# key existed: (section, architecture or data set it applies to or None, key, old value).
ADDED_KEYS = (
    ("", None, "generator_batch_multiple", 1),
    ("", None, "init_from", ""),
    ("", None, "freeze_critic_layers", 0),
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
    ("", None, "accumulation_steps", 1),
    ("data", "image", "limit", 0),
    ("model.generator", "cond_resnet", "conditioning", "table"),
    ("", None, "acgan", {"critic_weight": 1.0, "generator_weight": 0.1}),
    ("data", "image", "mirror", False),
    ("", None, "ada", schema.ada_section().to_dict()),
    ("model.generator", "dcgan", "draw_size", 0),
    ("model.generator", "dcgan", "output_activation", "tanh"),
)
RENAMED = {"critic_schedule": "n_critic_schedule", "gp_weight": "penalty_weight"}


def _with_added_keys(saved: dict[str, Any]) -> dict[str, Any]:
  from wgan_jax import data  # pylint: disable=import-outside-toplevel
  for path, applies_to, key, old in ADDED_KEYS:
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


def objective_keys(objective: str, penalty: str, clip: float, loss: str) -> dict[str, Any]:
  """The keys an old `objective` stands for, given the old `penalty` ("auto":
  the objective's own), the `clip` bound and the logistic `loss` it used."""
  if objective == "wgan":
    return {"loss": "wasserstein", "penalty": "none", "clip": clip if clip > 0 else _OLD_CLIP}
  if objective == "wgan-gp":
    return {"loss": "wasserstein", "penalty": "gp" if penalty in ("auto", "none") else penalty,
            "clip": 0.0}
  return {"loss": loss if loss in schema.LOGISTIC_LOSSES else "non-saturating",
          "penalty": "none" if penalty == "auto" else penalty, "clip": 0.0}


def _said(keys: dict[str, Any]) -> str:
  return ", ".join(f"{k}={v!r}" for k, v in keys.items())


def upgrade(saved: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
  """A saved config (a dict, as config.json holds it) in today's keys, and one
  line per translation made ([] for a config of this version)."""
  saved = _with_added_keys(copy.deepcopy(saved))
  notes = []
  for old, new in RENAMED.items():
    if old in saved:
      saved[new] = saved.pop(old)
      notes.append(f"{old} is now {new}")
  if "objective" in saved:
    objective = saved.pop("objective")
    keys = objective_keys(objective, saved.get("penalty", "auto"), saved.get("clip", _OLD_CLIP),
                          saved.pop("gan_generator_loss", "non-saturating"))
    saved.update(keys)
    notes.append(f"objective={objective!r} is now {_said(keys)}")
  elif saved.get("penalty") == "auto":
    saved["penalty"] = "none"
  saved.pop("gan_generator_loss", None)
  optimizer = saved.get("optimizer")
  if isinstance(optimizer, dict) and "name" in optimizer:
    saved["optimizer"] = {n: copy.deepcopy(optimizer) for n in schema.NETWORKS}
    notes.append("one optimizer section is now optimizer.generator and optimizer.critic, "
                 "each a copy")
  sweep = saved.get("sweep")
  if isinstance(sweep, dict) and sweep.get("key") in RENAMED:
    sweep["key"] = RENAMED[sweep["key"]]
  return saved, notes


# ----------------------------------------------------------------------------
# Old names on the command line.
# ----------------------------------------------------------------------------


def _objective_override(config: ml_collections.ConfigDict, text: str) -> str:
  if text not in OLD_OBJECTIVES:
    raise ConfigError(f"objective={text!r} is unknown; use one of {', '.join(OLD_OBJECTIVES)} "
                      f"(or the keys that replace it: loss, penalty, clip)")
  keys = objective_keys(text, "auto" if text != "wgan-gp" else config.penalty, config.clip,
                        config.loss)
  for k, v in keys.items():
    config[k] = v
  return f"objective={text!r} is now {_said(keys)}"


def _gan_generator_loss_override(config: ml_collections.ConfigDict, text: str) -> str:
  if text not in schema.LOGISTIC_LOSSES:
    raise ConfigError(f"gan_generator_loss={text!r} is unknown; use one of "
                      f"{', '.join(schema.LOGISTIC_LOSSES)} (now the key loss)")
  config.loss = text
  return f"gan_generator_loss={text!r} is now loss={text!r}"


# Old key -> (config, value text) -> the note; the renamed keys go through `override`.
OLD_OVERRIDES: dict[str, Callable[[ml_collections.ConfigDict, str], str]] = {
    "objective": _objective_override,
    "gan_generator_loss": _gan_generator_loss_override,
}
