"""The critic's and the generator's losses as sums of terms.

A term is a small pure function of what its update sees (`CriticView`,
`GeneratorView`) returning (value, metrics to log); the update minimises
sum(weight * value) over the terms it is given and never asks which they are.
A term whose numbers do not depend on the weights (a penalty's points) draws
them in `prepare`, once per update for the whole batch, so a batch split into
micro-batches (`accumulation_steps`) sees the numbers the whole batch would.

The registries below build each network's terms from a config, in order;
a builder returns None where its term is off. A new loss term or regulariser
is one builder here (and its config key in configs/schema.py).

Critic: the adversarial loss (losses.py), AC-GAN's class loss on real data,
historical averaging, the gradient penalty (penalties.py), and ADA's statistic
(a zero term that logs what the controller reads of the critic's outputs).
Generator: the adversarial loss or feature matching, AC-GAN's class loss on its
samples, historical averaging.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from wgan_jax import ada, losses, penalties, techniques
from wgan_jax.batch_axis import BatchAxis
from wgan_jax.models import registry
from wgan_jax.state import PyTree

Metrics = dict[str, jax.Array]

class CriticOutput(NamedTuple):
  """The critic on a batch: values f(x) [n], and a conditional critic's class
  logits [n, classes] (None for others)."""
  values: jax.Array
  logits: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class CriticView:
  """What a critic term sees of one (micro-)batch inside the critic's loss."""
  real: jax.Array             # as the critic saw them (scaled, augmented, noised)
  fake: jax.Array
  labels: jax.Array | None    # the classes of both (conditional runs)
  on_real: CriticOutput
  on_fake: CriticOutput
  critic_at: Callable[[jax.Array], jax.Array]  # f at other points, same weights
  params: PyTree
  opt_state: PyTree


@dataclasses.dataclass(frozen=True)
class GeneratorView:
  """What a generator term sees of one (micro-)batch inside the generator's loss.
  `critic` and `critic_features` run the critic in training mode, each pass
  carrying its batch statistics on to the next (the update keeps the last)."""
  fake: jax.Array             # as the critic sees them (augmented, noised)
  real: jax.Array             # the iteration's last real batch, as the critic saw it
  labels: jax.Array | None    # the classes the samples were generated with
  critic: Callable[[jax.Array], CriticOutput]  # training mode; runs on any batch
  critic_features: Callable[[jax.Array], jax.Array]  # its last hidden features
  params: PyTree
  opt_state: PyTree


@dataclasses.dataclass(frozen=True)
class Term:
  """`weight * loss(view, prepared)[0]` is added to the network's loss; the
  metrics are logged. `prepare(real, fake, key, axis)`, if any, draws what the
  term needs that does not depend on the weights, for the whole batch (one
  leading batch axis, so micro-batches split it)."""
  name: str
  loss: Callable[[Any, Any], tuple[jax.Array, Metrics]]
  weight: float | jax.Array = 1.0
  prepare: Callable[[jax.Array, jax.Array, jax.Array, BatchAxis], PyTree] | None = None


def total(terms: tuple[Term, ...], view, prepared: tuple) -> tuple[jax.Array, Metrics]:
  """The sum of the weighted terms on `view`, and all their metrics."""
  loss, metrics = None, {}
  for term, extra in zip(terms, prepared):
    value, logged = term.loss(view, extra)
    value = value if isinstance(term.weight, float) and term.weight == 1.0 else term.weight * value
    loss = value if loss is None else loss + value
    metrics.update(logged)
  return loss, metrics


def prepare(terms: tuple[Term, ...], real: jax.Array, fake: jax.Array, key: jax.Array,
            axis: BatchAxis) -> tuple:
  """Each term's prepared numbers for a whole batch (None where it needs none)."""
  return tuple(t.prepare(real, fake, key, axis) if t.prepare else None for t in terms)


# ----------------------------------------------------------------------------
# The terms.
# ----------------------------------------------------------------------------


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of examples whose arg-max logit is their label."""
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def adversarial_critic(loss: str, label_smoothing: float = 0.0) -> Term:
  def fn(view: CriticView, _):
    f_real, f_fake = view.on_real.values, view.on_fake.values
    return (losses.critic_loss(loss, f_real, f_fake, label_smoothing),
            losses.critic_metrics(loss, f_real, f_fake))
  return Term("adversarial", fn)


def adversarial_generator(loss: str) -> Term:
  def fn(view: GeneratorView, _):
    return losses.generator_loss(loss, view.critic(view.fake).values), {}
  return Term("adversarial", fn)


def penalty(name: str, weight: float | jax.Array) -> Term:
  """Penalty `name` (penalties.py) at its points, logged as NAME_penalty and
  NAME_input_grad_norm (the mean norm there)."""
  spec = penalties.PENALTY[name]

  def fn(view: CriticView, points):
    sq_norms, norms = penalties.input_grad_norms(view.critic_at, points)
    value = spec.value(sq_norms, norms)
    return value, {f"{name}_penalty": value, f"{name}_input_grad_norm": jnp.mean(norms)}
  return Term(name, fn, weight, prepare=spec.points)


def acgan_critic(weight: float) -> Term:
  """AC-GAN: the critic learns the classes of real data only (the reference's);
  its accuracy on the samples (generated with the real batch's labels) is logged."""
  def fn(view: CriticView, _):
    value = _cross_entropy(view.on_real.logits, view.labels)
    return value, {"acgan_critic_loss": value,
                   "acgan_real_accuracy": accuracy(view.on_real.logits, view.labels),
                   "acgan_fake_accuracy": accuracy(view.on_fake.logits, view.labels)}
  return Term("acgan", fn, weight)


def ada_statistic(loss: str, axis: BatchAxis) -> Term:
  """ADA's overfitting statistic r on the critic's outputs (ada.py), logged as
  `ada.RT_METRIC` for the controller to read; it adds nothing to the loss."""
  def fn(view: CriticView, _):
    rt = ada.overfitting(loss, view.on_real.values, view.on_fake.values, axis)
    return jnp.zeros((), jnp.float32), {ada.RT_METRIC: rt}
  return Term("ada", fn)


def acgan_generator(weight: float) -> Term:
  """AC-GAN: the samples should be classified as the class they were asked for."""
  def fn(view: GeneratorView, _):
    value = _cross_entropy(view.critic(view.fake).logits, view.labels)
    return value, {"acgan_generator_loss": value}
  return Term("acgan", fn, weight)


def historical_averaging(network: str, weight: float) -> Term:
  """||params - their running mean||^2 (Salimans et al.; techniques.py keeps the mean)."""
  def fn(view, _):
    value = techniques.historical_distance(view.params, view.opt_state)
    return value, {f"{network}_historical_penalty": value}
  return Term("historical_averaging", fn, weight)


def feature_matching(axis: BatchAxis) -> Term:
  """Salimans et al.: the generator matches the critic's mean last hidden
  features on real data instead of fooling it."""
  def fn(view: GeneratorView, _):
    h_real = view.critic_features(view.real)
    h_fake = view.critic_features(view.fake)
    value = techniques.feature_matching_loss(h_real, h_fake, axis.name)
    return value, {"feature_matching_loss": value}
  return Term("feature_matching", fn)


# ----------------------------------------------------------------------------
# Which terms a config asks for.
# ----------------------------------------------------------------------------

# (config, swept values, batch axis) -> the term, or None where it is off.
Builder = Callable[[ml_collections.ConfigDict, Mapping[str, Any], BatchAxis], Term | None]


def _acgan(config: ml_collections.ConfigDict) -> bool:
  return registry.num_classes(config) > 0 and config.model.critic.head == "acgan"


CRITIC_TERMS: dict[str, Builder] = {
    "adversarial": lambda c, swept, axis: adversarial_critic(
        c.loss, float(c.techniques.label_smoothing)),
    "acgan": lambda c, swept, axis: (
        acgan_critic(float(c.acgan.critic_weight)) if _acgan(c) else None),
    "historical_averaging": lambda c, swept, axis: (
        historical_averaging("critic", float(c.techniques.historical_averaging))
        if c.techniques.historical_averaging else None),
    "penalty": lambda c, swept, axis: (
        penalty(c.penalty, swept.get("penalty_weight", float(c.penalty_weight)))
        if c.penalty != "none" else None),
    "ada": lambda c, swept, axis: ada_statistic(c.loss, axis) if c.ada.enabled else None,
}
GENERATOR_TERMS: dict[str, Builder] = {
    "adversarial": lambda c, swept, axis: (
        None if c.techniques.feature_matching else adversarial_generator(c.loss)),
    "feature_matching": lambda c, swept, axis: (
        feature_matching(axis) if c.techniques.feature_matching else None),
    "acgan": lambda c, swept, axis: (
        acgan_generator(float(c.acgan.generator_weight)) if _acgan(c) else None),
    "historical_averaging": lambda c, swept, axis: (
        historical_averaging("generator", float(c.techniques.historical_averaging))
        if c.techniques.historical_averaging else None),
}


def build(registry_: Mapping[str, Builder], config: ml_collections.ConfigDict,
          swept: Mapping[str, Any] | None = None, axis: BatchAxis = BatchAxis()
          ) -> tuple[Term, ...]:
  """The terms of `registry_` (CRITIC_TERMS or GENERATOR_TERMS) that `config` turns on."""
  built = (builder(config, swept or {}, axis) for builder in registry_.values())
  return tuple(t for t in built if t is not None)
