"""Figures written to the workdir: the toy figure of the WGAN-GP paper."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # Files only: training hosts have no display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from wgan_jax.pixels import to_uint8  # pylint: disable=g-import-not-at-top


def toy_figure(path: str | None, real: np.ndarray, fake: np.ndarray, grid_x: np.ndarray,
               grid_y: np.ndarray, critic_values: np.ndarray, title: str) -> np.ndarray:
  """Critic contours over the plane with real (orange) and generated (green)
  points, saved as PNG at `path` (if given); returns the RGB image for TensorBoard."""
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
  if path:
    fig.savefig(path)
  fig.canvas.draw()
  image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  plt.close(fig)
  return image


def image_grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
  """[N, H, W, C] images in [-1, 1] -> one uint8 [rows*H, cols*W, 3] grid
  (1-pixel gaps), as the WGAN reference's `save_image` writes them."""
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  if c == 1:
    images = np.repeat(images, 3, axis=-1)
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / columns))
  pixels = to_uint8(images)
  grid = np.zeros((rows * (h + 1) + 1, columns * (w + 1) + 1, 3), np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = pixels[i]
  return grid


def save_png(path: str, image: np.ndarray) -> None:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.fromarray(image).save(path)


def points_figure(path: str, points: np.ndarray, title: str) -> None:
  """A scatter of 2-D samples, saved as PNG."""
  fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
  ax.scatter(points[:, 0], points[:, 1], s=3, c="tab:green", marker="+")
  ax.set_aspect("equal")
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
