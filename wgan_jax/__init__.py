"""wgan_jax: Wasserstein GANs (WGAN, WGAN-GP) and the standard GAN in JAX/Flax."""
__version__ = "0.1.0"
