"""What every study writes: NAME.json (strict JSON) and NAME.png.

Strict means no NaN or Infinity tokens, which many JSON readers reject. A
study whose numbers include +inf (a KL divergence between disjoint supports)
writes them as null and says so in the same file with a `null_means` field;
a NaN or -inf is a bug in the study and is refused.
"""
from __future__ import annotations

import io
import json
import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # Files only: no display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from wgan_jax.files import (  # pylint: disable=g-import-not-at-top
    write_atomically, write_text_atomically)

NULL_MEANS_KEY = "null_means"


class StudyError(RuntimeError):
  """A study could not finish (e.g. a run it trains diverged): one line."""


POSITIVE_INFINITY = "+inf"


def plain(value: Any, where: str = "") -> tuple[Any, bool]:
  """`value` as JSON types (numpy arrays and scalars, JAX arrays, tuples
  converted), +inf as None; returns it and whether any +inf was replaced."""
  if isinstance(value, dict):
    out, replaced = {}, False
    for k, v in value.items():
      out[str(k)], r = plain(v, f"{where}.{k}")
      replaced |= r
    return out, replaced
  if isinstance(value, (list, tuple)):
    items = [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return [v for v, _ in items], any(r for _, r in items)
  if isinstance(value, (str, bool)) or value is None:
    return value, False
  if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
    return plain(np.asarray(value).tolist(), where)
  if hasattr(value, "item"):  # numpy / JAX scalar
    value = value.item()
  if isinstance(value, bool):
    return value, False
  if isinstance(value, int):
    return value, False
  if isinstance(value, float):
    if math.isnan(value) or value == -math.inf:
      raise ValueError(f"{where or 'value'} is {value}: a study's JSON holds no NaN or -inf")
    if value == math.inf:
      return None, True
    return value, False
  raise TypeError(f"{where or 'value'}: {type(value).__name__} has no JSON form")


def json_text(content: dict[str, Any]) -> str:
  """Strict JSON for `content`; +inf only with `null_means: "+inf"` in it."""
  converted, replaced = plain(content)
  if replaced and converted.get(NULL_MEANS_KEY) != POSITIVE_INFINITY:
    raise ValueError(f"content holds +inf: add {NULL_MEANS_KEY}={POSITIVE_INFINITY!r} so that "
                     "readers know what its nulls are")
  return json.dumps(converted, indent=1, allow_nan=False) + "\n"


def subplots(*args, **kwargs):
  """`plt.subplots` on the Agg backend (this module sets it): (figure, axes)."""
  return plt.subplots(*args, **kwargs)


def techniques_figure(toy: dict[str, dict[str, list[float]]],
                      toy_panels: tuple[tuple[str, str], ...], toy_title: str,
                      digits: dict[str, dict[str, float]], digits_title: str) -> plt.Figure:
  """The figure of a study of techniques, one setting a row: a panel per
  (key, label) of `toy_panels` (bars: the mean over seeds, dots: each seed),
  then the digit classifier's FD of each digits setting (log scale)."""
  fig, axes = plt.subplots(1, len(toy_panels) + 1, figsize=(4 * len(toy_panels) + 8, 4.5))
  names = list(toy)
  y = np.arange(len(names))
  for ax, (key, label) in zip(axes, toy_panels):
    values = [toy[n][key] for n in names]
    ax.barh(y, [np.mean(v) for v in values], color="tab:blue", alpha=0.6)
    for i, v in enumerate(values):
      ax.plot(v, [i] * len(v), "k.", ms=4)
    ax.set(yticks=y, yticklabels=names if ax is axes[0] else [], xlabel=label)
    ax.invert_yaxis()
  axes[0].set_title(toy_title)
  digit_names = list(digits)
  axes[-1].barh(np.arange(len(digit_names)), [digits[n]["domain_fd"] for n in digit_names],
                color="tab:orange", alpha=0.7)
  axes[-1].set(yticks=np.arange(len(digit_names)), yticklabels=digit_names,
               xlabel="digit-classifier FD (lower is better)", xscale="log", title=digits_title)
  axes[-1].invert_yaxis()
  fig.tight_layout()
  return fig


def save_figure(fig: plt.Figure, path: str) -> None:
  """`fig` as a PNG at `path` (written whole or not at all), then closed."""
  try:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_atomically(path, lambda f: f.write(buffer.getvalue()))
  finally:
    plt.close(fig)


def finish(out_dir: str, name: str, fig: plt.Figure, content: dict[str, Any]) -> dict[str, Any]:
  """Writes `out_dir/name.png` and `out_dir/name.json`; returns the JSON as
  read back (infinities as None), so callers see exactly what the file holds."""
  os.makedirs(out_dir, exist_ok=True)
  text = json_text({"study": name, **content})
  save_figure(fig, os.path.join(out_dir, f"{name}.png"))
  write_text_atomically(os.path.join(out_dir, f"{name}.json"), text)
  return json.loads(text)
