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

from wgan_jax import models, optim, steps
from wgan_jax.data import toy
from wgan_jax.evaluation import ToyEvaluator
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


def toy_iteration(spec: steps.GanSpec, sample: toy.Sampler, n_critic: int, batch: int,
                  state: TrainState) -> tuple[TrainState, steps.Metrics]:
  """One generator iteration with real batches drawn on device from `sample`."""
  key = jax.random.fold_in(jax.random.fold_in(state.rng, _DATA_STREAM), state.step)
  real = sample(key, n_critic * batch).reshape(n_critic, batch, -1)
  return steps.generator_iteration(spec, state, real)


def compile_iterations(spec: steps.GanSpec, sample: toy.Sampler, batch: int
                       ) -> Callable[[int], Callable]:
  """n_critic -> compiled iteration (one XLA program per distinct n_critic)."""

  @functools.cache
  def get(n_critic: int) -> Callable:
    fn = functools.partial(toy_iteration, spec, sample, n_critic, batch)
    return jax.jit(fn, donate_argnums=0)

  return get


# ----------------------------------------------------------------------------
# Metrics.
# ----------------------------------------------------------------------------


def _summarize(history: list[steps.Metrics], first_step: int) -> dict[str, float]:
  """Means over a log interval; stops at the first step with a non-finite value.

  `history[i]` holds the metrics of generator step `first_step + i` (1-based).
  """
  host = jax.device_get(history)  # One host transfer per log interval.
  for i, metrics in enumerate(host):
    bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
    if bad:
      raise NonFiniteError(f"non-finite {', '.join(bad)} at generator step {first_step + i}; "
                           "lower optimizer.lr or check the data")
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def _eval_and_report(evaluator: ToyEvaluator, state: TrainState, workdir: str, tag: str,
                     writer: metric_writers.MetricWriter) -> dict[str, float]:
  step = int(state.step)
  metrics, image = evaluator(state, workdir, tag)
  writer.write_scalars(step, {f"eval/{k}": v for k, v in metrics.items()})
  writer.write_images(step, {"toy": image[None]})
  logging.info("eval step %d: %s", step,
               ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in metrics.items()))
  return metrics


# ----------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir`; returns the final evaluation, also written
  to `workdir/summary.json`."""
  os.makedirs(workdir, exist_ok=True)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(_flatten(config.to_dict()))
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json(indent=2))

  # --- Data.
  dataset = toy.get_toy_dataset(config.data.name)

  # --- Model, optimizer, state.
  spec = make_spec(config, dataset.shape)
  state = create_train_state(spec, dataset.shape, config.seed)
  iteration = compile_iterations(spec, dataset.sample, config.batch_size)
  evaluator = ToyEvaluator(spec, dataset, config.eval_samples,
                           jax.random.PRNGKey(config.seed + 1))

  # --- Loop.
  total = config.num_generator_steps
  report_progress = periodic_actions.ReportProgress(num_train_steps=total, writer=writer)
  history: list[steps.Metrics] = []
  start = time.perf_counter()
  logging.info("training %s for %d generator iterations in %s", config.experiment, total,
               workdir)
  for step in range(int(state.step), total):
    n_critic = critic_updates(step, config.n_critic, config.critic_schedule)
    state, metrics = iteration(n_critic)(state)
    history.append(metrics)
    done = step + 1
    report_progress(done)
    if done % config.log_every == 0 or done == total:
      scalars = _summarize(history, done - len(history) + 1)
      history.clear()
      writer.write_scalars(done, {f"train/{k}": v for k, v in scalars.items()})
    if config.eval_every and done % config.eval_every == 0 and done != total:
      _eval_and_report(evaluator, state, workdir, f"{done:06d}", writer)

  # --- Final evaluation.
  summary: dict[str, Any] = dict(
      experiment=config.experiment, generator_steps=int(state.step),
      train_seconds=round(time.perf_counter() - start, 2))
  summary.update(_eval_and_report(evaluator, state, workdir, "final", writer))
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
