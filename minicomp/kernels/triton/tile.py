"""`packed_matmul`: the triton tile kernel, BLOCK_M rows of x at once (batch 2 and up).

It loads packed bytes [BLOCK_N, BLOCK_B] straight from `qweight` (byte i of a row holds inputs
PER·i … PER·i + PER − 1, lowest bits first) and, per step:
- with tensor cores (USE_DOT; the default from 4 rows of x on): the step's codes become x's 16-bit
  type by their bits, MAGIC + q (`magic_codes`; see `ptx.py` for the trick), less MAGIC + z: that is
  q − z exactly, with no conversion instruction. One `tl.dot` multiplies them by the step's inputs,
  loaded contiguously (triton copies them asynchronously and pipelines the loop), and the result
  is added as s·Σ (q − z)·x. With bf16 x and 8-bit codes MAGIC + q would not be exact, so those
  codes are converted instead.
- without (2 or 3 rows, and float32 x, which tensor cores would round to tf32): each code becomes
  a float32 by its bits, as in `gemv.packed_gemv`, and the products are summed element-wise in a
  [BLOCK_M, BLOCK_N, BLOCK_B] tile, reduced once at the end.

With SPLIT_K > 1, programs that share output rows add their partial sums with atomic adds.
Imported (with triton) on the backend's first use.
"""

import triton
import triton.language as tl

from minicomp.kernels.triton import ptx
from minicomp.kernels.triton.common import finish_tile

# a jitted function may read a module global only if it is a tl.constexpr
FP16_MAGIC, BF16_MAGIC = tl.constexpr(ptx.FP16_MAGIC), tl.constexpr(ptx.BF16_MAGIC)
NIBBLES_FP16, NIBBLES_BF16 = tl.constexpr(ptx.NIBBLES_FP16), tl.constexpr(ptx.NIBBLES_BF16)


@triton.jit
def spread_codes(packed, BITS: tl.constexpr):
    """Bytes [R, B] -> their codes [R, B·8/BITS] as int16, in the inputs' order (element i
    of a byte is bits BITS·i up: byte j holds inputs j·PER … j·PER + PER − 1)."""
    p = packed.to(tl.int16)
    if BITS == 8:
        return p
    elif BITS == 4:    # join puts its two operands side by side in a new last dimension
        return tl.reshape(tl.join(p & 15, p >> 4), [p.shape[0], 2 * p.shape[1]])
    else:              # 2: codes (0, 2) and (1, 3) side by side, then the pairs: 0, 1, 2, 3
        c = tl.join(tl.join(p & 3, (p >> 4) & 3), tl.join((p >> 2) & 3, p >> 6))
        return tl.reshape(c, [p.shape[0], 4 * p.shape[1]])


@triton.jit
def magic_codes(packed, BITS: tl.constexpr, MAGIC_BITS: tl.constexpr, ASM: tl.constexpr):
    """Bytes [R, B] -> MAGIC_BITS | q, int16 [R, B·8/BITS], the codes in the inputs' order: the
    bits of the 16-bit float MAGIC + q. For 4-bit codes on a GPU (ASM), 8 instructions make the
    8 codes of 4 bytes (`ptx.nibbles`), against ~10 a byte for what triton makes of the plain code."""
    if ASM and BITS == 4:
        if MAGIC_BITS == FP16_MAGIC:
            code: tl.constexpr = NIBBLES_FP16
        else:
            code: tl.constexpr = NIBBLES_BF16
        lo, hi = tl.inline_asm_elementwise(code, "=r,=r,=r,=r,r", [packed], dtype=(tl.int16, tl.int16),
                                           is_pure=True, pack=4)
        return tl.reshape(tl.join(lo, hi), [packed.shape[0], 2 * packed.shape[1]])
    else:
        return spread_codes(packed, BITS) | MAGIC_BITS


@triton.jit
def packed_matmul(x_ptr, qw_ptr, s_ptr, z_ptr, y_ptr, out_ptr, count_ptr, M, N, K, SPLIT_K,
                  stride_xm, stride_qn, stride_sn, stride_ym,
                  BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, ACC_B: tl.constexpr,
                  USE_DOT: tl.constexpr, ATOMIC: tl.constexpr, DOT_FP32: tl.constexpr,
                  ASM: tl.constexpr, FINISH: tl.constexpr, STEPS_FIRST: tl.constexpr = False):
    """y[rm, rn] (+)= Σ_k (q − z)·s·x[rm, k] for program (pid_n, pid_m, pid_k): rows of x
    rm = pid_m·BLOCK_M …, output rows rn = pid_n·BLOCK_N …, every SPLIT_K-th step from pid_k.
    x [M, K] (x's dtype), qw [N, K/PER] uint8, s [N, K/GROUP] fp16, z [N, K/GROUP] uint8, y [M, N].
    FINISH: as in `gemv.packed_gemv`; STEPS_FIRST too, with qw [K/(PER·BLOCK_B), N, BLOCK_B]
    (stride_qn = BLOCK_B: the GEMV kernels' copy, in bytes) and s, z [K/GROUP, N]."""
    PER: tl.constexpr = 8 // BITS          # codes per byte
    MASK: tl.constexpr = (1 << BITS) - 1
    TOP: tl.constexpr = 23 - BITS          # a code shifted here is the top of a float's mantissa
    FMASK: tl.constexpr = MASK << TOP
    FP16: tl.constexpr = x_ptr.dtype.element_ty == tl.float16
    MAGIC: tl.constexpr = FP16 or BITS < 8   # (with tensor cores) MAGIC + q is exact in x's dtype
    MAGIC_BITS: tl.constexpr = FP16_MAGIC if FP16 else BF16_MAGIC
    MAGIC_F: tl.constexpr = 1024.0 if FP16 else 128.0
    # the tensor cores' operand type: x's, or float32 under TRITON_INTERPRET, which does bf16
    # arithmetic, conversions and tl.dot on the raw 16-bit patterns (DOT_FP32)
    WT: tl.constexpr = tl.float32 if DOT_FP32 else x_ptr.dtype.element_ty
    pid_n, pid_m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)   # [BLOCK_N] output rows
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)   # [BLOCK_M] rows of x
    rb = tl.arange(0, BLOCK_B)                     # [BLOCK_B] bytes within a step
    rk = tl.arange(0, PER * BLOCK_B)               # [PER·BLOCK_B] inputs within a step
    n_ok, m_ok = rn < N, rm < M
    one = tl.where(N > 0, 0x3F800000, 0)           # the bits of 1.0f, in a register (see gemv.packed_gemv)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc3 = tl.zeros([BLOCK_M, BLOCK_N, ACC_B], dtype=tl.float32)  # without tensor cores (else ACC_B = 1)
    n_steps = K // (PER * BLOCK_B)
    if STEPS_FIRST:    # a step's bytes for all N rows, then the next step's (see gemv.packed_gemv)
        step_bytes, group_stride = N * BLOCK_B, N
    else:
        step_bytes, group_stride = BLOCK_B, 1
    for step in range(pid_k, n_steps, SPLIT_K):
        b0 = step * BLOCK_B                        # first byte of the step in each row
        packed = tl.load(qw_ptr + rn[:, None] * stride_qn + (step * step_bytes + rb)[None, :],
                         mask=n_ok[:, None], other=0)            # [BLOCK_N, BLOCK_B] uint8
        g = (b0 * PER) // GROUP * group_stride     # the step's group
        s = tl.load(s_ptr + rn * stride_sn + g, mask=n_ok, other=0).to(tl.float32)  # [BLOCK_N]
        z = tl.load(z_ptr + rn * stride_sn + g, mask=n_ok, other=0).to(tl.float32)  # [BLOCK_N]
        if USE_DOT:   # tensor cores: w = q − z is a small integer, exact in x's dtype
            xs = tl.load(x_ptr + rm[:, None] * stride_xm + (b0 * PER + rk)[None, :],
                         mask=m_ok[:, None], other=0)            # [BLOCK_M, PER·BLOCK_B], contiguous
            if MAGIC:  # without a conversion: the bits of MAGIC + q, less MAGIC + z
                q = magic_codes(packed, BITS, MAGIC_BITS, ASM)    # [BLOCK_N, PER·BLOCK_B] int16, in input order
                wq, wz = q.to(xs.dtype, bitcast=True).to(WT), (z + MAGIC_F).to(WT)
            else:      # bf16 and 8-bit codes (MAGIC + q would not be exact): convert
                wq, wz = spread_codes(packed, BITS).to(WT), z.to(WT)
            w = wq - wz[:, None]                                 # q − z, exact
            acc += s[None, :] * tl.dot(xs.to(WT), tl.trans(w), out_dtype=tl.float32)  # s·Σ (q − z)·x
        else:
            for k in tl.static_range(PER):
                cols = (b0 + rb) * PER + k                       # the inputs code k multiplies
                xk = tl.load(x_ptr + rm[:, None] * stride_xm + cols[None, :],
                             mask=m_ok[:, None], other=0)        # [BLOCK_M, BLOCK_B]
                # w = (q − z)·s = s·2^BITS·(1 + q/2^BITS) − s·(2^BITS + z), the float made from bits
                v = packed.to(tl.int32) << (TOP - BITS * k)
                f = ((v & FMASK) | one).to(tl.float32, bitcast=True)
                w = f * (s * (MASK + 1))[:, None] - (s * (z + (MASK + 1)))[:, None]  # [BLOCK_N, BLOCK_B]
                acc3 += xk.to(tl.float32)[:, None, :] * w[None, :, :]  # summed element-wise
    if not USE_DOT:
        acc += tl.sum(acc3, axis=2)                # the one reduction across the tile
    y = y_ptr + rm[:, None] * stride_ym + rn[None, :]
    ok = m_ok[:, None] & n_ok[None, :]
    if ATOMIC:    # SPLIT_K > 1: programs that share rows add their partial sums
        tl.atomic_add(y, acc, mask=ok)
        if FINISH:
            finish_tile(y_ptr, out_ptr, count_ptr, rm, rn, ok, stride_ym, SPLIT_K)
    else:
        tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=ok)  # float32, or x's 16-bit type


@triton.jit
def dequantize_weight(qw_ptr, s_ptr, z_ptr, w_ptr, N, K, stride_qn, stride_sn, stride_wn,
                      BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    """W[rn, :] = (q − z)·s in w's dtype, for output rows rn = pid·BLOCK_N …: the whole weight
    [N, K], for a dense matmul after it (the 'dequant' configuration, for prompts: from some
    rows of x on, cuBLAS multiplies faster than any tile here decodes). A step is BLOCK_B bytes
    of each row, inside one group."""
    PER: tl.constexpr = 8 // BITS          # codes per byte
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    rb = tl.arange(0, BLOCK_B)
    rk = tl.arange(0, PER * BLOCK_B)
    for step in range(0, K // (PER * BLOCK_B)):
        b0 = step * BLOCK_B
        packed = tl.load(qw_ptr + rn[:, None] * stride_qn + (b0 + rb)[None, :], mask=n_ok[:, None], other=0)
        g = (b0 * PER) // GROUP
        s = tl.load(s_ptr + rn * stride_sn + g, mask=n_ok, other=0).to(tl.float32)
        z = tl.load(z_ptr + rn * stride_sn + g, mask=n_ok, other=0).to(tl.float32)
        w = (spread_codes(packed, BITS).to(tl.float32) - z[:, None]) * s[:, None]
        tl.store(w_ptr + rn[:, None] * stride_wn + (b0 * PER + rk)[None, :], w.to(w_ptr.dtype.element_ty),
                 mask=n_ok[:, None])
