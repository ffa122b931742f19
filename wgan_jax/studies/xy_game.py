"""Gradient descent/ascent on min_x max_y x*y: why a GAN's updates may circle.

The game's only equilibrium is (0, 0). Simultaneous updates
  x <- x - eta*y,  y <- y + eta*x
multiply the radius by exactly sqrt(1 + eta^2) every step: the iterates spiral
out and never converge, however small eta. Alternating updates (y uses the new
x) keep Q = x^2 - eta*x*y + y^2 constant: a bounded ellipse around the
equilibrium, which they circle forever without reaching it either.
"""
from __future__ import annotations

import dataclasses
import math

from matplotlib import ticker
import numpy as np

from wgan_jax.studies import report

NAME = "xy_game"
DESCRIPTION = ("min_x max_y x*y by gradient descent/ascent: simultaneous updates spiral out "
               "by sqrt(1+eta^2) a step, alternating ones circle")


@dataclasses.dataclass(frozen=True)
class Settings:
  eta: float = 0.2
  steps: int = 100
  x0: float = 1.0
  y0: float = 1.0


FULL = Settings()
TINY = Settings(steps=30)


def simultaneous(s: Settings) -> tuple[np.ndarray, np.ndarray]:
  """Both players step from the same point: steps + 1 iterates (float64)."""
  x, y = np.empty(s.steps + 1), np.empty(s.steps + 1)
  x[0], y[0] = s.x0, s.y0
  for t in range(s.steps):
    x[t + 1] = x[t] - s.eta * y[t]
    y[t + 1] = y[t] + s.eta * x[t]
  return x, y


def alternating(s: Settings) -> tuple[np.ndarray, np.ndarray]:
  """x steps first, then y against the new x."""
  x, y = np.empty(s.steps + 1), np.empty(s.steps + 1)
  x[0], y[0] = s.x0, s.y0
  for t in range(s.steps):
    x[t + 1] = x[t] - s.eta * y[t]
    y[t + 1] = y[t] + s.eta * x[t + 1]
  return x, y


def _figure(s: Settings, sim: tuple[np.ndarray, np.ndarray], alt: tuple[np.ndarray, np.ndarray],
            r_sim: np.ndarray, r_alt: np.ndarray):
  fig, (ax_plane, ax_r) = report.subplots(1, 2, figsize=(11, 5.2))
  ax_plane.plot(*sim, ".-", ms=3, lw=0.8, color="tab:red", label="simultaneous")
  ax_plane.plot(*alt, ".-", ms=3, lw=0.8, color="tab:blue", label="alternating")
  ax_plane.plot([s.x0], [s.y0], "ko", ms=6, label=f"start ({s.x0:g}, {s.y0:g})")
  ax_plane.plot([0], [0], "*", color="gold", mec="black", ms=14, label="equilibrium (0, 0)")
  ax_plane.set_aspect("equal")
  ax_plane.set_xlabel("x (minimises x·y)")
  ax_plane.set_ylabel("y (maximises x·y)")
  ax_plane.set_title(f"Gradient descent/ascent on x·y, η = {s.eta:g}")
  ax_plane.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8)

  steps = np.arange(s.steps + 1)
  ax_r.semilogy(steps, r_sim, color="tab:red", label="simultaneous")
  ax_r.semilogy(steps, r_sim[0] * (1 + s.eta**2) ** (steps / 2), "k--", lw=0.8,
                label="r0·(1 + η²)^(t/2)")
  ax_r.semilogy(steps, r_alt, color="tab:blue", label="alternating")
  for axis in (ax_r.yaxis.set_major_formatter, ax_r.yaxis.set_minor_formatter):
    axis(ticker.FormatStrFormatter("%g"))
  ax_r.set_xlabel("step t")
  ax_r.set_ylabel("distance to the equilibrium")
  ax_r.set_title("Simultaneous updates spiral out; alternating ones circle")
  ax_r.legend(fontsize=8)
  fig.tight_layout()
  return fig


def run(out_dir: str, tiny: bool = False) -> dict:
  """Runs both update rules, writes xy_game.png / .json, returns the JSON."""
  s = TINY if tiny else FULL
  sim, alt = simultaneous(s), alternating(s)
  r_sim, r_alt = np.hypot(*sim), np.hypot(*alt)
  theory = math.sqrt(1 + s.eta**2)
  per_step = r_sim[1:] / r_sim[:-1]
  # Alternating updates conserve Q = x^2 - eta x y + y^2, so r^2 lies between
  # Q / (1 + eta/2) and Q / (1 - eta/2) (the extreme eigenvalues of Q's form).
  q = alt[0] ** 2 - s.eta * alt[0] * alt[1] + alt[1] ** 2
  content = {
      "simultaneous": {"x": sim[0], "y": sim[1], "radius": r_sim},
      "alternating": {"x": alt[0], "y": alt[1], "radius": r_alt},
      "growth_factor_theory": theory,
      "growth_factor_measured": float((r_sim[-1] / r_sim[0]) ** (1 / s.steps)),
      "growth_factor_max_abs_deviation": float(np.max(np.abs(per_step - theory))),
      "alternating_invariant_max_rel_drift": float(np.max(np.abs(q / q[0] - 1))),
      "alternating_radius_range": [float(r_alt.min()), float(r_alt.max())],
      "alternating_radius_bound": [math.sqrt(q[0] / (1 + s.eta / 2)),
                                   math.sqrt(q[0] / (1 - s.eta / 2))],
      "settings": {**dataclasses.asdict(s), "tiny": tiny},
  }
  return report.finish(out_dir, NAME, _figure(s, sim, alt, r_sim, r_alt), content)
