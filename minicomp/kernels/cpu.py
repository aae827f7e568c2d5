"""The cpu backend: a fused dequantize-and-multiply kernel, compiled with numba.

Why numba: the inner loop must run at machine speed, and numba compiles plain Python loops to
LLVM with SIMD vectorization, so the kernel stays readable Python with no C toolchain at install
time. (torch's own `_weight_int4pack_mm_for_cpu` exists, but on a small AVX2 machine it measured
several times *slower* than dense float32; a C++ extension would need a compiler on every
learner's laptop.) `cache=True` stores the compiled code next to this file, so the ~2 s compile
happens once per machine, not once per session.

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
7. **Threads over blocks of rows**, from a standard `ThreadPoolExecutor` calling the kernel with
   the GIL released, each taking the next small chunk of blocks until none are left (see
   `_run_in_chunks`). (numba's own `prange` with its OpenMP layer fought PyTorch's OpenMP threads
   for the cores and ran ~10× slower when the two alternate; its static split also waits for
   any thread the OS pauses, which on a shared laptop happens all the time.)

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

import functools
import os
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
CHUNKS_PER_THREAD = 4  # work is split finer than one share per thread, see `linear`
PACK_BITS = (2, 4, 8)


def available() -> bool:
    return numba is not None


# ── the kernels ──────────────────────────────────────────────────────────────────────────────
ONE = 0x3F800000    # the bits of the float32 1.0: sign 0, exponent 127, mantissa 0
PREFETCH_WORDS = 4  # the kernels ask for the words this many steps ahead (4 × 512 bytes)


# Two LLVM one-liners numba does not offer, defined at module level so that kernels using them
# can be cached on disk (plus `prefetch_words`, a loop of `prefetch`):
#   as_float(v)         the int32 v's 32 bits read as a float32 (C's memcpy, numpy's .view)
#   prefetch(flat, i)   ask the CPU to start loading flat[i] (1-D array) into its caches now
if numba is not None:
    @intrinsic
    def as_float(typingctx, v):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())
        return numba.types.float32(numba.types.int32), codegen

    @intrinsic
    def prefetch(typingctx, flat, i):
        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
            i8p, i32t = ir.IntType(8).as_pointer(), ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32t, i32t, i32t]), "llvm.prefetch.p0i8")
            # read (0), keep in all cache levels (3), data cache (1)
            builder.call(fn, [builder.bitcast(ptr, i8p), i32t(0), i32t(3), i32t(1)])
            return context.get_dummy_value()
        return numba.types.void(flat, i), codegen

    @numba.njit(inline="always", cache=True)
    def prefetch_words(flat, start, n):
        """Ask for flat[start : start + n] (int32 words), one request per 64-byte cache line."""
        for c in range(0, n, 16):
            if start + c < flat.shape[0]:
                prefetch(flat, start + c)


@functools.cache
def kernels(bits: int):
    """(gemv, gemm) compiled for codes of `bits` bits: PER and MASK become compile-time
    constants, so the loop over the codes of a word is unrolled."""
    if numba is None:
        raise RuntimeError("the cpu backend needs numba: pip install numba")
    PER = 32 // bits         # codes per int32 word
    MASK = (1 << bits) - 1
    TOP = 23 - bits          # where a code sits as the top mantissa bits of a float32
    FMASK = MASK << TOP
    i32, f32 = np.int32, np.float32
    jit = numba.njit(fastmath=True, nogil=True, cache=True)

    @jit
    def gemv(words, scales, zeros, x, xsum, y, b0, b1):
        """y[rows of blocks b0..b1-1] for one input x [in / PER, PER] (xsum [n_groups])."""
        n_words, nb = words.shape[1], words.shape[2]
        n_groups = scales.shape[1]
        words_per_group = n_words // n_groups
        flat = words.reshape(-1)   # the same memory, for prefetch
        acc = np.empty(nb, f32)    # [BLOCK_ROWS] the block's outputs
        part = np.empty(nb, f32)   # [BLOCK_ROWS] Σ_j (1 + q_j / 2^bits)·x_j over the current group
        for b in range(b0, b1):
            acc[:] = 0
            for g in range(n_groups):
                part[:] = 0
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

    @jit
    def gemm(words, scales, zeros, x, xsum, y, b0, b1):
        """y [M, rows] for inputs x [M, in / PER, PER] (xsum [M, n_groups]): each word is
        decoded once into `codes` and used for up to M_TILE inputs."""
        n_words, nb = words.shape[1], words.shape[2]
        n_groups = scales.shape[1]
        words_per_group = n_words // n_groups
        m_total = x.shape[0]
        flat = words.reshape(-1)               # the same memory, for prefetch
        codes = np.empty((PER, nb), f32)       # one decoded word per row of the block
        acc = np.empty((M_TILE, nb), f32)
        part = np.empty((M_TILE, nb), f32)
        for b in range(b0, b1):
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

    return gemv, gemm


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


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL._max_workers < threads - 1:
        if _POOL is not None:
            _POOL.shutdown(wait=False)
        _POOL = ThreadPoolExecutor(max_workers=max(1, threads - 1), thread_name_prefix="minicomp-cpu")
    return _POOL


def _threads(n_blocks: int, work: int) -> int:
    """Threads for one call: $MINICOMP_CPU_THREADS if set, else `torch.get_num_threads()`; one
    thread for small work (handing out work costs tens of µs)."""
    env = os.environ.get("MINICOMP_CPU_THREADS", "").strip()
    n = int(env) if env.isdigit() and int(env) > 0 else torch.get_num_threads()
    if work < 1 << 23:  # under ~8M multiply-adds one thread is faster (measured: 2048², batch 1)
        n = 1
    return max(1, min(n, n_blocks))


def _run_in_chunks(fn, args, n_blocks: int, threads: int) -> None:
    """fn(*args, lo, hi) over blocks 0..n_blocks-1, split into chunks shared by `threads` threads.

    Each thread, this one included, takes the next chunk until none are left, so a thread that
    starts late does less. A chunk's results depend only on the chunk, so when this thread runs
    out of work while a chunk is still unfinished (on a busy machine, its thread may be paused
    for milliseconds), it computes that chunk again itself rather than wait: both write the
    same values.
    """
    n_chunks = min(n_blocks, CHUNKS_PER_THREAD * threads)
    edges = np.linspace(0, n_blocks, n_chunks + 1).astype(np.int64)
    todo = iter(range(n_chunks))  # next() on it is atomic under the GIL
    done = [False] * n_chunks

    def drain():
        for c in todo:
            fn(*args, int(edges[c]), int(edges[c + 1]))
            done[c] = True

    for _ in range(threads - 1):
        _pool(threads).submit(drain)
    drain()
    for c in range(n_chunks):
        if not done[c]:
            fn(*args, int(edges[c]), int(edges[c + 1]))


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
    """y = x Wᵀ for a `PackedLinear` `layer`, x [M, in] -> y [M, out] float32, W never built."""
    lay = layout(layer)
    bits, per = layer.pack_bits, 32 // layer.pack_bits
    gemv, gemm = kernels(bits)
    xf = x.detach().to(torch.float32)
    if lay.perm is not None:
        xf = xf[:, torch.from_numpy(lay.perm)]          # codes are stored in permuted column order
    m, n_in = xf.shape
    xs = xf.reshape(m, -1, layer.group_size).sum(-1)    # [M, n_groups]  Σ_j x_j of each group
    xn = np.ascontiguousarray(xf.numpy()).reshape(m, n_in // per, per)
    xsn = np.ascontiguousarray(xs.numpy())
    n_blocks = lay.words.shape[0]
    y = np.empty((m, n_blocks * BLOCK_ROWS), np.float32)
    if m == 1:
        args = (lay.words, lay.scales, lay.zeros, xn[0], xsn[0], y[0])
        fn = gemv
    else:
        args = (lay.words, lay.scales, lay.zeros, xn, xsn, y)
        fn = gemm
    threads = _threads(n_blocks, m * n_in * layer.out_features)
    if threads == 1:
        fn(*args, 0, n_blocks)
        return torch.from_numpy(y[:, :layer.out_features])
    _run_in_chunks(fn, args, n_blocks, threads)
    # A copy: a thread the OS paused mid-chunk may still write (the same values) into y later.
    return torch.from_numpy(y[:, :layer.out_features].copy())
