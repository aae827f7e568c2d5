"""The cpu backend: a fused dequantize-and-multiply kernel, compiled with numba.

Why numba: the inner loop must run at machine speed, and numba compiles plain Python loops to
LLVM with SIMD vectorization, so the kernel stays readable Python with no C toolchain at install
time. (torch's own `_weight_int4pack_mm_for_cpu` exists, but on a small AVX2 machine it measured
several times *slower* than dense float32; a C++ extension would need a compiler on every
learner's laptop.) `cache=True` stores the compiled code next to this file, so the compile (a
few seconds per bit width) happens once per machine, not once per session.

What makes it fast (4096 × 4096, batch 1: 8 MB of codes instead of 64 MB of float32):

1. **Never build the float weight.** Each 32-bit word of packed codes is loaded once, its codes
   are cut out with a shift and a mask, converted to float and multiplied into the sum at once.
2. **The zero point leaves the inner loop.** For one group of one output row,

       Σ_j (q_j − z)·s·x_j  =  s · ( Σ_j q_j·x_j  −  z · Σ_j x_j )

   Σ_j x_j depends only on x, so it is computed once per call (`xsum`), and the inner loop is a
   plain dot product of codes with x.
3. **Vectorize over output rows.** The kernel's layout (below) puts the same word of
   `BLOCK_ROWS` consecutive output rows side by side in memory. The innermost loop runs over
   those rows with unit stride and x's values are constants inside it, so LLVM turns it into AVX2
   instructions that each decode and multiply eight rows at once, with no horizontal sums.
4. **Integer ops stay 32-bit.** numba widens integers to 64 bits, and a 64-bit int to float
   conversion has no AVX2 instruction; `np.int32(...)` before `np.float32(...)` keeps the loop
   vectorized (4× faster here).
5. **A code becomes a float without a conversion instruction** (GEMV). Shift the code q into
   the top mantissa bits of the float 1.0 (bit pattern 0x3F800000) and the 32 bits *are* the
   float 1 + q/2^bits, exactly. So Σ_j q_j·x_j = 2^bits · (Σ_j (1 + q_j/2^bits)·x_j − Σ_j x_j),
   and Σ_j x_j is `xsum` again. Per code that is a shift, an and/or (one AVX-512 `vpternlogd`)
   and a multiply-add, instead of shift, and, convert, multiply-add: the convert and the
   multiply-add compete for the same two execution ports, so this alone made the GEMV 1.7×
   faster on a Xeon (AVX-512). `as_float` (below) is the LLVM bitcast that does it.
6. **Ask for the codes before they are needed** (GEMV and GEMM). The loop over one word of 128 rows is
   short, so the CPU's own prefetcher falls behind when the codes come from memory rather than
   the cache: a software prefetch of the words `PREFETCH_WORDS` steps ahead made the GEMV on
   weights out of the cache 2.5× faster on the Xeon (2.4 ms to 0.93 ms on one thread).
7. **Threads over blocks of rows, and PyTorch's threads at that.** Each thread claims the next
   block with an atomic add on a shared counter and marks it done with an atomic store, all in
   compiled code (`run_blocks`): no Python and no GIL between blocks, and a thread that starts
   late simply does fewer. The threads are PyTorch's own OpenMP team (`_torch_openmp`): after any
   PyTorch op they spin for a few milliseconds waiting for more work, so they start on our blocks
   at once, where threads of our own would first have to be woken (~60 µs on a small VM) and
   would then share the cores with PyTorch's spinning ones (each block 1.5× slower). On
   PyTorch's threads the GEMV at 4096 × 4096 went from 0.85 ms to 0.64 ms in `minicomp bench`,
   and 1024 × 1024 became worth splitting. Where PyTorch is not on an OpenMP runtime that can be
   found, a `ThreadPoolExecutor` runs the same `run_blocks`, and the calling thread computes any
   block a paused helper has not finished rather than wait for it (`_run_shared`); `THREADING`
   chooses between the two. (numba's own `prange` brings a second OpenMP runtime, whose threads
   fought PyTorch's for the cores.)
8. **Few torch calls per call.** Right after a kernel has streamed megabytes through the CPU's
   caches, each torch call in `linear` costs ~10 µs instead of ~1 µs (Python's own data must come
   back from memory), so the path around the kernel stays in numpy: ~0.1 ms less a call.
9. **Many rows of x: stop fusing.** The fused kernel does every multiply-add itself, and from a
   few dozen rows of x on the work is arithmetic, not memory, where a BLAS matmul (blocked for
   the caches, tuned for years) is several times faster per multiply-add. So from `GEMM_ROWS`
   rows on, `linear` dequantizes one slab of `BLOCK_ROWS` output rows at a time into a small
   buffer (`dequantize_blocks`; at most `SLAB_BYTES`, in the caches) and multiplies x by it with
   torch (llama.cpp's BLAS backend makes the same switch, from 32 rows). The whole float weight
   is still never built, and the time becomes float32's matmul plus one pass of decoding, which
   the batch amortizes: on the 2-core Xeon at 4096 × 4096 and 256 rows, 0.90× float32's speed
   against the fused kernel's 0.51× (lesson 09); 2–3× the fused kernel's speed at 512 rows, from
   384 × 384 to 4096 × 4096. `slab_linear` and `fused_linear` run either path by name.

The kernel layout, made once from the interchange layout of `minicomp.pack` and cached on the
layer (it is a reshuffle of the same bytes, so the codes are stored twice while it is cached):

    words   [n_blocks, in / PER, BLOCK_ROWS] int32   PER = 32 / bits codes per word
            words[b, j, r] = bytes 4j .. 4j+3 of packed row b·BLOCK_ROWS + r, read little-endian,
            so code k of the word (bits k·bits ... k·bits + bits − 1) is input column PER·j + k
    scales  [n_blocks, n_groups, BLOCK_ROWS] float32
    zeros   [n_blocks, n_groups, BLOCK_ROWS] float32
    Rows past out_features are padding (codes 0, scale 0) and are cut off the result.
"""

from __future__ import annotations

import ctypes
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

try:
    import numba
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # the backend reports itself unavailable; `reference` still works
    numba = None

NAME = "cpu"
BLOCK_ROWS = 128   # output rows per block: 128 measured best for 4096 × 4096 GEMV on AVX2
M_TILE = 16        # batch rows per pass over a block in the GEMM kernel (keeps partial sums in L1)
GEMM_ROWS = 64     # from this many rows of x on, `linear` multiplies dequantized slabs with BLAS
                   # (4- and 8-bit codes: the two cross at 24 to 80 rows, 384² to 4096²; 2 bits: below 32)
SLAB_BYTES = 1 << 20  # the most float32 bytes of dequantized weight held at once (measured best: 0.5-2 MB)
PACK_BITS = (2, 4, 8)
WAIT_SPINS = 2000  # checks per `wait_done` call (a few µs) between looks at the clock


def available() -> bool:
    return numba is not None


# ── the kernels ──────────────────────────────────────────────────────────────────────────────
ONE = 0x3F800000    # the bits of the float32 1.0: sign 0, exponent 127, mantissa 0
PREFETCH_WORDS = 4  # the kernels ask for the words this many steps ahead (4 × 512 bytes)
LOCALITY = 3        # prefetch into every cache level (0, "used once", measured 1.6× slower)


# LLVM one-liners numba does not offer, defined at module level so that kernels using them can
# be cached on disk (plus `prefetch_words`, a loop of `prefetch`):
#   as_float(v)               the int32 v's 32 bits read as a float32 (C's memcpy, numpy's .view)
#   prefetch(flat, i)         ask the CPU to start loading flat[i] (1-D array) into its caches now
#   atomic_add(flat, i, v)    flat[i] += v as one indivisible step, returning the old flat[i]
#   atomic_load(flat, i)      flat[i], as stored by another thread, never a stale copy in a register
#   atomic_store(flat, i, v)  flat[i] = v, seen by other threads only after every earlier write
#   address(ary)              where ary's data starts in memory, as an int64
#   as_pointer(addr)          that int64 as a raw pointer, for numba.carray
if numba is not None:
    def _item_pointer(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        return cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)

    def _int64_array(flat):
        return isinstance(flat, numba.types.Array) and flat.ndim == 1 and flat.dtype == numba.types.int64

    @intrinsic
    def as_float(typingctx, v):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())
        return numba.types.float32(numba.types.int32), codegen

    @intrinsic
    def prefetch(typingctx, flat, i):
        def codegen(context, builder, signature, args):
            ptr = _item_pointer(context, builder, signature, args)
            i8p, i32t = ir.IntType(8).as_pointer(), ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32t, i32t, i32t]), "llvm.prefetch.p0i8")
            # read (0), cache levels to keep it in (LOCALITY), data cache (1)
            builder.call(fn, [builder.bitcast(ptr, i8p), i32t(0), i32t(LOCALITY), i32t(1)])
            return context.get_dummy_value()
        return numba.types.void(flat, i), codegen

    @intrinsic
    def atomic_add(typingctx, flat, i, v):
        if not _int64_array(flat):
            return None
        def codegen(context, builder, signature, args):
            ptr = _item_pointer(context, builder, signature, args)
            value = context.cast(builder, args[2], signature.args[2], numba.types.int64)
            return builder.atomic_rmw("add", ptr, value, "seq_cst")
        return numba.types.int64(flat, i, v), codegen

    @intrinsic
    def atomic_load(typingctx, flat, i):
        if not _int64_array(flat):
            return None
        def codegen(context, builder, signature, args):
            return builder.load_atomic(_item_pointer(context, builder, signature, args), "acquire", 8)
        return numba.types.int64(flat, i), codegen

    @intrinsic
    def atomic_store(typingctx, flat, i, v):
        if not _int64_array(flat):
            return None
        def codegen(context, builder, signature, args):
            value = context.cast(builder, args[2], signature.args[2], numba.types.int64)
            builder.store_atomic(value, _item_pointer(context, builder, signature, args), "release", 8)
            return context.get_dummy_value()
        return numba.types.void(flat, i, v), codegen

    @intrinsic
    def address(typingctx, ary):
        if not isinstance(ary, numba.types.Array):
            return None
        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            return builder.ptrtoint(data, ir.IntType(64))
        return numba.types.int64(ary), codegen

    @intrinsic
    def as_pointer(typingctx, addr):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], ir.IntType(8).as_pointer())
        return numba.types.voidptr(numba.types.int64), codegen

    @numba.njit(inline="always", cache=True)
    def prefetch_words(flat, start, n):
        """Ask for flat[start : start + n] (int32 words), one request per 64-byte cache line."""
        for c in range(0, n, 16):
            if start + c < flat.shape[0]:
                prefetch(flat, start + c)

    @numba.njit(nogil=True, cache=True)
    def wait_done(state, spins):
        """Spin until every block is marked done in `state` (see `run_blocks`), at most `spins`
        checks. Returns the first block not done, or the number of blocks if all are."""
        n = state.shape[0] - 1
        b = 0
        for _ in range(spins):
            while b < n and atomic_load(state, 1 + b) != 0:
                b += 1
            if b == n:
                break
        return b

    @numba.njit(cache=True)
    def pack_call(words, scales, zeros, x, y, todo, state):
        """The arguments of one `run` call as int64s (addresses and sizes) for `openmp_run`,
        which cannot take arrays: a C function called by the OpenMP runtime gets one pointer."""
        if not (words.flags.c_contiguous and scales.flags.c_contiguous and zeros.flags.c_contiguous
                and x.flags.c_contiguous and y.flags.c_contiguous):  # `openmp_run` assumes C layout
            raise ValueError("pack_call: every array must be C-contiguous")
        return np.array([address(words), address(scales), address(zeros), address(x), address(y),
                         address(todo), address(state), words.shape[0], words.shape[1],
                         words.shape[2], scales.shape[1], x.shape[0], todo.shape[0]], np.int64)


def _inline(fn):
    """Compiled into each caller (numba IR inlining), where `bits` is a constant: so PER and MASK
    are constants too, the loop over the codes of a word is unrolled and shifts are immediates."""
    return numba.njit(inline="always", fastmath=True)(fn) if numba is not None else fn


@_inline
def gemv_block(words, scales, zeros, x, xsum, y, b, acc, part, bits):
    """y[rows of block b] for one input x [in / PER, PER] (xsum [n_groups]); acc and part are
    [BLOCK_ROWS] float32 scratch."""
    PER = 32 // bits         # codes per int32 word
    MASK = (1 << bits) - 1
    TOP = 23 - bits          # where a code sits as the top mantissa bits of a float32
    FMASK = MASK << TOP
    i32, f32 = np.int32, np.float32
    n_words, nb = words.shape[1], words.shape[2]
    n_groups = scales.shape[1]
    words_per_group = n_words // n_groups
    flat = words.reshape(-1)   # the same memory, for prefetch
    acc[:] = 0                 # [BLOCK_ROWS] the block's outputs
    for g in range(n_groups):
        part[:] = 0            # [BLOCK_ROWS] Σ_j (1 + q_j / 2^bits)·x_j over the current group
        for jj in range(words_per_group):
            j = g * words_per_group + jj
            prefetch_words(flat, (b * n_words + j + PREFETCH_WORDS) * nb, nb)
            wrow = words[b, j]            # [BLOCK_ROWS] word j of each row in the block
            xj = x[j]                     # [PER] the inputs that word multiplies
            for r in range(nb):           # vectorized: 8 rows per AVX2 instruction
                w = wrow[r]
                t = f32(0)
                for k in range(PER):      # unrolled: PER is a constant, so is the shift
                    shift = TOP - bits * k  # code k's bits -> the top of the mantissa
                    v = (w << shift) if shift >= 0 else (w >> -shift)
                    t += as_float(i32((v & FMASK) | ONE)) * xj[k]   # (1 + q/2^bits)·x
                part[r] += t
        s, z, xs = scales[b, g], zeros[b, g], xsum[g]
        for r in range(nb):               # s·(Σ q·x − z·Σ x), Σ q·x = 2^bits·(part − Σ x)
            acc[r] += s[r] * (f32(MASK + 1) * (part[r] - xs) - z[r] * xs)
    y[b * nb:(b + 1) * nb] = acc


@_inline
def gemm_block(words, scales, zeros, x, xsum, y, b, codes, acc, part, bits):
    """y [M, rows of block b] for inputs x [M, in / PER, PER] (xsum [M, n_groups]): each word
    is decoded once into `codes` [PER, BLOCK_ROWS] and used for up to M_TILE inputs; acc and
    part are [M_TILE, BLOCK_ROWS] float32 scratch."""
    PER = 32 // bits
    MASK = (1 << bits) - 1
    i32, f32 = np.int32, np.float32
    n_words, nb = words.shape[1], words.shape[2]
    n_groups = scales.shape[1]
    words_per_group = n_words // n_groups
    m_total = x.shape[0]
    flat = words.reshape(-1)
    for m0 in range(0, m_total, M_TILE):
        mt = min(M_TILE, m_total - m0)
        acc[:] = 0
        for g in range(n_groups):
            part[:] = 0
            for jj in range(words_per_group):
                j = g * words_per_group + jj
                prefetch_words(flat, (b * n_words + j + PREFETCH_WORDS) * nb, nb)
                wrow = words[b, j]
                for r in range(nb):
                    w = wrow[r]
                    for k in range(PER):
                        codes[k, r] = f32(i32((w >> (bits * k)) & MASK))
                for m in range(mt):
                    xj = x[m0 + m, j]
                    p = part[m]
                    for r in range(nb):
                        t = f32(0)
                        for k in range(PER):
                            t += codes[k, r] * xj[k]
                        p[r] += t
            s, z = scales[b, g], zeros[b, g]
            for m in range(mt):
                xs = xsum[m0 + m, g]
                for r in range(nb):
                    acc[m, r] += s[r] * (part[m, r] - z[r] * xs)
        for m in range(mt):
            y[m0 + m, b * nb:(b + 1) * nb] = acc[m]


@_inline
def run_blocks(words, scales, zeros, x, y, todo, state, bits):
    """y = x Wᵀ over the blocks listed in `todo`, shared by every thread that calls this with
    the same `todo` and `state` [1 + len(todo)] int64: state[0] counts the blocks claimed,
    state[1 + c] is set to 1 once block todo[c] is written. x [M, in / PER, PER] float32,
    y [M, n_blocks · BLOCK_ROWS] float32. Returns how many blocks this thread computed."""
    m, n_groups, nb = x.shape[0], scales.shape[1], words.shape[2]
    xsum = x.reshape(m, n_groups, -1).sum(axis=2)   # [M, n_groups]  Σ_j x_j of each group
    acc = np.empty((min(m, M_TILE), nb), np.float32)
    part = np.empty((min(m, M_TILE), nb), np.float32)
    codes = np.empty((32 // bits, nb), np.float32)
    mine = 0
    while True:
        c = atomic_add(state, 0, 1)
        if c >= todo.shape[0]:
            return mine
        if m == 1:
            gemv_block(words, scales, zeros, x[0], xsum[0], y[0], todo[c], acc[0], part[0], bits)
        else:
            gemm_block(words, scales, zeros, x, xsum, y, todo[c], codes, acc, part, bits)
        atomic_store(state, 1 + c, 1)
        mine += 1


@functools.cache
def kernels(bits: int):
    """(run, openmp_run): `run_blocks` compiled for codes of `bits` bits, as a function to call
    from Python and as a C function for OpenMP. Each is a closure over `bits` alone, a number, so
    that numba can cache it on disk (a closure over another compiled function cannot be)."""
    if numba is None:
        raise RuntimeError("the cpu backend needs numba: pip install numba")

    @numba.njit(fastmath=True, nogil=True, cache=True)
    def run(words, scales, zeros, x, y, todo, state):
        return run_blocks(words, scales, zeros, x, y, todo, state, bits)

    @numba.cfunc(numba.types.void(numba.types.voidptr), fastmath=True, cache=True)
    def openmp_run(call):
        """`run` as a C function for `GOMP_parallel`: every thread of the team calls it with
        `call`, the int64s from `pack_call`, and each claims blocks until none are left."""
        a = numba.carray(call, 13, np.int64)
        n_blocks, n_words, nb, n_groups, m, n_todo = a[7], a[8], a[9], a[10], a[11], a[12]
        run_blocks(numba.carray(as_pointer(a[0]), (n_blocks, n_words, nb), np.int32),
                   numba.carray(as_pointer(a[1]), (n_blocks, n_groups, nb), np.float32),
                   numba.carray(as_pointer(a[2]), (n_blocks, n_groups, nb), np.float32),
                   numba.carray(as_pointer(a[3]), (m, n_words, 32 // bits), np.float32),
                   numba.carray(as_pointer(a[4]), (m, n_blocks * nb), np.float32),
                   numba.carray(as_pointer(a[5]), (n_todo,), np.int64),
                   numba.carray(as_pointer(a[6]), (n_todo + 1,), np.int64), bits)

    return run, openmp_run


@_inline
def dequantize_block(words, scales, zeros, b, out, col, bits):
    """out[:, col : col + BLOCK_ROWS] = the rows of block b of W, transposed: (q − z)·s, float32.
    out [in, ...] float32; the loop over rows is unit-stride in `words` and `out` alike."""
    PER = 32 // bits
    MASK = (1 << bits) - 1
    i32, f32 = np.int32, np.float32
    n_words, nb = words.shape[1], words.shape[2]
    words_per_group = n_words // scales.shape[1]
    for j in range(n_words):
        wrow = words[b, j]                                   # [BLOCK_ROWS] word j of each row
        s, z = scales[b, j // words_per_group], zeros[b, j // words_per_group]
        for k in range(PER):                                 # unrolled: code k of the word
            o = out[PER * j + k, col:col + nb]               # input column PER·j + k
            for r in range(nb):                              # vectorized over the rows
                o[r] = (f32(i32((wrow[r] >> (bits * k)) & MASK)) - z[r]) * s[r]


@functools.cache
def dequantizer(bits: int):
    """`dequantize_blocks(words, scales, zeros, first, n, out)` compiled for codes of `bits`
    bits: the first n · BLOCK_ROWS columns of out [in, ≥ n · BLOCK_ROWS] float32 (C order) become
    blocks first .. first + n − 1 of W, transposed, so that x @ out is their part of y."""
    if numba is None:
        raise RuntimeError("the cpu backend needs numba: pip install numba")

    @numba.njit(fastmath=True, nogil=True, cache=True)
    def dequantize_blocks(words, scales, zeros, first, n, out):
        nb = words.shape[2]
        if first < 0 or first + n > words.shape[0] or n * nb > out.shape[1] or out.shape[0] != words.shape[1] * (32 // bits):
            raise ValueError("dequantize_blocks: blocks or out out of range")
        for i in range(n):
            dequantize_block(words, scales, zeros, first + i, out, i * nb, bits)

    return dequantize_blocks


# ── the kernel layout, made once per layer ───────────────────────────────────────────────────
@dataclass
class Layout:
    words: np.ndarray    # [n_blocks, in / PER, BLOCK_ROWS] int32
    scales: np.ndarray   # [n_blocks, n_groups, BLOCK_ROWS] float32
    zeros: np.ndarray    # [n_blocks, n_groups, BLOCK_ROWS] float32
    perm: np.ndarray | None

    @property
    def nbytes(self) -> int:
        return self.words.nbytes + self.scales.nbytes + self.zeros.nbytes


def _blocked(a: np.ndarray, rows: int) -> np.ndarray:
    """[out, n] -> [n_blocks, n, BLOCK_ROWS], padding out to a multiple of BLOCK_ROWS with zeros."""
    out, n = a.shape
    padded = np.zeros((rows, n), a.dtype)
    padded[:out] = a
    return np.ascontiguousarray(padded.reshape(rows // BLOCK_ROWS, BLOCK_ROWS, n).transpose(0, 2, 1))


def make_layout(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                perm: torch.Tensor | None) -> Layout:
    """The kernel layout (see the module docstring) from a layer's interchange-layout buffers."""
    out = qweight.shape[0]
    rows = -(-out // BLOCK_ROWS) * BLOCK_ROWS
    raw = np.ascontiguousarray(qweight.detach().cpu().numpy())                 # [out, in·bits/8]
    words = raw.view(np.dtype("<i4")).astype(np.int32)                        # [out, in / PER]
    return Layout(
        words=_blocked(words, rows),
        scales=_blocked(scales.detach().cpu().to(torch.float32).numpy(), rows),
        zeros=_blocked(zeros.detach().cpu().to(torch.float32).numpy(), rows),
        perm=None if perm is None else perm.detach().cpu().numpy().astype(np.int64))


def layout(layer) -> Layout:
    """The layer's kernel layout, rebuilt when its buffers have changed (e.g. load_state_dict)."""
    bufs = (layer.qweight, layer.scales, layer.zeros)
    stamp = tuple((t.data_ptr(), t._version) for t in bufs) + (
        None if layer.perm is None else layer.perm.data_ptr(),)
    cached = layer._kernel_cache.get(NAME)
    if cached is None or cached[0] != stamp:
        cached = (stamp, make_layout(layer.qweight, layer.scales, layer.zeros, layer.perm))
        layer._kernel_cache[NAME] = cached
    return cached[1]


# ── running it ───────────────────────────────────────────────────────────────────────────────
_POOL: ThreadPoolExecutor | None = None
_FORKED = False  # this process is a fork of one that may have started OpenMP threads
# How `linear` runs threads: "auto", on PyTorch's own OpenMP threads where `_torch_openmp` finds
# them, else on a thread pool; "pool", always the pool. From $MINICOMP_CPU_THREADING; lesson 09
# sets it to time the two.
THREADING = "pool" if os.environ.get("MINICOMP_CPU_THREADING", "").strip().lower() == "pool" else "auto"


def _after_fork_in_child() -> None:
    """A forked child has only the forking thread: OpenMP would wait forever for the parent's
    team (PyTorch's own parallel ops hang there too), and the pool's threads are gone."""
    global _POOL, _FORKED
    _POOL, _FORKED = None, True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL._max_workers < threads - 1:
        if _POOL is not None:
            _POOL.shutdown(wait=False)
        _POOL = ThreadPoolExecutor(max_workers=max(1, threads - 1), thread_name_prefix="minicomp-cpu")
    return _POOL


def _threads(n_blocks: int, work: int, openmp: bool) -> int:
    """Threads for one call: $MINICOMP_CPU_THREADS if set, else `torch.get_num_threads()`; one
    thread for small work, where handing out the work costs more than it saves. On PyTorch's
    OpenMP threads that is under ~0.5M multiply-adds (384 × 384 at batch 1 is a draw, 1024 × 1024
    is 1.15× faster on two); on a thread pool (openmp=False), which must wake its threads first, ~8M."""
    env = os.environ.get("MINICOMP_CPU_THREADS", "").strip()
    n = int(env) if env.isdigit() and int(env) > 0 else torch.get_num_threads()
    if work < (1 << 19 if openmp else 1 << 23):
        n = 1
    return max(1, min(n, n_blocks))


def _openmp():
    """`GOMP_parallel` to run this call's threads with, or None for the thread pool: None when
    THREADING is "pool" or in a forked child, else `_torch_openmp()`."""
    if THREADING == "pool" or _FORKED:
        return None
    return _torch_openmp()


@functools.cache
def _torch_openmp():
    """`GOMP_parallel` of the OpenMP runtime PyTorch runs its own threads on, or None.

    Calling the kernel through it runs it on PyTorch's own worker threads. Right after any
    PyTorch op those threads are still awake, spinning for the next parallel region (for
    milliseconds, by OpenMP's default), so they start at once; threads of our own would first
    have to be woken (~60 µs on a small VM) and would then share the cores with PyTorch's
    spinning ones (each block 1.5× slower, measured). Found only where PyTorch's parallel
    backend is OpenMP and its runtime is among the loaded libraries (Linux, /proc/self/maps: the
    one in PyTorch's own folder, or the only one loaded); elsewhere None.
    """
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if ".so" in line}
    except OSError:
        return None
    runtimes = {p for p in paths if os.path.basename(p).startswith(("libgomp", "libiomp5", "libomp"))}
    # Other packages bring their own copy (scikit-learn does): take the one in PyTorch's folder.
    site = os.path.dirname(os.path.dirname(torch.__file__))
    own = {p for p in runtimes if p.startswith(tuple(os.path.join(site, d) + os.sep for d in ("torch", "torch.libs")))}
    runtimes = own or runtimes
    if len(runtimes) != 1:
        return None
    try:
        fn = ctypes.CDLL(runtimes.pop()).GOMP_parallel  # the loaded library itself, not a second copy
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    fn.restype = None
    return fn


def describe_threads() -> str:
    """Whose threads the kernel runs on in this process, in words (for reports)."""
    if not available():
        return "none: numba is not installed"
    return "PyTorch's OpenMP threads" if _openmp() is not None else "a thread pool of its own"


def _run_openmp(gomp_parallel, openmp_run, args, n_blocks: int, threads: int) -> None:
    """Blocks 0..n_blocks-1 of one call, shared by `threads` threads of PyTorch's OpenMP team,
    this one included (ctypes releases the GIL for the call). Returns when all are written."""
    # `call` holds bare addresses: every array it points to must stay referenced here until the
    # run returns (a temporary `np.arange(...)` passed straight in would be freed first).
    todo, state = np.arange(n_blocks, dtype=np.int64), np.zeros(1 + n_blocks, np.int64)
    call = pack_call(*args, todo, state)
    gomp_parallel(openmp_run.address, call.ctypes.data, threads, 0)
    if not state[1:].all():
        raise RuntimeError("the OpenMP run left blocks unwritten; set MINICOMP_CPU_THREADING=pool "
                           "and report this as a bug")


def _run_shared(run, args, n_blocks: int, threads: int) -> bool:
    """Blocks 0..n_blocks-1 of one call, computed by `threads` threads, this one included.

    Every thread runs `run(*args, todo, state)`, claiming blocks until none are left. Then this
    thread waits for the blocks other threads are still computing, for about two blocks' time,
    and computes any still unfinished itself: on a busy machine the OS may pause a thread for
    milliseconds, and a block's values depend only on the block, so both write the same numbers.
    Returns False if it did so (a paused thread may still write into the output later).
    """
    todo, state = np.arange(n_blocks, dtype=np.int64), np.zeros(1 + n_blocks, np.int64)
    pool = _pool(threads)
    for _ in range(threads - 1):
        pool.submit(run, *args, todo, state)
    t0 = time.perf_counter()
    mine = run(*args, todo, state)
    deadline = time.perf_counter() + 2 * (time.perf_counter() - t0) / max(mine, 1)
    c = wait_done(state, WAIT_SPINS)
    while c < n_blocks and time.perf_counter() < deadline:
        c = wait_done(state, WAIT_SPINS)
    if c == n_blocks:
        return True
    late = todo[c:][state[1 + c:] == 0]   # claimed by a thread that has not finished them
    run(*args, late, np.zeros(1 + len(late), np.int64))
    return False


def unsupported(layer, x: torch.Tensor) -> str | None:
    """Why this backend cannot run `layer` on `x`, or None if it can."""
    if numba is None:
        return "numba is not installed (pip install numba)"
    if x.device.type != "cpu":
        return f"x is on {x.device}, not the CPU"
    per = 32 // layer.pack_bits
    if layer.pack_bits not in PACK_BITS:
        return f"pack_bits={layer.pack_bits} is not one of {PACK_BITS}"
    if layer.in_features % per or layer.group_size % per:
        return (f"in_features={layer.in_features} and group_size={layer.group_size} must be "
                f"multiples of {per} (one 32-bit word of {layer.pack_bits}-bit codes)")
    return None


def linear(layer, x: torch.Tensor) -> torch.Tensor:
    """y = x Wᵀ for a `PackedLinear` `layer`, x [M, in] -> y [M, out] float32, W never built
    whole: the fused kernel below `GEMM_ROWS` rows of x, slabs and BLAS from there on (item 9)."""
    return (slab_linear if x.shape[0] >= GEMM_ROWS else fused_linear)(layer, x)


def _codes_order(lay: Layout, x: torch.Tensor) -> torch.Tensor:
    """x [M, in] as float32, its columns in the order of the stored codes (GPTQ act-order)."""
    xf = x.detach() if x.requires_grad else x
    if xf.dtype != torch.float32:
        xf = xf.float()
    if lay.perm is not None:
        xf = xf[:, torch.from_numpy(lay.perm)]        # codes are stored in permuted column order
    return xf


def fused_linear(layer, x: torch.Tensor) -> torch.Tensor:
    """y = x Wᵀ [M, out] float32 by the fused kernel (`run_blocks`): each code is decoded in
    the loop that multiplies it, on threads. (Few torch calls here: see item 8 above.)"""
    lay = layout(layer)
    per = 32 // layer.pack_bits
    run, openmp_run = kernels(layer.pack_bits)
    xf = _codes_order(lay, x)
    m, n_in = xf.shape
    xn = np.ascontiguousarray(xf.numpy()).reshape(m, n_in // per, per)
    n_blocks = lay.words.shape[0]
    y = torch.empty(m, n_blocks * BLOCK_ROWS)
    args = (lay.words, lay.scales, lay.zeros, xn, y.numpy())
    gomp_parallel = _openmp()
    threads = _threads(n_blocks, m * n_in * layer.out_features, openmp=gomp_parallel is not None)
    if threads == 1:
        run(*args, np.arange(n_blocks, dtype=np.int64), np.zeros(1 + n_blocks, np.int64))
    elif gomp_parallel is not None:
        _run_openmp(gomp_parallel, openmp_run, args, n_blocks, threads)
    elif not _run_shared(run, args, n_blocks, threads):
        y = y.clone()  # a thread the OS paused mid-block may still write (the same values) into y
    return y if y.shape[1] == layer.out_features else y[:, :layer.out_features]


def slab_linear(layer, x: torch.Tensor) -> torch.Tensor:
    """y = x Wᵀ [M, out] float32 for many rows of x (item 9): a slab of blocks of W at a time,
    at most `SLAB_BYTES` of float32, dequantized by `dequantize_blocks` and multiplied with
    torch's matmul (BLAS, on PyTorch's threads)."""
    lay = layout(layer)
    xf = _codes_order(lay, x).contiguous()
    n_blocks, n_in = lay.words.shape[0], layer.in_features
    most = max(1, SLAB_BYTES // (4 * n_in * BLOCK_ROWS))    # blocks a slab may hold
    n_slabs = -(-n_blocks // most)
    per_slab = -(-n_blocks // n_slabs)                       # as even as can be: 12 -> 4, 4, 4
    cols = per_slab * BLOCK_ROWS
    slab = torch.empty(n_in, cols)                                    # [in, cols] Wᵀ of a slab
    parts = torch.empty(n_slabs, xf.shape[0], cols)                   # [slabs, M, cols] of y
    dequantize = dequantizer(layer.pack_bits)
    for i in range(n_slabs):
        first = i * per_slab
        dequantize(lay.words, lay.scales, lay.zeros, first, min(per_slab, n_blocks - first), slab.numpy())
        torch.mm(xf, slab, out=parts[i])   # (a last slab of fewer blocks: its stale columns are cut)
    y = parts.transpose(0, 1).reshape(xf.shape[0], n_slabs * cols)
    return y if y.shape[1] == layer.out_features else y[:, :layer.out_features]
