"""Which device, which machine (lesson 00): `pick_device`, `available_devices`,
`describe_machine`, `format_machine` and `cache_bytes`. Nothing here needs a GPU; CUDA and Apple
MPS are used when present."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from minicomp.hardware.sizes import human_bytes

ENV_DEVICE = "MINICOMP_DEVICE"


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


def check_device(value, name: str) -> torch.device:
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
        return check_device(prefer, "prefer")
    env = os.environ.get(ENV_DEVICE, "").strip()
    if env:
        return check_device(env, ENV_DEVICE)
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
    compilers (versions of numba, llvmlite and triton, which compile the packed kernels; None if absent),
    cuda_available, cuda_version, gpus (list of dicts: index, name, memory_bytes, capability, sms, l2_bytes), mps_available, device (what `pick_device()` chooses). A value this OS cannot tell is None.
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
                         "capability": f"{p.major}.{p.minor}", "sms": int(p.multi_processor_count),
                         "l2_bytes": int(getattr(p, "L2_cache_size", 0)) or None})
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
        "python": platform.python_version(), "torch": torch.__version__, "compilers": _compiler_versions(),
        "cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda,
        "gpus": gpus, "mps_available": _mps_available(), "device": device,
    }


def _compiler_versions() -> dict[str, str | None]:
    """{package: version, or None where it is not installed} for the kernels' compilers (not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("numba", "llvmlite", "triton"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


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
    compilers = "".join(f", {name} {v}" for name, v in (g("compilers") or {}).items() if v)
    return (f"{cpu}. RAM: {ram}. OS: {g('os', unknown)}. Python {g('python', unknown)}, "
            f"PyTorch {g('torch', unknown)}{compilers}. {gpu}. minicomp will run on: {g('device', unknown)}.")


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
