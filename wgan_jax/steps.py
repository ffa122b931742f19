"""Pure update functions: critic step, generator step, one generator iteration.

Each takes the static `GanSpec` (modules, optimizers, objective) first; the
trainer closes over it (`functools.partial`), so what `jax.jit` sees is a
function of arrays only: (state, real batches) -> (state, metrics).

Data parallelism: under `jax.jit` over a device Mesh (state replicated, batch
sharded) these functions need nothing: XLA partitions the global computation.
Under `jax.pmap` each device sees its shard of the batch; with
`GanSpec.axis_name` set they average gradients and metrics over the devices
and draw the global batch's random numbers and take this device's share, so
every device computes what one device computes on the whole batch.

The improved techniques (`GanSpec.techniques`, wgan_jax/techniques.py) enter
here: label smoothing and historical averaging in the losses, instance noise
on the critic's inputs, feature matching as the generator's loss, and real and
fake batches through the critic separately under minibatch discrimination.
So do the later ones: the critic's penalty (losses.py), spectral norm's power
iteration (advanced by the critic's update alone), DiffAugment on every image
the critic sees (augment.py), bfloat16 compute (`GanSpec.compute_dtype`) and
the generator's moving average (ema.py).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from wgan_jax import augment, ema, losses, techniques
from wgan_jax.models import conditional
from wgan_jax.models.spectral import COLLECTION as SPECTRAL
from wgan_jax.state import NetState, PyTree, TrainState
from wgan_jax.techniques import Techniques

Metrics = dict[str, jax.Array]
# Folded into a critic update's key for the noise that dequantises its real batch.
_DEQUANTIZE_STREAM = 0x64657175
# Folded into a critic update's (and the generator update's) key for instance noise.
_INSTANCE_NOISE_STREAM = 0x696e6f69
# ... for DiffAugment's draws (real batch 0, fake batch 1).
_AUGMENT_STREAM = 0x61756777
# ... for DRAGAN's perturbation of the real batch.
_DRAGAN_STREAM = 0x64726167
# Folded into the generator update's key for the labels of its samples.
_LABEL_STREAM = 0x6c61626c
# The metric that counts non-finite parameters and batch statistics after the
# update (0 when healthy).
NONFINITE_PARAMS = "nonfinite_params"
# Config `precision` -> the networks' compute dtype (None: float32 throughout).
COMPUTE_DTYPES = {"f32": None, "bf16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class GanSpec:
  """What the step functions need besides arrays: fixed for a whole run."""
  generator: nn.Module
  critic: nn.Module
  generator_tx: optax.GradientTransformation
  critic_tx: optax.GradientTransformation
  objective: str                      # one of losses.OBJECTIVES
  noise_dim: int
  gp_weight: float = 10.0             # WGAN-GP's lambda
  clip: float | None = None           # WGAN's c; None without weight clipping
  gan_generator_loss: str = "non-saturating"
  # The generator update's batch as a multiple of the critic's.
  generator_batch_multiple: int = 1
  # uint8 real images -> 2 (x / 256 - 0.5) + U(0, 1/128) instead of x / 127.5 - 1.
  dequantize: bool = False
  # The `jax.pmap` axis the steps run under (the modules' batch norm must use
  # the same one: models.build_*(axis_name=...)); None under jit.
  axis_name: str | None = None
  # How many of an iteration's critic updates apply (a sweep over n_critic runs
  # the largest count for every model; this model's later updates change
  # nothing); None: all of them.
  critic_updates: jax.Array | None = None
  # Salimans et al.'s techniques and instance noise (all off by default).
  techniques: Techniques = Techniques()
  # The critic's penalty (losses.PENALTY_CHOICES; "auto": WGAN-GP's under wgan-gp),
  # weighted by gp_weight.
  penalty: str = "auto"
  # The generator's moving average (wgan_jax/ema.py): its decay (0: none) and the
  # generator step from which it averages (before: it copies).
  ema_decay: float = 0.0
  ema_start: int = 0
  # Mixed precision: the networks compute in this dtype (bfloat16) from float32
  # params, optimizer states and losses; None: float32 throughout.
  compute_dtype: jnp.dtype | None = None
  # DiffAugment's policy (augment.POLICIES) for every image the critic sees; () none.
  augment: tuple[str, ...] = ()
  # Class-conditional training (models/conditional.py): the classes (0: none), and
  # whether the critic has AC-GAN's classifier head (else a projection critic).
  num_classes: int = 0
  acgan: bool = False

  @property
  def active_penalty(self) -> str:
    """The penalty the critic's loss carries: one of losses.PENALTIES, or "none"."""
    return losses.penalty_of(self.objective, self.penalty)


def apply_net(module: nn.Module, params: PyTree, batch_stats: PyTree, x: jax.Array,
              train: bool, spectral: PyTree | None = None,
              compute_dtype: jnp.dtype | None = None) -> tuple[jax.Array, PyTree]:
  """Runs a network; in training, batch norm uses (and updates) batch statistics.
  Spectral norm's vectors (`spectral`) are read, never advanced (see
  `_apply_critic`). `compute_dtype` (e.g. bfloat16): the params and input are
  cast to it for the computation, the output comes back in float32."""
  out, collections = _apply(module, params, {"batch_stats": batch_stats, SPECTRAL: spectral},
                            x, train, ("batch_stats",) if train else (), compute_dtype)
  return out, collections["batch_stats"]


def _apply(module: nn.Module, params: PyTree, collections: dict[str, PyTree], x: jax.Array,
           train: bool, mutable: tuple[str, ...], compute_dtype: jnp.dtype | None,
           labels: jax.Array | None = None) -> tuple[PyTree, dict[str, PyTree]]:
  """`module` on `x` (and `labels`, for a conditional critic) with its non-empty
  `collections` ({} or None: absent); returns the output (float32 however the
  network computed) and every collection, those in `mutable` updated, each
  leaf in the dtype it came in."""
  if compute_dtype is not None:
    params = jax.tree.map(lambda p: p.astype(compute_dtype)
                          if jnp.issubdtype(p.dtype, jnp.floating) else p, params)
    x = x.astype(compute_dtype)
  present = {k: v for k, v in collections.items() if v}
  mutable = [k for k in mutable if k in present]
  inputs = (x,) if labels is None else (x, labels)
  if mutable:
    out, updates = module.apply({"params": params, **present}, *inputs, train=train,
                                mutable=mutable)
  else:
    out, updates = module.apply({"params": params, **present}, *inputs, train=train), {}
  kept = {k: jax.tree.map(lambda new, old: new.astype(old.dtype), updates[k], v)
          if k in updates else v for k, v in collections.items()}
  return jax.tree.map(lambda y: y.astype(jnp.float32), out), kept


def _apply_critic(spec: GanSpec, params: PyTree, batch_stats: PyTree, spectral: PyTree,
                  x: jax.Array, advance: bool = False, labels: jax.Array | None = None
                  ) -> tuple[jax.Array, PyTree, PyTree, jax.Array | None]:
  """The critic in training mode: (values f(x), batch stats, spectral vectors,
  class logits of a conditional critic or None). `advance`: one step of
  spectral norm's power iteration is kept, which only the critic's own update
  asks for, once per update. `labels`: the classes of `x` (conditional runs)."""
  mutable = ("batch_stats", *((SPECTRAL,) if advance else ()))
  out, collections = _apply(spec.critic, params, {"batch_stats": batch_stats, SPECTRAL: spectral},
                            x, True, mutable, spec.compute_dtype, labels)
  f, logits = out if spec.num_classes else (out, None)
  return f, collections["batch_stats"], collections[SPECTRAL], logits


def critic_values(spec: GanSpec, critic: NetState, x: jax.Array,
                  labels: jax.Array | None = None) -> jax.Array:
  """f(x) in evaluation mode (running batch statistics, spectral vectors as saved)."""
  out, _ = _apply(spec.critic, critic.params, {"batch_stats": critic.batch_stats,
                                               SPECTRAL: critic.spectral},
                  x, False, (), None, labels)
  return out[0] if spec.num_classes else out


def generator_input(spec: GanSpec, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
  """What the generator takes: the noise, and for a conditional generator the
  noise ⊕ one-hot labels (models/conditional.OneHotConditioned)."""
  return z if not spec.num_classes else conditioned_input(z, labels, spec.num_classes)


def conditioned_input(z: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """noise ⊕ one-hot `labels` of `num_classes` classes: a conditional generator's input."""
  return jnp.concatenate([z, jax.nn.one_hot(labels, num_classes, dtype=z.dtype)], axis=-1)


def split_real(real: jax.Array | tuple[jax.Array, jax.Array]
               ) -> tuple[jax.Array, jax.Array | None]:
  """Real data as the stream hands it out -> (images or points, labels or None)."""
  return real if isinstance(real, tuple) else (real, None)


def critic_features(spec: GanSpec, params: PyTree, batch_stats: PyTree, x: jax.Array,
                    spectral: PyTree | None = None) -> tuple[jax.Array, PyTree]:
  """The critic's last hidden features of `x` (sown as "intermediates"/"features"),
  in training mode; and its new batch stats."""
  variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {}),
               **({SPECTRAL: spectral} if spectral else {})}
  mutable = ["intermediates", *(["batch_stats"] if batch_stats else [])]
  _, state = spec.critic.apply(variables, x, train=True, mutable=mutable)
  return state["intermediates"]["features"][0], state.get("batch_stats", batch_stats)


def sample_noise(spec: GanSpec, key: jax.Array, n: int) -> jax.Array:
  return jax.random.normal(key, (n, spec.noise_dim), jnp.float32)


def local_slice(x: jax.Array, axis_name: str, axis: int = 0) -> jax.Array:
  """This device's share of `x` along `axis` inside `jax.pmap(axis_name=...)`:
  device i of n takes the i-th of n equal slices, the rows it would hold of a
  batch split over the devices. For numbers drawn in the program for the
  global batch (noise, interpolation weights, toy data)."""
  n = jax.lax.axis_size(axis_name)
  if x.shape[axis] % n:
    raise ValueError(f"axis {axis} of shape {x.shape} does not split over {n} devices")
  size = x.shape[axis] // n
  return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(axis_name) * size, size, axis)


def _global_batch(spec: GanSpec, local: int) -> int:
  """The batch over all devices, from one device's `local` share."""
  return local if spec.axis_name is None else local * jax.lax.axis_size(spec.axis_name)


def _this_device(spec: GanSpec, x: jax.Array, axis: int = 0) -> jax.Array:
  return x if spec.axis_name is None else local_slice(x, spec.axis_name, axis)


def _device_mean(spec: GanSpec, tree: PyTree) -> PyTree:
  """Mean over the pmap devices. Losses and metrics are means over each
  device's shard; the shards are equal, so this is the global batch's mean.
  So are gradients, also through cross-device batch norm: the transpose of
  its pmean hands every device the cotangents of all devices' losses."""
  return tree if spec.axis_name is None else jax.lax.pmean(tree, spec.axis_name)


def _apply_updates(tx: optax.GradientTransformation, net: NetState, grads: PyTree,
                   batch_stats: PyTree) -> NetState:
  updates, opt_state = tx.update(grads, net.opt_state, net.params)
  return NetState(params=optax.apply_updates(net.params, updates),
                  batch_stats=batch_stats, opt_state=opt_state)


def clipped_fraction(params: PyTree, clip: float) -> jax.Array:
  """Share of the weights sitting at ±clip (saturated by the projection)."""
  leaves = jax.tree.leaves(params)
  # The projection lands two ulps inside the bound (see optim.clip_weights).
  at_bound = sum(jnp.sum(jnp.abs(p) >= clip * (1 - 1e-6)) for p in leaves)
  return at_bound / sum(p.size for p in leaves)


def real_to_float(spec: GanSpec, real: jax.Array, key: jax.Array) -> jax.Array:
  """A real batch as the critic takes it: uint8 pixels (as they cross to the
  device) scaled to [-1, 1], or dequantised as gan_cifar_resnet.py does; float
  data (the toy sets) unchanged. `key` is the critic update's."""
  if real.dtype != jnp.uint8:
    return real
  x = real.astype(jnp.float32)
  if not spec.dequantize:
    return x / 127.5 - 1.0
  shape = (_global_batch(spec, real.shape[0]), *real.shape[1:])
  noise = _this_device(spec, jax.random.uniform(
      jax.random.fold_in(key, _DEQUANTIZE_STREAM), shape, jnp.float32, 0.0, 1.0 / 128))
  return 2.0 * (x / 256.0 - 0.5) + noise


def instance_noise(spec: GanSpec, key: jax.Array, std: jax.Array, *xs: jax.Array
                   ) -> tuple[jax.Array, ...]:
  """Each of `xs` plus N(0, std^2): the i-th drawn from `key`'s instance-noise
  stream folded with i, for the global batch (this device's share under pmap)."""
  stream = jax.random.fold_in(key, _INSTANCE_NOISE_STREAM)
  return tuple(x + std * _this_device(spec, jax.random.normal(
      jax.random.fold_in(stream, i), (_global_batch(spec, x.shape[0]), *x.shape[1:]), x.dtype))
      for i, x in enumerate(xs))


def fake_batch(spec: GanSpec, generator: NetState, noise: jax.Array
               ) -> tuple[jax.Array, PyTree]:
  """Samples for `noise`, in training mode (batch statistics of this batch,
  as in the reference code); returns them and the new batch stats."""
  return apply_net(spec.generator, generator.params, generator.batch_stats, noise, train=True,
                   compute_dtype=spec.compute_dtype)


def augmented(spec: GanSpec, key: jax.Array, x: jax.Array) -> jax.Array:
  """`x` under DiffAugment (`spec.augment`), the draws made for the global batch
  (this device's rows under pmap); `x` itself without a policy."""
  if not spec.augment:
    return x
  n, height, width = _global_batch(spec, x.shape[0]), x.shape[1], x.shape[2]
  params = augment.draw(key, spec.augment, n, height, width)
  return augment.apply(x, jax.tree.map(lambda a: _this_device(spec, a), params), spec.augment)


def penalty_points(spec: GanSpec, real: jax.Array, fake: jax.Array, key: jax.Array
                   ) -> jax.Array:
  """Where the critic's penalty takes its input gradient (losses.py): interpolates
  of real and fake (gp, lp), real data (r1), perturbed real data (dragan)."""
  name = spec.active_penalty
  if name == "r1":
    return real
  eps = _this_device(spec, jax.random.uniform(key, (_global_batch(spec, real.shape[0]),)))
  if name in ("gp", "lp"):
    return losses.interpolate(real, fake, eps)
  if name == "dragan":
    # The standard deviation of the whole (global) batch's values, as their code's x.std().
    mean = _device_mean(spec, jnp.mean(real))
    std = jnp.sqrt(_device_mean(spec, jnp.mean(jnp.square(real - mean))))
    noise = _this_device(spec, jax.random.uniform(
        jax.random.fold_in(key, _DRAGAN_STREAM), (_global_batch(spec, real.shape[0]),
                                                  *real.shape[1:])))
    return losses.dragan_points(real, std, noise, eps)
  raise ValueError(f"no penalty points for {name!r}")


def critic_step(spec: GanSpec, critic: NetState, real: jax.Array, fake: jax.Array,
                key: jax.Array, step: jax.Array | int = 0, labels: jax.Array | None = None
                ) -> tuple[NetState, Metrics]:
  """One critic update on one real and one generated batch (this device's
  shards under pmap); `step`, the generator step, sets the instance noise.
  `labels` (conditional runs): the real batch's classes, which the fake batch
  was generated with (gan_cifar_resnet.py)."""
  t = spec.techniques
  batch = real.shape[0]
  fake = jax.lax.stop_gradient(fake)
  if spec.augment:
    stream = jax.random.fold_in(key, _AUGMENT_STREAM)
    real = augmented(spec, jax.random.fold_in(stream, 0), real)
    fake = augmented(spec, jax.random.fold_in(stream, 1), fake)
  if t.instance_noise:
    # On the critic's inputs; WGAN-GP's interpolates lie between the noisy batches.
    real, fake = instance_noise(spec, key, techniques.instance_noise_std(t, step), real, fake)

  def loss_fn(params):
    if critic.batch_stats or t.minibatch_kernels:
      # Batch norm (and minibatch discrimination) sees the real and the fake batch
      # separately, as in the references.
      f_real, stats, spectral, logits_real = _apply_critic(
          spec, params, critic.batch_stats, critic.spectral, real, True, labels)
      f_fake, stats, _, logits_fake = _apply_critic(spec, params, stats, spectral, fake,
                                                    labels=labels)
    else:
      # Without batch statistics the critic is per-example: one bigger matmul.
      both_labels = None if labels is None else jnp.concatenate([labels, labels])
      f_both, stats, spectral, logits = _apply_critic(
          spec, params, {}, critic.spectral, jnp.concatenate([real, fake]), True, both_labels)
      f_real, f_fake = f_both[:batch], f_both[batch:]
      logits_real, logits_fake = (None, None) if logits is None else (logits[:batch],
                                                                      logits[batch:])
    loss = losses.critic_loss(spec.objective, f_real, f_fake, t.label_smoothing)
    aux = {"wasserstein_estimate": losses.wasserstein_estimate(f_real, f_fake)}
    if spec.acgan:
      # AC-GAN: the critic learns the classes of real data only (the reference's).
      class_loss = conditional.acgan_critic_loss(logits_real, labels)
      loss = loss + conditional.ACGAN_SCALE * class_loss
      aux.update(acgan_critic_loss=class_loss,
                 acgan_real_accuracy=conditional.classification_accuracy(logits_real, labels),
                 acgan_fake_accuracy=conditional.classification_accuracy(logits_fake, labels))
    if t.historical_averaging:
      penalty = techniques.historical_penalty(t.historical_averaging, params, critic.opt_state)
      loss = loss + penalty
      aux.update(critic_historical_penalty=penalty)
    if spec.active_penalty != "none":
      sq_norms, norms = losses.input_grad_norms(
          lambda x: _apply_critic(spec, params, stats, spectral, x, labels=labels)[0],
          penalty_points(spec, real, fake, key))
      penalty = losses.penalty_value(spec.active_penalty, sq_norms, norms)
      loss = loss + spec.gp_weight * penalty
      aux.update(gradient_penalty=penalty, gp_input_grad_norm=jnp.mean(norms))
    if spec.objective == "gan":
      aux.update(d_real=jnp.mean(jax.nn.sigmoid(f_real)),
                 d_fake=jnp.mean(jax.nn.sigmoid(f_fake)))
    return loss, (stats, spectral, aux)

  (loss, (stats, spectral, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(critic.params)
  loss, aux, grads = _device_mean(spec, (loss, aux, grads))
  critic = _apply_updates(spec.critic_tx, critic, grads, stats).replace(spectral=spectral)
  return critic, {"critic_loss": loss, "critic_grad_norm": optax.tree.norm(grads), **aux}


def generator_step(spec: GanSpec, generator: NetState, critic: NetState,
                   key: jax.Array, batch: int, real: jax.Array | None = None,
                   step: jax.Array | int = 0) -> tuple[NetState, PyTree, Metrics]:
  """One generator update against the current critic.

  Returns the new generator, the critic's batch statistics (its forward pass
  runs in training mode, as in the reference) and metrics. `batch` is this
  device's share of the critic batch under pmap; the generator's batch is
  `generator_batch_multiple` times it. `real` (floats; this device's share):
  the real batch feature matching compares with; `step`: the generator step,
  which sets the instance noise. The critic's spectral-norm vectors are read,
  not advanced.
  """
  t = spec.techniques
  if t.feature_matching and real is None:
    raise ValueError("feature matching needs the real batch: pass `real`")
  batch *= spec.generator_batch_multiple
  z = _this_device(spec, sample_noise(spec, key, _global_batch(spec, batch)))
  labels = None
  if spec.num_classes:  # Fresh uniform labels, as gan_cifar_resnet.py's generator update.
    labels = _this_device(spec, jax.random.randint(jax.random.fold_in(key, _LABEL_STREAM),
                                                   (_global_batch(spec, batch),), 0,
                                                   spec.num_classes))
    z = generator_input(spec, z, labels)

  def loss_fn(params):
    fake, gen_stats = apply_net(spec.generator, params, generator.batch_stats, z, True,
                                compute_dtype=spec.compute_dtype)
    fake = augmented(spec, jax.random.fold_in(key, _AUGMENT_STREAM), fake)
    inputs = (fake, real) if t.feature_matching else (fake,)
    if t.instance_noise:
      inputs = instance_noise(spec, key, techniques.instance_noise_std(t, step), *inputs)
    aux = {}
    if t.feature_matching:
      h_real, critic_stats = critic_features(spec, critic.params, critic.batch_stats, inputs[1],
                                             critic.spectral)
      h_fake, critic_stats = critic_features(spec, critic.params, critic_stats, inputs[0],
                                             critic.spectral)
      loss = techniques.feature_matching_loss(h_real, h_fake, spec.axis_name)
      aux.update(feature_matching_loss=loss)
    else:
      f_fake, critic_stats, _, logits = _apply_critic(spec, critic.params, critic.batch_stats,
                                                      critic.spectral, inputs[0], labels=labels)
      loss = losses.generator_loss(spec.objective, f_fake, spec.gan_generator_loss)
      if spec.acgan:
        class_loss = conditional.acgan_generator_loss(logits, labels)
        loss = loss + conditional.ACGAN_SCALE_G * class_loss
        aux.update(acgan_generator_loss=class_loss)
    if t.historical_averaging:
      penalty = techniques.historical_penalty(t.historical_averaging, params, generator.opt_state)
      loss = loss + penalty
      aux.update(generator_historical_penalty=penalty)
    return loss, (gen_stats, critic_stats, aux)

  (loss, (gen_stats, critic_stats, aux)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(generator.params)
  loss, aux, grads = _device_mean(spec, (loss, aux, grads))
  generator = _apply_updates(spec.generator_tx, generator, grads, gen_stats)
  metrics = {"generator_loss": loss, "generator_grad_norm": optax.tree.norm(grads), **aux}
  return generator, critic_stats, metrics


def iteration_keys(state: TrainState) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Keys of the current generator iteration: fake noise, critic, generator."""
  k_fake, k_critic, k_gen = jax.random.split(jax.random.fold_in(state.rng, state.step), 3)
  return k_fake, k_critic, k_gen


def per_update(fn, key: jax.Array, first: jax.Array | int, count: int) -> jax.Array:
  """`fn(fold_in(key, i))` for critic updates i = first .. first + count - 1,
  stacked: update i draws the same numbers however the updates are grouped."""
  return jax.vmap(lambda i: fn(jax.random.fold_in(key, i)))(first + jnp.arange(count))


def train_critic(spec: GanSpec, state: TrainState, real: jax.Array, first: jax.Array | int = 0,
                 unroll: bool = False) -> tuple[TrainState, Metrics]:
  """Critic updates `first` .. `first + k - 1` of the current generator
  iteration, one per leading slice of `real` ([k, batch, ...]; this device's
  share of the batch under pmap; uint8 images or float points); the step does
  not advance. Metrics are averaged over the k updates.

  Each update gets a fresh generated batch and its own key. The generator does
  not change during critic updates, so without batch norm all k fake batches
  come from one larger forward pass. `unroll` writes the updates out instead
  of looping: on XLA:CPU the weight gradient of a strided convolution inside
  a loop body is ~40x slower than outside one.
  """
  real, labels = split_real(real)
  count, batch = real.shape[:2]
  k_fake, k_critic, _ = iteration_keys(state)
  noise = per_update(lambda k: sample_noise(spec, k, _global_batch(spec, batch)), k_fake,
                     first, count)
  # A conditional run's fake batches have their real batches' labels.
  noise = generator_input(spec, _this_device(spec, noise, axis=1), labels)
  keys = per_update(lambda k: k, k_critic, first, count)
  indices = first + jnp.arange(count)
  update = _masked(spec, lambda critic, real_batch, fake, k, y: critic_step(
      spec, critic, real_to_float(spec, real_batch, k), fake, k, state.step, y))

  if state.generator.batch_stats:
    def body(carry, xs):
      gen_stats, critic = carry
      real_batch, z, k, i, y = xs
      fake, gen_stats = fake_batch(spec, state.generator.replace(batch_stats=gen_stats), z)
      critic, m = update(critic, real_batch, fake, k, y, index=i)
      return (gen_stats, critic), m

    (gen_stats, critic), metrics = jax.lax.scan(
        body, (state.generator.batch_stats, state.critic), (real, noise, keys, indices, labels),
        unroll=unroll)
    state = state.replace(generator=state.generator.replace(batch_stats=gen_stats))
  else:
    fakes, _ = fake_batch(spec, state.generator, noise.reshape(count * batch, -1))
    fakes = fakes.reshape(real.shape[:2] + fakes.shape[1:])

    def body(critic, xs):
      real_batch, fake, k, i, y = xs
      return update(critic, real_batch, fake, k, y, index=i)

    critic, metrics = jax.lax.scan(body, state.critic, (real, fakes, keys, indices, labels),
                                   unroll=unroll)
  if spec.critic_updates is None:
    return state.replace(critic=critic), {k: jnp.mean(v) for k, v in metrics.items()}
  applied = indices < spec.critic_updates  # A skipped update's values count for nothing,
  count = jnp.maximum(jnp.sum(applied), 1)  # not even a NaN.
  return state.replace(critic=critic), {
      k: jnp.sum(jnp.where(applied, v, 0.0)) / count for k, v in metrics.items()}


def _masked(spec: GanSpec, step_fn):
  """`step_fn(critic, ...)` as a function of the update's `index` too, which
  leaves the critic as it was for updates past `spec.critic_updates`."""
  if spec.critic_updates is None:
    return lambda critic, *args, index: step_fn(critic, *args)

  def step(critic, *args, index):
    new, metrics = step_fn(critic, *args)
    keep = index < spec.critic_updates
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, critic), metrics

  return step


def generator_iteration(spec: GanSpec, state: TrainState, real: jax.Array,
                        first: jax.Array | int = 0, unroll: bool = False
                        ) -> tuple[TrainState, Metrics]:
  """The last critic updates of a generator iteration (from `first`, one per
  leading slice of `real`), then the generator update: one XLA program, and
  with `first` = 0 the whole iteration. The step advances by one.

  Its metrics include `NONFINITE_PARAMS`, the number of non-finite parameters
  and batch statistics the iteration left: the host learns from the metrics it
  already reads whether the state is fit to be saved."""
  batch = split_real(real)[0].shape[1]
  state, metrics = train_critic(spec, state, real, first, unroll)
  _, k_critic, k_gen = iteration_keys(state)
  last_real = None
  if spec.techniques.feature_matching:
    # The real batch of the iteration's last critic update, as that update saw it.
    images = split_real(real)[0]
    last_real = real_to_float(spec, images[-1], jax.random.fold_in(k_critic,
                                                                   first + images.shape[0] - 1))
  generator, critic_stats, gen_metrics = generator_step(
      spec, state.generator, state.critic, k_gen, batch, last_real, state.step)
  critic = state.critic.replace(batch_stats=critic_stats)
  metrics.update(gen_metrics)
  if spec.techniques.instance_noise:
    metrics["instance_noise_std"] = techniques.instance_noise_std(spec.techniques, state.step)
  if spec.clip is not None:
    metrics["clipped_fraction"] = clipped_fraction(critic.params, spec.clip)
  metrics[NONFINITE_PARAMS] = count_nonfinite((generator.params, generator.batch_stats,
                                                critic.params, critic.batch_stats))
  average = state.generator_ema
  if spec.ema_decay:
    average = ema.update(average, generator, state.step, spec.ema_decay, spec.ema_start)
  return state.replace(step=state.step + 1, generator=generator, critic=critic,
                       generator_ema=average), metrics


def count_nonfinite(tree: PyTree) -> jax.Array:
  """How many entries of `tree`'s arrays are NaN or infinite (float32)."""
  return sum(jnp.sum(~jnp.isfinite(x)).astype(jnp.float32) for x in jax.tree.leaves(tree))
