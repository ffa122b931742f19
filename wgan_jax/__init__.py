"""wgan_jax: Wasserstein GANs (WGAN, WGAN-GP) and the standard GAN in JAX/Flax."""
from wgan_jax import xla_cpu as _xla_cpu

__version__ = "0.1.0"

# Before any JAX computation: the CPU convolutions the benchmarks measured fastest.
_xla_cpu.configure()
