"""The run's programs exported for CUDA and TPU with `jax.export`, which lowers
for a platform this machine does not have: what a GPU or TPU session would
compile is proven here to lower, to call nothing on the host, and is written
out (`bench --export=DIR`) for that session to deserialize and run.

Three programs a run compiles:

- the generator iteration, built by `run.build` as the trainer builds it and
  called as the trainer calls it (`iteration(state, n_critic, real)`), on
  devices whose `compile` exports the program instead of running it: under
  jit the same `jax.jit` (out shardings, donation) `Devices.compile` makes,
  over the same mesh; under pmap the pmapped function itself, which JAX 0.10
  implements as `jit(shard_map)` over a mesh of its devices, wrapped in a
  `jax.jit` whose arguments are sharded along that mesh's device axis as
  pmap's inputs are;
- sampling: `generators.forward`, the generator alone;
- the Inception feature pass of the FID family (`image_metrics.InceptionScorer`),
  over a mesh of the devices.

Where the config says `auto`, the program is built with the choices a GPU or
TPU makes (`builders.ACCELERATOR_CHOICES`): XLA's own convolutions, the critic updates
in a loop, a sweep's models vmapped. The phase-split convolutions and the
unrolled critic loop are XLA:CPU's.

Each program is kept with flat arguments and results (the leaves of the
state and the batch, in `jax.tree.leaves` order; `Program.inputs` names
them): the serialized format needs every pytree node registered, and the
state's optax and flax nodes are not. The StableHLO module is the same: its
main function takes the leaves either way.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wgan_jax import builders, configs, generators, placement, run as run_lib
from wgan_jax.devices import Devices
from wgan_jax.metrics import image_metrics, inception, inception_weights

PLATFORMS = ("cuda", "tpu")
# Custom calls that run Python on the host (jax.pure_callback, io_callback,
# jax.debug.*): a program holding one waits on the host and cannot be served
# from a serialized module.
HOST_CALLBACKS = ("xla_python_cpu_callback", "xla_ffi_python_cpu_callback",
                  "xla_python_gpu_callback", "xla_ffi_python_gpu_callback",
                  "xla_ffi_partial_python_gpu_callback", "host_callback")
INDEX = "index.json"


@dataclasses.dataclass(frozen=True)
class Case:
  """A run to export: `experiment` with `overrides`; `sharded`: over every
  device (the mesh, pmap, a sweep's models) rather than one."""
  experiment: str
  overrides: tuple[tuple[str, str], ...] = ()
  sharded: bool = False
  # Also the sampling program (the generator alone, on one device).
  sampling: bool = False


# Every experiment as it is, on one device (what a one-GPU session can run),
# then what no experiment sets on its own.
VARIANTS: dict[str, Case] = {
    "toy_8gaussians+jit_mesh": Case("toy_8gaussians", sharded=True),
    "toy_8gaussians+pmap": Case("toy_8gaussians", (("parallelism", "pmap"),), sharded=True),
    "digits_dcgan_gp+jit_mesh": Case("digits_dcgan_gp", sharded=True),
    "digits_dcgan_gp+shard_state": Case("digits_dcgan_gp", (("shard_state", "true"),),
                                        sharded=True),
    "digits_dcgan_gp+pmap": Case("digits_dcgan_gp", (("parallelism", "pmap"),), sharded=True),
    "toy_8gaussians+r1": Case("toy_8gaussians", (("penalty", "r1"),)),
    "digits_dcgan_gp+spectral+ema+bf16": Case("digits_dcgan_gp", (
        ("model.critic.norm", "spectral"), ("ema.decay", "0.999"), ("precision", "bf16"))),
    "cifar10_resnet_gp+bf16": Case("cifar10_resnet_gp", (("precision", "bf16"),)),
    "cifar10_resnet_acgan+projection": Case("cifar10_resnet_acgan",
                                            (("model.critic.head", "projection"),)),
    "folder_dcgan_diffaugment+ada": Case("folder_dcgan_diffaugment", (("ada.enabled", "true"),)),
    "digits_dcgan_gp+accumulation": Case("digits_dcgan_gp", (("accumulation_steps", "2"),)),
    "toy_8gaussians+sweep": Case("toy_8gaussians", (
        ("sweep.key", "penalty_weight"), ("sweep.grid", "(0.1, 1.0)"), ("sweep.seeds", "4")),
                                 sharded=True),
    # An image sweep: the host batch whole on every device, each device its models.
    "digits_dcgan_gp+sweep": Case("digits_dcgan_gp", (
        ("sweep.key", "penalty_weight"), ("sweep.grid", "(1.0, 10.0)"), ("sweep.seeds", "4")),
                                  sharded=True),
}


def cases() -> dict[str, Case]:
  """Every case by name: each experiment of the registry, then `VARIANTS`."""
  return {**{name: Case(name, sampling=True) for name in configs.known_experiments()},
          **VARIANTS}


def full_size(experiment: str, overrides: Sequence[tuple[str, str]]) -> ml_collections.ConfigDict:
  """`experiment` at its own size with `overrides`, validated."""
  config = configs.load(experiment)
  for key, text in overrides:
    configs.override(config, key, text)
  configs.validate(config)
  return config


class ExportError(Exception):
  """An export that failed: the case, the program and the first line of the error."""


@dataclasses.dataclass(frozen=True)
class Program:
  """One exported program, with flat arguments and results."""
  name: str                  # "<case>/<program>"
  exported: jax.export.Exported
  inputs: tuple[str, ...]    # the path of each argument in (args, kwargs)
  outputs: tuple[str, ...]   # the path of each result

  @functools.cached_property
  def serialized(self) -> bytes:
    return bytes(self.exported.serialize())

  @functools.cached_property
  def text(self) -> str:
    return self.exported.mlir_module()

  def custom_calls(self) -> list[str]:
    """The custom-call targets in the module, sorted."""
    return sorted(set(re.findall(r'custom_call @([\w.$-]+)', self.text)) | set(
        re.findall(r'call_target_name = "([^"]+)"', self.text)))

  def host_callbacks(self) -> list[str]:
    """The host callbacks the module calls (none, for a program to serve)."""
    return host_callbacks(self.text)

  def describe(self, file: str) -> dict[str, Any]:
    """The index entry: enough to feed the program without building its run."""
    e = self.exported
    return {"name": self.name, "file": file, "platforms": list(e.platforms),
            "devices": e.nr_devices, "bytes": len(self.serialized),
            "inputs": [{"path": p, "shape": list(a.shape), "dtype": str(a.dtype)}
                       for p, a in zip(self.inputs, e.in_avals)],
            "outputs": [{"path": p, "shape": list(a.shape), "dtype": str(a.dtype)}
                        for p, a in zip(self.outputs, e.out_avals)]}


def host_callbacks(text: str) -> list[str]:
  """The host callbacks (`HOST_CALLBACKS`) a module's StableHLO text calls."""
  return [name for name in HOST_CALLBACKS if name in text]


def paths(tree) -> tuple[str, ...]:
  """The path of each leaf of `tree`, in `jax.tree.leaves` order (`index.json`'s names)."""
  return tuple(jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0])


def export(name: str, jitted, *args, platforms: Sequence[str] = PLATFORMS) -> Program:
  """`jitted` (a `jax.jit`) exported for `platforms` at `args` (arrays or
  ShapeDtypeStructs, with their shardings), its pytrees flattened."""
  exported = jax.export.export(jitted, platforms=tuple(platforms))(*args)
  inputs = paths(jax.tree.unflatten(exported.in_tree, range(len(exported.in_avals))))
  outputs = paths(jax.tree.unflatten(exported.out_tree, range(len(exported.out_avals))))
  flat = dataclasses.replace(
      exported, in_tree=jax.tree.structure((tuple(range(len(inputs))), {})),
      out_tree=jax.tree.structure(tuple(range(len(outputs)))))
  return Program(name, flat, inputs, outputs)


def _abstract(x):
  """What the program is traced at for argument `x`: an array's shape, dtype
  and sharding; a Python int (the first critic update) as the weakly typed
  scalar a jitted call makes of it."""
  if isinstance(x, int):
    return jax.ShapeDtypeStruct((), jnp.int32, weak_type=True)
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), x)


class _Exporting(Devices):
  """The run's devices, except that a compiled program, when called, is
  exported rather than run: the call returns (the Program, no metrics)."""

  def __init__(self, like: Devices, name: str, platforms: Sequence[str] = PLATFORMS):
    super().__init__("pmap" if like.pmap else "jit", list(like.mesh.devices.flat),
                     shard_state=like.shard_state, shard_models=like.shard_models)
    self.name, self.platforms = name, platforms

  def pmap_mesh(self) -> jax.sharding.Mesh:
    """The mesh pmap runs its shard_map over: this process's devices, axis `data`."""
    return jax.sharding.Mesh(np.asarray(self._local), (placement.DATA_AXIS,))

  def compile(self, fn, host_data: bool):
    if self.pmap:
      pmapped = super().compile(fn, host_data)
      stacked = jax.sharding.NamedSharding(self.pmap_mesh(),
                                           jax.sharding.PartitionSpec(placement.DATA_AXIS))
      # pmap's outputs are stacked along the device axis (out_axes=0).
      jitted = jax.jit(lambda *args: pmapped(*args), out_shardings=stacked, donate_argnums=0)
    else:
      jitted = None

    def run(state, *args):
      nonlocal jitted
      args = tuple(_abstract(a) for a in args)
      if jitted is None:  # As Devices.compile does.
        jitted = self.jit(fn, state)
      return export(f"{self.name}/iteration", jitted, state, *args,
                    platforms=self.platforms), {}

    return run

  def laid_out(self, view):
    """The abstract state as the updates take it (`put_state`): under pmap a
    copy per device, stacked along the pmap mesh's device axis."""
    if not self.pmap:
      return view
    stacked = jax.sharding.NamedSharding(self.pmap_mesh(),
                                         jax.sharding.PartitionSpec(placement.DATA_AXIS))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct((len(self._local), *s.shape), s.dtype,
                                                       sharding=stacked), view)


def iteration_program(parts: run_lib.Run) -> Program:
  """The generator iteration of `parts` (built on `_Exporting` devices), called
  as the trainer calls it (image sets on synthetic batches: the same shapes),
  exported."""
  devices, config = parts.devices, parts.config
  state = devices.laid_out(parts.abstract_state)
  n_critic = config.n_critic  # An ordinary iteration (not a long reference phase).
  real = parts.stream(0).next(n_critic)
  program, _ = parts.iteration(state, n_critic, real)
  return program


def sampling_program(name: str, parts: run_lib.Run,
                     platforms: Sequence[str] = PLATFORMS) -> Program:
  """`generators.forward` (what `sample`, grids and scores run) on
  `config.batch_size` noise rows, for one model on one device."""
  config, generator = parts.config, parts.abstract_state.generator
  z = jax.ShapeDtypeStruct((config.batch_size, config.model.noise_dim + parts.spec.num_classes),
                           jnp.float32)
  return export(f"{name}/sampling", generators.forward,
                parts.global_spec.generator, generator.params, generator.batch_stats, z,
                config.sampling_batch_norm == "batch", platforms=platforms)


def inception_program(name: str, image_shape: tuple[int, ...], batch: int,
                      resize: str = inception.DEFAULT_RESIZE,
                      devices: Sequence[jax.Device] | None = None) -> Program:
  """The FID family's feature pass (`image_metrics.InceptionScorer`): uint8
  images [batch, *image_shape] -> (pool features, logits), over a mesh of
  `devices` (default: every device). The weights are an argument (pytorch-fid's
  or random ones: the same shapes)."""
  mesh = placement.make_mesh(devices)
  weights = inception_weights.InceptionWeights({}, "abstract", "abstract")
  scorer = image_metrics.InceptionScorer(weights, resize, batch, mesh)
  fn = scorer.program
  images = jax.ShapeDtypeStruct((scorer.batch_size, *image_shape), jnp.uint8)
  return export(f"{name}/inception_{resize}", fn, inception.variable_shapes(), images)


def _one_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return f"{type(e).__name__}: {lines[0] if lines else ''}"


def guarded(name: str, what: str, make: Callable[[], Any],
            platforms: Sequence[str] = PLATFORMS) -> Any:
  """`make()`, or an ExportError naming the case and the program."""
  try:
    return make()
  except Exception as e:  # pylint: disable=broad-except
    raise ExportError(f"{name}: exporting the {what} for {'/'.join(platforms)} failed: "
                      f"{_one_line(e)}") from e


def case_programs(name: str, case: Case,
                  make_config: Callable[[str, Sequence[tuple[str, str]]],
                                        ml_collections.ConfigDict] = full_size,
                  platforms: Sequence[str] = PLATFORMS) -> list[Program]:
  """The programs of `case` for `platforms`, its run built by `run.build` from
  `make_config(experiment, overrides)` with the accelerator's choices, on
  every device (`run.devices_for`) or on one."""
  overrides = (*case.overrides, *builders.ACCELERATOR_CHOICES)
  guard = functools.partial(guarded, name, platforms=platforms)
  config = guard("config", lambda: make_config(case.experiment, overrides))

  def build() -> run_lib.Run:
    devices = (run_lib.devices_for(config) if case.sharded
               else Devices(config.parallelism, jax.devices()[:1]))
    return run_lib.build(config, _Exporting(devices, name, platforms), synthetic=True)

  parts = guard("run", build)
  programs = [guard("generator iteration", lambda: iteration_program(parts))]
  if case.sampling:
    programs.append(guard("sampling program", lambda: sampling_program(name, parts, platforms)))
  return programs


def all_programs(make_config=full_size, inception_batch: int = image_metrics.DEFAULT_BATCH
                 ) -> list[Program]:
  """Every case's programs, then the Inception feature pass (each resize) on
  CIFAR-sized images over every device."""
  out = []
  for name, case in cases().items():
    out.extend(case_programs(name, case, make_config))
  for resize in inception.RESIZES:
    out.append(guarded("fid", "Inception feature pass", lambda: inception_program(
        "fid", (32, 32, 3), inception_batch, resize)))
  return out


def write(programs: Sequence[Program], out_dir: str) -> str:
  """Each program's serialized bytes as `<case>.<program>.jax_exported` in
  `out_dir`, and `index.json` (names, files, platforms, devices, sizes, the
  inputs' and outputs' paths, shapes and dtypes). Returns the index's path."""
  os.makedirs(out_dir, exist_ok=True)
  entries = []
  for program in programs:
    file = program.name.replace("/", ".") + ".jax_exported"
    with open(os.path.join(out_dir, file), "wb") as f:
      f.write(program.serialized)
    entries.append(program.describe(file))
  path = os.path.join(out_dir, INDEX)
  with open(path, "w") as f:
    json.dump({"jax": jax.__version__, "platforms": list(PLATFORMS), "programs": entries}, f,
              indent=1)
  return path


def write_all(out_dir: str, make_config=full_size) -> dict[str, Any]:
  """`all_programs` written to `out_dir` (`write`): what was written, in figures."""
  t = time.perf_counter()
  programs = all_programs(make_config)
  index = write(programs, out_dir)
  return {"exported_programs": len(programs), "exported_platforms": ",".join(PLATFORMS),
          "exported_devices": jax.device_count(),
          "exported_mib": round(sum(len(p.serialized) for p in programs) / 2**20, 2),
          "export_s": round(time.perf_counter() - t, 1), "export_index": index}


def load(out_dir: str, name: str) -> tuple[jax.export.Exported, dict[str, Any]]:
  """The exported program `name` of `out_dir` and its index entry."""
  with open(os.path.join(out_dir, INDEX)) as f:
    entry = next(e for e in json.load(f)["programs"] if e["name"] == name)
  with open(os.path.join(out_dir, entry["file"]), "rb") as f:
    return jax.export.deserialize(bytearray(f.read())), entry
