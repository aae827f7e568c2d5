"""`minicomp bench`: how fast, and how small, are packed weights on this machine?

For each weight size [out, in] and batch size, time y = x Wᵀ in every format, all in one run,
interleaved (see `hardware.compare`), and report each as a speed-up over float32 measured in that
same run, plus the bytes its weight takes. (A contestant over SLOW_FACTOR times slower than the
faster baseline, fp32 or, on a GPU, fp16, such as the reference kernel, is interleaved with the
baselines alone, in a round of its own.)

    fp32             torch F.linear, the baseline
    bf16 / fp16      torch F.linear in 16 bits (bf16 on CPU; fp16 = cuBLAS and bf16 on GPU)
    int8-fused       PackedLinear, 8-bit codes, the fast backend (cpu or triton; as int4-fused)
    int8-torch       torch's dynamic int8 Linear (fbgemm; it quantizes activations too: W8A8)
    int4-reference   PackedLinear, backend="reference": unpack, dequantize, matmul
    int4-fused       PackedLinear, 4-bit group-128 codes, the fast backend (on a CPU: the fused
                     kernel below `cpu.GEMM_ROWS` rows of x, dequantized slabs and BLAS from there)
    int4-torch       torch's own int4 kernel (_weight_int4pack_mm[_for_cpu]) where it exists

Batch 1 is a GEMV: every weight is read once per output, so time follows bytes moved and
fewer bytes win. Large batches are GEMMs, limited by arithmetic, where dense float kernels win.

On a CPU, each contestant is built `hardware.copies_beyond_cache` times (the same weights in
separate memory; the fp32 copies alone are twice the last-level cache) and the calls take the
copies in turn, so every call finds its weight evicted, as a model's layers do. The small int4
copies are evicted too: the calls are interleaved and fp32 is in every round, so between two
uses of one copy all the fp32 copies have been read. (`--warm-cache` times one copy
instead: on a server CPU with hundreds of MB of cache, that times float32 from the cache.)

On a GPU, each contestant is captured in a CUDA graph and the replays are timed
(`hardware.cuda_graph`): a batch-1 GEMV there takes a few microseconds, about what Python takes
to launch a kernel, and serving stacks replay graphs for that reason. Each replay is queued
behind a kernel that spins for ~0.1 ms (`hardware.measure(hold=True)`), so even the replay's own
launch is out of the time. The eager times (one call at a time, launch included) are kept too, as
`eager_median_s`. One copy of each weight, and the L2 cache flushed before each timed call
(`hardware.flush_l2`; `--warm-cache` leaves it): an H200's 50 MB L2 holds a whole 8192² 4-bit
weight, which a model's other layers would have evicted.

    minicomp bench                       # CPU, and the GPU too when there is one
    minicomp bench --quick               # smaller, for a first look (~1 minute)
    minicomp bench --sizes 4096x4096 --batches 1,16 --device cpu

Before it is timed, each contestant's output is checked against fp32's (and an int4 one's against
int4-reference's): a wrong answer is not timed but listed in "skipped", with the reason, as are
the contestants that cannot run here at all (no numba, no such op in this torch, ...).

Results go to benchmarks/results/bench-<device>-<time>.json (never over an earlier file) with
`hardware.describe_machine()`. Each row's `weight_bytes` is the stored weight (int4-torch's: the
codes and scales as torch's kernel holds them); a PackedLinear row also records
`kernel_cache_bytes`, what its backend keeps beside it while it runs (the cpu kernel's blocked
copy of the codes, triton's split-K sums and steps-first copy): the memory it takes at run time
is the sum of the two. `fp32_median_s` is the fp32 time a row's ratio is against: that of its
own round, for a slow contestant.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minicomp import hardware
from minicomp.checks import is_int, is_real
from minicomp.cli import folder_argument
from minicomp.doctor import unwritable
from minicomp.hardware.timing import _check_counts
from minicomp.kernels import BACKENDS, PackedLinear
from minicomp.kernels.cpu import describe_threads
from minicomp.kernels.triton import tuned as triton_tuned

GROUP_SIZE = 128
# (device type, size, batch, variant, minimum speed-up over the baseline) that the course promises
TARGETS = [
    {"device": "cpu", "out": 4096, "in": 4096, "batch": 1, "variant": "int4-fused", "baseline": "fp32",
     "min_ratio": 2.0, "what": "INT4 g128 fused GEMV 4096x4096 batch 1 at least 2x faster than fp32"},
    {"device": "cuda", "out": 8192, "in": 8192, "batch": 1, "variant": "int4-fused", "baseline": "fp16",
     "min_ratio": 2.5, "what": "Triton W4A16 GEMV 8192x8192 batch 1 at least 2.5x faster than fp16 cuBLAS"},
]
SLOW_FACTOR = 5  # a contestant this many times slower than the baseline is timed in a round of its own
MIN_BYTES_RATIO = 7.5  # packed int4 weights at least 7.5x smaller than float32
MAX_CALL_S = 0.5  # a contestant whose one call takes longer is skipped for that case
# Each contestant's output is checked before it is timed (`_check_outputs`): a wrong answer is
# not timed. Relative (Frobenius) error against fp32: int4 g128 round-to-nearest is ~0.1 off, a
# wrong layout or sign ~1; and an int4 kernel against int4-reference (the same codes), which
# only the rounding of its arithmetic separates (fp16 or bf16 on a GPU: ~0.005).
MAX_ERROR_VS_FP32 = 0.25
MAX_ERROR_VS_REFERENCE = 0.02


class _Unavailable(Exception):
    """A contestant that cannot run here; the message says why (no such op in this torch, ...)."""


# ── the contestants ─────────────────────────────────────────────────────────────────────────
def _torch_int4(w: torch.Tensor, qw, device: torch.device) -> tuple[Callable, int]:
    """torch's built-in int4 matmul for the same codes, and the bytes it reads: its own packing
    of the codes, and its scales and zeros ([in / g, out, 2], float32 on a CPU, bfloat16 on a
    GPU: more than ours). Raises _Unavailable where this build has no such kernel."""
    out, n_in = w.shape
    codes = qw.codes.to(torch.int32)
    s = qw.scale.float()
    z = (8 - qw.zero.float()) * s  # tinygemm stores (q - 8)·s + z_float; ours is (q - zero)·s
    sz = torch.stack([s, z], -1).transpose(0, 1).contiguous()  # [in / g, out, 2]
    try:
        if device.type == "cpu":
            op = torch.ops.aten._weight_int4pack_mm_for_cpu
            wp = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 2)
            dtype = torch.float32
        else:
            op = torch.ops.aten._weight_int4pack_mm
            packed = (codes[:, 0::2] << 4 | codes[:, 1::2]).to(torch.uint8).to(device)  # torchao's order
            wp = torch.ops.aten._convert_weight_to_int4pack(packed, 8)
            dtype = torch.bfloat16
        sz = sz.to(device, dtype)
        x = torch.randn(1, n_in, device=device, dtype=dtype)
        op(x, wp, GROUP_SIZE, sz)
    except (AttributeError, RuntimeError, NotImplementedError) as err:
        raise _Unavailable(f"torch {torch.__version__} cannot run its int4 kernel here: {_first_line(err)}") from None
    nbytes = wp.numel() * wp.element_size() + sz.numel() * sz.element_size()
    return (lambda xb: op(xb.to(dtype), wp, GROUP_SIZE, sz)), nbytes


def _first_line(err: Exception, most: int = 200) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:most]


def _torch_dynamic_int8(w: torch.Tensor) -> Callable:
    """torch's dynamic int8 Linear for w; raises _Unavailable where it cannot run here."""
    try:  # torch.ao.quantization is deprecated (moving to torchao) but still the built-in int8 path
        from torch.ao.nn.quantized.dynamic import Linear as DynLinear

        lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.data.copy_(w)
        q = torch.ao.quantization.quantize_dynamic(nn.Sequential(lin), {nn.Linear}, dtype=torch.qint8)
        if not isinstance(q[0], DynLinear):
            raise _Unavailable("quantize_dynamic left the layer unquantized (no quantized engine?)")
        q(torch.randn(1, w.shape[1]))
        return q
    except _Unavailable:
        raise
    except Exception as err:  # absent, or no quantized engine on this CPU
        raise _Unavailable(f"torch's dynamic int8 Linear cannot run here: {_first_line(err)}") from None


def contestants(out: int, n_in: int, device: torch.device, seed: int = 0) -> tuple[dict, dict]:
    """({name: f(x) -> y}, {name: weight bytes}) for one weight size on one device.

    x comes in float32 on a CPU and float16 on a GPU; each contestant casts it to what it needs
    (a [batch, in] cast, negligible next to reading the weight). n_in must be a multiple of
    GROUP_SIZE. A contestant that cannot run here is left out (`_contestants` says why)."""
    fns, sizes, _ = _contestants(out, n_in, device, seed)
    return fns, sizes


def _contestants(out: int, n_in: int, device: torch.device, seed: int = 0) -> tuple[dict, dict, dict]:
    """As `contestants`, and {name: why it is left out} for those that cannot run here."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, n_in, generator=g) / math.sqrt(n_in)  # [out, in]
    lin = nn.Linear(n_in, out, bias=False)
    lin.weight.data.copy_(w)
    fns, sizes, missing = {}, {}, {}
    w32 = w.to(device)
    fns["fp32"], sizes["fp32"] = (lambda x: F.linear(x.float(), w32)), w32.numel() * 4
    half = [torch.bfloat16] if device.type == "cpu" else [torch.float16, torch.bfloat16]
    for dt in half:
        wh = w.to(device, dt)
        name = str(dt).replace("torch.", "").replace("float", "fp").replace("bfp", "bf")
        fns[name] = lambda x, wh=wh, dt=dt: F.linear(x.to(dt), wh)
        sizes[name] = wh.numel() * 2
    fused = "cpu" if device.type == "cpu" else "triton"
    p8 = PackedLinear.from_linear(lin, bits=8, group_size=GROUP_SIZE, backend=fused).to(device)
    p4 = PackedLinear.from_linear(lin, bits=4, group_size=GROUP_SIZE, backend=fused).to(device)
    p4_ref = PackedLinear.from_linear(lin, bits=4, group_size=GROUP_SIZE, backend="reference").to(device)
    x1 = torch.zeros(1, n_in, device=device, dtype=torch.float32 if device.type == "cpu" else torch.float16)
    for name, layer in (("int8-fused", p8), ("int4-reference", p4_ref), ("int4-fused", p4)):
        why = BACKENDS[layer.backend].unsupported(layer, x1)  # e.g. no numba, or no triton
        if why is None:
            fns[name], sizes[name] = layer, layer.weight_nbytes
        else:
            missing[name] = f"backend {layer.backend!r} cannot run it: {why}"
    # int8-torch: fbgemm's int8 codes, and its per-row int32 offsets and per-tensor scale. What the
    # process holds, measured once at 8192² (2026-12-01, torch 2.13, x86 engine), was 72 MB
    # against these 67: the rest is fbgemm's padding, too small for the table's ratios to show.
    makers = {"int8-torch": lambda: (_torch_dynamic_int8(w), out * n_in + out * 8)} if device.type == "cpu" else {}
    makers["int4-torch"] = lambda: _torch_int4(w, p4.quantized_weight(), device)
    for name, make in makers.items():
        try:
            fns[name], sizes[name] = make()
        except _Unavailable as err:
            missing[name] = str(err)
    return fns, sizes, missing


def _graphed(calls: dict, log) -> tuple[dict, dict]:
    """Each call captured in a CUDA graph where it can be ({name: replay}, {name: how launched});
    a call that cannot be captured is timed eagerly, and says so."""
    graphed, launch = {}, {}
    for name, call in calls.items():
        try:
            graphed[name], launch[name] = hardware.cuda_graph(call), "cuda graph"
        except Exception as err:  # e.g. a kernel that synchronizes: keep its eager timing
            graphed[name], launch[name] = call, f"eager ({type(err).__name__}: {err})"[:200]
            if log:
                log(f"cuda   {name:<15} not captured in a CUDA graph, timed eagerly: {err}")
    return graphed, launch


def _check_outputs(calls: dict[str, Callable], baselines: list[str]) -> tuple[dict, dict]:
    """One call of each: ({name: relative error of its y against fp32's}, {name: why its y is
    wrong}) for the contestants that are not baselines, before any of them is timed."""
    ys = {name: call().float() for name, call in calls.items()}
    ref = ys["fp32"]

    def error(y, against):
        return ((y - against).norm() / against.norm().clamp_min(1e-30)).item()

    errors, wrong = {}, {}
    for name, y in ys.items():
        if name in baselines:
            continue
        if y.shape != ref.shape:
            wrong[name] = f"its output has shape {tuple(y.shape)}, fp32's {tuple(ref.shape)}"
            continue
        errors[name] = err = error(y, ref)
        if not err <= MAX_ERROR_VS_FP32:   # (NaN too)
            wrong[name] = f"its output is {err:.3g} off fp32's (relative error; at most {MAX_ERROR_VS_FP32})"
        elif name.startswith("int4-") and name != "int4-reference" and "int4-reference" in ys:
            err = error(y, ys["int4-reference"])
            if not err <= MAX_ERROR_VS_REFERENCE:
                wrong[name] = (f"its output is {err:.3g} off int4-reference's, from the same codes "
                               f"(relative error; at most {MAX_ERROR_VS_REFERENCE})")
    return errors, wrong


# ── measuring ───────────────────────────────────────────────────────────────────────────────
@torch.no_grad()
def run(device: str = "cpu", sizes=((4096, 4096),), batches=(1, 4, 16, 64), *, warmup: int = 3,
        repeats: int = 20, seed: int = 0, max_call_s: float = MAX_CALL_S, cold: bool = True,
        log: Callable[[str], None] | None = print) -> dict:
    """Measure every contestant at every (size, batch): {"rows": [...], "skipped": [...]}.

    Each size's `in` must be a multiple of GROUP_SIZE (the int4 and int8 rows are group-128).
    Before a contestant is timed, its output is checked against fp32's (`_check_outputs`): one
    that is wrong is skipped, and so is one whose single call takes longer than `max_call_s`
    (so that one very slow kernel does not make the run take minutes), each listed in "skipped"
    with the reason; so is one that cannot run here at all (with "batch": None).
    cold: on a CPU, cycle through enough copies of each weight to overflow the cache; on a GPU,
    flush the L2 cache before each timed call (see above).
    """
    dev = hardware.check_device(device, "device")
    if not (isinstance(sizes, (tuple, list)) and sizes and all(
            isinstance(s, (tuple, list)) and len(s) == 2 and all(_is_positive_int(v) for v in s) for s in sizes)):
        raise ValueError(f"sizes={sizes!r} must be a list of (out, in) pairs of positive ints, e.g. [(4096, 4096)]")
    if bad := [s for s in sizes if s[1] % GROUP_SIZE]:
        raise ValueError(f"sizes={sizes!r}: in must be a multiple of the group size {GROUP_SIZE}, "
                         f"not {', '.join(str(s[1]) for s in bad)}")
    if not (isinstance(batches, (tuple, list)) and batches and all(_is_positive_int(b) for b in batches)):
        raise ValueError(f"batches={batches!r} must be a list of positive ints, e.g. (1, 4, 16)")
    _check_counts(warmup, repeats)   # (the same check as hardware.measure's)
    if not is_real(max_call_s) or not max_call_s > 0:
        raise ValueError(f"max_call_s={max_call_s!r} must be a positive number of seconds")
    rows, skipped = [], []
    with warnings.catch_warnings():  # (torch.ao's deprecation notices, here only)
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        for out, n_in in sizes:
            found = _run_size(dev, out, n_in, batches, warmup=warmup, repeats=repeats, seed=seed,
                              max_call_s=max_call_s, cold=cold, log=log)
            rows += found["rows"]
            skipped += found["skipped"]
    return {"rows": rows, "skipped": skipped}


def _is_positive_int(v) -> bool:
    return is_int(v) and v > 0


def _run_size(dev: torch.device, out: int, n_in: int, batches, *, warmup: int, repeats: int, seed: int,
              max_call_s: float, cold: bool, log) -> dict:
    """`run` for one weight size."""
    rows, skipped = [], []

    def skip(name, batch, reason):
        skipped.append({"device": dev.type, "out": out, "in": n_in, "batch": batch, "variant": name,
                        "reason": reason})
        if log:
            log(f"{dev.type:<6} {out:>5}x{n_in:<5} {'' if batch is None else batch:>5}  {name:<15} "
                f"skipped: {reason}")

    copies = hardware.copies_beyond_cache(out * n_in * 4) if cold and dev.type == "cpu" else 1
    sets = [_contestants(out, n_in, dev, seed) for _ in range(copies)]  # same values, own memory
    nbytes = sets[0][1]
    for name, reason in sets[0][2].items():
        skip(name, None, reason)
    # activations as a model would hold them: float32 on a CPU, float16 on a GPU (W4A16)
    act = torch.float16 if dev.type == "cuda" else torch.float32
    # random values, not zeros: on a GPU the first call at batch 1 tunes the kernel on them
    x1 = torch.randn(1, n_in, generator=torch.Generator().manual_seed(seed), dtype=act).to(dev)
    for fns_copy, _, _ in sets:  # first calls build kernel layouts, compile and tune: not timed
        for f in fns_copy.values():
            f(x1)
    fns = {name: hardware.round_robin([s[0][name] for s in sets]) for name in sets[0][0]}
    for batch in batches:
        x = torch.randn(batch, n_in, generator=torch.Generator().manual_seed(seed + batch)).to(dev, act)
        calls = {name: (lambda f=f, x=x: f(x)) for name, f in fns.items()}
        baselines = [b for b in ("fp32", "fp16") if b in calls]
        base_once = min(hardware.measure(calls[b], warmup=1, repeats=1, device=dev).median for b in baselines)
        slow = []
        for name in [n for n in calls if n not in baselines]:
            once = hardware.measure(calls[name], warmup=1, repeats=1, device=dev).median
            if once > SLOW_FACTOR * base_once:
                slow.append(name)
            if once > max_call_s:  # e.g. torch's int4 CPU kernel at batch 64: seconds a call
                del calls[name]
                skip(name, batch, f"one call took {once:.2f} s (more than max_call_s={max_call_s})")
        errors, wrong = _check_outputs(calls, baselines)  # a wrong answer is not timed
        for name, reason in wrong.items():
            del calls[name]
            skip(name, batch, reason)
        eager, launch = {}, {}
        if dev.type == "cuda":  # time the GPU's work: replays of CUDA graphs (hardware.cuda_graph)
            eager = hardware.compare(calls, warmup=1, repeats=repeats, device=dev)
            calls, launch = _graphed(calls, log)
        # The fast contestants share one interleaved round; each slow one (the reference
        # kernel writes a whole float weight per call) gets its own round with the baselines,
        # so its memory traffic does not slow the others down.
        fast = {n: c for n, c in calls.items() if n not in slow}
        rounds = [fast] + [{**{b: calls[b] for b in baselines}, n: calls[n]} for n in slow if n in calls]
        found = {}
        for k, group in enumerate(rounds):
            # graph replays: held behind a spinning kernel, so the GPU's work alone is timed
            # and, as in a model, each call finds its weight evicted from the L2 cache
            timings = hardware.compare(group, warmup=warmup, repeats=repeats, device=dev,
                                       hold=dev.type == "cuda", flush=dev.type == "cuda" and cold)
            base = {b: timings[b].median for b in baselines}
            for name, t in timings.items():
                if k and name in baselines:
                    continue
                row = {"device": dev.type, "out": out, "in": n_in, "batch": batch, "variant": name,
                       "median_s": t.median, "min_s": t.min, "repeats": t.repeats, "copies": copies,
                       "round": "shared" if k == 0 else "own", "weight_bytes": nbytes[name],
                       "bytes_ratio_vs_fp32": nbytes["fp32"] / nbytes[name],
                       "fp32_median_s": base["fp32"],   # the fp32 of its own round: the ratio's baseline
                       "speedup_vs_fp32": base["fp32"] / t.median}
                if "fp16" in base:
                    row["fp16_median_s"] = base["fp16"]
                    row["speedup_vs_fp16"] = base["fp16"] / t.median
                if name in errors:
                    row["rel_error_vs_fp32"] = errors[name]
                first = sets[0][0].get(name)
                if isinstance(first, PackedLinear):   # what its backend keeps beside the weight
                    row["group_size"] = first.group_size
                    row["kernel_cache_bytes"] = first.kernel_cache_nbytes
                if name in eager:  # one eager call at a time: the Python launch included
                    row["launch"] = launch[name]
                    row["eager_median_s"] = eager[name].median
                    row["eager_speedup_vs_fp16"] = eager["fp16"].median / eager[name].median
                found[name] = row
        rows += [found[n] for n in calls if n in found]
        if log:
            log(format_table([r for r in rows if r["batch"] == batch], header=False))
    return {"rows": rows, "skipped": skipped}


def check_targets(rows: list[dict]) -> list[dict]:
    """The course's speed and size targets, evaluated on `rows` (those that were measured).
    A speed is the row's own ratio, against the baseline timed in its round (as the table shows)."""
    found = []
    for t in TARGETS:
        row = _find(rows, t, t["variant"])
        ratio = None if row is None else row.get(f"speedup_vs_{t['baseline']}")
        if ratio is None:
            continue
        found.append({"what": t["what"], "measured_ratio": ratio, "min_ratio": t["min_ratio"],
                      "met": ratio >= t["min_ratio"]})
    int4 = [r for r in rows if r["variant"] == "int4-fused"]
    if int4:
        worst = min(r["bytes_ratio_vs_fp32"] for r in int4)
        found.append({"what": "packed INT4 g128 weights at least 7.5x fewer bytes than fp32",
                      "measured_ratio": worst, "min_ratio": MIN_BYTES_RATIO, "met": worst >= MIN_BYTES_RATIO})
    return found


def _find(rows: list[dict], target: dict, variant: str) -> dict | None:
    want = (target["device"], target["out"], target["in"], target["batch"], variant)
    return next((r for r in rows if (r["device"], r["out"], r["in"], r["batch"], r["variant"]) == want), None)


def format_table(rows: list[dict], header: bool = True) -> str:
    """One line a row. A row timed in a round of its own (a slow one) says so, with the fp32
    time of that round, which its ratios are against (not the fp32 row's, of the shared round)."""
    lines = []
    if header:
        lines.append(f"{'device':<6} {'size':>11} {'batch':>5}  {'variant':<15} {'median':>10} "
                     f"{'vs fp32':>8} {'vs fp16':>8} {'bytes':>9} {'smaller':>8}")
    for r in rows:
        fp16 = f"{r['speedup_vs_fp16']:7.2f}x" if "speedup_vs_fp16" in r else f"{'':>8}"
        lines.append(f"{r['device']:<6} {r['out']:>5}x{r['in']:<5} {r['batch']:>5}  {r['variant']:<15} "
                     f"{r['median_s'] * 1e3:8.3f}ms {r['speedup_vs_fp32']:7.2f}x {fp16} "
                     f"{hardware.human_bytes(r['weight_bytes']):>9} {r['bytes_ratio_vs_fp32']:7.2f}x"
                     + (f"  (own round, fp32 there {r['fp32_median_s'] * 1e3:.3f}ms)"
                        if r.get("round") == "own" and "fp32_median_s" in r else ""))
    return "\n".join(lines)


def _load_average() -> float | None:
    """The 1-minute load average (other processes competing for the cores), where the OS has one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_out_dir() -> Path:
    try:
        from minicomp.course import repo_root

        return repo_root() / "benchmarks" / "results"
    except FileNotFoundError:
        return Path.cwd() / "benchmarks" / "results"


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        try:
            out, n_in = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--sizes={text!r}: expected OUTxIN[,OUTxIN...] such as 4096x4096") from None
        if out <= 0 or n_in <= 0 or n_in % GROUP_SIZE:
            raise argparse.ArgumentTypeError(f"--sizes={text!r}: {part!r} must be positive, with IN a multiple of "
                                             f"the group size {GROUP_SIZE}, such as 4096x4096")
        sizes.append((out, n_in))
    return sizes


def _parse_ints(text: str) -> list[int]:
    try:
        batches = [int(v) for v in text.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"--batches={text!r}: expected positive integers such as 1,4,16")
    return batches


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--repeats={text!r}: expected a positive integer such as 20")
    return value


def _too_big(sizes, batches, ram: int | None) -> str | None:
    """Why these sizes and batches cannot fit in `ram` bytes (None if they may, or ram is unknown):
    a lower bound, 8 bytes a weight (fp32 twice: the weight and its nn.Linear) and x and y in fp32."""
    if not ram:
        return None
    need = max(out * n_in * 8 + max(batches) * (out + n_in) * 4 for out, n_in in sizes)
    if need <= ram:
        return None
    return (f"needs at least {hardware.human_bytes(need)} of memory, more than this machine's "
            f"{hardware.human_bytes(ram)}; choose smaller --sizes or --batches, such as 4096x4096 and 1,16")


def _write_new(folder: Path, stem: str, text: str) -> Path:
    """Write text to folder/stem.json, or stem-2.json, -3, ... : never over an earlier result."""
    for n in itertools.count(1):
        path = folder / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
        try:
            with path.open("x", encoding="utf-8") as f:
                f.write(text)
            return path
        except FileExistsError:
            continue


def main(argv: list[str] | None = None) -> int:
    paragraphs = __doc__.split("\n\n")   # what it times and the examples; how it times is in the file
    usage = [p for p in paragraphs if p.lstrip().startswith("minicomp bench ")]
    parser = argparse.ArgumentParser(prog="minicomp bench", description="\n\n".join(paragraphs[:4] + usage),
                                     epilog="How it times (caches evicted, CUDA graphs, the L2 flush): the "
                                            "docstring of minicomp/bench.py.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="where to run (default: the CPU, and CUDA when present)")
    parser.add_argument("--sizes", type=_parse_sizes, default=None,
                        help="weight sizes OUTxIN, comma-separated (default 1024x1024,4096x4096; "
                             "8192x8192 is added on a GPU)")
    parser.add_argument("--batches", type=_parse_ints, default=None, help="default 1,4,16,64")
    parser.add_argument("--repeats", type=_positive_int, default=None,
                        help="timed repeats per contestant (default 20; 7 with --quick)")
    parser.add_argument("--quick", action="store_true", help="4096x4096 at batches 1 and 16, 7 repeats")
    parser.add_argument("--out", type=folder_argument("benchmarks/results"), default=None, help="folder for the JSON (default benchmarks/results)")
    parser.add_argument("--no-save", action="store_true", help="print the table only")
    parser.add_argument("--warm-cache", action="store_true",
                        help="time one copy of each weight (it may stay in the CPU's cache) instead of "
                             "cycling through copies that overflow the cache")
    args = parser.parse_args(argv)

    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else (
        ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        print("error: --device cuda, but CUDA is not available here", file=sys.stderr)
        return 2
    repeats = args.repeats if args.repeats is not None else 7 if args.quick else 20
    batches = args.batches or ([1, 16] if args.quick else [1, 4, 16, 64])
    machine = hardware.describe_machine()
    sizes = args.sizes or [(4096, 4096)]   # (4096x4096 is in every default)
    if why := _too_big(sizes, batches, machine.get("ram_bytes")):   # an error now, not a traceback later
        print(f"error: --sizes {','.join(f'{o}x{i}' for o, i in sizes)} with --batches "
              f"{','.join(map(str, batches))} {why}", file=sys.stderr)
        return 2
    folder = None if args.no_save else args.out or default_out_dir()
    if folder is not None and (why := unwritable(folder, create=True)):  # before the run, not after minutes of it
        print(f"error: --out {str(folder)!r} must be a folder that can be written to: {why}", file=sys.stderr)
        return 2
    print(hardware.format_machine(machine))
    load_before = _load_average()
    print(format_table([], header=True))
    rows, skipped = [], []
    for dev in devices:
        sizes = args.sizes or ([(4096, 4096)] if args.quick else
                               [(1024, 1024), (4096, 4096)] + ([(8192, 8192)] if dev == "cuda" else []))
        result = run(dev, sizes, batches, repeats=repeats, cold=not args.warm_cache)
        rows += result["rows"]
        skipped += result["skipped"]
    targets = check_targets(rows)
    load_after = _load_average()
    print()
    busy = [v for v in (load_before, load_after) if v is not None and v > 0.5 + (machine.get("logical_cores") or 1)]
    if busy:
        print(f"warning: the machine was busy (load average {max(busy):.1f} on "
              f"{machine.get('logical_cores')} cores), so these timings are noisy; re-run when it is idle")
    for t in targets:
        print(f"{'MET ' if t['met'] else 'MISS'}  {t['what']}: measured {t['measured_ratio']:.2f}x")
    result = {"created": _dt.datetime.now().isoformat(timespec="seconds"), "command": "minicomp bench",
              "argv": list(sys.argv[1:] if argv is None else argv), "machine": machine,
              "settings": {"repeats": repeats, "warmup": 3, "group_size": GROUP_SIZE, "max_call_s": MAX_CALL_S,
                           "max_error_vs_fp32": MAX_ERROR_VS_FP32,
                           "max_error_vs_reference": MAX_ERROR_VS_REFERENCE,
                           "timing": "median of interleaved repeats (hardware.compare); contestants over "
                                     f"{SLOW_FACTOR}x slower than the faster baseline (fp32 or fp16) in a round of their own; on a GPU, "
                                     "replays of CUDA graphs queued behind a spinning kernel, so that the GPU's "
                                     "work alone is timed (each row's 'launch'; eager times, launch included, as "
                                     "eager_median_s)",
                           "weights": "one copy (may be cached)" if args.warm_cache else
                           "copies in turn, together twice the last-level cache (CPU); the L2 cache "
                           "flushed before each timed call (GPU)",
                           "cpu_kernel_threads": describe_threads(),
                           "triton_tuned": triton_tuned(),
                           "load_average_before": load_before, "load_average_after": load_after},
              "rows": rows, "skipped": skipped, "targets": targets}
    if folder is not None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = _write_new(folder, f"bench-{'-'.join(devices)}-{stamp}", json.dumps(result, indent=1))
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
