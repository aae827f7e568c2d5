"""The triton backend: fused W4A16 (and W2/W8) GPU kernels for GEMV and small-batch GEMM.

Same idea as the cpu kernel, written for a GPU: the float weight is never written anywhere.
8192 × 8192 at 4 bits moves 34 MB from memory instead of 134 MB of fp16, which is where a
memory-bound GEMV gets its speed, *if* the kernel issues few enough instructions per weight to
keep up with the memory: at 4.8 TB/s an H200 delivers a 4-bit weight every ~0.1 ns. Two kernels:

`packed_gemv` (one row of x per program, batch 1). Each program owns BLOCK_N output rows and
walks along the input one *step* at a time: BLOCK_W int32 words of each row (8 codes a word at 4
bits), usually one quantization group (a longer step takes a scale per word).
1. It loads the words [BLOCK_N, BLOCK_W] (16-byte loads) and asks for everything the next step
   reads (`load_step`: words, inputs, scales, zero points) before computing this one, so that
   memory is busy while the arithmetic runs. The step's inputs come in one contiguous load
   [BLOCK_W, PER], cut into columns by `tl.split`.
2. Code k of a word becomes a float without a conversion instruction: shifted to the top of the
   mantissa and or-ed with the bits of 1.0, the 32 bits *are* f = 1 + q/2^bits (the cpu
   kernel's item 5). So each code costs a shift, one LOP3 and one FFMA: part += f·x_k.
3. Per step and row, the scale and zero point turn Σ f·x into Σ (q − z)·s·x:
       s·2^bits·Σ f·x − s·(2^bits + z)·Σ x
   element-wise; each thread keeps its own sums and the tile is added up once, at the end.
   (Adding up across threads at every step, as the first version did, cost ~5× the
   instructions: 0.65 per weight against 0.13, counted by `benchmarks/triton_static.py`.)

`packed_gemv_half2` (1 to 8 rows of x, fp16 x, 4-bit codes; `tune` candidates, KERNEL "half2"). The
same walk with two codes per instruction, as Marlin and FasterTransformer do it: a LOP3 picks two codes
of a word (k and k + 4, at bits 4k and 4k + 16) into the two fp16 halves of a register, or-ed with
the bits of 1024, so the halves *are* 1024 + q; a sub (or an fma for the codes 16× up) makes
them q − z, and an fma multiplies them by a pair of inputs and adds. 30 instructions for 16 codes
where `packed_gemv` needs 48; counted on sm_90, 0.08–0.09 warp instructions per weight against
0.136. With 2 or 4 rows of x to a program (BLOCK_M), each q − z serves every row: at batch 4,
0.048 per weight and row, against the tile kernel's 0.076, reading the codes once. The
arithmetic is inline PTX on int32 registers (f16x2); under the interpreter, which cannot run PTX,
a plain-triton twin repeats it step by step on fp16 halves, and the tests run the PTX strings
themselves through a small PTX interpreter. Products are summed in fp16, eight to a half, then in
float32: the error stays at fp16 rounding (the tests and `tune` check it), and since the inputs
are divided by 16 first, the fp16 sums overflow only for |x| above ~8000.

`packed_matmul` (the tile kernel, BLOCK_M rows of x at once). It loads packed bytes
[BLOCK_N, BLOCK_B] straight from `qweight` (byte i of a row holds inputs PER·i … PER·i + PER − 1,
lowest bits first) and, for each code k,
- below 16 rows of x: dequantizes, w = (q − z)·s with the same float trick, and adds x·w to a
  [BLOCK_M, BLOCK_N, BLOCK_B] sum, reduced once at the end;
- from 16 rows on: multiplies codes and x on tensor cores (`tl.dot`; small integers are exact in
  x's 16-bit type) and applies s·(Σ q·x − z·Σ x) once per step.

For big N·K and tiny M the input dimension is also split across programs (SPLIT_K) whose partial
sums meet with atomic adds, so that there are enough programs to keep every SM's memory busy.

Runs on CUDA tensors. With `TRITON_INTERPRET=1` (set before the first call) triton interprets
the same kernels on the CPU with numpy, which is how the tests check them without a GPU; and
`compile_ahead` compiles a configuration for an NVIDIA GPU that is not there, so the tests also
check that every candidate compiles and `benchmarks/triton_static.py` counts each one's
instructions per weight (`loop_profile`). Which kernel and block sizes are fastest depends on
the GPU, so on a GPU `tune` times the `candidates` on the first call for each batch size, shape
and format, keeps the fastest, and records every time (`tuned()`; `minicomp bench` saves them).
`_config` is the first candidate and what runs under the interpreter; `MINICOMP_TRITON_TUNE=0`
switches tuning off.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from minicomp.kernels.reference import dequantize_packed

NAME = "triton"
PACK_BITS = (2, 4, 8)
triton = tl = None  # imported on first use: TRITON_INTERPRET must be set before `import triton`
halves = columns4 = columns8 = columns = load_step = None  # packed_gemv's jitted helpers, made by `_helpers`
f16_halves = f16_pair = ptx_4x32 = sixteenths = x_pairs = codes_f16x2 = dot_f16x2 = None  # made by `_half2_helpers`
half2_load = row_dot = store_row = None


def installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _nvidia_bin() -> str | None:
    """The folder of the NVIDIA tools (ptxas, cuobjdump) that triton ships, or None."""
    spec = importlib.util.find_spec("triton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "backends", "nvidia", "bin")


def compiler_available() -> bool:
    """Whether `compile_ahead` can work here: triton with its NVIDIA compiler (the ptxas it ships)."""
    folder = _nvidia_bin()
    return folder is not None and all(os.path.exists(os.path.join(folder, t)) for t in ("ptxas", "cuobjdump"))


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


def _nibbles_ptx(magic: int) -> str:
    """PTX for `magic_codes`: 4 bytes in $4 -> the 16-bit numbers magic | q of their low nibbles in
    $0 (bytes 0, 1) and $1 (bytes 2, 3), of their high nibbles in $2 and $3. A PRMT spreads two
    bytes into the two 16-bit halves of a register, a LOP3 masks a nibble out of each half and
    or-s in the magic bits at once; a shift by 4 brings the high nibbles down."""
    two = f"0x{magic:04X}{magic:04X}"
    return ("{ .reg .b32 t, u; prmt.b32 t, $4, 0, 0x4140; prmt.b32 u, $4, 0, 0x4342;"   # (b0, b1), (b2, b3)
            f" lop3.b32 $0, t, 0x000F000F, {two}, 0xea; lop3.b32 $1, u, 0x000F000F, {two}, 0xea;"
            f" shr.u32 t, t, 4; shr.u32 u, u, 4;"
            f" lop3.b32 $2, t, 0x000F000F, {two}, 0xea; lop3.b32 $3, u, 0x000F000F, {two}, 0xea; }}")


_FP16_MAGIC, _BF16_MAGIC = 0x6400, 0x4300          # the bits of fp16 1024 and of bf16 128
_NIBBLES_FP16_PTX, _NIBBLES_BF16_PTX = _nibbles_ptx(_FP16_MAGIC), _nibbles_ptx(_BF16_MAGIC)


@functools.cache
def _kernel(jit: bool = True):
    """The tile kernel, jitted on first use (jit=False: the plain Python function). With tensor
    cores (USE_DOT), each step's codes become x's dtype by their bits, MAGIC + q (`magic_codes`:
    inline PTX on a GPU when ASM, plain triton otherwise), less MAGIC + z: q − z exactly, which
    one tl.dot multiplies by the step's inputs. Without, each code becomes a float32 by its
    bits (see `packed_gemv`) and the products are summed element-wise."""
    _import()
    _helpers()

    def packed_matmul(x_ptr, qw_ptr, s_ptr, z_ptr, y_ptr, M, N, K, SPLIT_K,
                      stride_xm, stride_qn, stride_sn, stride_ym,
                      BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, ACC_B: tl.constexpr,
                      USE_DOT: tl.constexpr, ATOMIC: tl.constexpr, DOT_FP32: tl.constexpr,
                      ASM: tl.constexpr):
        PER: tl.constexpr = 8 // BITS          # codes per byte
        MASK: tl.constexpr = (1 << BITS) - 1
        TOP: tl.constexpr = 23 - BITS          # a code shifted here is the top of a float's mantissa
        FMASK: tl.constexpr = MASK << TOP
        FP16: tl.constexpr = x_ptr.dtype.element_ty == tl.float16
        MAGIC: tl.constexpr = FP16 or BITS < 8   # (with tensor cores) MAGIC + q is exact in x's dtype
        MAGIC_BITS: tl.constexpr = _FP16_MAGIC if FP16 else _BF16_MAGIC
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
        one = tl.where(N > 0, 0x3F800000, 0)           # the bits of 1.0f, in a register (see packed_gemv)
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        acc3 = tl.zeros([BLOCK_M, BLOCK_N, ACC_B], dtype=tl.float32)  # without tensor cores (else ACC_B = 1)
        n_steps = K // (PER * BLOCK_B)
        for step in range(pid_k, n_steps, SPLIT_K):
            b0 = step * BLOCK_B                        # first byte of the step in each row
            packed = tl.load(qw_ptr + rn[:, None] * stride_qn + (b0 + rb)[None, :],
                             mask=n_ok[:, None], other=0)            # [BLOCK_N, BLOCK_B] uint8
            g = (b0 * PER) // GROUP                    # the step's group
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
        else:
            tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=ok)  # float32, or x's 16-bit type

    return triton.jit(packed_matmul) if jit else packed_matmul


@functools.cache
def _helpers():
    """Make the GEMV kernel's jitted helpers module globals (a jitted function finds the
    functions it calls among its globals): `load_step`, and `columns(x2, PER)`, which cuts the PER
    columns of x2 [rows, PER] into a tuple of [rows] tensors with `tl.split` (which halves a last
    dimension of 2), so x is loaded once, contiguously; for the tile kernel's tensor cores,
    `spread_codes` (bytes to codes in the inputs' order, with `tl.join`) and `magic_codes`."""
    global halves, columns4, columns8, columns, load_step, spread_codes, magic_codes
    global _FP16_MAGIC, _BF16_MAGIC, _NIBBLES_FP16_PTX, _NIBBLES_BF16_PTX
    _import()
    # a jitted function may read a module global only if it is a tl.constexpr
    _FP16_MAGIC, _BF16_MAGIC, _NIBBLES_FP16_PTX, _NIBBLES_BF16_PTX = (
        tl.constexpr(c) for c in (_FP16_MAGIC, _BF16_MAGIC, _NIBBLES_FP16_PTX, _NIBBLES_BF16_PTX))

    def halves(x):          # [R, 2n] -> columns 0, 2, ... and 1, 3, ... as two [R, n]
        return tl.split(tl.reshape(x, [x.shape[0], x.shape[1] // 2, 2]))

    def columns4(x):        # [R, 4] -> x[:, 0] ... x[:, 3]
        even, odd = halves(x)
        c0, c2 = tl.split(even)
        c1, c3 = tl.split(odd)
        return c0, c1, c2, c3

    def columns8(x):
        even, odd = halves(x)
        e0, e1, e2, e3 = columns4(even)   # columns 0, 2, 4, 6
        o0, o1, o2, o3 = columns4(odd)    # columns 1, 3, 5, 7
        return e0, o0, e1, o1, e2, o2, e3, o3

    def columns(x, PER: tl.constexpr):
        if PER == 4:
            return columns4(x)
        elif PER == 8:
            return columns8(x)
        else:               # 16
            even, odd = halves(x)
            e0, e1, e2, e3, e4, e5, e6, e7 = columns8(even)
            o0, o1, o2, o3, o4, o5, o6, o7 = columns8(odd)
            return e0, o0, e1, o1, e2, o2, e3, o3, e4, o4, e5, o5, e6, o6, e7, o7

    def load_step(x_row, rows, s_rows, z_rows, n_ok, step, n_steps,
                  PER: tl.constexpr, GROUP: tl.constexpr, BLOCK_W: tl.constexpr):
        """Everything step `step` reads (zeros past the last step): words [BLOCK_N, BLOCK_W],
        x2 [BLOCK_W, PER] (row i: the inputs word i multiplies), and scales and zero points,
        [BLOCK_N, 1] when the step lies in one group, else [BLOCK_N, BLOCK_W] (one per word)."""
        rw = tl.arange(0, BLOCK_W)
        w = step * BLOCK_W + rw                             # the step's words in each row
        live = w < n_steps * BLOCK_W                        # [BLOCK_W]
        words = tl.load(rows + w[None, :], mask=n_ok[:, None] & live[None, :], other=0)
        x2 = tl.load(x_row + w[:, None] * PER + tl.arange(0, PER)[None, :], mask=live[:, None], other=0)
        if PER * BLOCK_W > GROUP:                           # a step spans several groups
            g = ((w * PER) // GROUP)[None, :]
            ok = n_ok[:, None] & live[None, :]
        else:
            g = (step * BLOCK_W * PER) // GROUP
            ok = tl.where(step < n_steps, n_ok, False)[:, None]
        s = tl.load(s_rows + g, mask=ok, other=0)
        z = tl.load(z_rows + g, mask=ok, other=0)
        return words, x2, s, z

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

    def magic_codes(packed, BITS: tl.constexpr, MAGIC_BITS: tl.constexpr, ASM: tl.constexpr):
        """Bytes [R, B] -> MAGIC_BITS | q, int16 [R, B·8/BITS], the codes in the inputs' order: the
        bits of the 16-bit float MAGIC + q. For 4-bit codes on a GPU (ASM), 8 instructions make
        16 of them (`_nibbles_ptx`), against ~10 a byte for what triton makes of the plain code."""
        if ASM and BITS == 4:
            if MAGIC_BITS == _FP16_MAGIC:
                ptx: tl.constexpr = _NIBBLES_FP16_PTX
            else:
                ptx: tl.constexpr = _NIBBLES_BF16_PTX
            lo, hi = tl.inline_asm_elementwise(ptx, "=r,=r,=r,=r,r", [packed], dtype=(tl.int16, tl.int16),
                                               is_pure=True, pack=4)
            return tl.reshape(tl.join(lo, hi), [packed.shape[0], 2 * packed.shape[1]])
        else:
            return spread_codes(packed, BITS) | MAGIC_BITS

    halves, columns4, columns8, columns, load_step, spread_codes, magic_codes = (
        triton.jit(f) for f in (halves, columns4, columns8, columns, load_step, spread_codes, magic_codes))


@functools.cache
def _gemv_kernel(jit: bool = True):
    """The batch-1 kernel, jitted on first use (jit=False: the plain Python function): one row of
    x per program; each thread keeps its own sums until the end of the loop."""
    _import()
    _helpers()

    def packed_gemv(x_ptr, qw_ptr, s_ptr, z_ptr, y_ptr, N, K, SPLIT_K,
                    stride_xm, stride_qw, stride_sn, stride_ym,
                    BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
                    ATOMIC: tl.constexpr):
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
        words, x2, s, z = load_step(x_row, rows, s_rows, z_rows, n_ok, pid_k, n_steps, PER, GROUP, BLOCK_W)
        for step in range(pid_k, n_steps, SPLIT_K):
            # ask for everything the next step reads now, so that memory works while this one computes
            nxt = load_step(x_row, rows, s_rows, z_rows, n_ok, step + SPLIT_K, n_steps, PER, GROUP, BLOCK_W)
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
        else:
            tl.store(y_ptr + m * stride_ym + rn, y.to(y_ptr.dtype.element_ty), mask=n_ok)

    return triton.jit(packed_gemv) if jit else packed_gemv


# Two codes per instruction (packed_gemv_half2). The PTX works on int32 registers that hold two
# fp16 numbers (f16x2). A word's codes sit at bits 4k (k = 0 … 7); a LOP3 with the mask 0x000F000F
# picks codes 0 and 4 at once and or-s in the bits of fp16 1024 (0x6400), so that each half *is*
# the fp16 number 1024 + q; the mask 0x00F000F0 picks codes 1 and 5 as 1024 + 16·q; after a shift
# by 8 the same two masks give codes 2 and 6, then 3 and 7.
_PAIR_MAGIC, _PAIR_SIXTEENTH, _PAIR_MINUS_64 = 0x64006400, 0x2C002C00, 0xD400D400 - 2**32  # f16x2 bits
_CODES_PTX = (  # word $4 -> its 8 codes as q − z in 4 f16x2: za $5 = (1024 + z)×2, zb $6 = −(64 + z)×2, $7 = (1/16)×2
    "{ .reg .b32 t, h; shr.u32 t, $4, 8;"
    " lop3.b32 h, $4, 0x000F000F, 0x64006400, 0xea; sub.f16x2 $0, h, $5;"          # codes 0, 4: 1024 + q − (1024 + z)
    " lop3.b32 h, $4, 0x00F000F0, 0x64006400, 0xea; fma.rn.f16x2 $1, h, $7, $6;"   # codes 1, 5: (1024 + 16q)/16 − (64 + z)
    " lop3.b32 h, t, 0x000F000F, 0x64006400, 0xea; sub.f16x2 $2, h, $5;"           # codes 2, 6
    " lop3.b32 h, t, 0x00F000F0, 0x64006400, 0xea; fma.rn.f16x2 $3, h, $7, $6; }")  # codes 3, 7
_DOT_PTX = (  # Σ of 8 f16x2 products ($1 … $8 times $9 … $16), in fp16 per half, then the halves added in float32
    "{ .reg .b32 a; .reg .b16 l, u; .reg .f32 fl, fu; mul.f16x2 a, $1, $9;"
    + "".join(f" fma.rn.f16x2 a, ${i}, ${i + 8}, a;" for i in range(2, 9))
    + " mov.b32 {l, u}, a; cvt.f32.f16 fl, l; cvt.f32.f16 fu, u; add.f32 $0, fl, fu; }")
_X_PAIRS_PTX = ("{ .reg .b32 t, u, v, w, c; mov.b32 c, 0x2C002C00;"
                " prmt.b32 t, $4, $6, 0x5410; prmt.b32 u, $4, $6, 0x7632;"   # (x0, x4) and (x1, x5)
                " prmt.b32 v, $5, $7, 0x5410; prmt.b32 w, $5, $7, 0x7632;"   # (x2, x6) and (x3, x7)
                " mul.f16x2 $0, t, c; mul.f16x2 $1, u, c; mul.f16x2 $2, v, c; mul.f16x2 $3, w, c; }")


@functools.cache
def _half2_helpers():
    """Make `packed_gemv_half2`'s jitted helpers module globals. `x_pairs`, `codes_f16x2` and
    `dot_f16x2` run inline PTX on a GPU (ASM) and, under the interpreter, which cannot run PTX, a
    plain-triton twin that repeats the PTX step by step on fp16 halves, so the CPU tests check the
    bit tricks, the pairing of codes with inputs and the zero points. The PTX strings themselves
    are checked by a small PTX interpreter in the tests; what only a GPU can check is that ptxas and
    the hardware agree with it (and there `tune` checks every candidate against the reference)."""
    global f16_halves, f16_pair, ptx_4x32, sixteenths, x_pairs, codes_f16x2, dot_f16x2, half2_load, row_dot, store_row
    global _PAIR_MAGIC, _PAIR_SIXTEENTH, _PAIR_MINUS_64, _CODES_PTX, _DOT_PTX, _X_PAIRS_PTX
    _import()
    _helpers()
    # a jitted function may read a module global only if it is a tl.constexpr
    _PAIR_MAGIC, _PAIR_SIXTEENTH, _PAIR_MINUS_64, _CODES_PTX, _DOT_PTX, _X_PAIRS_PTX = (
        tl.constexpr(c) for c in (_PAIR_MAGIC, _PAIR_SIXTEENTH, _PAIR_MINUS_64, _CODES_PTX, _DOT_PTX, _X_PAIRS_PTX))

    def f16_halves(v):      # int32 -> the fp16 numbers in its low and its high 16 bits
        lo = (v & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)
        hi = ((v >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)
        return lo, hi

    def f16_pair(lo, hi):   # two fp16 tensors -> int32 holding (lo, hi)
        return ((lo.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF)
                | (hi.to(tl.int16, bitcast=True).to(tl.int32) << 16))

    def ptx_4x32(PTX: tl.constexpr, a, b, c, d):   # inline PTX with 4 int32 operands in and 4 out
        return tl.inline_asm_elementwise(PTX, "=r,=r,=r,=r,r,r,r,r", [a, b, c, d],
                                         dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)

    def sixteenths(lo, hi):  # two fp16 tensors, divided by 16 (exact), as one f16x2 int32
        return f16_pair((lo * 0.0625).to(tl.float16), (hi * 0.0625).to(tl.float16))

    def x_pairs(a0, a1, a2, a3, ASM: tl.constexpr):
        """A word's 8 inputs, loaded as the int32 pairs (x0, x1) (x2, x3) (x4, x5) (x6, x7), regrouped
        as `codes_f16x2` pairs the codes, (x0, x4) (x1, x5) (x2, x6) (x3, x7), and divided by 16
        (exact; it keeps the fp16 sums of `dot_f16x2` far from overflowing)."""
        if ASM:
            return ptx_4x32(_X_PAIRS_PTX, a0, a1, a2, a3)
        else:
            x0, x1 = f16_halves(a0)
            x2, x3 = f16_halves(a1)
            x4, x5 = f16_halves(a2)
            x6, x7 = f16_halves(a3)
            return sixteenths(x0, x4), sixteenths(x1, x5), sixteenths(x2, x6), sixteenths(x3, x7)

    def codes_f16x2(w, za, zb, c16, ASM: tl.constexpr):
        """The 8 codes of the words w as q − z, exactly, two to an int32 (f16x2): (q0, q4) (q1, q5)
        (q2, q6) (q3, q7). za = (1024 + z)×2, zb = −(64 + z)×2 and c16 = (1/16)×2, as f16x2."""
        if ASM:
            return ptx_4x32(_CODES_PTX, w, za, zb, c16)
        else:
            zal, zah = f16_halves(za)
            zbl, zbh = f16_halves(zb)
            cl, ch = f16_halves(c16)
            t = w >> 8
            h0l, h0h = f16_halves((w & 0x000F000F) | _PAIR_MAGIC)   # 1024 + q, two codes at once
            h1l, h1h = f16_halves((w & 0x00F000F0) | _PAIR_MAGIC)   # 1024 + 16·q
            h2l, h2h = f16_halves((t & 0x000F000F) | _PAIR_MAGIC)
            h3l, h3h = f16_halves((t & 0x00F000F0) | _PAIR_MAGIC)
            return (f16_pair((h0l - zal).to(tl.float16), (h0h - zah).to(tl.float16)),
                    f16_pair((h1l * cl + zbl).to(tl.float16), (h1h * ch + zbh).to(tl.float16)),
                    f16_pair((h2l - zal).to(tl.float16), (h2h - zah).to(tl.float16)),
                    f16_pair((h3l * cl + zbl).to(tl.float16), (h3h * ch + zbh).to(tl.float16)))

    def dot_f16x2(d0, d1, d2, d3, e0, e1, e2, e3, p0, p1, p2, p3, r0, r1, r2, r3, ASM: tl.constexpr):
        """Σ d·p + e·r over the f16x2 registers given (16 products, two at a time), as float32: the
        products are added in fp16, eight to a half, and the two halves in float32."""
        if ASM:
            return tl.inline_asm_elementwise(_DOT_PTX, "=r" + ",r" * 16,
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

    def half2_load(rows, s_row, z_row, step, n_steps, GROUP: tl.constexpr, BLOCK_W: tl.constexpr):
        """The codes step `step` reads (the last step's past the last): words [BLOCK_N, BLOCK_W],
        and the step's scales and zero points [BLOCK_N]."""
        step = tl.minimum(step, n_steps - 1)
        words = tl.load(rows + (step * BLOCK_W + tl.arange(0, BLOCK_W))[None, :])
        g = (step * BLOCK_W * 8) // GROUP
        return words, tl.load(s_row + g), tl.load(z_row + g)

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

    def store_row(y_ptr, row, M, rn, n_ok, acc, stride_ym, ATOMIC: tl.constexpr):
        """Row `row` of y: its BLOCK_N outputs, each the sum of its row of acc (if row < M)."""
        y = tl.sum(acc, axis=1)
        ok = tl.where(row < M, n_ok, False)
        if ATOMIC:    # SPLIT_K > 1: programs that share rows add their partial sums
            tl.atomic_add(y_ptr + row * stride_ym + rn, y, mask=ok)
        else:
            tl.store(y_ptr + row * stride_ym + rn, y.to(y_ptr.dtype.element_ty), mask=ok)

    f16_halves, f16_pair, ptx_4x32, sixteenths, x_pairs, codes_f16x2, dot_f16x2, half2_load, row_dot, store_row = (
        triton.jit(f) for f in (f16_halves, f16_pair, ptx_4x32, sixteenths, x_pairs, codes_f16x2, dot_f16x2,
                                half2_load, row_dot, store_row))


@functools.cache
def _half2_kernel(jit: bool = True):
    """The kernel for fp16 x and 4-bit codes, two codes per instruction, for 1 to 8 rows of x
    (jit=False: the plain Python function). Same walk as `packed_gemv` (BLOCK_N rows, one group's
    words a step), different arithmetic: per pair of words, 2 shifts and 8 LOP3s build the codes
    as f16x2 and 8 sub/fma turn them into q − z (`codes_f16x2`); then, for each of the program's
    BLOCK_M rows of x, 8 fma multiply them by the inputs and add, and 4 instructions turn the two
    fp16 sums into float32 and add them, scaled, to the row's sum (`row_dot`). At one row of x,
    30 instructions for 16 codes, where `packed_gemv` needs 48; with 4 rows, the codes are made
    once for all 4. Rows past N (and rows of x past M) read the last one, and steps past the last
    read the last (none of it is stored), so that no load needs a mask."""
    _import()
    _half2_helpers()

    def packed_gemv_half2(x_ptr, qw_ptr, s_ptr, z_ptr, y_ptr, M, N, K, SPLIT_K,
                          stride_xm, stride_qw, stride_sn, stride_ym,
                          BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_W: tl.constexpr, ATOMIC: tl.constexpr, ASM: tl.constexpr,
                          PREFETCH: tl.constexpr):
        tl.static_assert(BITS == 4, "the half2 kernel reads 4-bit codes")
        pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)   # [BLOCK_N] output rows
        n_ok = rn < N
        n_steps = K // (8 * BLOCK_W)
        magic = tl.where(N > 0, _PAIR_MAGIC, 0)        # constants as registers (N >= 1), as in packed_gemv
        c16 = tl.where(N > 0, _PAIR_SIXTEENTH, 0)
        minus64 = tl.where(N > 0, _PAIR_MINUS_64, 0)
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
        cur = half2_load(rows, s_row, z_row, pid_k, n_steps, GROUP, BLOCK_W)
        for step in range(pid_k, n_steps, SPLIT_K):
            if PREFETCH:    # ask for the next step's codes before computing this one
                nxt = half2_load(rows, s_row, z_row, step + SPLIT_K, n_steps, GROUP, BLOCK_W)
            else:
                cur = half2_load(rows, s_row, z_row, step, n_steps, GROUP, BLOCK_W)
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
        store_row(y_ptr, m0, M, rn, n_ok, acc0, stride_ym, ATOMIC)
        if BLOCK_M > 1:
            store_row(y_ptr, m0 + 1, M, rn, n_ok, acc1, stride_ym, ATOMIC)
        if BLOCK_M > 2:
            store_row(y_ptr, m0 + 2, M, rn, n_ok, acc2, stride_ym, ATOMIC)
            store_row(y_ptr, m0 + 3, M, rn, n_ok, acc3, stride_ym, ATOMIC)

    return triton.jit(packed_gemv_half2) if jit else packed_gemv_half2


@functools.cache
def _finish_kernel(jit: bool = True):
    """Split-K's last step, jitted on first use: y = sums in y's dtype, and the sums zeroed for
    the next call (flat: both are contiguous [M, N])."""
    _import()

    def finish_split_k(sums_ptr, y_ptr, total, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = i < total
        tl.store(y_ptr + i, tl.load(sums_ptr + i, mask=ok).to(y_ptr.dtype.element_ty), mask=ok)
        tl.store(sums_ptr + i, tl.zeros([BLOCK], dtype=tl.float32), mask=ok)

    return triton.jit(finish_split_k) if jit else finish_split_k


SUMS_ROWS = 16   # split-K sums kept on the layer between calls, for up to this many rows of x


def _kept_sums(layer, m: int, n: int, device) -> torch.Tensor | None:
    """The float32 [m, n] zeros a split-K call adds its partial sums into, kept on the layer
    between calls (for m <= SUMS_ROWS): `_finish_kernel` stores y from them and zeroes them again,
    so a call launches no separate zeroing (and, without a bias, no separate cast): one launch
    fewer, ~1.4 µs on an H200, where a batch-1 call of an 8192² layer takes ~15-20 µs. Calls of
    one layer must then be ordered, as on one CUDA stream; a CUDA graph that replays a call keeps
    using these sums, so it must not outlive them (`.to()` and friends drop them). None: use
    fresh zeros (more rows, or a layer without a kernel cache)."""
    cache = getattr(layer, "_kernel_cache", None)
    if cache is None or m > SUMS_ROWS:
        return None
    key = ("triton split-K sums", str(device))
    sums = cache.get(key)
    if sums is None or sums.shape[1] != n:
        sums = cache[key] = torch.zeros(SUMS_ROWS, n, device=device, dtype=torch.float32)
    return sums[:m]


def unsupported(layer, x: torch.Tensor) -> str | None:
    """Why this backend cannot run `layer` on `x`, or None if it can."""
    if not installed():
        return "triton is not installed (pip install triton; it needs a CUDA GPU)"
    if x.device.type != "cuda" and not interpreting():
        return f"x is on {x.device}; triton needs a CUDA tensor (or TRITON_INTERPRET=1)"
    if layer.pack_bits not in PACK_BITS:
        return f"pack_bits={layer.pack_bits} is not one of {PACK_BITS}"
    if _step_bytes(layer.pack_bits, layer.group_size) < 16:
        return (f"group_size={layer.group_size} at {layer.pack_bits} bits is {layer.group_size * layer.pack_bits // 8} "
                "bytes; the kernel needs groups of a multiple of 16 bytes")
    return None


def _split(programs: int, k_steps: int, target: int) -> int:
    """Split the input dimension in two until there are `target` programs (at most 16 ways)."""
    split = 1
    while programs * split < target and split * 2 <= k_steps and split < 16:
        split *= 2
    return split


def _block_bytes(bits: int, group_size: int) -> int:
    """Bytes of a row per step of the tile kernel: at most 64, inside one group."""
    return min(_step_bytes(bits, group_size), 64)


def _block_words(bits: int, group_size: int) -> int:
    """int32 words of a row per step of the GEMV kernel: at most 16, inside one group."""
    return min(_step_bytes(bits, group_size) // 4, 16)


def _step_bytes(bits: int, group_size: int) -> int:
    """The largest power of two, at most 128, that divides a group's bytes."""
    b = 1
    while b < 128 and (group_size * bits // 8) % (2 * b) == 0:
        b *= 2
    return b


def _gemv(n: int, k: int, bits: int, group_size: int, block_n: int, warps: int, target: int,
          block_w: int | None = None) -> dict:
    """A GEMV configuration; block_w: int32 words of a row per step (default: one group's, at
    most 16). A step may span several groups (a scale per word then), if it divides k."""
    bw = block_w or _block_words(bits, group_size)
    k_steps = k // (32 // bits * bw)
    return {"KERNEL": "gemv", "BLOCK_N": block_n, "BLOCK_W": bw,
            "SPLIT_K": _split(-(-n // block_n), k_steps, target), "num_warps": warps}


def _half2(n: int, k: int, group_size: int, block_n: int, warps: int, target: int, prefetch: bool,
           block_m: int = 1) -> dict:
    """A configuration of the two-codes-per-instruction kernel (fp16 x, 4-bit codes): block_m
    (1, 2 or 4) rows of x share each program's codes."""
    return {**_gemv(n, k, 4, group_size, block_n, warps, target), "KERNEL": "half2", "BLOCK_M": block_m,
            "PREFETCH": prefetch}


def _tile(m: int, n: int, k: int, bits: int, group_size: int, block_m: int, block_n: int, target: int,
          use_dot: bool = False, asm: bool = False) -> dict:
    """A tile-kernel configuration; with tensor cores (use_dot), asm: 4-bit codes made 16-bit
    floats by inline PTX (`magic_codes`) rather than by what triton makes of the plain code."""
    bb = _block_bytes(bits, group_size)
    programs = -(-n // block_n) * -(-m // block_m)
    return {"KERNEL": "tile", "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_B": bb,
            "SPLIT_K": _split(programs, k * bits // 8 // bb, target), "USE_DOT": use_dot, "num_warps": 4,
            **({"ASM": asm} if use_dot else {})}


def _config(m: int, n: int, k: int, bits: int, group_size: int) -> dict:
    """The default configuration for x [m, k] and an [n, k] weight: the GEMV kernel for one row of
    x, small tiles for 2 or 3 rows, tensor-core tiles from 4 rows on."""
    if m == 1:  # one-warp programs of 32 rows, ~2048 of them: the fastest measured on an H200
        return _gemv(n, k, bits, group_size, 32, 1, 2048)
    if m >= 4:  # ~512 programs of 4 warps: 4 to each of an H100's 132 SMs, in one wave (128 programs
        # with split-K 1, the first version, left most SMs one program: 0.3x fp16 at 8192^2 on an H200).
        # Below 16 rows, the rows past m are empty: the FMA tiles cost more per weight from 4 rows
        # on (counted on sm_90: 0.30 warp instructions per weight at 4 rows, against 0.21) and
        # measured 0.6x fp16 at batch 4
        return _tile(m, n, k, bits, group_size, 16 if m <= 16 else 32, 64, 512, use_dot=True)
    return _tile(m, n, k, bits, group_size, 2 if m == 2 else 4, 32, 1024)  # [BLOCK_M, 32, BLOCK_B] sums in registers


def candidates(m: int, n: int, k: int, bits: int, group_size: int) -> list[dict]:
    """The configurations `tune` times for x [m, k] and an [n, k] weight, `_config`'s first.

    Up to 8 rows of x: the GEMV kernel (one row of x per program) with four row blocks or warp
    counts and three degrees of split-K, and with longer steps (spanning groups) on smaller row
    blocks; at 4 bits, the two-codes-per-instruction GEMV (fp16 x), with and without prefetching;
    and the tile kernel (all rows of x at once) with three row blocks and two degrees of
    split-K, and from 2 rows on also on tensor cores (16-row tiles). From 16 rows on: tensor-core
    tiles of three widths and three degrees of split-K. Tensor-core tiles of 4-bit codes come with
    and without the inline-PTX nibbles (`magic_codes`)."""
    found = [_config(m, n, k, bits, group_size)]
    asm_choices = (False, True) if bits == 4 else (False,)   # the PTX nibbles: 4-bit codes (not yet timed)

    def add(cfg):
        if cfg not in found:
            found.append(cfg)

    if m >= 16:
        for asm in asm_choices:
            for bn in (32, 64, 128):
                for target in (1, 512, 2048):
                    add(_tile(m, n, k, bits, group_size, found[0]["BLOCK_M"], bn, target, use_dot=True, asm=asm))
        return found
    if m <= 8:
        for block_n, warps in ((32, 1), (64, 1), (64, 2), (128, 4)):
            for target in (1, 512, 2048):
                add(_gemv(n, k, bits, group_size, block_n, warps, target))
        if bits == 4:  # two codes per instruction (fp16 x only; `_exact` makes them 'gemv' for others)
            for block_n, warps in ((32, 1), (64, 1), (64, 2), (128, 4)):
                for prefetch in (False, True):
                    add(_half2(n, k, group_size, block_n, warps, 2048, prefetch))
            for block_n, warps in ((32, 1), (64, 1)):
                add(_half2(n, k, group_size, block_n, warps, 512, False))
            add(_half2(n, k, group_size, 128, 2, 2048, False))  # 8 rows a thread, as (64, 1): 0.078 counted
            if m > 1:  # rows of x sharing each program's codes
                for block_n, warps in ((32, 1), (64, 2)):  # (64, 1) spills with 4 rows of x
                    add(_half2(n, k, group_size, block_n, warps, 2048, False, block_m=2 if m == 2 else 4))
        for block_w in (32, 64):  # steps of several groups: fewer, longer steps
            if k % (32 // bits * block_w) == 0 and block_w > _block_words(bits, group_size):
                for block_n in (16, 32, 64) if block_w == 32 else (16, 32):  # [64, 64] spills
                    for target in (1, 512, 2048):
                        add(_gemv(n, k, bits, group_size, block_n, 4, target, block_w))
    block_m = 1 if m == 1 else 2 if m == 2 else 4 if m <= 4 else 8
    for bn in ((16, 32, 64) if block_m <= 2 else (8, 16, 32)):
        for target in (1, 1024):
            add(_tile(m, n, k, bits, group_size, block_m, bn, target))
    if m > 1:  # tensor-core tiles of 16 rows, those past m empty: a weight's dequantization costs
        # the same for 2 rows of x as for 16, and from 4 rows on less than the FMA tile's, per weight
        for asm in asm_choices:
            for bn in (64, 128):
                add(_tile(m, n, k, bits, group_size, 16, bn, 512, use_dot=True, asm=asm))
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
    """y agrees with ref up to summation order and the rounding of y's dtype (a 16-bit store)."""
    rtol = max(2e-3, 2 * torch.finfo(y.dtype).eps)   # bf16: 1.6e-2, fp16 and fp32: 2e-3
    y, ref = y.float(), ref.float()
    return bool(torch.allclose(y, ref, rtol=rtol, atol=1e-3 * max(ref.abs().max().item(), 1e-6)))


def timed_configs(m: int, n: int, k: int, bits: int, group_size: int, dtype: torch.dtype) -> list[dict]:
    """The configurations `tune` times for x [m, k] of `dtype`: `candidates`, each made to suit the
    dtype (`_exact`), once each (for float32 or bf16 x the 'half2' ones become 'gemv' duplicates)."""
    found = []
    for cfg in candidates(m, n, k, bits, group_size):
        if _exact(cfg, dtype) not in found:
            found.append(_exact(cfg, dtype))
    return found


def tune(layer, x: torch.Tensor, timer=None) -> dict:
    """The fastest of `candidates` for this layer and x's batch size and dtype, timed once per
    (batch, shape, format) and remembered. timer(fn) -> seconds per call (default: `_gpu_timer`).

    A candidate that fails to run (e.g. a tile too large for this GPU's registers or shared
    memory) or whose output differs from the reference kernel's (dequantize, then matmul) is left
    out, and its record says why. The default configuration is checked too: a wrong kernel is
    never chosen, whichever configuration it is."""
    m, k = x.shape
    n = layer.out_features
    key = (min(m, 64), n, k, layer.pack_bits, layer.group_size, x.dtype)
    if key not in _tuned:
        timer = timer or _gpu_timer
        found = timed_configs(m, n, k, layer.pack_bits, layer.group_size, x.dtype)
        # x is in the codes' stored column order already: dequantize without undoing `perm`
        w = dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=layer.pack_bits,
                              group_size=layer.group_size)     # [out, in]
        expected, results = x.float() @ w.T, []
        del w
        for cfg in found:
            try:
                if not _agrees(_launch(layer, x, cfg), expected):
                    raise ValueError("its output differs from the reference kernel's")
                results.append({"config": cfg, "us": timer(lambda c=cfg: _launch(layer, x, c)) * 1e6})
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


def _launch(layer, x: torch.Tensor, cfg: dict, out: torch.Tensor | None = None) -> torch.Tensor:
    """One kernel call with configuration `cfg` on a prepared x [M, in] (permuted, contiguous).
    Returns y [M, out]: in x's dtype unless a float32 bias is still to be added, or, with split-K
    over more than SUMS_ROWS rows, float32. out: a y to add into (split-K: float32) or to write
    (no split-K) instead, returned as it is; for timing the kernel alone (triton_graphs.py)."""
    m, k = x.shape
    n = layer.out_features
    qweight, scales, zeros = (t.contiguous() for t in (layer.qweight, layer.scales, layer.zeros))
    interp = interpreting()   # no PTX there, and bf16 needs float32 dot operands (DOT_FP32)
    y_dtype = torch.float32 if layer.bias is not None else x.dtype   # each output stored once
    sums = _kept_sums(layer, m, n, x.device) if out is None and cfg["SPLIT_K"] > 1 else None
    if out is not None:
        y = out
    elif sums is not None:   # partial sums added into the kept zeros; y stored from them after
        y, result = sums, torch.empty(m, n, device=x.device, dtype=y_dtype)
    elif cfg["SPLIT_K"] > 1:  # partial sums are added into y: float32 zeros
        y = torch.zeros(m, n, device=x.device, dtype=torch.float32)
    else:
        y = torch.empty(m, n, device=x.device, dtype=y_dtype)
    common = dict(BITS=layer.pack_bits, GROUP=layer.group_size, BLOCK_N=cfg["BLOCK_N"], ATOMIC=cfg["SPLIT_K"] > 1,
                  num_warps=cfg["num_warps"], enable_fp_fusion=True)  # FFMA: a·b + c rounded once
    if cfg["KERNEL"] in ("gemv", "half2"):
        if k % (32 // layer.pack_bits * cfg["BLOCK_W"]):
            raise ValueError(f"config BLOCK_W={cfg['BLOCK_W']} covers {32 // layer.pack_bits * cfg['BLOCK_W']} inputs "
                             f"per step, which must divide in_features={k}; pick one of `candidates`")
        words = qweight.view(torch.int32)  # [out, in / PER]: 4 bytes, little-endian, as the cpu kernel reads them
        grid = launch_grid(cfg, m, n)
        if cfg["KERNEL"] == "gemv":
            _gemv_kernel()[grid](x, words, scales, zeros, y, n, k, cfg["SPLIT_K"],
                                 x.stride(0), words.stride(0), scales.stride(0), y.stride(0),
                                 BLOCK_W=cfg["BLOCK_W"], **common)
        else:
            if x.dtype != torch.float16 or layer.pack_bits != 4 or cfg["BLOCK_W"] % 2:
                raise ValueError(f"config KERNEL='half2' needs float16 x, 4-bit codes and an even BLOCK_W, not "
                                 f"{x.dtype}, {layer.pack_bits}-bit codes and BLOCK_W={cfg['BLOCK_W']}; "
                                 "`linear` turns it into the 'gemv' kernel for other inputs (`_exact`)")
            if cfg["BLOCK_M"] not in (1, 2, 4):
                raise ValueError(f"config BLOCK_M={cfg['BLOCK_M']}: the 'half2' kernel takes 1, 2 or 4 rows of x "
                                 "to a program; pick one of `candidates`")
            if x.storage_offset() % 2:     # x starts mid-way through an int32: copy it to read it in pairs
                x = x.clone()
            pairs = x.view(torch.int32)    # [M, in / 2]: element j holds inputs 2j and 2j + 1
            _half2_kernel()[grid](pairs, words, scales, zeros, y, m, n, k, cfg["SPLIT_K"],
                                  pairs.stride(0), words.stride(0), scales.stride(0), y.stride(0),
                                  BLOCK_M=cfg["BLOCK_M"], BLOCK_W=cfg["BLOCK_W"], ASM=not interp,
                                  PREFETCH=cfg["PREFETCH"], **common)
    else:
        bb = cfg["BLOCK_B"]
        _kernel()[launch_grid(cfg, m, n)](x, qweight, scales, zeros, y, m, n, k, cfg["SPLIT_K"],
                                          x.stride(0), qweight.stride(0), scales.stride(0), y.stride(0),
                                          BLOCK_M=cfg["BLOCK_M"], BLOCK_B=bb, ACC_B=1 if cfg["USE_DOT"] else bb,
                                          USE_DOT=cfg["USE_DOT"], DOT_FP32=interp and x.dtype == torch.bfloat16,
                                          ASM=cfg.get("ASM", False) and not interp, **common)
    if sums is None:
        return y
    try:
        _finish_kernel()[(triton.cdiv(m * n, 1024),)](sums, result, m * n, BLOCK=1024)
    except BaseException:
        sums.zero_()   # never leave partial sums behind for the next call
        raise
    return result


def launch_grid(cfg: dict, m: int, n: int) -> tuple[int, int, int]:
    """The programs configuration `cfg` launches for x [m, in] and an [n, in] weight: GEMV kernels
    (rows of x, row blocks, split-K); the tile kernel (row blocks, blocks of x's rows, split-K)."""
    if cfg["KERNEL"] in ("gemv", "half2"):
        return -(-m // cfg.get("BLOCK_M", 1)), -(-n // cfg["BLOCK_N"]), cfg["SPLIT_K"]
    return -(-n // cfg["BLOCK_N"]), -(-m // cfg["BLOCK_M"]), cfg["SPLIT_K"]


def linear(layer, x: torch.Tensor, config: dict | None = None) -> torch.Tensor:
    """y = x Wᵀ for a `PackedLinear` `layer`, x [M, in] -> y [M, out], W never built.

    y is x's dtype when there is no bias, else float32 (the bias is added in float32), and float32
    too with split-K over more than SUMS_ROWS rows of x (the partial sums are added in float32 in
    y itself); PackedLinear casts it to x's dtype.

    config: which kernel and block sizes (one of `candidates`); by default `tune` picks them on a
    GPU (when `TUNE`) and `_config` does under the interpreter."""
    _import()
    if layer.perm is not None:
        x = x[:, layer.perm.to(x.device)]           # codes are stored in permuted column order
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        x = x.to(torch.float32)
    x = x.contiguous()
    m, k = x.shape
    if config is None:
        if TUNE and not interpreting():
            config = tune(layer, x)
        else:
            config = _config(m, layer.out_features, k, layer.pack_bits, layer.group_size)
    return _launch(layer, x, _exact(config, x.dtype))


def _exact(cfg: dict, dtype: torch.dtype) -> dict:
    """cfg, made to suit x's dtype: without tensor cores for float32 x (they would round it to
    tf32), and the fp16-only 'half2' kernel as the 'gemv' kernel for other dtypes."""
    if cfg["KERNEL"] == "half2" and dtype != torch.float16:
        return {"KERNEL": "gemv", **{key: cfg[key] for key in ("BLOCK_N", "BLOCK_W", "SPLIT_K", "num_warps")}}
    if cfg.get("USE_DOT") and dtype == torch.float32:
        plain = {key: value for key, value in cfg.items() if key != "ASM"}
        return {**plain, "USE_DOT": False, "BLOCK_M": 4, "BLOCK_N": min(cfg["BLOCK_N"], 32)}
    return cfg


def compile_ahead(cfg: dict, bits: int, group_size: int, x_dtype: torch.dtype = torch.float16,
                  arch: int = 90, bias: bool = False):
    """Compile configuration `cfg` (one of `candidates`) for an NVIDIA GPU of compute capability
    `arch` (80: A100, 90: H100/H200) without one: triton's compiler and the ptxas it ships are
    enough. The arguments are specialized as a real call with aligned tensors would be. Returns
    triton's compiled kernel; its `.asm` holds "ttgir", "ptx" and "cubin" (the machine code, which
    `cuobjdump -sass` prints). `benchmarks/triton_static.py` uses it to count each candidate's
    instructions per weight; a test compiles every candidate, since the interpreter accepts code
    the GPU compiler would reject. It needs a process where TRITON_INTERPRET is not set (triton
    then patches its language objects for the interpreter); `profile_ahead` starts one."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    _import()
    t = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[x_dtype]
    cfg = _exact(cfg, x_dtype)
    y = "fp32" if cfg["SPLIT_K"] > 1 or bias or t == "fp32" else t
    common = {"BITS": bits, "GROUP": group_size, "BLOCK_N": cfg["BLOCK_N"], "ATOMIC": cfg["SPLIT_K"] > 1}
    if cfg["KERNEL"] in ("gemv", "half2"):
        half2 = cfg["KERNEL"] == "half2"
        fn = JITFunction(_half2_kernel(jit=False) if half2 else _gemv_kernel(jit=False))
        args = {"x_ptr": "*i32" if half2 else f"*{t}", "qw_ptr": "*i32", "s_ptr": "*fp16", "z_ptr": "*u8",
                "y_ptr": f"*{y}", **({"M": "i32"} if half2 else {}), "N": "i32", "K": "i32", "SPLIT_K": "i32",
                "stride_xm": "i32", "stride_qw": "i32", "stride_sn": "i32", "stride_ym": "i32"}
        consts = {**common, "BLOCK_W": cfg["BLOCK_W"]}
        if half2:
            consts |= {"BLOCK_M": cfg["BLOCK_M"], "ASM": True, "PREFETCH": cfg["PREFETCH"]}
    else:
        fn = JITFunction(_kernel(jit=False))
        args = {"x_ptr": f"*{t}", "qw_ptr": "*u8", "s_ptr": "*fp16", "z_ptr": "*u8", "y_ptr": f"*{y}",
                "M": "i32", "N": "i32", "K": "i32", "SPLIT_K": "i32", "stride_xm": "i32", "stride_qn": "i32",
                "stride_sn": "i32", "stride_ym": "i32"}
        bb = cfg["BLOCK_B"]
        consts = {**common, "BLOCK_M": cfg["BLOCK_M"], "BLOCK_B": bb, "ACC_B": 1 if cfg["USE_DOT"] else bb,
                  "USE_DOT": cfg["USE_DOT"], "DOT_FP32": False, "ASM": cfg.get("ASM", False)}
    names = fn.arg_names
    # what a call specializes on: pointers and sizes divisible by 16 (the scales' row stride, the
    # number of groups, need not be)
    aligned = [a for a in args if a.endswith("_ptr") or a in ("N", "K", "stride_xm", "stride_qw", "stride_qn",
                                                            "stride_ym")]
    src = ASTSource(fn=fn, signature={**args, **{c: "constexpr" for c in consts}},
                    constexprs={(names.index(c),): v for c, v in consts.items()},
                    attrs={(names.index(a),): [["tt.divisibility", 16]] for a in aligned})
    return triton.compile(src, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": cfg["num_warps"], "enable_fp_fusion": True})


def profile_ahead(configs: list[dict], bits: int, group_size: int, x_dtype: torch.dtype = torch.float16,
                  arch: int = 90, m: int = 1) -> list[dict]:
    """`loop_profile(compile_ahead(cfg, ...))` for each of `configs`, plus "per_weight"
    (`instructions_per_weight` for x [m, in]), compiled in a fresh Python process without
    TRITON_INTERPRET: where the interpreter is on (the test suite turns it on), triton's language
    objects are patched for it and the GPU compiler cannot run. A few seconds."""
    import json
    import subprocess
    import sys

    code = ("import json, sys, torch\n"
            "from minicomp.kernels import triton as tk\n"
            "a = json.loads(sys.stdin.read())\n"
            "print(json.dumps([tk.loop_profile(tk.compile_ahead(c, a['bits'], a['group_size'], "
            "getattr(torch, a['dtype']), arch=a['arch'])) for c in a['configs']]))\n")
    job = {"configs": configs, "bits": bits, "group_size": group_size, "arch": arch,
           "dtype": str(x_dtype).replace("torch.", "")}
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(job), capture_output=True, text=True,
                          env=env, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"compiling for sm_{arch} failed:\n{done.stderr[-3000:]}")
    loops = json.loads(done.stdout.strip().splitlines()[-1])
    return [{**loop, "per_weight": instructions_per_weight(loop, cfg, bits, m)}
            for loop, cfg in zip(loops, configs, strict=True)]


def loop_profile(compiled) -> dict:
    """The main loop of a `compile_ahead` kernel, read from its machine code (SASS, through the
    `cuobjdump` that triton ships): {"instructions": per warp per iteration, "ops": {opcode: count},
    "registers": per thread, "spilled": bytes of stack, "shared": bytes of shared memory a program
    uses, "warps": per program}. The loop is the longest backward branch."""
    import re
    import subprocess
    import tempfile
    from collections import Counter
    from pathlib import Path

    tool = Path(_nvidia_bin()) / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        sass = subprocess.run([str(tool), "-sass", str(cubin)], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([str(tool), "--dump-resource-usage", str(cubin)], capture_output=True, text=True,
                               check=True).stdout
    code = [(int(a, 16), op.strip()) for a, op in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    loops = [(int(m.group(1), 16), at) for at, op in code
             if (m := re.search(r"BRA (0x[0-9a-f]+)", op)) and int(m.group(1), 16) < at]
    if not loops:
        raise ValueError("no loop found in the kernel's machine code")
    start, end = max(loops, key=lambda span: span[1] - span[0])
    body = [op for at, op in code if start <= at <= end]
    ops = Counter((op.split()[1] if op.startswith("@") else op.split()[0]) for op in body)
    regs, stack = (int(v) for v in re.search(r"REG:(\d+).*?STACK:(\d+)", usage, re.S).groups())
    return {"instructions": len(body), "ops": dict(ops), "registers": regs, "spilled": stack,
            "shared": compiled.metadata.shared, "warps": compiled.metadata.num_warps}


SM_LIMITS = {80: {"registers": 65536, "warps": 64, "programs": 32, "shared": 164 * 1024},   # A100
             90: {"registers": 65536, "warps": 64, "programs": 32, "shared": 228 * 1024}}   # H100, H200


def programs_per_sm(loop: dict, arch: int = 90) -> int:
    """How many programs of a `loop_profile` kernel fit on one SM at once, by its registers
    (allocated 256 to a warp at a time), warps and shared memory: the GPU's occupancy limits."""
    lim = SM_LIMITS[arch]
    per_warp = -(-loop["registers"] * 32 // 256) * 256
    return min(lim["registers"] // (per_warp * loop["warps"]), lim["warps"] // loop["warps"], lim["programs"],
               lim["shared"] // loop["shared"] if loop["shared"] else lim["programs"])


def instructions_per_weight(loop: dict, cfg: dict, bits: int, m: int = 1) -> float:
    """Warp instructions the loop of `loop_profile` issues per (weight, row of x) for x [m, in]:
    its instructions times its warps, over the products one program computes per iteration."""
    if cfg["KERNEL"] in ("gemv", "half2"):
        products = cfg["BLOCK_N"] * cfg["BLOCK_W"] * (32 // bits) * min(cfg.get("BLOCK_M", 1), m)
    else:
        products = cfg["BLOCK_N"] * cfg["BLOCK_B"] * (8 // bits) * min(cfg["BLOCK_M"], m)
    return loop["instructions"] * cfg["num_warps"] / products
