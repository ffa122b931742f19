"""Pure update functions: critic update, generator update, one generator iteration.

Each takes the run's `GanSpec` first; the compiled program closes over it
(`functools.partial`), so what `jax.jit` sees is a function of arrays only:
(state, real batches) -> (state, metrics).

The updates know no training technique by name. A network's loss is the sum
of the terms the spec lists (terms.py: adversarial loss, penalty,
regularisers); every input the critic sees goes through the spec's transforms
(critic_inputs.py: DiffAugment, instance noise); the optimizers (optim.py)
carry weight clipping and historical averaging; the networks carry spectral
norm, minibatch discrimination and virtual batch norm.

Data parallelism: under `jax.jit` over a device Mesh (state replicated, batch
sharded) these functions need nothing: XLA partitions the global computation.
Under `jax.pmap` each device sees its shard of the batch; the spec's
`batch_axis` then averages gradients and metrics over the devices and has
random numbers drawn for the global batch, so every device computes what one
device computes on the whole batch: both paths run these same functions.

Gradient accumulation (`accumulation_steps` k > 1): each update's batch, with
every random number drawn for it, is split into k micro-batches whose
gradients are averaged; with a per-example critic the update equals the whole
batch's. Batch norm sees micro-batches: its statistics, and the running
averages (updated once per micro-batch), are those of the smaller batches.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from wgan_jax import ada, critic_inputs, ema, terms
from wgan_jax.batch_axis import BatchAxis
from wgan_jax.configs.schema import PRECISIONS
from wgan_jax.models.spectral import COLLECTION as SPECTRAL
from wgan_jax.state import NetState, PyTree, TrainState

Metrics = dict[str, jax.Array]
# Folded into the generator update's key for the labels of its samples.
_LABEL_STREAM = 0x6c61626c
# The metric that counts non-finite parameters and batch statistics after the
# update (0 when healthy).
NONFINITE_PARAMS = "nonfinite_params"
# Config `precision` -> the networks' compute dtype (None: float32 throughout).
COMPUTE_DTYPES = dict(zip(PRECISIONS, (None, jnp.bfloat16)))


@dataclasses.dataclass(frozen=True)
class GanSpec:
  """What the update functions need besides arrays, built from a config by
  `builders.make_spec`. A sweep builds one per model inside its program, so the
  numbers its terms and optimizers hold (a penalty weight, a clip bound, a
  learning rate) may be traced values."""
  generator: nn.Module
  critic: nn.Module
  generator_tx: optax.GradientTransformation
  critic_tx: optax.GradientTransformation
  critic_terms: tuple[terms.Term, ...]
  generator_terms: tuple[terms.Term, ...]
  noise_dim: int
  # On every input of the critic, real and generated, in both updates.
  transforms: tuple[critic_inputs.Transform, ...] = ()
  # Class-conditional training (models/conditional.py): the classes (0: none).
  num_classes: int = 0
  # Mixed precision: the networks compute in this dtype (bfloat16) from float32
  # params, optimizer states and losses; None: float32 throughout.
  compute_dtype: jnp.dtype | None = None
  # The pmap axis the updates run under (the modules' batch norm must use the same
  # one: models.build_*(axis_name=...)), or the whole batch under jit.
  batch_axis: BatchAxis = BatchAxis()
  # The generator update's batch as a multiple of the critic's.
  generator_batch_multiple: int = 1
  accumulation_steps: int = 1
  # uint8 real images -> 2 (x / 256 - 0.5) + U(0, 1/128) instead of x / 127.5 - 1.
  dequantize: bool = False
  # Real images flipped left-right at random (`data.mirror`); generated ones never.
  mirror: bool = False
  # The critic's value of an example depends on its batch (minibatch
  # discrimination): real and generated batches go through it apart, as batch norm's do.
  batch_dependent_critic: bool = False
  # How many of an iteration's critic updates apply (a sweep over n_critic runs
  # the largest count for every model; this model's later updates change
  # nothing); None: all of them.
  n_critic: jax.Array | None = None
  # Weight clipping's bound (reported as the share of weights at it); None: none.
  clip: float | jax.Array | None = None
  # The generator's moving average (wgan_jax/ema.py): its decay (0: none) and the
  # generator step from which it averages (before: it copies).
  ema_decay: float = 0.0
  ema_start: int = 0
  # Adaptive augmentation's controller (wgan_jax/ada.py); None: no ADA. Its
  # probability is the state's, read by `transforms` (critic_inputs.AdaptiveAugment).
  ada: ada.Controller | None = None


# ----------------------------------------------------------------------------
# Running the networks.
# ----------------------------------------------------------------------------


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


def apply_net(module: nn.Module, params: PyTree, batch_stats: PyTree, x: jax.Array,
              train: bool, spectral: PyTree | None = None,
              compute_dtype: jnp.dtype | None = None) -> tuple[jax.Array, PyTree]:
  """Runs a network; in training, batch norm uses (and updates) batch statistics.
  Spectral norm's vectors (`spectral`) are read, never advanced (see
  `_critic_train`). `compute_dtype` (e.g. bfloat16): the params and input are
  cast to it for the computation, the output comes back in float32."""
  out, collections = _apply(module, params, {"batch_stats": batch_stats, SPECTRAL: spectral},
                            x, train, ("batch_stats",) if train else (), compute_dtype)
  return out, collections["batch_stats"]


def init_net(module: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
             x: jax.Array, clip: float | jax.Array | None = None,
             labels: jax.Array | None = None) -> NetState:
  """A network's initial state for input like `x` (and `labels`, a conditional
  critic's); with `clip`, its weights projected into [-clip, clip]."""
  variables = module.init(key, *((x,) if labels is None else (x, labels)), train=False)
  params = variables["params"]
  if clip is not None:
    # Start inside the feasible set, so weights lie in [-c, c] at every step.
    params = jax.tree.map(lambda p: jnp.clip(p, -clip, clip), params)
  return NetState(params=params, batch_stats=variables.get("batch_stats", {}),
                  opt_state=tx.init(params), spectral=variables.get(SPECTRAL, {}))


def _output(spec: GanSpec, out) -> terms.CriticOutput:
  return terms.CriticOutput(*out) if spec.num_classes else terms.CriticOutput(out)


def _critic_train(spec: GanSpec, params: PyTree, batch_stats: PyTree, spectral: PyTree,
                  x: jax.Array, labels: jax.Array | None = None, advance: bool = False
                  ) -> tuple[terms.CriticOutput, PyTree, PyTree]:
  """The critic in training mode: its output, batch stats and spectral vectors.
  `advance`: one step of spectral norm's power iteration is kept, which only
  the critic's own update asks for, once per update."""
  mutable = ("batch_stats", *((SPECTRAL,) if advance else ()))
  out, collections = _apply(spec.critic, params, {"batch_stats": batch_stats, SPECTRAL: spectral},
                            x, True, mutable, spec.compute_dtype, labels)
  return _output(spec, out), collections["batch_stats"], collections[SPECTRAL]


def critic_values(spec: GanSpec, critic: NetState, x: jax.Array,
                  labels: jax.Array | None = None) -> jax.Array:
  """f(x) in evaluation mode (running batch statistics, spectral vectors as saved)."""
  out, _ = _apply(spec.critic, critic.params, {"batch_stats": critic.batch_stats,
                                               SPECTRAL: critic.spectral},
                  x, False, (), None, labels)
  return _output(spec, out).values


def critic_features(spec: GanSpec, params: PyTree, batch_stats: PyTree, x: jax.Array,
                    spectral: PyTree | None = None) -> tuple[jax.Array, PyTree]:
  """The critic's last hidden features of `x` (sown as "intermediates"/"features"),
  in training mode; and its new batch stats."""
  variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {}),
               **({SPECTRAL: spectral} if spectral else {})}
  mutable = ["intermediates", *(["batch_stats"] if batch_stats else [])]
  _, state = spec.critic.apply(variables, x, train=True, mutable=mutable)
  return state["intermediates"]["features"][0], state.get("batch_stats", batch_stats)


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


def sample_noise(spec: GanSpec, key: jax.Array, n: int) -> jax.Array:
  return jax.random.normal(key, (n, spec.noise_dim), jnp.float32)


def fake_batch(spec: GanSpec, generator: NetState, noise: jax.Array
               ) -> tuple[jax.Array, PyTree]:
  """Samples for `noise`, in training mode (batch statistics of this batch,
  as in the reference code); returns them and the new batch stats."""
  return apply_net(spec.generator, generator.params, generator.batch_stats, noise, train=True,
                   compute_dtype=spec.compute_dtype)


def real_to_float(spec: GanSpec, real: jax.Array, key: jax.Array) -> jax.Array:
  """A real batch as the critic takes it (critic_inputs.real_to_float)."""
  return critic_inputs.real_to_float(real, key, spec.dequantize, spec.batch_axis, spec.mirror)


def reading_state(spec: GanSpec, state: TrainState) -> GanSpec:
  """`spec` with its transforms reading what `state` holds for them (ADA's p)."""
  if not state.ada:
    return spec
  return dataclasses.replace(
      spec, transforms=critic_inputs.with_probability(spec.transforms, state.ada["p"]))


# ----------------------------------------------------------------------------
# Updates.
# ----------------------------------------------------------------------------


def _apply_updates(tx: optax.GradientTransformation, net: NetState, grads: PyTree,
                   batch_stats: PyTree) -> NetState:
  updates, opt_state = tx.update(grads, net.opt_state, net.params)
  return NetState(params=optax.apply_updates(net.params, updates),
                  batch_stats=batch_stats, opt_state=opt_state, spectral=net.spectral)


LossFn = Callable[[PyTree, PyTree, PyTree, bool], tuple[jax.Array, tuple[PyTree, Metrics]]]


def accumulated_grads(loss_fn: LossFn, params: PyTree, carry: PyTree, batch: PyTree, k: int,
                      start: Callable[[PyTree, PyTree, PyTree], PyTree] | None = None
                      ) -> tuple[jax.Array, PyTree, Metrics, PyTree]:
  """(loss, carry, metrics, grads) of `loss_fn(params, carry, batch, first)`
  over `batch` (leaves with a leading batch axis) split into `k` micro-batches:
  loss, metrics and gradients averaged, `carry` (batch statistics, spectral
  vectors) threaded through them in order. Whole (k = 1), the batch is the
  first (`first` True: spectral norm advances in its pass); split, `start(params,
  carry, first micro-batch)` does what the first pass would have done to the
  carry, and every micro-batch runs in one loop with `first` False, so one
  micro-batch's activations are alive at a time."""
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if k == 1:
    (loss, (carry, metrics)), grads = grad_fn(params, carry, batch, True)
    return loss, carry, metrics, grads
  # Micro-batch j takes rows j, j + k, ...: each device's block of a sharded batch
  # holds its share of every micro-batch, so nothing crosses devices.
  micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1),
                       batch)
  if start is not None:
    carry = start(params, carry, jax.tree.map(lambda x: x[0], micro))
  (_, (_, shapes)), grad_shapes = jax.eval_shape(
      lambda p, c, b: grad_fn(p, c, b, False), params, carry, jax.tree.map(lambda x: x[0], micro))
  zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)

  def body(acc, one):
    loss, carry, metrics, grads = acc
    (l, (carry, m)), g = grad_fn(params, carry, one, False)
    return (loss + l, carry, jax.tree.map(jnp.add, metrics, m), jax.tree.map(jnp.add, grads, g)
            ), None

  (loss, carry, metrics, grads), _ = jax.lax.scan(
      body, (jnp.zeros((), jnp.float32), carry, zeros(shapes), zeros(grad_shapes)), micro)
  mean = lambda tree: jax.tree.map(lambda x: x / k, tree)
  return loss / k, carry, mean(metrics), mean(grads)


def _transformed(spec: GanSpec, key: jax.Array, step, *xs: jax.Array) -> tuple[jax.Array, ...]:
  """Inputs `xs` of an update through the spec's transforms (input i, stream i)."""
  return tuple(critic_inputs.apply_all(
      spec.transforms, x, critic_inputs.draw_all(spec.transforms, key, i, x.shape,
                                                 spec.batch_axis), step)
               for i, x in enumerate(xs))


def critic_step(spec: GanSpec, critic: NetState, real: jax.Array, fake: jax.Array,
                key: jax.Array, step: jax.Array | int = 0, labels: jax.Array | None = None
                ) -> tuple[NetState, Metrics]:
  """One critic update on one real and one generated batch (floats; this
  device's shards under pmap); `step`, the generator step, sets the
  transforms (instance noise). `labels` (conditional runs): the real batch's
  classes, which the fake batch was generated with (gan_cifar_resnet.py)."""
  real, fake = _transformed(spec, key, step, real, jax.lax.stop_gradient(fake))
  prepared = terms.prepare(spec.critic_terms, real, fake, key, spec.batch_axis)
  # Batch norm (and minibatch discrimination) sees the real and the fake batch
  # separately, as in the references; a per-example critic takes both at once.
  apart = bool(critic.batch_stats) or spec.batch_dependent_critic

  def loss_fn(params, carry, batch, first):
    stats, spectral = carry
    real, fake, labels, prepared = batch
    if apart:
      on_real, stats, spectral = _critic_train(spec, params, stats, spectral, real, labels,
                                               advance=first)
      on_fake, stats, _ = _critic_train(spec, params, stats, spectral, fake, labels)
    else:
      both = None if labels is None else jnp.concatenate([labels, labels])
      on_both, stats, spectral = _critic_train(spec, params, stats, spectral,
                                               jnp.concatenate([real, fake]), both, first)
      on_real, on_fake = (jax.tree.map(lambda a: a[:real.shape[0]], on_both),
                          jax.tree.map(lambda a: a[real.shape[0]:], on_both))
    view = terms.CriticView(
        real=real, fake=fake, labels=labels, on_real=on_real, on_fake=on_fake,
        critic_at=lambda x: _critic_train(spec, params, stats, spectral, x, labels)[0].values,
        params=params, opt_state=critic.opt_state)
    loss, metrics = terms.total(spec.critic_terms, view, prepared)
    return loss, ((stats, spectral), metrics)

  def start(params, carry, first_micro_batch):
    """Spectral norm's power step, as the whole batch's first pass takes it (it
    reads the weights alone: one example's pass suffices)."""
    stats, spectral = carry
    if not spectral:
      return carry
    real, _, labels, _ = first_micro_batch
    _, _, spectral = _critic_train(spec, params, stats, spectral, real[:1],
                                   None if labels is None else labels[:1], advance=True)
    return stats, spectral

  loss, (stats, spectral), aux, grads = accumulated_grads(
      loss_fn, critic.params, (critic.batch_stats, critic.spectral),
      (real, fake, labels, prepared), spec.accumulation_steps, start)
  loss, aux, grads = spec.batch_axis.mean((loss, aux, grads))
  critic = _apply_updates(spec.critic_tx, critic, grads, stats).replace(spectral=spectral)
  return critic, {"critic_loss": loss, "critic_grad_norm": optax.tree.norm(grads), **aux}


class _CriticPasses:
  """The critic as the generator's terms run it while the update is traced
  (training mode, spectral vectors read only): each pass carries the critic's
  batch statistics on to the next, and a batch seen twice (the samples, by the
  adversarial and the class term) is run once."""

  def __init__(self, spec: GanSpec, critic: NetState, labels: jax.Array | None):
    self._spec, self._critic, self._labels = spec, critic, labels
    self.batch_stats = critic.batch_stats
    self._seen: list[tuple[jax.Array, terms.CriticOutput]] = []

  def output(self, x: jax.Array) -> terms.CriticOutput:
    for seen, out in self._seen:
      if seen is x:
        return out
    out, self.batch_stats, _ = _critic_train(self._spec, self._critic.params, self.batch_stats,
                                             self._critic.spectral, x, self._labels)
    self._seen.append((x, out))
    return out

  def features(self, x: jax.Array | None) -> jax.Array:
    if x is None:
      raise ValueError("the generator's terms need the real batch: pass `real`")
    h, self.batch_stats = critic_features(self._spec, self._critic.params, self.batch_stats, x,
                                          self._critic.spectral)
    return h


def generator_step(spec: GanSpec, generator: NetState, critic: NetState,
                   key: jax.Array, batch: int, real: jax.Array | None = None,
                   step: jax.Array | int = 0) -> tuple[NetState, PyTree, Metrics]:
  """One generator update against the current critic.

  Returns the new generator, the critic's batch statistics (its forward pass
  runs in training mode, as in the reference) and metrics. `batch` is this
  device's share of the critic batch under pmap; the generator's batch is
  `generator_batch_multiple` times it. `real` (floats; this device's share):
  the iteration's last real batch, for terms that compare with real data
  (feature matching); `step`: the generator step, which sets the transforms.
  """
  axis = spec.batch_axis
  n = axis.size(batch * spec.generator_batch_multiple)
  z = axis.local(sample_noise(spec, key, n))
  labels = None
  if spec.num_classes:  # Fresh uniform labels, as gan_cifar_resnet.py's generator update.
    labels = axis.local(jax.random.randint(jax.random.fold_in(key, _LABEL_STREAM), (n,), 0,
                                           spec.num_classes))
    z = generator_input(spec, z, labels)
  fake_shape = jax.eval_shape(lambda z: fake_batch(spec, generator, z)[0], z).shape
  drawn = (critic_inputs.draw_all(spec.transforms, key, 0, fake_shape, axis),
           None if real is None else critic_inputs.draw_all(spec.transforms, key, 1, real.shape,
                                                            axis))

  def loss_fn(params, carry, batch, first):
    del first
    gen_stats, critic_stats = carry
    z, labels, real, (drawn_fake, drawn_real) = batch
    fake, gen_stats = apply_net(spec.generator, params, gen_stats, z, True,
                                compute_dtype=spec.compute_dtype)
    fake = critic_inputs.apply_all(spec.transforms, fake, drawn_fake, step)
    if real is not None:
      real = critic_inputs.apply_all(spec.transforms, real, drawn_real, step)
    passes = _CriticPasses(spec, critic.replace(batch_stats=critic_stats), labels)
    view = terms.GeneratorView(fake=fake, real=real, labels=labels, critic=passes.output,
                               critic_features=passes.features, params=params,
                               opt_state=generator.opt_state)
    loss, metrics = terms.total(spec.generator_terms, view, (None,) * len(spec.generator_terms))
    return loss, ((gen_stats, passes.batch_stats), metrics)

  loss, (gen_stats, critic_stats), aux, grads = accumulated_grads(
      loss_fn, generator.params, (generator.batch_stats, critic.batch_stats),
      (z, labels, real, drawn), spec.accumulation_steps)
  loss, aux, grads = axis.mean((loss, aux, grads))
  generator = _apply_updates(spec.generator_tx, generator, grads, gen_stats)
  metrics = {"generator_loss": loss, "generator_grad_norm": optax.tree.norm(grads), **aux}
  return generator, critic_stats, metrics


# ----------------------------------------------------------------------------
# One generator iteration.
# ----------------------------------------------------------------------------


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
  spec = reading_state(spec, state)
  axis = spec.batch_axis
  noise = per_update(lambda k: sample_noise(spec, k, axis.size(batch)), k_fake, first, count)
  # A conditional run's fake batches have their real batches' labels.
  noise = generator_input(spec, axis.local(noise, axis=1), labels)
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
  if state.ada:  # Every update's statistic, for the controller (a sweep has no ADA).
    state = state.replace(ada=ada.accumulate(state.ada, metrics[ada.RT_METRIC]))
  if spec.n_critic is None:
    return state.replace(critic=critic), {k: jnp.mean(v) for k, v in metrics.items()}
  applied = indices < spec.n_critic  # A skipped update's values count for nothing,
  count = jnp.maximum(jnp.sum(applied), 1)  # not even a NaN.
  return state.replace(critic=critic), {
      k: jnp.sum(jnp.where(applied, v, 0.0)) / count for k, v in metrics.items()}


def _masked(spec: GanSpec, step_fn):
  """`step_fn(critic, ...)` as a function of the update's `index` too, which
  leaves the critic as it was for updates past `spec.n_critic`."""
  if spec.n_critic is None:
    return lambda critic, *args, index: step_fn(critic, *args)

  def step(critic, *args, index):
    new, metrics = step_fn(critic, *args)
    keep = index < spec.n_critic
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, critic), metrics

  return step


def clipped_fraction(params: PyTree, clip: float | jax.Array) -> jax.Array:
  """Share of the weights sitting at ±clip (saturated by the projection)."""
  leaves = jax.tree.leaves(params)
  # The projection lands two ulps inside the bound (see optim.clip_weights).
  at_bound = sum(jnp.sum(jnp.abs(p) >= clip * (1 - 1e-6)) for p in leaves)
  return at_bound / sum(p.size for p in leaves)


def generator_iteration(spec: GanSpec, state: TrainState, real: jax.Array,
                        first: jax.Array | int = 0, unroll: bool = False
                        ) -> tuple[TrainState, Metrics]:
  """The last critic updates of a generator iteration (from `first`, one per
  leading slice of `real`), then the generator update: one XLA program, and
  with `first` = 0 the whole iteration. The step advances by one.

  Its metrics include `NONFINITE_PARAMS`, the number of non-finite parameters
  and batch statistics the iteration left: the host learns from the metrics it
  already reads whether the state is fit to be saved."""
  images = split_real(real)[0]
  spec = reading_state(spec, state)
  state, metrics = train_critic(spec, state, real, first, unroll)
  _, k_critic, k_gen = iteration_keys(state)
  # The real batch of the iteration's last critic update, as that update saw it.
  last_real = real_to_float(spec, images[-1],
                            jax.random.fold_in(k_critic, first + images.shape[0] - 1))
  generator, critic_stats, gen_metrics = generator_step(
      spec, state.generator, state.critic, k_gen, images.shape[1], last_real, state.step)
  critic = state.critic.replace(batch_stats=critic_stats)
  metrics.update(gen_metrics)
  metrics.update(critic_inputs.metrics(spec.transforms, state.step))
  if spec.clip is not None:
    metrics["clipped_fraction"] = clipped_fraction(critic.params, spec.clip)
  metrics[NONFINITE_PARAMS] = count_nonfinite((generator.params, generator.batch_stats,
                                                critic.params, critic.batch_stats))
  average = state.generator_ema
  if spec.ema_decay:
    average = ema.update(average, generator, state.step, spec.ema_decay, spec.ema_start)
  adaptive = state.ada
  if spec.ada is not None:
    adaptive = ada.adjust(adaptive, spec.ada, state.step, spec.batch_axis.size(images.shape[1]))
  return state.replace(step=state.step + 1, generator=generator, critic=critic,
                       generator_ema=average, ada=adaptive), metrics


def count_nonfinite(tree: PyTree) -> jax.Array:
  """How many entries of `tree`'s arrays are NaN or infinite (float32)."""
  return sum(jnp.sum(~jnp.isfinite(x)).astype(jnp.float32) for x in jax.tree.leaves(tree))
