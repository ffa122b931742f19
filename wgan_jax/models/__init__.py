"""The networks: MLP, DCGAN, ResNet and class-conditional ResNet generators and
critics (one module each), their layers, and the registry that turns a config
section into a module (`registry.py`, which validation reads without JAX).
"""
from __future__ import annotations

from typing import Any

import ml_collections

from wgan_jax.models.registry import ARCHITECTURES, ROLES, check_config, num_classes

__all__ = ["ARCHITECTURES", "ROLES", "build_critic", "build_generator", "check_config",
           "num_classes"]


def _build(role: str, cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...],
           **layout) -> Any:
  return ARCHITECTURES[cfg.name].factory(role)(cfg, data_shape, **layout)


def build_generator(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...], *,
                    axis_name: str | None = None, convolutions: str = "auto",
                    techniques=None) -> Any:
  """The generator named by `cfg.name` (a flax module), producing samples of `data_shape`."""
  return _build("generator", cfg, data_shape, axis_name=axis_name, convolutions=convolutions,
                techniques=techniques)


def build_critic(cfg: ml_collections.ConfigDict, data_shape: tuple[int, ...], *,
                 axis_name: str | None = None, convolutions: str = "auto",
                 techniques=None) -> Any:
  """The critic named by `cfg.name` (a flax module): samples of `data_shape` -> one value each."""
  return _build("critic", cfg, data_shape, axis_name=axis_name, convolutions=convolutions,
                techniques=techniques)
