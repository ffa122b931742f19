"""Class-conditional ResNets: the WGAN-GP paper's supervised CIFAR-10 model
(gan_cifar_resnet.py with CONDITIONAL=True, ACGAN=True) and a projection
critic (Miyato & Koyama 2018), built from models/resnet.py's blocks.

Generator: the unconditional ResNet generator whose residual blocks normalise
with conditional batch norm (tflib.ops.cond_batchnorm; Dumoulin et al. 2016):
moments over batch and space as in batch norm, shared by all classes, then a
scale and an offset picked by label from [num_classes, C] tables that start at
ones and zeros. The last norm, before the output convolution, is plain batch
norm: the reference calls Normalize('Generator.OutputN') without labels.
At init the network is the unconditional one; labels enter only through the
class affine maps.

Critics: the unconditional critic's body (resnet.ResNetCritic.features) to
pooled features h, then
- "acgan": f = linear(h) ('Discriminator.Output') and class logits =
  linear(h) to num_classes ('Discriminator.ACGANOutput'); the labels are not
  read (the reference drops them in the critic under ACGAN).
- "projection": f = linear(h) + <embed(y), h> with embed a [num_classes, |h|]
  table, Glorot uniform as in pfnet-research/sngan_projection's SNEmbedID
  (there without the linear's bias, with spectral norm and sum pooling; here
  the WGAN-GP critic's mean pooling and biased output linear are kept).

Losses, as the reference combines them (the step multiplies by the scales):
  critic:    wgan + ACGAN_SCALE   * acgan_critic_loss(logits(real), real labels),
  generator: wgan + ACGAN_SCALE_G * acgan_generator_loss(logits(G(z, y)), y),
with ACGAN_SCALE = 1.0, ACGAN_SCALE_G = 0.1. The critic's classification loss
is on real data only; its fake batch is generated with the real batch's labels
(accuracy on it is reported, not trained); the generator's batch (twice the
critic's) has fresh uniform labels. Both are mean sparse softmax
cross-entropy.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from wgan_jax.models import resnet
from wgan_jax.rules import at_least, choice

HEADS = ("acgan", "projection")
ACGAN_SCALE = 1.0  # gan_cifar_resnet.py: critic's classification loss weight
ACGAN_SCALE_G = 0.1  # generator's classification loss weight

# Glorot uniform, as chainer's GlorotUniform on sngan_projection's embedding.
_GLOROT = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")

GENERATOR_RULES = {**resnet.GENERATOR_RULES, "num_classes": at_least(1, 1 << 16)}
CRITIC_RULES = {**resnet.CRITIC_RULES, "num_classes": at_least(1, 1 << 16),
                "head": choice(*HEADS)}


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


class ConditionalResNetGenerator(resnet.ResNetGenerator):
  """resnet.ResNetGenerator with conditional batch norm in its residual
  blocks: (z [N, noise], labels int [N]) -> images [N, H, W, C] in [-1, 1]."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool = True) -> jax.Array:
    norm = functools.partial(ConditionalBatchNorm, self.num_classes, self.axis_name)
    return self.layers(z, train, norm, labels)


class OneHotConditioned(nn.Module):
  """A conditional generator as a function of one array, noise ⊕ one-hot label
  [N, noise_dim + num_classes]: every path that feeds a generator noise (the
  steps, sample grids, FID, `wgan_jax.sample`) conditions it by building that
  array (`steps.generator_input`), with no other change."""
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


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def acgan_critic_loss(class_logits_real: jax.Array, labels_real: jax.Array) -> jax.Array:
  """Mean sparse softmax cross-entropy of the critic's logits on real data
  (weighted by ACGAN_SCALE in the critic's loss)."""
  return _cross_entropy(class_logits_real, labels_real)


def acgan_generator_loss(class_logits_fake: jax.Array, labels_fake: jax.Array) -> jax.Array:
  """Mean sparse softmax cross-entropy of the critic's logits on samples
  against the labels they were generated with (weighted by ACGAN_SCALE_G)."""
  return _cross_entropy(class_logits_fake, labels_fake)


def classification_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of examples whose arg-max logit is their label."""
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
