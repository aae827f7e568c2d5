#!/usr/bin/env bash
# Every GPU check in one run, for a session that is lent a CUDA GPU, most important first:
#
#   BUDGET=360 bash benchmarks/gpu_check.sh [OUT]   # OUT: where the JSON results go (benchmarks/results)
#
# BUDGET (seconds, default none): the whole run's limit. Each stage gets what is left of it (and
# at most its own limit), and a stage with under 20 s left is skipped and named; so a lease of a
# few minutes still returns the first stages' results.
#
# 1. correctness, on the GPU: the Triton kernel against the reference kernel in every
#    configuration `tune` may pick (the inline-PTX tiles and the half2 GEMV included), the
#    half2 kernel's fp16 sums on random x, and split-K's in-kernel finish called hundreds of times
#    (tests/test_kernels.py). With pytest-xdist, JOBS
#    processes (default 8) compile in parallel, and triton's disk cache keeps what they compiled
#    for the stages after;
# 2. `minicomp bench --device cuda` at 8192² and 4096², BENCH_BATCHES (default 1,4,16,256): the
#    course target is Triton W4A16 at 8192², batch 1, at least 2.5× faster than fp16 cuBLAS. The
#    JSON records the time of every configuration tuned (settings.triton_tuned);
# 3. benchmarks/triton_graphs.py --sweep: both batch-1 kernels, packed_gemv and
#    packed_gemv_half2, over row blocks, warps, split-K, prefetching and pipeline stages, reading
#    the codes in the layer's layout or steps-first (each step one block), each as a call and as the
#    kernel alone, in CUDA graphs, with the L2 cache flushed before each call; then again with
#    the cache left warm (--warm-l2), as the runs before 2026-11-30 timed;
# 4. benchmarks/triton_graphs.py: every configuration at GRAPH_BATCHES (default 1,4,16) in CUDA
#    graphs, as served;
# 5. the rest of the kernel tests on the GPU (QUICK=1 skips them).
#
# Needs python3 with a CUDA torch and triton, plus numpy, tqdm, safetensors and pytest. On a
# machine without a network, put wheels of what is missing in wheels/ (where there is a network:
# pip download --only-binary=:all: -d wheels tqdm safetensors pytest) and this installs them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results}"
PY="${PYTHON:-python3}"
BUDGET="${BUDGET:-0}"
START=$SECONDS
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
status=0

stage() {  # stage LIMIT CMD...: run CMD under LIMIT seconds, or under what is left of BUDGET
    local limit=$1
    shift
    if [ "$BUDGET" -gt 0 ]; then
        local left=$((BUDGET - (SECONDS - START)))
        if [ "$left" -lt 20 ]; then
            echo "!! skipped, ${left}s of BUDGET left: $*"
            status=1
            return
        fi
        [ "$left" -lt "$limit" ] && limit=$left
    fi
    local began=$SECONDS
    timeout "$limit" "$@" || { echo "!! exit $? (limit ${limit}s): $*"; status=1; }
    echo "-- $((SECONDS - began))s (at $((SECONDS - START))s)"
}

if [ -d wheels ]; then
    "$PY" -m pip install --quiet --no-index --find-links wheels tqdm safetensors pytest 2>&1 | tail -3
fi
"$PY" -c "import torch, triton, sys; torch.cuda.is_available() or sys.exit(1); print('torch', torch.__version__, '| triton', triton.__version__, '|', torch.cuda.get_device_name())" 2>/dev/null \
    || { echo "no CUDA GPU with torch and triton here: nothing to check" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit --format=csv 2>/dev/null
PARALLEL=()
"$PY" -c "import xdist" 2>/dev/null && PARALLEL=(-n "${JOBS:-8}")

echo "== 1. the Triton kernels against the reference, on the GPU: every configuration, exactly"
stage 180 "$PY" -m pytest -q -p no:cacheprovider "${PARALLEL[@]}" tests/test_kernels.py \
    -k "(backends_agree and triton) or every_triton_candidate_agrees or half2 or ptx or tensor_core or split_k or steps_first"
echo "== 2. minicomp bench on the GPU (the first call of each shape tunes the kernel)"
stage 300 "$PY" -m minicomp bench --device cuda --sizes 8192x8192,4096x4096 \
    --batches "${BENCH_BATCHES:-1,4,16,256}" --out "$OUT"
echo "== 3. the batch-1 kernels over their settings, in CUDA graphs"
stage 240 "$PY" benchmarks/triton_graphs.py --sweep --out "$OUT"
stage 120 "$PY" benchmarks/triton_graphs.py --sweep --warm-l2 --out "$OUT"   # as timed before 2026-11-30
echo "== 4. every kernel configuration in CUDA graphs"
stage 200 "$PY" benchmarks/triton_graphs.py --batches "${GRAPH_BATCHES:-1,4,16}" --out "$OUT"
if [ -z "${QUICK:-}" ]; then
    echo "== 5. the rest of the kernel tests on the GPU (QUICK=1 skips them)"
    stage 200 "$PY" -m pytest -q -p no:cacheprovider "${PARALLEL[@]}" tests/test_kernels.py \
        -k "(triton or backend or tune) and not backends_agree and not every_triton_candidate_agrees"
fi
echo "== done in $((SECONDS - START))s, status $status"
exit $status
