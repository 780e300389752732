#!/usr/bin/env bash
# Everything that needs a GPU, as one call on a lent device machine (see benchmarks/README.md).
# The GPU image has jax, flax and optax but not mnist1d: run from the repository root with
# PYTHONPATH=. and carry MNIST-1D as an .npz made here first:
#   .venv/bin/python -c "from jaxtune.tasks.data import save_npz; save_npz('benchmarks/data/mnist1d.npz')"
# Results go to $OUT (the device tool brings them back); commit them under benchmarks/results/.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1 JAXTUNE_MNIST1D_NPZ=benchmarks/data/mnist1d.npz
OUT=${OUT:-/tmp/gpu_results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
# GPU-relevant tests: executor (sharding, OOM halving), trainer, masking, layers.
python -m pytest -q -p no:cacheprovider tests/test_execute.py tests/test_train.py tests/test_layers.py \
  2>&1 | tail -5 | tee "$OUT/tests.txt"
python benchmarks/throughput.py --ns 1,8,64,256,1024,4096 --steps 1000 --seq-max 64 --naive-max 8 \
  --methods jaxtune,handwritten,sequential,per_step --data "$JAXTUNE_MNIST1D_NPZ" \
  --out "$OUT/throughput_gpu.json" 2>&1 | grep -v '^{' | tee "$OUT/throughput.txt"
python benchmarks/cnn.py --ns 64,256 --steps 1000 --full-vmap --data "$JAXTUNE_MNIST1D_NPZ" \
  --out "$OUT/cnn_gpu.json" 2>&1 | tail -4 | tee "$OUT/cnn.txt"
python benchmarks/scale.py --trials 100000 --steps 1000 --data "$JAXTUNE_MNIST1D_NPZ" \
  --out "$OUT/scale_gpu.json" 2>&1 | tail -2 | tee "$OUT/scale.txt"
