#!/usr/bin/env bash
# The prepared device check of the fast optimizer paths: everything in ONE call of at most 8 minutes (a
# session gets about 15 minutes of device time in all, the machine's start included), most important first:
#   1. the CUDA tests (no host sync in step(); the Triton kernels, the default, against the single-tensor
#      path on CUDA; the defaults' decisions on a real CUDA device);
#   2. ResNet-50 with every implementation but the inductor-compiled ones: the main figures
#      (AdamP <= 1.5x torch AdamW fused, SGDP <= 1.5x torch SGD fused, the default vs foreach vs single);
#   3. ViT-B/16, EfficientNet-B0, the 24x1024 transformer and the Transformer-XL (WikiText-103 vocabulary:
#      the 267,735-row embedding) with the defaults, fused=True (Triton), foreach and the baselines;
#   4. the training-iteration mode (ResNet-50, bf16, batch 256; the official package on a contiguous copy);
#   5. the inductor-compiled fused path, once, on ResNet-50 (about a minute of compilation).
# Each part writes its results as it goes (the benchmark after every model, the tests to a log as they run)
# and gets a time limit cut to what is left of the whole budget, so a cut-off run still returns what it
# measured. Usage (on the device machine, from the repository root):
#   bash scripts/gpu_check.sh [OUT_DIR] [BUDGET_S]     (defaults: $OUT or results/bench/gpu_check, 470 s)
# The official adamp==0.3.0 must be in .cache/reference (run the tests once here; the GPU machine has no
# network) and travel with the tree (carry .cache/reference).
set -uo pipefail
export PYTHONUNBUFFERED=1 BENCHMARKS_NO_PROGRESS=1
out=${1:-${OUT:-results/bench/gpu_check}}
budget=${2:-470}
mkdir -p "$out"
start=$SECONDS

# run LIMIT_S CMD...: CMD with a limit of LIMIT_S or what is left of the budget, whichever is less
run() {
    local want=$1
    shift
    local left=$((budget - (SECONDS - start)))
    local limit=$((want < left ? want : left))
    if ((limit < 15)); then
        echo "== skipped (budget spent): $*" | tee -a "$out/gpu_check.log"
        return 0
    fi
    echo "== [$((SECONDS - start)) s] limit ${limit} s: $*" | tee -a "$out/gpu_check.log"
    timeout "$limit" "$@" 2>&1 | tee -a "$out/gpu_check.log"
    echo "== exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$out/gpu_check.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu_check.log"
run 120 python3 -m pytest -q -p no:cacheprovider tests/optim/test_defaults.py tests/optim/test_behaviour.py \
    tests/optim/test_triton.py -k "cuda and not fused-segmented"
run 110 python3 -m benchmarks.bench_step --models resnet50 --skip inductor --rounds 5 --steps 5 --warmup 2 \
    --out "$out/step"
run 120 python3 -m benchmarks.bench_step --models vit_b16,efficientnet_b0,transformer_24x1024,transformer_xl_wt103 \
    --only "default (ours),fused (ours),foreach (ours),torch adamw fused,torch sgd fused,official" \
    --skip per-tensor --rounds 4 --steps 5 --warmup 2 --merge --out "$out/step"
run 60 python3 -m benchmarks.bench_step --mode iteration --rounds 3 --batch-sizes 256 --skip inductor \
    --out "$out/iteration"
run 90 python3 -m benchmarks.bench_step --models resnet50 --skip segmented \
    --only "fused-inductor (ours),torch adamw fused,torch sgd fused" --rounds 3 --steps 5 --warmup 2 \
    --out "$out/step_inductor"
echo "== done in $((SECONDS - start)) s; results under $out" | tee -a "$out/gpu_check.log"
