"""Benchmark: generator iterations/s, examples/s, compile time and the share of
this machine's matmul peak that the training step achieves.

  python -m wgan_jax.bench --experiment=toy_8gaussians
  python -m wgan_jax.bench --experiment=toy_8gaussians --torch_ref=../shared/bench/torch_ref.py

FLOPs come from XLA's cost analysis. It counts a loop body once, so the scan
over critic updates is not measured as a whole: one critic update and one
generator update are compiled on their own and combined as
n_critic * (critic update + generating its fake batch) + generator update. The peak is the best FLOP/s of
a chain of square matmuls compiled by the same XLA in the same process; on a GPU or
TPU the model FLOPs utilisation against the chip's data-sheet peak is added
(`accelerators.py`).
"""
from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

from wgan_jax import startup

startup.quiet_console()

# pylint: disable=wrong-import-position
from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import accelerators, builders, configs, data, memory, updates, xla_cpu
from wgan_jax import run as run_lib
from wgan_jax.cli import flags_parser, usage_error
from wgan_jax.devices import Devices
from wgan_jax.inflight import InFlight

_ITERS = flags.DEFINE_integer("iters", 30, "Timed generator iterations per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timing repeats (medians are reported).")
_TORCH_REF = flags.DEFINE_string(
    "torch_ref", None, "Path to torch_ref.py: time it in the same run, alternating "
    "with JAX, and print the ratio.")
_TORCH_DEVICE = flags.DEFINE_string(
    "torch_device", None, "Where torch_ref.py runs: cpu or cuda (default: cuda when JAX runs "
    "on a GPU, else cpu), so both sides use the same hardware.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")
_PROFILE = flags.DEFINE_string(
    "profile", None, "Also write a jax.profiler trace of 3 timed iterations to this "
    "directory (open it with TensorBoard's profile plugin or Perfetto).")
_DEVICES = flags.DEFINE_integer(
    "devices", 1, "Run data-parallel over the first N devices (config parallelism: jit over a "
    "mesh, or pmap); the global batch stays config.batch_size.")
_INPUT_PIPELINE = flags.DEFINE_float(
    "input_pipeline", 0.0, "Also time the image input pipeline alone (read, JPEG decode, "
    "resize, crop, batch) for this many seconds, on the experiment's data.")
_SYNTHETIC_LMDB = flags.DEFINE_string(
    "synthetic_lmdb", None, "For --input_pipeline on lsun_bedroom without the data set: write "
    "(once) an LMDB of 2,000 synthetic 256x342 JPEGs in this directory and read that.")

_FID_SAMPLES = flags.DEFINE_integer(
    "fid_samples", 0, "Also time the FID pipeline: the Inception's images/s, and FID of this many "
    "samples of the (untrained) generator end to end: generation, features, statistics.")
_INCEPTION_WEIGHTS = flags.DEFINE_string(
    "inception_weights", None, "For --fid_samples: pytorch-fid's weights (default: "
    "$WGAN_JAX_INCEPTION_WEIGHTS, else random weights: the same work, meaningless scores).")

_MEMORY = flags.DEFINE_bool(
    "memory", False, "Instead, compile one generator iteration for one device at the per-device "
    "batch (batch_size / --devices) without allocating anything, and print its memory: "
    "arguments, outputs, temporaries, generated code (XLA's memory analysis); then the largest "
    "batch per device that fits a TPU v5e, a TPU v4 and an H100, as they compile it (about a "
    "dozen compiles).")
_MEMORY_TABLE = flags.DEFINE_bool(
    "memory_table", False, "Instead, every experiment at its own batch: the iteration's memory on "
    "one device and the largest batch per device that fits each device kind, as a Markdown "
    "table (BUILD.md's; minutes).")
_EXPORT = flags.DEFINE_string(
    "export", None, "Instead, export every experiment's programs (generator iteration, sampling, "
    "the Inception feature pass) for cuda and tpu with jax.export, at the export test's tiny "
    "sizes (run from the repository root), and write them with an index.json to this folder.")
_EXPORT_FULL = flags.DEFINE_bool(
    "export_full", False, "With --export: the experiments at their own sizes instead.")
_SWEEP_MODELS = flags.DEFINE_integer(
    "sweep_models", 0, "Instead, time K models of a toy experiment trained as one sweep program "
    "(sweep.seeds=K, over --devices) against K runs of one model each, one after another.")

# torch_ref.py's name for the workload an experiment matches (its generator).
_TORCH_CASES = {"mlp": "toy", "dcgan": "dcgan64"}


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis["flops"])


@functools.cache
def _matmul_chain(n: int, chain: int) -> tuple[Callable, jax.Array]:
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32) / n ** 0.5
  fn = jax.jit(lambda x: jax.lax.scan(lambda c, _: (c @ a, None), x, None, length=chain)[0])
  fn(a).block_until_ready()  # Compile and warm up once.
  return fn, a


def matmul_peak(sizes=(1024, 2048), chain: int = 16, repeats: int = 2) -> float:
  """Best FLOP/s of a chain of n x n matmuls in one XLA program."""
  best = 0.0
  for n in sizes:
    fn, a = _matmul_chain(n, chain)
    for _ in range(repeats):
      t = time.perf_counter()
      fn(a).block_until_ready()
      best = max(best, 2 * n ** 3 * chain / (time.perf_counter() - t))
  return best


def iteration_flops(spec: updates.GanSpec, state, n_critic: int, batch: int,
                    data_shape: tuple[int, ...]) -> dict[str, float]:
  """FLOPs of one generator iteration: n_critic critic updates + generator update."""
  real = jnp.zeros((batch, *data_shape), jnp.float32)
  key = jax.random.PRNGKey(0)
  labels = jnp.zeros((batch,), jnp.int32) if spec.num_classes else None
  noise = updates.generator_input(spec, updates.sample_noise(spec, key, batch), labels)
  generate = jax.jit(lambda g, z: updates.fake_batch(spec, g, z)[0])
  critic = jax.jit(lambda c, r, f, k: updates.critic_step(spec, c, r, f, k, labels=labels))
  generator = jax.jit(lambda g, c, k: updates.generator_step(spec, g, c, k, batch))
  fake = generate(state.generator, noise)
  f_gen = _flops(generate.lower(state.generator, noise).compile())
  f_critic = _flops(critic.lower(state.critic, real, fake, key).compile())
  f_generator = _flops(generator.lower(state.generator, state.critic, key).compile())
  return {"critic_step": f_critic, "generate": f_gen, "generator_step": f_generator,
          "iteration": n_critic * (f_critic + f_gen) + f_generator}


def time_jax(run_iteration: Callable, state, iters: int) -> tuple[float, Any]:
  """Iterations/s, with as many in flight as the trainer allows."""
  inflight = InFlight()
  t = time.perf_counter()
  for i in range(iters):
    state, metrics = run_iteration(state)
    inflight.push(i + 1, metrics)
  inflight.drain()
  jax.block_until_ready(state)
  return iters / (time.perf_counter() - t), state


def torch_device() -> str:
  return _TORCH_DEVICE.value or ("cuda" if jax.default_backend() == "gpu" else "cpu")


def time_torch(script: str, case: str, iters: int) -> float:
  out = subprocess.run([sys.executable, script, case, str(iters), torch_device()], check=True,
                       capture_output=True, text=True).stdout.split()
  return float(out[-1])


def write_synthetic_lmdb(root: str, num: int = 2000) -> str:
  """An LMDB shaped like LSUN's export (JPEG values, 256 px short side)."""
  import io  # pylint: disable=import-outside-toplevel
  import lmdb  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel

  path = os.path.join(root, "bedroom_train_lmdb")
  if os.path.isdir(path):
    return root
  rng = np.random.default_rng(0)
  os.makedirs(root, exist_ok=True)
  env = lmdb.open(path, map_size=1 << 30)
  with env.begin(write=True) as txn:
    for i in range(num):
      # Smooth gradients plus noise: JPEG sizes like photos (~20-40 KB).
      y, x = np.mgrid[0:256, 0:342]
      base = np.stack([x * 255 // 342, y * 255 // 256, np.full_like(x, 37 * i % 256)], -1)
      noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
      buf = io.BytesIO()
      Image.fromarray(noisy).save(buf, "JPEG", quality=75)
      txn.put(f"{i:08d}".encode(), buf.getvalue())
  env.close()
  return root


def input_pipeline_figures(config, consumed_per_s: float) -> dict[str, Any]:
  """Images/s of the input pipeline alone, per core, and against what the
  training step consumes."""
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  data_config = config.data
  if _SYNTHETIC_LMDB.value:
    data_config = data_config.copy_and_resolve_references()
    data_config.dir = write_synthetic_lmdb(_SYNTHETIC_LMDB.value)
  count, seconds = images.decode_throughput(data_config, config.batch_size,
                                            _INPUT_PIPELINE.value)
  rate = count / seconds
  cores = os.cpu_count() or 1
  return {"input_images_per_s": round(rate, 1), "input_cores": cores,
          "input_images_per_s_per_core": round(rate / cores, 1),
          "input_over_consumed": round(rate / consumed_per_s, 1)}


def fid_figures(config, spec: updates.GanSpec, state, num: int) -> dict[str, Any]:
  """Inception images/s, and the wall time of FID on `num` generated samples
  (generation, features, statistics) against the data set's reference (or random
  images where the data set is not here), computed first and timed apart."""
  # pylint: disable=import-outside-toplevel
  from wgan_jax import generators
  from wgan_jax.data import DataError
  from wgan_jax.metrics import features, image_metrics, inception, inception_weights
  path = inception_weights.resolve(_INCEPTION_WEIGHTS.value)
  weights = (inception_weights.load(path) if path else inception_weights.InceptionWeights(
      inception.random_variables(0), "random", "random"))
  scorer = image_metrics.InceptionScorer(weights, config.eval.fid_resize, config.eval.batch_size)
  shape = data.data_shape(config.data)
  images = np.random.default_rng(0).integers(0, 256, (2 * scorer.batch_size, *shape), np.uint8)
  scorer.of_array(images[:scorer.batch_size], "warm-up")
  t = time.perf_counter()
  scorer.of_array(images, "Inception")
  images_per_s = len(images) / (time.perf_counter() - t)
  t = time.perf_counter()
  try:
    reference = image_metrics.reference(config.data, config.eval.reference_samples, scorer).stats
  except DataError:
    reference = features.GaussianStats.of(scorer.of_array(images, "reference").pool)
  reference_s = time.perf_counter() - t
  noise = generators.noise(config, num, config.seed)
  scorer.of_generator(spec.generator, state.generator, noise[:config.batch_size],
                      config.sampling_batch_norm, config.batch_size)  # Compiles.
  t = time.perf_counter()
  generated = scorer.of_generator(spec.generator, state.generator, noise,
                                  config.sampling_batch_norm, config.batch_size)
  fid = features.frechet_distance(features.GaussianStats.of(generated.pool), reference)
  seconds = time.perf_counter() - t
  return {"inception_weights": weights.describe(), "inception_images_per_s": round(images_per_s, 1),
          "fid_samples": num, "fid_end_to_end_s": round(seconds, 1),
          "fid_reference_s": round(reference_s, 1), "fid_value": round(fid, 3)}


class _Timed:
  """`config`'s compiled iteration on `devices`, compiled and timed."""

  def __init__(self, config, devices: Devices):
    parts = run_lib.build(config, devices)
    self.state = parts.create_state()
    self._run = lambda state: parts.iteration(state, config.n_critic)
    t = time.perf_counter()
    self.state, _ = self._run(self.state)
    jax.block_until_ready(self.state)
    self.compile_s = time.perf_counter() - t

  def rate(self, iters: int) -> float:
    rate, self.state = time_jax(self._run, self.state, iters)
    return rate


def sweep_figures(config, models: int, device_count: int, iters: int, repeats: int
                  ) -> dict[str, Any]:
  """K models as one sweep program against K separate one-model runs (timed in
  turn within each repeat, medians reported): the rates, and the wall time of
  training all K for `num_generator_steps` (separate runs compile once each)."""
  seeds_only = [("sweep.key", ""), ("sweep.grid", "()")]
  one = _Timed(configs.from_dict(config.to_dict(), [*seeds_only, ("sweep.seeds", "1")]),
               Devices.single())
  swept = _Timed(configs.from_dict(config.to_dict(), [*seeds_only, ("sweep.seeds", str(models))]),
                 Devices("jit", jax.devices()[:device_count], shard_models=True))
  one_rates, sweep_rates = [], []
  for _ in range(repeats):
    one_rates.append(one.rate(iters))
    sweep_rates.append(swept.rate(iters))
  one_rate, sweep_rate = statistics.median(one_rates), statistics.median(sweep_rates)
  steps_total = config.num_generator_steps
  sequential_s = models * (one.compile_s + steps_total / one_rate)
  sweep_s = swept.compile_s + steps_total / sweep_rate
  return {"sweep_models": models, "sweep_devices": device_count,
          "sweep_loop": builders.model_loop(config),
          "one_model_iters_per_s": round(one_rate, 2), "one_model_compile_s": round(one.compile_s, 2),
          "sweep_iters_per_s": round(sweep_rate, 2), "sweep_compile_s": round(swept.compile_s, 2),
          "sweep_model_iters_per_s": round(sweep_rate * models, 1),
          "sweep_speedup_per_model_iteration": round(sweep_rate * models / one_rate, 2),
          f"sequential_wall_s_{steps_total}_steps": round(sequential_s, 1),
          f"sweep_wall_s_{steps_total}_steps": round(sweep_s, 1),
          "sweep_wall_speedup": round(sequential_s / sweep_s, 2)}


def export_programs(out_dir: str, full: bool) -> dict[str, Any]:
  """Every case's programs exported for cuda and tpu and written to `out_dir`
  (`wgan_jax.export`); an export that fails is one line, exit 1."""
  # pylint: disable=import-outside-toplevel
  from wgan_jax import export
  make_config = export.full_size
  if not full:
    try:
      from tests import golden  # The export test's sizes.
    except ImportError:
      usage_error("--export at the tests' sizes reads tests/golden.py: run it from the "
                  "repository root, or add --export_full")
    make_config = golden.tiny_config
  try:
    return export.write_all(out_dir, make_config)
  except export.ExportError as e:
    sys.exit(str(e))


def main(parsed) -> None:
  name, overrides, _ = parsed
  if _MEMORY.value or _MEMORY_TABLE.value:  # Programs compiled to be measured, never run.
    xla_cpu.without_code_optimisation()
  try:
    config = configs.from_command_line(name, overrides)
  except configs.ConfigError as e:
    usage_error(str(e))
  torch_script = _TORCH_REF.value
  if torch_script and not os.path.isfile(torch_script):
    usage_error(f"--torch_ref={torch_script} does not exist; pass the path of torch_ref.py")

  n_critic, batch = config.n_critic, config.batch_size
  if not 1 <= _DEVICES.value <= jax.device_count():
    usage_error(f"--devices={_DEVICES.value}: this machine has {jax.device_count()} devices")
  if _EXPORT.value:
    _report(export_programs(_EXPORT.value, _EXPORT_FULL.value))
    return
  if _MEMORY.value:
    if config.batch_size % _DEVICES.value:
      usage_error(f"batch_size={config.batch_size} does not split over --devices={_DEVICES.value}")
    _report({"experiment": config.experiment, "backend": jax.default_backend(),
             **memory.iteration_memory(config, _DEVICES.value),
             **{k: v for k, v in memory.fit(config).items() if k.startswith("largest")}})
    return
  if _MEMORY_TABLE.value:
    print(memory_table(configs.known_experiments()))
    return
  if _SWEEP_MODELS.value:
    models = _SWEEP_MODELS.value
    if (not data.is_toy(config.data) or not 2 <= models <= 4096
        or models % _DEVICES.value):
      usage_error(f"--sweep_models={models} needs a toy experiment and 2 to 4096 models, a "
                  f"multiple of --devices={_DEVICES.value}")
    _report({"experiment": config.experiment, "backend": jax.default_backend(),
             **sweep_figures(config, _SWEEP_MODELS.value, _DEVICES.value, _ITERS.value,
                             _REPEATS.value)})
    return
  devices = Devices(config.parallelism, jax.devices()[:_DEVICES.value])
  try:
    devices.check_batch(batch)
    parts = run_lib.build(config, devices, synthetic=True)  # Random images: no data set.
  except (ValueError, configs.ConfigError) as e:
    usage_error(str(e))
  data_shape = parts.data_shape
  spec = parts.global_spec  # Outside pmap: for the FLOP count.
  stream = parts.stream(0)
  state = devices.put_state(parts.create_state())
  run_iteration = lambda state: parts.iteration(state, n_critic, stream.next(n_critic))

  t = time.perf_counter()
  state, _ = run_iteration(state)  # Compiles.
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - t
  _, state = time_jax(run_iteration, state, 2)  # Warm-up.

  case = _TORCH_CASES.get(config.model.generator.name)
  one_device = jax.device_put(devices.global_view(state), jax.devices()[0])
  flops = iteration_flops(spec, one_device, n_critic, batch, data_shape)["iteration"]
  # Alternate JAX, the matmul peak and PyTorch in every repeat, so that all
  # three see the same machine load; report medians of per-repeat figures.
  jax_rates, shares, peaks, torch_rates = [], [], [], []
  for _ in range(_REPEATS.value):
    rate, state = time_jax(run_iteration, state, _ITERS.value)
    peak = matmul_peak()
    jax_rates.append(rate)
    peaks.append(peak)
    shares.append(rate * flops / peak)
    if torch_script and case:
      torch_rates.append(time_torch(torch_script, case, _ITERS.value))

  if _PROFILE.value:
    with jax.profiler.trace(_PROFILE.value):
      _, state = time_jax(run_iteration, state, 3)

  rate = statistics.median(jax_rates)
  result = {
      "experiment": config.experiment, "backend": jax.default_backend(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "devices": devices.count, "parallelism": config.parallelism,
      "batch_size": batch, "n_critic": n_critic,
      "compile_s": round(compile_s, 2),
      "generator_iters_per_s": round(rate, 3),
      "real_examples_per_s": round(rate * n_critic * batch, 1),
      "gflop_per_iteration": round(flops / 1e9, 3),
      "achieved_gflop_per_s": round(rate * flops / 1e9, 1),
      "matmul_peak_gflop_per_s": round(statistics.median(peaks) / 1e9, 1),
      "share_of_matmul_peak": round(statistics.median(shares), 3),
  }
  if jax.default_backend() != "cpu":  # A CPU's peak is measured above, not looked up.
    result["device_kind"] = jax.devices()[0].device_kind
    result.update(accelerators.mfu(rate * flops, result["device_kind"], jax.default_backend(),
                                   config.precision, devices.count))
  if torch_rates:
    result["torch_ref_case"] = case
    result["torch_ref_device"] = torch_device()
    result["torch_ref_iters_per_s"] = round(statistics.median(torch_rates), 3)
    result["speedup_vs_torch_ref"] = round(
        statistics.median(j / t for j, t in zip(jax_rates, torch_rates)), 2)
  if _INPUT_PIPELINE.value > 0:
    result.update(input_pipeline_figures(config, result["real_examples_per_s"]))
  if _FID_SAMPLES.value > 0:
    result.update(fid_figures(config, spec, devices.global_view(state), _FID_SAMPLES.value))
  _report(result)


def memory_table(experiments: list[str]) -> str:
  """`memory.fit` of each experiment at its own settings, as a Markdown table."""
  kinds = list(memory.DEVICE_KINDS)
  lines = ["| experiment | batch | iteration at that batch, one device | "
           + " | ".join(f"largest batch per device, {name}" for name, _ in
                        memory.DEVICE_KINDS.values()) + " |",
           "|---|---|---|" + "---|" * len(kinds)]
  for name in experiments:
    figures = memory.fit(configs.load(name))
    lines.append(f"| `{name}` | {figures['per_device_batch']} | {figures['iteration_mib']:,} MiB | "
                 + " | ".join(f"{figures[f'largest_batch_per_device_{k}']:,}" for k in kinds)
                 + " |")
    print(lines[-1], file=sys.stderr, flush=True)  # Progress: the table takes minutes.
  return "\n".join(lines)


def _report(result: dict[str, Any]) -> None:
  """The figures, one a line on stdout, and in the --json file if asked."""
  width = max(map(len, result)) + 2
  for k, v in result.items():
    print(f"{k:{width}s} {v}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser())
