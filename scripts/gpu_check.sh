#!/usr/bin/env bash
# The prepared device check for the fast optimizer paths, for a session that has a GPU. On a fresh machine
# most of the time goes to inductor compiling the fused variants. Two parts, each under the device tool's
# 10-minute limit per command:
#   bash scripts/gpu_check.sh main [OUT_DIR]    (about 9 min on one H100)
#       1. the CUDA tests: no host sync in step(), the Triton kernels against the single-tensor path;
#       2. the optimizer-step benchmark on ResNet-50 with every implementation (the main figures);
#       3. the ResNet-50 training-iteration mode (bf16, channels_last, batch 64 and 256);
#   bash scripts/gpu_check.sh others [OUT_DIR]  (about 4 min)
#       4. the other three parameter sets, without the segmented variants (their compilation takes
#          minutes), merged into the same results.
# Each step has its own time limit and writes its results as it goes, so a cut-off step loses little.
# The official adamp==0.3.0 must be in .cache/reference (run the tests once here; the GPU machine has no
# network) and travel with the tree (carry .cache/reference).
set -uo pipefail
export PYTHONUNBUFFERED=1
part=${1:-main}
out=${2:-results/bench}
case "$part" in
main)
    timeout 150 python3 -m pytest -q -p no:cacheprovider tests/optim/test_behaviour.py tests/optim/test_triton.py \
        -k cuda 2>&1 | tail -15
    timeout 240 python3 -m benchmarks.bench_step --models resnet50 --rounds 7 --steps 5 --warmup 2 --out "$out/step"
    timeout 150 python3 -m benchmarks.bench_step --mode iteration --rounds 5 --out "$out/iteration"
    ;;
others)
    timeout 280 python3 -m benchmarks.bench_step --models vit_b16,efficientnet_b0,transformer_24x1024 \
        --skip segmented --rounds 5 --steps 5 --warmup 2 --merge --out "$out/step"
    ;;
*)
    echo "usage: bash scripts/gpu_check.sh main|others [OUT_DIR]" >&2
    exit 2
    ;;
esac
