#!/usr/bin/env bash
# Everything that needs a GPU, as one call on a lent device machine (see benchmarks/README.md);
# about 10 minutes on an H200. The GPU image has jax, flax and optax but not mnist1d: run from
# the repository root with PYTHONPATH=. and carry MNIST-1D as an .npz made here first:
#   .venv/bin/python -c "from jaxtune.tasks.data import save_npz; save_npz('benchmarks/data/mnist1d.npz')"
# and scikit-learn's digits for cnn2d.py (no scikit-learn there either):
#   .venv/bin/python -c "from sklearn.datasets import load_digits as l; import numpy as np; d = l(); np.savez('benchmarks/data/digits.npz', data=d.data, target=d.target)"
# Results go to $OUT as log.txt and results.tar.gz (the device tool brings back at most 8 files,
# and there are more parts than that); unpack and commit them under benchmarks/results/.
#
#   benchmarks/gpu_check.sh --cpu-smoke   # every part, tiny, on this CPU (a dry run: ~10 min on 2 cores)
set -uo pipefail
SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
export PYTHONPATH=. PYTHONUNBUFFERED=1 JAXTUNE_MNIST1D_NPZ=benchmarks/data/mnist1d.npz
export JAXTUNE_DIGITS_NPZ=benchmarks/data/digits.npz XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python}
if [ "$SMOKE" = 1 ]; then
  export JAX_PLATFORMS=cpu
  OUT=${OUT:-/tmp/gpu_check_smoke}
  PY=${PYTHON:-.venv/bin/python}
  # Sizes of each part: tiny here, the real ones below.
  TP_NS=1,8 TP_STEPS=50 RF_NS=1,8 RF_STEPS=20 CNN_NS=8 CNN_STEPS=40 C2_N=8 C2_STEPS=20
  POP_LANES=16 POP_STEPS=40 LANE_COUNTS=16 LANE_STEPS=300 SCALE_TRIALS=2000 SCALE_STEPS=20
  TESTS="tests/test_layers.py tests/test_sharing.py"
  CP_STEPS=60 CP_TRIALS=8
  GROK="--p 7 --d-model 16 --d-mlp 32 --train-fraction 0.5 --steps 200 --eval-every 50" GROK_S=300
else
  OUT=${OUT:-/tmp/gpu_results}
  TP_NS=1,8,64,256,1024,4096 TP_STEPS=1000 RF_NS=1,64,512,4096 RF_STEPS=500 CNN_NS=64,256 CNN_STEPS=1000
  C2_N=256 C2_STEPS=500 POP_LANES=1024 POP_STEPS=1000 LANE_COUNTS=256,1024,4096 LANE_STEPS=500
  SCALE_TRIALS=100000 SCALE_STEPS=1000
  TESTS="tests/test_execute.py tests/test_train.py tests/test_layers.py tests/test_tasks.py tests/test_sharing.py"
  CP_STEPS=900 CP_TRIALS=32
  # Grokking's phase diagram at the papers' size (Nanda et al. 2023: p = 113, 30% of pairs, d_model
  # 128, 4 heads, d_mlp 512, 10k full-batch steps): 24 transformers in one program, last, in its own time limit.
  GROK="--p 113 --d-model 128 --d-mlp 512 --train-fraction 0.3 --steps 10000 --eval-every 100" GROK_S=300
fi
mkdir -p benchmarks/data
if [ ! -f "$JAXTUNE_MNIST1D_NPZ" ]; then  # here (not on the GPU machine, which lacks mnist1d): make it
  $PY -c "from jaxtune.tasks.data import save_npz; save_npz('$JAXTUNE_MNIST1D_NPZ')"
fi
if [ ! -f "$JAXTUNE_DIGITS_NPZ" ]; then  # the same for scikit-learn's digits
  $PY -c "from sklearn.datasets import load_digits as l; import numpy as np; d = l(); np.savez('$JAXTUNE_DIGITS_NPZ', data=d.data, target=d.target)"
fi
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi: $($PY -c 'import jax; print(jax.devices())')"
  # GPU-relevant tests (equalities are checked in full float32: tests/conftest.py).
  timeout 150 $PY -m pytest -q -p no:cacheprovider $TESTS 2>&1 | tail -15 || echo "gpu_check: FAILED tests"
  # Programs compiled and their seconds per driver (a masked-width sweep, Hyperband, PBT), from
  # nothing and from the persistent cache: a GPU's compile is slow and its training fast.
  $PY benchmarks/compiles.py --steps $CP_STEPS --trials $CP_TRIALS --out "$OUT/compiles_gpu.json" 2>&1 | tail -7 \
    || echo "gpu_check: FAILED compiles"
  # Every method in a fresh process, on the same device with the same options.
  $PY benchmarks/throughput.py --ns $TP_NS --steps $TP_STEPS --seq-max 64 --naive-max 8 \
    --methods jaxtune,handwritten,sequential --data "$JAXTUNE_MNIST1D_NPZ" --out "$OUT/throughput_gpu.json" \
    2>&1 | grep -v '^{' || echo "gpu_check: FAILED throughput"
  # Fractions of the measured peaks: MLP, CNN and GRU, plain vmap and jaxtune.
  $PY benchmarks/roofline.py --ns $RF_NS --steps $RF_STEPS --out "$OUT/roofline_gpu.json" 2>&1 | grep '^|\|^peaks\|Error' \
    || echo "gpu_check: FAILED roofline"
  $PY benchmarks/cnn.py --ns $CNN_NS --steps $CNN_STEPS --full-vmap --data "$JAXTUNE_MNIST1D_NPZ" \
    --out "$OUT/cnn_gpu.json" 2>&1 | tail -4 || echo "gpu_check: FAILED cnn"
  $PY benchmarks/cnn2d.py --parts equality,plan,one --n $C2_N --plan-steps $C2_STEPS --repeats 2 \
    --out "$OUT/cnn2d_gpu.json" 2>&1 | tail -8 || echo "gpu_check: FAILED cnn2d"
  # A population's segment boundary (evaluation, decision), then PBT and ASHA end to end at many lanes.
  $PY benchmarks/populations.py --only boundary --lanes $POP_LANES --boundary-steps $POP_STEPS --segments 10 \
    --out "$OUT/populations_gpu.json" 2>&1 | tail -2 || echo "gpu_check: FAILED populations boundary"
  $PY benchmarks/populations.py --only lanes --lane-counts $LANE_COUNTS --lane-steps $LANE_STEPS \
    --out "$OUT/populations_gpu.json" 2>&1 | tail -8 || echo "gpu_check: FAILED populations lanes"
  # The one line a user sees if a chunk does not fit; XLA's own allocator messages are counted.
  $PY benchmarks/scale.py --trials $SCALE_TRIALS --steps $SCALE_STEPS --data "$JAXTUNE_MNIST1D_NPZ" \
    --out "$OUT/scale_gpu.json" > "$OUT/scale_log.txt" 2>&1 || echo "gpu_check: FAILED scale"
  echo "scale: $(grep -c RESOURCE_EXHAUSTED "$OUT/scale_log.txt") RESOURCE_EXHAUSTED lines"; tail -3 "$OUT/scale_log.txt"
  # shellcheck disable=SC2086
  timeout $GROK_S $PY benchmarks/grokking.py $GROK --tag _paper --out "$OUT" 2>&1 | tail -28 \
    || echo "gpu_check: FAILED grokking"
} 2>&1 | tee "$OUT/log.txt"
# Every result in one archive beside the log (at most 8 files come back from a device).
archive=$(mktemp --suffix=.tar.gz)  # made outside $OUT: tar reading a folder it writes into fails
tar czf "$archive" -C "$OUT" --exclude=log.txt . && find "$OUT" -type f ! -name log.txt -delete \
  && mv "$archive" "$OUT/results.tar.gz"
# Each part that exits non-zero says so in the log: count them, and fail (the smoke run's point).
failed=$(grep -c '^gpu_check: FAILED' "$OUT/log.txt")
echo "gpu_check: $failed part(s) failed"
[ "$failed" = 0 ]
