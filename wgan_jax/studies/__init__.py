"""The theory's experiments as commands: one module per study.

  python -m wgan_jax.studies --list
  python -m wgan_jax.studies parallel_lines --out=docs/studies [--tiny]

Every study module exposes `DESCRIPTION` (one line) and
`run(out_dir, tiny=False) -> dict`, which writes `out_dir/NAME.png` and
`out_dir/NAME.json` and returns what the JSON holds. Modules are imported only
when asked for, so listing the studies never loads JAX or a study's code.
Adding a study is one line in `STUDIES`.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
from types import ModuleType

STUDIES: dict[str, str] = {
    "parallel_lines": "wgan_jax.studies.parallel_lines",
    "xy_game": "wgan_jax.studies.xy_game",
    "critic_vs_discriminator": "wgan_jax.studies.critic_vs_discriminator",
    "vanishing_gradients": "wgan_jax.studies.vanishing_gradients",
    "trained_generators": "wgan_jax.studies.trained_generators",
    "divergences": "wgan_jax.studies.divergences",
    "weight_clipping": "wgan_jax.studies.weight_clipping",
    "mode_collapse": "wgan_jax.studies.mode_collapse",
    "clip_sweep": "wgan_jax.studies.clip_sweep",
    "n_critic_sweep": "wgan_jax.studies.n_critic_sweep",
    "estimate_vs_quality": "wgan_jax.studies.estimate_vs_quality",
    "clipped_optimizers": "wgan_jax.studies.clipped_optimizers",
    "wgan_paper_images": "wgan_jax.studies.wgan_paper_images",
    "small_data": "wgan_jax.studies.small_data",
    "improved_techniques": "wgan_jax.studies.improved_techniques",
    "modern_training": "wgan_jax.studies.modern_training",
}


def _unknown(name: str) -> ValueError:
  return ValueError(f"unknown study {name!r}; known studies: {', '.join(STUDIES)}")


def get(name: str) -> ModuleType:
  """The module of study `name`, imported now."""
  if name not in STUDIES:
    raise _unknown(name)
  return importlib.import_module(STUDIES[name])


def description(name: str) -> str:
  """Study `name`'s one-line DESCRIPTION, read from its source without running
  it (a study imports JAX, POT, matplotlib: seconds); imported only if the
  DESCRIPTION is not a plain string literal."""
  if name not in STUDIES:
    raise _unknown(name)
  spec = importlib.util.find_spec(STUDIES[name])
  if spec is not None and spec.origin and spec.origin.endswith(".py"):
    with open(spec.origin, encoding="utf-8") as f:
      tree = ast.parse(f.read(), spec.origin)
    for node in tree.body:
      if (isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant)
          and isinstance(node.value.value, str)
          and any(isinstance(t, ast.Name) and t.id == "DESCRIPTION"
                  for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))):
        return node.value.value
  return get(name).DESCRIPTION
