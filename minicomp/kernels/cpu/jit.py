"""Everything the cpu backend compiles with numba: the fused kernel (`run_blocks`, as a Python
function and as a C function for OpenMP, from `kernels(bits)`), the slab decoder
(`dequantize_blocks`, from `dequantizer(bits)`), and the LLVM one-liners they use.

All of it is in one file on purpose: numba's disk cache (`cache=True`, in `__pycache__` here)
is refreshed when the file of a cached function changes, not when a helper it compiled in from
another file does. The layout these kernels read is described in `cpu/__init__.py`.

What makes it fast (4096 × 4096, batch 1: 8 MB of codes instead of 64 MB of float32):

1. **Never build the float weight.** Each 32-bit word of packed codes is loaded once, its codes
   are cut out with a shift and a mask, converted to float and multiplied into the sum at once.
2. **The zero point leaves the inner loop.** For one group of one output row,

       Σ_j (q_j − z)·s·x_j  =  s · ( Σ_j q_j·x_j  −  z · Σ_j x_j )

   Σ_j x_j depends only on x, so it is computed once per call (`xsum`), and the inner loop is a
   plain dot product of codes with x.
3. **Vectorize over output rows.** The kernel layout (`cpu/__init__.py`) puts the same word of
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

(Items 7 to 9, how the kernels are run, are in `cpu/__init__.py`.)
"""

from __future__ import annotations

import functools

import numpy as np

UNAVAILABLE = None  # why numba cannot be used here, in words (None: it can)
try:
    import numba
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError as exc:  # the backend reports itself unavailable; `reference` still works
    numba = None
    if isinstance(exc, ModuleNotFoundError) and exc.name in ("numba", "llvmlite"):
        UNAVAILABLE = "numba is not installed (pip install numba)"
    else:   # installed, but broken (often: built for another NumPy): say so, once, instead of running slowly
        UNAVAILABLE = f"numba is installed but does not import ({type(exc).__name__}: {exc}); try pip install -U numba"
        import warnings
        warnings.warn(f"minicomp: the fused CPU kernels are off, {UNAVAILABLE}; PackedLinear runs its slow "
                      "reference backend instead", RuntimeWarning, stacklevel=2)

M_TILE = 16         # batch rows per pass over a block in the GEMM kernel (keeps partial sums in L1)
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
else:   # no numba: the names exist for `cpu/__init__.py` to import, but `available()` is False
    wait_done = pack_call = None


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


PIECES = 8          # each block's words are decoded in this many pieces, claimed by the threads


@_inline
def dequantize_block(words, scales, zeros, b, out, col, j0, j1, bits):
    """out[PER·j0 : PER·j1, col : col + BLOCK_ROWS] = words j0 .. j1 − 1 of the rows of block b
    of W, transposed: (q − z)·s, float32. out [in, ...] float32; the loop over rows is
    unit-stride in `words` and `out` alike."""
    PER = 32 // bits
    MASK = (1 << bits) - 1
    i32, f32 = np.int32, np.float32
    nb = words.shape[2]
    words_per_group = words.shape[1] // scales.shape[1]
    for j in range(j0, j1):
        wrow = words[b, j]                                   # [BLOCK_ROWS] word j of each row
        s, z = scales[b, j // words_per_group], zeros[b, j // words_per_group]
        for k in range(PER):                                 # unrolled: code k of the word
            o = out[PER * j + k, col:col + nb]               # input column PER·j + k
            for r in range(nb):                              # vectorized over the rows
                o[r] = (f32(i32((wrow[r] >> (bits * k)) & MASK)) - z[r]) * s[r]


@_inline
def dequantize_pieces(words, scales, zeros, first, n, out, state, bits):
    """Blocks first .. first + n − 1 into out's first n · BLOCK_ROWS columns, in PIECES pieces
    a block, shared by every thread that calls this with the same `state` [1] int64: each
    claims the next piece with an atomic add until none are left."""
    n_words, nb = words.shape[1], words.shape[2]
    step = -(-n_words // PIECES)                            # words per piece
    while True:
        c = atomic_add(state, 0, 1)
        if c >= n * PIECES:
            return
        i, p = c // PIECES, c % PIECES
        dequantize_block(words, scales, zeros, first + i, out, i * nb, min(p * step, n_words),
                         min((p + 1) * step, n_words), bits)


if numba is not None:
    @numba.njit(inline="always", cache=True)
    def check_slab(words, first, n, out, per):
        """Raise unless blocks first .. first + n − 1 exist and fit in out [PER · words, ...]."""
        if (first < 0 or n < 0 or first + n > words.shape[0] or n * words.shape[2] > out.shape[1]
                or out.shape[0] != words.shape[1] * per):
            raise ValueError("dequantize_blocks: blocks or out out of range")

    @numba.njit(cache=True)
    def pack_dequantize(words, scales, zeros, first, n, out, state, per):
        """Check one decoding call (per: codes per word) and pack it as int64s (addresses and
        sizes) for `openmp_dequantize`, which can take no arrays and raise no error."""
        if not (words.flags.c_contiguous and scales.flags.c_contiguous and zeros.flags.c_contiguous
                and out.flags.c_contiguous):
            raise ValueError("pack_dequantize: every array must be C-contiguous")
        check_slab(words, first, n, out, per)
        return np.array([address(words), address(scales), address(zeros), address(out), address(state),
                         words.shape[0], words.shape[1], words.shape[2], scales.shape[1], first, n,
                         out.shape[0], out.shape[1]], np.int64)
else:
    check_slab = pack_dequantize = None


@functools.cache
def dequantizer(bits: int):
    """(dequantize_blocks, openmp_dequantize) compiled for codes of `bits` bits.

    `dequantize_blocks(words, scales, zeros, first, n, out, state)`: the first n · BLOCK_ROWS
    columns of out [in, ≥ n · BLOCK_ROWS] float32 (C order) become blocks first .. first + n − 1
    of W, transposed, so that x @ out is their part of y. `state` is a zeroed [1] int64, the
    pieces' counter: called from one thread it decodes every piece. `openmp_dequantize` is the
    same as a C function for `GOMP_parallel`, on the int64s from `pack_dequantize`."""
    if numba is None:
        raise RuntimeError("the cpu backend needs numba: pip install numba")

    @numba.njit(fastmath=True, nogil=True, cache=True)
    def dequantize_blocks(words, scales, zeros, first, n, out, state):
        check_slab(words, first, n, out, 32 // bits)
        dequantize_pieces(words, scales, zeros, first, n, out, state, bits)

    @numba.cfunc(numba.types.void(numba.types.voidptr), fastmath=True, cache=True)
    def openmp_dequantize(call):
        """`dequantize_blocks` for every thread of an OpenMP team, on `pack_dequantize`'s int64s."""
        a = numba.carray(call, 13, np.int64)
        n_blocks, n_words, nb, n_groups, first, n, rows, cols = a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12]
        dequantize_pieces(numba.carray(as_pointer(a[0]), (n_blocks, n_words, nb), np.int32),
                          numba.carray(as_pointer(a[1]), (n_blocks, n_groups, nb), np.float32),
                          numba.carray(as_pointer(a[2]), (n_blocks, n_groups, nb), np.float32),
                          first, n, numba.carray(as_pointer(a[3]), (rows, cols), np.float32),
                          numba.carray(as_pointer(a[4]), (1,), np.int64), bits)

    return dequantize_blocks, openmp_dequantize
