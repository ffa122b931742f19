"""Class-conditional WGAN-GP on scikit-learn's digits (16x16), the supervised
CIFAR-10 model (cifar10_resnet_acgan) made small: conditional ResNets of 32
channels with two up-sampling blocks, an AC-GAN head on the critic, and the
generator's class scales and offsets from a shared class embedding
(`model.generator.conditioning=embedding`, BigGAN's), which lets the classes
part within a few hundred iterations where the reference's per-class tables
need tens of thousands, and the generator's class loss weighted 1 as in
Odena et al.'s AC-GAN (BUILD.md: conditioning). Scored by the digit
classifier, with the share of samples drawn in the class asked for
(`domain_class_agreement`). `model.critic.head=projection` for a projection
critic."""
import ml_collections

from experiments import cifar10_resnet_acgan


def get_config() -> ml_collections.ConfigDict:
  c = cifar10_resnet_acgan.get_config()
  c.data.name = "digits"
  c.data.image_size = 16
  c.data.dequantize = False
  c.generator_batch_multiple = 1
  for net in (c.model.generator, c.model.critic):
    net.dim = 32
    net.multipliers = (1, 1, 1)
  c.model.generator.conditioning = "embedding"
  c.acgan.generator_weight = 1.0  # Odena et al.'s; the reference's 0.1 parts the classes slowly
  c.num_generator_steps = 2000
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  c.eval_samples = 100  # ten samples of each class, a class per column
  c.eval.metrics = "domain"
  c.eval.num_samples = 2000
  return c
