"""Bits, bytes and your hardware: the measuring tools behind lesson 00 (and every speed a
lesson reports).

Four groups of helpers, one file each, read in this order:

1. `machine.py`, which device, which machine: `pick_device`, `check_device`, `available_devices`,
   `describe_machine`, `format_machine` and `cache_bytes`.
2. `timing.py`, timing done right: `num_threads`, `measure` (warm-up, many repeats, the median)
   and `compare`, which interleaves the repeats of several functions round-robin so that machine
   noise hits them all equally; `ratios` turns the result into speed-ups against a baseline.
3. `sizes.py`, counting bytes: `dtype_bytes`, `tensor_bytes`, `model_bytes` (tied weights
   counted once), `weight_bytes(num_params, bits)` and `human_bytes`.
4. `roofline.py`, where the time goes: `make_matmul` / `matmul_flops` (GFLOP/s per dtype),
   `linear_cost` (FLOPs, bytes and arithmetic intensity of y = x Wᵀ), `gemv_vs_gemm` (throughput
   against batch size), `measure_bandwidth` and `roofline`.

Everything is importable from here: `from minicomp import hardware; hardware.compare(...)`.
Nothing here needs a GPU; CUDA and Apple MPS are used when present.
"""

from minicomp.hardware.machine import (
    available_devices,
    cache_bytes,
    check_device,
    describe_machine,
    format_machine,
    pick_device,
)
from minicomp.hardware.roofline import (
    gemv_vs_gemm,
    linear_cost,
    make_matmul,
    matmul_flops,
    measure_bandwidth,
    roofline,
)
from minicomp.hardware.sizes import (
    dtype_bytes,
    human_bytes,
    model_bytes,
    tensor_bytes,
    weight_bytes,
)
from minicomp.hardware.timing import (
    Timing,
    compare,
    copies_beyond_cache,
    cuda_graph,
    flush_l2,
    measure,
    num_threads,
    ratios,
    round_robin,
)

__all__ = [
    "available_devices", "pick_device", "check_device", "describe_machine", "format_machine", "cache_bytes",
    "num_threads", "Timing", "measure", "compare", "ratios", "copies_beyond_cache", "round_robin",
    "cuda_graph", "flush_l2",
    "dtype_bytes", "tensor_bytes", "model_bytes", "weight_bytes", "human_bytes",
    "make_matmul", "matmul_flops", "linear_cost", "gemv_vs_gemm", "measure_bandwidth",
    "roofline",
]
