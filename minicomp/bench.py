"""`minicomp bench`: how fast, and how small, are packed weights on this machine?

For each weight size [out, in] and batch size, time y = x Wᵀ in every format, all in one run,
interleaved (see `hardware.compare`), and report each as a speed-up over float32 measured in that
same run, plus the bytes its weight takes. (A contestant over SLOW_FACTOR times slower than
float32, such as the reference kernel, is interleaved with float32 alone, in a round of its own.)

    fp32             torch F.linear, the baseline
    bf16 / fp16      torch F.linear in 16 bits (bf16 on CPU, fp16 = cuBLAS on GPU)
    int8-fused       PackedLinear, 8-bit codes, the fast backend (cpu or triton; as int4-fused)
    int8-torch       torch's dynamic int8 Linear (fbgemm; it quantizes activations too: W8A8)
    int4-reference   PackedLinear, backend="reference": unpack, dequantize, matmul
    int4-fused       PackedLinear, 4-bit group-128 codes, the fast backend (on a CPU: the fused
                     kernel below `cpu.GEMM_ROWS` rows of x, dequantized slabs and BLAS from there)
    int4-torch       torch's own int4 kernel (_weight_int4pack_mm[_for_cpu]) where it exists

Batch 1 is a GEMV: every weight is read once per output, so time follows bytes moved and
fewer bytes win. Large batches are GEMMs, limited by arithmetic, where dense float kernels win.

On a CPU, each contestant is built `hardware.copies_beyond_cache` times (the same weights in
separate memory, together twice the last-level cache) and the calls take the copies in turn, so
every call finds its weight evicted, as a model's layers do. (`--warm-cache` times one copy
instead: on a server CPU with hundreds of MB of cache, that times float32 from the cache.)

On a GPU, each contestant is captured in a CUDA graph and the replays are timed
(`hardware.cuda_graph`): a batch-1 GEMV there takes a few microseconds, about what Python takes
to launch a kernel, and serving stacks replay graphs for that reason. Each replay is queued
behind a kernel that spins for ~0.1 ms (`hardware.measure(hold=True)`), so even the replay's own
launch is out of the time. The eager times (one call at a time, launch included) are kept too, as
`eager_median_s`. One copy of each weight, and the L2 cache flushed before each timed call
(`hardware.flush_l2`; `--warm-cache` leaves it): an H200's 60 MB L2 holds a whole 8192² 4-bit
weight, which a model's other layers would have evicted.

    minicomp bench                       # CPU, and the GPU too when there is one
    minicomp bench --quick               # smaller, for a first look (~1 minute)
    minicomp bench --sizes 4096x4096 --batches 1,16 --device cpu

Results go to benchmarks/results/bench-<device>-<time>.json with `hardware.describe_machine()`.
Each row's `weight_bytes` is the stored weight; a PackedLinear row also records
`kernel_cache_bytes`, what its backend keeps beside it while it runs (the cpu kernel's blocked
copy of the codes, triton's split-K sums and steps-first copy): the memory it takes at run time
is the sum of the two.
"""

from __future__ import annotations

import argparse
import datetime as _dt
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
from minicomp.kernels import PackedLinear
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


# ── the contestants ─────────────────────────────────────────────────────────────────────────
def _torch_int4(w: torch.Tensor, qw, device: torch.device) -> Callable | None:
    """torch's built-in int4 matmul for the same codes, or None where this build has none."""
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
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    return lambda xb: op(xb.to(dtype), wp, GROUP_SIZE, sz)


def _torch_dynamic_int8(w: torch.Tensor) -> Callable | None:
    try:  # torch.ao.quantization is deprecated (moving to torchao) but still the built-in int8 path
        from torch.ao.nn.quantized.dynamic import Linear as DynLinear

        lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.data.copy_(w)
        q = torch.ao.quantization.quantize_dynamic(nn.Sequential(lin), {nn.Linear}, dtype=torch.qint8)
        if not isinstance(q[0], DynLinear):
            return None
        q(torch.randn(1, w.shape[1]))
        return q
    except Exception:  # absent, or no quantized engine on this CPU
        return None


def contestants(out: int, n_in: int, device: torch.device, seed: int = 0) -> tuple[dict, dict]:
    """({name: f(x) -> y}, {name: weight bytes}) for one weight size on one device.

    x comes in float32 on a CPU and float16 on a GPU; each contestant casts it to what it needs
    (a [batch, in] cast, negligible next to reading the weight)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, n_in, generator=g) / math.sqrt(n_in)  # [out, in]
    lin = nn.Linear(n_in, out, bias=False)
    lin.weight.data.copy_(w)
    fns, sizes = {}, {}
    w32 = w.to(device)
    fns["fp32"], sizes["fp32"] = (lambda x: F.linear(x.float(), w32)), w32.numel() * 4
    half = [torch.bfloat16] if device.type == "cpu" else [torch.float16, torch.bfloat16]
    for dt in half:
        wh = w.to(device, dt)
        name = str(dt).replace("torch.", "").replace("float", "fp").replace("bfp", "bf")
        fns[name] = lambda x, wh=wh, dt=dt: F.linear(x.to(dt), wh)
        sizes[name] = wh.numel() * 2
    fused = "cpu" if device.type == "cpu" else "triton"
    gs = GROUP_SIZE if n_in % GROUP_SIZE == 0 else -1
    p8 = PackedLinear.from_linear(lin, bits=8, group_size=gs, backend=fused).to(device)
    p4 = PackedLinear.from_linear(lin, bits=4, group_size=gs, backend=fused).to(device)
    p4_ref = PackedLinear.from_linear(lin, bits=4, group_size=gs, backend="reference").to(device)
    x1 = torch.zeros(1, n_in, device=device)
    for name, layer in (("int8-fused", p8), ("int4-reference", p4_ref), ("int4-fused", p4)):
        if _backend_ok(layer, x1):  # e.g. no numba, or no triton: that contestant is left out
            fns[name], sizes[name] = layer, layer.weight_nbytes
    if device.type == "cpu":
        dyn = _torch_dynamic_int8(w)
        if dyn is not None:
            fns["int8-torch"], sizes["int8-torch"] = dyn, out * n_in + out * 8
    t4 = _torch_int4(w, p4.quantized_weight(), device)
    if t4 is not None:
        fns["int4-torch"], sizes["int4-torch"] = t4, p4.weight_nbytes
    return fns, sizes


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


def _backend_ok(layer: PackedLinear, x: torch.Tensor) -> bool:
    from minicomp.kernels import BACKENDS

    return BACKENDS[layer.backend].unsupported(layer, x) is None


# ── measuring ───────────────────────────────────────────────────────────────────────────────
@torch.no_grad()
def run(device: str = "cpu", sizes=((4096, 4096),), batches=(1, 4, 16, 64), *, warmup: int = 3,
        repeats: int = 20, seed: int = 0, max_call_s: float = 0.5, cold: bool = True,
        log: Callable[[str], None] | None = print) -> dict:
    """Measure every contestant at every (size, batch): {"rows": [...], "skipped": [...]}.

    A contestant whose single call takes longer than `max_call_s` is skipped for that case (and
    listed in "skipped"), so that one very slow kernel does not make the run take minutes.
    cold: on a CPU, cycle through enough copies of each weight to overflow the cache; on a GPU,
    flush the L2 cache before each timed call (see above).
    """
    dev = hardware.check_device(device, "device")
    if not all(isinstance(s, (tuple, list)) and len(s) == 2 and all(isinstance(v, int) and v > 0 for v in s)
               for s in sizes):
        raise ValueError(f"sizes={sizes!r} must be a list of (out, in) pairs of positive ints, e.g. [(4096, 4096)]")
    if not all(isinstance(b, int) and b > 0 for b in batches):
        raise ValueError(f"batches={batches!r} must be positive ints, e.g. (1, 4, 16)")
    rows, skipped = [], []
    warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
    warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
    for out, n_in in sizes:
        copies = hardware.copies_beyond_cache(out * n_in * 4) if cold and dev.type == "cpu" else 1
        sets = [contestants(out, n_in, dev, seed) for _ in range(copies)]  # same values, own memory
        nbytes = sets[0][1]
        # activations as a model would hold them: float32 on a CPU, float16 on a GPU (W4A16)
        act = torch.float16 if dev.type == "cuda" else torch.float32
        # random values, not zeros: on a GPU the first call at batch 1 tunes the kernel on them
        x1 = torch.randn(1, n_in, generator=torch.Generator().manual_seed(seed), dtype=act).to(dev)
        for fns_copy, _ in sets:  # first calls build kernel layouts, compile and tune: not timed
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
                    skipped.append({"device": dev.type, "out": out, "in": n_in, "batch": batch,
                                    "variant": name, "reason": f"one call took {once:.2f} s "
                                    f"(more than max_call_s={max_call_s})"})
                    if log:
                        log(f"{dev.type:<6} {out:>5}x{n_in:<5} {batch:>5}  {name:<15} skipped: "
                            f"{once:.2f} s a call")
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
                           "speedup_vs_fp32": base["fp32"] / t.median}
                    if "fp16" in base:
                        row["speedup_vs_fp16"] = base["fp16"] / t.median
                    first = sets[0][0].get(name)
                    if isinstance(first, PackedLinear):   # what its backend keeps beside the weight
                        row["kernel_cache_bytes"] = first.kernel_cache_nbytes
                    if name in eager:  # one eager call at a time: the Python launch included
                        row["launch"] = launch[name]
                        row["eager_median_s"] = eager[name].median
                        row["eager_speedup_vs_fp16"] = eager["fp16"].median / eager[name].median
                    found[name] = row
            rows += [found[n] for n in calls if n in found]
            if log:
                log(format_table([r for r in rows if (r["out"], r["in"], r["batch"]) == (out, n_in, batch)],
                                 header=False))
    return {"rows": rows, "skipped": skipped}


def check_targets(rows: list[dict]) -> list[dict]:
    """The course's speed and size targets, evaluated on `rows` (those that were measured)."""
    found = []
    for t in TARGETS:
        row, base = _find(rows, t, t["variant"]), _find(rows, t, t["baseline"])
        if row is None or base is None:
            continue
        ratio = base["median_s"] / row["median_s"]
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
    lines = []
    if header:
        lines.append(f"{'device':<6} {'size':>11} {'batch':>5}  {'variant':<15} {'median':>10} "
                     f"{'vs fp32':>8} {'vs fp16':>8} {'bytes':>9} {'smaller':>8}")
    for r in rows:
        fp16 = f"{r['speedup_vs_fp16']:7.2f}x" if "speedup_vs_fp16" in r else f"{'':>8}"
        lines.append(f"{r['device']:<6} {r['out']:>5}x{r['in']:<5} {r['batch']:>5}  {r['variant']:<15} "
                     f"{r['median_s'] * 1e3:8.3f}ms {r['speedup_vs_fp32']:7.2f}x {fp16} "
                     f"{hardware.human_bytes(r['weight_bytes']):>9} {r['bytes_ratio_vs_fp32']:7.2f}x")
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
        sizes.append((out, n_in))
    return sizes


def _parse_ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batches={text!r}: expected integers such as 1,4,16") from None


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
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per contestant (default 20)")
    parser.add_argument("--quick", action="store_true", help="4096x4096 at batches 1 and 16, 7 repeats")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON (default benchmarks/results)")
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
    repeats = args.repeats or (7 if args.quick else 20)
    batches = args.batches or ([1, 16] if args.quick else [1, 4, 16, 64])
    machine = hardware.describe_machine()
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
              "settings": {"repeats": repeats, "warmup": 3, "group_size": GROUP_SIZE,
                           "timing": "median of interleaved repeats (hardware.compare); contestants over "
                                     f"{SLOW_FACTOR}x slower than fp32 in a round of their own; on a GPU, "
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
    if not args.no_save:
        folder = args.out or default_out_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = folder / f"bench-{'-'.join(devices)}-{stamp}.json"
        path.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
