"""Orbax checkpoints of the whole TrainState, whatever fields it has.

Layout: `WORKDIR/checkpoints/<step>/{state,metadata}`. `state` is the
TrainState as a pytree (`flax.serialization.to_state_dict`: every field, so a
field added to TrainState is saved and restored with no change here);
`metadata` is JSON with the step, each process's data-stream position, the
experiment's config, the last logged training means and a checksum of every
array (two sums of its bits, computed on the devices), which a restore
recomputes: an array that does not read back bit for bit is damage. A run restores into an abstract target (shapes, dtypes
and the run's shardings, nothing allocated). Sampling restores the
generator's params and batch stats alone (a partial restore of `state`),
without building the critic or any optimizer state.

Checkpoints written before this layout (items `generator`, `critic` and
`metadata`, the RNG key in the metadata) still restore, as long as the state
has no field they lack.

Faults: a checkpoint that fails to restore (truncated or missing files) while
an older one restores is renamed `<step>.damaged`, named in a warning, and the
older one is used;
a save that fails (disk full, workdir gone read-only) raises a
CheckpointWriteError naming the newest intact checkpoint, which stays intact
because Orbax only renames a finished save into place. A checkpoint no longer
kept is deleted only of what the run wrote: a file a user put in its folder is
moved to `<step>.kept`, named in a warning.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
from typing import Any, Callable, TypeVar

from absl import logging
from flax import serialization
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from wgan_jax import multihost
from wgan_jax.state import NetState, PyTree, TrainState, generator_steps

ITEMS = ("state", "metadata")
# The layout before whole-state checkpoints: one item per network.
LEGACY_ITEMS = ("generator", "critic", "metadata")


class CheckpointError(RuntimeError):
  """No usable checkpoint where one was asked for: reported as one line."""


class MismatchError(CheckpointError):
  """A checkpoint that holds other shapes than the model: `mismatch` says
  which array, without the advice that fits a resume."""

  def __init__(self, message: str, mismatch: str):
    super().__init__(message)
    self.mismatch = mismatch


class DamagedCheckpointError(CheckpointError):
  """A checkpoint whose files cannot be read back (an older one may serve)."""


class CheckpointWriteError(RuntimeError):
  """A save failed (disk full, unwritable workdir): reported as one line."""


DAMAGED_SUFFIX = ".damaged"
# Orbax moves a checkpoint it no longer keeps (`keep`, `best_metric`) into this folder
# of the checkpoints (its `todelete_subdir`) rather than deleting it; `_sweep_removed`
# then deletes what the run wrote there and moves anything else out, to `<step>.kept`.
REMOVED_DIR = "to_delete"
KEPT_SUFFIX = ".kept"
# What a save writes at the top of a step folder: anything else there is not the run's.
_WRITTEN = frozenset((*ITEMS, *LEGACY_ITEMS, "_CHECKPOINT_METADATA", "commit_success.txt"))


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def _abstract(tree: PyTree) -> PyTree:
  """Shapes, dtypes and shardings to restore into: those of `tree`'s leaves (e.g.
  replicated over a mesh), one local device where a leaf has none."""
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      np.shape(x), x.dtype, sharding=getattr(x, "sharding", None) or local), tree)


def _is_legacy(directory: str, step: int) -> bool:
  step_dir = os.path.join(directory, str(step))
  return (not os.path.isdir(os.path.join(step_dir, "state"))
          and os.path.isdir(os.path.join(step_dir, "generator")))


def _restore_args(target: PyTree, partial: bool = False) -> ocp.args.PyTreeRestore:
  return ocp.args.PyTreeRestore(target, restore_args=ocp.checkpoint_utils.construct_restore_args(
      target), partial_restore=partial)


def _path_name(path: tuple[Any, ...]) -> str:
  """"opt_state/0/mu/Dense_0/kernel": the same for a state and for the checkpoint's
  metadata of it (which stores named tuples as dicts)."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def check_shapes(manager: ocp.CheckpointManager, step: int, item: str, target: PyTree,
                 partial: bool = False) -> None:
  """Compares the shapes saved in `item` at `step` with `target`'s, from the
  checkpoint's metadata (no array is read), and names the first difference.
  `partial`: `target` is a part of the item (leaves it lacks are fine)."""
  metadata = manager.item_metadata(step)[item]
  if metadata is None:  # Damage, not a mismatch: the caller falls back or reports it.
    raise FileNotFoundError(f"checkpoint {step} has no readable {item} metadata")
  saved = {_path_name(p): tuple(m.shape)
           for p, m in jax.tree_util.tree_leaves_with_path(getattr(metadata, "tree", metadata))}
  wanted = {_path_name(p): tuple(w.shape)
            for p, w in jax.tree_util.tree_leaves_with_path(target)}
  extra = sorted(k for k in saved if k not in wanted and not partial)
  if extra:
    raise _mismatch(item, step, extra[0], f"it has {extra[0]}, which the model does not")
  for key, want in wanted.items():
    if key not in saved:
      raise _mismatch(item, step, key, f"it has no {key}")
    if saved[key] != want:
      raise _mismatch(item, step, key, f"{key} has shape {saved[key]} in the checkpoint but "
                      f"{want} in the model")


def _mismatch(item: str, step: int, key: str, detail: str) -> CheckpointError:
  """The one line for a checkpoint whose `key` does not fit the experiment. An
  optimizer state's inner path names no setting: that case names the settings
  that shape it instead."""
  parts = key.split("/")
  if "opt_state" in parts[1:]:
    network = parts[parts.index("opt_state") - 1]
    return CheckpointError(
        f"the {item} saved at step {step} holds the {network}'s optimizer state in another "
        "layout than these settings make: one that shapes it (optimizer.NETWORK.name, "
        "optimizer.NETWORK.schedule, clip, techniques.historical_averaging) differs from the "
        "run's; resume with the settings it was trained with, or pass another --workdir")
  found = f"the {item} saved at step {step} does not match the experiment: {detail}"
  return MismatchError(f"{found}; use the experiment the run was trained with", found)


def _keeping(keep: int, best_metric: str | None) -> dict[str, Any]:
  """Orbax's options for which checkpoints stay: the `keep` newest, and with
  `best_metric` the lowest-scoring one besides (checkpoints saved without the
  score are ranked by age alone). The others are moved to REMOVED_DIR, not deleted."""
  if best_metric is None:
    return {"max_to_keep": keep, "todelete_subdir": REMOVED_DIR}
  policies = ocp.checkpoint_managers
  score = lambda metrics: metrics[best_metric]
  # BestN sorts by score and keeps the last n: reversed, the lowest.
  return {"best_fn": score, "best_mode": "min", "todelete_subdir": REMOVED_DIR,
          "preservation_policy": policies.AnyPreservationPolicy([
              policies.LatestN(n=keep),
              policies.BestN(get_metric_fn=score, reverse=True, n=1,
                             keep_checkpoints_without_metrics=False)])}


class Checkpointer:
  """Saves a run every `every` generator steps (async), restores the newest intact one."""

  def __init__(self, workdir: str, every: int, keep: int, best_metric: str | None = None):
    """Keeps the `keep` newest checkpoints and, with `best_metric` (lower is
    better, e.g. "fid"), also the one whose saved metrics score best."""
    self.every, self.best_metric = every, best_metric
    self.directory = checkpoint_dir(workdir)
    if os.path.lexists(self.directory) and not os.path.isdir(self.directory):
      raise CheckpointError(f"{self.directory} is a file, not a folder of checkpoints: move it "
                            "away or pass another --workdir")
    self._pending: int | None = None  # step of the save that may still be in flight
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=ITEMS, item_handlers=_handlers(ITEMS),
        options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=True,
                                             **_keeping(keep, best_metric)))
    _sweep_removed(self.directory)  # What a run killed before it could delete it left.

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def due(self, step: int) -> bool:
    """Whether `save` at this step writes a checkpoint (multiples of `every`)."""
    return bool(self.every) and step % self.every == 0

  def save(self, state: TrainState, config: ml_collections.ConfigDict,
           data_position: list[int] | None = None, force: bool = False,
           train_scalars: dict[str, float] | None = None,
           scores: dict[str, float] | None = None, train_seconds: float | None = None) -> bool:
    """Saves at multiples of `every` (or any step with `force`); returns whether it did.

    `data_position` holds each process's position in its data stream (None
    where the data is a function of the step, as for the toy sets);
    `train_scalars` the last logged training means (for a summary written later);
    `scores` the evaluation of this state, by which the best checkpoint is kept;
    `train_seconds` the training time of the iterations the state holds."""
    step = generator_steps(state)
    if not force and not self.due(step):
      return False
    if step in self._manager.all_steps():
      return False
    tree = serialization.to_state_dict(state)
    metadata = {"step": step, "data_position": data_position, "config": config.to_dict(),
                "train_scalars": train_scalars or {}, "train_seconds": train_seconds,
                "checksums": checksums(tree)}
    with self._writing(step):
      saved = self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeSave(tree), metadata=ocp.args.JsonSave(metadata)), force=True,
          metrics=self._ranked(scores))
    self._pending = step
    # The save before this one has finished (Orbax waits for it): so has its clean-up.
    _sweep_removed(self.directory)
    return saved

  def _ranked(self, scores: dict[str, float] | None) -> dict[str, float] | None:
    """The part of `scores` the best-checkpoint policy ranks by, if it is a number."""
    value = (scores or {}).get(self.best_metric) if self.best_metric else None
    return {self.best_metric: float(value)} if value is not None and np.isfinite(value) else None

  def best(self) -> tuple[int, float] | None:
    """(step, score) of the kept checkpoint with the best score, if any carries one."""
    step = self._manager.best_step() if self.best_metric else None
    if step is None:
      return None
    return step, float(self._manager.metrics(step)[self.best_metric])

  @contextlib.contextmanager
  def _writing(self, step: int):
    """Turns a failed write (this one or the async one before it) into one clear error."""
    try:
      yield
    except (OSError, ValueError, RuntimeError) as e:  # I/O errors; tensorstore's are ValueErrors.
      failed = self._pending if self._pending is not None else step
      self._pending = None
      intact = [s for s in _finished_steps(self.directory) if s != failed]
      fallback = (f"step {max(intact)} is the newest intact checkpoint and a rerun resumes "
                  "from it" if intact else "no earlier checkpoint exists")
      reason = _one_line(e)
      raise CheckpointWriteError(
          f"could not write the checkpoint of step {failed} to {self.directory} ({reason}); "
          f"free disk space or make the workdir writable, then run the same command: "
          f"{fallback}") from e

  def restore(self, like: TrainState, step: int | None = None, verify: bool = True
              ) -> tuple[TrainState, dict[str, Any]]:
    """The state saved at `step` (default: latest) and its metadata. `like` gives
    every leaf's shape, dtype and sharding (e.g. `builders.abstract_state`).
    `verify`: check every array against its saved checksum (ValueError if one
    does not read back as written)."""
    step = self.latest_step() if step is None else step
    if _is_legacy(self.directory, step):
      return _restore_legacy(self.directory, like, step)
    target = _abstract(serialization.to_state_dict(like))
    check_shapes(self._manager, step, "state", target)
    # Partial: a field added to the state since (empty, e.g. no moving average) is
    # absent from older checkpoints; check_shapes has found every array `like` has.
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=_restore_args(target, partial=True), metadata=ocp.args.JsonRestore()))
    meta = restored.metadata
    if meta["step"] != step:
      raise ValueError(f"metadata says step {meta['step']}")
    state = serialization.from_state_dict(like, restored.state)
    if verify:
      verify_state(state, meta)
    return state, meta

  def restore_intact(self, like: TrainState) -> tuple[TrainState, dict[str, Any]] | None:
    """The newest checkpoint that restores, or None if there are none.

    Newer ones that fail to restore (truncated or missing files) are then set
    aside as `<step>.damaged` (never deleted) with a warning, so a rerun does
    not trip on them again. If none restores, nothing is moved: that is more
    likely a systemic problem (memory, a changed format) than damage to all of
    them, and it is a CheckpointError. A checkpoint that does not match the
    experiment is not damage either: that CheckpointError propagates.
    With several processes, a checkpoint counts as restored only if it did on all.
    """
    failed: list[tuple[int, Exception]] = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored, error = self.restore(like, step, verify=False), None
      except CheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        restored, error = None, e
      if not multihost.on_every_process(error is None) and error is None:
        restored, error = None, RuntimeError("it failed to restore on another process")
      if error is None:
        # Only now, with every process holding the arrays: the checksums are global
        # sums (collectives), and their verdict the same on every process.
        try:
          verify_state(*restored)
        except ValueError as e:
          restored, error = None, e
      if error is None:
        for bad_step, bad_error in failed:
          self._set_aside(bad_step, bad_error)
        return restored
      failed.append((step, error))
    if failed:
      step, error = failed[0]
      raise CheckpointError(
          f"none of the {len(failed)} checkpoints in {self.directory} restores (the newest, "
          f"step {step}: {type(error).__name__}: {_one_line(error)}); nothing was moved: "
          "fix the cause, or move them away to start afresh")
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    path = os.path.join(self.directory, str(step))
    damaged = _unused(path + DAMAGED_SUFFIX)
    if jax.process_index() == 0:
      os.rename(path, damaged)
    if jax.process_count() > 1:  # Nobody lists the steps again before the rename.
      multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
    logging.warning("checkpoint %s is damaged (%s: %s); moved it to %s and falling back to "
                    "the next older checkpoint", path, type(error).__name__,
                    _one_line(error), damaged)
    self._manager.reload()

  def wait(self) -> None:
    with self._writing(self._pending or 0):
      self._manager.wait_until_finished()
    self._pending = None
    _sweep_removed(self.directory)

  def close(self) -> None:
    self._manager.close()
    _sweep_removed(self.directory)


def _unused(path: str) -> str:
  """`path`, or with 2, 3, ... appended: the first that does not exist."""
  candidate, n = path, 1
  while os.path.lexists(candidate):
    n += 1
    candidate = f"{path}{n}"
  return candidate


def _sweep_removed(directory: str) -> None:
  """Deletes the checkpoints Orbax no longer keeps (moved to REMOVED_DIR): what the
  run wrote in them. Anything else in a step folder (a user's notes) is moved to
  `<step>.kept` beside the checkpoints first, with a warning."""
  removed = os.path.join(directory, REMOVED_DIR)
  if jax.process_index() or not os.path.isdir(removed):
    return
  for name in sorted(os.listdir(removed)):
    folder = os.path.join(removed, name)
    if not name.isdigit() or not os.path.isdir(folder):
      continue  # Not a step Orbax moved here: not ours to delete.
    try:
      theirs = sorted(n for n in os.listdir(folder) if n not in _WRITTEN)
      if theirs:
        kept = _unused(os.path.join(directory, name + KEPT_SUFFIX))
        os.makedirs(kept)
        for entry in theirs:
          os.rename(os.path.join(folder, entry), os.path.join(kept, entry))
        logging.warning("checkpoint %s is no longer kept (keep_checkpoints), but its folder held "
                        "files the run did not write (%s); moved them to %s",
                        os.path.join(directory, name), ", ".join(theirs[:3])
                        + (f" and {len(theirs) - 3} more" if len(theirs) > 3 else ""), kept)
    except OSError as e:  # Nothing is deleted that might hold a file of the user's.
      logging.warning("could not clear %s (%s); it is left there, and the next run tries again",
                      folder, e)
      continue
    shutil.rmtree(folder, ignore_errors=True)
  with contextlib.suppress(OSError):  # Kept if something else is in it.
    os.rmdir(removed)


def _checksum(x: jax.Array) -> jax.Array:
  """Two uint32 sums of `x`'s bits, plain and weighted by position: any single
  flipped bit changes the first, and swapped values the second."""
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
  bits = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)
  weights = jnp.arange(1, bits.size + 1, dtype=jnp.uint32)
  return jnp.stack([jnp.sum(bits, dtype=jnp.uint32), jnp.sum(bits * weights, dtype=jnp.uint32)])


_checksums = jax.jit(lambda tree: jax.tree.map(_checksum, tree))


def checksums(tree: PyTree) -> dict[str, list[int]]:
  """Every array's checksum by path, computed where the arrays live (one program)."""
  sums = jax.device_get(_checksums(tree))
  return {_path_name(p): [int(v) for v in np.asarray(s)]
          for p, s in jax.tree_util.tree_leaves_with_path(sums)}


def _verify(tree: PyTree, expected: dict[str, list[int]] | None, prefix: str = "") -> None:
  """ValueError (damage) unless every array of `tree` (at `prefix` of the saved
  state) reads back with its saved checksum."""
  if not expected:  # Checkpoints written before checksums.
    return
  for path, got in checksums(tree).items():
    if expected.get(prefix + path) != got:
      raise ValueError(f"{prefix + path} does not read back as it was written (checksum {got}, "
                       f"saved {expected.get(prefix + path)})")


def verify_state(state: TrainState, metadata: dict[str, Any]) -> None:
  """ValueError unless every array of `state` matches the checksums in `metadata`."""
  _verify(serialization.to_state_dict(state), metadata.get("checksums"))


def _one_line(error: Exception) -> str:
  return " ".join(str(error).split())[:300] or type(error).__name__


def _finished_steps(directory: str) -> list[int]:
  """Steps whose save finished (Orbax renames a finished save to the bare step)."""
  try:
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())
  except OSError:
    return []


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
    try:
      metadata = manager.restore(step, args=ocp.args.Composite(
          metadata=ocp.args.JsonRestore())).metadata
      if not isinstance(metadata, dict) or metadata.get("step") != step:
        raise ValueError("it is not the metadata of this step")
    except Exception as e:  # pylint: disable=broad-except  # whatever a damaged file raises
      others = [s for s in sorted(steps) if s != step]
      raise DamagedCheckpointError(
          f"the metadata of checkpoint {step} in {checkpoint_dir(workdir)} cannot be read "
          f"({type(e).__name__}): it is damaged"
          + (f"; pass --step= one of {', '.join(map(str, others))}" if others else "")) from e
    return step, metadata


T = TypeVar("T")


def newest_readable(workdir: str, step: int | None, load: Callable[[int | None], T]) -> T:
  """`load(step)`, or without a step `load` of the newest checkpoint that reads
  back, saying on stderr which damaged ones it passed over."""
  candidates = [step] if step is not None else finished_steps(workdir)[::-1]
  damaged = []
  for candidate in candidates or [None]:
    try:
      return load(candidate)
    except DamagedCheckpointError as e:
      if step is not None:
        raise
      print(f"warning: {e}; trying an older checkpoint", file=sys.stderr)
      damaged.append(str(candidate))
  raise CheckpointError(
      f"none of the checkpoints in {checkpoint_dir(workdir)} reads back (steps "
      f"{', '.join(damaged)} are damaged); train again, or restore the folder from a copy")


def finished_steps(workdir: str) -> list[int]:
  """The steps of `workdir`'s finished checkpoints, oldest first."""
  return _finished_steps(checkpoint_dir(workdir))


def saved_config(workdir: str) -> tuple[int, dict[str, Any]] | None:
  """(step, config dict) of the newest readable checkpoint in `workdir`, or None."""
  for step in reversed(_finished_steps(checkpoint_dir(workdir))):
    try:
      return step, read_metadata(workdir, step)[1]["config"]
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("cannot read the metadata of checkpoint %d in %s (%s); trying older ones",
                      step, checkpoint_dir(workdir), type(e).__name__)
  return None


def _restore_legacy(directory: str, like: TrainState, step: int
                    ) -> tuple[TrainState, dict[str, Any]]:
  """A checkpoint of the layout before whole-state checkpoints, into `like`."""
  known = {"step", "rng", "generator", "critic"}
  # Fields added since hold nothing in a run that does not use them (e.g. no moving average).
  lacking = sorted(f.name for f in dataclasses.fields(like)
                   if f.name not in known and jax.tree.leaves(getattr(like, f.name)))
  if lacking:
    raise CheckpointError(
        f"checkpoint {step} in {directory} has the layout of wgan_jax before whole-state "
        f"checkpoints (items generator, critic, metadata) and lacks "
        f"{', '.join(lacking)}; resume it with the version that wrote it, or "
        "start a new run in another workdir")
  # As the old layout saved them: the optimizer states' own tuples, not state dicts.
  nets = {name: _abstract({f.name: getattr(getattr(like, name), f.name)
                           for f in dataclasses.fields(NetState)})
          for name in ("generator", "critic")}
  manager = ocp.CheckpointManager(directory, item_names=LEGACY_ITEMS,
                                  item_handlers=_handlers(LEGACY_ITEMS),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    for name, target in nets.items():
      check_shapes(manager, step, name, target)
    restored = manager.restore(step, args=ocp.args.Composite(
        generator=_restore_args(nets["generator"], partial=True),
        critic=_restore_args(nets["critic"], partial=True), metadata=ocp.args.JsonRestore()))
  finally:
    manager.close()
  meta = restored.metadata
  if meta["step"] != step:
    raise ValueError(f"metadata says step {meta['step']}")
  put = lambda value, leaf: jax.device_put(np.asarray(value, leaf.dtype), _abstract(leaf).sharding)
  return like.replace(
      step=put(step, like.step), rng=put(meta["rng"], like.rng),
      generator=NetState(**restored.generator), critic=NetState(**restored.critic)), meta


def restore_generator(workdir: str, step: int, like: NetState, field: str = "generator"
                      ) -> NetState:
  """The generator's params and batch stats at `step`, shaped like `like`
  (its `opt_state` is ignored and comes back as None); `field`: the TrainState
  field to read them from ("generator_ema": the moving average)."""
  tree = restore_networks(workdir, step, {field: {"params": like.params,
                                                  "batch_stats": like.batch_stats}})[field]
  return NetState(params=tree["params"], batch_stats=tree["batch_stats"], opt_state=None)


def _networks_target(workdir: str, step: int, like: dict[str, PyTree]) -> tuple[str, PyTree]:
  """(item, restore target) of the TrainState parts `like` in checkpoint `step`."""
  legacy = _is_legacy(checkpoint_dir(workdir), step)
  if legacy and set(like) != {"generator"}:
    raise CheckpointError(f"checkpoint {step} in {checkpoint_dir(workdir)} predates "
                          f"{', '.join(sorted(set(like) - {'generator'}))}")
  nets = _abstract(like)
  return ("generator", nets["generator"]) if legacy else ("state", nets)


def check_networks(workdir: str, step: int, like: dict[str, PyTree]) -> None:
  """`restore_networks`' shape check alone: a CheckpointError naming the first
  array of `like` that the checkpoint holds in another shape, or lacks."""
  item, target = _networks_target(workdir, step, like)
  with _read_only_manager(workdir, (item, "metadata")) as manager:
    try:
      check_shapes(manager, step, item, target, partial=True)
    except FileNotFoundError as e:
      raise DamagedCheckpointError(f"checkpoint {step} in {checkpoint_dir(workdir)} is "
                                   f"damaged ({e})") from None


def restore_networks(workdir: str, step: int, like: dict[str, PyTree]) -> dict[str, PyTree]:
  """Parts of the TrainState fields at `step`, shaped like `like` ({field:
  {part: tree}}, e.g. {"critic": {"params": ..., "spectral": ...}}); nothing
  else is read. A checkpoint from before the whole-state layout holds the
  generator alone."""
  item, target = _networks_target(workdir, step, like)
  legacy = item == "generator"
  with _read_only_manager(workdir, (item, "metadata")) as manager:
    try:
      check_shapes(manager, step, item, target, partial=True)
      restored = manager.restore(step, args=ocp.args.Composite(
          **{item: _restore_args(target, partial=True)}, metadata=ocp.args.JsonRestore()))
      tree = {"generator": restored[item]} if legacy else restored[item]
      if not legacy:
        for field in like:
          _verify(tree[field], restored.metadata.get("checksums"), prefix=f"{field}/")
    except CheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      others = [s for s in manager.all_steps() if s != step]
      raise DamagedCheckpointError(
          f"the {' and '.join(like)} of checkpoint {step} in {checkpoint_dir(workdir)} cannot "
          f"be read ({type(e).__name__}): it is damaged"
          + (f"; pass --step= one of {', '.join(map(str, sorted(others)))}" if others else "")
      ) from e
  return {field: tree[field] for field in like}
