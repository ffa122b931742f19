"""The training loop: config -> data -> state -> compiled iteration -> metrics.

`train_and_evaluate(config, workdir)` is the whole program behind
`python -m wgan_jax.train`; everything it calls is a pure function or a
small object with one job.
"""
from __future__ import annotations

import contextlib
import functools
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

from wgan_jax import checkpointing, configs, models, optim, steps
from wgan_jax.data import toy
from wgan_jax.evaluation import ImageEvaluator, ToyEvaluator
from wgan_jax.preemption import StopSignals
from wgan_jax.state import NetState, TrainState


# Separates the data stream from the model's stream under one seed.
_DATA_STREAM = 0x64617461
# Folded into the RNG key for each restart after a non-finite value.
_RESTART_STREAM = 0x72657374


class NonFiniteError(RuntimeError):
  """A loss or gradient became NaN or infinite."""


# ----------------------------------------------------------------------------
# Model, optimizer and state.
# ----------------------------------------------------------------------------


def make_spec(config: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> steps.GanSpec:
  clip = config.clip if config.objective == "wgan" else None
  total = config.num_generator_steps
  critic_total = sum(critic_updates(s, config.n_critic, config.critic_schedule)
                     for s in range(total))
  return steps.GanSpec(
      generator=models.build_generator(config.model.generator, data_shape),
      critic=models.build_critic(config.model.critic, data_shape),
      generator_tx=optim.make_optimizer(config.optimizer, total),
      critic_tx=optim.make_optimizer(config.optimizer, critic_total, clip=clip),
      objective=config.objective,
      noise_dim=config.model.noise_dim,
      gp_weight=config.gp_weight,
      clip=clip,
      gan_generator_loss=config.gan_generator_loss)


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


def unroll_critic_loop() -> bool:
  """Whether to write the critic updates out instead of looping (XLA:CPU only;
  see `steps.critic_updates`)."""
  return jax.default_backend() == "cpu"


class Feed:
  """Runs generator iterations on real data from one source.

  `__call__(state, n_critic)` does one whole iteration. Where the critic
  updates are unrolled (CPU), an unusually long one (the reference schedule's
  100) runs as chunks of `chunk` critic updates, each its own call, and then
  one program with the rest and the generator update: the numbers are the
  same as one long program, without compiling 100 unrolled updates. Logged
  critic metrics then cover the last chunk.
  """

  def __init__(self, spec: steps.GanSpec, chunk: int):
    self.spec, self.chunk, self.unroll = spec, chunk, unroll_critic_loop()

  def critic_only(self, state: TrainState, first: int, count: int, real) -> TrainState:
    raise NotImplementedError

  def iteration(self, state: TrainState, first: int, count: int, real):
    raise NotImplementedError

  def real_batches(self, n_critic: int):
    """The iteration's real data, or None where it is made inside the program."""
    return None

  def data_position(self) -> int | None:
    """Where this process's data stream stands, for the checkpoint (None: the
    data is a function of the step)."""
    return None

  def __call__(self, state: TrainState, n_critic: int) -> tuple[TrainState, steps.Metrics]:
    real = self.real_batches(n_critic)
    first = 0
    if self.unroll:
      while n_critic - first > self.chunk:
        state = self.critic_only(state, first, self.chunk,
                                 None if real is None else real[first:first + self.chunk])
        first += self.chunk
    return self.iteration(state, first, n_critic - first, None if real is None else real[first:])


class ToyFeed(Feed):
  """Real batches drawn on device, inside the compiled program."""

  def __init__(self, spec: steps.GanSpec, chunk: int, dataset: toy.ToyDataset, batch: int):
    super().__init__(spec, chunk)
    self.dataset, self.batch = dataset, batch
    self._critic_only = functools.cache(lambda count: jax.jit(
        functools.partial(self._toy, steps.critic_updates, count), donate_argnums=0))
    self._iteration = functools.cache(lambda count: jax.jit(
        functools.partial(self._toy, steps.generator_iteration, count), donate_argnums=0))

  def _toy(self, fn, count: int, state: TrainState, first: jax.Array):
    key = jax.random.fold_in(jax.random.fold_in(state.rng, _DATA_STREAM), state.step)
    real = steps.per_update(lambda k: self.dataset.sample(k, self.batch), key, first, count)
    return fn(self.spec, state, real, first, self.unroll)

  def critic_only(self, state, first, count, real):
    return self._critic_only(count)(state, first)[0]

  def iteration(self, state, first, count, real):
    return self._iteration(count)(state, first)


class HostFeed(Feed):
  """Real batches from a host iterator. Dispatch is asynchronous, so the next
  batches are read while the device still runs this iteration."""

  def __init__(self, spec: steps.GanSpec, chunk: int, batches):
    super().__init__(spec, chunk)
    self.batches = batches
    self._critic_only = jax.jit(functools.partial(steps.critic_updates, spec,
                                                  unroll=self.unroll), donate_argnums=0)
    self._iteration = jax.jit(functools.partial(steps.generator_iteration, spec,
                                                unroll=self.unroll), donate_argnums=0)

  def real_batches(self, n_critic: int) -> np.ndarray:
    return np.stack([next(self.batches) for _ in range(n_critic)])

  def data_position(self) -> int:
    return self.batches.position

  def critic_only(self, state, first, count, real):
    return self._critic_only(state, real, first)[0]

  def iteration(self, state, first, count, real):
    return self._iteration(state, real, first)


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


def _build_data(config: ml_collections.ConfigDict, spec_for
                ) -> tuple[steps.GanSpec, Callable[[int], Feed], Any]:
  """The spec, a feed factory (data-stream position -> Feed) and the evaluator
  for the config's data set. Missing data fails here, before anything is written."""
  if config.data.name in toy.TOY_DATASETS:
    dataset = toy.get_toy_dataset(config.data.name)
    spec = spec_for(dataset.shape)
    evaluator = ToyEvaluator(spec, dataset, config.eval_samples,
                             jax.random.PRNGKey(config.seed + 1))
    return spec, lambda _: ToyFeed(spec, config.n_critic, dataset, config.batch_size), evaluator
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  shape = images.image_shape(config.data)
  spec = spec_for(shape)
  index, count = jax.process_index(), jax.process_count()
  source = images.open_source(config.data, config.seed, index, count)

  def feed(position: int) -> Feed:
    ds = images.build_image_dataset(config.data, config.batch_size, config.seed, index, count,
                                    start=position, source=source)
    return HostFeed(spec, config.n_critic, images.Batches(ds, position))

  evaluator = ImageEvaluator(spec, shape, config.eval_samples,
                             jax.random.PRNGKey(config.seed + 1))
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
  """What the loop carries: the state, the feed it is fed by, the metrics not yet logged."""

  def __init__(self, state: TrainState, feed: Feed):
    self.state, self.feed = state, feed
    self.history: list[steps.Metrics] = []
    self.scalars: dict[str, float] = {}

  def first_unchecked(self) -> int:
    return int(self.state.step) - len(self.history) + 1

  def check_finite(self) -> None:
    _host_metrics(self.history, self.first_unchecked())


def _train(config: ml_collections.ConfigDict, run: _Run,
           checkpointer: checkpointing.Checkpointer, evaluator, workdir: str,
           writer: metric_writers.MetricWriter, stop: StopSignals) -> str | None:
  """Generator iterations until the last one or a stop signal; returns the signal's name."""
  total = config.num_generator_steps
  report_progress = periodic_actions.ReportProgress(num_train_steps=total, writer=writer)
  for step in range(int(run.state.step), total):
    n_critic = critic_updates(step, config.n_critic, config.critic_schedule)
    run.state, metrics = run.feed(run.state, n_critic)
    run.history.append(metrics)
    done = step + 1
    report_progress(done)
    at_log = done % config.log_every == 0 or done == total
    if at_log:
      run.scalars = _summarize(run.history, run.first_unchecked())
      run.history.clear()
      writer.write_scalars(done, {f"train/{k}": v for k, v in run.scalars.items()})
    if checkpointer.due(done):
      run.check_finite()  # Never save a non-finite state.
      checkpointer.save(run.state, config, _data_positions(run.feed))
    if config.eval_every and done % config.eval_every == 0 and done != total:
      _eval_and_report(evaluator, run.state, workdir, f"{done:06d}", writer)
    signal_name = stop.requested(synchronised=at_log or checkpointer.due(done))
    if signal_name and done != total:
      return signal_name
  return None


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
  spec, make_feed, evaluator = _build_data(config, lambda shape: make_spec(config, shape))
  os.makedirs(workdir, exist_ok=True)

  # --- State: fresh, or the newest intact checkpoint, with the data where it stood.
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every,
                                            config.keep_checkpoints)
  fresh = create_train_state(spec, evaluator.data_shape, config.seed)
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
    checkpointer.save(run.state, config, _data_positions(run.feed), force=True)
    checkpointer.wait()
  step = int(run.state.step)
  if stopped_by:
    checkpointer.close()
    writer.flush()
    return {"stopped_by": stopped_by, "generator_steps": step,
            "checkpoint": os.path.join(checkpointer.directory, str(step))}

  # --- Final evaluation.
  summary: dict[str, Any] = dict(
      experiment=config.experiment, generator_steps=step,
      train_seconds=round(time.perf_counter() - start, 2), nonfinite_restarts=restarts,
      **{f"train_{k}": v for k, v in run.scalars.items()})
  summary.update(_eval_and_report(evaluator, run.state, workdir, "final", writer))
  checkpointer.close()
  writer.flush()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  logging.info("summary: %s", json.dumps(summary))
  return summary
