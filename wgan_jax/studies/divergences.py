"""The posts' small facts, computed: the optimal discriminator, KL against JS,
and the four-pile earth mover's example (`../shared/seeds/000_*.txt`).

1. For a fixed generator the discriminator that maximises
   V(D) = E_r log D + E_g log(1 - D) is D* = p_r / (p_r + p_g), and
   V(D*) = 2 JS(p_r, p_g) - 2 log 2. Checked by quadrature on two 1-D Gaussians,
   and by a discriminator trained on samples (the GAN's minimax loss), which
   must come out as D* and reach V(D*) from below.
2. KL is asymmetric and unbounded, JS symmetric and at most log 2: N(0, 1)
   against N(mu, 2^2) as mu moves away, closed-form KL both ways, JS by quadrature.
3. P = (3, 2, 1, 4) and Q = (1, 2, 4, 3) shovelfuls on four piles a unit apart:
   the post's plan moves 2, 2, then 1 shovelful one pile each, W = 5; the same
   from the cumulative sums and from exact optimal transport of the 10 shovelfuls.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import losses
from wgan_jax.metrics.toy import exact_w1
from wgan_jax.studies import critics, report

NAME = "divergences"
DESCRIPTION = ("the posts' small facts: D* = p_r / (p_r + p_g) and V(D*) = 2 JS - 2 log 2, "
               "KL's asymmetry against JS, the four-pile earth mover's example (W = 5)")

# The optimal-discriminator pair: real N(-1, 1), generated N(1.5, 0.7^2).
REAL = (-1.0, 1.0)
GENERATED = (1.5, 0.7)
# The KL-against-JS pair: N(0, 1) against N(mu, Q_STD^2); unequal widths make KL asymmetric.
Q_STD = 2.0
# The post's piles (Lilian Weng, "From GAN to WGAN", Fig. 7).
PILES_P = (3, 2, 1, 4)
PILES_Q = (1, 2, 4, 3)


@dataclasses.dataclass(frozen=True)
class Settings:
  grid: int = 20_001            # quadrature points on [-12, 12]
  steps: int = 3000             # discriminator updates
  batch: int = 1024
  features: int = 64
  depth: int = 2
  lr: float = 1e-3              # Adam(lr, 0.5, 0.9)
  heldout: int = 200_000        # samples of each side for the trained D's V
  mus: int = 41                 # mu on [0, 8]
  seed: int = 0


FULL = Settings()
TINY = Settings(grid=8001, steps=1500, batch=512, heldout=50_000, mus=17)


def _log_normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
  return -0.5 * ((x - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))


def _normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
  return np.exp(_log_normal_pdf(x, mean, std))


def _kl_normal(p: tuple[float, float], q: tuple[float, float]) -> float:
  """KL(N(p) || N(q)) in closed form (mean, std pairs)."""
  (m1, s1), (m2, s2) = p, q
  return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5


def _kl_grid(p: np.ndarray, q: np.ndarray, dx: float) -> float:
  """KL(p || q) by the trapezoid rule on densities sampled on one grid."""
  integrand = np.where(p > 0, p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300))),
                       0.0)
  return float(np.trapezoid(integrand, dx=dx))


def _js_grid(p: np.ndarray, q: np.ndarray, dx: float) -> float:
  m = 0.5 * (p + q)
  return 0.5 * _kl_grid(p, m, dx) + 0.5 * _kl_grid(q, m, dx)


def _value(log_d: np.ndarray, log_1md: np.ndarray, p_r: np.ndarray, p_g: np.ndarray,
           dx: float) -> float:
  """V(D) = E_r log D + E_g log(1 - D), by quadrature, from log D and log(1 - D)
  (D* is 1 to float precision where p_g is negligible)."""
  return float(np.trapezoid(p_r * log_d + p_g * log_1md, dx=dx))


def _trained_discriminator(s: Settings):
  """A discriminator trained by the GAN's minimax loss on fresh samples of
  the two Gaussians; returns its probability D(x) as a function."""
  net = critics.mlp_critic(s.features, s.depth)
  k_init, k_train = jax.random.split(jax.random.PRNGKey(s.seed))
  params = net.init(k_init, jnp.zeros((1, 1)))["params"]

  def sample(key, mean_std, n):
    return mean_std[0] + mean_std[1] * jax.random.normal(key, (n, 1))

  def loss_fn(p, k):
    k_real, k_fake = jax.random.split(k)
    logits = net.apply({"params": p}, jnp.concatenate([sample(k_real, REAL, s.batch),
                                                        sample(k_fake, GENERATED, s.batch)]))
    return losses.critic_loss("minimax", logits[:s.batch], logits[s.batch:])

  params, _ = jax.jit(lambda p, k: critics.fit(loss_fn, p, critics.adam(s.lr), k, s.steps))(
      params, k_train)
  return lambda x: np.asarray(jax.nn.sigmoid(net.apply(
      {"params": params}, jnp.asarray(x, jnp.float32)[:, None])), np.float64)


def optimal_discriminator(s: Settings) -> dict[str, Any]:
  x = np.linspace(-12, 12, s.grid)
  dx = float(x[1] - x[0])
  p_r, p_g = _normal_pdf(x, *REAL), _normal_pdf(x, *GENERATED)
  d_star = p_r / (p_r + p_g)
  log_both = np.logaddexp(_log_normal_pdf(x, *REAL), _log_normal_pdf(x, *GENERATED))
  log_d_star = _log_normal_pdf(x, *REAL) - log_both
  log_1m_d_star = _log_normal_pdf(x, *GENERATED) - log_both
  js = _js_grid(p_r, p_g, dx)
  d_trained = _trained_discriminator(s)
  # Where the data are: the trained D is only asked where samples fall.
  bulk = (p_r + p_g) > 0.05 * np.max(p_r + p_g)
  rng = np.random.default_rng(s.seed)
  real = rng.normal(*REAL, size=s.heldout)
  fake = rng.normal(*GENERATED, size=s.heldout)
  d_real = np.clip(d_trained(real), 1e-12, 1 - 1e-12)
  d_fake = np.clip(d_trained(fake), 1e-12, 1 - 1e-12)
  # V of D*, on the same held-out samples: the trained D's V may only fall short of it.
  ds_real = _normal_pdf(real, *REAL) / (_normal_pdf(real, *REAL) + _normal_pdf(real, *GENERATED))
  ds_fake = _normal_pdf(fake, *REAL) / (_normal_pdf(fake, *REAL) + _normal_pdf(fake, *GENERATED))
  shown = slice(None, None, max(1, s.grid // 400))
  return {
      "x": x[shown], "d_star": d_star[shown], "d_trained": d_trained(x[shown]),
      "p_r": p_r[shown], "p_g": p_g[shown],
      "js": js, "value_at_d_star": _value(log_d_star, log_1m_d_star, p_r, p_g, dx),
      "two_js_minus_two_log_two": 2 * js - 2 * math.log(2),
      "value_at_half": _value(np.full_like(x, -math.log(2)), np.full_like(x, -math.log(2)), p_r,
                              p_g, dx),
      "d_trained_max_abs_error": float(np.max(np.abs(d_trained(x[bulk]) - d_star[bulk]))),
      "value_trained_samples": float(np.mean(np.log(d_real)) + np.mean(np.log1p(-d_fake))),
      "value_d_star_samples": float(np.mean(np.log(ds_real)) + np.mean(np.log1p(-ds_fake))),
  }


def kl_against_js(s: Settings) -> dict[str, Any]:
  x = np.linspace(-30, 40, 4 * s.grid)
  dx = float(x[1] - x[0])
  p = _normal_pdf(x, 0.0, 1.0)
  mus = np.linspace(0.0, 8.0, s.mus)
  out: dict[str, list[float]] = {"kl_pq": [], "kl_qp": [], "js_pq": [], "js_qp": []}
  for mu in mus:
    q = _normal_pdf(x, mu, Q_STD)
    out["kl_pq"].append(_kl_normal((0.0, 1.0), (mu, Q_STD)))
    out["kl_qp"].append(_kl_normal((mu, Q_STD), (0.0, 1.0)))
    out["js_pq"].append(_js_grid(p, q, dx))
    out["js_qp"].append(_js_grid(q, p, dx))
  return {"mu": mus, "q_std": Q_STD, **out}


def earth_mover(piles_p: tuple[int, ...] = PILES_P,
                piles_q: tuple[int, ...] = PILES_Q) -> dict[str, Any]:
  """W between two pile sequences a unit apart: the post's running plan
  (delta_{i+1} = delta_i + P_i - Q_i, W = sum |delta|), and exact OT of the shovelfuls."""
  p, q = np.asarray(piles_p), np.asarray(piles_q)
  if p.sum() != q.sum():
    raise ValueError(f"the piles hold {p.sum()} and {q.sum()} shovelfuls: W needs equal mass")
  carried = np.cumsum(p - q)  # Shovelfuls carried from pile i to pile i + 1.
  shovels_p = np.repeat(np.arange(len(p)), p).astype(np.float64)[:, None]
  shovels_q = np.repeat(np.arange(len(q)), q).astype(np.float64)[:, None]
  return {"p": p, "q": q, "carried": carried[:-1],
          "w_running_plan": int(np.abs(carried).sum()),
          "w_exact_ot": exact_w1(shovels_p, shovels_q) * int(p.sum())}


def _figure(opt: dict[str, Any], kl: dict[str, Any], emd: dict[str, Any]):
  fig, (ax_d, ax_kl, ax_emd) = report.subplots(1, 3, figsize=(16, 4.4))
  ax_d.plot(opt["x"], opt["p_r"], color="tab:blue", label="p_r = N(-1, 1)")
  ax_d.plot(opt["x"], opt["p_g"], color="tab:orange", label="p_g = N(1.5, 0.7²)")
  ax_d.plot(opt["x"], opt["d_star"], "k-", lw=2, label="D* = p_r / (p_r + p_g)")
  ax_d.plot(opt["x"], opt["d_trained"], "--", color="tab:red", label="D trained on samples")
  ax_d.set(xlim=(-5, 5), xlabel="x", title=(
      f"V(D*) = {opt['value_at_d_star']:.4f} = 2 JS − 2 log 2 "
      f"({opt['two_js_minus_two_log_two']:.4f})"))
  ax_d.title.set_fontsize(9)
  ax_d.legend(fontsize=8)
  ax_kl.plot(kl["mu"], kl["kl_pq"], color="tab:red", label="KL(p ‖ q)")
  ax_kl.plot(kl["mu"], kl["kl_qp"], color="tab:purple", label="KL(q ‖ p)")
  ax_kl.plot(kl["mu"], kl["js_pq"], color="tab:blue", lw=3, alpha=0.5, label="JS(p ‖ q)")
  ax_kl.plot(kl["mu"], kl["js_qp"], "k:", label="JS(q ‖ p)")
  ax_kl.axhline(math.log(2), color="gray", lw=0.8, ls="--", label="log 2")
  ax_kl.set(yscale="log", xlabel="μ", title=f"p = N(0, 1), q = N(μ, {kl['q_std']:g}²): "
            "KL is asymmetric and unbounded, JS symmetric and ≤ log 2")
  ax_kl.title.set_fontsize(9)
  ax_kl.legend(fontsize=8)
  piles = np.arange(len(emd["p"]))
  ax_emd.bar(piles - 0.2, emd["p"], width=0.4, label="P")
  ax_emd.bar(piles + 0.2, emd["q"], width=0.4, label="Q")
  for i, c in enumerate(emd["carried"]):
    if c:
      ax_emd.annotate(f"{abs(c)}", xy=(i + 0.5, max(emd["p"]) + 0.4), ha="center")
      ax_emd.annotate("", xy=(i + 1 if c > 0 else i, max(emd["p"]) + 0.2),
                      xytext=(i if c > 0 else i + 1, max(emd["p"]) + 0.2),
                      arrowprops={"arrowstyle": "->"})
  ax_emd.set(xticks=piles, xlabel="pile", ylabel="shovelfuls", ylim=(0, max(emd["p"]) + 1.2),
             title=f"earth mover's distance W = {emd['w_running_plan']} "
                   f"(exact OT: {emd['w_exact_ot']:g})")
  ax_emd.legend(fontsize=8, loc="upper left")
  fig.tight_layout()
  return fig


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  """Computes the three facts, writes divergences.png / .json, returns the JSON."""
  s = TINY if tiny else FULL
  opt, kl, emd = optimal_discriminator(s), kl_against_js(s), earth_mover()
  content = {
      "optimal_discriminator": opt, "kl_against_js": kl, "earth_mover": emd,
      "settings": {**dataclasses.asdict(s), "tiny": tiny, "real": REAL, "generated": GENERATED,
                   "discriminator": "minimax loss, MLP (ReLU), Adam(lr, 0.5, 0.9)"},
  }
  return report.finish(out_dir, NAME, _figure(opt, kl, emd), content)
