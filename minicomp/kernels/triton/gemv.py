"""`packed_gemv`: the triton kernel for one row of x (batch 1), dequantizing in its inner loop.

Same idea as the cpu kernel, written for a GPU: the float weight is never written anywhere. Each
program owns BLOCK_N output rows and walks along the input one *step* at a time: BLOCK_W int32
words of each row (8 codes a word at 4 bits), usually one quantization group (a longer step takes
a scale per word).
1. It loads the words [BLOCK_N, BLOCK_W] (16-byte loads) and asks for everything the next step
   reads (`load_step`: words, inputs, scales, zero points) before computing this one, so that
   memory is busy while the arithmetic runs. The step's inputs come in one contiguous load
   [BLOCK_W, PER], cut into columns by `tl.split` (`columns`).
2. Code k of a word becomes a float without a conversion instruction: shifted to the top of the
   mantissa and or-ed with the bits of 1.0, the 32 bits *are* f = 1 + q/2^bits (the cpu
   kernel's item 5). So each code costs a shift, one LOP3 and one FFMA: part += f·x_k.
3. Per step and row, the scale and zero point turn Σ f·x into Σ (q − z)·s·x:
       s·2^bits·Σ f·x − s·(2^bits + z)·Σ x
   element-wise; each thread keeps its own sums and the tile is added up once, at the end.
   (Adding up across threads at every step, as the first version did, cost ~5× the
   instructions: 0.65 per weight against 0.13, counted by `benchmarks/triton_static.py`.)

With SPLIT_K > 1, programs that share output rows walk every SPLIT_K-th step and add their partial
sums into float32 y with atomic adds; with FINISH, y is the layer's kept sums and the last program
of each row block stores the result in out (`common.finish_tile`).
Imported (with triton) on the backend's first use.
"""

import triton
import triton.language as tl

from minicomp.kernels.triton.common import finish_tile, halves


@triton.jit
def columns4(x):        # [R, 4] -> x[:, 0] ... x[:, 3]
    even, odd = halves(x)
    c0, c2 = tl.split(even)
    c1, c3 = tl.split(odd)
    return c0, c1, c2, c3


@triton.jit
def columns8(x):
    even, odd = halves(x)
    e0, e1, e2, e3 = columns4(even)   # columns 0, 2, 4, 6
    o0, o1, o2, o3 = columns4(odd)    # columns 1, 3, 5, 7
    return e0, o0, e1, o1, e2, o2, e3, o3


@triton.jit
def columns(x, PER: tl.constexpr):
    """[R, PER] -> its PER columns, a tuple of [R] tensors, cut by `tl.split` (which halves a last
    dimension of 2): a step's inputs are loaded once, contiguously, then cut."""
    if PER == 4:
        return columns4(x)
    elif PER == 8:
        return columns8(x)
    else:               # 16
        even, odd = halves(x)
        e0, e1, e2, e3, e4, e5, e6, e7 = columns8(even)
        o0, o1, o2, o3, o4, o5, o6, o7 = columns8(odd)
        return e0, o0, e1, o1, e2, o2, e3, o3, e4, o4, e5, o5, e6, o6, e7, o7


@triton.jit
def load_step(x_row, rows, s_rows, z_rows, n_ok, step, n_steps, step_words, group_stride,
              PER: tl.constexpr, GROUP: tl.constexpr, BLOCK_W: tl.constexpr):
    """Everything step `step` reads (zeros past the last step): words [BLOCK_N, BLOCK_W],
    x2 [BLOCK_W, PER] (row i: the inputs word i multiplies), and scales and zero points,
    [BLOCK_N, 1] when the step lies in one group, else [BLOCK_N, BLOCK_W] (one per word).
    step_words and group_stride: how far one step's words and one group's scale lie from the
    previous ones (BLOCK_W and 1 in the layer's own layout; see `packed_gemv`'s STEPS_FIRST)."""
    rw = tl.arange(0, BLOCK_W)
    w = step * BLOCK_W + rw                             # the step's words in each row
    live = w < n_steps * BLOCK_W                        # [BLOCK_W]
    words = tl.load(rows + (step * step_words + rw)[None, :], mask=n_ok[:, None] & live[None, :], other=0)
    x2 = tl.load(x_row + w[:, None] * PER + tl.arange(0, PER)[None, :], mask=live[:, None], other=0)
    if PER * BLOCK_W > GROUP:                           # a step spans several groups
        g = ((w * PER) // GROUP)[None, :]
        ok = n_ok[:, None] & live[None, :]
    else:
        g = (step * BLOCK_W * PER) // GROUP
        ok = tl.where(step < n_steps, n_ok, False)[:, None]
    s = tl.load(s_rows + g * group_stride, mask=ok, other=0)
    z = tl.load(z_rows + g * group_stride, mask=ok, other=0)
    return words, x2, s, z


@triton.jit
def packed_gemv(x_ptr, qw_ptr, s_ptr, z_ptr, y_ptr, out_ptr, count_ptr, N, K, SPLIT_K,
                stride_xm, stride_qw, stride_sn, stride_ym,
                BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
                ATOMIC: tl.constexpr, FINISH: tl.constexpr, STEPS_FIRST: tl.constexpr = False):
    """y[m, rn] (+)= Σ_k (q − z)·s·x[m, k] for program (m, pid_n, pid_k): row m of x, output rows
    rn = pid_n·BLOCK_N …, every SPLIT_K-th step from pid_k. x [M, K] (x's dtype), qw [N, K/PER]
    int32 words, s [N, K/GROUP] fp16, z [N, K/GROUP] uint8, y [M, N]; each thread keeps its own
    sums until the end of the loop. FINISH (with ATOMIC): y is float32 sums that the last program
    of a row block stores in out [M, N] and zeroes, counting in on count [programs(0)·programs(1)]
    (`common.finish_tile`); otherwise out and count are not read.

    STEPS_FIRST: qw is in the steps-first layout [K/(PER·BLOCK_W), N, BLOCK_W] (stride_qw = BLOCK_W)
    and s, z are [K/GROUP, N] (stride_sn = 1), so the BLOCK_N rows' words of one step are one
    contiguous block of memory instead of BLOCK_N pieces a row apart (`steps_first_layout`)."""
    PER: tl.constexpr = 32 // BITS         # codes per int32 word
    MASK: tl.constexpr = (1 << BITS) - 1
    TOP: tl.constexpr = 23 - BITS          # a code shifted here is the top of a float's mantissa
    FMASK: tl.constexpr = MASK << TOP
    m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)   # [BLOCK_N] output rows
    n_ok = rn < N
    n_steps = K // (PER * BLOCK_W)
    # the bits of 1.0f as a run-time value (N >= 1 always): one register for the whole loop,
    # so that `(v & FMASK) | one` is a single LOP3 (two constants would cost a MOV per code)
    one = tl.where(N > 0, 0x3F800000, 0)
    acc = tl.zeros([BLOCK_N, BLOCK_W], dtype=tl.float32)   # summed across the tile only at the end
    x_row = x_ptr + m * stride_xm
    rows = qw_ptr + rn[:, None] * stride_qw        # [BLOCK_N, 1] where each row's words start
    s_rows, z_rows = s_ptr + rn[:, None] * stride_sn, z_ptr + rn[:, None] * stride_sn
    if STEPS_FIRST:    # a step's words for all N rows, then the next step's; a group's scales likewise
        step_words, group_stride = N * BLOCK_W, N
    else:              # the layer's own layout: each row's words, then the next row's
        step_words, group_stride = BLOCK_W, 1
    words, x2, s, z = load_step(x_row, rows, s_rows, z_rows, n_ok, pid_k, n_steps, step_words, group_stride,
                                PER, GROUP, BLOCK_W)
    for step in range(pid_k, n_steps, SPLIT_K):
        # ask for everything the next step reads now, so that memory works while this one computes
        nxt = load_step(x_row, rows, s_rows, z_rows, n_ok, step + SPLIT_K, n_steps, step_words, group_stride,
                        PER, GROUP, BLOCK_W)
        xf = x2.to(tl.float32)
        xs = tl.sum(xf, axis=1)                                 # [BLOCK_W] Σ_k x_k per word
        xc = columns(xf, PER)                                  # PER tensors [BLOCK_W]: x_k per word
        part = tl.zeros([BLOCK_N, BLOCK_W], dtype=tl.float32)  # Σ_k (1 + q_k / 2^BITS)·x_k per word
        for k in tl.static_range(PER):
            if TOP - BITS * k >= 0:                # code k to the top of the mantissa
                v = words << (TOP - BITS * k)
            else:
                v = words >> (BITS * k - TOP)
            f = ((v & FMASK) | one).to(tl.float32, bitcast=True)  # 1 + q/2^BITS, exactly
            part += f * xc[k][None, :]
        # Σ (q − z)·s·x = s·2^BITS·part − s·(2^BITS + z)·Σ x
        sf, zf = s.to(tl.float32), z.to(tl.float32)
        acc += part * (sf * (MASK + 1)) - (sf * (zf + (MASK + 1))) * xs[None, :]
        words, x2, s, z = nxt
    y = tl.sum(acc, axis=1)                        # [BLOCK_N]
    if ATOMIC:    # SPLIT_K > 1: programs that share rows add their partial sums
        tl.atomic_add(y_ptr + m * stride_ym + rn, y, mask=n_ok)
        if FINISH:
            finish_tile(y_ptr, out_ptr, count_ptr, tl.full([1], m, tl.int32), rn, n_ok[None, :],
                        stride_ym, SPLIT_K)
    else:
        tl.store(y_ptr + m * stride_ym + rn, y.to(y_ptr.dtype.element_ty), mask=n_ok)
