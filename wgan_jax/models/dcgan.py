"""DCGAN generator and critic, as in the WGAN reference code (models/dcgan.py).

Generator: a 4x4 map of ngf * isize / 8 channels from the noise, then 4x4
stride-2 transposed convolutions halving the channels and doubling the size,
batch norm and ReLU, `n_extra_layers` 3x3 convolutions, a last transposed
convolution to the image channels and tanh (or a clip to [-1, 1],
`output_activation` "hardtanh"). With `draw_size` below the image size it draws
at that size (isize above is then draw_size) and enlarges bilinearly, as the
input pipeline enlarges small images. Critic: the mirror image with 4x4 stride-2
convolutions, LeakyReLU(0.2), normalisation on every layer but the first, and a
final 4x4 valid convolution to one value (no sigmoid).
No biases; weights ~ N(0, 0.02), normalisation scales ~ N(1, 0.02).
The generator may use virtual batch norm instead (`norm` "virtual"), the
critic minibatch discrimination before its final map (models/improved.py) and
spectral normalisation of every convolution instead of a normalisation layer
(`norm` "spectral", models/spectral.py).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from wgan_jax.models import improved, spectral
from wgan_jax.models.layers import Conv, ConvTranspose, torch_padding
from wgan_jax.models.registry import DCGAN_NORMS as NORMS
from wgan_jax.models.registry import dcgan_generator_problem
from wgan_jax.models.registry import dcgan_image_size_problem as image_size_problem
_W_INIT = nn.initializers.normal(0.02)


def _scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _norm(kind: str, train: bool, axis_name: str | None) -> nn.Module | None:
  if kind == "batch":
    # PyTorch's BatchNorm2d: momentum 0.1 (flax counts the other way), eps 1e-5.
    # Under pmap, `axis_name` makes the statistics those of the global batch.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        scale_init=_scale_init, axis_name=axis_name)
  if kind == "layer":
    # WGAN-GP's critic layer norm: statistics over (H, W, C) of each example.
    return nn.LayerNorm(epsilon=1e-5, reduction_axes=(1, 2, 3), feature_axes=-1,
                        scale_init=_scale_init)
  if kind in ("none", "virtual", "spectral"):  # virtual: `_norm_streams`; spectral: the convs
    return None
  raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


def _apply_norm(kind: str, x: jax.Array, train: bool, axis_name: str | None = None
                ) -> jax.Array:
  norm = _norm(kind, train, axis_name)
  return x if norm is None else norm(x)


def _norm_streams(kind: str, xs: list[jax.Array], train: bool, axis_name: str | None
                  ) -> list[jax.Array]:
  """The generator's normalisation of its streams ([x], or [reference, x] under
  virtual batch norm)."""
  if kind == "virtual":
    return list(improved.VirtualBatchNorm(epsilon=1e-5, scale_init=_scale_init)(*xs))
  return [_apply_norm(kind, x, train, axis_name) for x in xs]


def check_image_size(size: int) -> None:
  problem = image_size_problem(size)
  if problem:
    raise ValueError(problem)


class DCGANGenerator(nn.Module):
  image_size: int = 64
  channels: int = 3
  ngf: int = 64
  n_extra_layers: int = 0
  # "batch", "none" (the WGAN paper's no-BN generator) or "virtual" (virtual batch
  # norm: the reference noise runs through every layer beside the batch).
  norm: str = "batch"
  axis_name: str | None = None  # pmap axis for global batch statistics
  convolutions: str = "auto"  # "auto" or one of layers.IMPLS
  vbn_reference_size: int = 64  # R, with norm "virtual"
  # Draw at this size and resize bilinearly to image_size (0: draw at image_size).
  draw_size: int = 0
  output_activation: str = "tanh"  # or "hardtanh", a clip to [-1, 1]

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
    problem = dcgan_generator_problem(self.image_size, self.draw_size, self.output_activation)
    if problem:
      raise ValueError(problem)
    drawn = self.draw_size or self.image_size
    cngf = self.ngf * drawn // 8
    reference = (improved.reference_noise(self, self.vbn_reference_size, z.shape[1:])
                 if self.norm == "virtual" else None)
    xs = [y.reshape(y.shape[0], 1, 1, -1) for y in improved.streams(reference, z)]
    norm_relu = lambda xs: [nn.relu(y) for y in _norm_streams(self.norm, xs, train,
                                                              self.axis_name)]
    # 1x1 -> 4x4: PyTorch's ConvTranspose2d(nz, cngf, 4, 1, 0).
    xs = norm_relu(improved.each(ConvTranspose(
        cngf, (4, 4), (1, 1), torch_padding(4, 0), use_bias=False, kernel_init=_W_INIT,
        impl=self.convolutions), xs))
    size = 4
    while size < drawn // 2:
      cngf //= 2
      xs = norm_relu(improved.each(ConvTranspose(
          cngf, (4, 4), (2, 2), torch_padding(4, 1), use_bias=False, kernel_init=_W_INIT,
          impl=self.convolutions), xs))
      size *= 2
    for _ in range(self.n_extra_layers):
      xs = norm_relu(improved.each(Conv(cngf, (3, 3), padding=1, use_bias=False,
                                        kernel_init=_W_INIT, impl=self.convolutions), xs))
    x = ConvTranspose(self.channels, (4, 4), (2, 2), torch_padding(4, 1), use_bias=False,
                      kernel_init=_W_INIT, impl=self.convolutions)(xs[-1])
    x = jnp.tanh(x) if self.output_activation == "tanh" else jnp.clip(x, -1.0, 1.0)
    if drawn != self.image_size:
      # As the input pipeline enlarges small images (tf.image.resize, bilinear): a
      # data set of upscaled images lies in the resize's range, and so do the samples.
      x = jax.image.resize(x, (x.shape[0], self.image_size, self.image_size, x.shape[3]),
                           "bilinear")
    return x


class DCGANCritic(nn.Module):
  image_size: int = 64
  ndf: int = 64
  n_extra_layers: int = 0
  norm: str = "batch"  # "batch", "layer" (WGAN-GP), "spectral" or "none"
  axis_name: str | None = None  # pmap axis for global batch statistics
  convolutions: str = "auto"  # "auto" or one of layers.IMPLS
  minibatch_kernels: int = 0  # B; 0: no minibatch discrimination
  minibatch_kernel_dim: int = improved.DEFAULT_KERNEL_DIM

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    check_image_size(self.image_size)
    conv = lambda f, k, s, p: spectral.normalized(
        self, Conv(f, (k, k), (s, s), padding=p, use_bias=False, kernel_init=_W_INIT,
                   impl=self.convolutions), self.norm == "spectral")
    norm = lambda y: _apply_norm(self.norm, y, train, self.axis_name)
    x = nn.leaky_relu(conv(self.ndf, 4, 2, 1)(x), 0.2)
    cndf, size = self.ndf, self.image_size // 2
    for _ in range(self.n_extra_layers):
      x = nn.leaky_relu(norm(conv(cndf, 3, 1, 1)(x)), 0.2)
    while size > 4:
      cndf *= 2
      x = nn.leaky_relu(norm(conv(cndf, 4, 2, 1)(x)), 0.2)
      size //= 2
    self.sow("intermediates", "features", x)
    out = conv(1, 4, 1, 0)(x).reshape(x.shape[0])  # 4x4 -> 1x1: a linear map of the 4x4 map
    if self.minibatch_kernels:
      # The final linear map of concat(x, o(x)): its x part is the conv above.
      o = improved.MinibatchDiscrimination(self.minibatch_kernels, self.minibatch_kernel_dim,
                                           self.axis_name)(x)
      out = out + nn.Dense(1, use_bias=False, kernel_init=_W_INIT)(o).reshape(x.shape[0])
    return out


# ---------------------------------------------------------------- factories (models/registry.py)

def generator(cfg, data_shape, *, axis_name=None, convolutions="auto", techniques=None):
  height, _, channels = data_shape
  return DCGANGenerator(image_size=height, channels=channels, ngf=cfg.ngf,
                        n_extra_layers=cfg.n_extra_layers, norm=cfg.norm, axis_name=axis_name,
                        convolutions=convolutions, draw_size=cfg.draw_size,
                        output_activation=cfg.output_activation,
                        **improved.generator_settings(techniques))


def critic(cfg, data_shape, *, axis_name=None, convolutions="auto", techniques=None):
  return DCGANCritic(image_size=data_shape[0], ndf=cfg.ndf, n_extra_layers=cfg.n_extra_layers,
                     norm=cfg.norm, axis_name=axis_name, convolutions=convolutions,
                     **improved.critic_settings(techniques))
