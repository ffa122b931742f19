"""Model registry: a config's `model.generator` / `model.critic` section -> module.

Each factory reads the keys of its own section and the shape of one example
(`(2,)` for the toy sets, `(H, W, C)` for images), and takes `axis_name`: the
`jax.pmap` axis over which batch norm computes global batch statistics (None
outside pmap; networks without batch norm ignore it). It changes no parameter.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

from wgan_jax.models import dcgan, mlp, resnet

# (section, data_shape, *, axis_name) -> module.
ModelFactory = Callable[..., nn.Module]


def _mlp_generator(cfg, data_shape, *, axis_name=None):
  del axis_name  # No batch statistics.
  return mlp.MLP(features=cfg.features, depth=cfg.depth, output_shape=data_shape,
                 output_activation=cfg.output_activation)


def _mlp_critic(cfg, data_shape, *, axis_name=None):
  del data_shape, axis_name
  return mlp.MLP(features=cfg.features, depth=cfg.depth, output_shape=())


def _dcgan_generator(cfg, data_shape, *, axis_name=None):
  height, _, channels = data_shape
  return dcgan.DCGANGenerator(image_size=height, channels=channels, ngf=cfg.ngf,
                              n_extra_layers=cfg.n_extra_layers, norm=cfg.norm,
                              axis_name=axis_name)


def _dcgan_critic(cfg, data_shape, *, axis_name=None):
  return dcgan.DCGANCritic(image_size=data_shape[0], ndf=cfg.ndf,
                           n_extra_layers=cfg.n_extra_layers, norm=cfg.norm,
                           axis_name=axis_name)


def _resnet_generator(cfg, data_shape, *, axis_name=None):
  height, _, channels = data_shape
  return resnet.ResNetGenerator(image_size=height, channels=channels, dim=cfg.dim,
                                multipliers=tuple(cfg.multipliers), axis_name=axis_name)


def _resnet_critic(cfg, data_shape, *, axis_name=None):
  del axis_name  # The WGAN-GP critic has no batch norm.
  return resnet.ResNetCritic(image_size=data_shape[0], dim=cfg.dim,
                             multipliers=tuple(cfg.multipliers))


GENERATORS: dict[str, ModelFactory] = {
    "mlp": _mlp_generator, "dcgan": _dcgan_generator, "resnet": _resnet_generator}
CRITICS: dict[str, ModelFactory] = {
    "mlp": _mlp_critic, "dcgan": _dcgan_critic, "resnet": _resnet_critic}
# Architectures that only make sense on images (H, W, C).
IMAGE_ONLY = ("dcgan", "resnet")


def build_generator(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...], *,
                    axis_name: str | None = None) -> nn.Module:
  """The generator named by `cfg.name`, producing samples of `data_shape`;
  `axis_name`: the pmap axis of its batch statistics (see the module doc)."""
  return GENERATORS[cfg.name](cfg, data_shape, axis_name=axis_name)


def build_critic(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...], *,
                 axis_name: str | None = None) -> nn.Module:
  """The critic named by `cfg.name`: samples of `data_shape` -> one value each;
  `axis_name`: the pmap axis of its batch statistics (see the module doc)."""
  return CRITICS[cfg.name](cfg, data_shape, axis_name=axis_name)
