"""The training loop: config -> data -> state -> compiled iteration -> metrics.

`train_and_evaluate(config, workdir)` is the whole program behind
`python -m wgan_jax.train`; everything it calls is a pure function or a
small object with one job.
"""
from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable

from absl import logging
from clu import metric_writers, periodic_actions
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wgan_jax import checkpointing, models, optim, steps
from wgan_jax.data import toy
from wgan_jax.evaluation import ImageEvaluator, ToyEvaluator
from wgan_jax.state import NetState, TrainState


# Separates the data stream from the model's stream under one seed.
_DATA_STREAM = 0x64617461


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


def _build_data(config: ml_collections.ConfigDict, spec_for) -> tuple[steps.GanSpec, Feed, Any]:
  """The spec, the iteration and the evaluator for the config's data set."""
  if config.data.name in toy.TOY_DATASETS:
    dataset = toy.get_toy_dataset(config.data.name)
    spec = spec_for(dataset.shape)
    evaluator = ToyEvaluator(spec, dataset, config.eval_samples,
                             jax.random.PRNGKey(config.seed + 1))
    return spec, ToyFeed(spec, config.n_critic, dataset, config.batch_size), evaluator
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  shape = images.image_shape(config.data)
  spec = spec_for(shape)
  ds = images.build_image_dataset(config.data, config.batch_size, config.seed,
                                  jax.process_index(), jax.process_count())
  evaluator = ImageEvaluator(spec, shape, config.eval_samples,
                             jax.random.PRNGKey(config.seed + 1))
  return spec, HostFeed(spec, config.n_critic, images.numpy_batches(ds)), evaluator


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint if it
  has one; returns the final summary, also written to `workdir/summary.json`."""
  # --- Data, model, optimizer (first: missing data must not leave a workdir behind).
  spec, feed, evaluator = _build_data(config, lambda shape: make_spec(config, shape))
  data_shape = evaluator.data_shape
  os.makedirs(workdir, exist_ok=True)

  # --- State: fresh, or the latest checkpoint.
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every,
                                            config.keep_checkpoints)
  state = create_train_state(spec, data_shape, config.seed)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state)
    logging.info("resumed from %s at generator step %d",
                 checkpointing.checkpoint_dir(workdir), int(state.step))

  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(_flatten(config.to_dict()))
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json(indent=2))

  # --- Loop.
  total = config.num_generator_steps
  report_progress = periodic_actions.ReportProgress(num_train_steps=total, writer=writer)
  history: list[steps.Metrics] = []
  scalars: dict[str, float] = {}
  start = time.perf_counter()
  logging.info("training %s for %d generator iterations in %s", config.experiment, total,
               workdir)
  for step in range(int(state.step), total):
    n_critic = critic_updates(step, config.n_critic, config.critic_schedule)
    state, metrics = feed(state, n_critic)
    history.append(metrics)
    done = step + 1
    report_progress(done)
    if done % config.log_every == 0 or done == total:
      scalars = _summarize(history, done - len(history) + 1)
      history.clear()
      writer.write_scalars(done, {f"train/{k}": v for k, v in scalars.items()})
    if checkpointer.due(done):
      _host_metrics(history, done - len(history) + 1)  # Never save a non-finite state.
      checkpointer.save(state, config)
    if config.eval_every and done % config.eval_every == 0 and done != total:
      _eval_and_report(evaluator, state, workdir, f"{done:06d}", writer)

  # --- Final checkpoint and evaluation.
  checkpointer.save(state, config, force=True)
  summary: dict[str, Any] = dict(
      experiment=config.experiment, generator_steps=int(state.step),
      train_seconds=round(time.perf_counter() - start, 2),
      **{f"train_{k}": v for k, v in scalars.items()})
  summary.update(_eval_and_report(evaluator, state, workdir, "final", writer))
  checkpointer.wait()
  checkpointer.close()
  writer.flush()
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  logging.info("summary: %s", json.dumps(summary))
  return summary


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
