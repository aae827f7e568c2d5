"""The cpu backend: a fused dequantize-and-multiply kernel, compiled with numba, and how it runs.

Why numba: the inner loop must run at machine speed, and numba compiles plain Python loops to
LLVM with SIMD vectorization, so the kernel stays readable Python with no C toolchain at install
time. (torch's own `_weight_int4pack_mm_for_cpu` exists, but on a small AVX2 machine it measured
several times *slower* than dense float32; a C++ extension would need a compiler on every
learner's laptop.) `cache=True` stores the compiled code beside `jit.py`, so the compile (a
few seconds per bit width) happens once per machine, not once per session.

    jit.py       everything numba compiles: the fused kernel, the slab decoder, and the LLVM
                 one-liners they use. What makes the kernel fast is items 1 to 6 of its docstring.
    __init__.py  this file: the kernel layout, the threads, and the choice between two
                 strategies, the fused kernel or slabs and BLAS (items 7 to 9 below).

How it runs:

7. **Threads over blocks of rows, and PyTorch's threads at that.** Each thread claims the next
   block with an atomic add on a shared counter and marks it done with an atomic store, all in
   compiled code (`run_blocks`): no Python and no GIL between blocks, and a thread that starts
   late simply does fewer. The threads are PyTorch's own OpenMP team (`_torch_openmp`): after any
   PyTorch op they spin for a few milliseconds waiting for more work, so they start on our blocks
   at once, where threads of our own would first have to be woken (~60 µs on a small VM) and
   would then share the cores with PyTorch's spinning ones (each block 1.5× slower). On
   PyTorch's threads the GEMV at 4096 × 4096 went from 0.85 ms to 0.64 ms in `minicomp bench`,
   and 1024 × 1024 became worth splitting. (On later hosts of that VM, with a 32 MiB cache that
   holds the packed weight, the two traded places from run to run, the pool below from 15 %
   faster to 1.6× slower: lesson 09 times both.) Where PyTorch is not on an OpenMP runtime that can be
   found, a `ThreadPoolExecutor` runs the same `run_blocks`, and the calling thread computes any
   block a paused helper has not finished rather than wait for it (`_run_shared`); `THREADING`
   chooses between the two. (numba's own `prange` brings a second OpenMP runtime, whose threads
   fought PyTorch's for the cores.)
8. **Few torch calls per call.** Right after a kernel has streamed megabytes through the CPU's
   caches, each torch call in `linear` costs ~10 µs instead of ~1 µs (Python's own data must come
   back from memory), so the path around the kernel stays in numpy: ~0.1 ms less a call. On a
   small layer, where the kernel itself takes a few µs, every step around it shows: the output
   is a numpy array lent to torch (`from_numpy`), the thread settings are read only for work
   worth splitting, and `PackedLinear.forward` adds the bias in place. That took a 128 × 128
   INT4 layer at batch 1 from ~53 to ~34 µs a call, and 384 × 384 from ~66 to ~48 µs (2-core
   EPYC; nn.Linear: ~11 and ~27 µs). At these sizes dense float stays faster: see lesson 10.
9. **Many rows of x: stop fusing.** The fused kernel does every multiply-add itself, and from a
   few dozen rows of x on the work is arithmetic, not memory, where a BLAS matmul (blocked for
   the caches, tuned for years) is several times faster per multiply-add. So from `GEMM_ROWS`
   rows on, `linear` dequantizes one slab of output rows at a time (whole blocks of `BLOCK_ROWS`,
   up to `SLAB_BYTES` of float32 but at least one block: 2 MiB at 4096 inputs) into a buffer
   (`dequantize_blocks`; its pieces shared by PyTorch's threads, as item 7) and multiplies x
   by it with torch (llama.cpp's BLAS backend makes the same switch, from 32 rows). The whole
   float weight is still never built, and the
   time becomes float32's matmul plus one pass of decoding, which the batch amortizes: on the
   2-core Xeon at 4096 × 4096 and 256 rows, 0.90× float32's speed against the fused kernel's
   0.51× (lesson 09); 2–3× the fused kernel's speed at 512 rows, from 384 × 384 to 4096 × 4096.
   How much BLAS gains depends on the CPU: on a 2-core EPYC whose AVX-512 runs in two 256-bit
   halves, at 4096 × 4096 the two strategies were within 20% of each other at 256 rows, and at
   64 rows the fused kernel was 1.1–2.3× the slabs' speed in every run: `GEMM_ROWS` is too low
   there for large layers (at 384 × 384 the slabs won from ~24 rows).
   `slab_linear` and `fused_linear` run either path by name.

The kernel layout, made once from the interchange layout of `minicomp.pack` and cached on the
layer (it is a reshuffle of the same bytes, so the codes are stored twice while it is cached):

    words   [n_blocks, in / PER, BLOCK_ROWS] int32   PER = 32 / bits codes per word
            words[b, j, r] = bytes 4j .. 4j+3 of packed row b·BLOCK_ROWS + r, read little-endian,
            so code k of the word (bits k·bits ... k·bits + bits − 1) is input column PER·j + k
    scales  [n_blocks, n_chunks, BLOCK_ROWS] float32
    zeros   [n_blocks, n_chunks, BLOCK_ROWS] float32
    Rows past out_features are padding (codes 0, scale 0) and are cut off the result.

**Long groups are cut into chunks** of at most `CHUNK_CODES` codes, and the layout holds a
group's scale and zero point once per chunk, so to the kernels a chunk is just a group. Why: the
fused kernel ends each group with a subtraction of two large, nearly equal float32 sums
(2^bits · (Σ f·x − Σ x) in the GEMV, Σ q·x − z · Σ x in the GEMM; `jit.py`, items 2 and 5), and
what is left carries their rounding errors, which grow with the number of terms. A whole row of
11008 all-positive inputs as one group (an MLP's down projection after a ReLU) gave a relative
error of 4e-4, against 8e-7 for the reference's matmul; in chunks of 128 codes, ~5e-6, the
same as group_size 128 always had. (The triton GEMV, likewise, finishes its sums every step of
at most 16 words.) A group of at most `CHUNK_CODES` codes, group_size 128 or less, is one chunk:
its layout and the kernels' loops are exactly what they were without chunks, and so is their
speed. A longer group costs ~2% more time at 4096 × 4096 (the extra scales are read) and its
scales and zeros take as much room as group_size 128's. Chunks are equal, so that the kernels
need not know about them: a group whose length in words has no divisor near the most a chunk
may hold (37 words, say) is cut smaller, down to single words, and is slower.
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

from minicomp.kernels.cpu.jit import (
    PIECES,
    UNAVAILABLE,
    dequantizer,
    kernels,
    numba,
    pack_call,
    pack_dequantize,
    wait_done,
)
from minicomp.kernels.reference import check_call

__all__ = ["NAME", "BLOCK_ROWS", "GEMM_ROWS", "SLAB_BYTES", "PACK_BITS", "available", "unsupported", "linear",
           "fused_linear", "slab_linear", "layout", "Layout", "make_layout", "kernels", "dequantizer",
           "describe_threads", "THREADING", "CHUNK_CODES", "chunk_words"]

NAME = "cpu"
BLOCK_ROWS = 128   # output rows per block: 128 measured best for 4096 × 4096 GEMV on AVX2
GEMM_ROWS = 64     # from this many rows of x on, `linear` multiplies dequantized slabs with BLAS
                   # (4- and 8-bit codes: the two cross at 24 to 64 rows, 384² to 4096²; 2 bits: below 32)
SLAB_BYTES = 1 << 20  # float32 bytes of dequantized weight held at once, one block at least (best: 0.5-2 MB)
CHUNK_CODES = 128  # the most codes of a row the fused kernel sums before finishing them (see "Long groups")
PACK_BITS = (2, 4, 8)
WAIT_SPINS = 2000  # checks per `wait_done` call (a few µs) between looks at the clock


def available() -> bool:
    return numba is not None


# ── the kernel layout, made once per layer ───────────────────────────────────────────────────
@dataclass
class Layout:
    words: np.ndarray    # [n_blocks, in / PER, BLOCK_ROWS] int32
    scales: np.ndarray   # [n_blocks, n_chunks, BLOCK_ROWS] float32, one per chunk of a group
    zeros: np.ndarray    # [n_blocks, n_chunks, BLOCK_ROWS] float32
    perm: np.ndarray | None   # [in] int64, GPTQ act-order (`PackedLinear.kernel_cache_nbytes` counts it all)


def _blocked(a: np.ndarray, rows: int) -> np.ndarray:
    """[out, n] -> [n_blocks, n, BLOCK_ROWS], padding out to a multiple of BLOCK_ROWS with zeros."""
    out, n = a.shape
    padded = np.zeros((rows, n), a.dtype)
    padded[:out] = a
    return np.ascontiguousarray(padded.reshape(rows // BLOCK_ROWS, BLOCK_ROWS, n).transpose(0, 2, 1))


def chunk_words(words_per_group: int, pack_bits: int) -> int:
    """Words in each chunk a group of `words_per_group` words is cut into (see "Long groups"):
    the largest divisor of words_per_group that holds at most CHUNK_CODES codes. A group of
    at most CHUNK_CODES codes is a single chunk; 11008 inputs at 4 bits (1376 words) are 86 of 16."""
    c = max(1, min(words_per_group, CHUNK_CODES * pack_bits // 32))
    while words_per_group % c:
        c -= 1
    return c


def make_layout(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                perm: torch.Tensor | None, *, pack_bits: int) -> Layout:
    """The kernel layout (see the module docstring) from a layer's interchange-layout buffers:
    qweight [out, in · pack_bits / 8] uint8, scales and zeros [out, n_groups], perm [in] or None."""
    out = qweight.shape[0]
    rows = -(-out // BLOCK_ROWS) * BLOCK_ROWS
    raw = np.ascontiguousarray(qweight.detach().cpu().numpy())                 # [out, in·bits/8]
    words = raw.view(np.dtype("<i4")).astype(np.int32)                        # [out, in / PER]
    s = scales.detach().cpu().to(torch.float32).numpy()                       # [out, n_groups]
    z = zeros.detach().cpu().to(torch.float32).numpy()
    words_per_group = words.shape[1] // s.shape[1]
    repeat = words_per_group // chunk_words(words_per_group, pack_bits)       # chunks per group
    if repeat > 1:   # a long group: its scale and zero point once per chunk   [out, n_chunks]
        s, z = np.repeat(s, repeat, axis=1), np.repeat(z, repeat, axis=1)
    return Layout(
        words=_blocked(words, rows), scales=_blocked(s, rows), zeros=_blocked(z, rows),
        perm=None if perm is None else perm.detach().cpu().numpy().astype(np.int64))


def layout(layer) -> Layout:
    """The layer's kernel layout, rebuilt when its buffers have changed (e.g. load_state_dict)."""
    return layer.kept_layout(NAME, lambda: make_layout(layer.qweight, layer.scales, layer.zeros, layer.perm,
                                                       pack_bits=layer.pack_bits))

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
    if work < (1 << 19 if openmp else 1 << 23):
        return 1   # (before reading the settings: small layers are where a µs a call shows)
    env = os.environ.get("MINICOMP_CPU_THREADS", "").strip()
    n = int(env) if env.isdigit() and int(env) > 0 else torch.get_num_threads()
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
        return f"none: {UNAVAILABLE}"
    return "PyTorch's OpenMP threads" if _openmp() is not None else "a thread pool of its own"


def _run_openmp(gomp_parallel, openmp_run, args, n_blocks: int, threads: int) -> None:
    """Blocks 0..n_blocks-1 of one call, shared by `threads` threads of PyTorch's OpenMP team,
    this one included (ctypes releases the GIL for the call). Returns when all are written."""
    # `call` holds bare addresses: every array it points to must stay referenced here until the
    # run returns (a temporary `np.arange(...)` passed straight in would be freed first).
    todo, state = np.arange(n_blocks, dtype=np.int64), np.zeros(1 + n_blocks, np.int64)
    _on_openmp(gomp_parallel, openmp_run, pack_call(*args, todo, state), threads, lambda: state[1:].all())


def _on_openmp(gomp_parallel, cfunc, call: np.ndarray, threads: int, all_done) -> None:
    """Run C function `cfunc` on every thread of a team of `threads`, with `call` (its packed
    int64 arguments), and check with all_done() that the team left nothing undone."""
    gomp_parallel(cfunc.address, call.ctypes.data, threads, 0)
    if not all_done():
        raise RuntimeError("the OpenMP run left work undone; set MINICOMP_CPU_THREADING=pool "
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
        return UNAVAILABLE
    if x.device.type != "cpu":
        return f"x is on {x.device}, not the CPU"
    per = 32 // layer.pack_bits
    if layer.pack_bits not in PACK_BITS:
        return f"pack_bits={layer.pack_bits} is not one of {PACK_BITS}"
    if layer.in_features % per or layer.group_size % per:
        return (f"in_features={layer.in_features} and group_size={layer.group_size} must be "
                f"multiples of {per} (one 32-bit word of {layer.pack_bits}-bit codes)")
    return None


def linear(layer, x: torch.Tensor, *, check: bool = True) -> torch.Tensor:
    """y = x Wᵀ for a `PackedLinear` `layer`, x [M, in] -> y [M, out] float32, W never built
    whole: the fused kernel below `GEMM_ROWS` rows of x, slabs and BLAS from there on (item 9).
    check=False skips checking the arguments: `PackedLinear.forward` has already."""
    many = isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] >= GEMM_ROWS  # (either checks x)
    return (slab_linear if many else fused_linear)(layer, x, check=check)


def _codes_order(lay: Layout, x: torch.Tensor) -> torch.Tensor:
    """x [M, in] as float32, its columns in the order of the stored codes (GPTQ act-order)."""
    xf = x.detach() if x.requires_grad else x
    if xf.dtype != torch.float32:
        xf = xf.float()
    if lay.perm is not None:
        xf = xf[:, torch.from_numpy(lay.perm)]        # codes are stored in permuted column order
    return xf


def fused_linear(layer, x: torch.Tensor, *, check: bool = True) -> torch.Tensor:
    """y = x Wᵀ [M, out] float32 by the fused kernel (`run_blocks`): each code is decoded in
    the loop that multiplies it, on threads. (Few torch calls here: see item 8 above.)"""
    if check:
        check_call(layer, x)
    lay = layout(layer)
    per = 32 // layer.pack_bits
    run, openmp_run = kernels(layer.pack_bits)
    xf = _codes_order(lay, x)
    m, n_in = xf.shape
    xn = np.ascontiguousarray(xf.numpy()).reshape(m, n_in // per, per)
    n_blocks = lay.words.shape[0]
    yn = np.empty((m, n_blocks * BLOCK_ROWS), np.float32)
    y = torch.from_numpy(yn)   # (the same memory: the kernel writes yn, the caller gets y)
    args = (lay.words, lay.scales, lay.zeros, xn, yn)
    gomp_parallel = _openmp()
    threads = _threads(n_blocks, m * n_in * layer.out_features, openmp=gomp_parallel is not None)
    if threads == 1:
        run(*args, np.arange(n_blocks, dtype=np.int64), np.zeros(1 + n_blocks, np.int64))
    elif gomp_parallel is not None:
        _run_openmp(gomp_parallel, openmp_run, args, n_blocks, threads)
    elif not _run_shared(run, args, n_blocks, threads):
        y = y.clone()  # a thread the OS paused mid-block may still write (the same values) into y
    return y if y.shape[1] == layer.out_features else y[:, :layer.out_features]


def slab_linear(layer, x: torch.Tensor, *, check: bool = True) -> torch.Tensor:
    """y = x Wᵀ [M, out] float32 for many rows of x (item 9): a slab of blocks of W at a time,
    up to `SLAB_BYTES` of float32 (at least one block), dequantized by `dequantize_blocks` (on PyTorch's threads,
    as the fused kernel) and multiplied with torch's matmul (BLAS, on the same threads)."""
    if check:
        check_call(layer, x)
    lay = layout(layer)
    xf = _codes_order(lay, x).contiguous()
    n_blocks, n_in = lay.words.shape[0], layer.in_features
    most = max(1, SLAB_BYTES // (4 * n_in * BLOCK_ROWS))    # blocks a slab may hold
    n_slabs = -(-n_blocks // most)
    per_slab = -(-n_blocks // n_slabs)                       # as even as can be: 12 -> 4, 4, 4
    cols = per_slab * BLOCK_ROWS
    slab = torch.empty(n_in, cols)                                    # [in, cols] Wᵀ of a slab
    parts = torch.empty(n_slabs, xf.shape[0], cols)                   # [slabs, M, cols] of y
    dequantize, openmp_dequantize = dequantizer(layer.pack_bits)
    gomp_parallel = _openmp()
    # a slab's decoding is worth splitting from ~128K weights (4 multiply-adds' worth each, for
    # `_threads`): 1024 × 1024 at 64 rows went from 1.25 to 1.03 ms on two threads
    threads = _threads(per_slab * PIECES, 4 * n_in * cols, openmp=gomp_parallel is not None)
    codes, out = (lay.words, lay.scales, lay.zeros), slab.numpy()
    for i in range(n_slabs):
        first = i * per_slab
        n, state = min(per_slab, n_blocks - first), np.zeros(1, np.int64)   # state: pieces claimed
        if threads > 1 and gomp_parallel is not None:   # (on a thread pool: one thread decodes)
            call = pack_dequantize(*codes, first, n, out, state, 32 // layer.pack_bits)
            _on_openmp(gomp_parallel, openmp_dequantize, call, threads,
                       lambda state=state, n=n: state[0] >= n * PIECES)
        else:
            dequantize(*codes, first, n, out, state)
        torch.mm(xf, slab, out=parts[i])   # (a last slab of fewer blocks: its stale columns are cut)
    y = parts.transpose(0, 1).reshape(xf.shape[0], n_slabs * cols)
    return y if y.shape[1] == layer.out_features else y[:, :layer.out_features]
