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

A run's checkpoints measured by it, and that study: checkpoint_critics.py.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import stats

from wgan_jax import data, models, optim, terms, updates
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
    return updates.init_net(spec.critic, spec.critic_tx, key, x, spec.clip)

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
