"""Orbax checkpoints: generator, critic and metadata as separate items.

Layout: `WORKDIR/checkpoints/<step>/{generator,critic,metadata}`. Each network
item is {params, batch_stats, opt_state}; `metadata` is JSON with the step, the
base RNG key and the experiment's config. Sampling restores the generator's
params and batch stats alone (a partial restore of one item), without
building the critic or any optimizer state.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from wgan_jax.state import NetState, PyTree, TrainState

ITEMS = ("generator", "critic", "metadata")


class CheckpointError(RuntimeError):
  """No usable checkpoint where one was asked for: reported as one line."""


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def _net_tree(net: NetState) -> dict[str, PyTree]:
  return {"params": net.params, "batch_stats": net.batch_stats, "opt_state": net.opt_state}


def _abstract(tree: PyTree) -> PyTree:
  """Shapes, dtypes and (single-device) shardings to restore into."""
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)


def _restore_args(target: PyTree, partial: bool = False) -> ocp.args.PyTreeRestore:
  return ocp.args.PyTreeRestore(target, restore_args=ocp.checkpoint_utils.construct_restore_args(
      target), partial_restore=partial)


def check_shapes(manager: ocp.CheckpointManager, step: int, item: str, target: PyTree) -> None:
  """Compares the shapes saved in `item` at `step` with `target`'s, from the
  checkpoint's metadata (nothing is read), and names the first difference."""
  metadata = manager.item_metadata(step)[item]
  saved = {jax.tree_util.keystr(p): tuple(m.shape)
           for p, m in jax.tree_util.tree_leaves_with_path(getattr(metadata, "tree", metadata))}
  for path, want in jax.tree_util.tree_leaves_with_path(target):
    key = jax.tree_util.keystr(path)
    if key not in saved:
      raise CheckpointError(f"the {item} saved at step {step} does not match the experiment: "
                            f"it has no {key}; use the experiment the run was trained with")
    if saved[key] != tuple(want.shape):
      raise CheckpointError(
          f"the {item} saved at step {step} does not match the experiment: {key} has shape "
          f"{saved[key]} in the checkpoint but {tuple(want.shape)} in the model; "
          "use the experiment the run was trained with")


class Checkpointer:
  """Saves a run every `every` generator steps (async), restores the latest."""

  def __init__(self, workdir: str, every: int, keep: int):
    self.every = every
    self._manager = ocp.CheckpointManager(
        checkpoint_dir(workdir), item_names=ITEMS, item_handlers=_handlers(ITEMS),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def due(self, step: int) -> bool:
    """Whether `save` at this step writes a checkpoint (multiples of `every`)."""
    return bool(self.every) and step % self.every == 0

  def save(self, state: TrainState, config: ml_collections.ConfigDict,
           force: bool = False) -> bool:
    """Saves at multiples of `every` (or any step with `force`); returns whether it did."""
    step = int(state.step)
    if not force and not self.due(step):
      return False
    if step in self._manager.all_steps():
      return False
    metadata = {"step": step, "rng": np.asarray(jax.device_get(state.rng)).tolist(),
                "config": config.to_dict()}
    return self._manager.save(step, args=ocp.args.Composite(
        generator=ocp.args.PyTreeSave(_net_tree(state.generator)),
        critic=ocp.args.PyTreeSave(_net_tree(state.critic)),
        metadata=ocp.args.JsonSave(metadata)), force=True)

  def restore(self, like: TrainState, step: int | None = None) -> TrainState:
    """The state saved at `step` (default: latest), shaped like `like`."""
    step = self.latest_step() if step is None else step
    targets = {"generator": _abstract(_net_tree(like.generator)),
               "critic": _abstract(_net_tree(like.critic))}
    for name, target in targets.items():
      check_shapes(self._manager, step, name, target)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        generator=_restore_args(targets["generator"]), critic=_restore_args(targets["critic"]),
        metadata=ocp.args.JsonRestore()))
    meta = restored.metadata
    return TrainState(step=jax.numpy.asarray(meta["step"], jax.numpy.int32),
                      rng=jax.numpy.asarray(meta["rng"], jax.numpy.uint32),
                      generator=NetState(**restored.generator),
                      critic=NetState(**restored.critic))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _handlers(items: tuple[str, ...]) -> dict[str, ocp.CheckpointHandler]:
  return {name: ocp.JsonCheckpointHandler() if name == "metadata"
          else ocp.PyTreeCheckpointHandler() for name in items}


@contextlib.contextmanager
def _read_only_manager(workdir: str, items: tuple[str, ...]):
  path = checkpoint_dir(workdir)
  if not os.path.isdir(path):
    raise CheckpointError(f"no checkpoint in {workdir}: {path} does not exist; train first "
                          f"(python -m wgan_jax.train --workdir={workdir})")
  manager = ocp.CheckpointManager(path, item_names=items, item_handlers=_handlers(items),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    yield manager
  finally:
    manager.close()


def read_metadata(workdir: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
  """(step, metadata) of the checkpoint at `step` (default: latest)."""
  with _read_only_manager(workdir, ("metadata",)) as manager:
    steps = manager.all_steps()
    if not steps:
      raise CheckpointError(f"no checkpoint in {checkpoint_dir(workdir)}; train first")
    if step is None:
      step = max(steps)
    elif step not in steps:
      raise CheckpointError(f"no checkpoint for step {step} in {checkpoint_dir(workdir)}; "
                            f"saved steps: {', '.join(map(str, sorted(steps)))}")
    return step, manager.restore(step, args=ocp.args.Composite(
        metadata=ocp.args.JsonRestore())).metadata


def restore_generator(workdir: str, step: int, like: NetState) -> NetState:
  """The generator's params and batch stats at `step`, shaped like `like`
  (its `opt_state` is ignored and comes back as None)."""
  target = _abstract({"params": like.params, "batch_stats": like.batch_stats})
  with _read_only_manager(workdir, ("generator",)) as manager:
    check_shapes(manager, step, "generator", target)
    tree = manager.restore(step, args=ocp.args.Composite(
        generator=_restore_args(target, partial=True))).generator
  return NetState(params=tree["params"], batch_stats=tree["batch_stats"], opt_state=None)
