"""Arjovsky & Bottou (2017), Figures 2 and 3, with trained generators: what
a discriminator trained from scratch against a DCGAN does to its gradients.

A DCGAN is trained as a standard GAN (-log D, Adam 2e-4, one discriminator
step) on scikit-learn's digits at 16x16 by the real trainer, with a
checkpoint at every epoch. The generators after a few, more and many epochs
are then held fixed; against each, a fresh DCGAN discriminator is trained
from scratch (Adam 2e-4, b1 0.5), and every few updates we measure, on a
fixed batch of noise, the norm of the gradient with respect to the
generator's parameters of the minimax loss E log(1 - D(G(z))) and of
-E log D(G(z)), and the discriminator's accuracy on real digits and
samples. The paper's claim: the discriminator soon tells them apart, the
minimax gradient then decays by orders of magnitude (Figure 2), and the
-log D gradient grows and gets noisy (Figure 3).

`vanishing_gradients` is the same measurement with a generator at its
initialisation on a toy set; this is the paper's setting on images.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wgan_jax import builders, data, generators, losses, models, pixels, plots, updates
from wgan_jax.metrics import domain
from wgan_jax.studies import critics, report, training

NAME = "trained_generators"
DESCRIPTION = ("Arjovsky & Bottou 2017, Figs. 2-3 on digits: a discriminator trained from "
               "scratch against DCGANs after 1, 10, 25 epochs: minimax gradient vanishes, "
               "-log D grows")

EXPERIMENT = "digits_dcgan_gan_improved"
# The paper's plain standard GAN: its techniques off, batch norm in both networks, and a
# generator that draws at the image size and ends in tanh (against the digits
# experiments' 8x8 generator the minimax gradient decays more slowly: BUILD.md).
PLAIN = {"model.generator.norm": "batch", "techniques.minibatch_kernels": 0,
         "techniques.label_smoothing": 0.0, "model.generator.draw_size": 0,
         "model.generator.output_activation": "tanh"}
CURVES = ("minimax", "non_saturating")


@dataclasses.dataclass(frozen=True)
class Settings:
  epochs: tuple[int, ...] = (1, 10, 25)  # the generators measured, by training epochs
  width: int = 32                 # ngf = ndf
  batch: int = 64                 # the GAN's and the discriminators' batch
  d_steps: int = 4000             # discriminator updates against each fixed generator
  every: int = 50                 # gradients measured every `every` updates
  d_lr: float = 2e-4              # Adam(d_lr, 0.5, 0.999), as the DCGAN trains
  probe_batch: int = 256          # noise points of the measured gradient (fixed per seed)
  seeds: int = 3                  # discriminator seeds per generator
  eval_samples: int = 1000        # the trained generators' digit-classifier scores


FULL = Settings()
TINY = Settings(epochs=(1, 4), width=16, d_steps=400, every=40, probe_batch=128, seeds=2,
                eval_samples=200)


def _train_gan(out_dir: str, s: Settings, steps_per_epoch: int) -> training.History:
  overrides = {**PLAIN, "model.generator.ngf": s.width, "model.critic.ndf": s.width,
               "batch_size": s.batch, "num_generator_steps": max(s.epochs) * steps_per_epoch,
               "log_every": steps_per_epoch, "eval_every": max(s.epochs) * steps_per_epoch,
               "checkpoint_every": steps_per_epoch, "keep_checkpoints": max(s.epochs) + 1,
               "eval.num_samples": s.eval_samples}
  return training.train(training.make_config(EXPERIMENT, overrides),
                        training.run_dir(out_dir, NAME, "gan"))


def _real_digits(image_size: int) -> np.ndarray:
  """Every digit as the training pipeline feeds it: float32 in [-1, 1]."""
  pixels, _ = domain.load_labelled(domain.data_config("digits", image_size))
  return pixels.astype(np.float32) / 127.5 - 1.0


class _Measurement:
  """A fresh discriminator trained against one fixed generator, compiled once
  for every generator and seed (their arrays have the same shapes)."""

  def __init__(self, config, s: Settings, real: np.ndarray):
    self.s = s
    self.real = jnp.asarray(real)
    self.generator = models.build_generator(
        config.model.generator, data.data_shape(config.data),
        convolutions=builders.convolutions(config))
    self.discriminator = models.build_critic(
        config.model.critic, data.data_shape(config.data),
        convolutions=builders.convolutions(config))
    self.noise_dim = config.model.noise_dim
    self.tx = critics.adam(s.d_lr, 0.5, 0.999)

  def _fake(self, g, z):
    # Batch statistics in the generator, as the GAN trained and samples it.
    return updates.apply_net(self.generator, g.params, g.batch_stats, z, train=True)[0]

  def _logits(self, d_params, d_stats, x):
    return updates.apply_net(self.discriminator, d_params, d_stats, x, train=True)[0]

  @functools.partial(jax.jit, static_argnums=0)
  def init(self, key):
    variables = self.discriminator.init(key, self.real[:2], train=False)
    params = variables["params"]
    return params, variables.get("batch_stats", {}), self.tx.init(params)

  @functools.partial(jax.jit, static_argnums=0)
  def update(self, g, d, key):
    params, stats, opt_state = d
    k_real, k_z = jax.random.split(key)
    real = self.real[jax.random.randint(k_real, (self.s.batch,), 0, len(self.real))]
    fake = self._fake(g, jax.random.normal(k_z, (self.s.batch, self.noise_dim)))

    def loss(p):  # real and fake in batches of their own, as the DCGAN trains
      return losses.critic_loss("minimax", self._logits(p, stats, real),
                                self._logits(p, stats, fake))
    grads = jax.grad(loss)(params)
    step, opt_state = self.tx.update(grads, opt_state, params)
    return optax.apply_updates(params, step), stats, opt_state

  @functools.partial(jax.jit, static_argnums=0)
  def probe(self, g, d, z, real):
    params, stats, _ = d

    def norm(name):
      def loss(gp):
        fake = self._fake(g.replace(params=gp), z)
        return losses.generator_loss(name, self._logits(params, stats, fake))
      return optax.tree.norm(jax.grad(loss)(g.params))

    f_fake = self._logits(params, stats, self._fake(g, z))
    f_real = self._logits(params, stats, real)
    return {"minimax": norm("minimax"), "non_saturating": norm("non-saturating"),
            "d_fake": jnp.mean(jax.nn.sigmoid(f_fake)),
            "accuracy": 0.5 * (jnp.mean(f_real > 0) + jnp.mean(f_fake < 0))}

  def run(self, g, key) -> dict[str, np.ndarray]:
    """One seed: the discriminator's training and its probes, stacked."""
    k_init, k_probe, k_real, k_train = jax.random.split(key, 4)
    d = self.init(k_init)
    z = jax.random.normal(k_probe, (self.s.probe_batch, self.noise_dim))
    real = self.real[jax.random.permutation(k_real, len(self.real))[:self.s.probe_batch]]
    records = [self.probe(g, d, z, real)]
    for t, k in enumerate(jax.random.split(k_train, self.s.d_steps), start=1):
      d = self.update(g, d, k)
      if t % self.s.every == 0:
        records.append(self.probe(g, d, z, real))
    return {k: np.array([float(r[k]) for r in records]) for k in records[0]}


def _figure(s: Settings, steps: np.ndarray, by_epoch: dict[str, dict[str, Any]],
            grids: dict[str, np.ndarray]):
  fig = report.plt.figure(figsize=(13, 8.4))
  spec = fig.add_gridspec(2, len(s.epochs), height_ratios=(1.0, 1.25))
  for col, (label, grid) in enumerate(grids.items()):
    ax = fig.add_subplot(spec[0, col])
    ax.imshow(grid, interpolation="nearest")
    ax.set_title(f"generator after {label}: FD {by_epoch[label]['domain_fd']:.0f}", fontsize=9)
    ax.axis("off")
  colors = report.plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(s.epochs)))
  panels = (("minimax", "Figure 2: minimax, ‖∇θ E log(1 − D(G(z)))‖"),
            ("non_saturating", "Figure 3: −log D, ‖∇θ −E log D(G(z))‖"),
            ("accuracy", "the discriminator's accuracy (real and samples)"))
  thirds = spec[1, :].subgridspec(1, 3)
  for i, (key, title) in enumerate(panels):
    ax = fig.add_subplot(thirds[0, i])
    for color, (label, result) in zip(colors, by_epoch.items()):
      rows = np.asarray(result[key])
      for row in rows:
        ax.plot(steps, row, color=color, alpha=0.25, lw=0.7)
      mean = np.exp(np.mean(np.log(rows), axis=0)) if key != "accuracy" else rows.mean(axis=0)
      ax.plot(steps, mean, color=color, lw=2, label=label)
    if key != "accuracy":
      ax.set_yscale("log")
    ax.set(xlabel="discriminator updates (from scratch; generator fixed)", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  """Trains the GAN, then the discriminators against its generators; writes
  trained_generators.png / .json."""
  s = TINY if tiny else FULL
  real = _real_digits(16)
  steps_per_epoch = len(real) // s.batch
  history = _train_gan(out_dir, s, steps_per_epoch)
  config, workdir = history.config, training.run_dir(out_dir, NAME, "gan")
  measure = _Measurement(config, s, real)
  steps = np.arange(s.d_steps // s.every + 1) * s.every
  by_epoch: dict[str, dict[str, Any]] = {}
  grids: dict[str, np.ndarray] = {}
  for epochs in s.epochs:
    label = f"{epochs} epoch{'s' if epochs > 1 else ''}"
    module, g = generators.restore(config, workdir, epochs * steps_per_epoch)
    del module  # the same generator as `measure.generator`
    seeds = [measure.run(g, k) for k in jax.random.split(jax.random.PRNGKey(epochs), s.seeds)]
    records = {k: np.stack([r[k] for r in seeds]) for k in seeds[0]}
    samples = generators.generate(measure.generator, g, generators.noise(config, s.eval_samples, 0),
                                  config.sampling_batch_norm, config.batch_size)
    scores = domain.domain_metrics(pixels.to_uint8(samples))
    grids[label] = plots.image_grid(samples[:64])
    peak = records["minimax"].max(axis=1)
    by_epoch[label] = {
        "generator_step": epochs * steps_per_epoch, **records,
        "domain_fd": float(scores["domain_fd"]),
        "minimax_end_over_peak": (records["minimax"][:, -1] / peak).tolist(),
        "non_saturating_end_over_start": (records["non_saturating"][:, -1]
                                          / records["non_saturating"][:, 0]).tolist()}
  return report.finish(out_dir, NAME, _figure(s, steps, by_epoch, grids), {
      "data": "digits 16x16", "steps_per_epoch": steps_per_epoch,
      "gan": {"experiment": EXPERIMENT, "changes": PLAIN, "run": os.path.relpath(workdir, out_dir)},
      "steps": steps, "by_epoch": by_epoch, "settings": {**dataclasses.asdict(s), "tiny": tiny},
      "notes": ("Norms of the gradient w.r.t. all generator parameters on a fixed batch of "
                "probe_batch noise points per seed; rows are discriminator seeds; d_fake is "
                "the mean D(G(z)) on that batch; accuracy is the mean of the shares of real "
                "digits called real and samples called fake.")})

