#!/usr/bin/env bash
# Everything that needs a GPU, as one call on a lent device machine (see benchmarks/README.md);
# about 10 minutes on an H200. The GPU image has jax, flax and optax but not mnist1d: run from
# the repository root with PYTHONPATH=. and carry MNIST-1D as an .npz made here first:
#   .venv/bin/python -c "from jaxtune.tasks.data import save_npz; save_npz('benchmarks/data/mnist1d.npz')"
# and scikit-learn's digits for cnn2d.py (no scikit-learn there either):
#   .venv/bin/python -c "from sklearn.datasets import load_digits as l; import numpy as np; d = l(); np.savez('benchmarks/data/digits.npz', data=d.data, target=d.target)"
# Results go to $OUT (the device tool brings back at most 8 files); commit them under
# benchmarks/results/.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1 JAXTUNE_MNIST1D_NPZ=benchmarks/data/mnist1d.npz
export JAXTUNE_DIGITS_NPZ=benchmarks/data/digits.npz XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-/tmp/gpu_results}
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total --format=csv
  # GPU-relevant tests (equalities are checked in full float32: tests/conftest.py).
  timeout 150 python -m pytest -q -p no:cacheprovider tests/test_execute.py tests/test_train.py tests/test_layers.py \
    tests/test_tasks.py 2>&1 | tail -15
  # Every method in a fresh process, on the same device with the same options.
  python benchmarks/throughput.py --ns 1,8,64,256,1024,4096 --steps 1000 --seq-max 64 --naive-max 8 \
    --methods jaxtune,handwritten,sequential --data "$JAXTUNE_MNIST1D_NPZ" --out "$OUT/throughput_gpu.json" \
    2>&1 | grep -v '^{'
  python benchmarks/cnn.py --ns 64,256 --steps 1000 --full-vmap --data "$JAXTUNE_MNIST1D_NPZ" \
    --out "$OUT/cnn_gpu.json" 2>&1 | tail -4
  python benchmarks/cnn2d.py --parts equality,plan,one --n 256 --plan-steps 500 --repeats 2 \
    --out "$OUT/cnn2d_gpu.json" 2>&1 | tail -8
  # A population's segment boundary (evaluation, decision) at N=1024 lanes.
  python benchmarks/populations.py --only boundary --lanes 1024 --boundary-steps 1000 --segments 10 \
    --out "$OUT/populations_gpu.json" 2>&1 | tail -2
  # The one line a user sees if a chunk does not fit; XLA's own allocator messages are counted.
  python benchmarks/scale.py --trials 100000 --steps 1000 --data "$JAXTUNE_MNIST1D_NPZ" \
    --out "$OUT/scale_gpu.json" > "$OUT/scale_log.txt" 2>&1
  echo "scale: $(grep -c RESOURCE_EXHAUSTED "$OUT/scale_log.txt") RESOURCE_EXHAUSTED lines"; tail -3 "$OUT/scale_log.txt"
} 2>&1 | tee "$OUT/log.txt"
