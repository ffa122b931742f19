"""Every experiment's programs lower for CUDA and TPU (issue 25): the compiled
generator iteration as the trainer builds it (jit over a mesh and pmap,
penalties, spectral norm, EMA, bf16, DiffAugment and ADA, conditional heads,
a sweep), the sampling program and the Inception feature pass, exported with
`jax.export` for platforms this machine does not have, at the golden tests'
tiny sizes (`wgan_jax/export.py`; BUILD.md, "Exported programs"). Lowering
only: the one test that compiles runs a CPU export against the trainer. Each
program's serialized size is printed (`pytest -s`) and recorded
(`record_property`, in the JUnit XML). The exports take about 90 s of one
core, so they are `slow`."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import golden
from tests.conftest import ROOT
from wgan_jax import builders, export, run
from wgan_jax.devices import Devices
from wgan_jax.metrics import inception


def _check(programs, record_property):
  for program in programs:
    assert program.exported.platforms == export.PLATFORMS, program.name
    assert not program.host_callbacks(), (
        f"{program.name} calls the host: {', '.join(program.host_callbacks())}")
    assert len(program.inputs) == len(program.exported.in_avals), program.name
    size = len(program.serialized)
    record_property(program.name, size)
    print(f"{program.name}: {size:,} bytes, {program.exported.nr_devices} device(s), "
          f"custom calls: {', '.join(program.custom_calls()) or 'none'}")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(export.cases()))
def test_the_programs_of_every_case_export_for_cuda_and_tpu(name, record_property):
  case = export.cases()[name]
  if case.sharded:
    assert jax.device_count() == 8  # conftest's fake CPU devices
  programs = export.case_programs(name, case, golden.tiny_config)
  assert [p.name.split("/")[1] for p in programs] == (
      ["iteration", "sampling"] if case.sampling else ["iteration"])
  if case.sharded:
    assert programs[0].exported.nr_devices == 8, name
  _check(programs, record_property)


@pytest.mark.slow
@pytest.mark.parametrize("resize", inception.RESIZES)
def test_the_inception_feature_pass_exports_over_the_mesh(resize, record_property):
  program = export.inception_program("fid", (32, 32, 3), 16, resize)
  assert program.exported.nr_devices == 8
  # Weights and images in; pool features [16, 2048] and logits [16, 1008] out.
  assert [tuple(a.shape) for a in program.exported.out_avals] == [(16, 2048), (16, 1008)]
  _check([program], record_property)


def test_a_failed_export_names_the_case_and_the_program(monkeypatch):
  def broken(*args, **kwargs):
    raise NotImplementedError("no lowering for this op on cuda\nmore detail")
  monkeypatch.setattr(export, "iteration_program", broken)
  with pytest.raises(export.ExportError, match=r"^toy_8gaussians: exporting the generator "
                     r"iteration for cuda/tpu failed: NotImplementedError: no lowering for this "
                     r"op on cuda$"):
    export.case_programs("toy_8gaussians", export.cases()["toy_8gaussians"], golden.tiny_config)


def test_a_host_callback_is_refused_and_would_be_found():
  """jax.export refuses a host callback (it cannot lower one for cuda and tpu at
  once, nor serialize one for any platform); were one to get through, the
  check finds it by the custom call JAX lowers it to."""
  def calls_the_host(x):
    return jax.pure_callback(lambda v: v, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1
  x = jax.ShapeDtypeStruct((4,), np.float32)
  with pytest.raises(NotImplementedError, match="python_callback"):
    export.export("callback/program", jax.jit(calls_the_host), x)
  with pytest.raises(NotImplementedError, match="host_callbacks"):
    export.export("callback/program", jax.jit(calls_the_host), x, platforms=("cpu",))
  lowered = jax.jit(calls_the_host).lower(x).as_text()  # For this CPU.
  assert export.host_callbacks(lowered) == ["xla_ffi_python_cpu_callback"]
  assert not export.host_callbacks(jax.jit(lambda x: x + 1).lower(x).as_text())


def test_written_programs_deserialize_with_their_index(tmp_path):
  case = export.cases()["toy_8gaussians"]
  programs = export.case_programs("toy_8gaussians", case, golden.tiny_config)
  index = export.write(programs, str(tmp_path))
  with open(index) as f:
    entries = json.load(f)["programs"]
  assert [e["name"] for e in entries] == ["toy_8gaussians/iteration", "toy_8gaussians/sampling"]
  exported, entry = export.load(str(tmp_path), "toy_8gaussians/iteration")
  assert entry["bytes"] == len(programs[0].serialized)
  assert exported.platforms == export.PLATFORMS
  assert [tuple(i["shape"]) for i in entry["inputs"]] == [tuple(a.shape) for a in exported.in_avals]
  assert any(i["path"].startswith("[0][0].generator") for i in entry["inputs"])


@pytest.mark.slow
def test_an_exported_iteration_is_the_trainers(tmp_path):
  """The program the export captures, exported for this CPU, written, read
  back and called on the leaves of a fresh state, gives what the trainer's
  compiled iteration gives, bit for bit: the capture is the trainer's program,
  and the flat calling convention of BUILD.md ("Exported programs") feeds it.
  The one test here that compiles (two small programs)."""
  name, case = "toy_8gaussians", export.cases()["toy_8gaussians"]
  programs = export.case_programs(name, case, golden.tiny_config, platforms=("cpu",))
  export.write(programs, str(tmp_path))
  exported, entry = export.load(str(tmp_path), f"{name}/iteration")

  config = golden.tiny_config(case.experiment, (*case.overrides, *builders.ACCELERATOR_CHOICES))
  parts = run.build(config, Devices(config.parallelism, jax.devices()[:1]))
  args = (parts.create_state(), 0)  # The toy sets draw their data in the program.
  assert tuple(i["path"] for i in entry["inputs"]) == export.paths((args, {}))
  outputs = exported.call(*jax.tree.leaves(args))
  want = jax.tree.leaves(parts.iteration(parts.create_state(), config.n_critic))
  assert len(outputs) == len(want) == len(entry["outputs"])
  for got, expected, path in zip(outputs, want, (o["path"] for o in entry["outputs"])):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=path)


def test_the_benchmarks_programs_need_no_tensorflow_or_clu():
  """A GPU image may hold JAX and no TensorFlow (the lent H100s' does): the bench's
  and the export's runs, on synthetic data, import neither TensorFlow nor clu."""
  code = ("import sys, jax; from wgan_jax import configs, run; from wgan_jax.devices import Devices\n"
          "for n in ('toy_8gaussians', 'bedrooms_dcgan', 'cifar10_resnet_acgan'):\n"
          "  c = configs.load(n); c.batch_size = 8\n"
          "  run.build(c, Devices('jit', jax.devices()[:1]), synthetic=True)\n"
          "import wgan_jax.bench, wgan_jax.export, wgan_jax.memory\n"
          "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', "
          "'tensorflow_datasets', 'clu', 'torch'}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"), timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().splitlines()[-1] == "[]"
