"""The config schema: every key an experiment has, its default, and its rule.

Every experiment in `experiments/` starts from `base_config()` and changes
what it needs, so all experiments share one schema and an override that names
a key no experiment has is caught as a typo. The `model.*` and `data` sections
belong to the model and data-set registries, which own their keys' rules.
"""
from __future__ import annotations

import ml_collections

from wgan_jax import augment, losses, metrics, optim, parallel, steps, sweeps
from wgan_jax.metrics import inception
from wgan_jax.models import layers
from wgan_jax.rules import Rule, any_value, at_least, choice, in_unit_interval, positive

CRITIC_SCHEDULES = ("constant", "wgan_reference")
# How the networks' strided convolutions are formulated (models/layers.py):
# "auto" picks "phase_split" on CPU and "xla" on GPU and TPU.
CONVOLUTIONS = ("auto", *layers.IMPLS)
# How the n_critic critic updates of one program run: "auto" writes them out
# ("unrolled") on CPU and loops ("scan") on GPU and TPU.
CRITIC_LOOPS = ("auto", "unrolled", "scan")
# Batch norm when sampling (grids, `wgan_jax.sample`): "batch" uses each generated
# batch's own statistics, as both reference implementations do; "running" the
# running averages.
SAMPLING_BATCH_NORM = ("batch", "running")
# How a device runs its models of a sweep: "auto" is "map" (one after another in
# the program) on CPU and "vmap" (batched) on GPU and TPU.
SWEEP_LOOPS = ("auto", "vmap", "map")


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every experiment (WGAN-GP on 8gaussians)."""
  c = ml_collections.ConfigDict()
  c.experiment = ""           # filled in by `configs.load`
  c.seed = 0
  # Data parallelism over every device of every process: "jit" (one program over
  # a device mesh, the batch sharded) or "pmap" (same numbers up to float rounding).
  c.parallelism = "jit"
  # jit only: split parameters and optimizer states along the devices too (each holds
  # 1/N of every array whose largest axis divides by N; XLA gathers them per step).
  c.shard_state = False
  c.convolutions = "auto"     # auto | phase_split | xla (see CONVOLUTIONS)
  c.critic_loop = "auto"      # auto | unrolled | scan (see CRITIC_LOOPS)

  c.objective = "wgan-gp"     # wgan | wgan-gp | gan
  c.n_critic = 5              # critic updates per generator update
  # "wgan_reference": the WGAN code's rule, 100 critic updates for the first 25
  # generator iterations and every 500th one, n_critic otherwise.
  c.critic_schedule = "constant"
  c.gp_weight = 10.0          # the penalty's weight (WGAN-GP's lambda, R1's gamma)
  # The critic's penalty (losses.py): auto (WGAN-GP's under objective wgan-gp, none
  # otherwise) | none | gp | lp (one-sided, WGAN-LP) | r1 (on real data) | dragan.
  c.penalty = "auto"
  c.clip = 0.01               # WGAN's c (used by objective "wgan" only)
  c.gan_generator_loss = "non-saturating"  # or "minimax" (objective "gan" only)

  c.batch_size = 256          # the critic's batch (global, over all devices)
  # The generator update's batch as a multiple of batch_size (gan_cifar_resnet.py: 2).
  c.generator_batch_multiple = 1
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

  # One optimizer definition, instantiated separately for generator and critic.
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"   # adam | rmsprop (PyTorch's) | rmsprop_tf (TensorFlow 1's)
  c.optimizer.lr = 1e-4
  c.optimizer.schedule = "constant"  # constant | linear (decay to 0 by the last step)
  c.optimizer.b1 = 0.5        # adam
  c.optimizer.b2 = 0.9        # adam
  c.optimizer.decay = 0.99    # rmsprop (PyTorch's alpha; TF's decay)
  c.optimizer.eps = 1e-8      # rmsprop

  c.techniques = techniques_section()
  # The generator's exponential moving average (wgan_jax/ema.py), used for samples
  # and evaluation when kept: decay per generator step (0: none; BigGAN: 0.9999),
  # and the step from which it averages (before: a copy).
  c.ema = ml_collections.ConfigDict(dict(decay=0.0, start=0))
  # The networks' compute dtype: f32, or bf16 from float32 params, optimizer states,
  # penalty norms and losses (BUILD.md: mixed precision).
  c.precision = "f32"
  # DiffAugment (wgan_jax/augment.py) on every image the critic sees, real and
  # generated, in both updates: "" or a comma-separated policy of color,
  # translation, cutout.
  c.augment = ""
  c.sampling_batch_norm = "batch"  # batch | running (see SAMPLING_BATCH_NORM)
  c.log_every = 100           # generator iterations between scalar logs
  c.eval_every = 1000         # ... between evaluations and figures (0: only at the end)
  c.eval_samples = 2500       # toy: points for exact W1; images: samples in the grid
  # Scores at each evaluation (image sets; `metrics` names: fid, kid, is, pr,
  # domain). The Inception metrics need pytorch-fid's weights file (README:
  # Evaluation); without it they are skipped with one message. With "fid", the
  # checkpoint of the best FID is kept beside the newest ones.
  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = ""
  c.eval.num_samples = 50_000        # generated samples per evaluation (papers: 50,000)
  c.eval.reference_samples = 50_000  # real images in the reference statistics (at most)
  c.eval.inception_weights = ""      # "" = $WGAN_JAX_INCEPTION_WEIGHTS
  c.eval.fid_resize = "tf1"          # tf1 | pytorch-fid (see metrics/inception.py)
  c.eval.batch_size = 200            # real images per Inception batch, all devices
                                     # (generated ones come batch_size at a time)
  # Many models as one program (wgan_jax/sweeps.py): `seeds` models for each of
  # `grid` (values) of `key` (one of sweeps.SWEEPABLE; "" varies the seed only), each with
  # its own TensorBoard run under workdir/models/. Toy sets; K = seeds x len(grid)
  # models, split over the devices that K divides by (several processes: all).
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
  return c


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
  t.label_smoothing = 0.0       # one-sided: real targets 1 - s (paper: s = 0.1); gan only
  t.vbn_reference_size = 64     # reference batch of model.generator.norm="virtual"
  # Arjovsky & Bottou 2017: N(0, sigma^2) on every critic input, sigma annealed linearly
  # from instance_noise to 0 at generator step instance_noise_steps (0: the last step).
  t.instance_noise = 0.0
  t.instance_noise_steps = 0
  return t


def _augment_policy(value) -> str | None:
  if not isinstance(value, str):
    return f"must be a comma-separated string of {', '.join(augment.POLICIES)}"
  try:
    augment.parse_policy(value)
  except ValueError as e:
    return str(e)
  return None


# The rule of every key outside the model and data sections.
RULES: dict[str, Rule] = {
    "experiment": any_value,
    "seed": at_least(0, 2**31 - 1),
    "parallelism": choice(*parallel.PARALLELISMS),
    "shard_state": any_value,
    "convolutions": choice(*CONVOLUTIONS),
    "critic_loop": choice(*CRITIC_LOOPS),
    "objective": choice(*losses.OBJECTIVES),
    "n_critic": at_least(1, 1000),
    "critic_schedule": choice(*CRITIC_SCHEDULES),
    "gp_weight": at_least(0, 1e6),
    "clip": positive(why="WGAN clips weights to [-c, c]"),
    "gan_generator_loss": choice(*losses.GAN_GENERATOR_LOSSES),
    "penalty": choice(*losses.PENALTY_CHOICES),
    "precision": choice(*steps.COMPUTE_DTYPES),
    "augment": _augment_policy,
    "batch_size": at_least(1, 1 << 20),
    "generator_batch_multiple": at_least(1, 64),
    "num_generator_steps": at_least(0, 1 << 40),
    "sampling_batch_norm": choice(*SAMPLING_BATCH_NORM),
    "log_every": at_least(1),
    "eval_every": at_least(0),
    "eval_samples": at_least(2),  # and at most data.EVAL_SAMPLES_MAX of its kind
    "checkpoint_every": at_least(0),
    "keep_checkpoints": at_least(1),
    "nonfinite_restarts": at_least(0, 1000),
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
EVAL_RULES: dict[str, Rule] = {
    "metrics": _metrics_in_training,
    "num_samples": at_least(2, 1_000_000),
    "reference_samples": at_least(2, 10_000_000),
    "inception_weights": any_value,
    "fid_resize": choice(*inception.RESIZES),
    "batch_size": at_least(1, 1 << 16),
}
SWEEP_RULES: dict[str, Rule] = {
    "key": lambda key: None if key in ("", *sweeps.SWEEPABLE) else (
        f"cannot be swept; use one of {', '.join(sweeps.SWEEPABLE)}, or '' for seeds only"),
    "grid": any_value,  # checked with the rest of the config by sweeps.problem
    "seeds": at_least(1, 4096),
    "loop": choice(*SWEEP_LOOPS),
}
OPTIMIZER_RULES: dict[str, Rule] = {
    "name": choice(*optim.OPTIMIZERS),
    "lr": positive(),
    "schedule": choice(*optim.LR_SCHEDULES),
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
