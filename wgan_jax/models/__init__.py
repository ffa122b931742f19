"""Model registry: a config's `model.generator.name` / `model.critic.name` -> module."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

from wgan_jax.models import mlp


def _mlp_generator(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> nn.Module:
  return mlp.MLP(features=cfg.features, depth=cfg.depth, output_shape=data_shape,
                 output_activation=cfg.output_activation)


def _mlp_critic(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> nn.Module:
  del data_shape
  return mlp.MLP(features=cfg.features, depth=cfg.depth, output_shape=())


ModelFactory = Callable[[ml_collections.ConfigDict, tuple[int, ...]], nn.Module]
GENERATORS: dict[str, ModelFactory] = {"mlp": _mlp_generator}
CRITICS: dict[str, ModelFactory] = {"mlp": _mlp_critic}


def build_generator(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> nn.Module:
  """The generator named by `cfg.name`, producing samples of `data_shape`."""
  return GENERATORS[cfg.name](cfg, data_shape)


def build_critic(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> nn.Module:
  """The critic named by `cfg.name`: samples of `data_shape` -> one value each."""
  return CRITICS[cfg.name](cfg, data_shape)
