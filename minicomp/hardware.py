"""Bits, bytes and your hardware: the measuring tools behind lesson 00.

Four groups of helpers, read top to bottom:

1. Which device, which machine: `pick_device`, `available_devices`, `describe_machine`,
   `format_machine`.
2. Timing done right: `num_threads`, `measure` (warm-up, many repeats, the median) and `compare`, which
   interleaves the repeats of several functions round-robin so that machine noise hits them all
   equally; `ratios` turns the result into speed-ups against a baseline.
3. Counting bytes: `dtype_bytes`, `tensor_bytes`, `model_bytes` (tied weights counted once),
   `weight_bytes(num_params, bits)` and `human_bytes`.
4. Where the time goes: `make_matmul` / `matmul_flops` (GFLOP/s per dtype), `linear_cost`
   (FLOPs, bytes and arithmetic intensity of y = x Wᵀ), `gemv_vs_gemm` (throughput against
   batch size), `measure_bandwidth` and `roofline`.

Nothing here needs a GPU; CUDA and Apple MPS are used when present.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "available_devices", "pick_device", "describe_machine", "format_machine",
    "num_threads", "Timing", "measure", "compare", "ratios", "cache_bytes", "copies_beyond_cache",
    "round_robin",
    "dtype_bytes", "tensor_bytes", "model_bytes", "weight_bytes", "human_bytes",
    "make_matmul", "matmul_flops", "linear_cost", "gemv_vs_gemm", "measure_bandwidth",
    "roofline",
]

ENV_DEVICE = "MINICOMP_DEVICE"


# ----------------------------------------------------------------------------------------------
# 1. Devices and the machine
# ----------------------------------------------------------------------------------------------

def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The devices PyTorch can use here, e.g. ``['cpu', 'cuda:0', 'cuda:1']`` or ``['cpu', 'mps']``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def _checked_device(value, name: str) -> torch.device:
    """Turn ``value`` (str or torch.device) into an available torch.device, or raise naming ``name``."""
    if not isinstance(value, (str, torch.device)):
        raise TypeError(f"{name} must be a str or torch.device such as 'cpu' or 'cuda:0', "
                        f"got {type(value).__name__} {value!r}")
    available = available_devices()
    try:
        dev = torch.device(value.strip() if isinstance(value, str) else value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name}={str(value)!r} is not a device name; expected one of "
                         f"{available}") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index < torch.cuda.device_count():
            return torch.device("cuda", index)
    if dev.type == "mps" and _mps_available():
        return torch.device("mps")
    raise ValueError(f"{name}={str(value)!r} is not available on this machine; available devices: "
                     f"{available}")


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device to run on: CUDA if present, then Apple MPS, then CPU.

    Precedence: the ``prefer`` argument, then the environment variable ``MINICOMP_DEVICE``
    (e.g. ``MINICOMP_DEVICE=cpu`` to force the CPU, or ``cuda:1``), then the automatic choice.
    An override that names an unknown or unavailable device raises ValueError listing the
    devices that are available.
    """
    if prefer is not None:
        return _checked_device(prefer, "prefer")
    env = os.environ.get(ENV_DEVICE, "").strip()
    if env:
        return _checked_device(env, ENV_DEVICE)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _sysctl(key: str) -> str:
    try:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=2)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# CPU features that decide whether low-precision matmuls are fast (x86 and Arm names).
_INTERESTING_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                      "amx_bf16", "amx_int8", "asimd", "asimddp", "i8mm", "bf16", "sve")


def _cpu_info() -> tuple[str, list[str], int | None]:
    """(model name, interesting feature flags, physical cores) from the best source this OS has."""
    name, flags, physical = "", [], None
    cpuinfo = _read("/proc/cpuinfo")
    if cpuinfo:
        for key in ("model name", "Hardware", "Processor", "cpu model"):
            m = re.search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
            if m:
                name = m.group(1).strip()
                break
        m = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        if m:
            present = set(m.group(1).split())
            flags = [f for f in _INTERESTING_FLAGS if f in present]
        cores = set()  # one (physical id, core id) pair per physical core
        for block in cpuinfo.split("\n\n"):
            pkg = re.search(r"^physical id\s*:\s*(\d+)", block, re.MULTILINE)
            core = re.search(r"^core id\s*:\s*(\d+)", block, re.MULTILINE)
            if pkg and core:
                cores.add((pkg.group(1), core.group(1)))
        physical = len(cores) or None
    if sys.platform == "darwin":
        name = name or _sysctl("machdep.cpu.brand_string")
        n = _sysctl("hw.physicalcpu")
        physical = int(n) if n.isdigit() else physical
    if physical is None:
        try:
            import psutil  # optional; present with Jupyter

            physical = psutil.cpu_count(logical=False)
        except Exception:
            physical = None
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return name, flags, physical


def _ram_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def describe_machine() -> dict:
    """Facts about this machine that explain the numbers the lessons measure.

    Keys: cpu, cpu_capability (the SIMD level PyTorch dispatches to, e.g. 'AVX2'), cpu_features,
    physical_cores, logical_cores, torch_threads, cache_bytes (last level), ram_bytes, os, machine, python, torch,
    cuda_available, cuda_version, gpus (list of dicts: index, name, memory_bytes, capability),
    mps_available, device (what `pick_device()` chooses). A value this OS cannot tell is None.
    """
    cpu, flags, physical = _cpu_info()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:
        capability = None
    gpus = []
    try:
        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"index": i, "name": p.name, "memory_bytes": int(p.total_memory),
                         "capability": f"{p.major}.{p.minor}"})
    except Exception:  # a broken driver must not stop us describing the rest
        pass
    try:
        device = str(pick_device())
    except ValueError as e:  # a bad MINICOMP_DEVICE must not stop us describing the machine
        device = f"invalid override ({e})"
    return {
        "cpu": cpu, "cpu_capability": capability, "cpu_features": flags,
        "physical_cores": physical, "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "cache_bytes": cache_bytes(), "ram_bytes": _ram_bytes(),
        "os": platform.platform(), "machine": platform.machine(),
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda,
        "gpus": gpus, "mps_available": _mps_available(), "device": device,
    }


def format_machine(desc: Mapping) -> str:
    """One paragraph, for people, from a `describe_machine()` dict."""
    if not isinstance(desc, Mapping):
        raise TypeError(f"desc must be the dict returned by describe_machine(), got "
                        f"{type(desc).__name__}")
    g = desc.get
    unknown = "?"
    cpu = (f"CPU: {g('cpu', unknown)} ({g('physical_cores') or unknown} physical / "
           f"{g('logical_cores') or unknown} logical cores, PyTorch uses "
           f"{g('torch_threads', unknown)} threads, SIMD level {g('cpu_capability') or unknown})")
    if g("cache_bytes"):
        cpu += f", last-level cache {human_bytes(g('cache_bytes'), binary=True)}"
    if g("cpu_features"):
        cpu += f", features: {' '.join(g('cpu_features'))}"
    ram = human_bytes(g("ram_bytes")) if g("ram_bytes") else "unknown"
    gpus = g("gpus") or []
    if gpus:
        gpu = "GPU: " + "; ".join(f"{d['name']} ({human_bytes(d['memory_bytes'])}, "
                                  f"compute capability {d['capability']})" for d in gpus)
        gpu += f", CUDA {g('cuda_version')}"
    else:
        gpu = "no CUDA GPU"
    gpu += ", Apple MPS available" if g("mps_available") else ", no Apple MPS"
    return (f"{cpu}. RAM: {ram}. OS: {g('os', unknown)}. Python {g('python', unknown)}, "
            f"PyTorch {g('torch', unknown)}. {gpu}. minicomp will run on: {g('device', unknown)}.")


# ----------------------------------------------------------------------------------------------
# 2. Timing
# ----------------------------------------------------------------------------------------------

@contextmanager
def num_threads(n: int):
    """Run the ``with`` block with PyTorch using ``n`` CPU threads, then restore the old count.

    One thread gives steadier timings on a machine shared with other programs: a multi-threaded
    kernel waits for its slowest thread, and a busy core makes that thread slow.
    """
    if not isinstance(n, int) or isinstance(n, bool):
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
        return cls(median=statistics.median(times), mean=statistics.fmean(times),
                   min=min(times), times=times, repeats=len(times))

    def __str__(self) -> str:
        return f"{self.median * 1e3:.3f} ms median (min {self.min * 1e3:.3f} ms, {self.repeats} repeats)"


def _check_counts(warmup, repeats) -> None:
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if value < low:
            raise ValueError(f"{name}={value} must be >= {low}")


def _check_callable(fn, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable (a function taking no arguments), got "
                        f"{type(fn).__name__} {fn!r}")


def _timing_device(device) -> torch.device:
    return torch.device("cpu") if device is None else _checked_device(device, "device")


HOLD_CYCLES = 200_000  # ~0.1 ms of a GPU's clock: time for the host to queue a call behind it


def _time_once(fn: Callable[[], object], device: torch.device, hold: bool = False) -> float:
    """Seconds taken by one call of ``fn``; on a GPU, waits for the queued kernels to finish.

    hold (CUDA): first queue a kernel that spins for HOLD_CYCLES, so that the start event, fn's
    kernels and the end event are all queued before the GPU reaches them. The time is then the
    GPU's work alone, without the microseconds the host takes to launch fn (a graph replay's
    launch, or Python's): a few-microsecond kernel would otherwise be timed with its launch."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
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
            device: str | torch.device | None = None, hold: bool = False) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed calls.

    ``device`` says where ``fn`` runs: None or 'cpu' uses `time.perf_counter`; a CUDA device uses
    `torch.cuda.Event` pairs and synchronizes, because GPU calls return before the work is done.
    ``hold`` (CUDA only): time the GPU's work without the host's launch (see `_time_once`).
    """
    _check_callable(fn, "fn")
    _check_counts(warmup, repeats)
    dev = _timing_device(device)
    for _ in range(warmup):
        fn()
    return Timing.from_times(_time_once(fn, dev, hold) for _ in range(repeats))


def compare(fns: Mapping[str, Callable[[], object]], *, warmup: int = 3, repeats: int = 20,
            device: str | torch.device | None = None, baseline: str | None = None,
            hold: bool = False) -> dict[str, Timing]:
    """Time several functions with their repeats interleaved, so noise hits them all equally.

    Round r calls every function once, starting at position r (mod len(fns)): for a, b, c the
    order is a b c | b c a | c a b | ... The warm-up rounds are interleaved the same way. Returns
    ``{name: Timing}`` in the order of ``fns``; pass the result and ``baseline`` to `ratios`.
    ``hold`` (CUDA only): time the GPU's work without the host's launch (see `_time_once`).
    """
    if not isinstance(fns, Mapping):
        raise TypeError(f"fns must be a dict of name -> function, got {type(fns).__name__}")
    if not fns:
        raise ValueError("fns must hold at least one function, got an empty dict")
    for name, fn in fns.items():
        _check_callable(fn, f"fns[{name!r}]")
    if baseline is not None and baseline not in fns:
        raise ValueError(f"baseline={baseline!r} is not one of the names in fns: {list(fns)}")
    _check_counts(warmup, repeats)
    dev = _timing_device(device)
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            if r < warmup:
                fns[name]()
            else:
                times[name].append(_time_once(fns[name], dev, hold))
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
    _check_callable(fn, "fn")
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
    if baseline not in timings:
        raise ValueError(f"baseline={baseline!r} is not one of the names in timings: {list(timings)}")
    base = timings[baseline].median
    return {name: base / t.median for name, t in timings.items()}


def cache_bytes() -> int | None:
    """Size of this CPU's last-level cache in bytes (Linux sysfs), or None where it is unknown.

    Timing one layer over and over measures that layer with its weights in this cache, if they
    fit. In a model, the other layers run in between and push them out, unless the whole model fits.
    """
    best = None
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((d / "level").read_text())
            text = (d / "size").read_text().strip().upper()
            kind = (d / "type").read_text().strip()
        except (OSError, ValueError):
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        size = int(text[:-1]) * units[text[-1]] if text[-1:] in units else int(text) if text.isdigit() else None
        if size and kind != "Instruction" and (best is None or level > best[0]):
            best = (level, size)
    return None if best is None else best[1]


def copies_beyond_cache(nbytes: int, *, factor: float = 2.0, most: int = 64) -> int:
    """How many copies of an `nbytes` weight together exceed `factor` × the last-level cache.

    Time calls that each use the next copy (`round_robin`) and every call finds its weight evicted
    by the others, as a model's layers are: a "cold" timing. At least 1, at most `most`; 1 if
    the cache size is unknown.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral) or nbytes <= 0:
        raise ValueError(f"nbytes={nbytes!r} must be a positive int (bytes of one copy)")
    cache = cache_bytes()
    return 1 if cache is None else max(1, min(most, math.ceil(factor * cache / nbytes)))


def round_robin(fns: Sequence[Callable]) -> Callable:
    """One function that calls fns[0], fns[1], ..., fns[-1], fns[0], ... in turn, one per call,
    passing on its arguments."""
    fns = list(fns)
    if not fns:
        raise ValueError("fns must hold at least one function")
    for i, fn in enumerate(fns):
        _check_callable(fn, f"fns[{i}]")
    turn = itertools.cycle(fns)
    return lambda *args, **kwargs: next(turn)(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# 3. Counting bytes
# ----------------------------------------------------------------------------------------------

def dtype_bytes(dtype: torch.dtype) -> int:
    """Bytes per element of a torch dtype: float32 -> 4, bfloat16 -> 2, int8 -> 1."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32, got "
                        f"{type(dtype).__name__} {dtype!r}")
    itemsize = getattr(dtype, "itemsize", None)
    return int(itemsize) if itemsize is not None else torch.empty((), dtype=dtype).element_size()


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes held by the elements of ``t`` (numel × element size; shape and strides ignored)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    return t.numel() * t.element_size()


def model_bytes(model: nn.Module, include_buffers: bool = True) -> int:
    """Bytes of a model's parameters (and buffers, e.g. BatchNorm statistics).

    A tensor reachable from two places is counted once: tied weights (an output layer that shares
    the embedding matrix) occupy memory once, whether they are the same Parameter object or two
    tensors over the same memory.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    tensors = list(model.parameters())
    if include_buffers:
        tensors += list(model.buffers())
    seen, total = set(), 0
    for t in tensors:
        # meta tensors have no memory (data_ptr 0), so tell them apart by identity
        key = (t.data_ptr(), t.numel(), t.dtype) if t.data_ptr() else ("id", id(t))
        if key not in seen:
            seen.add(key)
            total += tensor_bytes(t)
    return total


def weight_bytes(num_params: int, bits: int) -> int:
    """Bytes to store ``num_params`` weights at ``bits`` bits each: ceil(num_params · bits / 8).

    7_000_000_000 params: 32 bits -> 28e9 B, 16 -> 14e9, 8 -> 7e9, 4 -> 3.5e9 (scales and zero
    points of a quantized model come on top; later lessons count them).
    """
    for name, value in (("num_params", num_params), ("bits", bits)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            hint = f"; write int({value!r})" if isinstance(value, float) and value.is_integer() else ""
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}{hint}")
    if num_params < 0:
        raise ValueError(f"num_params={num_params} must be >= 0")
    if bits <= 0:
        raise ValueError(f"bits={bits} must be a positive number of bits such as 4, 8, 16 or 32")
    return (int(num_params) * int(bits) + 7) // 8


def human_bytes(n: float, *, binary: bool = False) -> str:
    """``28e9 -> '28.0 GB'``. Decimal SI units by default (1 GB = 10⁹ B, as disk and GPU makers
    write); ``binary=True`` gives IEC units (1 GiB = 2³⁰ B ≈ 1.074 GB, as `free -h` writes)."""
    if not isinstance(n, numbers.Real) or isinstance(n, bool) or not math.isfinite(n) or n < 0:
        raise ValueError(f"n must be a finite number of bytes >= 0, got {n!r}")
    base = 1024 if binary else 1000
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB") if binary else ("B", "kB", "MB", "GB", "TB", "PB")
    if n < base:
        return f"{n:.0f} B"
    i = min(int(math.log(n, base)), len(units) - 1)
    value = n / base**i
    if round(value, 1) >= base and i + 1 < len(units):  # 999.96 kB prints as 1.0 MB
        i, value = i + 1, value / base
    return f"{value:.1f} {units[i]}"


# ----------------------------------------------------------------------------------------------
# 4. Where the time goes: FLOPs, bytes, bandwidth
# ----------------------------------------------------------------------------------------------

_MATMUL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int8)


def _check_positive_ints(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{name}={value} must be >= 1")


def make_matmul(m: int, k: int, n: int, dtype: torch.dtype = torch.float32,
                device: str | torch.device | None = None, *, seed: int = 0,
                ) -> tuple[Callable[[], torch.Tensor] | None, dict]:
    """A zero-argument function computing A @ B with A [m, k], B [k, n] in ``dtype``, plus info.

    int8 uses ``torch._int_mm`` (int8 × int8 -> int32, exact) when this PyTorch and device accept
    the shapes (CUDA wants m > 16 and k, n multiples of 8); otherwise it multiplies the same int8
    values in float32 and says so in ``info['backend']`` and ``info['note']``. A float dtype the
    device cannot multiply gives ``(None, info)`` with ``info['supported'] = False``.
    Info keys: dtype, device, m, k, n, flops (= 2·m·k·n), backend, supported, note.
    """
    _check_positive_ints(m=m, k=k, n=n)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.bfloat16, got "
                        f"{type(dtype).__name__} {dtype!r}")
    if dtype not in _MATMUL_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; expected one of "
                         f"{[str(d) for d in _MATMUL_DTYPES]}")
    dev = _timing_device(device)
    g = torch.Generator().manual_seed(seed)
    info = {"dtype": str(dtype).replace("torch.", ""), "device": str(dev), "m": m, "k": k, "n": n,
            "flops": 2 * m * k * n, "backend": "torch.matmul", "supported": True, "note": ""}
    if dtype == torch.int8:
        a = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8).to(dev)  # [m, k]
        b = torch.randint(-128, 128, (k, n), generator=g, dtype=torch.int8).to(dev)  # [k, n]
        reason = "this PyTorch has no torch._int_mm"
        if hasattr(torch, "_int_mm"):
            try:
                torch._int_mm(a, b)
                info["backend"] = "torch._int_mm (int8 x int8 -> int32)"
                return (lambda: torch._int_mm(a, b)), info
            except (RuntimeError, NotImplementedError) as e:
                reason = f"torch._int_mm refused these inputs: {str(e).splitlines()[0]}"
        af, bf = a.float(), b.float()
        info["backend"] = "float32 matmul of int8 values (fallback)"
        info["note"] = f"{reason}; this times float32, not an int8 kernel"
        return (lambda: af @ bf), info
    a = torch.randn(m, k, generator=g).to(device=dev, dtype=dtype)  # [m, k]
    b = torch.randn(k, n, generator=g).to(device=dev, dtype=dtype)  # [k, n]
    try:
        a @ b
    except (RuntimeError, NotImplementedError) as e:
        info.update(supported=False, backend="none",
                    note=f"{info['dtype']} matmul is not supported on {dev}: {str(e).splitlines()[0]}")
        return None, info
    if dev.type == "cpu" and dtype != torch.float32:
        info["note"] = ("on a CPU, 16-bit matmuls are fast only with hardware support "
                        "(AVX512-BF16/AMX on x86, BF16/FP16 instructions on Arm)")
    return (lambda: a @ b), info


def matmul_flops(m: int = 512, k: int = 512, n: int = 512, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None, *, warmup: int = 2, repeats: int = 10,
                 seed: int = 0) -> dict:
    """Measured throughput of A [m, k] @ B [k, n]: the `make_matmul` info plus seconds (median),
    gflops (2·m·k·n / seconds / 1e9) and timing. Unsupported: seconds and gflops are nan."""
    _check_counts(warmup, repeats)
    fn, info = make_matmul(m, k, n, dtype, device, seed=seed)
    if fn is None:
        return {**info, "seconds": math.nan, "gflops": math.nan, "timing": None}
    timing = measure(fn, warmup=warmup, repeats=repeats, device=info["device"])
    return {**info, "seconds": timing.median, "gflops": info["flops"] / timing.median / 1e9,
            "timing": timing}


def linear_cost(batch: int, in_features: int, out_features: int, *, weight_itemsize: float = 4,
                act_itemsize: float = 4) -> dict:
    """FLOPs and bytes of y = x Wᵀ with x [batch, in], W [out, in], y [batch, out].

    flops = 2·batch·in·out (one multiply and one add per weight per row of x);
    bytes = weight (in·out·weight_itemsize) + activations (batch·(in + out)·act_itemsize),
    each read or written once; intensity = flops / bytes, in FLOP per byte.
    ``weight_itemsize`` may be fractional: 0.5 for int4.
    """
    _check_positive_ints(batch=batch, in_features=in_features, out_features=out_features)
    for name, v in (("weight_itemsize", weight_itemsize), ("act_itemsize", act_itemsize)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not v > 0:
            raise ValueError(f"{name}={v!r} must be a positive number of bytes per element")
    flops = 2 * batch * in_features * out_features
    w = in_features * out_features * weight_itemsize
    act = batch * (in_features + out_features) * act_itemsize
    return {"batch": batch, "flops": flops, "weight_bytes": w, "activation_bytes": act,
            "bytes": w + act, "intensity": flops / (w + act)}


def gemv_vs_gemm(batches: Iterable[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                 in_features: int = 2048, out_features: int = 2048, *,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
                 warmup: int = 2, repeats: int = 10, seed: int = 0) -> list[dict]:
    """Measure y = x Wᵀ for one weight W [out, in] and each batch size (x [batch, in]).

    Batch 1 is a matrix-vector product (GEMV), large batches are matrix-matrix (GEMM). The batch
    sizes are timed interleaved with `compare`. One row per batch: the `linear_cost` keys plus
    seconds, gflops and gbytes_per_s (bytes / seconds / 1e9).
    """
    batches = list(batches)
    if not batches:
        raise ValueError("batches must hold at least one batch size, got none")
    if len(set(batches)) != len(batches):
        raise ValueError(f"batches={batches} must not repeat a batch size")
    _check_positive_ints(in_features=in_features, out_features=out_features,
                         **{f"batches[{i}]": b for i, b in enumerate(batches)})
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype!r} must be a floating torch dtype such as torch.float32")
    dev = _timing_device(device)
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out_features, in_features, generator=g).to(device=dev, dtype=dtype)  # [out, in]
    xs = {b: torch.randn(b, in_features, generator=g).to(device=dev, dtype=dtype) for b in batches}
    fns = {b: (lambda x=xs[b]: torch.nn.functional.linear(x, W)) for b in batches}
    timings = compare(fns, warmup=warmup, repeats=repeats, device=dev)
    size = dtype_bytes(dtype)
    rows = []
    for b in batches:
        cost = linear_cost(b, in_features, out_features, weight_itemsize=size, act_itemsize=size)
        s = timings[b].median
        rows.append({**cost, "seconds": s, "gflops": cost["flops"] / s / 1e9,
                     "gbytes_per_s": cost["bytes"] / s / 1e9})
    return rows


def measure_bandwidth(nbytes: int = 64_000_000, *, method: str = "read",
                      device: str | torch.device | None = None, warmup: int = 2,
                      repeats: int = 10) -> dict:
    """Rough memory bandwidth: time a pass over an ``nbytes`` float32 buffer.

    method='read' sums the buffer (nbytes read); method='copy' copies it into a second buffer
    (nbytes read + nbytes written). Pick nbytes well above the last-level cache (tens of MB) to
    see main memory rather than cache. Returns method, nbytes, bytes_moved, seconds,
    gbytes_per_s and timing.
    """
    _check_positive_ints(nbytes=nbytes)
    if nbytes < 4:
        raise ValueError(f"nbytes={nbytes} must be at least 4 (one float32)")
    if method not in ("read", "copy"):
        raise ValueError(f"method={method!r} must be 'read' or 'copy'")
    dev = _timing_device(device)
    x = torch.ones(nbytes // 4, device=dev)
    if method == "read":
        fn, moved = (lambda: x.sum()), x.numel() * 4
    else:
        y = torch.empty_like(x)
        fn, moved = (lambda: y.copy_(x)), 2 * x.numel() * 4
    timing = measure(fn, warmup=warmup, repeats=repeats, device=dev)
    return {"method": method, "nbytes": x.numel() * 4, "bytes_moved": moved,
            "seconds": timing.median, "gbytes_per_s": moved / timing.median / 1e9, "timing": timing}


def roofline(peak_flops: float, bandwidth: float, intensity):
    """Attainable throughput = min(peak_flops, bandwidth × intensity).

    Use consistent units: GFLOP/s with GB/s gives GFLOP/s (intensity is FLOP per byte). The
    ridge point peak_flops / bandwidth is the intensity where a kernel stops being memory-bound.
    ``intensity`` may be a number (returns a float) or an iterable of numbers (returns a list).
    """
    for name, v in (("peak_flops", peak_flops), ("bandwidth", bandwidth)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not v > 0:
            raise ValueError(f"{name}={v!r} must be a positive number")
    if isinstance(intensity, numbers.Real) and not isinstance(intensity, bool):
        if intensity < 0:
            raise ValueError(f"intensity={intensity!r} must be >= 0 FLOP per byte")
        return float(min(peak_flops, bandwidth * intensity))
    if not isinstance(intensity, Iterable):
        raise TypeError(f"intensity must be a number or an iterable of numbers, got "
                        f"{type(intensity).__name__}")
    return [roofline(peak_flops, bandwidth, float(i)) for i in intensity]
