"""Data parallelism: one device, jit over an 8-device Mesh and pmap over 8
devices give the same numbers on the same global batch and seed.

Tolerance. The three runs do the same arithmetic in a different order (a
global mean is one reduction on one device, per-shard partial sums and an
all-reduce on eight), so float32 results differ by rounding. Measured max
|diff| after 3 generator iterations (parameters, batch statistics), mesh / pmap
against one device: DCGANs 3.4e-7 / 2.1e-7 (batch norm), 4e-9 / 6e-8 (layer
norm); toy MLPs 1.2e-5 / 6e-6 (WGAN-GP, Adam), 8e-7 / 3e-6 (WGAN, RMSProp);
metrics within 4e-6. Allowed: |a - b| <= atol + rtol |b| with (atol, rtol) =
(2e-6, 1e-5) for the DCGANs and (5e-5, 1e-4) for the toys; the worst weight
uses a quarter of that. The teeth tests show that a run without the
cross-device averaging or the global batch statistics misses by 2e-3 to 0.1,
and training itself moves the weights by 6e-3 to 0.6: a bug cannot hide in
the tolerance.

Why the toys need more: Adam and RMSProp divide each gradient by its own
running magnitude, so a weight whose exact gradient is zero (e.g. a unit dead
on every example) but which gets a rounding-level gradient (~1e-9, different
in each run) takes a full step (~lr; 10 lr for RMSProp's first step) of random
sign. With the default eps (1e-8) that moves a few toy-MLP weights by ~5e-4
in 3 iterations (measured), and the WGAN toy at clip 0.01, whose critic
separates real from fake by ~1e-7 at this stage, differs everywhere. The toy
cases therefore use eps 1e-6 (a rounding-level gradient then moves a weight
by < 1e-2 lr per update; what is left is the 1e-5 above) and clip 0.1: the
test measures the parallel arithmetic, not the optimizer's normalisation of
rounding noise. The DCGANs keep their experiments' optimizers.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers import tiny_config
from wgan_jax import (builders, cluster, configs, data, iteration, loop, models, multihost,
                      placement, updates)
from wgan_jax.data import toy
from wgan_jax.batch_axis import BatchAxis, local_slice
from wgan_jax.devices import Devices

# A broken run must miss by this many times the tolerance's atol.
TEETH = 50
ITERATIONS = 3
AXIS = placement.DATA_AXIS


def _toy_config(setup: str, **overrides):
  # n_critic 2: still several critic updates per program, one less to compile.
  return tiny_config(setup, n_critic=2, **{"optimizer.eps": 1e-6, **overrides})


def _image_config(experiment: str):
  c = configs.load(experiment)
  c.data.image_size = 16
  c.batch_size = 16
  c.n_critic = 1  # Compile time grows with the unrolled critic updates.
  c.n_critic_schedule = "constant"
  c.model.noise_dim = 8
  c.model.generator.ngf = 8
  c.model.critic.ndf = 8
  c.num_generator_steps = 10
  return c


TOY_TOL = dict(atol=5e-5, rtol=1e-4)
DCGAN_TOL = dict(atol=2e-6, rtol=1e-5)

# name: (config, shape of one example, tolerance)
CASES = {
    # WGAN-GP toy: MLPs, Adam; real data drawn in the program.
    "toy_wgan_gp": (lambda: _toy_config("wgan-gp"), (2,), TOY_TOL),
    # WGAN toy: weight clipping, RMSProp.
    "toy_wgan_clip": (lambda: _toy_config("wgan", clip=0.1), (2,), TOY_TOL),
    # The WGAN paper's DCGAN: batch norm in generator and critic, RMSProp,
    # clipping; real batches from the host.
    "dcgan_batch_norm": (lambda: _image_config("bedrooms_dcgan"), (16, 16, 3), DCGAN_TOL),
    # WGAN-GP's DCGAN: batch-norm generator, layer-norm critic, Adam.
    "dcgan_layer_norm_gp": (lambda: _image_config("digits_dcgan_gp"), (16, 16, 1), DCGAN_TOL),
}


def _spec(config, shape, axis_name=None, bn_axis_name=None) -> updates.GanSpec:
  """The production spec (`builders.make_spec`, batch norm over `bn_axis_name`)
  with the steps under `axis_name`: both None, or both the pmap axis, in a run;
  apart only in the teeth tests. The toy cases' Adam gets eps 1e-6."""
  spec = dataclasses.replace(builders.make_spec(config, shape, bn_axis_name),
                             batch_axis=BatchAxis(axis_name))
  if data.is_toy(config.data) and config.optimizer.critic.name == "adam":
    # Adam with eps 1e-6 (the config has no Adam eps): see the module doc.
    o = config.optimizer.critic
    tx = optax.adam(o.lr, b1=o.b1, b2=o.b2, eps=1e-6)
    spec = dataclasses.replace(spec, generator_tx=tx, critic_tx=tx)
  return spec


@functools.cache
def _setup(case: str):
  make, shape, _ = CASES[case]
  config = make()
  spec = _spec(config, shape)
  init = jax.jit(builders.init_state, static_argnums=(0, 1, 2))
  return config, shape, spec, init(spec, shape, config.seed)


def _host_batches(config, shape) -> list[np.ndarray | None]:
  """Each iteration's real batches [n_critic, batch, ...] as uint8 pixels, the way
  the input pipeline hands them over (None for toy data, drawn in the program)."""
  if data.is_toy(config.data):
    return [None] * ITERATIONS
  rng = np.random.default_rng(0)
  return [rng.integers(0, 256, (config.n_critic, config.batch_size, *shape), dtype=np.uint8)
          for _ in range(ITERATIONS)]


def _run(case: str, devices: Devices, spec: updates.GanSpec | None = None,
         replicas_agree: bool = True):
  """ITERATIONS generator iterations of the production iteration (`iteration.build`)
  over `devices`, from the shared initial state; the final state and the metrics."""
  config, shape, _, state = _setup(case)
  spec = spec or _spec(config, shape, devices.axis_name, devices.axis_name)
  sampler = (toy.get_toy_dataset(config.data.name).sample
             if data.is_toy(config.data) else None)
  run = iteration.build(config, spec, devices, sampler)
  laid = devices.put_state(jax.tree.map(jnp.copy, state))  # Iterations donate their input.
  history = []
  for real in _host_batches(config, shape):
    real = None if real is None else devices.put_batch(real)
    if real is not None and not devices.pmap and devices.count == 8:
      k, batch = real.shape[:2]
      assert [s.data.shape[:2] for s in real.addressable_shards] == [(k, batch // 8)] * 8
    laid, metrics = run(laid, config.n_critic, real)
    history.append(metrics)
  if devices.pmap and replicas_agree:  # Every device holds the same state, bit for bit.
    for leaf in jax.tree.leaves(laid):
      np.testing.assert_array_equal(leaf, np.broadcast_to(leaf[0], leaf.shape))
  if not devices.pmap:
    for leaf in jax.tree.leaves((laid, history)):
      assert leaf.sharding.is_fully_replicated
      assert len(leaf.sharding.device_set) == devices.count
  return jax.device_get((devices.global_view(laid), history))


@functools.cache
def _run_single(case: str):
  return _run(case, Devices.single())


def _nets(state):
  return {f"{net}.{part}": getattr(getattr(state, net), part)
          for net in ("generator", "critic") for part in ("params", "batch_stats")}


def _tree_diff(a, b) -> float:
  """Largest |a - b| over two trees of the same structure."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _max_diff(a, b) -> float:
  """Largest |a - b| over two runs' parameters, batch statistics and metrics."""
  (sa, ha), (sb, hb) = a, b
  return _tree_diff((_nets(sa), ha), (_nets(sb), hb))


def _assert_same(a, b, what: str, tol: dict[str, float]) -> None:
  (sa, ha), (sb, hb) = a, b
  for name, tree in _nets(sb).items():
    got = _nets(sa)[name]
    assert jax.tree.structure(got) == jax.tree.structure(tree)
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
      y = functools.reduce(lambda t, k: t[k.key], path, got)
      np.testing.assert_allclose(y, x, **tol,
                                 err_msg=f"{what}: {name}{jax.tree_util.keystr(path)}")
  for i, (mx, my) in enumerate(zip(hb, ha)):
    assert set(mx) == set(my)
    for k in mx:
      np.testing.assert_allclose(my[k], mx[k], **tol,
                                 err_msg=f"{what}: metric {k} of iteration {i}")


@pytest.mark.parametrize("case", [  # The DCGAN cases compile for long: CI's tier.
    pytest.param(c, marks=pytest.mark.slow) if c.startswith("dcgan") else c for c in CASES])
def test_one_device_mesh_and_pmap_agree(case):
  config, _, _, state = _setup(case)
  single = _run_single(case)
  mesh = _run(case, Devices("jit"))
  pmapped = _run(case, Devices("pmap"))
  tol = CASES[case][2]
  assert int(single[0].step) == ITERATIONS
  _assert_same(mesh, single, "mesh vs one device", tol)
  _assert_same(pmapped, single, "pmap vs one device", tol)
  # Training moved the weights far beyond the tolerance: agreement means something.
  assert _tree_diff(_nets(single[0]), _nets(jax.device_get(state))) > TEETH * tol["atol"]


def test_pmap_without_cross_device_averaging_differs():
  # Teeth: each device takes its shard of the data, but the spec has no
  # `axis_name` (local gradients and metrics, noise drawn for the shard alone):
  # far from one device.
  config, shape, _, _ = _setup("toy_wgan_clip")
  local = _run("toy_wgan_clip", Devices("pmap"), spec=_spec(config, shape),
               replicas_agree=False)
  assert _max_diff(local, _run_single("toy_wgan_clip")) > TEETH * TOY_TOL["atol"]


def _generate_pmap(spec, generator, noise):
  out, stats = jax.pmap(lambda g, z: updates.fake_batch(spec, g, z), axis_name=AXIS)(
      placement.pmap_replicate(generator), placement.split_for_pmap(noise))
  return np.asarray(out).reshape(noise.shape[0], *out.shape[2:]), placement.pmap_unreplicate(stats)


def test_batch_norm_statistics_are_those_of_the_global_batch_under_pmap():
  config, shape, spec, state = _setup("dcgan_batch_norm")
  noise = updates.sample_noise(spec, jax.random.PRNGKey(5), config.batch_size)
  fake, stats = jax.jit(lambda g, z: updates.fake_batch(spec, g, z))(state.generator, noise)
  global_fake, global_stats = _generate_pmap(_spec(config, shape, AXIS, AXIS),
                                             state.generator, noise)
  # Running averages after one step (momentum 0.9 from mean 0, var 1) move by
  # far more than the tolerance.
  assert _tree_diff(stats, state.generator.batch_stats) > TEETH * DCGAN_TOL["atol"]
  np.testing.assert_allclose(global_fake, fake, **DCGAN_TOL)
  for x, y in zip(jax.tree.leaves(global_stats), jax.tree.leaves(stats)):
    np.testing.assert_allclose(x, y, **DCGAN_TOL)
  # Teeth: per-device statistics (no axis name in the modules) differ.
  local_fake, local_stats = _generate_pmap(_spec(config, shape, AXIS, None),
                                           state.generator, noise)
  assert float(np.max(np.abs(local_fake - fake))) > TEETH * DCGAN_TOL["atol"]
  assert _tree_diff(local_stats, stats) > TEETH * DCGAN_TOL["atol"]


@pytest.mark.parametrize("experiment, shape", [("bedrooms_dcgan", (16, 16, 3)),
                                                ("cifar10_resnet_gp", (32, 32, 3)),
                                                ("toy_8gaussians", (2,))])
def test_axis_name_changes_no_parameter(experiment, shape):
  # A checkpoint written by a pmap run restores into a jit run and back.
  c = configs.load(experiment)
  for build, x in ((models.build_generator, jnp.zeros((2, c.model.noise_dim))),
                   (models.build_critic, jnp.zeros((2, *shape)))):
    section = c.model.generator if build is models.build_generator else c.model.critic
    plain, pmapped = (jax.eval_shape(functools.partial(build(section, shape, axis_name=a).init,
                                                       train=False), jax.random.PRNGKey(0), x)
                      for a in (None, AXIS))
    assert jax.tree.structure(plain) == jax.tree.structure(pmapped)
    assert jax.tree.leaves(plain) == jax.tree.leaves(pmapped)


def test_local_slice_takes_the_rows_split_for_pmap_gives_each_device():
  x = jnp.arange(3 * 16 * 2, dtype=jnp.float32).reshape(3, 16, 2)
  split = placement.split_for_pmap(np.asarray(x), axis=1)
  assert split.shape == (8, 3, 2, 2)
  sliced = jax.pmap(lambda _: local_slice(x, AXIS, axis=1), axis_name=AXIS)(jnp.arange(8))
  np.testing.assert_array_equal(sliced, split)
  np.testing.assert_array_equal(split[3], np.asarray(x)[:, 6:8])
  with pytest.raises(ValueError, match="does not split evenly over 8 devices"):
    placement.split_for_pmap(np.zeros((12, 2)))


def test_shardings_and_replication():
  mesh = placement.make_mesh()
  assert mesh.axis_names == (AXIS,) and mesh.size == jax.device_count() == 8
  assert placement.batch_sharding(mesh).spec == jax.sharding.PartitionSpec(AXIS)
  assert placement.batch_sharding(mesh, 1).spec == jax.sharding.PartitionSpec(None, AXIS)
  assert placement.process_batch_size(64, mesh) == 64  # One process reads all rows.
  batch = placement.global_batch_from_local(np.arange(32.0).reshape(16, 2), mesh)
  assert batch.shape == (16, 2) and not batch.sharding.is_fully_replicated
  assert [s.data.shape for s in batch.addressable_shards] == [(2, 2)] * 8
  state = placement.replicate({"w": np.ones((3, 3), np.float32)}, mesh)
  assert state["w"].sharding.is_fully_replicated and len(state["w"].sharding.device_set) == 8
  stacked = placement.pmap_replicate({"w": jnp.arange(3.0)})
  assert stacked["w"].shape == (8, 3) and len(stacked["w"].sharding.device_set) == 8
  np.testing.assert_array_equal(placement.pmap_unreplicate(stacked)["w"], [0.0, 1.0, 2.0])


def test_check_batch_divisible_rejects_12_on_8_devices():
  mesh = placement.make_mesh()
  placement.check_batch_divisible(16, mesh)
  with pytest.raises(ValueError) as error:
    placement.check_batch_divisible(12, mesh)
  message = str(error.value)
  assert "\n" not in message
  assert "batch_size=12" in message and "8 devices" in message
  assert "multiple of 8 (e.g. 8 or 16)" in message
  with pytest.raises(ValueError, match="batch_size=12"):
    placement.global_batch_from_local(np.zeros((12, 2), np.float32), mesh)


# --- Multi-host start-up (the real multi-process run is tested with the trainer).


@pytest.fixture
def fake_initialize(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: bool(calls))
  monkeypatch.setattr(cluster, "_tpu_chips_attached", lambda: False)
  for var in ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "MEGASCALE_COORDINATOR_ADDRESS",
              "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
    monkeypatch.delenv(var, raising=False)
  return calls


def test_initialize_distributed_does_nothing_for_a_plain_process(fake_initialize):
  multihost.initialize_distributed(None, None, None)
  assert fake_initialize == []


def test_initialize_distributed_passes_explicit_values_once(fake_initialize):
  multihost.initialize_distributed("localhost:1234", 2, 1)
  multihost.initialize_distributed("localhost:1234", 2, 1)  # Already initialized: no-op.
  # JAX's own deadline lies beyond the watchdog's (300 s), so the watchdog's one line fires.
  assert fake_initialize == [dict(coordinator_address="localhost:1234", num_processes=2,
                                  process_id=1, initialization_timeout=360,
                                  heartbeat_timeout_seconds=multihost.HEARTBEAT_TIMEOUT_S)]
  fake_initialize.clear()
  with pytest.raises(ValueError, match="give all of"):
    multihost.initialize_distributed("localhost:1234", None, None)
  assert fake_initialize == []


@pytest.mark.parametrize("env, launcher", [
    ({"TPU_WORKER_HOSTNAMES": "t1k-w-0,t1k-w-1"}, "tpu"),
    ({"MEGASCALE_COORDINATOR_ADDRESS": "10.0.0.2"}, "tpu"),
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2",
      "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, "slurm"),
    ({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:5000", "OMPI_COMM_WORLD_SIZE": "4"},
     "openmpi"),
])
def test_initialize_distributed_auto_detects_launchers(fake_initialize, monkeypatch, env,
                                                        launcher):
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  assert cluster.cluster_environment() == launcher
  multihost.initialize_distributed(None, None, None)
  # No addresses: JAX reads the environment.
  assert fake_initialize == [{"initialization_timeout": 360,
                              "heartbeat_timeout_seconds": multihost.HEARTBEAT_TIMEOUT_S}]


def test_single_task_slurm_job_is_a_plain_process(fake_initialize, monkeypatch):
  for k, v in {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1",
               "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}.items():
    monkeypatch.setenv(k, v)
  assert cluster.cluster_environment() is None
  multihost.initialize_distributed(None, None, None)
  assert fake_initialize == []


@pytest.mark.slow
def test_sharded_state_holds_a_slice_per_device_trains_alike_and_resumes(tmp_path):
  from tests.runs import final_state  # pylint: disable=import-outside-toplevel
  devices = Devices("jit", shard_state=True)
  # A smooth optimizer (RMSProp with eps 1 is ~SGD): Adam's first steps are lr * sign(g),
  # which turns rounding differences in near-zero gradients into 2 lr (measured 2e-3);
  # with this one sharded and replicated differ by 3e-8 after 4 iterations. Constant LR:
  # the same schedule in both legs of the resume.
  config = tiny_config(num_generator_steps=4, checkpoint_every=2, eval_every=0,
                       **{"optimizer.name": "rmsprop", "optimizer.eps": 1.0,
                          "optimizer.lr": 1e-2, "optimizer.schedule": "constant",
                          "model.critic.features": 64})  # [64, 64] kernels get split
  spec = builders.make_spec(config, (2,))
  state = builders.create_state(spec, (2,), config.seed, devices)  # Born sharded.
  kernel = state.critic.params["Dense_1"]["kernel"]  # [64, 64]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, AXIS) or \
      kernel.sharding.spec == jax.sharding.PartitionSpec(AXIS, None)
  assert {s.data.shape for s in kernel.addressable_shards} in ({(64, 8)}, {(8, 64)})
  # Small arrays stay whole: the step, the RNG key, biases, the [2, 64] input kernel.
  for small in (state.step, state.rng, state.critic.params["Dense_1"]["bias"],
                state.critic.params["Dense_0"]["kernel"]):
    assert small.sharding.is_fully_replicated
  nu = state.critic.opt_state[0].nu["Dense_1"]["kernel"]
  assert nu.sharding == kernel.sharding  # Optimizer states are split the same way.
  # Whole again for evaluation, by one program compiled once.
  whole = devices.gathered(state)
  assert whole.critic.params["Dense_1"]["kernel"].sharding.is_fully_replicated
  np.testing.assert_array_equal(whole.critic.params["Dense_1"]["kernel"], kernel)
  devices.gathered(state)
  assert devices._gather._cache_size() == 1  # pylint: disable=protected-access

  loop.train_and_evaluate(config, str(tmp_path / "replicated"))
  sharded = config.copy_and_resolve_references()
  sharded.shard_state = True
  loop.train_and_evaluate(sharded.copy_and_resolve_references(), str(tmp_path / "sharded"))
  # Also through a checkpoint: stop at 2, resume to 4.
  half = sharded.copy_and_resolve_references()
  half.num_generator_steps = 2
  loop.train_and_evaluate(half, str(tmp_path / "resumed"))
  loop.train_and_evaluate(sharded, str(tmp_path / "resumed"))

  reference = final_state(str(tmp_path / "replicated"), 4)
  for name in ("sharded", "resumed"):
    got = final_state(str(tmp_path / name), 4)
    for key in reference:
      np.testing.assert_allclose(got[key], reference[key], atol=1e-6, rtol=1e-5,
                                 err_msg=f"{name} {key}")
