"""Which multi-process launcher a process runs under, read from its environment
and sysfs: no JAX, so the launcher (`supervisor.py`) and the config layer can
ask before any backend starts."""
from __future__ import annotations

import glob
import os
from typing import Mapping, Sequence

# Google's PCI vendor id: a Cloud TPU VM has its chips attached through PCI.
_GOOGLE_PCI_VENDOR = "0x1ae0"


def _tpu_chips_attached() -> bool:
  """Whether this machine is a Cloud TPU VM (read from sysfs: must not touch
  the XLA backend before `jax.distributed.initialize`)."""
  for path in glob.glob("/sys/bus/pci/devices/*/vendor"):
    try:
      with open(path) as f:
        if f.read().strip() == _GOOGLE_PCI_VENDOR:
          return True
    except OSError:
      continue
  return False


def _count(value: str | None) -> int:
  try:
    return int(value or 0)
  except ValueError:
    return 0


def cluster_environment(environ: Mapping[str, str] | None = None) -> str | None:
  """The multi-process launcher this process runs under, as
  `jax.distributed.initialize()` auto-detects it, or None for a plain process.

  "tpu": a Cloud TPU VM (TPU chips on PCI, or the TPU worker list / Megascale
  variables that GKE and multi-slice set); JAX reads the workers from the
  metadata server, which is correct for one host as for a pod slice.
  "slurm": an srun step with more than one task. "openmpi": mpirun.
  """
  env = os.environ if environ is None else environ
  workers = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES")
  if workers or env.get("MEGASCALE_COORDINATOR_ADDRESS") or _tpu_chips_attached():
    return "tpu"
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
           "SLURM_LOCALID")
  if all(k in env for k in slurm) and _count(env["SLURM_NTASKS"]) > 1:
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in env and _count(env.get("OMPI_COMM_WORLD_SIZE", "2")) > 1:
    return "openmpi"
  return None


def lost_said(lost: Sequence[int] | None) -> str:
  """The words for the processes of a run found lost (None: which is unknown)."""
  if lost is None or not lost:
    return "another process of the run was lost"
  if 0 in lost:
    return "process 0, the coordinator, is gone"
  return f"process {', '.join(map(str, sorted(lost)))} stopped sending heartbeats (it died, or hangs)"
