"""Timing done right (lessons 00 and 09, `minicomp bench`): `num_threads`, `measure` (warm-up,
many repeats, the median) and `compare`, which interleaves the repeats of several functions
round-robin so that machine noise hits them all equally; `ratios` turns the result into
speed-ups against a baseline. On a GPU, `cuda_graph` replays a call without Python's launch
cost; on a CPU, `copies_beyond_cache` and `round_robin` make each call find its weights out of
the cache, as in a model."""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from minicomp.checks import check_callable, check_flag, check_int, is_int, is_real
from minicomp.hardware.machine import cache_bytes, check_device


@contextmanager
def num_threads(n: int):
    """Run the ``with`` block with PyTorch using ``n`` CPU threads, then restore the old count.

    One thread gives steadier timings on a machine shared with other programs: a multi-threaded
    kernel waits for its slowest thread, and a busy core makes that thread slow.
    """
    if not is_int(n):
        raise TypeError(f"n must be an int number of threads, got {type(n).__name__} {n!r}")
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of repeated calls, in seconds. Report the median: it ignores outliers."""

    median: float
    mean: float
    min: float
    times: tuple[float, ...]
    repeats: int

    @classmethod
    def from_times(cls, times: Iterable[float]) -> Timing:
        times = tuple(float(t) for t in times)
        if not times:
            raise ValueError("times must hold at least one measurement, got none")
        if not all(0 <= t < math.inf for t in times):
            raise ValueError(f"times must be finite and >= 0 seconds, got {[t for t in times if not 0 <= t < math.inf]}")
        return cls(median=statistics.median(times), mean=statistics.fmean(times),
                   min=min(times), times=times, repeats=len(times))

    def __str__(self) -> str:
        return f"{self.median * 1e3:.3f} ms median (min {self.min * 1e3:.3f} ms, {self.repeats} repeats)"


def _check_counts(warmup, repeats) -> None:
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if check_int(name, value) < low:
            raise ValueError(f"{name}={value} must be >= {low}")


def _timing_device(device) -> torch.device:
    return torch.device("cpu") if device is None else check_device(device, "device")


HOLD_CYCLES = 200_000  # ~0.1 ms of a GPU's clock: time for the host to queue a call behind it
_flush_buffers: dict[torch.device, torch.Tensor] = {}


def flush_l2(device: torch.device) -> None:
    """Read twice the GPU's L2 cache worth of bytes (queued on the current stream), so that the
    next call finds none of its own data there: as a layer of a model does, whose weight the
    layers before it evicted. An 8192² 4-bit weight (35 MB) fits in an H200's 50 MB L2, so
    without this, repeated calls would read it from the cache instead of from memory.

    It reads rather than writes (triton's do_bench writes zeros): written lines stay in the
    cache dirty, and the timed call would pay for writing them back to memory, more the more
    it reads. On an H200 that made fp16 cuBLAS at 8192², batch 1, 49 µs instead of 41."""
    buf = _flush_buffers.get(device)
    if buf is None:  # first call for this device: check it here, not on every timed call
        if not isinstance(device, torch.device) or device.type != "cuda":
            raise ValueError(f"device={device!r} must be a CUDA torch.device such as torch.device('cuda', 0): "
                             "flush_l2 evicts a GPU's L2 cache")
        l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 64 << 20
        buf = _flush_buffers[device] = torch.zeros(2 * l2 // 4, dtype=torch.int32, device=device)
    buf.max()


def _time_once(fn: Callable[[], object], device: torch.device, hold: bool = False,
               flush: bool = False) -> float:
    """Seconds taken by one call of ``fn``; on a GPU, waits for the queued kernels to finish.

    hold (CUDA): first queue a kernel that spins for HOLD_CYCLES, so that the start event, fn's
    kernels and the end event are all queued before the GPU reaches them. The time is then the
    GPU's work alone, without the microseconds the host takes to launch fn (a graph replay's
    launch, or Python's): a few-microsecond kernel would otherwise be timed with its launch.
    flush (CUDA): first evict the L2 cache (`flush_l2`, not timed), so fn reads from memory."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            if flush:
                flush_l2(device)
            torch.cuda.synchronize()
            if hold and hasattr(torch.cuda, "_sleep"):  # (a private helper: without it, no hold)
                torch.cuda._sleep(HOLD_CYCLES)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds
    if device.type == "mps":
        torch.mps.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.mps.synchronize()
        return time.perf_counter() - t0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(fn: Callable[[], object], *, warmup: int = 3, repeats: int = 20,
            device: str | torch.device | None = None, hold: bool = False, flush: bool = False) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed calls.

    ``device`` says where ``fn`` runs: None or 'cpu' uses `time.perf_counter`; a CUDA device uses
    `torch.cuda.Event` pairs and synchronizes, because GPU calls return before the work is done.
    ``hold`` (CUDA only): time the GPU's work without the host's launch (see `_time_once`);
    ``flush`` (CUDA only): evict the L2 cache before each timed call (`flush_l2`).
    """
    check_callable("fn", fn)
    _check_counts(warmup, repeats)
    check_flag("hold", hold)
    check_flag("flush", flush)
    dev = _timing_device(device)
    for _ in range(warmup):
        fn()
    return Timing.from_times(_time_once(fn, dev, hold, flush) for _ in range(repeats))


def compare(fns: Mapping[str, Callable[[], object]], *, warmup: int = 3, repeats: int = 20,
            device: str | torch.device | None = None, baseline: str | None = None,
            hold: bool = False, flush: bool = False) -> dict[str, Timing]:
    """Time several functions with their repeats interleaved, so noise hits them all equally.

    Round r calls every function once, starting at position r (mod len(fns)): for a, b, c the
    order is a b c | b c a | c a b | ... The warm-up rounds are interleaved the same way. Returns
    ``{name: Timing}`` in the order of ``fns``; pass the result and ``baseline`` to `ratios`.
    ``baseline`` changes no timing: given here, it is only checked to be one of the names, before
    anything runs, so that a typo fails at once rather than after a long run.
    ``hold`` (CUDA only): time the GPU's work without the host's launch (see `_time_once`);
    ``flush`` (CUDA only): evict the L2 cache before each timed call (`flush_l2`).
    """
    if not isinstance(fns, Mapping):
        raise TypeError(f"fns must be a dict of name -> function, got {type(fns).__name__}")
    if not fns:
        raise ValueError("fns must hold at least one function, got an empty dict")
    for name, fn in fns.items():
        check_callable(f"fns[{name!r}]", fn)
    if baseline is not None and baseline not in list(fns):  # (a list: an unhashable baseline is just wrong)
        raise ValueError(f"baseline={baseline!r} is not one of the names in fns: {list(fns)}")
    _check_counts(warmup, repeats)
    check_flag("hold", hold)
    check_flag("flush", flush)
    dev = _timing_device(device)
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            if r < warmup:
                fns[name]()
            else:
                times[name].append(_time_once(fns[name], dev, hold, flush))
    return {name: Timing.from_times(times[name]) for name in names}


def cuda_graph(fn: Callable[[], object], *, warmup: int = 3) -> Callable[[], object]:
    """fn captured once in a CUDA graph: the function returned replays its kernels, and returns
    what fn returned at capture (the same tensors, rewritten by every replay).

    Launching a kernel from Python costs microseconds of CPU time (argument checks, a Triton or
    PyTorch dispatcher) before the GPU starts. A memory-bound GEMV on a large GPU takes about as
    long, so timing one eager call at a time measures the launch as much as the kernel. Serving
    stacks replay CUDA graphs for exactly this reason; timing a replay measures the GPU's work.
    fn runs `warmup` times first, on a side stream (compiling, tuning, allocating), then once
    under capture. fn must not synchronize or read GPU values on the host while captured.
    """
    check_callable("fn", fn)
    _check_counts(warmup, 1)
    if not torch.cuda.is_available():
        raise RuntimeError("cuda_graph needs a CUDA GPU; on other devices call fn itself")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay():
        graph.replay()
        return out

    return replay


def ratios(timings: Mapping[str, Timing], baseline: str) -> dict[str, float]:
    """Speed-up of each entry over ``baseline``: baseline median / its median (> 1 = faster)."""
    if not isinstance(timings, Mapping) or not all(isinstance(t, Timing) for t in timings.values()):
        raise TypeError("timings must be the dict of name -> Timing returned by compare()")
    if baseline not in list(timings):
        raise ValueError(f"baseline={baseline!r} is not one of the names in timings: {list(timings)}")
    undefined = [name for name, t in timings.items() if not 0 <= t.median < math.inf]
    if undefined:
        raise ValueError(f"{undefined} have a median that is negative, NaN or inf seconds; expected Timings "
                         "measured by measure() or compare()")
    zero = [name for name, t in timings.items() if t.median == 0]
    if zero:
        raise ValueError(f"{zero} took 0 s by the clock (too little work for its resolution): time more "
                         "work per call, e.g. a loop of calls inside each function")
    base = timings[baseline].median
    return {name: base / t.median for name, t in timings.items()}


def copies_beyond_cache(nbytes: int, *, factor: float = 2.0, most: int = 64) -> int:
    """How many copies of an `nbytes` weight together exceed `factor` × the last-level cache.

    Time calls that each use the next copy (`round_robin`) and every call finds its weight evicted
    by the others, as a model's layers are: a "cold" timing. At least 1, at most `most`; 1 if
    the cache size is unknown.
    """
    if not is_int(nbytes) or nbytes <= 0:
        raise ValueError(f"nbytes={nbytes!r} must be a positive int (bytes of one copy)")
    if not is_real(factor) or not 0 < factor < math.inf:
        raise ValueError(f"factor={factor!r} must be a positive number (the copies exceed factor x the cache)")
    if not is_int(most) or most < 1:
        raise ValueError(f"most={most!r} must be a positive int (the most copies to make)")
    cache = cache_bytes()
    return 1 if cache is None else max(1, min(most, math.ceil(factor * cache / nbytes)))


def round_robin(fns: Sequence[Callable]) -> Callable:
    """One function that calls fns[0], fns[1], ..., fns[-1], fns[0], ... in turn, one per call,
    passing on its arguments."""
    if not isinstance(fns, Iterable) or isinstance(fns, (str, Mapping)):
        raise TypeError(f"fns must be a list of functions such as [f, g], got {type(fns).__name__}")
    fns = list(fns)
    if not fns:
        raise ValueError("fns must hold at least one function")
    for i, fn in enumerate(fns):
        check_callable(f"fns[{i}]", fn)
    turn = itertools.cycle(fns)
    return lambda *args, **kwargs: next(turn)(*args, **kwargs)
