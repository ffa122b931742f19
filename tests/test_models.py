"""Architectures: the fast transposed convolution equals flax's, DCGAN and
ResNet shapes and parameter counts match the reference implementations."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wgan_jax import terms, updates
from wgan_jax.models import dcgan, layers, mlp, resnet
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


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_dcgan64_matches_the_reference_architecture():
  g, d = dcgan.DCGANGenerator(64), dcgan.DCGANCritic(64)
  z = jnp.zeros((2, 100))
  gv = g.init(jax.random.PRNGKey(0), z, train=False)
  x = g.apply(gv, z, train=False)
  dv = d.init(jax.random.PRNGKey(1), x, train=False)
  assert x.shape == (2, 64, 64, 3) and d.apply(dv, x, train=False).shape == (2,)
  # PyTorch's DCGAN_G / DCGAN_D (WGAN repository) at isize 64, nz 100, ngf = ndf = 64.
  assert _count(gv["params"]) == 3_576_704
  assert _count(dv["params"]) == 2_765_568
  assert gv["params"]["ConvTranspose_0"]["kernel"].shape == (4, 4, 100, 512)  # ngf * isize / 8
  # No biases; weights ~ N(0, 0.02); batch-norm scales ~ N(1, 0.02).
  assert not any("bias" in jax.tree_util.keystr(p) and "BatchNorm" not in jax.tree_util.keystr(p)
                 for p, _ in jax.tree_util.tree_leaves_with_path(gv["params"]))
  kernel = np.asarray(gv["params"]["ConvTranspose_1"]["kernel"])
  assert abs(kernel.std() - 0.02) < 0.001 and abs(kernel.mean()) < 0.001
  scale = np.asarray(gv["params"]["BatchNorm_1"]["scale"])
  assert abs(scale.mean() - 1.0) < 0.01 and 0.01 < scale.std() < 0.03


@pytest.mark.parametrize("size,transposed", [(16, 3), (32, 4), (128, 6)])
def test_dcgan_any_multiple_of_16(size, transposed):
  g = dcgan.DCGANGenerator(size, channels=1, ngf=8, n_extra_layers=1)
  d = dcgan.DCGANCritic(size, ndf=8, n_extra_layers=1, norm="layer")
  z = jnp.zeros((2, 10))
  gv = g.init(jax.random.PRNGKey(0), z, train=False)
  x = g.apply(gv, z, train=False)
  assert x.shape == (2, size, size, 1)
  assert float(jnp.max(jnp.abs(x))) <= 1.0  # tanh
  dv = d.init(jax.random.PRNGKey(0), x, train=False)
  assert d.apply(dv, x, train=False).shape == (2,)
  # 1x1 -> 4x4, then one per doubling.
  assert len([k for k in gv["params"] if k.startswith("ConvTranspose")]) == transposed
  assert "LayerNorm_0" in dv["params"] and "batch_stats" not in dv


def test_a_dcgan_drawing_at_8x8_makes_16x16_images_as_the_pipeline_enlarges_8x8_ones():
  """Its images are bilinear enlargements of 8x8 ones (the digits data are): the
  least-squares fit through tf.image.resize's 8x8 -> 16x16 map reproduces them."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  g = dcgan.DCGANGenerator(16, channels=1, ngf=8, draw_size=8)
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 10))
  gv = g.init(jax.random.PRNGKey(1), z, train=False)
  x = np.asarray(g.apply(gv, z, train=False)).reshape(4, 256)
  assert len([k for k in gv["params"] if k.startswith("ConvTranspose")]) == 2  # 1 -> 4 -> 8
  enlarge = tf.image.resize(np.eye(64, dtype=np.float32).reshape(64, 8, 8, 1), (16, 16),
                            "bilinear").numpy().reshape(64, 256)
  small, *_ = np.linalg.lstsq(enlarge.T, x.T, rcond=None)
  np.testing.assert_allclose(small.T @ enlarge, x, atol=1e-3 * x.std())
  assert np.abs(x).max() <= 1.0 and x.std() > 0
  # The same generator drawing at 16x16 makes images off that map.
  full = dcgan.DCGANGenerator(16, channels=1, ngf=8)
  y = np.asarray(full.apply(full.init(jax.random.PRNGKey(1), z, train=False), z,
                            train=False)).reshape(4, 256)
  small, *_ = np.linalg.lstsq(enlarge.T, y.T, rcond=None)
  assert np.abs(small.T @ enlarge - y).max() > 0.1 * y.std()


def test_a_clipped_output_reaches_black_and_white_exactly_and_passes_gradients_inside():
  z = jax.random.normal(jax.random.PRNGKey(0), (8, 10))
  g = dcgan.DCGANGenerator(16, channels=1, ngf=8, output_activation="hardtanh")
  gv = g.init(jax.random.PRNGKey(1), z, train=False)
  # The last layer scaled up: pixels of std ~ 4 before the clip.
  x = np.asarray(g.apply(gv, z, train=False))
  big = jax.tree_util.tree_map(lambda a: a, gv)
  big["params"]["ConvTranspose_2"]["kernel"] = gv["params"]["ConvTranspose_2"]["kernel"] * (
      4.0 / x.std())
  x = np.asarray(g.apply(big, z, train=False))
  assert (np.abs(x) <= 1.0).all()
  assert (x == -1.0).mean() > 0.1 and (x == 1.0).mean() > 0.1
  assert (np.abs(x) < 1.0).mean() > 0.1
  # The pixels inside pass gradients back to the noise.
  grad = jax.grad(lambda z: jnp.sum(g.apply(big, z, train=False)))(z)
  assert np.abs(np.asarray(grad)).sum() > 0


def test_dcgan_rejects_sizes_that_are_not_multiples_of_16():
  with pytest.raises(ValueError, match="multiple of 16"):
    dcgan.DCGANGenerator(40).init(jax.random.PRNGKey(0), jnp.zeros((1, 4)), train=False)


@pytest.mark.parametrize("settings,message", [
    (dict(draw_size=12), "draw_size=12 must be 0"),
    (dict(draw_size=32), "draw_size=32 is larger than the image size 16"),
    (dict(output_activation="sigmoid"), "output_activation='sigmoid' is unknown"),
])
def test_a_dcgan_generator_built_directly_checks_its_settings(settings, message):
  with pytest.raises(ValueError, match=message):
    dcgan.DCGANGenerator(16, **settings).init(jax.random.PRNGKey(0), jnp.zeros((1, 4)),
                                              train=False)


def test_dcgan_without_batch_norm_has_no_batch_stats():
  g = dcgan.DCGANGenerator(32, norm="none")
  v = g.init(jax.random.PRNGKey(0), jnp.zeros((2, 100)), train=False)
  assert "batch_stats" not in v


@pytest.mark.parametrize("size,g_mult,d_mult", [(32, (1, 1, 1, 1), (1, 1, 1, 1)),
                                                (64, (8, 8, 4, 2, 1), (1, 2, 4, 8, 8))])
def test_resnet_shapes(size, g_mult, d_mult):
  g = resnet.ResNetGenerator(size, dim=8, multipliers=g_mult)
  d = resnet.ResNetCritic(size, dim=8, multipliers=d_mult)
  z = jnp.zeros((3, 128))
  gv = g.init(jax.random.PRNGKey(0), z, train=False)
  x = g.apply(gv, z, train=False)
  assert x.shape == (3, size, size, 3)
  dv = d.init(jax.random.PRNGKey(1), x, train=False)
  assert d.apply(dv, x, train=False).shape == (3,)
  assert "batch_stats" in gv and "batch_stats" not in dv  # BN in G only (WGAN-GP)


def test_cifar_resnet_parameter_count():
  # gan_cifar_resnet.py at DIM 128 (with biases, as tflib's convs have).
  g = resnet.ResNetGenerator(32, dim=128)
  d = resnet.ResNetCritic(32, dim=128)
  gv = g.init(jax.random.PRNGKey(0), jnp.zeros((1, 128)), train=False)
  dv = d.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
  assert _count(gv["params"]) == 1_204_483
  assert _count(dv["params"]) == 1_053_825


def test_batch_norm_critic_sees_real_and_fake_separately():
  critic = dcgan.DCGANCritic(16, ndf=4)
  tx = optax.sgd(0.0)
  spec = updates.GanSpec(generator=None, critic=critic, generator_tx=tx, critic_tx=tx,
                         critic_terms=(terms.adversarial_critic("wasserstein"),),
                         generator_terms=(), noise_dim=2)
  v = critic.init(jax.random.PRNGKey(0), jnp.zeros((2, 16, 16, 3)), train=False)
  net = NetState(v["params"], v["batch_stats"], tx.init(v["params"]))
  real = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 3)) + 3.0
  fake = jax.random.normal(jax.random.PRNGKey(2), (4, 16, 16, 3))
  _, metrics = updates.critic_step(spec, net, real, fake, jax.random.PRNGKey(3))
  # Each batch is normalised by its own statistics: the estimate is what two
  # separate training-mode passes give, not one pass over both batches.
  f = lambda b: critic.apply(v, b, train=True, mutable=["batch_stats"])[0]
  separate = float(jnp.mean(f(real)) - jnp.mean(f(fake)))
  joint = f(jnp.concatenate([real, fake]))
  together = float(jnp.mean(joint[:4]) - jnp.mean(joint[4:]))
  assert float(metrics["wasserstein_estimate"]) == pytest.approx(separate, rel=1e-4, abs=1e-6)
  assert abs(separate - together) > 1e-3


@pytest.mark.parametrize("module,x", [
    (lambda impl: dcgan.DCGANGenerator(32, ngf=8, n_extra_layers=1, convolutions=impl),
     jnp.ones((4, 10))),
    (lambda impl: dcgan.DCGANCritic(32, ndf=8, n_extra_layers=1, convolutions=impl),
     jax.random.normal(jax.random.PRNGKey(3), (4, 32, 32, 3))),
])
def test_phase_split_and_xla_convolutions_are_one_function(module, x):
  """The per-backend choice (config `convolutions`) changes the formulation only:
  the same parameters give the same outputs and gradients, so checkpoints move
  between CPU ("phase_split") and GPU/TPU ("xla") runs."""
  split, native = module("phase_split"), module("xla")
  variables = split.init(jax.random.PRNGKey(0), x, train=False)
  assert jax.tree.map(jnp.shape, native.init(jax.random.PRNGKey(0), x, train=False)) == \
      jax.tree.map(jnp.shape, variables)

  def loss(m):
    return lambda v: jnp.sum(jnp.sin(m.apply(v, x, train=True, mutable=["batch_stats"])[0]))

  np.testing.assert_allclose(split.apply(variables, x, train=False),
                             native.apply(variables, x, train=False), rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(jax.grad(loss(split))(variables)),
                  jax.tree.leaves(jax.grad(loss(native))(variables))):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
  # The xla formulation really is XLA's: its gradients have the dilated convolutions.
  hlo = _dcgan_gradient_hlo(native, x)
  assert "_dilate=" in hlo


def _uniform_std(bound):
  return bound / np.sqrt(3)


def test_mlp_initialisations_follow_their_references():
  x = jnp.zeros((1, 512))
  params = {init: mlp.MLP(512, 3, (2,), weight_init=init).init(jax.random.PRNGKey(0), x)["params"]
            for init in mlp.INITS}
  # tflib (gan_toy.py): He uniform std sqrt(2 / fan_in) for the ReLU layers, Glorot
  # sqrt(2 / (fan_in + fan_out)) for the last, zero biases.
  tflib = params["tflib"]
  assert np.std(tflib["Dense_1"]["kernel"]) == pytest.approx(np.sqrt(2 / 512), rel=0.02)
  assert np.std(tflib["Dense_3"]["kernel"]) == pytest.approx(np.sqrt(2 / 514), rel=0.1)
  assert float(np.abs(tflib["Dense_3"]["kernel"]).max()) <= np.sqrt(3 * 2 / 514)
  assert not np.any(tflib["Dense_1"]["bias"])
  # PyTorch's nn.Linear (the WGAN code's MLP_G): U(+-1/sqrt(fan_in)), biases too.
  torch = params["torch"]
  bound = 1 / np.sqrt(512)
  for leaf in (torch["Dense_1"]["kernel"], torch["Dense_1"]["bias"]):
    assert float(np.abs(leaf).max()) <= bound
  assert np.std(torch["Dense_1"]["kernel"]) == pytest.approx(_uniform_std(bound), rel=0.02)
  assert np.std(params["lecun"]["Dense_1"]["kernel"]) == pytest.approx(np.sqrt(1 / 512),
                                                                        rel=0.05)


def test_resnet_initialisation_is_tflibs():
  # tflib's conv2d: He std sqrt(4 / (fan_in + fan_out)), Glorot sqrt(2 / (...)),
  # uniform; fans are channels x 9 for 3x3 kernels.
  g = resnet.ResNetGenerator(32, dim=128)
  p = g.init(jax.random.PRNGKey(0), jnp.zeros((1, 128)), train=False)["params"]
  block = p["ResidualBlock_0"]
  he = np.sqrt(4 / (128 * 9 + 128 * 9))
  assert np.std(block["Conv_1"]["kernel"]) == pytest.approx(he, rel=0.02)
  glorot_1x1 = np.sqrt(2 / (128 + 128))
  assert np.std(block["Conv_0"]["kernel"]) == pytest.approx(glorot_1x1, rel=0.05)  # shortcut
  # gan_cifar_resnet.py's output conv is Glorot (he_init=False).
  out = p[max(k for k in p if k.startswith("Conv_"))]["kernel"]
  assert np.std(out) == pytest.approx(np.sqrt(2 / (128 * 9 + 3 * 9)), rel=0.05)


def test_resnet64_critic_is_gan_64x64s_good_discriminator():
  """Layer norm in every block, no bias on each block's first conv, Glorot
  input conv: gan_64x64.py's GoodDiscriminator under WGAN-GP."""
  dim = 8
  d = resnet.ResNetCritic(64, dim=dim, multipliers=(1, 2, 4, 8, 8), norm="layer")
  v = d.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)), train=False)
  assert "batch_stats" not in v
  expected = 27 * dim + dim + 4 * 4 * 8 * dim + 1  # input conv, output linear
  for c_in, c_out in ((dim, 2 * dim), (2 * dim, 4 * dim), (4 * dim, 8 * dim),
                      (8 * dim, 8 * dim)):
    expected += 2 * c_in + 2 * c_in  # two layer norms (scale, offset per channel)
    expected += 9 * c_in * c_in  # conv 1, no bias
    expected += 9 * c_in * c_out + c_out  # conv 2 (mean-pooled)
    expected += c_in * c_out + c_out  # 1x1 shortcut
  assert _count(v["params"]) == expected
  block = v["params"]["ResidualBlock_0"]
  assert "LayerNorm_0" in block and "LayerNorm_1" in block
  assert "bias" not in block["Conv_1"]
