#!/usr/bin/env bash
# Every GPU check in one short run, for a session that is lent a CUDA GPU (~5-8 minutes; the
# timings come first, the slower tests last):
#
#   bash benchmarks/gpu_check.sh [OUT]     # OUT: where the JSON results go (benchmarks/results)
#
# 1. `minicomp bench --device cuda` at 8192² and 4096², batches 1, 4 and 16: the course target
#    is Triton W4A16 at 8192², batch 1, at least 2.5× faster than fp16 cuBLAS. The JSON records
#    the time of every kernel configuration tuned (settings.triton_tuned): at batch 16, the
#    tensor-core tiles with and without their inline-PTX nibbles. BENCH_BATCHES=1,4,16,256 adds
#    a prompt-sized batch, where the 64- and 128-row tiles compete (about a minute more);
# 2. benchmarks/triton_graphs.py: every kernel configuration timed in CUDA graphs, as served,
#    then (--sweep) both batch-1 kernels, packed_gemv and packed_gemv_half2, over row blocks,
#    warps, split-K and prefetching, each as a call and as the kernel alone;
# 3. the Triton kernel against the reference kernel, on the GPU, in every configuration `tune`
#    may pick (tests/test_kernels.py), and the half2 kernel's fp16 sums on random x;
# 4. the rest of the kernel tests on the GPU (QUICK=1 skips them).
#
# Needs python3 with a CUDA torch and triton, plus numpy, tqdm, safetensors and pytest. On a
# machine without a network, put wheels of what is missing in wheels/ (where there is a network:
# pip download --only-binary=:all: -d wheels tqdm safetensors pytest) and this installs them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
if [ -d wheels ]; then
    "$PY" -m pip install --quiet --no-index --find-links wheels tqdm safetensors pytest 2>&1 | tail -3
fi
"$PY" -c "import torch, triton; print('torch', torch.__version__, '| triton', triton.__version__, '|', torch.cuda.get_device_name())" \
    || { echo "no CUDA torch with triton here: nothing to check" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit --format=csv 2>/dev/null
status=0
echo "== 1. minicomp bench on the GPU (the first call of each shape tunes the kernel)"
timeout 360 "$PY" -m minicomp bench --device cuda --sizes 8192x8192,4096x4096 --batches "${BENCH_BATCHES:-1,4,16}" --out "$OUT" || status=1
echo "== 2. every kernel configuration in CUDA graphs"
timeout 150 "$PY" benchmarks/triton_graphs.py --batches "${GRAPH_BATCHES:-1,4,16}" --out "$OUT" || status=1
timeout 240 "$PY" benchmarks/triton_graphs.py --sweep --out "$OUT" || status=1
echo "== 3. the Triton kernel against the reference, on the GPU: every configuration, exactly"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels.py \
    -k "(backends_agree and triton) or every_triton_candidate_agrees or half2 or tensor_core" || status=1
if [ -z "${QUICK:-}" ]; then
    echo "== 4. the rest of the kernel tests on the GPU (QUICK=1 skips them)"
    timeout 200 "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels.py \
        -k "(triton or backend or tune) and not backends_agree and not every_triton_candidate_agrees" || status=1
fi
exit $status
