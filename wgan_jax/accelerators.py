"""The dense matmul peaks of the accelerators a run may land on, for model FLOPs
utilisation (MFU): the FLOP/s a run achieves over what its chips could do at the
precision its matmuls run at."""
from __future__ import annotations

from typing import Any

# Dense (no structured sparsity) peak FLOP/s of one chip, per `jax.Device.device_kind`
# and matmul precision, from the vendors' data sheets. A TPU's f32 matmuls run as
# bf16 passes, so a TPU has only its bf16 peak here.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "NVIDIA H100 80GB HBM3": {"bf16": 989.4e12, "tf32": 494.7e12, "f32": 66.9e12},  # SXM
    "NVIDIA H100 PCIe": {"bf16": 756.5e12, "tf32": 378.0e12, "f32": 51.2e12},
    "NVIDIA H100 NVL": {"bf16": 835.5e12, "tf32": 417.5e12, "f32": 60.0e12},
    "NVIDIA H200": {"bf16": 989.4e12, "tf32": 494.7e12, "f32": 66.9e12},  # SXM
    "NVIDIA H200 NVL": {"bf16": 835.5e12, "tf32": 417.5e12, "f32": 60.0e12},
    "TPU v4": {"bf16": 275e12},
    "TPU v5 lite": {"bf16": 197e12},  # v5e
    "TPU v5": {"bf16": 459e12},  # v5p
    "TPU v6 lite": {"bf16": 918e12},  # v6e (Trillium)
}


def matmul_precision(platform: str, precision: str) -> str:
  """What a run's matmuls run at on `platform` ("gpu", "tpu"), for the config's
  `precision`: bf16 as bf16; f32 at JAX's default precision, which is TF32 on an
  NVIDIA GPU's tensor cores and one bf16 pass on a TPU."""
  if precision == "bf16" or platform == "tpu":
    return "bf16"
  return "tf32" if platform == "gpu" else "f32"


def mfu(achieved_flops: float, device_kind: str, platform: str, precision: str,
        devices: int) -> dict[str, Any]:
  """Model FLOPs utilisation of `achieved_flops` (FLOP/s over all `devices`) against
  the devices' peak at the precision the run's matmuls take; where the device
  kind's peak is not in `PEAK_FLOPS`, a line saying so instead."""
  at = matmul_precision(platform, precision)
  peak = PEAK_FLOPS.get(device_kind, {}).get(at)
  if peak is None:
    return {"mfu": f"no {at} peak known for {device_kind!r} (wgan_jax/accelerators.py)"}
  return {"peak_precision": at, "peak_tflop_per_s": round(peak * devices / 1e12, 1),
          "mfu": round(achieved_flops / (peak * devices), 4)}
