"""Memory before a run: the largest batch a device holds, found from compiled
programs' memory analysis, and the accelerator peaks bench's MFU is taken against."""
import pytest

from tests.helpers import tiny_config
from wgan_jax import accelerators, memory


@pytest.mark.parametrize("fixed, per_example, capacity", [
    (1_000, 37, 10**6), (5 * 2**20, 4_096, 16 * 2**30), (10**6, 10**3, 5 * 10**5)])
def test_largest_batch_is_the_last_that_fits_to_within_the_tolerance(fixed, per_example, capacity):
  calls = []

  def needed(b):  # Nearly linear, as a compiled program's memory is: a step every 1,000.
    calls.append(b)
    return fixed + per_example * b + 7_000 * (b // 1_000)

  exact = max([0] + [n for n in range(0, capacity // per_example + 1) if needed(n) <= capacity]
              ) if capacity // per_example < 10**6 else None
  calls.clear()
  b = memory.largest_batch(needed, capacity, start=64)
  compiles = len(calls)
  assert needed(b) <= capacity if b else needed(1) > capacity
  assert needed(int(b * (1 + memory.BATCH_TOLERANCE)) + 1) > capacity
  if exact is not None:
    assert exact * (1 - memory.BATCH_TOLERANCE) <= b <= exact
  assert compiles <= 6, calls  # Each call is a compile.


def test_the_fit_holds_for_the_compiled_program_and_a_larger_batch_does_not_fit():
  config = tiny_config(batch_size=32)
  accelerator = memory.accelerator_config(config)
  assert (accelerator.critic_loop, accelerator.convolutions) == ("scan", "xla")
  at_batch = memory.iteration_bytes(accelerator, 32)
  capacity = 3 * at_batch
  figures = memory.fit(config, {"small": capacity})
  assert figures["per_device_batch"] == 32
  assert figures["iteration_mib"] == round(at_batch / 2**20, 1)
  largest = figures["largest_batch_per_device_small"]
  assert largest > 64  # three times the memory of 32 examples holds more than twice as many
  assert memory.iteration_bytes(accelerator, largest) <= capacity
  assert memory.iteration_bytes(accelerator, int(largest * 1.03)) > capacity
  assert figures["compiles"] <= 7


def test_mfu_is_taken_against_the_peak_of_the_precision_the_matmuls_run_at():
  h100 = "NVIDIA H100 80GB HBM3"
  # f32 on an NVIDIA GPU runs its matmuls as TF32 at JAX's default precision.
  figures = accelerators.mfu(49.47e12, h100, "gpu", "f32", devices=1)
  assert figures == {"peak_precision": "tf32", "peak_tflop_per_s": 494.7, "mfu": 0.1}
  figures = accelerators.mfu(2 * 98.94e12, h100, "gpu", "bf16", devices=2)
  assert figures["peak_precision"] == "bf16" and figures["mfu"] == pytest.approx(0.1)
  # A TPU runs f32 matmuls as bf16 passes; v5e's device_kind is "TPU v5 lite".
  assert accelerators.mfu(19.7e12, "TPU v5 lite", "tpu", "f32", 1)["mfu"] == pytest.approx(0.1)
  assert accelerators.mfu(1e12, "NVIDIA A100-SXM4-40GB", "gpu", "f32", 1) == {
      "mfu": "no tf32 peak known for 'NVIDIA A100-SXM4-40GB' (wgan_jax/accelerators.py)"}
  for kind, peaks in accelerators.PEAK_FLOPS.items():
    assert "bf16" in peaks and all(p > 1e14 or at == "f32" for at, p in peaks.items()), kind


@pytest.mark.slow
def test_the_memory_table_has_a_row_per_experiment_with_every_device_kind():
  from wgan_jax import bench  # pylint: disable=import-outside-toplevel
  table = bench.memory_table(["toy_8gaussians_clip"]).splitlines()
  assert len(table) == 3 and table[0].count("|") == 4 + len(memory.DEVICE_KINDS)
  assert all(name in table[0] for name, _ in memory.DEVICE_KINDS.values())
  cells = [c.strip() for c in table[2].strip("|").split("|")]
  assert cells[:2] == ["`toy_8gaussians_clip`", "256"] and cells[2].endswith(" MiB")
  largest = [int(c.replace(",", "")) for c in cells[3:]]
  assert 10**5 < largest[0] < largest[1] < largest[2]  # a toy MLP: KBs an example
