"""The WGAN paper's MLP-generator run (its Figure 6) as the WGAN code runs it
(`main.py --mlp_G`): MLP_G, 4 linear layers with ReLU between them (3 hidden
layers of ngf = 512 units), a linear output with no tanh and PyTorch's default
initialisation, against the DCGAN critic; weight clipping, 64x64 bedrooms.
(The paper's text says "4 hidden layers"; the code it ran has 3.)"""
import ml_collections

from experiments import _images


def get_config() -> ml_collections.ConfigDict:
  c = _images.wgan_paper(_images.image_config("lsun_bedroom", 64))
  c.model.generator = ml_collections.ConfigDict(
      dict(name="mlp", features=512, depth=3, output_activation="linear", weight_init="torch",
           norm="none"))
  return c
