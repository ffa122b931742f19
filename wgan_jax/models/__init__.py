"""Model registry: a config's `model.generator` / `model.critic` section -> module.

Each architecture declares, next to its factories, the keys its sections read
(with their rules) and the checks that involve the rest of the config (image
size, objective); `configs.validate` asks the registry. Factories take the
section, the shape of one example (`(2,)` for the toy sets, `(H, W, C)` for
images) and two keywords: `axis_name`, the `jax.pmap` axis over which batch
norm computes global batch statistics (None outside pmap; it changes no
parameter), `convolutions`, how strided convolutions are formulated
(`layers.IMPLS`, resolved per backend), and `techniques`, the run's
`techniques.Techniques`: minibatch discrimination in the critics, the
reference batch size of generators with `norm` "virtual".
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import flax.linen as nn
import ml_collections

from wgan_jax import data, losses
from wgan_jax.models import conditional, dcgan, mlp, resnet
from wgan_jax.rules import ConfigError, Rule, check
from wgan_jax.techniques import Techniques

# (section, data_shape, *, axis_name, convolutions, techniques) -> module.
ModelFactory = Callable[..., nn.Module]
# (config, role) -> what is wrong with the combination, or None.
CrossCheck = Callable[[ml_collections.ConfigDict, str], str | None]
ROLES = ("generator", "critic")


@dataclasses.dataclass(frozen=True)
class Architecture:
  generator: ModelFactory
  critic: ModelFactory
  generator_rules: Mapping[str, Rule]
  critic_rules: Mapping[str, Rule]
  images_only: bool
  cross_check: CrossCheck | None = None


# ---------------------------------------------------------------- MLP

def _mlp_generator(cfg, data_shape, *, axis_name=None, convolutions="auto",
                   techniques=Techniques()):
  del axis_name, convolutions  # No batch statistics, no convolutions.
  return mlp.MLP(features=cfg.features, depth=cfg.depth, output_shape=data_shape,
                 output_activation=cfg.output_activation, weight_init=cfg.weight_init,
                 norm=cfg.norm, vbn_reference_size=techniques.vbn_reference_size)


def _mlp_critic(cfg, data_shape, *, axis_name=None, convolutions="auto",
                techniques=Techniques()):
  del data_shape, convolutions  # axis_name: for minibatch discrimination only
  return mlp.MLP(features=cfg.features, depth=cfg.depth, output_shape=(),
                 weight_init=cfg.weight_init, norm=cfg.norm, axis_name=axis_name,
                 **_minibatch(techniques))


def _minibatch(techniques: Techniques) -> dict:
  """A critic's minibatch discrimination settings."""
  return dict(minibatch_kernels=techniques.minibatch_kernels,
              minibatch_kernel_dim=techniques.minibatch_kernel_dim)


# ---------------------------------------------------------------- DCGAN

def _dcgan_generator(cfg, data_shape, *, axis_name=None, convolutions="auto",
                     techniques=Techniques()):
  height, _, channels = data_shape
  return dcgan.DCGANGenerator(image_size=height, channels=channels, ngf=cfg.ngf,
                              n_extra_layers=cfg.n_extra_layers, norm=cfg.norm,
                              axis_name=axis_name, convolutions=convolutions,
                              vbn_reference_size=techniques.vbn_reference_size)


def _dcgan_critic(cfg, data_shape, *, axis_name=None, convolutions="auto",
                  techniques=Techniques()):
  return dcgan.DCGANCritic(image_size=data_shape[0], ndf=cfg.ndf,
                           n_extra_layers=cfg.n_extra_layers, norm=cfg.norm,
                           axis_name=axis_name, convolutions=convolutions,
                           **_minibatch(techniques))


def _dcgan_check(config: ml_collections.ConfigDict, role: str) -> str | None:
  if role == "critic" and config.model.critic.norm == "batch" and losses.penalty_of(
      config.objective, config.penalty) != "none":
    return (f"a gradient penalty ({losses.penalty_of(config.objective, config.penalty)}) "
            "forbids batch norm in the critic (the penalty is per example); set "
            "--experiment.model.critic.norm=layer, spectral or none")
  return dcgan.image_size_problem(config.data.image_size)


# ---------------------------------------------------------------- ResNet

def _resnet_generator(cfg, data_shape, *, axis_name=None, convolutions="auto",
                      techniques=Techniques()):
  del convolutions, techniques  # Stride-1 convolutions only; batch norm only.
  height, _, channels = data_shape
  return resnet.ResNetGenerator(image_size=height, channels=channels, dim=cfg.dim,
                                multipliers=tuple(cfg.multipliers), axis_name=axis_name)


def _resnet_critic(cfg, data_shape, *, axis_name=None, convolutions="auto",
                   techniques=Techniques()):
  del convolutions  # No batch norm: axis_name is for minibatch discrimination only.
  return resnet.ResNetCritic(image_size=data_shape[0], dim=cfg.dim,
                             multipliers=tuple(cfg.multipliers), norm=cfg.norm,
                             axis_name=axis_name, **_minibatch(techniques))


def _resnet_check(config: ml_collections.ConfigDict, role: str) -> str | None:
  section, size = config.model[role], config.data.image_size
  if role == "generator":
    return resnet.generator_size_problem(size, section.multipliers)
  return resnet.critic_size_problem(size, section.multipliers)


# ---------------------------------------------------------------- class-conditional ResNet

def _cond_resnet_generator(cfg, data_shape, *, axis_name=None, convolutions="auto",
                           techniques=Techniques()):
  del convolutions, techniques
  height, _, channels = data_shape
  return conditional.OneHotConditioned(conditional.ConditionalResNetGenerator(
      image_size=height, channels=channels, dim=cfg.dim, multipliers=tuple(cfg.multipliers),
      axis_name=axis_name, num_classes=cfg.num_classes))


def _cond_resnet_critic(cfg, data_shape, *, axis_name=None, convolutions="auto",
                        techniques=Techniques()):
  del convolutions, axis_name, techniques  # config_problem refuses minibatch discrimination.
  return conditional.ConditionalResNetCritic(
      image_size=data_shape[0], dim=cfg.dim, multipliers=tuple(cfg.multipliers), norm=cfg.norm,
      num_classes=cfg.num_classes, head=cfg.head)


def _cond_resnet_check(config: ml_collections.ConfigDict, role: str) -> str | None:
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


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(_mlp_generator, _mlp_critic, mlp.GENERATOR_RULES, mlp.CRITIC_RULES,
                        images_only=False),
    "dcgan": Architecture(_dcgan_generator, _dcgan_critic, dcgan.GENERATOR_RULES,
                          dcgan.CRITIC_RULES, images_only=True, cross_check=_dcgan_check),
    "resnet": Architecture(_resnet_generator, _resnet_critic, resnet.GENERATOR_RULES,
                           resnet.CRITIC_RULES, images_only=True, cross_check=_resnet_check),
    "cond_resnet": Architecture(_cond_resnet_generator, _cond_resnet_critic,
                                conditional.GENERATOR_RULES, conditional.CRITIC_RULES,
                                images_only=True, cross_check=_cond_resnet_check),
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
    if arch.images_only and data.get(config.data.name).kind != data.IMAGE:
      raise ConfigError(f"model.{role}.name={section.name!r} needs image data, but "
                        f"data.name={config.data.name!r} is 2-D")
    problem = arch.cross_check(config, role) if arch.cross_check else None
    if problem:
      raise ConfigError(problem)
  if config.data.get("labels", False) and not num_classes(config):
    raise ConfigError("data.labels=True feeds class labels to a class-conditional model, but "
                      f"model.critic.name={config.model.critic.name!r} is unconditional: set "
                      "--experiment.data.labels=false, or start from cifar10_resnet_acgan")


def build_generator(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...], *,
                    axis_name: str | None = None, convolutions: str = "auto",
                    techniques: Techniques = Techniques()) -> nn.Module:
  """The generator named by `cfg.name`, producing samples of `data_shape`."""
  return ARCHITECTURES[cfg.name].generator(cfg, data_shape, axis_name=axis_name,
                                           convolutions=convolutions, techniques=techniques)


def build_critic(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...], *,
                 axis_name: str | None = None, convolutions: str = "auto",
                 techniques: Techniques = Techniques()) -> nn.Module:
  """The critic named by `cfg.name`: samples of `data_shape` -> one value each."""
  return ARCHITECTURES[cfg.name].critic(cfg, data_shape, axis_name=axis_name,
                                        convolutions=convolutions, techniques=techniques)
