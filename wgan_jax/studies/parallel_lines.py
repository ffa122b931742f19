"""The WGAN paper's Example 1: divergences between two parallel lines.

P0 is (0, U[0, 1]) and P_theta is (theta, U[0, 1]). Their supports are
disjoint unless theta = 0, so TV, KL and JS jump at 0 and are flat elsewhere:
they give a generator moving theta no gradient. W1 = |theta| is continuous and
its gradient points to 0. W1 is also estimated from samples (exact optimal
transport) and by WGAN-GP critics, one per theta, trained together as one
vmapped program.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import losses
from wgan_jax.metrics.toy import exact_w1
from wgan_jax.studies import critics, report

NAME = "parallel_lines"
DESCRIPTION = ("WGAN paper, Example 1: TV, KL, JS and W1 between (0, U[0,1]) and "
               "(theta, U[0,1]); only W1 is continuous in theta")


@dataclasses.dataclass(frozen=True)
class Settings:
  thetas_per_side: int = 20     # theta = k / thetas_per_side, k = -n..n (0 included)
  ot_samples: int = 500         # points of each distribution for exact OT
  critic_steps: int = 1000
  batch: int = 256
  features: int = 64
  depth: int = 2
  lr: float = 1e-3              # Adam(lr, 0.5, 0.9)
  penalty_weight: float = 10.0
  heldout: int = 10_000         # samples of each side for the critic's estimate
  seed: int = 0


FULL = Settings()
TINY = Settings(thetas_per_side=4, ot_samples=200, critic_steps=300, heldout=4000)


def _line(theta: jax.Array, key: jax.Array, n: int) -> jax.Array:
  """n points of (theta, U[0, 1])."""
  return jnp.stack([jnp.full((n,), theta), jax.random.uniform(key, (n,))], axis=1)


def _critic_estimate(theta: jax.Array, key: jax.Array, s: Settings) -> jax.Array:
  """E f(P0) - E f(P_theta) on held-out samples, f a WGAN-GP critic trained on
  fresh batches of the two lines."""
  critic = critics.mlp_critic(s.features, s.depth)
  k_init, k_train, k0, k1 = jax.random.split(key, 4)
  params = critic.init(k_init, jnp.zeros((1, 2)))["params"]

  def loss_fn(p, k):
    k_real, k_fake, k_gp = jax.random.split(k, 3)
    return critics.critic_loss("wgan-gp", lambda x: critic.apply({"params": p}, x),
                               _line(0.0, k_real, s.batch), _line(theta, k_fake, s.batch),
                               k_gp, s.penalty_weight)

  params, _ = critics.fit(loss_fn, params, critics.adam(s.lr), k_train, s.critic_steps)
  f = functools.partial(critic.apply, {"params": params})
  return losses.wasserstein_estimate(f(_line(0.0, k0, s.heldout)), f(_line(theta, k1, s.heldout)))


def closed_forms(theta: np.ndarray) -> dict[str, np.ndarray]:
  """TV, KL both ways, JS and W1 between P0 and P_theta, exactly."""
  apart = theta != 0
  return {"tv": np.where(apart, 1.0, 0.0),
          "kl": np.where(apart, math.inf, 0.0),
          "kl_reverse": np.where(apart, math.inf, 0.0),
          "js": np.where(apart, math.log(2), 0.0),
          "w1": np.abs(theta)}


def samples_w1(theta: np.ndarray, s: Settings) -> np.ndarray:
  """Exact W1 between `ot_samples` points of P0 and of P_theta (the same
  draws of U[0, 1] for every theta, so the curve is smooth in theta)."""
  rng = np.random.default_rng(s.seed)
  u0, u1 = rng.uniform(size=(2, s.ot_samples))
  p0 = np.stack([np.zeros_like(u0), u0], axis=1)
  return np.array([exact_w1(p0, np.stack([np.full_like(u1, t), u1], axis=1)) for t in theta])


def _figure(theta: np.ndarray, curves: dict[str, np.ndarray]):
  fig, (ax_div, ax_w1) = report.subplots(1, 2, figsize=(11, 4.2))
  ceiling = 1.6  # Where +inf is drawn.
  for key, label, color in (("js", "JS", "tab:blue"), ("tv", "TV", "tab:green"),
                            ("kl", "KL (both ways)", "tab:red")):
    # Every closed form here is one value off 0 and 0 at 0: drawn as such,
    # not as a line through the grid, which would hide the jump.
    off = curves[key][theta != 0][0]
    y = off if np.isfinite(off) else ceiling
    style = "-" if np.isfinite(off) else ":"
    ax_div.plot([theta[0], 0], [y, y], style, color=color, label=label)
    ax_div.plot([0, theta[-1]], [y, y], style, color=color)
    ax_div.plot([0], [y], "o", color=color, mfc="white", ms=6)
    ax_div.plot([0], [curves[key][theta == 0][0]], "o", color=color, ms=5)
  ax_div.plot(theta, curves["w1"], "-", color="black", lw=1, label="W1 = |θ|")
  ax_div.text(0.0, ceiling - 0.12, "KL = +∞ for every θ ≠ 0 (drawn at the top)",
              ha="center", fontsize=8, color="tab:red")
  ax_div.set_ylim(-0.05, ceiling + 0.1)
  ax_div.set_xlabel("θ")
  ax_div.set_title("TV, KL, JS jump at θ = 0 and are flat elsewhere")
  ax_div.legend(loc="lower right", fontsize=8)

  ax_w1.plot(theta, curves["w1"], "-", color="black", label="W1 = |θ| (exact)")
  ax_w1.plot(theta, curves["w1_samples"], "o", ms=4, mfc="none", color="tab:orange",
             label="W1 from samples (exact OT)")
  ax_w1.plot(theta, curves["critic"], "x", ms=5, color="tab:purple",
             label="WGAN-GP critic: E f(P0) − E f(Pθ)")
  ax_w1.set_xlabel("θ")
  ax_w1.set_title("W1 is continuous in θ, and a critic estimates it")
  ax_w1.legend(loc="upper center", fontsize=8)
  fig.tight_layout()
  return fig


def run(out_dir: str, tiny: bool = False) -> dict:
  """Computes every curve, writes parallel_lines.png / .json, returns the JSON."""
  s = TINY if tiny else FULL
  theta = np.arange(-s.thetas_per_side, s.thetas_per_side + 1) / s.thetas_per_side
  curves = closed_forms(theta)
  curves["w1_samples"] = samples_w1(theta, s)
  # One program: every theta's critic trained at once, all from the same key
  # (same initial weights and sample stream), so theta alone differs.
  estimate = jax.jit(jax.vmap(functools.partial(_critic_estimate, s=s), in_axes=(0, None)))
  curves["critic"] = np.asarray(estimate(jnp.asarray(theta, jnp.float32),
                                         jax.random.PRNGKey(s.seed)), np.float64)
  content = {
      "theta": theta, **curves,
      "null_means": report.POSITIVE_INFINITY,
      "summary": {
          "w1_samples_max_abs_error": float(np.max(np.abs(curves["w1_samples"] - curves["w1"]))),
          "critic_max_abs_error": float(np.max(np.abs(curves["critic"] - curves["w1"]))),
      },
      "settings": {**dataclasses.asdict(s), "tiny": tiny,
                   "critic": "WGAN-GP, MLP (ReLU), Adam(lr, 0.5, 0.9)"},
  }
  return report.finish(out_dir, NAME, _figure(theta, curves), content)
