"""Figures written to the workdir: the toy figure of the WGAN-GP paper."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # Files only: training hosts have no display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def toy_figure(path: str, real: np.ndarray, fake: np.ndarray, grid_x: np.ndarray,
               grid_y: np.ndarray, critic_values: np.ndarray, title: str) -> np.ndarray:
  """Critic contours over the plane with real (orange) and generated (green)
  points, saved as PNG at `path`; returns the RGB image for TensorBoard."""
  fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
  contour = ax.contour(grid_x, grid_y, critic_values, levels=20, cmap="viridis")
  fig.colorbar(contour, ax=ax, fraction=0.046, pad=0.04, label="critic value")
  ax.scatter(real[:, 0], real[:, 1], s=3, c="tab:orange", marker="+", label="real")
  ax.scatter(fake[:, 0], fake[:, 1], s=3, c="tab:green", marker="+", label="generated")
  ax.set_xlim(grid_x.min(), grid_x.max())
  ax.set_ylim(grid_y.min(), grid_y.max())
  ax.set_aspect("equal")
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=2, markerscale=4)
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path)
  fig.canvas.draw()
  image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  plt.close(fig)
  return image
