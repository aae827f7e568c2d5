"""`packed_gemv_half2`: two 4-bit codes per instruction, for fp16 x and 1 to 4 rows of x.

The same walk as `gemv.packed_gemv` (BLOCK_N output rows a program, one group's words a step),
with the arithmetic Marlin and FasterTransformer use: a LOP3 picks two codes of a word (k and
k + 4, at bits 4k and 4k + 16) into the two fp16 halves of a register, or-ed with the bits of
1024, so the halves *are* 1024 + q; a sub (or an fma, for the codes 16× up) makes them q − z
(`codes_f16x2`); then, for each of the program's BLOCK_M rows of x, 8 fma multiply them by the
inputs and add, and 4 instructions turn the two fp16 sums into float32 and add them, scaled, to
the row's sum (`row_dot`). At one row of x, 30 instructions for 16 codes, where `packed_gemv`
needs 48: counted on sm_90, 0.08–0.09 warp instructions per weight against 0.136. With 2 or 4
rows of x to a program, each q − z serves every row: at batch 4, 0.048 per weight and row.

The arithmetic is inline PTX on int32 registers holding two fp16 numbers (f16x2; the strings and
their bit tricks are in `ptx.py`). Under the interpreter, which cannot run PTX, a plain-triton
twin repeats it step by step on fp16 halves (ASM False), so the CPU tests check the bit tricks,
the pairing of codes with inputs and the zero points; the tests also run the PTX strings through
a small PTX interpreter. What only a GPU can check is that ptxas and the hardware agree (and
there `tune` checks every candidate against the reference kernel).

Products are summed in fp16, eight to a half, then in float32: the error stays at fp16 rounding,
and since the inputs are divided by 16 first, the fp16 sums overflow only for |x| above ~8000.
Rows past N (and rows of x past M) read the last one, and steps past the last read the last
(none of it is stored), so that no load needs a mask. Imported (with triton) on the backend's
first use.
"""

import triton
import triton.language as tl

from minicomp.kernels.triton import ptx
from minicomp.kernels.triton.common import finish_tile, halves

# a jitted function may read a module global only if it is a tl.constexpr
PAIR_MAGIC, PAIR_SIXTEENTH, PAIR_MINUS_64 = (tl.constexpr(c) for c in (ptx.PAIR_MAGIC, ptx.PAIR_SIXTEENTH,
                                                                        ptx.PAIR_MINUS_64))
CODES_PTX, DOT_PTX, X_PAIRS_PTX = (tl.constexpr(c) for c in (ptx.CODES, ptx.DOT, ptx.X_PAIRS))


@triton.jit
def f16_halves(v):      # int32 -> the fp16 numbers in its low and its high 16 bits
    lo = (v & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)
    hi = ((v >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)
    return lo, hi


@triton.jit
def f16_pair(lo, hi):   # two fp16 tensors -> int32 holding (lo, hi)
    return ((lo.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF)
            | (hi.to(tl.int16, bitcast=True).to(tl.int32) << 16))


@triton.jit
def ptx_4x32(PTX: tl.constexpr, a, b, c, d):   # inline PTX with 4 int32 operands in and 4 out
    return tl.inline_asm_elementwise(PTX, "=r,=r,=r,=r,r,r,r,r", [a, b, c, d],
                                     dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)


@triton.jit
def sixteenths(lo, hi):  # two fp16 tensors, divided by 16 (exact), as one f16x2 int32
    return f16_pair((lo * 0.0625).to(tl.float16), (hi * 0.0625).to(tl.float16))


@triton.jit
def x_pairs(a0, a1, a2, a3, ASM: tl.constexpr):
    """A word's 8 inputs, loaded as the int32 pairs (x0, x1) (x2, x3) (x4, x5) (x6, x7), regrouped
    as `codes_f16x2` pairs the codes, (x0, x4) (x1, x5) (x2, x6) (x3, x7), and divided by 16
    (exact; it keeps the fp16 sums of `dot_f16x2` far from overflowing)."""
    if ASM:
        return ptx_4x32(X_PAIRS_PTX, a0, a1, a2, a3)
    else:
        x0, x1 = f16_halves(a0)
        x2, x3 = f16_halves(a1)
        x4, x5 = f16_halves(a2)
        x6, x7 = f16_halves(a3)
        return sixteenths(x0, x4), sixteenths(x1, x5), sixteenths(x2, x6), sixteenths(x3, x7)


@triton.jit
def codes_f16x2(w, za, zb, c16, ASM: tl.constexpr):
    """The 8 codes of the words w as q − z, exactly, two to an int32 (f16x2): (q0, q4) (q1, q5)
    (q2, q6) (q3, q7). za = (1024 + z)×2, zb = −(64 + z)×2 and c16 = (1/16)×2, as f16x2."""
    if ASM:
        return ptx_4x32(CODES_PTX, w, za, zb, c16)
    else:
        zal, zah = f16_halves(za)
        zbl, zbh = f16_halves(zb)
        cl, ch = f16_halves(c16)
        t = w >> 8
        h0l, h0h = f16_halves((w & 0x000F000F) | PAIR_MAGIC)   # 1024 + q, two codes at once
        h1l, h1h = f16_halves((w & 0x00F000F0) | PAIR_MAGIC)   # 1024 + 16·q
        h2l, h2h = f16_halves((t & 0x000F000F) | PAIR_MAGIC)
        h3l, h3h = f16_halves((t & 0x00F000F0) | PAIR_MAGIC)
        return (f16_pair((h0l - zal).to(tl.float16), (h0h - zah).to(tl.float16)),
                f16_pair((h1l * cl + zbl).to(tl.float16), (h1h * ch + zbh).to(tl.float16)),
                f16_pair((h2l - zal).to(tl.float16), (h2h - zah).to(tl.float16)),
                f16_pair((h3l * cl + zbl).to(tl.float16), (h3h * ch + zbh).to(tl.float16)))


@triton.jit
def dot_f16x2(d0, d1, d2, d3, e0, e1, e2, e3, p0, p1, p2, p3, r0, r1, r2, r3, ASM: tl.constexpr):
    """Σ d·p + e·r over the f16x2 registers given (16 products, two at a time), as float32: the
    products are added in fp16, eight to a half, and the two halves in float32."""
    if ASM:
        return tl.inline_asm_elementwise(DOT_PTX, "=r" + ",r" * 16,
                                         [d0, d1, d2, d3, e0, e1, e2, e3, p0, p1, p2, p3, r0, r1, r2, r3],
                                         dtype=tl.float32, is_pure=True, pack=1)
    else:
        dl, dh = f16_halves(d0)
        pl, ph = f16_halves(p0)
        lo, hi = (dl * pl).to(tl.float16), (dh * ph).to(tl.float16)
        for d, p in ((d1, p1), (d2, p2), (d3, p3), (e0, r0), (e1, r1), (e2, r2), (e3, r3)):
            dl, dh = f16_halves(d)
            pl, ph = f16_halves(p)
            lo, hi = (lo + dl * pl).to(tl.float16), (hi + dh * ph).to(tl.float16)
        return lo.to(tl.float32) + hi.to(tl.float32)


@triton.jit
def half2_words(rows, step, n_steps, step_words, BLOCK_W: tl.constexpr):
    """The codes step `step` reads (the last step's past the last): words [BLOCK_N, BLOCK_W].
    step_words: how far one step's words lie from the previous step's (BLOCK_W in the layer's own
    layout, N·BLOCK_W steps-first)."""
    step = tl.minimum(step, n_steps - 1)
    return tl.load(rows + (step * step_words + tl.arange(0, BLOCK_W))[None, :])


@triton.jit
def half2_scales(s_row, z_row, step, n_steps, group_stride, GROUP: tl.constexpr, BLOCK_W: tl.constexpr):
    """Step `step`'s scales and zero points [BLOCK_N] (the last step's past the last); group_stride:
    how far one group's lie from the previous group's (1, or N steps-first)."""
    g = (tl.minimum(step, n_steps - 1) * BLOCK_W * 8) // GROUP * group_stride
    return tl.load(s_row + g), tl.load(z_row + g)


@triton.jit
def half2_load(rows, s_row, z_row, step, n_steps, step_words, group_stride, GROUP: tl.constexpr,
               BLOCK_W: tl.constexpr):
    """Everything step `step` reads: its words, scales and zero points."""
    s, z = half2_scales(s_row, z_row, step, n_steps, group_stride, GROUP, BLOCK_W)
    return half2_words(rows, step, n_steps, step_words, BLOCK_W), s, z


@triton.jit
def row_dot(x_row, step, d0, d1, d2, d3, e0, e1, e2, e3, BLOCK_W: tl.constexpr, ASM: tl.constexpr):
    """For one row of x (x_row: x as int32 pairs, element j holding inputs 2j and 2j + 1), Σ (q − z)·x/16
    over each pair of words of the step, [BLOCK_N, BLOCK_W / 2]: d's are the even words' codes
    (`codes_f16x2`), e's the odd words'. Each word's inputs are loaded in the layout of the
    words (1-D, then broadcast), so each thread loads and regroups only its own words' inputs."""
    xw = x_row + 4 * (step * BLOCK_W + tl.arange(0, BLOCK_W))   # [BLOCK_W]: each word's first pair
    p0, p1, p2, p3 = x_pairs(tl.load(xw), tl.load(xw + 1), tl.load(xw + 2), tl.load(xw + 3), ASM)
    p0e, p0o = halves(p0[None, :])             # the even and the odd words' inputs
    p1e, p1o = halves(p1[None, :])
    p2e, p2o = halves(p2[None, :])
    p3e, p3o = halves(p3[None, :])
    return dot_f16x2(d0, d1, d2, d3, e0, e1, e2, e3, p0e, p1e, p2e, p3e, p0o, p1o, p2o, p3o, ASM)


@triton.jit
def store_row(y_ptr, row, M, rn, n_ok, acc, stride_ym, ATOMIC: tl.constexpr):
    """Row `row` of y: its BLOCK_N outputs, each the sum of its row of acc (if row < M)."""
    y = tl.sum(acc, axis=1)
    ok = tl.where(row < M, n_ok, False)
    if ATOMIC:    # SPLIT_K > 1: programs that share rows add their partial sums
        tl.atomic_add(y_ptr + row * stride_ym + rn, y, mask=ok)
    else:
        tl.store(y_ptr + row * stride_ym + rn, y.to(y_ptr.dtype.element_ty), mask=ok)


@triton.jit
def packed_gemv_half2(x_ptr, qw_ptr, s_ptr, z_ptr, y_ptr, out_ptr, count_ptr, M, N, K, SPLIT_K,
                      stride_xm, stride_qw, stride_sn, stride_ym,
                      BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_W: tl.constexpr, ATOMIC: tl.constexpr, ASM: tl.constexpr,
                      PREFETCH: tl.constexpr, STAGES: tl.constexpr, FINISH: tl.constexpr,
                      STEPS_FIRST: tl.constexpr = False):
    """y[m, rn] (+)= Σ_k (q − z)·s·x[m, k] for the program's rows of x m = pid_m·BLOCK_M …,
    output rows rn = pid_n·BLOCK_N …, every SPLIT_K-th step from pid_k. x [M, K/2] int32 (fp16
    inputs in pairs: element j holds inputs 2j and 2j + 1), qw [N, K/8] int32 words,
    s [N, K/GROUP] fp16, z [N, K/GROUP] uint8, y [M, N]. FINISH and STEPS_FIRST (qw
    [K/(8·BLOCK_W), N, BLOCK_W], s and z [K/GROUP, N]): as in `gemv.packed_gemv`."""
    tl.static_assert(BITS == 4, "the half2 kernel reads 4-bit codes")
    pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)   # [BLOCK_N] output rows
    n_ok = rn < N
    n_steps = K // (8 * BLOCK_W)
    magic = tl.where(N > 0, PAIR_MAGIC, 0)        # constants as registers (N >= 1), as in packed_gemv
    c16 = tl.where(N > 0, PAIR_SIXTEENTH, 0)
    minus64 = tl.where(N > 0, PAIR_MINUS_64, 0)
    rc = tl.minimum(rn, N - 1)                     # rows past the last read the last (not stored)
    rows = qw_ptr + rc[:, None] * stride_qw
    s_row, z_row = s_ptr + rc * stride_sn, z_ptr + rc * stride_sn
    m0 = pid_m * BLOCK_M                           # this program's BLOCK_M (1, 2 or 4) rows of x;
    x0 = x_ptr + m0 * stride_xm                    # those past M read row M − 1 (not stored)
    x1 = x_ptr + tl.minimum(m0 + 1, M - 1) * stride_xm
    x2 = x_ptr + tl.minimum(m0 + 2, M - 1) * stride_xm
    x3 = x_ptr + tl.minimum(m0 + 3, M - 1) * stride_xm
    acc0 = tl.zeros([BLOCK_N, BLOCK_W // 2], dtype=tl.float32)  # per row of x: one sum per pair of words
    acc1, acc2, acc3 = acc0, acc0, acc0
    if STEPS_FIRST:    # a step's words for all N rows, then the next step's (see gemv.packed_gemv)
        step_words, group_stride = N * BLOCK_W, N
    else:
        step_words, group_stride = BLOCK_W, 1
    cur = half2_load(rows, s_row, z_row, pid_k, n_steps, step_words, group_stride, GROUP, BLOCK_W)
    # STAGES > 1: triton's pipeliner copies the codes of the next STAGES - 1 steps into shared
    # memory (cp.async) while this one computes, so more bytes are in flight per program; the
    # scales and zero points, too narrow for cp.async (2 bytes a row), come one step ahead in
    # registers
    for step in tl.range(pid_k, n_steps, SPLIT_K, num_stages=STAGES):
        if PREFETCH:    # ask for the next step's codes before computing this one
            nxt = half2_load(rows, s_row, z_row, step + SPLIT_K, n_steps, step_words, group_stride, GROUP, BLOCK_W)
        elif STAGES > 1:
            s_nxt, z_nxt = half2_scales(s_row, z_row, step + SPLIT_K, n_steps, group_stride, GROUP, BLOCK_W)
            cur = half2_words(rows, step, n_steps, step_words, BLOCK_W), cur[1], cur[2]
        else:
            cur = half2_load(rows, s_row, z_row, step, n_steps, step_words, group_stride, GROUP, BLOCK_W)
        words, s, z = cur
        z = z.to(tl.int32)[:, None]
        za = (z | (z << 16)) | magic               # (1024 + z, 1024 + z)
        zb = ((z << 4) | (z << 20)) | minus64      # (−(64 + z), −(64 + z))
        w0, w1 = halves(words)                     # even and odd words [BLOCK_N, BLOCK_W / 2]
        d0, d1, d2, d3 = codes_f16x2(w0, za, zb, c16, ASM)   # q − z, computed once for all rows of x
        e0, e1, e2, e3 = codes_f16x2(w1, za, zb, c16, ASM)
        sf = (s.to(tl.float32) * 16.0)[:, None]    # the products were of x/16
        acc0 += row_dot(x0, step, d0, d1, d2, d3, e0, e1, e2, e3, BLOCK_W, ASM) * sf
        if BLOCK_M > 1:
            acc1 += row_dot(x1, step, d0, d1, d2, d3, e0, e1, e2, e3, BLOCK_W, ASM) * sf
        if BLOCK_M > 2:
            acc2 += row_dot(x2, step, d0, d1, d2, d3, e0, e1, e2, e3, BLOCK_W, ASM) * sf
            acc3 += row_dot(x3, step, d0, d1, d2, d3, e0, e1, e2, e3, BLOCK_W, ASM) * sf
        if PREFETCH:
            cur = nxt
        elif STAGES > 1:
            cur = words, s_nxt, z_nxt
    store_row(y_ptr, m0, M, rn, n_ok, acc0, stride_ym, ATOMIC)
    if BLOCK_M > 1:
        store_row(y_ptr, m0 + 1, M, rn, n_ok, acc1, stride_ym, ATOMIC)
    if BLOCK_M > 2:
        store_row(y_ptr, m0 + 2, M, rn, n_ok, acc2, stride_ym, ATOMIC)
        store_row(y_ptr, m0 + 3, M, rn, n_ok, acc3, stride_ym, ATOMIC)
    if FINISH:    # (with ATOMIC) the last program of this block of y stores it from the sums
        rm = m0 + tl.arange(0, BLOCK_M)
        finish_tile(y_ptr, out_ptr, count_ptr, rm, rn, (rm < M)[:, None] & n_ok[None, :], stride_ym, SPLIT_K)
