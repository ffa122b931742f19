"""The critic yardstick over a run's checkpoints (`wgan_jax.evaluate
--metrics=critic_w`), and the study of whether it ranks generators: is K =
estimate / W1 the same for every generator of a toy run
(`k_stability_study`)? The yardstick itself is `metrics/yardstick.py`.

Every generator of a run is measured with the same critic seeds and the same
held-out samples (the same real points, the same latent points), so the
differences between checkpoints are not sampling noise of the protocol.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wgan_jax import builders, checkpointing, data, generators, models, updates
from wgan_jax import plots  # noqa: F401  # pylint: disable=unused-import  # matplotlib on Agg: files only
from wgan_jax.metrics import toy as toy_metrics
from wgan_jax.metrics.yardstick import (GeneratorDraw, Source, ToyDraw, YardstickConfig,
                                        critic_estimate, critic_spec, mean_interval, pool_draw,
                                        resolve, spearman)

# Folded into the yardstick's seed for the held-out samples.
_HELD_OUT_STREAM = 0x68656c64
# What the held-out samples depend on: critics that agree on these share them.
_SHARED = ("held_out", "real_pool", "seed")

# ----------------------------------------------------------------------------
# The checkpoints of a run.
# ----------------------------------------------------------------------------


def _real_images(config: ml_collections.ConfigDict, held_out: int, pool: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(held-out, training pool) uint8 images of the data set, disjoint: the
  first `held_out` of one pass over it in a fixed order, then up to `pool`
  more (fewer if the data set ends first)."""
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel  # TensorFlow
  batches, _ = images.evaluation_batches(config.data, held_out + pool,
                                         min(held_out + pool, 256), seed)
  read = np.concatenate(list(batches))
  if len(read) <= held_out:
    raise ValueError(f"{config.data.name} holds {len(read)} images: none left to train the "
                     f"critic on after {held_out} held out; lower the held-out count")
  return read[:held_out], read[held_out:]


class _Reference:
  """What every checkpoint of a run is measured against: the real source, the
  held-out real samples (as the critic takes them), the held-out noise and,
  on toy sets, the W1 floor (two independent real samples)."""

  def __init__(self, config: ml_collections.ConfigDict, yardstick: YardstickConfig):
    k_real, k_noise, k_floor, k_float = jax.random.split(
        jax.random.fold_in(jax.random.PRNGKey(yardstick.seed), _HELD_OUT_STREAM), 4)
    self.kind = data.get(config.data.name).kind
    self.convolutions = builders.convolutions(config)
    self.dequantize = bool(config.data.get("dequantize", False))
    self.noise = np.asarray(jax.random.normal(
        k_noise, (yardstick.held_out, config.model.noise_dim), jnp.float32))
    self.w1_floor = None
    if self.kind == data.TOY:
      draw = ToyDraw(config.data.name)
      self.real = Source(draw)
      self.held_out = np.asarray(draw(None, k_real, yardstick.held_out))
      self.w1_floor = toy_metrics.exact_w1(
          self.held_out, np.asarray(draw(None, k_floor, yardstick.held_out)))
    else:
      held_out, pool = _real_images(config, yardstick.held_out, yardstick.real_pool,
                                    yardstick.seed)
      self.real = Source(pool_draw, jnp.asarray(pool))
      spec = critic_spec(resolve(yardstick, self.kind), data.data_shape(config.data),
                         self.convolutions, self.dequantize)
      self.held_out = np.asarray(updates.real_to_float(spec, jnp.asarray(held_out), k_float))


def evaluate_critics(workdir: str, yardsticks: Sequence[YardstickConfig],
                     steps: Sequence[int] | None = None,
                     overrides: Sequence[tuple[str, str]] = (), model: int | None = None
                     ) -> list[list[dict[str, Any]]]:
  """`evaluate_checkpoints` for several critic configs at once (one list of rows
  each): every generator is restored, sampled and (toy) solved for W1 once.
  The configs must agree on `held_out`, `real_pool` and `seed`. `model`: which
  model of a sweep."""
  shared = {tuple(getattr(y, k) for k in _SHARED) for y in yardsticks}
  if len(shared) != 1:
    raise ValueError(f"the critic configs must agree on {', '.join(_SHARED)}; got {shared}")
  chosen = list(steps) if steps is not None else checkpointing.finished_steps(workdir)
  if not chosen:
    raise checkpointing.CheckpointError(
        f"no finished checkpoint in {checkpointing.checkpoint_dir(workdir)}; train first")
  rows: list[list[dict[str, Any]]] = [[] for _ in yardsticks]
  reference = None
  for step in chosen:
    found, config = generators.saved_config(workdir, step, overrides=overrides)
    if models.num_classes(config):
      raise ValueError(f"{workdir} holds a class-conditional generator; critic_w measures "
                       "unconditional ones: score it with --metrics=fid,kid,is,pr,domain")
    reference = reference or _Reference(config, yardsticks[0])
    module, generator = generators.restore(config, workdir, found, model)
    fake = generators.generate(module, generator, reference.noise, config.sampling_batch_norm,
                               config.batch_size)
    if not np.all(np.isfinite(fake)):
      raise ValueError(f"the generator of checkpoint {found} in {workdir} makes non-finite "
                       "samples; it cannot be measured")
    measured = {"workdir": workdir, "step": found, "data": config.data.name,
                **({} if model is None else {"model": model})}
    if reference.kind == data.TOY:
      measured.update(w1=toy_metrics.exact_w1(fake, reference.held_out),
                      w1_floor=reference.w1_floor)
    source = Source(GeneratorDraw(module, config.model.noise_dim,
                                  config.sampling_batch_norm == "batch"), generator)
    for yardstick, out in zip(yardsticks, rows):
      yardstick = resolve(yardstick, reference.kind)
      estimate = critic_estimate(reference.real, source, reference.held_out, fake, yardstick,
                                 reference.convolutions, reference.dequantize)
      mean, half = mean_interval(estimate.per_seed)
      row = {**measured, "critic": yardstick.label(), "protocol": yardstick.describe(),
             "estimate": mean, "estimate_ci": half,
             "estimates": [float(v) for v in estimate.per_seed],
             "train_estimate": float(np.mean(estimate.train_last))}
      if "w1" in row:
        row.update(k=mean / row["w1"], k_ci=half / row["w1"])
      out.append(row)
  return rows


def evaluate_checkpoints(workdir: str, steps: Sequence[int] | None = None,
                         yardstick: YardstickConfig = YardstickConfig(),
                         overrides: Sequence[tuple[str, str]] = (), model: int | None = None
                         ) -> list[dict[str, Any]]:
  """One row per finished checkpoint of `workdir` (or per step of `steps`),
  in that order: the yardstick's estimate of K * W1 (`estimate`: mean over
  seeds; `estimate_ci`: half-width of its 95% t-interval; `estimates`: per
  seed; `train_estimate`: the training batches' value at the end); on toy
  sets also the exact W1 between the held-out generated and real samples,
  its floor (two real samples), and K = estimate / W1 with its interval
  (`k`, `k_ci`). Each generator is restored alone from its checkpoint and
  built from the config saved there (plus `overrides`, as key, text); of a
  sweep, model `model`."""
  return evaluate_critics(workdir, [yardstick], steps, overrides, model)[0]


def format_table(results: Sequence[dict[str, Any]]) -> str:
  """One line per checkpoint: step, estimate ± CI and, on toy sets, W1 and
  K ± CI; headed by the protocol of each critic."""
  lines, protocol = [], None
  toy = any("w1" in r for r in results)
  header = f"{'step':>8}  {'estimate ± 95% CI':>24}"
  if toy:
    header += f"  {'exact W1':>9}  {'K = estimate / W1':>22}"
  for r in results:
    if r["protocol"] != protocol:
      protocol = r["protocol"]
      lines += ([""] if lines else []) + [f"{r['data']}: {protocol}", header]
    line = f"{r['step']:>8}  {_pm(r['estimate'], r['estimate_ci']):>24}"
    if "w1" in r:
      line += f"  {r['w1']:>9.4f}  {_pm(r['k'], r['k_ci']):>22}"
    lines.append(line)
  return "\n".join(lines)


def _pm(mean: float, half: float) -> str:
  return f"{mean:.4g} ± {half:.2g}"


# ----------------------------------------------------------------------------
# The study: is K the same for every generator?
# ----------------------------------------------------------------------------


def study_critics(features: Sequence[int] = (128, 512), depths: Sequence[int] = (2, 3),
                  clips: Sequence[float] = (0.005, 0.01, 0.05),
                  **common: Any) -> list[YardstickConfig]:
  """Every MLP critic of the grid, with the training settings in `common`."""
  return [YardstickConfig(critic="mlp", features=f, depth=d, clip=c, **common)
          for f in features for d in depths for c in clips]



def k_stability(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
  """For toy rows of one critic config: the mean K, its coefficient of
  variation across the generators (std / mean, ddof 1), its range, and the
  Spearman rank correlation of the estimate with the exact W1 (p-value too)."""
  k = np.array([r["k"] for r in rows])
  rho, p = spearman([r["estimate"] for r in rows], [r["w1"] for r in rows])
  return {"generators": len(rows), "k_mean": float(k.mean()),
          "k_cv": float(k.std(ddof=1) / abs(k.mean())), "k_min": float(k.min()),
          "k_max": float(k.max()), "spearman": float(rho), "spearman_p": float(p)}


def k_stability_study(out_dir: str, workdirs: Sequence[str],
                      critics: Sequence[YardstickConfig] | None = None,
                      steps: Sequence[int] | None = None) -> str:
  """Estimates K at every checkpoint of the toy runs in `workdirs` (or at
  `steps` of each) for each critic config (default: `study_critics()`),
  writes `k_stability.json` (every row; per critic config `k_stability` over
  all generators, per data set and per run) and `k_stability.png` (the
  estimate and K / mean K against the exact W1) to `out_dir`, and returns
  the table: per checkpoint, then per critic config and group."""
  critics = [resolve(y, data.TOY) for y in (critics or study_critics())]
  os.makedirs(out_dir, exist_ok=True)
  by_critic: dict[str, list[dict[str, Any]]] = {y.label(): [] for y in critics}
  if len(by_critic) != len(critics):
    raise ValueError("two critic configs of the study have the same label; vary the critic "
                     "(architecture, width, depth, c) and keep the training settings common")
  for workdir in workdirs:
    for yardstick, rows in zip(critics, evaluate_critics(workdir, critics, steps)):
      if any("w1" not in r for r in rows):
        raise ValueError(f"{workdir} is not a toy run: the K study needs the exact W1")
      by_critic[yardstick.label()] += rows
  return write_study(out_dir, by_critic, [dataclasses.asdict(y) for y in critics])


def write_study(out_dir: str, by_critic: dict[str, list[dict[str, Any]]],
                critics: Sequence[dict[str, Any]] = ()) -> str:
  """The study's outputs from its rows (critic label -> toy rows): the JSON,
  the figure and the table. Re-run on a saved JSON's rows, it re-derives them
  without training a critic."""
  summary = {label: _groups(rows) for label, rows in by_critic.items()}
  with open(os.path.join(out_dir, "k_stability.json"), "w") as f:
    json.dump({"workdirs": list(dict.fromkeys(r["workdir"] for rows in by_critic.values()
                                              for r in rows)),
               "critics": list(critics), "summary": summary, "rows": by_critic}, f, indent=1)
  _k_figure(os.path.join(out_dir, "k_stability.png"), by_critic, summary)
  return _study_table(by_critic, summary)


def _groups(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
  """`k_stability` over all rows, over each data set's (K depends on the real
  distribution too, not only on the critic) and over each run's (the
  generators one run makes as it trains, which a yardstick is asked to order)."""
  out = {"all": k_stability(rows)}
  for key, name in (("data", lambda r: r["data"]),
                    ("workdir", lambda r: "run " + os.path.basename(r["workdir"].rstrip("/")))):
    groups = list(dict.fromkeys(r[key] for r in rows))
    if len(groups) > 1:
      out.update({name(mine[0]): k_stability(mine)
                  for mine in ([r for r in rows if r[key] == g] for g in groups)})
  return out


def _study_table(by_critic: dict[str, list[dict[str, Any]]],
                 summary: dict[str, dict[str, dict[str, float]]]) -> str:
  lines = []
  for rows in by_critic.values():
    for workdir in dict.fromkeys(r["workdir"] for r in rows):
      run = [r for r in rows if r["workdir"] == workdir]
      lines += ["", f"{workdir} (W1 floor {run[0]['w1_floor']:.4f}):", format_table(run)]
  lines += ["", f"{'critic':<20} {'generators of':<16} {'n':>3} {'mean K':>9} {'CV of K':>8} "
            f"{'K min .. max':>21} {'Spearman(estimate, W1)':>24}"]
  for label, groups in summary.items():
    for group, s in groups.items():
      lines.append(f"{label:<20} {group:<16} {s['generators']:>3} {s['k_mean']:>9.3g} "
                   f"{s['k_cv']:>8.3f} {s['k_min']:>9.3g} .. {s['k_max']:<9.3g} "
                   f"{s['spearman']:>+9.3f} (p={s['spearman_p']:.1g})")
  return "\n".join(lines[1:])


def _k_figure(path: str, by_critic: dict[str, list[dict[str, Any]]],
              summary: dict[str, dict[str, dict[str, float]]]) -> None:
  """Estimate and K / mean K against the exact W1: a colour per critic config,
  a marker per run (one line through its checkpoints), the W1 floors dotted."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6), dpi=100)
  data_of = {r["workdir"]: r["data"] for rows in by_critic.values() for r in rows}
  runs = list(data_of)
  markers = dict(zip(runs, "os^vDP*X"))
  for i, (label, rows) in enumerate(by_critic.items()):
    s, color = summary[label]["all"], f"C{i}"
    left.plot([], [], color=color, label=f"{label}: CV of K {s['k_cv']:.2f}, "
              f"Spearman {s['spearman']:+.2f}")
    for run in runs:
      mine = sorted((r for r in rows if r["workdir"] == run), key=lambda r: r["w1"])
      w1 = np.array([r["w1"] for r in mine])
      est = np.array([r["estimate"] for r in mine])
      ci = np.array([r["estimate_ci"] for r in mine])
      style = dict(marker=markers[run], ms=4, capsize=2, color=color, lw=1)
      left.errorbar(w1, est, yerr=ci, **style)
      right.errorbar(w1, est / w1 / s["k_mean"], yerr=ci / w1 / s["k_mean"], **style)
  for run in runs:
    right.plot([], [], markers[run], color="k", ls="",
               label=f"{os.path.basename(run.rstrip('/'))} ({data_of[run]})")
  for ax in (left, right):
    for floor in {r["w1_floor"] for rows in by_critic.values() for r in rows}:
      ax.axvline(floor, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("exact W1, held-out generated vs real (dotted: two real samples)")
  left.set_yscale("symlog", linthresh=1e-6)
  left.set_ylabel("critic's estimate of K·W1 (mean over seeds, 95% CI)")
  left.set_title("a fixed clipped critic's estimate against the exact W1")
  right.axhline(1.0, color="k", lw=0.8)
  right.set_ylabel("K / the critic's mean K")
  right.set_title("K = estimate / W1 (flat: the estimate is proportional to W1)")
  left.legend(fontsize=7, loc="upper left")
  right.legend(fontsize=8, loc="upper left")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)

