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
so that there are enough programs to keep every SM's memory pipeline busy.

Runs on CUDA tensors. With `TRITON_INTERPRET=1` (set before the first call) triton interprets
the same kernel on the CPU with numpy, which is how the tests check it on machines without a GPU.
The block sizes below are reasonable defaults, not tuned per GPU.
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
    def packed_matmul(x_ptr, qw_ptr, s_ptr, z_ptr, y_ptr, M, N, K,
                      stride_xm, stride_qn, stride_sn, stride_ym,
                      BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, SPLIT_K: tl.constexpr,
                      USE_DOT: tl.constexpr):
        PER: tl.constexpr = 8 // BITS          # codes per byte
        MASK: tl.constexpr = (1 << BITS) - 1
        pid_n, pid_m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)   # [BLOCK_N] output rows
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)   # [BLOCK_M] rows of x
        rb = tl.arange(0, BLOCK_B)                     # [BLOCK_B] bytes within a step
        n_ok, m_ok = rn < N, rm < M
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
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
                else:         # GEMV: broadcast multiply, sum over the step
                    prod = xk.to(tl.float32)[:, None, :] * q.to(tl.float32)[None, :, :]
                    part += tl.sum(prod, axis=2)
                xsum += tl.sum(xk.to(tl.float32), axis=1)
            acc += s[None, :] * (part - xsum[:, None] * z[None, :])  # s·(Σ q·x − z·Σ x)
        y = y_ptr + rm[:, None] * stride_ym + rn[None, :]
        ok = m_ok[:, None] & n_ok[None, :]
        if SPLIT_K == 1:
            tl.store(y, acc, mask=ok)
        else:
            tl.atomic_add(y, acc, mask=ok)

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


def _config(m: int, n: int, k_steps: int) -> dict:
    """Block sizes for one call: tiny M -> GEMV tiles; M >= 16 -> tensor-core tiles."""
    if m >= 16:
        return {"BLOCK_M": 16 if m <= 16 else 32, "BLOCK_N": 64, "SPLIT_K": 1, "USE_DOT": True}
    block_m = 1 if m == 1 else 2 if m == 2 else 4 if m <= 4 else 8
    block_n = 32 if block_m <= 2 else 16   # the [BLOCK_M, BLOCK_N, BLOCK_B] product lives in registers
    programs = triton.cdiv(n, block_n) * triton.cdiv(m, block_m)
    split = 1
    while programs * split < 1024 and split * 2 <= k_steps and split < 16:
        split *= 2   # enough programs for every SM to keep loads in flight
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "SPLIT_K": split, "USE_DOT": False}


def linear(layer, x: torch.Tensor) -> torch.Tensor:
    """y = x Wᵀ for a `PackedLinear` `layer`, x [M, in] -> y [M, out] float32, W never built."""
    _import()
    if layer.perm is not None:
        x = x[:, layer.perm.to(x.device)]           # codes are stored in permuted column order
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        x = x.to(torch.float32)
    x = x.contiguous()
    m, k = x.shape
    n = layer.out_features
    block_b = min(_step_bytes(layer), 64)
    k_steps = k * layer.pack_bits // 8 // block_b
    cfg = _config(m, n, k_steps)
    if cfg["USE_DOT"] and x.dtype == torch.float32:
        cfg["USE_DOT"] = False  # keep fp32 inputs exact (tensor cores would round them to tf32)
        cfg["BLOCK_M"] = 4
    qweight, scales, zeros = (t.contiguous() for t in (layer.qweight, layer.scales, layer.zeros))
    y = torch.zeros(m, n, device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(n, cfg["BLOCK_N"]), triton.cdiv(m, cfg["BLOCK_M"]), cfg["SPLIT_K"])
    _kernel()[grid](x, qweight, scales, zeros, y, m, n, k,
                    x.stride(0), qweight.stride(0), scales.stride(0), y.stride(0),
                    BITS=layer.pack_bits, GROUP=layer.group_size, BLOCK_B=block_b, **cfg)
    return y
