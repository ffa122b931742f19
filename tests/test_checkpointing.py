"""Checkpoints hold the whole TrainState, whatever fields it has; they restore
into an abstract target in the run's shardings; the generator restores alone;
checkpoints of the earlier per-network layout still restore."""
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers import tiny_config
from tests.runs import final_state
from wgan_jax import builders, checkpointing
from wgan_jax.devices import Devices
from wgan_jax.state import PyTree, TrainState


def _setup(**overrides):
  config = tiny_config(**{"num_generator_steps": 4, **overrides})
  spec = builders.make_spec(config, (2,))
  state = builders.init_state(spec, (2,), config.seed)
  # A state that has trained a little: every field differs from a fresh one.
  state = state.replace(step=jnp.int32(3), rng=jax.random.fold_in(state.rng, 9),
                        critic=state.critic.replace(params=jax.tree.map(
                            lambda p: p + 0.5, state.critic.params)))
  return config, spec, state


def _leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def _assert_equal(a, b):
  la, lb = _leaves(a), _leaves(b)
  assert la.keys() == lb.keys()
  for k in la:
    np.testing.assert_array_equal(la[k], lb[k], err_msg=k)


def _save(workdir, state, config, positions=None):
  checkpointer = checkpointing.Checkpointer(str(workdir), 1, 3)
  checkpointer.save(state, config, positions, force=True)
  checkpointer.wait()
  checkpointer.close()


@flax.struct.dataclass
class StateWithMore(TrainState):
  """A state with one more field than today's."""
  more: PyTree = flax.struct.field(default_factory=dict)


def test_a_new_state_field_needs_no_change_in_checkpointing(tmp_path):
  config, spec, state = _setup()
  bigger = StateWithMore(**{f: getattr(state, f) for f in ("step", "rng", "generator", "critic")},
                         generator_ema={}, more=jax.tree.map(lambda p: p * 0.25,
                                                             state.generator.params))
  _save(tmp_path, bigger, config, [17])
  like = jax.eval_shape(lambda: bigger)
  checkpointer = checkpointing.Checkpointer(str(tmp_path), 1, 3)
  restored, metadata = checkpointer.restore(like)
  checkpointer.close()
  assert isinstance(restored, StateWithMore)
  _assert_equal(restored, bigger)
  assert metadata["data_position"] == [17] and metadata["step"] == 3
  # The resume tests compare every leaf of what is saved: the new field is among them.
  saved = final_state(str(tmp_path), 3)
  assert any(k.startswith("more/") for k in saved)
  assert {"step", "rng"} <= saved.keys()


def test_restore_lands_in_the_runs_shardings(tmp_path):
  config, spec, state = _setup(**{"model.critic.features": 64})
  _save(tmp_path, state, config)
  for devices in (Devices("jit"), Devices("jit", shard_state=True), Devices("pmap")):
    like = builders.abstract_state(spec, (2,), devices)
    checkpointer = checkpointing.Checkpointer(str(tmp_path), 1, 3)
    restored, _ = checkpointer.restore(like)
    checkpointer.close()
    _assert_equal(restored, state)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(like)):
      assert got.sharding == want.sharding
  kernel = restored.critic.params["Dense_1"]["kernel"]
  assert len(kernel.sharding.device_set) == 1  # pmap's global view: one device
  sharded = builders.abstract_state(spec, (2,), Devices("jit", shard_state=True))
  assert not sharded.critic.params["Dense_1"]["kernel"].sharding.is_fully_replicated


def test_generator_restores_alone(tmp_path):
  config, spec, state = _setup()
  _save(tmp_path, state, config)
  like = jax.eval_shape(lambda: state.generator)
  generator = checkpointing.restore_generator(str(tmp_path), 3, like)
  assert generator.opt_state is None
  _assert_equal((generator.params, generator.batch_stats),
                (state.generator.params, state.generator.batch_stats))


def _write_legacy_checkpoint(workdir, state, config):
  """The layout before whole-state checkpoints: one item per network, the step
  and RNG key in the JSON metadata."""
  items = checkpointing.LEGACY_ITEMS
  manager = ocp.CheckpointManager(
      checkpointing.checkpoint_dir(str(workdir)), item_names=items,
      options=ocp.CheckpointManagerOptions(create=True))
  net = lambda n: {"params": n.params, "batch_stats": n.batch_stats, "opt_state": n.opt_state}
  step = int(state.step)
  manager.save(step, args=ocp.args.Composite(
      generator=ocp.args.PyTreeSave(net(state.generator)),
      critic=ocp.args.PyTreeSave(net(state.critic)),
      metadata=ocp.args.JsonSave({"step": step, "rng": np.asarray(state.rng).tolist(),
                                  "data_position": [5], "config": config.to_dict()})))
  manager.wait_until_finished()
  manager.close()


def test_checkpoints_of_the_per_network_layout_still_restore(tmp_path):
  config, spec, state = _setup()
  _write_legacy_checkpoint(tmp_path, state, config)
  assert os.path.isdir(tmp_path / "checkpoints" / "3" / "generator")
  checkpointer = checkpointing.Checkpointer(str(tmp_path), 1, 3)
  restored, metadata = checkpointer.restore_intact(builders.abstract_state(spec, (2,),
                                                                           Devices("jit")))
  checkpointer.close()
  _assert_equal(restored, state)
  assert metadata["data_position"] == [5]
  generator = checkpointing.restore_generator(str(tmp_path), 3,
                                              jax.eval_shape(lambda: state.generator))
  _assert_equal(generator.params, state.generator.params)

  # A state with a field the old layout lacks: one line saying what to do.
  bigger = jax.eval_shape(lambda: state.replace(generator_ema={
      "params": state.generator.params, "batch_stats": state.generator.batch_stats}))
  checkpointer = checkpointing.Checkpointer(str(tmp_path), 1, 3)
  with pytest.raises(checkpointing.CheckpointError) as error:
    checkpointer.restore_intact(bigger)
  checkpointer.close()
  message = str(error.value)
  assert "\n" not in message
  assert message == (f"checkpoint 3 in {tmp_path}/checkpoints has the layout of wgan_jax "
                     "before whole-state checkpoints (items generator, critic, metadata) and "
                     "lacks generator_ema; resume it with the version that wrote it, or start "
                     "a new run in another workdir")
