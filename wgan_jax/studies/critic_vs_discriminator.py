"""The WGAN paper's Figure 2: a saturated discriminator against a critic.

Real N(mu_r, s^2) and fake N(mu_f, s^2) in 1-D, far apart. A standard GAN
discriminator trained close to optimality is ~0 on the fakes, and the minimax
generator loss log(1 - D(x)) is flat there: the gradient a generator receives
vanishes. A WGAN critic (weights clipped, or with a gradient penalty) is close
to linear between the two: -f(x) hands every fake the same useful gradient.
The -log D(x) loss keeps a gradient, but only because D's logit keeps growing.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import losses
from wgan_jax.studies import critics, report

NAME = "critic_vs_discriminator"
DESCRIPTION = ("WGAN paper, Figure 2: a trained GAN discriminator saturates and its minimax "
               "gradient vanishes on the fakes; a WGAN critic stays linear")


@dataclasses.dataclass(frozen=True)
class Settings:
  real_mean: float = 2.0
  fake_mean: float = -2.0
  std: float = 0.5
  steps: int = 3000             # updates of each network, on fresh samples
  batch: int = 256
  features: int = 64
  depth: int = 2
  gan_lr: float = 1e-3          # Adam(lr, 0.5, 0.999) for the discriminator
  clip_lr: float = 5e-5         # PyTorch's RMSProp, then weights clipped to [-clip, clip]
  clip: float = 0.01
  gp_lr: float = 1e-3           # Adam(lr, 0.5, 0.9) for the WGAN-GP critic
  penalty_weight: float = 10.0
  grid_min: float = -5.0
  grid_max: float = 5.0
  grid_points: int = 401
  seed: int = 0


FULL = Settings()
# 400 steps left the GP critic bent between the means for 2 of 4 seeds; 800 is linear for all.
TINY = Settings(steps=800, grid_points=101)


def _train(s: Settings, key: jax.Array) -> dict:
  """Trains the three networks (one program); returns their params."""
  net = critics.mlp_critic(s.features, s.depth)
  setups = {"discriminator": ("gan", critics.adam(s.gan_lr, 0.5, 0.999)),
            "critic_clipped": ("wgan", critics.clipped_rmsprop(s.clip_lr, s.clip)),
            "critic_gp": ("wgan-gp", critics.adam(s.gp_lr))}
  trained = {}
  for i, (name, (objective, tx)) in enumerate(setups.items()):
    k_init, k_train = jax.random.split(jax.random.fold_in(key, i))
    params = net.init(k_init, jnp.zeros((1, 1)))["params"]

    def loss_fn(p, k, objective=objective):
      k_real, k_fake, k_gp = jax.random.split(k, 3)
      real = s.real_mean + s.std * jax.random.normal(k_real, (s.batch, 1))
      fake = s.fake_mean + s.std * jax.random.normal(k_fake, (s.batch, 1))
      return critics.critic_loss(objective, lambda x: net.apply({"params": p}, x), real, fake,
                                 k_gp, s.penalty_weight)

    trained[name], _ = critics.fit(loss_fn, params, tx, k_train, s.steps)
  return trained


def _evaluate(s: Settings, trained: dict, x: jax.Array) -> dict:
  """Values and generator-loss gradients d/dx at every point of `x` (shape [n])."""
  net = critics.mlp_critic(s.features, s.depth)

  def at(name):  # One point -> one-example batch of network outputs.
    return lambda xi: net.apply({"params": trained[name]}, xi.reshape(1, 1))

  def grad(loss):
    return jax.vmap(jax.grad(loss))(x)

  logit = at("discriminator")
  return {
      "d": jax.nn.sigmoid(jax.vmap(logit)(x)[:, 0]),
      "critic_clipped": jax.vmap(at("critic_clipped"))(x)[:, 0],
      "critic_gp": jax.vmap(at("critic_gp"))(x)[:, 0],
      # The generator's loss for a fake at x, differentiated in x.
      "grad_minimax": grad(lambda xi: losses.generator_loss("minimax", logit(xi))),
      "grad_non_saturating": grad(
          lambda xi: losses.generator_loss("non-saturating", logit(xi))),
      **{f"grad_{name}": grad(lambda xi, name=name: losses.generator_loss("wasserstein", at(name)(xi)))
         for name in ("critic_clipped", "critic_gp")},
  }


@functools.partial(jax.jit, static_argnums=0)
def _study(s: Settings, key: jax.Array, grid: jax.Array, means: jax.Array) -> tuple[dict, dict]:
  trained = _train(s, key)
  return _evaluate(s, trained, grid), _evaluate(s, trained, means)


def _figure(s: Settings, grid: np.ndarray, c: dict[str, np.ndarray], lipschitz: float):
  fig, (ax_v, ax_g) = report.subplots(1, 2, figsize=(12, 5.6))
  density = lambda m: np.exp(-0.5 * ((grid - m) / s.std) ** 2) / (s.std * np.sqrt(2 * np.pi))
  for ax in (ax_v, ax_g):
    ax.fill_between(grid, 0, density(s.real_mean) / density(s.real_mean).max(), color="tab:blue",
                    alpha=0.12, transform=ax.get_xaxis_transform(), label="real density")
    ax.fill_between(grid, 0, density(s.fake_mean) / density(s.fake_mean).max(), color="tab:green",
                    alpha=0.12, transform=ax.get_xaxis_transform(), label="fake density")
  ax_v.plot(grid, c["d"], color="tab:red", label="GAN discriminator D(x)")
  ax_v.set_ylim(-0.05, 1.05)
  ax_v.set_ylabel("D(x)")
  ax_c = ax_v.twinx()
  zero = np.argmin(np.abs(grid))
  ax_c.plot(grid, (c["critic_clipped"] - c["critic_clipped"][zero]) / lipschitz, color="tab:cyan",
            label="WGAN critic, clipped (shifted, ÷ its max slope)")
  ax_c.plot(grid, c["critic_gp"] - c["critic_gp"][zero], "--", color="tab:purple",
            label="WGAN-GP critic (shifted)")
  ax_c.set_ylabel("critic f(x), shifted to 0 at x = 0")
  lines = ax_v.get_legend_handles_labels()
  more = ax_c.get_legend_handles_labels()
  ax_v.legend(lines[0] + more[0], lines[1] + more[1], loc="upper center",
              bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
  ax_v.set_xlabel("x")
  ax_v.set_title("The discriminator saturates; the critic is ~linear")

  floor = 1e-30  # Log scale: a gradient that underflowed to 0 is drawn here.
  for key, label, style in (("grad_minimax", "minimax: log(1 − D(x))", "tab:red"),
                            ("grad_non_saturating", "−log D(x)", "tab:orange"),
                            ("grad_critic_gp", "WGAN-GP critic: −f(x)", "tab:purple")):
    ax_g.semilogy(grid, np.maximum(np.abs(c[key]), floor), color=style, label=label)
  ax_g.semilogy(grid, np.maximum(np.abs(c["grad_critic_clipped"]) / lipschitz, floor),
                color="tab:cyan", label="clipped critic: −f(x) ÷ its max slope")
  ax_g.set_xlabel("x")
  ax_g.set_ylabel("|d(generator loss)/dx|")
  ax_g.set_title("The gradient a fake at x receives")
  ax_g.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
  fig.tight_layout()
  return fig


def run(out_dir: str, tiny: bool = False) -> dict:
  """Trains the three networks, writes critic_vs_discriminator.png / .json, returns the JSON."""
  s = TINY if tiny else FULL
  grid = np.linspace(s.grid_min, s.grid_max, s.grid_points)
  curves, at_means = _study(s, jax.random.PRNGKey(s.seed), jnp.asarray(grid, jnp.float32),
                            jnp.asarray([s.fake_mean, s.real_mean], jnp.float32))
  curves = {k: np.asarray(v, np.float64) for k, v in curves.items()}
  at_fake = {k: float(v[0]) for k, v in at_means.items()}
  at_real = {k: float(v[1]) for k, v in at_means.items()}
  # A clipped critic is K-Lipschitz for some small K set by the clip: its
  # slope, divided by K (its largest |f'| on the grid), compares with the others'.
  lipschitz = float(np.max(np.abs(curves["grad_critic_clipped"])))
  critic_at_fake = abs(at_fake["grad_critic_clipped"]) / lipschitz
  content = {
      "grid": grid, **curves,
      "summary": {
          "d_at_fake_mean": at_fake["d"], "d_at_real_mean": at_real["d"],
          "grad_at_fake_mean": {k: abs(at_fake[k]) for k in at_fake if k.startswith("grad_")},
          "critic_clipped_max_slope": lipschitz,
          "grad_critic_clipped_at_fake_mean_normalized": critic_at_fake,
          "minimax_over_critic_gp_at_fake_mean":
              abs(at_fake["grad_minimax"]) / abs(at_fake["grad_critic_gp"]),
          "minimax_over_critic_clipped_normalized_at_fake_mean":
              abs(at_fake["grad_minimax"]) / critic_at_fake,
      },
      "notes": ("grad_* are d/dx of the generator's loss for a fake at x: minimax "
                "log(1 - D(x)), non-saturating -log D(x), and -f(x) for each critic, raw. "
                "The figure shifts the critics to 0 at x = 0 and divides the clipped critic "
                "(and its gradient) by its largest slope on the grid, for display only."),
      "settings": {**dataclasses.asdict(s), "tiny": tiny,
                   "networks": "MLP (ReLU), one per role; discriminator: cross-entropy, "
                               "Adam(gan_lr, 0.5, 0.999); clipped critic: RMSProp(clip_lr) "
                               "+ clip; GP critic: Adam(gp_lr, 0.5, 0.9), penalty_weight"},
  }
  return report.finish(out_dir, NAME, _figure(s, grid, curves, lipschitz), content)
