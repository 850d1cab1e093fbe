#!/usr/bin/env bash
# The prepared device check for the fast optimizer paths (about 9 minutes on one H100), for a session that
# has a GPU: CUDA tests (no-sync, the Triton kernels against the single-tensor path), the optimizer-step
# benchmark on all four models, and the ResNet-50 training-iteration mode. The official adamp==0.3.0 must
# be in .cache/reference (run the tests once here; the GPU machine has no network) and travel with the
# tree (carry .cache/reference).
#   bash scripts/gpu_check.sh [OUT_DIR]
set -uo pipefail
export PYTHONUNBUFFERED=1
out=${1:-results/bench}
python3 -m pytest -q -p no:cacheprovider tests/optim/test_behaviour.py tests/optim/test_triton.py -k cuda 2>&1 | tail -15
timeout 360 python3 -m benchmarks.bench_step --rounds 7 --steps 5 --warmup 2 --out "$out/step"
timeout 150 python3 -m benchmarks.bench_step --mode iteration --rounds 5 --out "$out/iteration"
