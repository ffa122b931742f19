"""The WGAN-GP paper's supervised CIFAR-10 model (its Table 3, "ours
(supervised)"): gan_cifar_resnet.py with CONDITIONAL=True, ACGAN=True. The
unconditional run's ResNets, settings and schedule (cifar10_resnet_gp), with
conditional batch norm in the generator's residual blocks and an AC-GAN
classifier head on the critic (weights 1 on the critic's loss on real data and
0.1 on the generator's on its samples); fakes in the critic update take the
real batch's labels, the generator update draws uniform ones. Set
`model.critic.head=projection` for a projection critic (Miyato & Koyama
2018) instead."""
import ml_collections

from experiments import cifar10_resnet_gp


def get_config() -> ml_collections.ConfigDict:
  c = cifar10_resnet_gp.get_config()
  c.data.labels = True
  c.model.generator = ml_collections.ConfigDict(
      dict(name="cond_resnet", dim=128, multipliers=(1, 1, 1, 1), num_classes=10,
           conditioning="table"))
  c.model.critic = ml_collections.ConfigDict(
      dict(name="cond_resnet", dim=128, multipliers=(1, 1, 1, 1), norm="none", num_classes=10,
           head="acgan"))
  return c
