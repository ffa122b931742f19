"""Figures written to the workdir: the toy figure of the WGAN-GP paper, image
grids and the scatter of 2-D samples."""
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
  # Fixed axes instead of tight_layout, and one render for the file and the array:
  # a sweep draws a figure per model at every evaluation, and this was most of a
  # toy study's time.
  fig = plt.figure(figsize=(6, 6), dpi=100)
  ax = fig.add_axes((0.08, 0.1, 0.76, 0.8))
  contour = ax.contour(grid_x, grid_y, critic_values, levels=20, cmap="viridis")
  fig.colorbar(contour, cax=fig.add_axes((0.86, 0.1, 0.025, 0.8)), label="critic value")
  ax.scatter(real[:, 0], real[:, 1], s=3, c="tab:orange", marker="+", label="real")
  ax.scatter(fake[:, 0], fake[:, 1], s=3, c="tab:green", marker="+", label="generated")
  ax.set_xlim(grid_x.min(), grid_x.max())
  ax.set_ylim(grid_y.min(), grid_y.max())
  ax.set_aspect("equal")
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=2, markerscale=4)
  ax.set_title(title)
  fig.canvas.draw()
  image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  plt.close(fig)
  if path:
    save_png(path, image)
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


# Grids of smaller images are enlarged to this side an image (nearest
# neighbour), so a 16x16 digit is not a smudge on a screen.
READABLE_SIDE = 64


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
  """[H, W, C] -> [factor*H, factor*W, C], every pixel a factor x factor block."""
  if factor < 1:
    raise ValueError(f"an upscale factor is a whole number >= 1, got {factor}")
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def readable_factor(side: int) -> int:
  """The upscale that brings images of `side` pixels to READABLE_SIDE or more."""
  return max(1, -(-READABLE_SIDE // side))


def readable_grid(images: np.ndarray, columns: int | None = None,
                  scale: int | None = None) -> np.ndarray:
  """`image_grid`, enlarged by `scale` (default: `readable_factor` of the images' side)."""
  return upscale(image_grid(images, columns), scale or readable_factor(min(images.shape[1:3])))


def save_png(path: str, image: np.ndarray) -> None:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.fromarray(image).save(path)


def there_and_back(steps: int) -> list[int]:
  """The frames of a loop along a path of `steps` points: 0..steps-1, back to 1."""
  return list(range(steps)) + list(range(steps - 2, 0, -1))


def save_gif(path: str, frames: list[np.ndarray], frame_ms: int = 120) -> None:
  """Uint8 [H, W, 3] frames as an animated GIF that loops forever."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  first, *rest = [Image.fromarray(f) for f in frames]
  first.save(path, save_all=True, append_images=rest, duration=frame_ms, loop=0)


def points_figure(path: str, points: np.ndarray, title: str) -> None:
  """A scatter of 2-D samples, saved as PNG."""
  fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
  ax.scatter(points[:, 0], points[:, 1], s=3, c="tab:green", marker="+")
  ax.set_aspect("equal")
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
