#!/usr/bin/env bash
# The prepared device check for the fast optimizer paths, for a session that has a GPU. A session gets
# about 15 minutes of device time in all, the machine's start included, and 10 minutes per command, so it
# comes in two parts; run `main` first and `more` if at least 5 minutes are left (`status` says):
#   bash scripts/gpu_check.sh main [OUT_DIR]    (about 6 min on one H100, limits add up to 400 s)
#       1. the CUDA tests: no host sync in step() (every implementation but the compiled segmented one);
#          the default foreach path (batched projection) and the Triton kernels against the single-tensor
#          path on CUDA;
#       2. the optimizer-step benchmark on ResNet-50 with every implementation but the compiled segmented
#          projection (its compilation takes minutes): the main figures, and the timings that
#          decide the GPU defaults (foreach batched vs per-tensor, fused inductor vs Triton);
#   bash scripts/gpu_check.sh more [OUT_DIR]    (about 4 min, limits add up to 280 s)
#       3. the ResNet-50 training-iteration mode (bf16, channels_last, batch 64 and 256);
#       4. ViT-B/16, EfficientNet-B0 and the transformer with the default implementations, Triton and the
#          baselines, merged into the same results.
# Each step has its own time limit and writes its results as it goes, so a cut-off step loses little.
# What the figures decide (compare rows of one run only):
#   * "adamp/sgdp foreach (ours)" (batched projection, the CUDA default) vs "foreach-per-tensor (ours)": if
#     the batched one is not faster, empty adamp._projection.SEGMENTED_DEVICES;
#   * "fused-triton (ours)" vs "fused (ours)" (inductor): if the kernels pass their CUDA tests and are faster
#     on every model timed, make "triton" the default of adamp._fused.BACKEND on CUDA;
#   * step_peak_extra_mib against the params' size: the issue allows one copy of the params at most.
# The official adamp==0.3.0 must be in .cache/reference (run the tests once here; the GPU machine has no
# network) and travel with the tree (carry .cache/reference).
set -uo pipefail
export PYTHONUNBUFFERED=1
part=${1:-main}
out=${2:-results/bench}
case "$part" in
main)
    timeout 130 python3 -m pytest -q -p no:cacheprovider tests/optim/test_behaviour.py tests/optim/test_triton.py \
        -k "cuda and not fused-segmented" 2>&1 | tail -15
    timeout 270 python3 -m benchmarks.bench_step --models resnet50 --skip fused-segmented --rounds 7 --steps 5 \
        --warmup 2 --out "$out/step"
    ;;
more)
    timeout 120 python3 -m benchmarks.bench_step --mode iteration --rounds 5 --out "$out/iteration"
    timeout 160 python3 -m benchmarks.bench_step --models vit_b16,efficientnet_b0,transformer_24x1024 \
        --skip segmented,per-tensor,single --rounds 5 --steps 5 --warmup 2 --merge --out "$out/step"
    ;;
*)
    echo "usage: bash scripts/gpu_check.sh main|more [OUT_DIR]" >&2
    exit 2
    ;;
esac
