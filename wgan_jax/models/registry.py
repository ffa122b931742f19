"""Model registry: a config's `model.generator` / `model.critic` section -> module.

Each architecture declares here the keys its sections read (with their rules),
the checks that involve the rest of the config (image size, penalty), and
where its factories live ("module:function"), so that validating a config
imports no JAX or Flax. Factories take the section, the shape of one example
(`(2,)` for the toy sets, `(H, W, C)` for images) and three keywords:
`axis_name`, the `jax.pmap` axis over which batch norm computes global batch
statistics (None outside pmap; it changes no parameter), `convolutions`, how
strided convolutions are formulated (config.schema.CONVOLUTION_IMPLS, resolved
per backend), and `techniques`, the run's `techniques.Techniques`: minibatch
discrimination in the critics, the reference batch size of generators with
`norm` "virtual".
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

import ml_collections

from wgan_jax import data
from wgan_jax.configs.rules import ConfigError, Rule, at_least, check, choice

# (config, role) -> what is wrong with the combination, or None.
CrossCheck = Callable[[ml_collections.ConfigDict, str], str | None]
ROLES = ("generator", "critic")

# ---------------------------------------------------------------- names each architecture uses

# MLP weights: "lecun" (flax's default: LeCun normal, zero biases), "tflib" (the
# WGAN-GP code: He uniform for the ReLU layers, Glorot uniform for the last, zero
# biases), "torch" (PyTorch's nn.Linear: U(+-1/sqrt(fan_in)) for weights and biases,
# the WGAN code's MLP_G / MLP_D).
MLP_INITS = ("lecun", "tflib", "torch")
MLP_ACTIVATIONS = ("linear", "tanh")
# After each hidden layer: none (the references'), or virtual batch norm (models/improved.py).
MLP_GENERATOR_NORMS = ("none", "virtual")
# None, or spectral normalisation of every layer (models/spectral.py).
MLP_CRITIC_NORMS = ("none", "spectral")
DCGAN_NORMS = ("batch", "layer", "none")
DCGAN_GENERATOR_NORMS = ("batch", "none", "virtual")
DCGAN_CRITIC_NORMS = (*DCGAN_NORMS, "spectral")
# The DCGAN generator's last activation: tanh (DCGAN's), or a clip to [-1, 1], whose
# pixels reach the data's blank -1 exactly (tanh's gradient vanishes on the way there).
DCGAN_OUTPUT_ACTIVATIONS = ("tanh", "hardtanh")
# None, layer norm in every block, or spectral norm on every layer.
RESNET_CRITIC_NORMS = ("none", "layer", "spectral")
# A class-conditional critic's head: AC-GAN's classifier, or a projection.
CONDITIONAL_HEADS = ("acgan", "projection")
# How a conditional generator's batch norms get each class's scale and offset.
CONDITIONINGS = ("table", "embedding")


def _multipliers(value) -> str | None:
  if not value or any(not isinstance(m, int) or m < 1 for m in value):
    return "must be a non-empty list of positive integers"
  return None


MLP_GENERATOR_RULES = {"features": at_least(1, 1 << 16), "depth": at_least(0, 64),
                       "output_activation": choice(*MLP_ACTIVATIONS),
                       "weight_init": choice(*MLP_INITS), "norm": choice(*MLP_GENERATOR_NORMS)}
MLP_CRITIC_RULES = {"features": at_least(1, 1 << 16), "depth": at_least(0, 64),
                    "weight_init": choice(*MLP_INITS), "norm": choice(*MLP_CRITIC_NORMS)}


def _draw_size(value) -> str | None:
  if value == 0 or (isinstance(value, int) and value >= 8 and value & (value - 1) == 0):
    return None
  return "must be 0 (draw at data.image_size) or a power of two from 8"


DCGAN_GENERATOR_RULES = {"ngf": at_least(1, 4096), "n_extra_layers": at_least(0, 16),
                         "norm": choice(*DCGAN_GENERATOR_NORMS), "draw_size": _draw_size,
                         "output_activation": choice(*DCGAN_OUTPUT_ACTIVATIONS)}
DCGAN_CRITIC_RULES = {"ndf": at_least(1, 4096), "n_extra_layers": at_least(0, 16),
                      "norm": choice(*DCGAN_CRITIC_NORMS)}
RESNET_GENERATOR_RULES = {"dim": at_least(1, 4096), "multipliers": _multipliers}
RESNET_CRITIC_RULES = {"dim": at_least(1, 4096), "multipliers": _multipliers,
                       "norm": choice(*RESNET_CRITIC_NORMS)}
CONDITIONAL_GENERATOR_RULES = {**RESNET_GENERATOR_RULES, "num_classes": at_least(1, 1 << 16),
                               "conditioning": choice(*CONDITIONINGS)}
CONDITIONAL_CRITIC_RULES = {**RESNET_CRITIC_RULES, "num_classes": at_least(1, 1 << 16),
                            "head": choice(*CONDITIONAL_HEADS)}


# ---------------------------------------------------------------- sizes each can make

def dcgan_image_size_problem(size: int) -> str | None:
  """Why DCGAN cannot make `size`x`size` images, or None."""
  if size < 16 or size % 16:
    return (f"data.image_size={size} does not suit DCGAN: use a multiple of 16 "
            "(16, 32, 64, ...)")
  return None


def resnet_generator_size_problem(size: int, multipliers) -> str | None:
  if 4 * 2 ** (len(multipliers) - 1) != size:
    return (f"model.generator.multipliers={tuple(multipliers)} make "
            f"{4 * 2 ** (len(multipliers) - 1)}x images, not data.image_size={size}: one "
            "multiplier for the 4x4 map and one per doubling")
  return None


def resnet_critic_size_problem(size: int, multipliers) -> str | None:
  if size == 32:
    if len(multipliers) < 2:
      return "model.critic.multipliers needs at least 2 entries for 32x32 images"
    return None
  if 4 * 2 ** (len(multipliers) - 1) != size:
    return (f"model.critic.multipliers={tuple(multipliers)} reduce data.image_size={size} "
            "images to another size than 4x4: one multiplier for the first convolution "
            "and one per halving")
  return None


# ---------------------------------------------------------------- checks across the config

def dcgan_generator_problem(image_size: int, draw_size: int, output_activation: str,
                            prefix: str = "") -> str | None:
  """Why a DCGAN generator cannot draw `image_size` images so, or None."""
  for key, value in (("draw_size", draw_size), ("output_activation", output_activation)):
    problem = DCGAN_GENERATOR_RULES[key](value)
    if problem:
      return f"{prefix}{key}={value!r} {problem}"
  if draw_size > image_size:
    return (f"{prefix}draw_size={draw_size} is larger than the image size {image_size}: the "
            "generator draws at most at the data's size")
  return dcgan_image_size_problem(image_size)


def _dcgan_check(config: ml_collections.ConfigDict, role: str) -> str | None:
  if role == "generator":
    g = config.model.generator
    return dcgan_generator_problem(config.data.image_size, g.draw_size, g.output_activation,
                                   "model.generator.")
  if role == "critic" and config.model.critic.norm == "batch" and config.penalty != "none":
    return (f"a gradient penalty ({config.penalty}) forbids batch norm in the critic (the "
            "penalty is per example); set --experiment.model.critic.norm=layer, spectral or "
            "none")
  return dcgan_image_size_problem(config.data.image_size)


def _resnet_check(config: ml_collections.ConfigDict, role: str) -> str | None:
  section, size = config.model[role], config.data.image_size
  if role == "generator":
    return resnet_generator_size_problem(size, section.multipliers)
  return resnet_critic_size_problem(size, section.multipliers)


def _conditional_check(config: ml_collections.ConfigDict, role: str) -> str | None:
  problem = _resnet_check(config, role)
  if problem:
    return problem
  other = "critic" if role == "generator" else "generator"
  if config.model[other].name != "cond_resnet":
    return (f"model.{role}.name='cond_resnet' is class-conditional, model.{other}.name="
            f"{config.model[other].name!r} is not: condition both (start from "
            "cifar10_resnet_acgan)")
  classes = config.model[role].num_classes
  if classes != config.model[other].num_classes:
    return (f"model.generator.num_classes={config.model.generator.num_classes} and "
            f"model.critic.num_classes={config.model.critic.num_classes} differ")
  if not config.data.get("labels", False):
    return (f"model.{role}.name='cond_resnet' trains on class labels: set "
            "--experiment.data.labels=true")
  known = data.get(config.data.name).num_classes
  if known > 0 and known != classes:
    return (f"model.{role}.num_classes={classes}, but {config.data.name} has {known} "
            f"classes: set --experiment.model.generator.num_classes={known} and "
            f"--experiment.model.critic.num_classes={known}")
  t = config.techniques
  if t.feature_matching or t.minibatch_kernels:
    return ("the class-conditional critic takes no feature matching or minibatch "
            "discrimination: set techniques.feature_matching=false and "
            "techniques.minibatch_kernels=0")
  return None


# ---------------------------------------------------------------- the registry

@dataclasses.dataclass(frozen=True)
class Architecture:
  module: str  # holds `generator(...)` and `critic(...)`, the factories
  generator_rules: Mapping[str, Rule]
  critic_rules: Mapping[str, Rule]
  images_only: bool
  cross_check: CrossCheck | None = None

  def factory(self, role: str) -> Callable[..., Any]:
    return getattr(importlib.import_module(self.module), role)


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture("wgan_jax.models.mlp", MLP_GENERATOR_RULES, MLP_CRITIC_RULES,
                        images_only=False),
    "dcgan": Architecture("wgan_jax.models.dcgan", DCGAN_GENERATOR_RULES, DCGAN_CRITIC_RULES,
                          images_only=True, cross_check=_dcgan_check),
    "resnet": Architecture("wgan_jax.models.resnet", RESNET_GENERATOR_RULES,
                           RESNET_CRITIC_RULES, images_only=True, cross_check=_resnet_check),
    "cond_resnet": Architecture("wgan_jax.models.conditional", CONDITIONAL_GENERATOR_RULES,
                                CONDITIONAL_CRITIC_RULES, images_only=True,
                                cross_check=_conditional_check),
}


def num_classes(config: ml_collections.ConfigDict) -> int:
  """The classes a run conditions on: 0 for an unconditional model."""
  critic = config.model.critic
  return critic.num_classes if critic.name == "cond_resnet" else 0


def check_config(config: ml_collections.ConfigDict) -> None:
  """The model sections' keys and values, and their fit with the data and the
  objective, or a ConfigError saying what to change."""
  for role in ROLES:
    section = config.model[role]
    check(section, {"name": lambda n: None if n in ARCHITECTURES else
                    f"is unknown; use one of {', '.join(ARCHITECTURES)}"}, f"model.{role}.")
    arch = ARCHITECTURES[section.name]
    check(section, arch.generator_rules if role == "generator" else arch.critic_rules,
          f"model.{role}.", owner=f"model.{role}.name={section.name!r}",
          hint=f"start from an experiment that uses {section.name}")
    if arch.images_only and data.is_toy(config.data):
      raise ConfigError(f"model.{role}.name={section.name!r} needs image data, but "
                        f"data.name={config.data.name!r} is 2-D")
    problem = arch.cross_check(config, role) if arch.cross_check else None
    if problem:
      raise ConfigError(problem)
  if config.data.get("labels", False) and not num_classes(config):
    raise ConfigError("data.labels=True feeds class labels to a class-conditional model, but "
                      f"model.critic.name={config.model.critic.name!r} is unconditional: set "
                      "--experiment.data.labels=false, or start from cifar10_resnet_acgan")
