#!/usr/bin/env bash
# The accelerator checks of BUILD.md "GPU and TPU", as one script that fits a lent
# GPU's device time (about 6 minutes of commands; each has its own timeout).
#
#   bash tests/gpu_session.sh prepare      # here, with network: fills .device/
#   bash tests/gpu_session.sh run [OUT]    # there: figures to OUT/gpu_figures.json, log to OUT/log
#
# The lent machines' image holds JAX (CUDA), flax, optax, orbax and a CUDA PyTorch, and
# nothing can be fetched there: `prepare` downloads the packages the benchmark's and a toy
# run's paths need that the image lacks (ml_collections; POT, for exact W1; tensorboard,
# whose protos and record writer the run's logs use: no TensorFlow) as wheels, copies
# ../shared/bench/torch_ref.py, and exports every program for cuda/tpu (bench --export),
# all into .device/ (git-ignored, 7 MiB); the device call carries it: carry [".device"].
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=.device
mode="${1:-run}"

if [ "$mode" = prepare ]; then
  set -e
  grep -qx "/$DEV/" .git/info/exclude || echo "/$DEV/" >> .git/info/exclude
  rm -rf "$DEV" && mkdir -p "$DEV/wheels"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$DEV/wheels" ml_collections POT tensorboard
  cp ../shared/bench/torch_ref.py "$DEV/torch_ref.py"
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m wgan_jax.bench \
      --export="$DEV/exported" > "$DEV/export.log"
  du -sh "$DEV"
  exit 0
fi

OUT="${2:-${OUT:-/tmp/gpu_session}}"
mkdir -p "$OUT" /tmp/figures
exec > >(tee "$OUT/log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD" XLA_FLAGS=
# Half the GPU for JAX, so torch_ref.py's process beside it has room.
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.5
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$DEV"/wheels/*.whl || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import jax, torch; print(jax.__version__, jax.devices(), torch.__version__, torch.cuda.is_available())"

bench() {  # bench NAME SECONDS ARGS...: one figures file per command
  local name="$1" seconds="$2"; shift 2
  echo "=== $name: python -m wgan_jax.bench $*"
  timeout "$seconds" python3 -m wgan_jax.bench "$@" --json="/tmp/figures/$name.json" \
      || echo "=== $name: exit $?"
}
REF="--torch_ref=$DEV/torch_ref.py"
bench toy 60 --experiment=toy_8gaussians "$REF" --iters=200 --repeats=3
bench dcgan 90 --experiment=bedrooms_dcgan "$REF" --iters=50 --repeats=3
bench dcgan_bf16 60 --experiment=bedrooms_dcgan --experiment.precision=bf16 --iters=50 --repeats=3
bench resnet 90 --experiment=cifar10_resnet_gp --iters=30 --repeats=3
bench resnet_bf16 90 --experiment=cifar10_resnet_gp --experiment.precision=bf16 --iters=30 --repeats=3
bench sweep 60 --experiment=toy_8gaussians --sweep_models=16 --iters=20 --repeats=3
bench memory_dcgan_gp 90 --experiment=bedrooms_dcgan_gp --memory

echo "=== a toy run through the trainer on the GPU: checkpoints, logs, exact W1"
timeout 90 python3 -m wgan_jax.train --experiment=toy_8gaussians \
    --experiment.num_generator_steps=1000 --experiment.eval_every=500 --workdir=/tmp/toy_run \
    && cp /tmp/toy_run/summary.json /tmp/figures/train_toy.json || echo "=== train: exit $?"

echo "=== the exported programs, compiled by XLA:GPU and run on zeros"
timeout 90 python3 - "$DEV/exported" <<'PY' || echo "=== exported: exit $?"
import json, sys, time
import jax, jax.numpy as jnp
from wgan_jax import export
folder = sys.argv[1]
results = {}
for case in ("toy_8gaussians/iteration", "bedrooms_dcgan/iteration", "cifar10_resnet_gp/iteration",
             "digits_dcgan_gp+spectral+ema+bf16/iteration", "bedrooms_dcgan/sampling"):
  try:
    exported, entry = export.load(folder, case)
    mesh = jax.sharding.Mesh(jax.devices()[:exported.nr_devices], ("data",))
    args = [jax.device_put(jnp.zeros(a.shape, a.dtype), s)
            for a, s in zip(exported.in_avals, exported.in_shardings_jax(mesh))]
    t = time.perf_counter()
    jax.block_until_ready(jax.jit(exported.call)(*args))
    results[case] = {"ok": True, "first_call_s": round(time.perf_counter() - t, 2)}
  except Exception as e:  # pylint: disable=broad-except
    results[case] = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
  print(case, results[case])
json.dump(results, open("/tmp/figures/exported.json", "w"), indent=1)
PY

echo "=== tests on the one real device"
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_steps.py tests/test_losses.py \
    tests/test_optim.py || echo "=== tests: exit $?"

python3 - "$OUT" <<'PY'
import glob, json, os, sys
figures = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob("/tmp/figures/*.json"))}
json.dump(figures, open(os.path.join(sys.argv[1], "gpu_figures.json"), "w"), indent=1)
print("wrote", sorted(figures))
PY
