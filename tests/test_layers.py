"""The package's layers (BUILD.md, "Code layout"): a module imports only modules
of its own layer or below, so each layer can be read, tested and replaced
without the ones above it; and the config layer loads no JAX."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "wgan_jax"

# From the bottom up; a module is in the first layer whose list names it or its package.
LAYERS = (
    ("config: names, schema, rules; no JAX",
     ("wgan_jax", "wgan_jax.configs", "wgan_jax.metrics.__init__", "wgan_jax.models.__init__",
      "wgan_jax.models.registry", "wgan_jax.data.__init__", "wgan_jax.xla_cpu",
      "wgan_jax.accelerators", "wgan_jax.cluster", "wgan_jax.supervisor", "wgan_jax.startup")),
    ("primitives: state, placement, networks, data, losses, optimizers, metrics",
     ("wgan_jax.state", "wgan_jax.batch_axis", "wgan_jax.placement", "wgan_jax.multihost",
      "wgan_jax.files", "wgan_jax.pixels", "wgan_jax.plots", "wgan_jax.event_files",
      "wgan_jax.progress",
      "wgan_jax.models", "wgan_jax.data",
      "wgan_jax.augment", "wgan_jax.techniques", "wgan_jax.losses", "wgan_jax.penalties",
      "wgan_jax.optim", "wgan_jax.ema", "wgan_jax.ada", "wgan_jax.latents", "wgan_jax.metrics",
      "wgan_jax.metrics.neighbours", "wgan_jax.metrics.memorisation")),
    ("the updates: terms, critic inputs, update functions; the metrics that run them",
     ("wgan_jax.terms", "wgan_jax.critic_inputs", "wgan_jax.updates",
      "wgan_jax.metrics.yardstick", "wgan_jax.metrics.image_metrics")),
    ("assembly: spec and state, devices, compiled iteration, data streams, checkpoints",
     ("wgan_jax.builders", "wgan_jax.devices", "wgan_jax.iteration", "wgan_jax.inputs",
      "wgan_jax.memory", "wgan_jax.sweeps", "wgan_jax.checkpointing", "wgan_jax.transfer",
      "wgan_jax.generators", "wgan_jax.inflight", "wgan_jax.preemption", "wgan_jax.writers",
      "wgan_jax.scoring", "wgan_jax.cli", "wgan_jax.workdirs")),
    ("a run: built once, evaluated, its checkpoints scored, its programs exported",
     ("wgan_jax.run", "wgan_jax.evaluators", "wgan_jax.checkpoint_critics",
      "wgan_jax.export")),
    ("the training loop", ("wgan_jax.loop",)),
    ("entry points: commands", ("wgan_jax.train", "wgan_jax.sample", "wgan_jax.evaluate",
                                "wgan_jax.bench", "wgan_jax.nearest", "wgan_jax.studies")),
)


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts)


def layer_of(module: str) -> int:
  """The layer of `module` (a package's __init__ is "pkg.__init__" first, then "pkg")."""
  best = None
  for i, (_, names) in enumerate(LAYERS):
    for name in names:
      if module == name or module.startswith(name + "."):
        if best is None or len(name) > best[1]:
          best = (i, len(name))
  assert best is not None, f"{module} is in no layer: add it to LAYERS"
  return best[0]


def _imports(path: pathlib.Path) -> set[str]:
  """The wgan_jax modules `path` imports (anywhere in it)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wgan_jax"):
      for alias in node.names:
        candidate = f"{node.module}.{alias.name}"
        is_module = (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() or (
            PACKAGE.parent / candidate.replace(".", "/")).is_dir()
        found.add(candidate if is_module else node.module)
    elif isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith("wgan_jax")}
  return found


def _modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    name = _module_name(path)
    yield (name.removesuffix(".__init__") + ".__init__" if path.name == "__init__.py" else name,
           path)


def _own_implementation(module: str, imported: str) -> bool:
  """A registry (a package's __init__) hands out its package's implementations."""
  return module.endswith(".__init__") and imported.startswith(module.removesuffix("__init__"))


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda x: str(x))
def test_a_module_imports_nothing_above_its_layer(module, path):
  mine = layer_of(module)
  above = sorted(m for m in _imports(path) if not _own_implementation(module, m)
                 and layer_of(m + ".__init__" if (PACKAGE.parent / m.replace(".", "/")).is_dir()
                             else m) > mine)
  assert not above, (f"{module} (layer {mine}: {LAYERS[mine][0]}) imports "
                     f"{', '.join(above)} from above it")


def test_every_layer_names_existing_modules():
  existing = {m for m, _ in _modules()} | {m.removesuffix(".__init__") for m, _ in _modules()}
  for _, names in LAYERS:
    for name in names:
      assert name in existing, name
