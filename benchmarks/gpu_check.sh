#!/usr/bin/env bash
# Every GPU check in one short run, for a session that is lent a CUDA GPU (~5-10 minutes; the
# bench comes before the slower tests):
#
#   bash benchmarks/gpu_check.sh [OUT]     # OUT: where the bench JSON goes (benchmarks/results)
#
# 1. the Triton kernel against the reference kernel, on the GPU (the quick tests/test_kernels.py);
# 2. `minicomp bench --device cuda` at 4096² and 8192², batches 1, 4 and 16: the course target
#    is Triton W4A16 at 8192², batch 1, at least 2.5× faster than fp16 cuBLAS. The JSON records
#    the time of every kernel configuration tuned (settings.triton_tuned);
# 3. the rest of the kernel tests on the GPU (every tuning candidate, exactly).
#
# Needs python3 with a CUDA torch and triton, plus numpy, tqdm, safetensors and pytest. On a
# machine without a network, put wheels of what is missing in wheels/ (where there is a network:
# pip download --only-binary=:all: -d wheels tqdm safetensors pytest) and this installs them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d wheels ]; then
    "$PY" -m pip install --quiet --no-index --find-links wheels tqdm safetensors pytest 2>&1 | tail -3
fi
"$PY" -c "import torch, triton; print('torch', torch.__version__, '| triton', triton.__version__, '|', torch.cuda.get_device_name())" \
    || { echo "no CUDA torch with triton here: nothing to check" >&2; exit 2; }
status=0
echo "== 1. the Triton kernel against the reference, on the GPU (quick)"
timeout 180 "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels.py -k "backends_agree and triton" || status=1
echo "== 2. minicomp bench on the GPU (the first call of each shape tunes the kernel: ~1 min in all)"
timeout 420 "$PY" -m minicomp bench --device cuda --sizes 4096x4096,8192x8192 --batches 1,4,16 --out "$OUT" || status=1
echo "== 3. the rest of the kernel tests on the GPU"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels.py -k "(triton or backend or tune) and not backends_agree" || status=1
exit $status
