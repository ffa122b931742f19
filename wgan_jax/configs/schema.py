"""The config schema: every key an experiment has, its default, and its rule,
and the menus of names the keys choose from (the implementations key their
registries by these names and a test holds them equal).

Every experiment in `experiments/` starts from `base_config()` and changes
what it needs, so all experiments share one schema and an override that names
a key no experiment has is caught as a typo. The `model.*` and `data` sections
belong to the model and data-set registries (`wgan_jax.models.registry`,
`wgan_jax.data`), which own their keys' rules. Nothing here imports JAX.
"""
from __future__ import annotations

import ml_collections

from wgan_jax import metrics
from wgan_jax.configs.rules import (Rule, any_value, at_least, choice, in_unit_interval,
                                   positive)

# ----------------------------------------------------------------------------
# Menus.
# ----------------------------------------------------------------------------

# The adversarial loss (wgan_jax/losses.py), each with the critic's and the
# generator's side: the Wasserstein loss (WGAN), the standard GAN's two
# generator losses (Goodfellow et al. 2014), hinge (SNGAN), least squares (LSGAN).
LOSSES = ("wasserstein", "minimax", "non-saturating", "hinge", "least-squares")
# Losses whose critic is a discriminator with logits (one-sided label smoothing applies).
LOGISTIC_LOSSES = ("minimax", "non-saturating")
# The critic's gradient penalty (wgan_jax/penalties.py), weighted by penalty_weight:
# gp (WGAN-GP, interpolates), lp (WGAN-LP, one-sided), r1 (real data), r2 (generated
# data), dragan (perturbed real data).
PENALTIES = ("none", "gp", "lp", "r1", "r2", "dragan")
# "rmsprop" is PyTorch's (the WGAN code), "rmsprop_tf" TensorFlow 1's (the WGAN-GP code).
OPTIMIZERS = ("adam", "rmsprop", "rmsprop_tf")
LR_SCHEDULES = ("constant", "linear")
# "wgan_reference": the WGAN code's rule, 100 critic updates for the first 25
# generator iterations and every 500th one, n_critic otherwise.
N_CRITIC_SCHEDULES = ("constant", "wgan_reference")
# Data parallelism over every device of every process: "jit" (one program over a
# device mesh, the batch sharded) or "pmap" (same numbers up to float rounding).
PARALLELISMS = ("jit", "pmap")
# How the networks' strided convolutions are formulated (models/layers.py):
# "auto" picks "phase_split" on CPU and "xla" on GPU and TPU.
CONVOLUTION_IMPLS = ("phase_split", "xla")
CONVOLUTIONS = ("auto", *CONVOLUTION_IMPLS)
# How the n_critic critic updates of one program run: "auto" writes them out
# ("unrolled") on CPU and loops ("scan") on GPU and TPU.
CRITIC_LOOPS = ("auto", "unrolled", "scan")
# The networks' compute dtype: f32, or bf16 from float32 params, optimizer states,
# penalty norms and losses (BUILD.md: mixed precision).
PRECISIONS = ("f32", "bf16")
# DiffAugment's policies (wgan_jax/augment.py), in the order they are applied.
AUGMENT_POLICIES = ("color", "translation", "cutout")
# Batch norm when sampling (grids, `wgan_jax.sample`): "batch" uses each generated
# batch's own statistics, as both reference implementations do; "running" the
# running averages.
SAMPLING_BATCH_NORM = ("batch", "running")
# How images reach the Inception's 299x299 (metrics/inception.py): TensorFlow 1's
# bilinear resize, or pytorch-fid's.
FID_RESIZES = ("tf1", "pytorch-fid")
# How a device runs its models of a sweep: "auto" is "map" (one after another in
# the program) on CPU and "vmap" (batched) on GPU and TPU.
SWEEP_LOOPS = ("auto", "vmap", "map")
# What a sweep may vary besides the seed (config/sweep.py): each enters the program
# as a number. "optimizer.lr" sets both networks' rate.
SWEEPABLE = ("clip", "penalty_weight", "optimizer.lr", "optimizer.generator.lr",
             "optimizer.critic.lr", "n_critic")
NETWORKS = ("generator", "critic")


def parse_policy(text: str) -> tuple[str, ...]:
  """"color,translation,cutout" -> ("color", "translation", "cutout"), in
  AUGMENT_POLICIES order; "" -> (). Unknown or repeated names raise ValueError."""
  names = [name.strip() for name in text.split(",")]
  names = [name for name in names if name]
  for name in names:
    if name not in AUGMENT_POLICIES:
      raise ValueError(f"unknown DiffAugment policy {name!r} in {text!r}; "
                       f"known: {', '.join(AUGMENT_POLICIES)}")
    if names.count(name) > 1:
      raise ValueError(f"DiffAugment policy {name!r} repeated in {text!r}; "
                       f"known: {', '.join(AUGMENT_POLICIES)}")
  return tuple(p for p in AUGMENT_POLICIES if p in names)


# ----------------------------------------------------------------------------
# Defaults.
# ----------------------------------------------------------------------------


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every experiment (WGAN-GP on 8gaussians)."""
  c = ml_collections.ConfigDict()
  c.experiment = ""           # filled in by `config.load`
  c.seed = 0
  c.parallelism = "jit"       # jit | pmap (see PARALLELISMS)
  # jit only: split parameters and optimizer states along the devices too (each holds
  # 1/N of every array whose largest axis divides by N; XLA gathers them per step).
  c.shard_state = False
  c.convolutions = "auto"     # auto | phase_split | xla (see CONVOLUTIONS)
  c.critic_loop = "auto"      # auto | unrolled | scan (see CRITIC_LOOPS)

  # The objective: an adversarial loss, and what keeps the critic Lipschitz: a
  # gradient penalty, weight clipping, or spectral norm (model.critic.norm).
  c.loss = "wasserstein"      # see LOSSES
  c.penalty = "gp"            # see PENALTIES
  c.penalty_weight = 10.0     # WGAN-GP's lambda, R1's gamma, ...
  c.clip = 0.0                # weight clipping to [-c, c] after every critic update; 0: off
  c.n_critic = 5              # critic updates per generator update
  c.n_critic_schedule = "constant"  # constant | wgan_reference (see N_CRITIC_SCHEDULES)

  c.batch_size = 256          # the critic's batch (global, over all devices)
  # The generator update's batch as a multiple of batch_size (gan_cifar_resnet.py: 2).
  c.generator_batch_multiple = 1
  # Each update's batch as this many micro-batches, their gradients averaged: the
  # memory of a batch / accumulation_steps (BUILD.md: gradient accumulation).
  c.accumulation_steps = 1
  c.num_generator_steps = 10_000

  c.data = ml_collections.ConfigDict()
  c.data.name = "8gaussians"

  c.model = ml_collections.ConfigDict()
  c.model.noise_dim = 2
  c.model.generator = ml_collections.ConfigDict(
      dict(name="mlp", features=512, depth=3, output_activation="linear", weight_init="lecun",
           norm="none"))
  c.model.critic = ml_collections.ConfigDict(dict(name="mlp", features=512, depth=3,
                                                  weight_init="lecun", norm="none"))

  # One optimizer per network (the WGAN code's --lrD / --lrG; TTUR). On the command
  # line `optimizer.KEY` sets KEY of both.
  c.optimizer = ml_collections.ConfigDict(
      {network: optimizer_section() for network in NETWORKS})

  c.techniques = techniques_section()
  # The generator's exponential moving average (wgan_jax/ema.py), used for samples
  # and evaluation when kept: decay per generator step (0: none; BigGAN: 0.9999),
  # and the step from which it averages (before: a copy).
  c.ema = ml_collections.ConfigDict(dict(decay=0.0, start=0))
  # An AC-GAN critic's class losses (model.critic.head=acgan): weight on the
  # critic's, on real data, and on the generator's, on its samples (gan_cifar_resnet.py:
  # 1 and 0.1; Odena et al.'s AC-GAN: 1 and 1).
  c.acgan = ml_collections.ConfigDict(dict(critic_weight=1.0, generator_weight=0.1))
  c.precision = "f32"         # f32 | bf16 (see PRECISIONS)
  # DiffAugment (wgan_jax/augment.py) on every image the critic sees, real and
  # generated, in both updates: "" or a comma-separated policy of color,
  # translation, cutout.
  c.augment = ""
  # Adaptive augmentation (ADA, wgan_jax/ada.py): each op of `augment` applied to an
  # image with probability p instead of always, p moved every `interval` generator
  # iterations towards the critic's overfitting statistic r_t = `target`, from 0 to 1
  # in `speed_images` real images at most (Karras et al. 2020: 0.6, 4, 500k).
  c.ada = ada_section()
  c.sampling_batch_norm = "batch"  # batch | running (see SAMPLING_BATCH_NORM)
  c.log_every = 100           # generator iterations between scalar logs
  c.eval_every = 1000         # ... between evaluations and figures (0: only at the end)
  c.eval_samples = 2500       # toy: points for exact W1; images: samples in the grid
  # Scores at each evaluation (image sets; `metrics` names: fid, kid, is, pr, dc,
  # intra_fid, domain). The Inception metrics need pytorch-fid's weights file (README:
  # Evaluation); without it they are skipped with one message. With "fid", the
  # checkpoint of the best FID is kept beside the newest ones.
  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = ""
  c.eval.num_samples = 50_000        # generated samples per evaluation (papers: 50,000)
  c.eval.reference_samples = 50_000  # real images in the reference statistics (at most)
  c.eval.inception_weights = ""      # "" = $WGAN_JAX_INCEPTION_WEIGHTS
  c.eval.fid_resize = "tf1"          # tf1 | pytorch-fid (see FID_RESIZES)
  c.eval.batch_size = 200            # real images per Inception batch, all devices
                                     # (generated ones come batch_size at a time)
  # Many models as one program (config/sweep.py): `seeds` models for each of `grid`
  # (values) of `key` (one of SWEEPABLE; "" varies the seed only), each with its own
  # TensorBoard run under workdir/models/. Toy sets; K = seeds x len(grid) models,
  # split over the devices that K divides by (several processes: all).
  c.sweep = ml_collections.ConfigDict()
  c.sweep.key = ""
  c.sweep.grid = ()
  c.sweep.seeds = 1
  c.sweep.loop = "auto"       # auto | vmap | map (see SWEEP_LOOPS)
  c.checkpoint_every = 1000   # generator iterations between checkpoints (0: only at the end)
  c.keep_checkpoints = 3      # how many recent checkpoints to keep
  # After a non-finite loss or gradient: 0 stops the run (exit 1); N > 0 restores
  # the last good checkpoint with a new RNG stream, up to N times.
  c.nonfinite_restarts = 0
  # Start from another run's generator and critic ("WORKDIR" or "WORKDIR:STEP";
  # wgan_jax/transfer.py): fine-tuning, transfer to a small data set. The
  # optimizer states start fresh. "" : a fresh start.
  c.init_from = ""
  # FreezeD (Mo et al. 2020): the critic's first N layers (from the input) keep
  # the values init_from loaded; 0: all learn.
  c.freeze_critic_layers = 0
  return c


def set_optimizers(c: ml_collections.ConfigDict, **values) -> None:
  """Sets `values` (name=..., lr=..., ...) in both networks' optimizer sections."""
  for network in NETWORKS:
    c.optimizer[network].update(values)


def optimizer_section() -> ml_collections.ConfigDict:
  """One network's optimizer (wgan_jax/optim.py): the keys every optimizer has,
  each read by the optimizers it names."""
  return ml_collections.ConfigDict(dict(
      name="adam",         # adam | rmsprop (PyTorch's) | rmsprop_tf (TensorFlow 1's)
      lr=1e-4,
      schedule="constant",  # constant | linear (decay to 0 by the last update)
      b1=0.5,              # adam
      b2=0.9,              # adam
      decay=0.99,          # rmsprop (PyTorch's alpha; TF's decay)
      eps=1e-8,            # rmsprop
  ))


def ada_section() -> ml_collections.ConfigDict:
  """Adaptive augmentation, off: what the code did before the section existed."""
  return ml_collections.ConfigDict(dict(enabled=False, target=0.6, interval=4,
                                        speed_images=500_000))


def techniques_section() -> ml_collections.ConfigDict:
  """The improved techniques (wgan_jax/techniques.py), every one off: what the
  code did before the section existed."""
  t = ml_collections.ConfigDict()
  # Salimans et al. 2016: the generator matches the mean of the critic's last hidden
  # features on real data instead of fooling it.
  t.feature_matching = False
  t.minibatch_kernels = 0       # minibatch discrimination's B (paper: 100); 0 = off
  t.minibatch_kernel_dim = 5    # ... and C (paper: 5)
  t.historical_averaging = 0.0  # lambda of ||theta - mean of past theta||^2, both networks
  # One-sided: real targets 1 - s (paper: s = 0.1); the logistic losses only.
  t.label_smoothing = 0.0
  t.vbn_reference_size = 64     # reference batch of model.generator.norm="virtual"
  # Arjovsky & Bottou 2017: N(0, sigma^2) on every critic input, sigma annealed linearly
  # from instance_noise to 0 at generator step instance_noise_steps (0: the last step).
  t.instance_noise = 0.0
  t.instance_noise_steps = 0
  return t


# ----------------------------------------------------------------------------
# Rules.
# ----------------------------------------------------------------------------


def _augment_policy(value) -> str | None:
  if not isinstance(value, str):
    return f"must be a comma-separated string of {', '.join(AUGMENT_POLICIES)}"
  try:
    parse_policy(value)
  except ValueError as e:
    return str(e)
  return None


def _clip(value) -> str | None:
  if not isinstance(value, (int, float)) or value != value or value < 0 or value > 1e6:
    return "must be 0 (off) or a positive bound c: weights are clipped to [-c, c]"
  return None


def _init_from(value) -> str | None:
  if not isinstance(value, str):
    return "must be a training run's workdir, optionally with :STEP, or \"\" (a fresh start)"
  return None


# The rule of every key outside the sections.
RULES: dict[str, Rule] = {
    "experiment": any_value,
    "seed": at_least(0, 2**31 - 1),
    "parallelism": choice(*PARALLELISMS),
    "shard_state": choice(False, True),
    "convolutions": choice(*CONVOLUTIONS),
    "critic_loop": choice(*CRITIC_LOOPS),
    "loss": choice(*LOSSES),
    "penalty": choice(*PENALTIES),
    "penalty_weight": at_least(0, 1e6),
    "clip": _clip,
    "n_critic": at_least(1, 1000),
    "n_critic_schedule": choice(*N_CRITIC_SCHEDULES),
    "precision": choice(*PRECISIONS),
    "augment": _augment_policy,
    "batch_size": at_least(1, 1 << 20),
    "generator_batch_multiple": at_least(1, 64),
    "accumulation_steps": at_least(1, 1 << 16),
    "num_generator_steps": at_least(0, 1 << 40),
    "sampling_batch_norm": choice(*SAMPLING_BATCH_NORM),
    "log_every": at_least(1),
    "eval_every": at_least(0),
    "eval_samples": at_least(2),  # and at most data.EVAL_SAMPLES_MAX of its kind
    "checkpoint_every": at_least(0),
    "keep_checkpoints": at_least(1),
    "nonfinite_restarts": at_least(0, 1000),
    "init_from": _init_from,
    "freeze_critic_layers": at_least(0, 1000),
}
MODEL_RULES: dict[str, Rule] = {"noise_dim": at_least(1, 1 << 16)}


def _metrics_in_training(value) -> str | None:
  if not isinstance(value, str):
    return f"must be a comma-separated string of names from {', '.join(metrics.IN_TRAINING)}"
  try:
    metrics.parse(value, metrics.IN_TRAINING)
  except ValueError as e:
    return str(e)
  return None


EMA_RULES: dict[str, Rule] = {
    "decay": in_unit_interval(),
    "start": at_least(0, 1 << 40),
}
ADA_RULES: dict[str, Rule] = {
    "enabled": choice(False, True),
    # r_t lies in [-1, 1]; a target of 1 keeps p at 0.
    "target": at_least(0, 1, why="r_t, a mean of signs, is at most 1"),
    "interval": at_least(1, 1 << 20),
    "speed_images": positive(1e12),
}
ACGAN_RULES: dict[str, Rule] = {
    "critic_weight": at_least(0, 1e6),
    "generator_weight": at_least(0, 1e6),
}
EVAL_RULES: dict[str, Rule] = {
    "metrics": _metrics_in_training,
    "num_samples": at_least(2, 1_000_000),
    "reference_samples": at_least(2, 10_000_000),
    "inception_weights": any_value,
    "fid_resize": choice(*FID_RESIZES),
    "batch_size": at_least(1, 1 << 16),
}
SWEEP_RULES: dict[str, Rule] = {
    "key": lambda key: None if key in ("", *SWEEPABLE) else (
        f"cannot be swept; use one of {', '.join(SWEEPABLE)}, or '' for seeds only"),
    "grid": any_value,  # checked with the rest of the config by sweep.problem
    "seeds": at_least(1, 4096),
    "loop": choice(*SWEEP_LOOPS),
}
OPTIMIZER_RULES: dict[str, Rule] = {
    "name": choice(*OPTIMIZERS),
    "lr": at_least(0, why="0 freezes the network"),
    "schedule": choice(*LR_SCHEDULES),
    "b1": in_unit_interval(),
    "b2": in_unit_interval(),
    "decay": in_unit_interval(),
    "eps": positive(1.0),
}
TECHNIQUES_RULES: dict[str, Rule] = {
    "feature_matching": choice(False, True),
    "minibatch_kernels": at_least(0, 4096),
    "minibatch_kernel_dim": at_least(1, 1024),
    "historical_averaging": at_least(0, 1e6),
    "label_smoothing": at_least(0, 0.5, why="a target 1 - s below 1/2 calls real data fake"),
    "vbn_reference_size": at_least(1, 1 << 16),
    "instance_noise": at_least(0, 1e3),
    "instance_noise_steps": at_least(0, 1 << 40),
}
# What a rule checks per key of a sweep's grid.
SWEPT_RULES: dict[str, Rule] = {
    "clip": positive(1e6, why="a swept clip bound turns clipping on"),
    "penalty_weight": RULES["penalty_weight"],
    "n_critic": RULES["n_critic"],
    "optimizer.lr": OPTIMIZER_RULES["lr"],
    "optimizer.generator.lr": OPTIMIZER_RULES["lr"],
    "optimizer.critic.lr": OPTIMIZER_RULES["lr"],
}
