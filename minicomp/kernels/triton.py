"""The triton backend: a fused W4A16 (and W2/W8) GPU kernel for GEMV and small-batch GEMM.

Same idea as the cpu kernel, written for a GPU. Each program owns BLOCK_N output rows (and
BLOCK_M rows of x) and walks along the input dimension one *step* at a time; a step is BLOCK_B
packed bytes of each row, all inside one quantization group. For each step it

1. loads the packed bytes [BLOCK_N, BLOCK_B] straight from `qweight` (interchange layout, no
   reshuffle: byte i of a row holds inputs PER·i ... PER·i + PER − 1, lowest bits first),
2. cuts out code k of every byte with a shift and a mask and multiplies it with the inputs
   x[PER·i + k] (a strided load of x), summing Σ q·x  -- with `tl.dot` on tensor cores when
   BLOCK_M ≥ 16, else as a broadcast multiply and a sum (GEMV),
3. applies the group's scale and zero point once per step:  acc += s·(Σ q·x − z·Σ x).

The float weight is never written anywhere: 4096 × 4096 at 4 bits moves 8 MB from memory instead
of 32 MB of fp16, which is where a memory-bound GEMV gets its speed. For big N·K and tiny M the
input dimension is also split across programs (SPLIT_K) whose partial sums meet with atomic adds,
so that there are enough programs to keep every SM's memory pipeline busy. GEMV can also
dequantize first, w = (q − z)·s, and sum the products element-wise, reducing across the tile
once at the end instead of once per step (DEQUANT_FIRST).

Runs on CUDA tensors. With `TRITON_INTERPRET=1` (set before the first call) triton interprets
the same kernel on the CPU with numpy, which is how the tests check it on machines without a GPU.
Which tiles, split and scale order are fastest depends on the GPU, so on a GPU `tune` times the
`candidates` on the first call for each batch size, shape and format, keeps the fastest, and
records every time (`tuned()`; `minicomp bench` saves them). `_config` is its first candidate and
what runs under the interpreter; `MINICOMP_TRITON_TUNE=0` switches tuning off.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

NAME = "triton"
PACK_BITS = (2, 4, 8)
triton = tl = None  # imported on first use: TRITON_INTERPRET must be set before `import triton`


def installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available() -> bool:
    return installed() and (torch.cuda.is_available() or interpreting())


def _import():
    global triton, tl
    if triton is None:
        import triton as _triton
        import triton.language as _tl

        triton, tl = _triton, _tl
    return triton


@functools.cache
def _kernel():
    """The jitted kernel, made on first use."""
    _import()

    @triton.jit
    def packed_matmul(x_ptr, qw_ptr, s_ptr, z_ptr, y_ptr, M, N, K, SPLIT_K,
                      stride_xm, stride_qn, stride_sn, stride_ym,
                      BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, ACC_B: tl.constexpr,
                      USE_DOT: tl.constexpr, DEQUANT_FIRST: tl.constexpr, ATOMIC: tl.constexpr):
        PER: tl.constexpr = 8 // BITS          # codes per byte
        MASK: tl.constexpr = (1 << BITS) - 1
        pid_n, pid_m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)   # [BLOCK_N] output rows
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)   # [BLOCK_M] rows of x
        rb = tl.arange(0, BLOCK_B)                     # [BLOCK_B] bytes within a step
        n_ok, m_ok = rn < N, rm < M
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        acc3 = tl.zeros([BLOCK_M, BLOCK_N, ACC_B], dtype=tl.float32)  # DEQUANT_FIRST only (else ACC_B = 1)
        n_steps = K // (PER * BLOCK_B)
        for step in range(pid_k, n_steps, SPLIT_K):
            b0 = step * BLOCK_B                        # first byte of the step in each row
            packed = tl.load(qw_ptr + rn[:, None] * stride_qn + (b0 + rb)[None, :],
                             mask=n_ok[:, None], other=0)            # [BLOCK_N, BLOCK_B] uint8
            g = (b0 * PER) // GROUP                    # the step's group
            s = tl.load(s_ptr + rn * stride_sn + g, mask=n_ok, other=0).to(tl.float32)  # [BLOCK_N]
            z = tl.load(z_ptr + rn * stride_sn + g, mask=n_ok, other=0).to(tl.float32)  # [BLOCK_N]
            part = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)   # Σ q·x over the step
            xsum = tl.zeros([BLOCK_M], dtype=tl.float32)            # Σ x over the step
            for k in tl.static_range(PER):
                q = (packed >> (BITS * k)) & MASK                     # [BLOCK_N, BLOCK_B] code k
                cols = (b0 + rb) * PER + k                           # the inputs code k multiplies
                xk = tl.load(x_ptr + rm[:, None] * stride_xm + cols[None, :],
                             mask=m_ok[:, None], other=0)            # [BLOCK_M, BLOCK_B]
                if USE_DOT:   # tensor cores: codes are small integers, exact in x's dtype
                    part += tl.dot(xk, tl.trans(q.to(xk.dtype)), out_dtype=tl.float32)
                elif DEQUANT_FIRST:  # GEMV: w = (q − z)·s, products summed element-wise, reduced once at the end
                    w = (q.to(tl.float32) - z[:, None]) * s[:, None]  # [BLOCK_N, BLOCK_B]
                    acc3 += xk.to(tl.float32)[:, None, :] * w[None, :, :]
                else:         # GEMV: broadcast multiply, sum over the step
                    prod = xk.to(tl.float32)[:, None, :] * q.to(tl.float32)[None, :, :]
                    part += tl.sum(prod, axis=2)
                if not DEQUANT_FIRST:
                    xsum += tl.sum(xk.to(tl.float32), axis=1)
            if not DEQUANT_FIRST:
                acc += s[None, :] * (part - xsum[:, None] * z[None, :])  # s·(Σ q·x − z·Σ x)
        if DEQUANT_FIRST:
            acc += tl.sum(acc3, axis=2)
        y = y_ptr + rm[:, None] * stride_ym + rn[None, :]
        ok = m_ok[:, None] & n_ok[None, :]
        if ATOMIC:    # SPLIT_K > 1: programs that share rows add their partial sums
            tl.atomic_add(y, acc, mask=ok)
        else:
            tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=ok)  # float32, or x's 16-bit type

    return packed_matmul


def _step_bytes(layer) -> int:
    """Bytes per row per step: a power of two, at most 128, that divides a group's bytes."""
    group_bytes = layer.group_size * layer.pack_bits // 8
    b = 1
    while b < 128 and group_bytes % (2 * b) == 0:
        b *= 2
    return b


def unsupported(layer, x: torch.Tensor) -> str | None:
    """Why this backend cannot run `layer` on `x`, or None if it can."""
    if not installed():
        return "triton is not installed (pip install triton; it needs a CUDA GPU)"
    if x.device.type != "cuda" and not interpreting():
        return f"x is on {x.device}; triton needs a CUDA tensor (or TRITON_INTERPRET=1)"
    if layer.pack_bits not in PACK_BITS:
        return f"pack_bits={layer.pack_bits} is not one of {PACK_BITS}"
    if _step_bytes(layer) < 16:
        return (f"group_size={layer.group_size} at {layer.pack_bits} bits is {layer.group_size * layer.pack_bits // 8} "
                "bytes; the kernel needs groups of a multiple of 16 bytes")
    return None


def _split(programs: int, k_steps: int, target: int) -> int:
    """Split the input dimension in two until there are `target` programs (at most 16 ways)."""
    split = 1
    while programs * split < target and split * 2 <= k_steps and split < 16:
        split *= 2
    return split


def _config(m: int, n: int, k_steps: int) -> dict:
    """Block sizes for one call: tiny M -> GEMV tiles; M >= 16 -> tensor-core tiles."""
    if m >= 16:
        return {"BLOCK_M": 16 if m <= 16 else 32, "BLOCK_N": 64, "SPLIT_K": 1, "USE_DOT": True,
                "DEQUANT_FIRST": False}
    block_m = 1 if m == 1 else 2 if m == 2 else 4 if m <= 4 else 8
    block_n = 32 if block_m <= 2 else 16   # the [BLOCK_M, BLOCK_N, BLOCK_B] product lives in registers
    programs = triton.cdiv(n, block_n) * triton.cdiv(m, block_m)
    split = _split(programs, k_steps, 1024)  # enough programs for every SM to keep loads in flight
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "SPLIT_K": split, "USE_DOT": False, "DEQUANT_FIRST": False}


def candidates(m: int, n: int, k_steps: int) -> list[dict]:
    """The configurations `tune` times for one call: `_config`'s choice first, then other row
    blocks, both ways of applying scales (after each step's sum, or dequantize-first with one
    reduction at the end), and three degrees of split-K."""
    base = _config(m, n, k_steps)
    if base["USE_DOT"]:
        return [base] + [{**base, "BLOCK_N": bn} for bn in (32, 128)]
    bm = base["BLOCK_M"]
    found = [base]
    for bn in ((16, 32, 64) if bm <= 2 else (8, 16, 32)):
        programs = triton.cdiv(n, bn) * triton.cdiv(m, bm)
        for deq in (False, True):
            for target in (1, 1024, 4096):
                cfg = {"BLOCK_M": bm, "BLOCK_N": bn, "SPLIT_K": _split(programs, k_steps, target),
                       "USE_DOT": False, "DEQUANT_FIRST": deq}
                if cfg not in found:
                    found.append(cfg)
    return found


TUNE = os.environ.get("MINICOMP_TRITON_TUNE", "1") not in ("", "0")  # time the candidates on a GPU
_tuned: dict[tuple, dict] = {}


def tuned() -> list[dict]:
    """What `tune` chose so far, one record per (batch, shape, format): the winner, its time in
    µs, and every candidate's time (or why it was left out). `minicomp bench` saves them."""
    return [dict(record) for record in _tuned.values()]


def _gpu_timer(fn) -> float:
    """Seconds per call of fn on a GPU: triton's do_bench (clears the L2 cache between calls)."""
    return triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median") * 1e-3


def _agrees(y: torch.Tensor, ref: torch.Tensor) -> bool:
    """Outputs of two configurations agree up to summation order and a 16-bit store."""
    y, ref = y.float(), ref.float()
    return bool(torch.allclose(y, ref, rtol=2e-3, atol=1e-3 * max(ref.abs().max().item(), 1e-6)))


def tune(layer, x: torch.Tensor, timer=None) -> dict:
    """The fastest of `candidates` for this layer and x's batch size and dtype, timed once per
    (batch, shape, format) and remembered. timer(fn) -> seconds per call (default: `_gpu_timer`).

    A candidate that fails to run (e.g. a tile too large for this GPU's registers or shared
    memory) or whose output differs from the first candidate's is left out, and its record says
    why; the first candidate is `_config`'s choice, the configuration tested most."""
    m, k = x.shape
    n = layer.out_features
    block_b = min(_step_bytes(layer), 64)
    key = (min(m, 64), n, k, layer.pack_bits, layer.group_size, x.dtype)
    if key not in _tuned:
        timer = timer or _gpu_timer
        found = []
        for cfg in candidates(m, n, k * layer.pack_bits // 8 // block_b):
            if _exact(cfg, x.dtype) not in found:
                found.append(_exact(cfg, x.dtype))
        results, first = [], None
        for cfg in found:
            try:
                y = _launch(layer, x, cfg, block_b)
                if first is None:
                    first = y
                elif not _agrees(y, first):
                    raise ValueError("its output differs from the first candidate's")
                results.append({"config": cfg, "us": timer(lambda c=cfg: _launch(layer, x, c, block_b)) * 1e6})
            except Exception as err:  # any failure only removes this candidate
                results.append({"config": cfg, "us": None, "error": f"{type(err).__name__}: {err}"[:300]})
        ran = [r for r in results if r["us"] is not None]
        if not ran:
            raise RuntimeError(f"no triton configuration ran for x {tuple(x.shape)} and a {n} x {k} "
                               f"{layer.pack_bits}-bit layer; the first failed with {results[0]['error']}")
        best = min(ran, key=lambda r: r["us"])  # ties: the earlier candidate
        _tuned[key] = {"batch": m, "out": n, "in": k, "bits": layer.pack_bits, "group_size": layer.group_size,
                       "dtype": str(x.dtype).replace("torch.", ""), "config": best["config"], "us": best["us"],
                       "candidates": results}
    return _tuned[key]["config"]


def _launch(layer, x: torch.Tensor, cfg: dict, block_b: int) -> torch.Tensor:
    """One kernel call with configuration `cfg` on a prepared x [M, in] (permuted, contiguous)."""
    m, k = x.shape
    n = layer.out_features
    qweight, scales, zeros = (t.contiguous() for t in (layer.qweight, layer.scales, layer.zeros))
    if cfg["SPLIT_K"] > 1:  # partial sums are added into y: float32 zeros
        y = torch.zeros(m, n, device=x.device, dtype=torch.float32)
    else:  # each output stored once; in x's dtype unless a float32 bias is still to be added
        y = torch.empty(m, n, device=x.device, dtype=torch.float32 if layer.bias is not None else x.dtype)
    grid = (triton.cdiv(n, cfg["BLOCK_N"]), triton.cdiv(m, cfg["BLOCK_M"]), cfg["SPLIT_K"])
    _kernel()[grid](x, qweight, scales, zeros, y, m, n, k, cfg["SPLIT_K"],
                    x.stride(0), qweight.stride(0), scales.stride(0), y.stride(0),
                    BITS=layer.pack_bits, GROUP=layer.group_size, BLOCK_M=cfg["BLOCK_M"],
                    BLOCK_N=cfg["BLOCK_N"], BLOCK_B=block_b, ACC_B=block_b if cfg["DEQUANT_FIRST"] else 1,
                    USE_DOT=cfg["USE_DOT"], DEQUANT_FIRST=cfg["DEQUANT_FIRST"], ATOMIC=cfg["SPLIT_K"] > 1)
    return y


def linear(layer, x: torch.Tensor, config: dict | None = None) -> torch.Tensor:
    """y = x Wᵀ for a `PackedLinear` `layer`, x [M, in] -> y [M, out], W never built.

    y is x's dtype when each output is stored once and there is no bias, else float32 (split-K
    adds partial sums; the bias is added in float32); PackedLinear casts it to x's dtype.

    config: block sizes (one of `candidates`); by default `tune` picks them on a GPU (when `TUNE`)
    and `_config` does under the interpreter."""
    _import()
    if layer.perm is not None:
        x = x[:, layer.perm.to(x.device)]           # codes are stored in permuted column order
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        x = x.to(torch.float32)
    x = x.contiguous()
    m, k = x.shape
    block_b = min(_step_bytes(layer), 64)
    if config is None:
        if TUNE and not interpreting():
            config = tune(layer, x)
        else:
            config = _config(m, layer.out_features, k * layer.pack_bits // 8 // block_b)
    return _launch(layer, x, _exact(config, x.dtype), block_b)


def _exact(cfg: dict, dtype: torch.dtype) -> dict:
    """cfg, without tensor cores for float32 x: they would round it to tf32."""
    if cfg["USE_DOT"] and dtype == torch.float32:
        return {**cfg, "USE_DOT": False, "BLOCK_M": 4, "BLOCK_N": min(cfg["BLOCK_N"], 32)}
    return cfg
