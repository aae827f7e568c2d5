"""The Triton kernel's candidates, compiled for a GPU this machine need not have, and counted.

    python benchmarks/triton_static.py [--arch 90] [--out benchmarks/results]

Without a GPU nothing can be timed, but the machine code can be read. For every configuration
`tune` would try at 8192 x 8192, group 128, this compiles the kernel for compute capability
`--arch` (`sass.compile_ahead`) and reads the main loop (`sass.loop_profile`): warp
instructions per (weight, row of x), registers, spills, barriers and shuffles, and how many
programs the launch has against how many fit on the SMs at once (registers, warps and shared
memory allow `sass.programs_per_sm`). A batch-1 GEMV is fast when it issues few instructions per
weight and never waits on other threads; any kernel needs enough programs in flight to keep
enough loads in flight (the first tensor-core default launched 128 on 132 SMs).

It also estimates how long the instructions alone take on an H200 (132 SMs, 4 warp instructions
per SM per cycle, 1.98 GHz), to set against the time the bytes take at 4.8 TB/s; with `--arch 80`,
on an A100 (108 SMs, 1.41 GHz, 2.04 TB/s), which also sets the waves. These are bounds from
counting, not measurements: `minicomp bench --device cuda` measures.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from pathlib import Path

import torch

from minicomp.kernels import triton as tk
from minicomp.kernels.triton import sass

# the GPU each target's estimates assume: SMs, warp instructions issued per SM per cycle, boost
# clock, memory bandwidth (the data sheets)
GPUS = {90: {"gpu": "H200 SXM", "sms": 132, "issue": 4, "clock_hz": 1.98e9, "bandwidth_bytes_per_s": 4.8e12},
        80: {"gpu": "A100 SXM 80GB", "sms": 108, "issue": 4, "clock_hz": 1.41e9, "bandwidth_bytes_per_s": 2.04e12}}
N = K = 8192
GROUP = 128
CASES = [(1, torch.float16, 4), (1, torch.float16, 8), (4, torch.float16, 4), (16, torch.float16, 4)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, choices=sorted(GPUS),
                    help="compute capability x 10 (80: A100, 90: H100/H200)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if tk.interpreting():
        print("TRITON_INTERPRET is set: the GPU compiler cannot run in this process; unset it", file=sys.stderr)
        return 2
    triton = tk._import()
    gpu = GPUS[args.arch]
    SMS, ISSUE, CLOCK, BANDWIDTH = gpu["sms"], gpu["issue"], gpu["clock_hz"], gpu["bandwidth_bytes_per_s"]
    rows = []
    for m, dtype, bits in CASES:
        weight_bytes = N * K * bits // 8
        print(f"\nbatch {m}, {str(dtype).replace('torch.', '')} x, {bits}-bit weights, {N}x{K}, group {GROUP}: "
              f"the bytes alone take {weight_bytes / BANDWIDTH * 1e6:.1f} µs at {BANDWIDTH / 1e12:.1f} TB/s")
        for i, cfg in enumerate(tk.candidates(m, N, K, bits, GROUP)):
            try:
                prof = sass.loop_profile(sass.compile_ahead(cfg, bits, GROUP, dtype, arch=args.arch))
            except Exception as err:  # report it and go on: the next candidate may compile
                rows.append({"batch": m, "bits": bits, "config": cfg, "error": f"{type(err).__name__}: {err}"[:300]})
                print(f"  FAILED {cfg}: {err}")
                continue
            per = sass.instructions_per_weight(prof, cfg, bits, m)
            issue_us = N * K * m * per / (SMS * ISSUE * CLOCK) * 1e6
            programs, resident = math.prod(tk.launch_grid(cfg, m, N)), sass.programs_per_sm(prof, args.arch)
            row = {"batch": m, "dtype": str(dtype).replace("torch.", ""), "bits": bits, "config": cfg,
                   "default": i == 0, "warp_instructions_per_weight": per, "issue_bound_us": issue_us,
                   "registers": prof["registers"], "spilled_bytes": prof["spilled"],
                   "barriers": prof["ops"].get("BAR.SYNC.DEFER_BLOCKING", 0),
                   "shuffles": prof["ops"].get("SHFL.BFLY", 0), "loop_instructions": prof["instructions"],
                   "shared_bytes": prof["shared"], "programs": programs, "programs_per_sm": resident,
                   "programs_on_busiest_sm": -(-programs // SMS), "waves": programs / (SMS * resident)}
            rows.append(row)
            print(f"  {'*' if i == 0 else ' '} {per:6.3f} instr/weight  ~{issue_us:6.1f} µs issuing  "
                  f"regs {prof['registers']:3d}  spill {prof['spilled']:3d}  bar {row['barriers']:2d}  "
                  f"shfl {row['shuffles']:3d}  {programs:5d} programs, {resident:2d}/SM ({row['waves']:.2f} waves)  {cfg}")
    result = {"created": _dt.datetime.now().isoformat(timespec="seconds"), "command": "benchmarks/triton_static.py",
              "target": f"sm_{args.arch}", "triton": triton.__version__, "torch": torch.__version__,
              "shape": [N, K], "group_size": GROUP,
              "assumptions": {"sms": SMS, "warp_instructions_per_sm_cycle": ISSUE, "clock_hz": CLOCK,
                              "bandwidth_bytes_per_s": BANDWIDTH, "gpu": f"{gpu['gpu']} (for the estimates)"},
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"triton-static-sm{args.arch}-{_dt.date.today():%Y%m%d}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {path}  (* = the default configuration, `_config`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
