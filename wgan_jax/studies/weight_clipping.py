"""Weight clipping's failure modes (WGAN-GP paper, Section 3, Figure 1b-c).

A deep critic (an MLP of 12 ReLU layers, no normalisation) is trained on the
Swiss roll against a fixed generated distribution, once under weight clipping
at c = 0.1, 0.01 and 0.001 (RMSProp, the WGAN paper's critic optimizer) and
once with the gradient penalty (Adam, the WGAN-GP paper's). Then, per layer:

- the norm of the Wasserstein loss's gradient with respect to the layer's
  weights: under clipping it explodes (c = 0.1) or vanishes (c = 0.01, 0.001)
  by orders of magnitude against the penalty's;
- the norm of the critic's gradient with respect to the layer's
  pre-activations (what backpropagation carries down): under clipping it grows
  or shrinks geometrically from layer to layer, under the penalty it does not;
- the weights' histogram: clipping piles them at +-c (`train/clipped_fraction`,
  as the trainer logs it), the penalty does not.

The generator is held fixed so that the critic alone is measured: the
failure is the constrained critic's, whatever the generator does.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import updates
from wgan_jax.data.toy import get_toy_dataset
from wgan_jax.studies import critics, report

NAME = "weight_clipping"
DESCRIPTION = ("WGAN-GP paper, Figure 1b-c: a 12-layer critic's gradients explode (c = 0.1) or "
               "vanish (c = 0.01, 0.001) under weight clipping, not under the gradient "
               "penalty; clipping piles the weights at +-c")

# (label, setup, clip): setup is critics.SETUP_LOSSES's key.
CRITICS = (("clip c=0.1", "wgan", 0.1), ("clip c=0.01", "wgan", 0.01),
           ("clip c=0.001", "wgan", 0.001), ("gradient penalty", "wgan-gp", 0.0))
# float32 gradients below this are reported as 0 (they underflowed).
FLOOR = 1e-30


@dataclasses.dataclass(frozen=True)
class Settings:
  depth: int = 12               # hidden layers (13 weight matrices with the output's)
  features: int = 128
  steps: int = 2000             # critic updates
  batch: int = 256
  rmsprop_lr: float = 5e-5      # under clipping (WGAN paper)
  adam_lr: float = 1e-4         # with the penalty (WGAN-GP paper: Adam(1e-4, 0.5, 0.9))
  penalty_weight: float = 10.0
  fake_std: float = 0.5         # the fixed generated distribution: N(0, fake_std^2 I)
  measure: int = 2048           # samples of each side for the gradients
  bins: int = 60
  seed: int = 0


FULL = Settings()
TINY = Settings(steps=300)


def _layers(params: dict) -> list[str]:
  """The critic's Dense layers from the input's to the output's."""
  return sorted(params, key=lambda name: int(name.rsplit("_", 1)[1]))


def _forward(params: dict, x: jax.Array, shifts: list[jax.Array]) -> jax.Array:
  """The MLP critic's function, each layer's pre-activation moved by
  `shifts[l]` (zeros: the critic itself), so that its gradient with respect to
  the shifts is the gradient with respect to the pre-activations."""
  names = _layers(params)
  for name, shift in zip(names[:-1], shifts):
    x = jax.nn.relu(x @ params[name]["kernel"] + params[name]["bias"] + shift)
  return (x @ params[names[-1]]["kernel"] + params[names[-1]]["bias"])[:, 0]


def _measured(params: dict, real: jax.Array, fake: jax.Array) -> dict[str, jax.Array]:
  """Per layer: |grad of E f(fake) - E f(real) w.r.t. the weights| and the
  RMS over samples of |df/d(pre-activation)|."""
  names = _layers(params)

  def wasserstein_loss(p):
    return jnp.mean(_forward(p, fake, [0.0] * len(names))) - jnp.mean(
        _forward(p, real, [0.0] * len(names)))

  weight_grads = jax.grad(wasserstein_loss)(params)
  both = jnp.concatenate([real, fake])
  shifts = [jnp.zeros((both.shape[0], params[n]["kernel"].shape[1])) for n in names[:-1]]
  signal = jax.grad(lambda s: jnp.sum(_forward(params, both, s)))(shifts)
  return {
      "weight_grad_norm": jnp.stack([jnp.linalg.norm(weight_grads[n]["kernel"]) for n in names]),
      "signal_norm": jnp.stack([jnp.sqrt(jnp.mean(jnp.sum(g ** 2, axis=1))) for g in signal]),
  }


def train_and_measure(setup: str, clip: float, s: Settings) -> dict[str, Any]:
  """One critic trained as `setup` ("wgan" clipped at `clip`, "wgan-gp"), then measured."""
  data = get_toy_dataset("swissroll")
  net = critics.mlp_critic(s.features, s.depth)
  k_init, k_train, k_real, k_fake = jax.random.split(jax.random.PRNGKey(s.seed), 4)
  params = net.init(k_init, jnp.zeros((1, 2)))["params"]

  def fake(key, n):
    return s.fake_std * jax.random.normal(key, (n, 2))

  def loss_fn(p, k):
    k1, k2, k3 = jax.random.split(k, 3)
    return critics.critic_loss(setup, lambda x: net.apply({"params": p}, x),
                               data.sample(k1, s.batch), fake(k2, s.batch), k3, s.penalty_weight)

  tx = (critics.clipped_rmsprop(s.rmsprop_lr, clip) if setup == "wgan"
        else critics.adam(s.adam_lr))

  @jax.jit
  def train(params):
    params, _ = critics.fit(loss_fn, params, tx, k_train, s.steps)
    measured = _measured(params, data.sample(k_real, s.measure), fake(k_fake, s.measure))
    # The same function as the network's (what the trainer would run).
    both = jnp.concatenate([data.sample(k_real, 8), fake(k_fake, 8)])
    mismatch = jnp.max(jnp.abs(net.apply({"params": params}, both)
                               - _forward(params, both, [0.0] * (s.depth + 1))))
    return params, measured, mismatch

  params, measured, mismatch = train(params)
  if float(mismatch) > 1e-4 * (1 + float(jnp.max(jnp.abs(measured["signal_norm"])))):
    raise report.StudyError(f"{NAME}: the measured forward pass differs from the critic's by "
                            f"{float(mismatch):.3g}")
  kernels = np.concatenate([np.ravel(params[n]["kernel"]) for n in _layers(params)])
  span = clip if clip else float(np.max(np.abs(kernels)))
  counts, edges = np.histogram(kernels, bins=s.bins, range=(-span, span))
  grads = np.asarray(measured["weight_grad_norm"], np.float64)
  signal = np.asarray(measured["signal_norm"], np.float64)
  return {
      "weight_grad_norm": np.where(grads < FLOOR, 0.0, grads),
      "signal_norm": np.where(signal < FLOOR, 0.0, signal),
      # How many times the signal grows (> 1) or shrinks (< 1) per layer, input to output.
      "signal_ratio_per_layer": float(np.exp(np.mean(np.diff(np.log(np.maximum(signal, FLOOR)))))),
      "signal_span": float(np.max(signal) / max(np.min(signal), FLOOR)),
      "clipped_fraction": float(updates.clipped_fraction(params, clip)) if clip else None,
      # Share of the weights within 5% of the largest |w| (of c under clipping).
      "share_at_extremes": float(np.mean(np.abs(kernels) >= 0.95 * span)),
      "histogram": {"counts": counts, "edges": edges},
  }


def _figure(results: dict[str, dict[str, Any]]):
  fig, (ax_w, ax_s, ax_hc, ax_hp) = report.subplots(1, 4, figsize=(20, 4.4))
  colors = dict(zip(results, ("tab:red", "tab:orange", "tab:purple", "tab:blue")))
  for label, r in results.items():
    layers = np.arange(1, len(r["weight_grad_norm"]) + 1)
    grads = np.maximum(r["weight_grad_norm"], FLOOR)
    ax_w.semilogy(layers, grads, "o-", color=colors[label], ms=4, label=label)
    signal = np.maximum(r["signal_norm"], FLOOR)
    ax_s.semilogy(np.arange(1, len(signal) + 1), signal, "o-", color=colors[label], ms=4,
                  label=f"{label} (×{r['signal_ratio_per_layer']:.2g} a layer)")
  ax_w.set(xlabel="critic layer (1: the input's)", ylabel="‖∂(E f(fake) − E f(real))/∂W‖",
           title="weight gradients: explode or vanish under clipping")
  ax_s.set(xlabel="critic layer (1: the input's)", ylabel="RMS ‖∂f/∂(pre-activation)‖",
           title="backpropagated signal: geometric in depth under clipping")
  for ax in (ax_w, ax_s):
    ax.axhline(FLOOR, color="gray", lw=0.6, ls=":")
    ax.text(1, FLOOR * 30, "at 1e-30: underflowed to 0 in float32", fontsize=7, color="gray")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=7)
  for ax, label in ((ax_hc, "clip c=0.01"), (ax_hp, "gradient penalty")):
    h = results[label]["histogram"]
    edges = np.asarray(h["edges"])
    ax.bar(edges[:-1], h["counts"], width=np.diff(edges), align="edge", color=colors[label])
    ax.set(xlabel="weight", ylabel="count", title=f"{label}: weights "
           f"({100 * results[label]['share_at_extremes']:.0f}% within 5% of the largest |w|)")
    ax.title.set_fontsize(10)
  fig.tight_layout()
  return fig


def run(out_dir: str, tiny: bool = False) -> dict[str, Any]:
  """Trains the four critics, writes weight_clipping.png / .json, returns the JSON."""
  s = TINY if tiny else FULL
  results = {label: train_and_measure(setup, clip, s) for label, setup, clip in CRITICS}
  penalty = results["gradient penalty"]["weight_grad_norm"]
  content = {
      "critics": results,
      "summary": {label: {
          "median_weight_grad_vs_penalty": float(np.median(r["weight_grad_norm"])
                                                 / np.median(penalty)),
          "signal_ratio_per_layer": r["signal_ratio_per_layer"],
          "signal_span": r["signal_span"], "clipped_fraction": r["clipped_fraction"],
          "share_at_extremes": r["share_at_extremes"]} for label, r in results.items()},
      "settings": {**dataclasses.asdict(s), "tiny": tiny, "data": "swissroll",
                   "critics": [list(c) for c in CRITICS],
                   "generated": "N(0, fake_std^2 I), fixed"},
  }
  return report.finish(out_dir, NAME, _figure(results), content)
