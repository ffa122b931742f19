"""Architectures: the fast transposed convolution equals flax's, DCGAN and
ResNet shapes and parameter counts match the reference implementations."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wgan_jax import steps
from wgan_jax.models import dcgan, layers, resnet
from wgan_jax.state import NetState


def _assert_same_layer(ours: nn.Module, ref: nn.Module, x: jax.Array) -> None:
  """Same parameters (names and shapes), same outputs, same gradients."""
  variables = ref.init(jax.random.PRNGKey(1), x)
  variables = jax.tree.map(lambda a: a + 0.1, variables)  # non-zero bias too
  assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(1), x)) == \
      jax.tree.map(jnp.shape, variables)
  np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x), atol=2e-5)
  loss = lambda m: (lambda v, x: jnp.sum(jnp.sin(m.apply(v, x))))
  g_ours = jax.grad(loss(ours), argnums=(0, 1))(variables, x)
  g_ref = jax.grad(loss(ref), argnums=(0, 1))(variables, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


_TRANSPOSED = [
    (4, 2, 1, 8),   # DCGAN's up-sampling layer
    (4, 1, 0, 1),   # DCGAN's first layer: 1x1 -> 4x4
    (3, 1, 1, 5), (4, 2, 1, 5), (5, 2, 2, 6), (3, 2, 1, 4), (3, 3, 0, 4), (4, 2, 0, 3),
    (2, 3, 0, 3),   # stride > kernel: some output phases get no tap
]


# 6 output features: all phases as one convolution; 20: one convolution per phase.
@pytest.mark.parametrize("features", [6, 20])
@pytest.mark.parametrize("k,s,p,size", _TRANSPOSED)
def test_conv_transpose_equals_flax(k, s, p, size, features):
  padding = layers.torch_padding(k, p)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size + 1, 5))
  _assert_same_layer(layers.ConvTranspose(features, (k, k), strides=(s, s), padding=padding),
                     nn.ConvTranspose(features, (k, k), strides=(s, s), padding=padding), x)


@pytest.mark.parametrize("k,p", [(4, 0), (4, 1), (4, 2), (1, 0), (5, 1)])
def test_conv_transpose_of_a_single_position(k, p):
  """A 1x1 input (DCGAN's noise) is one matmul; same function as flax's."""
  padding = layers.torch_padding(k, p)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 1, 1, 5))
  _assert_same_layer(layers.ConvTranspose(7, (k, k), padding=padding),
                     nn.ConvTranspose(7, (k, k), padding=padding), x)


@pytest.mark.parametrize("k,s,p,size", [
    (4, 2, 1, 8),   # DCGAN's down-sampling layer
    (4, 1, 0, 4),   # DCGAN critic's last layer
    (3, 1, 1, 5), (4, 2, 1, 7), (5, 2, 2, 9), (3, 2, 0, 6), (3, 3, 1, 10), (4, 2, (0, 1), 6),
])
def test_conv_equals_flax(k, s, p, size):
  """The strided convolution's input gradient goes through `conv_transpose`,
  also where the stride skips input rows at the end (7, 9, 10)."""
  padding = p if isinstance(p, int) else ((p[0], p[1]), (p[1], p[0]))
  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size + 1, 5))
  _assert_same_layer(layers.Conv(20, (k, k), strides=(s, s), padding=padding),
                     nn.Conv(20, (k, k), strides=(s, s), padding=padding), x)


def test_conv_second_order_gradients_equal_flax():
  """WGAN-GP differentiates the critic's input gradient with respect to its
  parameters: that goes through `conv`'s custom input gradient."""
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 9, 8, 5))
  ours, ref = (cls(4, (4, 4), strides=(2, 2), padding=1) for cls in (layers.Conv, nn.Conv))
  variables = ref.init(jax.random.PRNGKey(1), x)

  def penalty(module):
    def fn(v):
      grad_x = jax.grad(lambda x: jnp.sum(jnp.tanh(module.apply(v, x))))(x)
      return jnp.sum(grad_x ** 2)
    return fn

  g_ours, g_ref = jax.grad(penalty(ours))(variables), jax.grad(penalty(ref))(variables)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    assert np.abs(b).max() > 0
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def _gradient_hlo(apply, variables, x: jax.Array) -> str:
  grad = jax.jit(jax.grad(lambda v, x: jnp.sum(apply(v, x)), argnums=(0, 1)))
  return grad.lower(variables, x).compile().as_text()


def _dcgan_gradient_hlo(module: nn.Module, x: jax.Array) -> str:
  variables = module.init(jax.random.PRNGKey(0), x, train=False)
  return _gradient_hlo(
      lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"])[0], variables, x)


def test_dcgan_gradients_avoid_dilated_convolutions():
  """XLA:CPU's slow paths are a strided convolution's input gradient (a
  convolution with a dilated input, `lhs_dilate`) and everything of a strided
  transposed convolution (its weight gradient: `rhs_dilate`). Flax's layers
  produce them; ours do not."""
  critic_hlo = _dcgan_gradient_hlo(dcgan.DCGANCritic(32, ndf=8), jnp.zeros((2, 32, 32, 3)))
  generator_hlo = _dcgan_gradient_hlo(dcgan.DCGANGenerator(32, ngf=8), jnp.zeros((2, 10)))
  assert "convolution(" in critic_hlo and "convolution(" in generator_hlo
  assert "lhs_dilate" not in critic_hlo and "_dilate=" not in generator_hlo
  x = jnp.zeros((2, 16, 16, 8))
  for flax_layer, marker in ((nn.Conv(8, (4, 4), (2, 2), padding=1), "lhs_dilate"),
                             (nn.ConvTranspose(8, (4, 4), (2, 2), padding=((2, 2), (2, 2))),
                              "rhs_dilate")):
    assert marker in _gradient_hlo(flax_layer.apply, flax_layer.init(jax.random.PRNGKey(0), x), x)
