"""Input pipelines. Toy 2-D sets are sampled on device (`toy`); image sets
(tfds, LSUN LMDB via `lsun`, image folders, sklearn digits) come from tf.data (`images`)."""

# Names only, so that configs validate without importing TensorFlow.
TOY_DATASETS = ("8gaussians", "25gaussians", "swissroll")
IMAGE_DATASETS = ("lsun_bedroom", "cifar10", "mnist", "celeb_a", "image_folder", "digits")
GRAYSCALE = ("mnist", "digits")


def data_shape(cfg) -> tuple[int, ...]:
  """The shape of one example of data config `cfg`: (2,) for a toy set,
  (image_size, image_size, channels) for images."""
  if cfg.name in TOY_DATASETS:
    return (2,)
  return (cfg.image_size, cfg.image_size, 1 if cfg.name in GRAYSCALE else 3)
