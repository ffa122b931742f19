"""The training loop: config -> data -> state -> compiled iteration -> metrics.

`train_and_evaluate(config, workdir)` is the whole program behind
`python -m wgan_jax.train`; everything it calls is a pure function or a
small object with one job.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any, Callable

from absl import logging
from clu import metric_writers, periodic_actions
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from wgan_jax import checkpointing, configs, models, optim, parallel, steps
from wgan_jax.data import toy
from wgan_jax.evaluation import ImageEvaluator, ToyEvaluator
from wgan_jax.feeds import Devices, Feed, HostFeed, ToyFeed
from wgan_jax.preemption import StopSignals
from wgan_jax.state import NetState, TrainState


# Folded into the RNG key for each restart after a non-finite value.
_RESTART_STREAM = 0x72657374
# With several processes, how often they agree on whether to stop (a signal).
_STOP_CHECK_EVERY = 10


class NonFiniteError(RuntimeError):
  """A loss or gradient became NaN or infinite."""


# ----------------------------------------------------------------------------
# Model, optimizer and state.
# ----------------------------------------------------------------------------


def make_spec(config: ml_collections.ConfigDict, data_shape: tuple[int, ...],
              axis_name: str | None = None) -> steps.GanSpec:
  """Modules, optimizers and objective of `config`; `axis_name`: the pmap axis
  the steps run under (None under jit)."""
  clip = config.clip if config.objective == "wgan" else None
  total = config.num_generator_steps
  critic_total = sum(critic_updates(s, config.n_critic, config.critic_schedule)
                     for s in range(total))
  return steps.GanSpec(
      generator=models.build_generator(config.model.generator, data_shape, axis_name=axis_name),
      critic=models.build_critic(config.model.critic, data_shape, axis_name=axis_name),
      generator_tx=optim.make_optimizer(config.optimizer, total),
      critic_tx=optim.make_optimizer(config.optimizer, critic_total, clip=clip),
      objective=config.objective,
      noise_dim=config.model.noise_dim,
      gp_weight=config.gp_weight,
      clip=clip,
      gan_generator_loss=config.gan_generator_loss,
      axis_name=axis_name)


def _init_net(module, tx, key: jax.Array, x: jax.Array, clip: float | None = None) -> NetState:
  variables = module.init(key, x, train=False)
  params = variables["params"]
  if clip is not None:
    # Start inside the feasible set, so weights lie in [-c, c] at every step.
    params = jax.tree.map(lambda p: jnp.clip(p, -clip, clip), params)
  return NetState(params=params, batch_stats=variables.get("batch_stats", {}),
                  opt_state=tx.init(params))


def create_train_state(spec: steps.GanSpec, data_shape: tuple[int, ...],
                       seed: int) -> TrainState:
  """Fresh generator and critic, initialised from `seed`."""
  k_gen, k_critic, k_train = jax.random.split(jax.random.PRNGKey(seed), 3)
  z = jnp.zeros((2, spec.noise_dim), jnp.float32)
  x = jnp.zeros((2, *data_shape), jnp.float32)
  return TrainState(
      step=jnp.zeros((), jnp.int32), rng=k_train,
      generator=_init_net(spec.generator, spec.generator_tx, k_gen, z),
      critic=_init_net(spec.critic, spec.critic_tx, k_critic, x, spec.clip))


# ----------------------------------------------------------------------------
# Critic schedule and the compiled iteration.
# ----------------------------------------------------------------------------


def critic_updates(step: int, n_critic: int, schedule: str) -> int:
  """Critic updates before generator update number `step` (0-based).

  "wgan_reference" is the WGAN code's rule: 100 for the first 25 generator
  iterations and every 500th one, so the critic is near optimal when it matters.
  """
  if schedule == "wgan_reference" and (step < 25 or step % 500 == 0):
    return 100
  return n_critic


# ----------------------------------------------------------------------------
# Metrics.
# ----------------------------------------------------------------------------


def _host_metrics(history: list[steps.Metrics], first_step: int) -> list[dict[str, float]]:
  """The interval's metrics on the host; stops at the first step with a
  non-finite value. `history[i]` holds generator step `first_step + i` (1-based)."""
  host = jax.device_get(history)  # One host transfer per log interval or checkpoint.
  for i, metrics in enumerate(host):
    bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
    if bad:
      raise NonFiniteError(f"non-finite {', '.join(bad)} at generator step {first_step + i}; "
                           "lower optimizer.lr or check the data")
  return host


def _summarize(history: list[steps.Metrics], first_step: int) -> dict[str, float]:
  """Means over a log interval (after the finiteness check)."""
  host = _host_metrics(history, first_step)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def _eval_and_report(evaluator, state: TrainState, workdir: str, tag: str,
                     writer: metric_writers.MetricWriter) -> dict[str, Any]:
  step = int(state.step)
  metrics, image = evaluator(state, workdir, tag)
  if metrics:
    writer.write_scalars(step, {f"eval/{k}": v for k, v in metrics.items()})
    logging.info("eval step %d: %s", step,
                 ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in metrics.items()))
  writer.write_images(step, {"samples": image[None]})
  return metrics


# ----------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------


def _build_data(config: ml_collections.ConfigDict, devices: Devices
                ) -> tuple[steps.GanSpec, Callable[[int], Feed], Any]:
  """The spec, a feed factory (data-stream position -> Feed) and the evaluator
  for the config's data set. Missing data fails here, before anything is written."""
  spec_for = lambda shape: make_spec(config, shape, devices.axis_name)
  # Evaluation runs outside pmap, on the global view of the state.
  eval_spec_for = lambda shape: make_spec(config, shape) if devices.pmap else spec_for(shape)
  key = jax.random.PRNGKey(config.seed + 1)
  if config.data.name in toy.TOY_DATASETS:
    dataset = toy.get_toy_dataset(config.data.name)
    spec = spec_for(dataset.shape)
    evaluator = ToyEvaluator(eval_spec_for(dataset.shape), dataset, config.eval_samples, key)
    return spec, lambda _: ToyFeed(spec, config.n_critic, dataset, config.batch_size,
                                   devices), evaluator
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  shape = images.image_shape(config.data)
  spec = spec_for(shape)
  index, count = jax.process_index(), jax.process_count()
  source = images.open_source(config.data, config.seed, index, count)
  batch = devices.process_batch(config.batch_size)  # This process's rows.

  def feed(position: int) -> Feed:
    ds = images.build_image_dataset(config.data, batch, config.seed, index, count,
                                    start=position, source=source)
    return HostFeed(spec, config.n_critic, images.Batches(ds, position), devices)

  evaluator = ImageEvaluator(eval_spec_for(shape), shape, config.eval_samples, key)
  return spec, feed, evaluator


def _data_positions(feed: Feed) -> list[int] | None:
  """Every process's data position (collective with several processes)."""
  position = feed.data_position()
  if position is None:
    return None
  if jax.process_count() == 1:
    return [position]
  return [int(p) for p in multihost_utils.process_allgather(np.int64(position))]


def _own_position(metadata: dict[str, Any] | None) -> int:
  """This process's data position in a checkpoint's metadata (0 for a fresh run)."""
  positions = (metadata or {}).get("data_position")
  if not positions:
    return 0
  if len(positions) != jax.process_count():
    logging.warning("the checkpoint was written by %d processes, this run has %d: each process "
                    "starts its data stream afresh, so the data order does not continue exactly",
                    len(positions), jax.process_count())
    return 0
  return positions[jax.process_index()]


def _restore(checkpointer: checkpointing.Checkpointer, fresh: TrainState
             ) -> tuple[TrainState, dict[str, Any] | None]:
  """The newest intact checkpoint (and its metadata), or `fresh` if there is none."""
  restored = checkpointer.restore_intact(fresh)
  if restored is None:
    return fresh, None
  state, metadata = restored
  logging.info("resumed from %s at generator step %d", checkpointer.directory, int(state.step))
  return state, metadata


class _Run:
  """What the loop carries: the state (laid out on the devices), the feed it is
  fed by, the metrics not yet logged."""

  def __init__(self, state: TrainState, feed: Feed):
    self.state, self.feed, self.step = feed.devices.put(state), feed, int(state.step)
    self.history: list[steps.Metrics] = []
    self.scalars: dict[str, float] = {}

  def view(self) -> TrainState:
    """The global view of the state, for checkpoints."""
    return self.feed.devices.get(self.state)

  def whole(self) -> TrainState:
    """The state with whole arrays on every device, for evaluation and checks."""
    return self.feed.devices.replicated(self.state)

  def first_unchecked(self) -> int:
    return self.step - len(self.history) + 1

  def check_finite(self) -> None:
    _host_metrics(self.history, self.first_unchecked())


def _train(config: ml_collections.ConfigDict, run: _Run,
           checkpointer: checkpointing.Checkpointer, evaluator, workdir: str,
           writer: metric_writers.MetricWriter, stop: StopSignals) -> str | None:
  """Generator iterations until the last one or a stop signal; returns the signal's name."""
  total = config.num_generator_steps
  report_progress = periodic_actions.ReportProgress(num_train_steps=total, writer=writer)
  for step in range(run.step, total):
    n_critic = critic_updates(step, config.n_critic, config.critic_schedule)
    run.state, metrics = run.feed(run.state, n_critic)
    run.history.append(metrics)
    done = run.step = step + 1
    report_progress(done)
    at_log = done % config.log_every == 0 or done == total
    if at_log:
      run.scalars = _summarize(run.history, run.first_unchecked())
      run.history.clear()
      writer.write_scalars(done, {f"train/{k}": v for k, v in run.scalars.items()})
    if checkpointer.due(done):
      _save(checkpointer, run, config)
    if config.eval_every and done % config.eval_every == 0 and done != total:
      _eval_and_report(evaluator, run.whole(), workdir, f"{done:06d}", writer)
    # Processes agree on stopping every few iterations: soon after a signal, cheaply.
    signal_name = stop.requested(synchronised=at_log or checkpointer.due(done) or
                                 done % _STOP_CHECK_EVERY == 0)
    if signal_name and done != total:
      return signal_name
  return None


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _save(checkpointer: checkpointing.Checkpointer, run: _Run,
          config: ml_collections.ConfigDict, force: bool = False) -> None:
  """Saves the run, never a non-finite one: the interval's metrics and the
  parameters the last update left are checked first."""
  run.check_finite()
  view = run.view()
  if not bool(_all_finite((view.generator.params, view.critic.params))):
    raise NonFiniteError(f"non-finite parameters after generator step {run.step}; "
                         "lower optimizer.lr or check the data")
  checkpointer.save(view, config, _data_positions(run.feed), force=force)


def _restore_after_nonfinite(error: NonFiniteError, checkpointer: checkpointing.Checkpointer,
                             fresh: TrainState, make_feed: Callable[[int], Feed],
                             attempt: int) -> _Run:
  """The last good checkpoint with a new RNG stream (config `nonfinite_restarts`)."""
  checkpointer.wait()
  restored = checkpointer.restore_intact(fresh)
  if restored is None:
    raise NonFiniteError(f"{error}; no checkpoint to restart from") from error
  state, metadata = restored
  # A different stream from here on: other noise, other interpolates.
  state = state.replace(rng=jax.random.fold_in(state.rng, _RESTART_STREAM + attempt))
  logging.warning("%s: restart %d from the checkpoint of step %d with a new RNG stream",
                  error, attempt, int(state.step))
  return _Run(state, make_feed(_own_position(metadata)))


@contextlib.contextmanager
def _finishing_saves_on_error(checkpointer: checkpointing.Checkpointer):
  """On the way out with an error, let the save in flight (of a good state) finish."""
  try:
    yield
  except BaseException:
    try:
      checkpointer.close()
    except Exception:  # pylint: disable=broad-except
      pass  # The error being raised says more than a second one from the same save.
    raise


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir`, resuming from its newest intact checkpoint.

  Returns the final summary (also written to `workdir/summary.json`), or, when
  stopped by SIGTERM / SIGINT, {"stopped_by", "generator_steps", "checkpoint"}
  after saving a checkpoint at the step it stopped at.
  """
  # --- Data, model, optimizer (first: missing data must not leave a workdir behind).
  if config.parallelism == "pmap" and jax.process_count() > 1:
    raise configs.ConfigError("parallelism='pmap' runs within one process; with several "
                              "processes use parallelism='jit' (the default)")
  devices = Devices(config.parallelism, shard_state=config.shard_state)
  try:
    parallel.check_batch_divisible(config.batch_size, devices.mesh)
  except ValueError as e:
    raise configs.ConfigError(str(e)) from e
  spec, make_feed, evaluator = _build_data(config, devices)
  os.makedirs(workdir, exist_ok=True)
  logging.info("%d devices (%s), %d processes; %d examples a batch on each device",
               devices.count, config.parallelism, jax.process_count(),
               config.batch_size // devices.count)

  # --- State: fresh, or the newest intact checkpoint, with the data where it stood.
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every,
                                            config.keep_checkpoints)
  # Laid out as checkpoints hold it (the global view), so restores land there directly.
  fresh = devices.get(devices.put(create_train_state(spec, evaluator.data_shape, config.seed)))
  state, metadata = _restore(checkpointer, fresh)
  run = _Run(state, make_feed(_own_position(metadata)))

  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(configs.flatten(config.to_dict()))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json(indent=2))

  # --- Loop; a non-finite value stops it, or restarts from the last good checkpoint.
  start = time.perf_counter()
  logging.info("training %s for %d generator iterations in %s", config.experiment,
               config.num_generator_steps, workdir)
  restarts = 0
  with StopSignals() as stop, _finishing_saves_on_error(checkpointer):
    while True:
      try:
        stopped_by = _train(config, run, checkpointer, evaluator, workdir, writer, stop)
        run.check_finite()
        break
      except NonFiniteError as e:
        if restarts >= config.nonfinite_restarts:
          raise
        restarts += 1
        run = _restore_after_nonfinite(e, checkpointer, fresh, make_feed, restarts)

    # --- Final (or preemption) checkpoint.
    _save(checkpointer, run, config, force=True)
    checkpointer.wait()
  step = run.step
  if stopped_by:
    checkpointer.close()
    writer.flush()
    return {"stopped_by": stopped_by, "generator_steps": step,
            "checkpoint": os.path.join(checkpointer.directory, str(step))}

  if jax.process_count() > 1:  # Replicas that drifted apart would be a silent bug.
    whole = run.whole()
    multihost_utils.assert_equal(
        jax.tree.map(lambda x: np.asarray(x.addressable_data(0)),
                     (whole.generator.params, whole.critic.params)),
        "the processes' parameters differ")

  # --- Final evaluation.
  summary: dict[str, Any] = dict(
      experiment=config.experiment, generator_steps=step,
      train_seconds=round(time.perf_counter() - start, 2), nonfinite_restarts=restarts,
      **{f"train_{k}": v for k, v in run.scalars.items()})
  summary.update(_eval_and_report(evaluator, run.whole(), workdir, "final", writer))
  checkpointer.close()
  writer.flush()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  logging.info("summary: %s", json.dumps(summary))
  return summary
