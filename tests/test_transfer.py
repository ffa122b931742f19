"""Starting a run from another run's networks (init_from), and FreezeD."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_config
from tests.runs import assert_bit_identical, final_state
from wgan_jax import builders, configs, loop, transfer
from wgan_jax.models import dcgan

SOURCE_STEPS = 300


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """A toy WGAN-GP run trained far enough that its generator is near the data."""
  workdir = str(tmp_path_factory.mktemp("source"))
  config = tiny_config(num_generator_steps=SOURCE_STEPS, log_every=100, eval_every=SOURCE_STEPS,
                       checkpoint_every=150, **{"optimizer.lr": 1e-3})
  summary = loop.train_and_evaluate(config, workdir)
  return workdir, summary


def _new_run(source_dir, **overrides):
  values = {"init_from": source_dir, "num_generator_steps": 10, "eval_every": 10,
            "log_every": 5, "checkpoint_every": 5, "seed": 7, **overrides}
  return tiny_config(**values)


def test_a_run_started_from_another_begins_where_it_ended_with_fresh_optimizers(source,
                                                                                tmp_path):
  source_dir, trained = source
  fresh = loop.train_and_evaluate(tiny_config(num_generator_steps=10, eval_every=10, seed=7),
                                  str(tmp_path / "fresh"))
  started = loop.train_and_evaluate(_new_run(source_dir), str(tmp_path / "tuned"))
  # Ten iterations from a trained run's networks: near its W1 (0.93 against 0.89
  # here); from scratch, far (1.16).
  assert abs(started["w1"] - trained["w1"]) < 0.1, (started["w1"], trained["w1"])
  assert fresh["w1"] > started["w1"] + 0.15, (fresh["w1"], started["w1"])

  # What was loaded: the networks of the source's newest step; the optimizer
  # states, the step and the moving average start as a new run's.
  config = _new_run(source_dir, num_generator_steps=0)
  spec = builders.make_spec(config, (2,))
  state = transfer.initial_state(config, builders.init_state(spec, (2,), 7))
  saved = final_state(source_dir, SOURCE_STEPS)
  for network in ("generator", "critic"):
    for path, leaf in jax.tree_util.tree_leaves_with_path(getattr(state, network).params):
      key = f"{network}/params/" + "/".join(k.key for k in path)
      np.testing.assert_array_equal(np.asarray(leaf), saved[key])
  assert int(state.step) == 0
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(state.critic.opt_state)
             if x.dtype == jnp.float32)
  # A step of the source other than its newest.
  older = transfer.initial_state(_new_run(f"{source_dir}:150", num_generator_steps=0),
                                 builders.init_state(spec, (2,), 7))
  assert not np.array_equal(np.asarray(older.generator.params["Dense_0"]["kernel"]),
                            np.asarray(state.generator.params["Dense_0"]["kernel"]))


def test_a_started_run_resumes_exactly_and_freezed_keeps_the_critics_first_layers(source,
                                                                                   tmp_path):
  source_dir, _ = source
  straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
  # A constant learning rate: a linear decay's slope depends on the run's length.
  settings = {"optimizer.schedule": "constant", "freeze_critic_layers": 2}
  loop.train_and_evaluate(_new_run(source_dir, **settings), straight)
  loop.train_and_evaluate(_new_run(source_dir, num_generator_steps=5, **settings), split)
  # The second segment restores its own step 5, not the source's networks.
  loop.train_and_evaluate(_new_run(source_dir, **settings), split)
  after = final_state(straight, 10)
  assert_bit_identical(after, final_state(split, 10))

  before = final_state(source_dir, SOURCE_STEPS)
  for layer, frozen in (("Dense_0", True), ("Dense_1", True), ("Dense_2", False)):
    key = f"critic/params/{layer}/kernel"
    assert np.array_equal(before[key], after[key]) == frozen, layer
  # The generator learns whatever the critic freezes.
  assert not np.array_equal(before["generator/params/Dense_0/kernel"],
                            after["generator/params/Dense_0/kernel"])


def test_layers_are_counted_from_the_input_in_the_order_the_critic_calls_them():
  critic = dcgan.DCGANCritic(16, ndf=4)
  order = transfer.layer_order(critic, jnp.zeros((2, 16, 16, 1)))
  # Pytrees sort keys (BatchNorm_0 before Conv_0); the forward pass does not.
  assert order[0] == "Conv_0" and order[1] == "Conv_1" and order.index("BatchNorm_0") > 1
  assert set(order) == set(jax.eval_shape(lambda: critic.init(
      jax.random.PRNGKey(0), jnp.zeros((2, 16, 16, 1)), train=False))["params"])


def test_bad_sources_and_settings_are_one_line(source, tmp_path):
  source_dir, _ = source
  cases = [
      (dict(init_from=str(tmp_path / "nowhere")),
       f"init_from={tmp_path / 'nowhere'}: no such directory"),
      (dict(init_from=f"{source_dir}:7"),
       f"init_from={source_dir}:7: {source_dir} has no checkpoint of step 7; it has 150, 300"),
      (dict(init_from=source_dir, **{"model.critic.features": 16}),
       f"init_from={source_dir}: the state saved at step 300 does not match the experiment: "
       "critic/params/Dense_0/bias has shape (32,) in the checkpoint but (16,) in the model; "
       "init_from needs a run of the same generator and critic architectures"),
      (dict(init_from=source_dir, freeze_critic_layers=3),
       "freeze_critic_layers=3: the critic has 3 layers (Dense_0, Dense_1, Dense_2); freeze "
       "fewer"),
  ]
  for overrides, message in cases:
    workdir = tmp_path / "bad"
    with pytest.raises(configs.ConfigError) as raised:
      loop.train_and_evaluate(tiny_config(num_generator_steps=2, **overrides), str(workdir))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value), raised.value
    assert not workdir.exists()  # Nothing is made for a run that cannot start.
  with pytest.raises(configs.ConfigError, match="init_from is not set"):
    tiny_config(freeze_critic_layers=1)
  with pytest.raises(configs.ConfigError, match="a sweep trains many"):
    tiny_config(init_from=source_dir, **{"sweep.seeds": 2})
