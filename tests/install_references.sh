#!/usr/bin/env bash
# The reference implementations the FID cross-checks compare against
# (test-only; BUILD.md explains the choices): PyTorch's CPU build, and
# torchvision / pytorch-fid / torch-fidelity without their dependencies,
# which would pull a CUDA build of PyTorch (about 8 GB).
set -euo pipefail
python -m pip install --quiet "torch==2.13.0" tqdm
python -m pip install --quiet --no-deps "torchvision==0.28.0" "pytorch-fid==0.3.0" \
  "torch-fidelity==0.4.0"
