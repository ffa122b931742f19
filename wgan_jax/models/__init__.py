"""Model registry: a config's `model.generator` / `model.critic` section -> module.

Each factory reads the keys of its own section and the shape of one example
(`(2,)` for the toy sets, `(H, W, C)` for images).
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

from wgan_jax.models import dcgan, mlp, resnet

ModelFactory = Callable[[ml_collections.ConfigDict, tuple[int, ...]], nn.Module]


def _mlp_generator(cfg, data_shape):
  return mlp.MLP(features=cfg.features, depth=cfg.depth, output_shape=data_shape,
                 output_activation=cfg.output_activation)


def _mlp_critic(cfg, data_shape):
  del data_shape
  return mlp.MLP(features=cfg.features, depth=cfg.depth, output_shape=())


def _dcgan_generator(cfg, data_shape):
  height, _, channels = data_shape
  return dcgan.DCGANGenerator(image_size=height, channels=channels, ngf=cfg.ngf,
                              n_extra_layers=cfg.n_extra_layers, norm=cfg.norm)


def _dcgan_critic(cfg, data_shape):
  return dcgan.DCGANCritic(image_size=data_shape[0], ndf=cfg.ndf,
                           n_extra_layers=cfg.n_extra_layers, norm=cfg.norm)


def _resnet_generator(cfg, data_shape):
  height, _, channels = data_shape
  return resnet.ResNetGenerator(image_size=height, channels=channels, dim=cfg.dim,
                                multipliers=tuple(cfg.multipliers))


def _resnet_critic(cfg, data_shape):
  return resnet.ResNetCritic(image_size=data_shape[0], dim=cfg.dim,
                             multipliers=tuple(cfg.multipliers))


GENERATORS: dict[str, ModelFactory] = {
    "mlp": _mlp_generator, "dcgan": _dcgan_generator, "resnet": _resnet_generator}
CRITICS: dict[str, ModelFactory] = {
    "mlp": _mlp_critic, "dcgan": _dcgan_critic, "resnet": _resnet_critic}
# Architectures that only make sense on images (H, W, C).
IMAGE_ONLY = ("dcgan", "resnet")


def build_generator(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> nn.Module:
  """The generator named by `cfg.name`, producing samples of `data_shape`."""
  return GENERATORS[cfg.name](cfg, data_shape)


def build_critic(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> nn.Module:
  """The critic named by `cfg.name`: samples of `data_shape` -> one value each."""
  return CRITICS[cfg.name](cfg, data_shape)
