"""Every Triton kernel configuration, timed on a CUDA GPU as a served model runs it.

    python benchmarks/triton_graphs.py [--size 8192] [--batches 1,4,16] [--out benchmarks/results]

This times each of `triton.candidates` the way `minicomp bench` times the contestants and
`tune` times the candidates: captured in a CUDA graph, each replay queued behind a spinning
kernel, with the L2 cache flushed before it (`hardware.compare(hold=True, flush=True)`),
interleaved with fp16 cuBLAS on the same shape. It also measures the card's copy bandwidth, the
ceiling a batch-1 GEMV streams its weight at. The JSON keeps every time.

--warm-l2 leaves the L2 cache as the previous call left it. All configurations share one layer,
so each then finds much of the weight in the cache (an H200's L2 is 50 MB, the 8192² 4-bit
weight 35 MB): the runs before 2026-11-30 timed that way, and a kernel that waits on memory
looked faster than it is in a model.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minicomp import hardware
from minicomp.kernels import PackedLinear
from minicomp.kernels import triton as tk

GROUP = 128


def copy_bandwidth(nbytes: int = 2 << 30) -> float:
    """Bytes per second a device-to-device copy moves (bytes read plus bytes written)."""
    a = torch.empty(nbytes // 2, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    t = hardware.measure(lambda: b.copy_(a), warmup=3, repeats=20, device="cuda")
    return nbytes / t.median


def _problem(size: int, batch: int, bits: int):
    """A size x size layer packed for triton, its fp16 weight, x [batch, size] in fp16, and the
    fp16 product in float32 (what each configuration is checked against)."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(size, size, bias=False)
    lin.weight.data.copy_(torch.randn(size, size, generator=g) / math.sqrt(size))
    layer = PackedLinear.from_linear(lin, bits=bits, group_size=GROUP, backend="triton").cuda()
    w16 = lin.weight.detach().half().cuda()
    x = torch.randn(batch, size, generator=g).half().cuda()
    return layer, w16, x, F.linear(x.float(), w16.float())


def _checked(call, expected: torch.Tensor) -> float:
    """call()'s relative error against `expected`; raises if it is a wrong kernel's, not the codes'."""
    y = call()
    err = ((y.float() - expected).norm() / expected.norm()).item()
    if not err < 0.2:  # the codes' own error is ~0.1 at 4 bits; a wrong kernel is ~1
        raise ValueError(f"relative error {err:.3f} against the fp16 product")
    return err


@torch.no_grad()
def time_candidates(size: int, batch: int, bits: int, repeats: int, flush: bool = True) -> dict:
    """{"fp16_us", "rows": [{"config", "us", "speedup_vs_fp16"} or {"config", "error"}]}."""
    layer, w16, x, expected = _problem(size, batch, bits)
    calls, rows = {"fp16": hardware.cuda_graph(lambda: F.linear(x, w16))}, []
    for i, cfg in enumerate(tk.candidates(batch, size, size, bits, GROUP)):
        try:
            err = _checked(lambda c=cfg: tk.linear(layer, x, c), expected)
            calls[i] = hardware.cuda_graph(lambda c=cfg: tk.linear(layer, x, c))
            rows.append({"config": cfg, "rel_error_vs_fp16": err, "default": i == 0, "i": i})
        except Exception as e:  # one configuration failing leaves the others to time
            rows.append({"config": cfg, "error": f"{type(e).__name__}: {e}"[:300]})
    t = hardware.compare(calls, warmup=5, repeats=repeats, device="cuda", hold=True, flush=flush)
    fp16 = t["fp16"].median
    for r in rows:
        if "i" in r:
            median = t[r.pop("i")].median
            r["us"], r["speedup_vs_fp16"] = median * 1e6, fp16 / median
    return {"size": size, "batch": batch, "bits": bits, "fp16_us": fp16 * 1e6,
            "fp16_weight_bytes": w16.numel() * 2, "packed_weight_bytes": layer.weight_nbytes, "rows": rows}


@torch.no_grad()
def sweep(size: int, bits: int, repeats: int, kernels: tuple[str, ...] = ("gemv", "half2"),
          flush: bool = True) -> dict:
    """The batch-1 GEMV kernels (`packed_gemv`, and `packed_gemv_half2` at 4 bits) over row blocks,
    warps per program, split-K and prefetching (half2: into registers, or 2 to 4 pipeline stages
    through shared memory), and reading the codes in the layer's own layout or steps-first
    (`steps_first_layout`), beyond `candidates`: each checked, then timed as a
    call (`triton.linear`: with split-K, the kernel adds into float32 sums kept on the layer and a
    second small kernel stores y in fp16 from them and zeroes them; before 2026-11-30, a call
    zeroed fresh sums first and returned them in float32) and as the kernel alone (into a y made
    beforehand), with a zeroing alone timed too, so fixed costs show."""
    layer, w16, x, expected = _problem(size, 1, bits)
    configs = [tk._config(1, size, size, bits, GROUP)]
    for block_n, warp_counts in ((8, (1,)), (16, (1, 2)), (32, (1, 2)), (64, (1, 2)), (128, (2, 4))):
        for warps in warp_counts:
            for target in (512, 2048, 8192):
                found = []
                if "gemv" in kernels:
                    found.append(tk._gemv(size, size, bits, GROUP, block_n, warps, target))
                if "half2" in kernels and bits == 4 and block_n >= 16:
                    found += [tk._half2(size, size, GROUP, block_n, warps, target, p) for p in (False, True)]
                    if target == 2048:   # (~2048 programs: the fastest split-K, warm and cold)
                        found += [tk._half2(size, size, GROUP, block_n, warps, target, False, stages=st)
                                  for st in (2, 3, 4)]
                if target == 2048 and 16 <= block_n <= 64:   # each step one contiguous block of memory
                    if "gemv" in kernels:
                        found.append(tk._gemv(size, size, bits, GROUP, block_n, warps, target, steps_first=True))
                    if "half2" in kernels and bits == 4:
                        found += [tk._half2(size, size, GROUP, block_n, warps, target, False, stages=st,
                                            steps_first=True) for st in (1, 3)]
                configs += [cfg for cfg in found if cfg not in configs]
    calls = {"fp16": hardware.cuda_graph(lambda: F.linear(x, w16)),
             "zeros": hardware.cuda_graph(lambda: torch.zeros(1, size, device="cuda"))}
    rows = []
    for i, cfg in enumerate(configs):
        try:
            err = _checked(lambda c=cfg: tk.linear(layer, x, c), expected)
            y = torch.zeros(1, size, device="cuda", dtype=torch.float32 if cfg["SPLIT_K"] > 1 else x.dtype)
            calls[f"call{i}"] = hardware.cuda_graph(lambda c=cfg: tk.linear(layer, x, c))
            calls[f"kernel{i}"] = hardware.cuda_graph(lambda c=cfg, y=y: tk._launch(layer, x, c, out=y))
            rows.append({"config": cfg, "rel_error_vs_fp16": err, "i": i})
        except Exception as e:
            rows.append({"config": cfg, "error": f"{type(e).__name__}: {e}"[:300]})
    t = hardware.compare(calls, warmup=5, repeats=repeats, device="cuda", hold=True, flush=flush)
    for r in rows:
        if "i" in r:
            i = r.pop("i")
            r["call_us"], r["kernel_us"] = t[f"call{i}"].median * 1e6, t[f"kernel{i}"].median * 1e6
            r["kernel_tb_s"] = layer.weight_nbytes / t[f"kernel{i}"].median / 1e12
    return {"size": size, "bits": bits, "fp16_us": t["fp16"].median * 1e6, "zeros_us": t["zeros"].median * 1e6,
            "packed_weight_bytes": layer.weight_nbytes, "rows": rows}


def steps_first_pairs(rows: list[dict]) -> list[dict]:
    """Each timed steps-first configuration beside its twin in the layer's own layout (the same
    configuration without STEPS_FIRST), kernel alone: the one comparison STEPS_FIRST is for."""
    timed = {json.dumps(r["config"], sort_keys=True): r for r in rows if "kernel_us" in r}
    pairs = []
    for r in rows:
        if r["config"].get("STEPS_FIRST") and "kernel_us" in r:
            twin = timed.get(json.dumps({k: v for k, v in r["config"].items() if k != "STEPS_FIRST"}, sort_keys=True))
            if twin is not None:
                pairs.append({"config": twin["config"], "rows_us": twin["kernel_us"], "steps_first_us": r["kernel_us"],
                              "speedup": twin["kernel_us"] / r["kernel_us"]})
    return pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192, help="the weight is size x size (default 8192)")
    ap.add_argument("--batches", default="1,4,16", help="rows of x, comma-separated (default 1,4,16)")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--sweep", action="store_true",
                    help="time the GEMV kernels over row blocks, warps, split-K and prefetching instead (4-bit, batch 1)")
    ap.add_argument("--kernels", default="gemv,half2", help="with --sweep: which kernels (default gemv,half2)")
    ap.add_argument("--warm-l2", action="store_true",
                    help="do not flush the L2 cache before each timed call (as the runs before 2026-11-30)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() or tk.interpreting():
        print("needs a CUDA GPU, with TRITON_INTERPRET unset", file=sys.stderr)
        return 2
    bandwidth = copy_bandwidth()
    print(f"{torch.cuda.get_device_name()}: a device copy moves {bandwidth / 1e12:.2f} TB/s")
    if args.sweep:
        found = sweep(args.size, 4, args.repeats, tuple(args.kernels.split(",")), flush=not args.warm_l2)
        print(f"{args.size}² batch 1 int4: fp16 {found['fp16_us']:.1f} µs; zeroing y alone {found['zeros_us']:.1f} µs")
        print("     call   kernel  kernel TB/s  config")
        for r in sorted(found["rows"], key=lambda r: r.get("call_us", 1e9)):
            if "call_us" in r:
                print(f"  {r['call_us']:7.1f} {r['kernel_us']:7.1f}    {r['kernel_tb_s']:5.2f}      {r['config']}")
            else:
                print(f"  failed: {r['error']}  {r['config']}")
        found["steps_first_pairs"] = steps_first_pairs(found["rows"])
        if found["steps_first_pairs"]:
            print("\nsteps-first against the layer's layout (kernel alone):")
            for pair in found["steps_first_pairs"]:
                print(f"  {pair['rows_us']:7.1f} -> {pair['steps_first_us']:7.1f} µs  ({pair['speedup']:.2f}x)  "
                      f"{pair['config']}")
        return _save(args.out, "triton-sweep" + "-warm" * args.warm_l2, bandwidth, {"sweep": found},
                     not args.warm_l2)
    cases = [(b, 4) for b in map(int, args.batches.split(","))] + [(1, 8)]
    results = []
    for batch, bits in cases:
        r = time_candidates(args.size, batch, bits, args.repeats, flush=not args.warm_l2)
        results.append(r)
        best = min((row for row in r["rows"] if "us" in row), key=lambda row: row["us"])
        default = r["rows"][0]
        print(f"\n{args.size}² batch {batch} int{bits}: fp16 {r['fp16_us']:.1f} µs "
              f"({r['fp16_weight_bytes'] / r['fp16_us'] / 1e6:.2f} TB/s)")
        for row in r["rows"]:
            mark = ("default " if row is default else "") + ("best" if row is best else "")
            if "us" in row:
                print(f"  {row['us']:8.1f} µs {row['speedup_vs_fp16']:5.2f}x  {mark:<12} {row['config']}")
            else:
                print(f"  failed: {row['error']}  {row['config']}")
    return _save(args.out, "triton-graphs" + "-warm" * args.warm_l2, bandwidth, {"cases": results},
                 not args.warm_l2)


def _save(folder: Path, prefix: str, bandwidth: float, found: dict, flushed: bool) -> int:
    name = torch.cuda.get_device_name().replace(" ", "-")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}-{name}-{stamp}.json"
    path.write_text(json.dumps({"created": stamp, "device": torch.cuda.get_device_name(),
                                "torch": torch.__version__, "triton": tk._import().__version__,
                                "copy_bandwidth_bytes_per_s": bandwidth, "timing":
                                "median of CUDA graph replays held behind a spinning kernel, "
                                "interleaved with fp16 cuBLAS" + ", the L2 cache flushed before each" * flushed,
                                "l2_flushed": flushed, **found}, indent=1))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
