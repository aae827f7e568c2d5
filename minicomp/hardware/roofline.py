"""Where the time goes (lessons 00 and 09): `make_matmul` / `matmul_flops` (GFLOP/s per dtype),
`linear_cost` (FLOPs, bytes and arithmetic intensity of y = x Wᵀ), `gemv_vs_gemm` (throughput
against batch size), `measure_bandwidth` and `roofline`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from minicomp.checks import check_positive_ints, check_seed, is_real
from minicomp.hardware.sizes import dtype_bytes
from minicomp.hardware.timing import _check_counts, _timing_device, compare, measure

_MATMUL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int8)


def make_matmul(m: int, k: int, n: int, dtype: torch.dtype = torch.float32,
                device: str | torch.device | None = None, *, seed: int = 0,
                ) -> tuple[Callable[[], torch.Tensor] | None, dict]:
    """A zero-argument function computing A @ B with A [m, k], B [k, n] in ``dtype``, plus info.

    int8 uses ``torch._int_mm`` (int8 × int8 -> int32, exact) when this PyTorch and device accept
    the shapes (CUDA wants m > 16 and k, n multiples of 8); otherwise it multiplies the same int8
    values in float32 and says so in ``info['backend']`` and ``info['note']``. A float dtype the
    device cannot multiply gives ``(None, info)`` with ``info['supported'] = False``.
    Info keys: dtype, device, m, k, n, flops (= 2·m·k·n), backend, supported, note.
    """
    check_positive_ints(m=m, k=k, n=n)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.bfloat16, got "
                        f"{type(dtype).__name__} {dtype!r}")
    if dtype not in _MATMUL_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; expected one of "
                         f"{[str(d) for d in _MATMUL_DTYPES]}")
    seed = check_seed(seed)
    dev = _timing_device(device)
    g = torch.Generator().manual_seed(seed)
    info = {"dtype": str(dtype).replace("torch.", ""), "device": str(dev), "m": m, "k": k, "n": n,
            "flops": 2 * m * k * n, "backend": "torch.matmul", "supported": True, "note": ""}
    if dtype == torch.int8:
        a = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8).to(dev)  # [m, k]
        b = torch.randint(-128, 128, (k, n), generator=g, dtype=torch.int8).to(dev)  # [k, n]
        reason = "this PyTorch has no torch._int_mm"
        if hasattr(torch, "_int_mm"):
            try:
                torch._int_mm(a, b)
                info["backend"] = "torch._int_mm (int8 x int8 -> int32)"
                return (lambda: torch._int_mm(a, b)), info
            except (RuntimeError, NotImplementedError) as e:
                reason = f"torch._int_mm refused these inputs: {str(e).splitlines()[0]}"
        af, bf = a.float(), b.float()
        info["backend"] = "float32 matmul of int8 values (fallback)"
        info["note"] = f"{reason}; this times float32, not an int8 kernel"
        return (lambda: af @ bf), info
    a = torch.randn(m, k, generator=g).to(device=dev, dtype=dtype)  # [m, k]
    b = torch.randn(k, n, generator=g).to(device=dev, dtype=dtype)  # [k, n]
    try:
        a @ b
    except (RuntimeError, NotImplementedError) as e:
        info.update(supported=False, backend="none",
                    note=f"{info['dtype']} matmul is not supported on {dev}: {str(e).splitlines()[0]}")
        return None, info
    if dev.type == "cpu" and dtype != torch.float32:
        info["note"] = ("on a CPU, 16-bit matmuls are fast only with hardware support "
                        "(AVX512-BF16/AMX on x86, BF16/FP16 instructions on Arm)")
    return (lambda: a @ b), info


def matmul_flops(m: int = 512, k: int = 512, n: int = 512, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None, *, warmup: int = 2, repeats: int = 10,
                 seed: int = 0) -> dict:
    """Measured throughput of A [m, k] @ B [k, n]: the `make_matmul` info plus seconds (median),
    gflops (2·m·k·n / seconds / 1e9) and timing. Unsupported: seconds and gflops are nan."""
    _check_counts(warmup, repeats)
    fn, info = make_matmul(m, k, n, dtype, device, seed=seed)
    if fn is None:
        return {**info, "seconds": math.nan, "gflops": math.nan, "timing": None}
    timing = measure(fn, warmup=warmup, repeats=repeats, device=info["device"])
    return {**info, "seconds": timing.median, "gflops": info["flops"] / timing.median / 1e9,
            "timing": timing}


def linear_cost(batch: int, in_features: int, out_features: int, *, weight_itemsize: float = 4,
                act_itemsize: float = 4) -> dict:
    """FLOPs and bytes of y = x Wᵀ with x [batch, in], W [out, in], y [batch, out].

    flops = 2·batch·in·out (one multiply and one add per weight per row of x);
    bytes = weight (in·out·weight_itemsize) + activations (batch·(in + out)·act_itemsize),
    each read or written once; intensity = flops / bytes, in FLOP per byte.
    ``weight_itemsize`` may be fractional: 0.5 for int4.
    """
    check_positive_ints(batch=batch, in_features=in_features, out_features=out_features)
    for name, v in (("weight_itemsize", weight_itemsize), ("act_itemsize", act_itemsize)):
        if not is_real(v) or not 0 < v < math.inf:
            raise ValueError(f"{name}={v!r} must be a finite, positive number of bytes per element, such as 0.5 for int4")
    flops = 2 * batch * in_features * out_features
    w = in_features * out_features * weight_itemsize
    act = batch * (in_features + out_features) * act_itemsize
    return {"batch": batch, "flops": flops, "weight_bytes": w, "activation_bytes": act,
            "bytes": w + act, "intensity": flops / (w + act)}


def gemv_vs_gemm(batches: Iterable[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                 in_features: int = 2048, out_features: int = 2048, *,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
                 warmup: int = 2, repeats: int = 10, seed: int = 0) -> list[dict]:
    """Measure y = x Wᵀ for one weight W [out, in] and each batch size (x [batch, in]).

    Batch 1 is a matrix-vector product (GEMV), large batches are matrix-matrix (GEMM). The batch
    sizes are timed interleaved with `compare`. One row per batch: the `linear_cost` keys plus
    seconds, gflops and gbytes_per_s (bytes / seconds / 1e9).
    """
    if not isinstance(batches, Iterable) or isinstance(batches, str):
        raise TypeError(f"batches must be a list of batch sizes such as [1, 8, 64], got "
                        f"{type(batches).__name__} {batches!r}")
    batches = list(batches)
    check_positive_ints(**{f"batches[{i}]": b for i, b in enumerate(batches)})
    if not batches:
        raise ValueError("batches must hold at least one batch size, got none")
    if len(set(batches)) != len(batches):
        raise ValueError(f"batches={batches} must not repeat a batch size")
    check_positive_ints(in_features=in_features, out_features=out_features)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype!r} must be a floating torch dtype such as torch.float32")
    seed = check_seed(seed)
    dev = _timing_device(device)
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out_features, in_features, generator=g).to(device=dev, dtype=dtype)  # [out, in]
    xs = {b: torch.randn(b, in_features, generator=g).to(device=dev, dtype=dtype) for b in batches}
    fns = {b: (lambda x=xs[b]: torch.nn.functional.linear(x, W)) for b in batches}
    timings = compare(fns, warmup=warmup, repeats=repeats, device=dev)
    size = dtype_bytes(dtype)
    rows = []
    for b in batches:
        cost = linear_cost(b, in_features, out_features, weight_itemsize=size, act_itemsize=size)
        s = timings[b].median
        rows.append({**cost, "seconds": s, "gflops": cost["flops"] / s / 1e9,
                     "gbytes_per_s": cost["bytes"] / s / 1e9})
    return rows


def measure_bandwidth(nbytes: int = 64_000_000, *, method: str = "read",
                      device: str | torch.device | None = None, warmup: int = 2,
                      repeats: int = 10) -> dict:
    """Rough memory bandwidth: time a pass over an ``nbytes`` float32 buffer.

    method='read' sums the buffer (nbytes read); method='copy' copies it into a second buffer
    (nbytes read + nbytes written). Pick nbytes well above the last-level cache (tens of MB) to
    see main memory rather than cache. Returns method, nbytes, bytes_moved, seconds,
    gbytes_per_s and timing.
    """
    check_positive_ints(nbytes=nbytes)
    if nbytes < 4:
        raise ValueError(f"nbytes={nbytes} must be at least 4 (one float32)")
    if method not in ("read", "copy"):
        raise ValueError(f"method={method!r} must be 'read' or 'copy'")
    dev = _timing_device(device)
    x = torch.ones(nbytes // 4, device=dev)
    if method == "read":
        fn, moved = (lambda: x.sum()), x.numel() * 4
    else:
        y = torch.empty_like(x)
        fn, moved = (lambda: y.copy_(x)), 2 * x.numel() * 4
    timing = measure(fn, warmup=warmup, repeats=repeats, device=dev)
    return {"method": method, "nbytes": x.numel() * 4, "bytes_moved": moved,
            "seconds": timing.median, "gbytes_per_s": moved / timing.median / 1e9, "timing": timing}


def roofline(peak_flops: float, bandwidth: float, intensity):
    """Attainable throughput = min(peak_flops, bandwidth × intensity).

    Use consistent units: GFLOP/s with GB/s gives GFLOP/s (intensity is FLOP per byte). The
    ridge point peak_flops / bandwidth is the intensity where a kernel stops being memory-bound.
    ``intensity`` may be a number (returns a float) or an iterable of numbers (returns a list).
    """
    for name, v in (("peak_flops", peak_flops), ("bandwidth", bandwidth)):
        if not is_real(v) or not v > 0:
            raise ValueError(f"{name}={v!r} must be a positive number")
    if is_real(intensity):
        if not intensity >= 0:  # also nan, which min() would turn into the peak
            raise ValueError(f"intensity={intensity!r} must be >= 0 FLOP per byte")
        return float(min(peak_flops, bandwidth * intensity))
    if not isinstance(intensity, Iterable) or isinstance(intensity, (str, bytes)):
        raise TypeError(f"intensity must be a number or an iterable of numbers, got "
                        f"{type(intensity).__name__}")
    if isinstance(intensity, torch.Tensor):
        intensity = intensity.reshape(-1).tolist()   # (a 0-d tensor would not iterate)
    values = list(intensity)
    for k, i in enumerate(values):
        if not is_real(i):   # float('3') would quietly accept a string
            raise TypeError(f"intensity[{k}]={i!r} must be a number (FLOP per byte)")
    return [roofline(peak_flops, bandwidth, float(i)) for i in values]
