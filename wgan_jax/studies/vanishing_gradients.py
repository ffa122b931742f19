"""Arjovsky & Bottou (2017), Figures 2 and 3: gradients a fixed generator gets.

The generator is fixed; a discriminator is trained from scratch against it,
and every few discriminator steps we measure the norm of the gradient, with
respect to the generator's parameters, of the generator's loss. As the
discriminator gets better, the minimax loss E log(1 - D(G(z))) gives a
gradient that decays towards 0; the -log D(G(z)) loss gives one that grows
and is noisy. A WGAN critic (weights clipped) trained the same way gives a
gradient of a stable size.

The generator maps 1-D noise into the plane, so its samples lie on a curve:
like a DCGAN's images on a low-dimensional manifold, its support meets the
data's in a set of measure zero, the condition of Arjovsky & Bottou's
theorems under which a perfect discriminator exists (with 2-D noise the
supports overlap and the minimax gradient stops decaying early). It is at
its initialisation, untrained.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wgan_jax import losses
from wgan_jax.data import toy
from wgan_jax.models.mlp import MLP
from wgan_jax.studies import critics, report

NAME = "vanishing_gradients"
DESCRIPTION = ("Arjovsky & Bottou 2017, Figs. 2-3: gradient norms a fixed generator gets as "
               "a discriminator trains: minimax vanishes, -log D grows, a WGAN critic's is stable")

CURVES = ("minimax", "non_saturating", "wgan")


@dataclasses.dataclass(frozen=True)
class Settings:
  dataset: str = "8gaussians"
  noise_dim: int = 1               # < the data's dimension: samples on a curve
  generator_features: int = 128   # generator: MLP, 3 hidden ReLU layers, at its initialisation
  critic_features: int = 128      # discriminator and critic: MLP, 3 hidden ReLU layers
  depth: int = 3
  steps: int = 3000               # discriminator (and critic) updates
  every: int = 25                 # gradient norms measured every `every` updates
  batch: int = 256
  probe_batch: int = 1024         # noise points of the measured gradient (fixed per seed)
  gan_lr: float = 1e-3            # Adam(lr, 0.5, 0.999) for the discriminator
  clip_lr: float = 5e-5           # PyTorch's RMSProp, then weights clipped to [-clip, clip]
  clip: float = 0.01
  seeds: int = 5                  # discriminator / critic seeds (the generator is the same)
  generator_seed: int = 0


FULL = Settings()
TINY = Settings(steps=300, every=20, seeds=2, generator_features=64, critic_features=64,
                probe_batch=256, gan_lr=2e-3, clip_lr=5e-4)


def _norms_per_seed(key: jax.Array, g_params, s: Settings) -> dict[str, jax.Array]:
  """One seed: trains a discriminator and a clipped critic from scratch against
  the fixed generator; returns the generator-gradient norms every `every` steps."""
  generator = MLP(s.generator_features, s.depth, (2,))
  net = MLP(s.critic_features, s.depth, ())
  sample_real = toy.get_toy_dataset(s.dataset).sample
  k_probe, k_d, k_c = jax.random.split(key, 3)
  z_probe = jax.random.normal(k_probe, (s.probe_batch, s.noise_dim))

  def grad_norm(loss_name, params):
    def loss(gp):
      f_fake = net.apply({"params": params}, generator.apply({"params": gp}, z_probe))
      return losses.generator_loss(loss_name, f_fake)
    return optax.tree.norm(jax.grad(loss)(g_params))

  def loss_fn(objective):
    def fn(p, k):
      k_real, k_z = jax.random.split(k)
      fake = generator.apply({"params": g_params},
                             jax.random.normal(k_z, (s.batch, s.noise_dim)))
      return critics.critic_loss(objective, lambda x: net.apply({"params": p}, x),
                                 sample_real(k_real, s.batch), fake, k)
    return fn

  out = {}
  for objective, tx, k, probe in (
      ("gan", critics.adam(s.gan_lr, 0.5, 0.999), k_d,
       lambda p: {"minimax": grad_norm("minimax", p),
                  "non_saturating": grad_norm("non-saturating", p),
                  "d_fake": jnp.mean(jax.nn.sigmoid(net.apply(
                      {"params": p}, generator.apply({"params": g_params}, z_probe))))}),
      ("wgan", critics.clipped_rmsprop(s.clip_lr, s.clip), k_c,
       lambda p: {"wgan": grad_norm("wasserstein", p)})):
    k_init, k_train = jax.random.split(k)
    params = net.init(k_init, jnp.zeros((1, 2)))["params"]
    if objective == "wgan":  # Clipped from the first measurement on, as the WGAN code clips.
      params = jax.tree.map(lambda w: jnp.clip(w, -s.clip, s.clip), params)
    _, records = critics.fit(loss_fn(objective), params, tx, k_train, s.steps, probe, s.every)
    out.update(records)
  return out


@functools.partial(jax.jit, static_argnums=0)
def _study(s: Settings, g_params, keys: jax.Array) -> dict[str, jax.Array]:
  return jax.vmap(lambda k: _norms_per_seed(k, g_params, s))(keys)


def _figure(s: Settings, steps: np.ndarray, records: dict[str, np.ndarray]):
  fig, ax = report.subplots(figsize=(7.5, 4.8))
  for key, label, color in (("minimax", "minimax: E log(1 − D(G(z)))", "tab:red"),
                            ("non_saturating", "−E log D(G(z))", "tab:orange"),
                            ("wgan", "WGAN critic (clipped): −E f(G(z))", "tab:blue")):
    per_seed = records[key]
    for row in per_seed:
      ax.semilogy(steps, row, color=color, alpha=0.25, lw=0.7)
    ax.semilogy(steps, np.exp(np.mean(np.log(per_seed), axis=0)), color=color, lw=2,
                label=f"{label} (geometric mean of {len(per_seed)} seeds)")
  ax.set_xlabel("discriminator / critic updates (from scratch; generator fixed)")
  ax.set_ylabel("‖∇θ generator loss‖")
  ax.set_title(f"Gradients a fixed generator receives ({s.dataset})")
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def run(out_dir: str, tiny: bool = False) -> dict:
  """Trains the discriminators and critics, writes vanishing_gradients.png / .json."""
  s = TINY if tiny else FULL
  generator = MLP(s.generator_features, s.depth, (2,))
  g_params = generator.init(jax.random.PRNGKey(s.generator_seed),
                            jnp.zeros((1, s.noise_dim)))["params"]
  keys = jax.random.split(jax.random.PRNGKey(s.generator_seed + 1), s.seeds)
  records = {k: np.asarray(v, np.float64) for k, v in _study(s, g_params, keys).items()}
  steps = np.arange(s.steps // s.every + 1) * s.every
  mean = {k: np.mean(records[k], axis=0) for k in (*CURVES, "d_fake")}
  late = mean["wgan"][len(steps) // 2:]
  content = {
      "steps": steps,
      "mean": mean,
      "per_seed": {k: records[k] for k in (*CURVES, "d_fake")},
      "summary": {
          **{f"{k}_{when}": float(mean[k][i]) for k in CURVES
             for when, i in (("start", 0), ("end", -1))},
          "minimax_peak": float(np.max(mean["minimax"])),
          "wgan_second_half_max_over_min": float(np.max(late) / np.min(late)),
      },
      "notes": ("Norms of the gradient of the generator's loss w.r.t. all generator "
                "parameters, on a fixed batch of probe_batch noise points per seed; 'mean' is "
                "the arithmetic mean over seeds (the figure draws the geometric mean); "
                "d_fake is the mean D(G(z)) on that batch. The generator is at its "
                "initialisation (seed generator_seed), the same for every seed."),
      "settings": {**dataclasses.asdict(s), "tiny": tiny},
  }
  return report.finish(out_dir, NAME, _figure(s, steps, records), content)
