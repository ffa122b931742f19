"""The critic as a yardstick: a fresh WGAN critic of a fixed architecture and
clip value, trained against a fixed generator, whose held-out value
E_real[f] - E_fake[f] estimates K * W1(P_r, P_g).

The critic is WGAN's: RMSProp, then the projection of every weight onto
[-c, c] (`optim.make_optimizer(..., clip=c)`), one update per step on a fresh
real batch and a fresh generated batch (`updates.critic_step` with the
Wasserstein loss). Its Lipschitz constant K depends on the architecture and on c, not
on the generator, so for a fixed critic config the estimate can rank
generators if K stays put from one generator to the next. On the toy sets,
where the exact W1 is known (`metrics.toy.exact_w1`), K = estimate / W1 says
whether it does (`k_stability_study`).

Every generator of a run is measured with the same critic seeds and the same
held-out samples (the same real points, the same latent points), so the
differences between checkpoints are not sampling noise of the protocol.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import stats

from wgan_jax import builders, checkpointing, data, generation, models, optim
from wgan_jax import plots  # noqa: F401  # pylint: disable=unused-import  # matplotlib on Agg: files only
from wgan_jax import terms, updates
from wgan_jax.metrics import toy as toy_metrics
from wgan_jax.configs.rules import at_least, check, choice, positive
from wgan_jax.state import NetState, PyTree

# (data, key, n) -> n samples. `data` is an argument of the compiled program.
Draw = Callable[[PyTree, jax.Array, int], jax.Array]

CRITICS = ("auto", "mlp", "dcgan")
CONFIDENCE = 0.95
# Critic updates written out per call where the critic is convolutional and
# the backend XLA:CPU: a strided convolution's weight gradient inside a loop
# body runs ~40x slower there (BUILD.md, "Unrolled critic updates on CPU").
UNROLLED_CHUNK = 8
# Rows per call when the trained critics score the held-out samples.
SCORE_CHUNK = 2048
# Folded into the yardstick's seed for the held-out samples.
_HELD_OUT_STREAM = 0x68656c64
# What the held-out samples depend on: critics that agree on these share them.
_SHARED = ("held_out", "real_pool", "seed")


@dataclasses.dataclass(frozen=True)
class YardstickConfig:
  """The yardstick critic and how it is trained and read.

  The defaults are the WGAN paper's critic training (RMSProp, c = 0.01) on the
  toy sets' MLP critic (3 x 512); on image data ("auto") the DCGAN critic
  without normalisation, so that f is one fixed function of each example.
  """
  critic: str = "auto"      # "mlp", "dcgan", or "auto": mlp on toy sets, dcgan on images
  features: int = 512       # mlp: units per hidden layer
  depth: int = 3            # mlp: hidden layers
  ndf: int = 64             # dcgan: channels of the first convolution
  norm: str = "none"        # dcgan: "none" | "layer" | "batch" (batch: scored with running stats)
  clip: float = 0.01        # c: every weight in [-c, c] after every update
  updates: int = 1000       # critic updates (one real and one generated batch each)
  # RMSProp's learning rate (PyTorch's, decay 0.99, eps 1e-8, constant) as a
  # fraction of c: the WGAN paper's 5e-5 at c = 0.01. The weights then cross
  # [-c, c] in the same number of updates (~2 / lr_over_clip) whatever c.
  lr_over_clip: float = 0.005
  batch_size: int = 128
  seeds: int = 5            # critics trained per generator; the interval is over them
  held_out: int = 2048      # real and generated samples the estimate (and W1) is read on
  real_pool: int = 10_000   # images: the real images the critic trains on, after the
                            # held-out ones (toy sets: fresh points every update)
  seed: int = 0

  def __post_init__(self):
    check(ml_collections.ConfigDict(dataclasses.asdict(self)), RULES, "yardstick.")
    # The architecture's keys by the model registry's rules, for each family it may be.
    for critic in ((self.critic,) if self.critic != "auto" else CRITICS[1:]):
      check(critic_section(self, critic), models.ARCHITECTURES[critic].critic_rules,
            "yardstick.")

  @property
  def lr(self) -> float:
    return self.lr_over_clip * self.clip

  def label(self) -> str:
    """The critic in a few words, e.g. "mlp 512x3 c=0.01"."""
    shape = (f"{self.features}x{self.depth}" if self.critic == "mlp"
             else f"ndf={self.ndf} norm={self.norm}" if self.critic == "dcgan"
             else f"{self.features}x{self.depth} | ndf={self.ndf}")
    return f"{self.critic} {shape} c={self.clip:g}"

  def describe(self) -> str:
    """How the numbers were made: goes next to them in every report."""
    return (f"{self.label()}; {self.updates} RMSProp updates (lr {self.lr:g}, batch "
            f"{self.batch_size}); {self.seeds} seeds, {CONFIDENCE:.0%} t-interval; "
            f"{self.held_out} held-out samples")


# The rules of the keys the model registry does not own (features, depth, ndf, norm).
RULES = {
    "critic": choice(*CRITICS),
    "clip": positive(why="the yardstick is WGAN's clipped critic"),
    "updates": at_least(1, 10_000_000), "lr_over_clip": positive(1.0),
    "batch_size": at_least(1, 1 << 16),
    "seeds": at_least(2, 1000, why="the interval is over seeds"),
    "held_out": at_least(2, data.EVAL_SAMPLES_MAX[data.TOY],
                         why=data.EVAL_SAMPLES_WHY[data.TOY]),
    "real_pool": at_least(1, 1 << 24), "seed": at_least(0, 2**31 - 1),
}


def resolve(yardstick: YardstickConfig, kind: str) -> YardstickConfig:
  """`yardstick` with "auto" replaced by the critic family of data of `kind`."""
  if yardstick.critic != "auto":
    return yardstick
  return dataclasses.replace(yardstick, critic="mlp" if kind == data.TOY else "dcgan")


def critic_section(yardstick: YardstickConfig, critic: str | None = None
                   ) -> ml_collections.ConfigDict:
  """The model registry's critic section for the yardstick's `critic`
  architecture (default: its own, resolved)."""
  critic = critic or yardstick.critic
  if critic == "mlp":
    return ml_collections.ConfigDict(dict(name="mlp", features=yardstick.features,
                                          depth=yardstick.depth, weight_init="lecun",
                                          norm="none"))
  if critic == "dcgan":
    return ml_collections.ConfigDict(dict(name="dcgan", ndf=yardstick.ndf, n_extra_layers=0,
                                          norm=yardstick.norm))
  raise ValueError(f"resolve {critic!r} first (`resolve(yardstick, kind)`)")


def critic_spec(yardstick: YardstickConfig, data_shape: tuple[int, ...],
                convolutions: str = "auto", dequantize: bool = False) -> updates.GanSpec:
  """What `updates.critic_step` needs to train the yardstick critic: the critic,
  WGAN's optimizer (RMSProp, then the clip), the Wasserstein loss. There is no
  generator to update: the generator fields stay empty."""
  opt = ml_collections.ConfigDict(dict(name="rmsprop", lr=yardstick.lr, schedule="constant",
                                       decay=0.99, eps=1e-8, b1=0.5, b2=0.9))
  return updates.GanSpec(
      generator=None, generator_tx=None, noise_dim=0,
      critic_terms=(terms.adversarial_critic("wasserstein"),), generator_terms=(),
      critic=models.build_critic(critic_section(yardstick), data_shape,
                                 convolutions=convolutions),
      critic_tx=optim.make_optimizer(opt, yardstick.updates, clip=yardstick.clip),
      clip=yardstick.clip, dequantize=dequantize)


# ----------------------------------------------------------------------------
# What the critic trains on.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
  """A distribution the critic trains on: `draw(data, key, n)` gives n
  samples. `data` (generator weights, an image pool) is an argument of the
  compiled program, not a constant in it, so one compilation serves every
  checkpoint; `draw` should compare equal from one generator to the next."""
  draw: Draw
  data: PyTree = None


@dataclasses.dataclass(frozen=True)
class GeneratorDraw:
  """Samples of a generator (`data`: its NetState) for fresh noise, batch norm
  as the run samples (`sampling_batch_norm`: "batch" = each batch's own statistics)."""
  module: nn.Module
  noise_dim: int
  batch_statistics: bool

  def __call__(self, generator: NetState, key: jax.Array, n: int) -> jax.Array:
    z = jax.random.normal(key, (n, self.noise_dim), jnp.float32)
    return updates.apply_net(self.module, generator.params, generator.batch_stats, z,
                               train=self.batch_statistics)[0]


@dataclasses.dataclass(frozen=True)
class ToyDraw:
  """Fresh points of a toy set (no `data`)."""
  name: str

  def __call__(self, unused_data: PyTree, key: jax.Array, n: int) -> jax.Array:
    from wgan_jax.data.toy import get_toy_dataset  # pylint: disable=import-outside-toplevel
    return get_toy_dataset(self.name).sample(key, n)


def pool_draw(pool: jax.Array, key: jax.Array, n: int) -> jax.Array:
  """n examples of `pool` ([N, ...], e.g. uint8 images), with replacement."""
  return pool[jax.random.randint(key, (n,), 0, pool.shape[0])]


# ----------------------------------------------------------------------------
# Training and reading the critic.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Program:
  init: Callable[[jax.Array], NetState]               # seed keys -> critics
  run: Callable[..., tuple[NetState, jax.Array]]      # a chunk of updates, all seeds
  score: Callable[[NetState, jax.Array], jax.Array]   # critics, x -> [seeds, n] values
  chunk: int


@functools.lru_cache(maxsize=16)
def _program(yardstick: YardstickConfig, data_shape: tuple[int, ...], real_draw: Draw,
             fake_draw: Draw, convolutions: str, dequantize: bool) -> _Program:
  """The compiled training and scoring of `yardstick`'s critics, all seeds at once
  (vmapped). Critic update i of a seed uses `fold_in(seed key, i)` for its real
  batch, its generated batch and its step, however the updates are chunked."""
  spec = critic_spec(yardstick, data_shape, convolutions, dequantize)
  unroll = yardstick.critic != "mlp" and jax.default_backend() == "cpu"
  chunk = math.gcd(yardstick.updates, UNROLLED_CHUNK) if unroll else yardstick.updates
  batch = yardstick.batch_size

  def init(key: jax.Array) -> NetState:
    x = jnp.zeros((2, *data_shape), jnp.float32)
    # builders' init: weights start inside [-c, c], as in a training run.
    return builders.init_net(spec.critic, spec.critic_tx, key, x, spec.clip)

  def run_one(critic: NetState, real_data, fake_data, key: jax.Array, first: jax.Array):
    def update(critic, i):
      k_real, k_fake, k_step = jax.random.split(jax.random.fold_in(key, i), 3)
      real = updates.real_to_float(spec, real_draw(real_data, k_real, batch), k_step)
      fake = fake_draw(fake_data, k_fake, batch)
      critic, metrics = updates.critic_step(spec, critic, real, fake, k_step)
      return critic, metrics["wasserstein_estimate"]
    return jax.lax.scan(update, critic, first + jnp.arange(chunk), unroll=unroll)

  def score_one(critic: NetState, x: jax.Array) -> jax.Array:
    return updates.critic_values(spec, critic, x)

  return _Program(
      init=jax.jit(jax.vmap(init)),
      run=jax.jit(jax.vmap(run_one, in_axes=(0, None, None, 0, None))),
      score=jax.jit(jax.vmap(score_one, in_axes=(0, None))),
      chunk=chunk)


def mean_interval(values: Sequence[float], level: float = CONFIDENCE) -> tuple[float, float]:
  """(mean, half-width of the Student-t interval at `level`) of `values`."""
  values = np.asarray(values, np.float64)
  n = len(values)
  if n < 2:
    return float(np.mean(values)), float("nan")
  half = stats.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n)
  return float(np.mean(values)), float(half)


@dataclasses.dataclass(frozen=True)
class Estimate:
  """The yardstick's reading, one value per seed."""
  per_seed: np.ndarray    # held-out E_real[f] - E_fake[f]
  train_last: np.ndarray  # the batch estimate averaged over the last tenth of the updates

  @property
  def mean(self) -> float:
    return mean_interval(self.per_seed)[0]

  @property
  def interval(self) -> float:
    """Half-width of the 95% t-interval over seeds."""
    return mean_interval(self.per_seed)[1]


def critic_estimate(real: Source, fake: Source, held_out_real: np.ndarray,
                    held_out_fake: np.ndarray, yardstick: YardstickConfig = YardstickConfig(),
                    convolutions: str = "auto", dequantize: bool = False) -> Estimate:
  """Trains `yardstick.seeds` fresh critics (seeded by `yardstick.seed`) on
  fresh batches of `real` and `fake`, then reads E_real[f] - E_fake[f] on the
  held-out samples (float, as the critic takes them: `updates.real_to_float`
  applied). `real` may draw uint8 images; `dequantize` is the run's rule for
  them. `yardstick.critic` must be resolved ("mlp" or "dcgan")."""
  held_out_real = jnp.asarray(held_out_real, jnp.float32)
  held_out_fake = jnp.asarray(held_out_fake, jnp.float32)
  data_shape = tuple(held_out_real.shape[1:])
  program = _program(yardstick, data_shape, real.draw, fake.draw, convolutions, dequantize)
  keys = jax.random.split(jax.random.PRNGKey(yardstick.seed), yardstick.seeds)
  k_init, k_run = jax.vmap(jax.random.split, out_axes=1)(keys)
  critics = program.init(k_init)
  trace = []
  for first in range(0, yardstick.updates, program.chunk):
    critics, estimates = program.run(critics, real.data, fake.data, k_run, first)
    trace.append(estimates)
  trace = np.concatenate([np.asarray(t) for t in trace], axis=1)

  def mean_value(x: jax.Array) -> np.ndarray:
    sums = sum(np.asarray(program.score(critics, x[i:i + SCORE_CHUNK]), np.float64).sum(1)
               for i in range(0, len(x), SCORE_CHUNK))
    return sums / len(x)

  per_seed = mean_value(held_out_real) - mean_value(held_out_fake)
  last = max(1, yardstick.updates // 10)
  return Estimate(per_seed=per_seed, train_last=trace[:, -last:].mean(axis=1))


# ----------------------------------------------------------------------------
# The checkpoints of a run.
# ----------------------------------------------------------------------------


def _real_images(config: ml_collections.ConfigDict, held_out: int, pool: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(held-out, training pool) uint8 images of the data set, disjoint: the
  first `held_out` of one pass over it in a fixed order, then up to `pool`
  more (fewer if the data set ends first)."""
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel  # TensorFlow
  batches, _ = images.evaluation_batches(config.data, held_out + pool,
                                         min(held_out + pool, 256), seed)
  read = np.concatenate(list(batches))
  if len(read) <= held_out:
    raise ValueError(f"{config.data.name} holds {len(read)} images: none left to train the "
                     f"critic on after {held_out} held out; lower the held-out count")
  return read[:held_out], read[held_out:]


class _Reference:
  """What every checkpoint of a run is measured against: the real source, the
  held-out real samples (as the critic takes them), the held-out noise and,
  on toy sets, the W1 floor (two independent real samples)."""

  def __init__(self, config: ml_collections.ConfigDict, yardstick: YardstickConfig):
    k_real, k_noise, k_floor, k_float = jax.random.split(
        jax.random.fold_in(jax.random.PRNGKey(yardstick.seed), _HELD_OUT_STREAM), 4)
    self.kind = data.get(config.data.name).kind
    self.convolutions = builders.convolutions(config)
    self.dequantize = bool(config.data.get("dequantize", False))
    self.noise = np.asarray(jax.random.normal(
        k_noise, (yardstick.held_out, config.model.noise_dim), jnp.float32))
    self.w1_floor = None
    if self.kind == data.TOY:
      draw = ToyDraw(config.data.name)
      self.real = Source(draw)
      self.held_out = np.asarray(draw(None, k_real, yardstick.held_out))
      self.w1_floor = toy_metrics.exact_w1(
          self.held_out, np.asarray(draw(None, k_floor, yardstick.held_out)))
    else:
      held_out, pool = _real_images(config, yardstick.held_out, yardstick.real_pool,
                                    yardstick.seed)
      self.real = Source(pool_draw, jnp.asarray(pool))
      spec = critic_spec(resolve(yardstick, self.kind), data.data_shape(config.data),
                         self.convolutions, self.dequantize)
      self.held_out = np.asarray(updates.real_to_float(spec, jnp.asarray(held_out), k_float))


def evaluate_critics(workdir: str, yardsticks: Sequence[YardstickConfig],
                     steps: Sequence[int] | None = None,
                     overrides: Sequence[tuple[str, str]] = (), model: int | None = None
                     ) -> list[list[dict[str, Any]]]:
  """`evaluate_checkpoints` for several critic configs at once (one list of rows
  each): every generator is restored, sampled and (toy) solved for W1 once.
  The configs must agree on `held_out`, `real_pool` and `seed`. `model`: which
  model of a sweep."""
  shared = {tuple(getattr(y, k) for k in _SHARED) for y in yardsticks}
  if len(shared) != 1:
    raise ValueError(f"the critic configs must agree on {', '.join(_SHARED)}; got {shared}")
  chosen = list(steps) if steps is not None else checkpointing.finished_steps(workdir)
  if not chosen:
    raise checkpointing.CheckpointError(
        f"no finished checkpoint in {checkpointing.checkpoint_dir(workdir)}; train first")
  rows: list[list[dict[str, Any]]] = [[] for _ in yardsticks]
  reference = None
  for step in chosen:
    found, config = generation.saved_config(workdir, step, overrides=overrides)
    if models.num_classes(config):
      raise ValueError(f"{workdir} holds a class-conditional generator; critic_w measures "
                       "unconditional ones: score it with --metrics=fid,kid,is,pr,domain")
    reference = reference or _Reference(config, yardsticks[0])
    module, generator = generation.restore(config, workdir, found, model)
    fake = generation.generate(module, generator, reference.noise, config.sampling_batch_norm,
                               config.batch_size)
    if not np.all(np.isfinite(fake)):
      raise ValueError(f"the generator of checkpoint {found} in {workdir} makes non-finite "
                       "samples; it cannot be measured")
    measured = {"workdir": workdir, "step": found, "data": config.data.name,
                **({} if model is None else {"model": model})}
    if reference.kind == data.TOY:
      measured.update(w1=toy_metrics.exact_w1(fake, reference.held_out),
                      w1_floor=reference.w1_floor)
    source = Source(GeneratorDraw(module, config.model.noise_dim,
                                  config.sampling_batch_norm == "batch"), generator)
    for yardstick, out in zip(yardsticks, rows):
      yardstick = resolve(yardstick, reference.kind)
      estimate = critic_estimate(reference.real, source, reference.held_out, fake, yardstick,
                                 reference.convolutions, reference.dequantize)
      mean, half = mean_interval(estimate.per_seed)
      row = {**measured, "critic": yardstick.label(), "protocol": yardstick.describe(),
             "estimate": mean, "estimate_ci": half,
             "estimates": [float(v) for v in estimate.per_seed],
             "train_estimate": float(np.mean(estimate.train_last))}
      if "w1" in row:
        row.update(k=mean / row["w1"], k_ci=half / row["w1"])
      out.append(row)
  return rows


def evaluate_checkpoints(workdir: str, steps: Sequence[int] | None = None,
                         yardstick: YardstickConfig = YardstickConfig(),
                         overrides: Sequence[tuple[str, str]] = (), model: int | None = None
                         ) -> list[dict[str, Any]]:
  """One row per finished checkpoint of `workdir` (or per step of `steps`),
  in that order: the yardstick's estimate of K * W1 (`estimate`: mean over
  seeds; `estimate_ci`: half-width of its 95% t-interval; `estimates`: per
  seed; `train_estimate`: the training batches' value at the end); on toy
  sets also the exact W1 between the held-out generated and real samples,
  its floor (two real samples), and K = estimate / W1 with its interval
  (`k`, `k_ci`). Each generator is restored alone from its checkpoint and
  built from the config saved there (plus `overrides`, as key, text); of a
  sweep, model `model`."""
  return evaluate_critics(workdir, [yardstick], steps, overrides, model)[0]


def format_table(results: Sequence[dict[str, Any]]) -> str:
  """One line per checkpoint: step, estimate ± CI and, on toy sets, W1 and
  K ± CI; headed by the protocol of each critic."""
  lines, protocol = [], None
  toy = any("w1" in r for r in results)
  header = f"{'step':>8}  {'estimate ± 95% CI':>24}"
  if toy:
    header += f"  {'exact W1':>9}  {'K = estimate / W1':>22}"
  for r in results:
    if r["protocol"] != protocol:
      protocol = r["protocol"]
      lines += ([""] if lines else []) + [f"{r['data']}: {protocol}", header]
    line = f"{r['step']:>8}  {_pm(r['estimate'], r['estimate_ci']):>24}"
    if "w1" in r:
      line += f"  {r['w1']:>9.4f}  {_pm(r['k'], r['k_ci']):>22}"
    lines.append(line)
  return "\n".join(lines)


def _pm(mean: float, half: float) -> str:
  return f"{mean:.4g} ± {half:.2g}"


# ----------------------------------------------------------------------------
# The study: is K the same for every generator?
# ----------------------------------------------------------------------------


def study_critics(features: Sequence[int] = (128, 512), depths: Sequence[int] = (2, 3),
                  clips: Sequence[float] = (0.005, 0.01, 0.05),
                  **common: Any) -> list[YardstickConfig]:
  """Every MLP critic of the grid, with the training settings in `common`."""
  return [YardstickConfig(critic="mlp", features=f, depth=d, clip=c, **common)
          for f in features for d in depths for c in clips]


# Up to this many points the Spearman p-value is exact (every permutation):
# scipy's t approximation says p = 0 for 4 points in the same order (exact: 1/12).
EXACT_SPEARMAN = 8


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
  """Spearman's rank correlation of x and y, and its two-sided p-value."""
  rho = float(stats.spearmanr(x, y)[0])
  n = len(x)
  if n > EXACT_SPEARMAN or not np.isfinite(rho):
    return rho, float(stats.spearmanr(x, y)[1])
  rx, ry = stats.rankdata(x), stats.rankdata(y)
  rx, ry = rx - rx.mean(), ry - ry.mean()
  permuted = ry[np.array(list(itertools.permutations(range(n))))]
  rhos = permuted @ rx / (np.linalg.norm(rx) * np.linalg.norm(ry))
  return rho, float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def k_stability(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
  """For toy rows of one critic config: the mean K, its coefficient of
  variation across the generators (std / mean, ddof 1), its range, and the
  Spearman rank correlation of the estimate with the exact W1 (p-value too)."""
  k = np.array([r["k"] for r in rows])
  rho, p = spearman([r["estimate"] for r in rows], [r["w1"] for r in rows])
  return {"generators": len(rows), "k_mean": float(k.mean()),
          "k_cv": float(k.std(ddof=1) / abs(k.mean())), "k_min": float(k.min()),
          "k_max": float(k.max()), "spearman": float(rho), "spearman_p": float(p)}


def k_stability_study(out_dir: str, workdirs: Sequence[str],
                      critics: Sequence[YardstickConfig] | None = None,
                      steps: Sequence[int] | None = None) -> str:
  """Estimates K at every checkpoint of the toy runs in `workdirs` (or at
  `steps` of each) for each critic config (default: `study_critics()`),
  writes `k_stability.json` (every row; per critic config `k_stability` over
  all generators, per data set and per run) and `k_stability.png` (the
  estimate and K / mean K against the exact W1) to `out_dir`, and returns
  the table: per checkpoint, then per critic config and group."""
  critics = [resolve(y, data.TOY) for y in (critics or study_critics())]
  os.makedirs(out_dir, exist_ok=True)
  by_critic: dict[str, list[dict[str, Any]]] = {y.label(): [] for y in critics}
  if len(by_critic) != len(critics):
    raise ValueError("two critic configs of the study have the same label; vary the critic "
                     "(architecture, width, depth, c) and keep the training settings common")
  for workdir in workdirs:
    for yardstick, rows in zip(critics, evaluate_critics(workdir, critics, steps)):
      if any("w1" not in r for r in rows):
        raise ValueError(f"{workdir} is not a toy run: the K study needs the exact W1")
      by_critic[yardstick.label()] += rows
  return write_study(out_dir, by_critic, [dataclasses.asdict(y) for y in critics])


def write_study(out_dir: str, by_critic: dict[str, list[dict[str, Any]]],
                critics: Sequence[dict[str, Any]] = ()) -> str:
  """The study's outputs from its rows (critic label -> toy rows): the JSON,
  the figure and the table. Re-run on a saved JSON's rows, it re-derives them
  without training a critic."""
  summary = {label: _groups(rows) for label, rows in by_critic.items()}
  with open(os.path.join(out_dir, "k_stability.json"), "w") as f:
    json.dump({"workdirs": list(dict.fromkeys(r["workdir"] for rows in by_critic.values()
                                              for r in rows)),
               "critics": list(critics), "summary": summary, "rows": by_critic}, f, indent=1)
  _k_figure(os.path.join(out_dir, "k_stability.png"), by_critic, summary)
  return _study_table(by_critic, summary)


def _groups(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
  """`k_stability` over all rows, over each data set's (K depends on the real
  distribution too, not only on the critic) and over each run's (the
  generators one run makes as it trains, which a yardstick is asked to order)."""
  out = {"all": k_stability(rows)}
  for key, name in (("data", lambda r: r["data"]),
                    ("workdir", lambda r: "run " + os.path.basename(r["workdir"].rstrip("/")))):
    groups = list(dict.fromkeys(r[key] for r in rows))
    if len(groups) > 1:
      out.update({name(mine[0]): k_stability(mine)
                  for mine in ([r for r in rows if r[key] == g] for g in groups)})
  return out


def _study_table(by_critic: dict[str, list[dict[str, Any]]],
                 summary: dict[str, dict[str, dict[str, float]]]) -> str:
  lines = []
  for rows in by_critic.values():
    for workdir in dict.fromkeys(r["workdir"] for r in rows):
      run = [r for r in rows if r["workdir"] == workdir]
      lines += ["", f"{workdir} (W1 floor {run[0]['w1_floor']:.4f}):", format_table(run)]
  lines += ["", f"{'critic':<20} {'generators of':<16} {'n':>3} {'mean K':>9} {'CV of K':>8} "
            f"{'K min .. max':>21} {'Spearman(estimate, W1)':>24}"]
  for label, groups in summary.items():
    for group, s in groups.items():
      lines.append(f"{label:<20} {group:<16} {s['generators']:>3} {s['k_mean']:>9.3g} "
                   f"{s['k_cv']:>8.3f} {s['k_min']:>9.3g} .. {s['k_max']:<9.3g} "
                   f"{s['spearman']:>+9.3f} (p={s['spearman_p']:.1g})")
  return "\n".join(lines[1:])


def _k_figure(path: str, by_critic: dict[str, list[dict[str, Any]]],
              summary: dict[str, dict[str, dict[str, float]]]) -> None:
  """Estimate and K / mean K against the exact W1: a colour per critic config,
  a marker per run (one line through its checkpoints), the W1 floors dotted."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6), dpi=100)
  data_of = {r["workdir"]: r["data"] for rows in by_critic.values() for r in rows}
  runs = list(data_of)
  markers = dict(zip(runs, "os^vDP*X"))
  for i, (label, rows) in enumerate(by_critic.items()):
    s, color = summary[label]["all"], f"C{i}"
    left.plot([], [], color=color, label=f"{label}: CV of K {s['k_cv']:.2f}, "
              f"Spearman {s['spearman']:+.2f}")
    for run in runs:
      mine = sorted((r for r in rows if r["workdir"] == run), key=lambda r: r["w1"])
      w1 = np.array([r["w1"] for r in mine])
      est = np.array([r["estimate"] for r in mine])
      ci = np.array([r["estimate_ci"] for r in mine])
      style = dict(marker=markers[run], ms=4, capsize=2, color=color, lw=1)
      left.errorbar(w1, est, yerr=ci, **style)
      right.errorbar(w1, est / w1 / s["k_mean"], yerr=ci / w1 / s["k_mean"], **style)
  for run in runs:
    right.plot([], [], markers[run], color="k", ls="",
               label=f"{os.path.basename(run.rstrip('/'))} ({data_of[run]})")
  for ax in (left, right):
    for floor in {r["w1_floor"] for rows in by_critic.values() for r in rows}:
      ax.axvline(floor, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("exact W1, held-out generated vs real (dotted: two real samples)")
  left.set_yscale("symlog", linthresh=1e-6)
  left.set_ylabel("critic's estimate of K·W1 (mean over seeds, 95% CI)")
  left.set_title("a fixed clipped critic's estimate against the exact W1")
  right.axhline(1.0, color="k", lw=0.8)
  right.set_ylabel("K / the critic's mean K")
  right.set_title("K = estimate / W1 (flat: the estimate is proportional to W1)")
  left.legend(fontsize=7, loc="upper left")
  right.legend(fontsize=8, loc="upper left")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)

