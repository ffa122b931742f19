"""Sampling like the references: each batch normalised by its own batch-norm
statistics by default, running averages on request, full batches throughout."""
import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import generators
from wgan_jax.models import dcgan
from wgan_jax.state import NetState


def _generator():
  module = dcgan.DCGANGenerator(16, channels=1, ngf=4)
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((2, 8)), train=False)
  # Running averages far from any batch's statistics, so the two modes differ.
  stats = jax.tree.map(lambda s: s + 3.0, variables["batch_stats"])
  return module, NetState(variables["params"], stats, None)


def test_batch_statistics_by_default_running_averages_on_request():
  module, net = _generator()
  noise = jax.random.normal(jax.random.PRNGKey(1), (8, 8))
  variables = {"params": net.params, "batch_stats": net.batch_stats}
  own = module.apply(variables, noise, train=True, mutable=["batch_stats"])[0]
  running = module.apply(variables, noise, train=False)
  np.testing.assert_allclose(generators.generate(module, net, noise, "batch", 8), own,
                             atol=1e-6)
  np.testing.assert_allclose(generators.generate(module, net, noise, "running", 8), running,
                             atol=1e-6)
  assert float(jnp.max(jnp.abs(own - running))) > 0.05


def test_every_batch_is_full_and_the_fillers_are_dropped():
  module, net = _generator()
  noise = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (10, 8)))
  samples = generators.generate(module, net, noise, "batch", 4)
  assert samples.shape == (10, 16, 16, 1)
  variables = {"params": net.params, "batch_stats": net.batch_stats}
  batch = lambda z: np.asarray(module.apply(variables, z, train=True,
                                            mutable=["batch_stats"])[0])
  np.testing.assert_allclose(samples[4:8], batch(noise[4:8]), atol=1e-6)
  # The last two samples were normalised with two fillers (the first noise rows).
  np.testing.assert_allclose(samples[8:], batch(np.concatenate([noise[8:], noise[:2]]))[:2],
                             atol=1e-6)
  # Teeth: a batch of two alone has other statistics.
  assert float(np.max(np.abs(samples[8:] - batch(noise[8:])))) > 1e-3
