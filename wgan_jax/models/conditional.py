"""Class-conditional ResNets: the WGAN-GP paper's supervised CIFAR-10 model
(gan_cifar_resnet.py with CONDITIONAL=True, ACGAN=True) and a projection
critic (Miyato & Koyama 2018), built from models/resnet.py's blocks.

Generator: the unconditional ResNet generator whose residual blocks normalise
with conditional batch norm (tflib.ops.cond_batchnorm; Dumoulin et al. 2016):
moments over batch and space as in batch norm, shared by all classes, then a
per-class scale and offset (`conditioning`):
- "table" (gan_cifar_resnet.py): picked by label from [num_classes, C] tables
  that start at ones and zeros;
- "embedding" (BigGAN, Brock et al. 2019): one class embedding shared by all
  layers (128 numbers a class), mapped by each norm's own linear maps,
  zero at init, to 1 + scale and to offset.
They differ in how fast the classes can part under Adam, which moves each
parameter by about its learning rate a step: a table entry moves by at most
lr a step (0.08 in 800 steps of lr 2e-4 decayed linearly; the reference trains
100,000), while an embedding-fed scale sums 128 such moves (BUILD.md:
conditioning). The last norm, before the output convolution, is plain batch
norm: the reference calls Normalize('Generator.OutputN') without labels. At
init the network is the unconditional one either way; labels enter only
through the class affine maps.

Critics: the unconditional critic's body (resnet.ResNetCritic.features) to
pooled features h, then
- "acgan": f = linear(h) ('Discriminator.Output') and class logits =
  linear(h) to num_classes ('Discriminator.ACGANOutput'); the labels are not
  read (the reference drops them in the critic under ACGAN).
- "projection": f = linear(h) + <embed(y), h> with embed a [num_classes, |h|]
  table, Glorot uniform as in pfnet-research/sngan_projection's SNEmbedID
  (there without the linear's bias, with spectral norm and sum pooling; here
  the WGAN-GP critic's mean pooling and biased output linear are kept).

AC-GAN's class losses are loss terms (terms.acgan_critic, terms.acgan_generator),
weighted as the reference weighs them: 1 on the critic's loss on real data,
0.1 on the generator's on its samples. The critic's fake batch is generated
with the real batch's labels (accuracy on it is reported, not trained); the
generator's batch (twice the critic's) has fresh uniform labels.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from wgan_jax.models import resnet
from wgan_jax.models.registry import CONDITIONAL_HEADS as HEADS
from wgan_jax.models.registry import CONDITIONINGS


# Glorot uniform, as chainer's GlorotUniform on sngan_projection's embedding.
_GLOROT = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class ConditionalBatchNorm(nn.Module):
  """Batch norm (momentum 0.9, eps 1e-5, global statistics over `axis_name`)
  followed by the per-class scale and offset ("bias") of each example's label;
  with running averages (train=False) the class affine map still applies."""
  num_classes: int
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     use_scale=False, use_bias=False, axis_name=self.axis_name)(x)
    shape = (self.num_classes, x.shape[-1])
    scale = self.param("scale", nn.initializers.ones, shape)
    bias = self.param("bias", nn.initializers.zeros, shape)
    # Rows for each example, broadcast over the spatial axes.
    per_example = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    return y * scale[labels].reshape(per_example) + bias[labels].reshape(per_example)


class EmbeddedConditionalBatchNorm(nn.Module):
  """Batch norm as ConditionalBatchNorm's, then scale 1 + A e and offset B e of
  each example's class embedding e [N, E] (A, B: [E, C], zero at init)."""
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, embedding: jax.Array, train: bool) -> jax.Array:
    y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     use_scale=False, use_bias=False, axis_name=self.axis_name)(x)
    per_example = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    scale = nn.Dense(x.shape[-1], use_bias=False, kernel_init=nn.initializers.zeros,
                     name="scale")(embedding)
    bias = nn.Dense(x.shape[-1], use_bias=False, kernel_init=nn.initializers.zeros,
                    name="bias")(embedding)
    return y * (1.0 + scale.reshape(per_example)) + bias.reshape(per_example)


EMBEDDING_DIM = 128  # BigGAN's shared class embedding


class ConditionalResNetGenerator(resnet.ResNetGenerator):
  """resnet.ResNetGenerator with conditional batch norm in its residual
  blocks: (z [N, noise], labels int [N]) -> images [N, H, W, C] in [-1, 1]."""
  num_classes: int = 10
  conditioning: str = "table"  # or "embedding" (see the module's docstring)

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool = True) -> jax.Array:
    if self.conditioning == "table":
      norm = functools.partial(ConditionalBatchNorm, self.num_classes, self.axis_name)
      return self.layers(z, train, norm, labels)
    if self.conditioning != "embedding":
      raise ValueError(f"conditioning {self.conditioning!r} is unknown; use one of "
                       f"{', '.join(CONDITIONINGS)}")
    embedding = nn.Embed(self.num_classes, EMBEDDING_DIM,
                         embedding_init=nn.initializers.normal(1.0), name="class_embedding")
    norm = functools.partial(EmbeddedConditionalBatchNorm, self.axis_name)
    return self.layers(z, train, norm, embedding(labels))


class OneHotConditioned(nn.Module):
  """A conditional generator as a function of one array, noise ⊕ one-hot label
  [N, noise_dim + num_classes]: every path that feeds a generator noise (the
  steps, sample grids, FID, `wgan_jax.sample`) conditions it by building that
  array (`updates.generator_input`), with no other change."""
  generator: ConditionalResNetGenerator

  def __call__(self, z_and_label: jax.Array, train: bool = True) -> jax.Array:
    classes = self.generator.num_classes
    z, one_hot = z_and_label[:, :-classes], z_and_label[:, -classes:]
    return self.generator(z, jnp.argmax(one_hot, axis=-1), train)


class ConditionalResNetCritic(resnet.ResNetCritic):
  """resnet.ResNetCritic's body with an AC-GAN or projection head:
  (x, labels int [N]) -> (f [N], class logits [N, num_classes] for "acgan",
  [N, 0] for "projection"). Parameters: the body's, Dense_0 (f's linear map),
  then Dense_1 (class logits) or Embed_0 (class embeddings)."""
  num_classes: int = 10
  head: str = "acgan"

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = True
               ) -> tuple[jax.Array, jax.Array]:
    if self.head not in HEADS:
      raise ValueError(f"head {self.head!r} is unknown; use one of {', '.join(HEADS)}")
    h = self.features(x, train)
    f = self.linear(1)(h).reshape(h.shape[0])
    if self.head == "acgan":
      return f, self.linear(self.num_classes)(h)
    embed = nn.Embed(self.num_classes, h.shape[-1], embedding_init=_GLOROT)(labels)
    return f + jnp.sum(embed * h, axis=-1), jnp.zeros((h.shape[0], 0), f.dtype)


# ---------------------------------------------------------------- factories (models/registry.py)

def generator(cfg, data_shape, *, axis_name=None, convolutions="auto", techniques=None):
  del convolutions, techniques
  height, _, channels = data_shape
  return OneHotConditioned(ConditionalResNetGenerator(
      image_size=height, channels=channels, dim=cfg.dim, multipliers=tuple(cfg.multipliers),
      axis_name=axis_name, num_classes=cfg.num_classes,
      conditioning=cfg.conditioning))


def critic(cfg, data_shape, *, axis_name=None, convolutions="auto", techniques=None):
  del convolutions, axis_name, techniques  # The registry refuses minibatch discrimination.
  return ConditionalResNetCritic(
      image_size=data_shape[0], dim=cfg.dim, multipliers=tuple(cfg.multipliers), norm=cfg.norm,
      num_classes=cfg.num_classes, head=cfg.head)
