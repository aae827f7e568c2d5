"""What the triton kernels become on a GPU that is not here: compile for an NVIDIA GPU of a given
compute capability, read the main loop of the machine code (SASS), and count.

Triton's compiler and the ptxas and cuobjdump it ships are enough; no GPU, no CUDA driver. The
tests compile every `candidates` configuration this way (the interpreter accepts code the GPU
compiler would reject), `benchmarks/triton_static.py` counts each one's warp instructions per
weight, and lesson 09 reads the launch that ran on an H200 against what an SM can hold. These
counts predict, they do not time: only a GPU says how fast a kernel is.
"""

from __future__ import annotations

import importlib.util
import os

import torch


def _nvidia_bin() -> str | None:
    """The folder of the NVIDIA tools (ptxas, cuobjdump) that triton ships, or None."""
    spec = importlib.util.find_spec("triton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "backends", "nvidia", "bin")


def compiler_available() -> bool:
    """Whether `compile_ahead` can work here: triton with its NVIDIA compiler (the ptxas it ships)."""
    folder = _nvidia_bin()
    return folder is not None and all(os.path.exists(os.path.join(folder, t)) for t in ("ptxas", "cuobjdump"))


def compile_ahead(cfg: dict, bits: int, group_size: int, x_dtype: torch.dtype = torch.float16,
                  arch: int = 90, bias: bool = False, scale_dtype: torch.dtype = torch.float16):
    """Compile configuration `cfg` (one of the backend's `candidates`) for an NVIDIA GPU of compute capability
    `arch` (80: A100, 90: H100/H200) without one: triton's compiler and the ptxas it ships are
    enough. The arguments are specialized as a real call with aligned tensors would be. Returns
    triton's compiled kernel; its `.asm` holds "ttgir", "ptx" and "cubin" (the machine code, which
    `cuobjdump -sass` prints). `benchmarks/triton_static.py` uses it to count each candidate's
    instructions per weight; a test compiles every candidate, since the interpreter accepts code
    the GPU compiler would reject. It needs a process where TRITON_INTERPRET is not set (triton
    then patches its language objects for the interpreter); `profile_ahead` starts one.
    `scale_dtype` is the layer's: float16 from `PackedLinear.from_linear`, float32 from
    `from_quantized` (GPTQ, AWQ), a kernel compiled apart for each."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from minicomp.kernels import triton as backend

    if backend.interpreting():
        raise RuntimeError("compile_ahead needs a process without TRITON_INTERPRET (the interpreter patches "
                           "triton for the CPU); profile_ahead starts one for you")
    triton = backend._import()   # and the kernel modules, backend.gemv, .half2, .tile

    names_of = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
    for name, dtype in (("x_dtype", x_dtype), ("scale_dtype", scale_dtype)):
        if dtype not in names_of:
            raise ValueError(f"{name}={dtype!r} must be torch.float16, torch.bfloat16 or torch.float32")
    t, st = names_of[x_dtype], f"*{names_of[scale_dtype]}"
    cfg = backend._exact(cfg, x_dtype)
    y = "fp32" if cfg["SPLIT_K"] > 1 or bias or t == "fp32" else t
    # split-K: float32 sums, the last program storing y (FINISH, as with up to SUMS_ROWS rows of x)
    finish = cfg["SPLIT_K"] > 1
    out = ("fp32" if bias else t) if finish else y
    finish_args = {"y_ptr": f"*{y}", "out_ptr": f"*{out}", "count_ptr": "*i32" if finish else f"*{y}"}
    common = {"BITS": bits, "GROUP": group_size, "BLOCK_N": cfg["BLOCK_N"], "ATOMIC": finish, "FINISH": finish}
    if cfg["KERNEL"] in ("gemv", "half2"):
        pairs = cfg["KERNEL"] == "half2"
        fn = backend.half2.packed_gemv_half2 if pairs else backend.gemv.packed_gemv
        args = {"x_ptr": "*i32" if pairs else f"*{t}", "qw_ptr": "*i32", "s_ptr": st, "z_ptr": "*u8",
                **finish_args, **({"M": "i32"} if pairs else {}), "N": "i32", "K": "i32", "SPLIT_K": "i32",
                "stride_xm": "i32", "stride_qw": "i32", "stride_sn": "i32", "stride_ym": "i32"}
        consts = {**common, "BLOCK_W": cfg["BLOCK_W"], "STEPS_FIRST": cfg.get("STEPS_FIRST", False)}
        if pairs:
            consts |= {"BLOCK_M": cfg["BLOCK_M"], "ASM": True, "PREFETCH": cfg["PREFETCH"],
                       "STAGES": cfg.get("STAGES", 1)}
    elif cfg["KERNEL"] == "dequant":   # the decoding kernel (the matmul after it is cuBLAS's)
        fn = backend.tile.dequantize_weight
        args = {"qw_ptr": "*u8", "s_ptr": st, "z_ptr": "*u8", "w_ptr": f"*{t}", "N": "i32", "K": "i32",
                "stride_qn": "i32", "stride_sn": "i32", "stride_wn": "i32"}
        consts = {"BITS": bits, "GROUP": group_size, "BLOCK_N": cfg["BLOCK_N"], "BLOCK_B": cfg["BLOCK_B"]}
    else:
        fn = backend.tile.packed_matmul
        args = {"x_ptr": f"*{t}", "qw_ptr": "*u8", "s_ptr": st, "z_ptr": "*u8", **finish_args,
                "M": "i32", "N": "i32", "K": "i32", "SPLIT_K": "i32", "stride_xm": "i32", "stride_qn": "i32",
                "stride_sn": "i32", "stride_ym": "i32"}
        bb = cfg["BLOCK_B"]
        consts = {**common, "BLOCK_M": cfg["BLOCK_M"], "BLOCK_B": bb, "ACC_B": 1 if cfg["USE_DOT"] else bb,
                  "USE_DOT": cfg["USE_DOT"], "DOT_FP32": False, "ASM": cfg.get("ASM", False),
                  "STEPS_FIRST": cfg.get("STEPS_FIRST", False)}
    names = fn.arg_names
    # what a call specializes on: pointers and sizes divisible by 16 (the scales' row stride, the
    # number of groups, need not be)
    aligned = [a for a in args if a.endswith("_ptr") or a in ("N", "K", "stride_xm", "stride_qw", "stride_qn",
                                                            "stride_ym", "stride_wn")]
    if cfg.get("STEPS_FIRST"):   # steps-first rows are one step apart: BLOCK_W words (GEMV), BLOCK_B bytes (tile)
        row, step = ("stride_qw", cfg["BLOCK_W"]) if "BLOCK_W" in cfg else ("stride_qn", cfg["BLOCK_B"])
        if step % 16:
            aligned.remove(row)
    src = ASTSource(fn=fn, signature={**args, **{c: "constexpr" for c in consts}},
                    constexprs={(names.index(c),): v for c, v in consts.items()},
                    attrs={(names.index(a),): [["tt.divisibility", 16]] for a in aligned})
    return triton.compile(src, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": cfg["num_warps"], "enable_fp_fusion": True})


def profile_ahead(configs: list[dict], bits: int, group_size: int, x_dtype: torch.dtype = torch.float16,
                  arch: int = 90, m: int = 1, scale_dtype: torch.dtype = torch.float16) -> list[dict]:
    """`loop_profile(compile_ahead(cfg, ...))` for each of `configs`, plus "per_weight"
    (`instructions_per_weight` for x [m, in]), compiled in a fresh Python process without
    TRITON_INTERPRET: where the interpreter is on (the test suite turns it on), triton's language
    objects are patched for it and the GPU compiler cannot run. A few seconds to start, and about
    as long again per configuration; `profile_many` does several such lists in one process."""
    (loops,) = profile_many([{"configs": configs, "bits": bits, "group_size": group_size,
                              "x_dtype": x_dtype, "arch": arch, "m": m, "scale_dtype": scale_dtype}])
    return loops


# the child of `profile_many`: compile each distinct job once, on every core (fork, where there is one)
_PROFILE_CHILD = """\
import json, multiprocessing, os, sys, torch
from minicomp.kernels.triton import sass
todo = json.loads(sys.stdin.read())
def one(a):
    return sass.loop_profile(sass.compile_ahead(a["cfg"], a["bits"], a["group_size"], getattr(torch, a["dtype"]),
                                                arch=a["arch"], scale_dtype=getattr(torch, a["scale_dtype"])))
workers = min(len(todo), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        done = pool.map(one, todo, chunksize=1)
else:
    done = [one(a) for a in todo]
print(json.dumps(done))
"""


def profile_many(jobs: list[dict]) -> list[list[dict]]:
    """`profile_ahead` for several lists at once: one fresh process, each distinct compilation
    done once, on all the CPU's cores. Each job is a dict of `profile_ahead`'s arguments
    ("configs", "bits", "group_size", and optionally "x_dtype", "arch", "m", "scale_dtype"); returns one list
    of loop profiles per job, in order."""
    import json
    import subprocess
    import sys

    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise TypeError("jobs must be a list of dicts of profile_ahead's arguments (configs, bits, group_size, ...)")
    allowed = {"configs", "bits", "group_size", "x_dtype", "arch", "m", "scale_dtype"}
    for i, job in enumerate(jobs):
        if not {"configs", "bits", "group_size"} <= job.keys() or not job.keys() <= allowed:
            raise ValueError(f"jobs[{i}] has keys {sorted(job)}; expected configs, bits, group_size and "
                             f"optionally x_dtype, arch, m, scale_dtype")
    keys, todo, where = {}, [], []   # where[i][j]: the index in todo of job i's configuration j
    for job in jobs:
        dtype, scale_dtype = (str(job.get(k, torch.float16)).replace("torch.", "") for k in ("x_dtype", "scale_dtype"))
        places = []
        for cfg in job["configs"]:
            item = {"cfg": cfg, "bits": job["bits"], "group_size": job["group_size"], "dtype": dtype,
                    "scale_dtype": scale_dtype, "arch": job.get("arch", 90)}
            key = json.dumps(item, sort_keys=True)
            if key not in keys:
                keys[key] = len(todo)
                todo.append(item)
            places.append(keys[key])
        where.append(places)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", _PROFILE_CHILD], input=json.dumps(todo), capture_output=True,
                          text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"compiling for {', '.join(f'sm_{a}' for a in sorted({t['arch'] for t in todo}))} failed:\n{done.stderr[-3000:]}")
    loops = json.loads(done.stdout.strip().splitlines()[-1])
    return [[{**loops[k], "per_weight": instructions_per_weight(loops[k], cfg, job["bits"], job.get("m", 1))}
             for k, cfg in zip(places, job["configs"], strict=True)]
            for job, places in zip(jobs, where, strict=True)]


def loop_profile(compiled) -> dict:
    """The main loop of a `compile_ahead` kernel, read from its machine code (SASS, through the
    `cuobjdump` that triton ships): {"instructions": per warp per iteration, "ops": {opcode: count},
    "registers": per thread, "spilled": bytes of stack, "shared": bytes of shared memory a program
    uses, "warps": per program}. The loop is the longest backward branch."""
    import re
    import subprocess
    import tempfile
    from collections import Counter
    from pathlib import Path

    tool = Path(_nvidia_bin()) / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        sass = subprocess.run([str(tool), "-sass", str(cubin)], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([str(tool), "--dump-resource-usage", str(cubin)], capture_output=True, text=True,
                               check=True).stdout
    code = [(int(a, 16), op.strip()) for a, op in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    loops = [(int(m.group(1), 16), at) for at, op in code
             if (m := re.search(r"BRA (0x[0-9a-f]+)", op)) and int(m.group(1), 16) < at]
    if not loops:
        raise ValueError("no loop found in the kernel's machine code")
    start, end = max(loops, key=lambda span: span[1] - span[0])
    body = [op for at, op in code if start <= at <= end]
    ops = Counter((op.split()[1] if op.startswith("@") else op.split()[0]) for op in body)
    regs, stack = (int(v) for v in re.search(r"REG:(\d+).*?STACK:(\d+)", usage, re.S).groups())
    return {"instructions": len(body), "ops": dict(ops), "registers": regs, "spilled": stack,
            "shared": compiled.metadata.shared, "warps": compiled.metadata.num_warps}


SM_LIMITS = {80: {"registers": 65536, "warps": 64, "programs": 32, "shared": 164 * 1024},   # A100
             90: {"registers": 65536, "warps": 64, "programs": 32, "shared": 228 * 1024}}   # H100, H200


def programs_per_sm(loop: dict, arch: int = 90) -> int:
    """How many programs of a `loop_profile` kernel fit on one SM at once, by its registers
    (allocated 256 to a warp at a time), warps and shared memory: the GPU's occupancy limits."""
    lim = SM_LIMITS[arch]
    per_warp = -(-loop["registers"] * 32 // 256) * 256
    return min(lim["registers"] // (per_warp * loop["warps"]), lim["warps"] // loop["warps"], lim["programs"],
               lim["shared"] // loop["shared"] if loop["shared"] else lim["programs"])


def instructions_per_weight(loop: dict, cfg: dict, bits: int, m: int = 1) -> float:
    """Warp instructions the loop of `loop_profile` issues per (weight, row of x) for x [m, in]:
    its instructions times its warps, over the products one program computes per iteration."""
    if cfg["KERNEL"] in ("gemv", "half2"):
        products = cfg["BLOCK_N"] * cfg["BLOCK_W"] * (32 // bits) * min(cfg.get("BLOCK_M", 1), m)
    elif cfg["KERNEL"] == "dequant":   # the decoding, shared by all m rows (the matmul is not counted)
        products = cfg["BLOCK_N"] * cfg["BLOCK_B"] * (8 // bits) * m
    else:
        products = cfg["BLOCK_N"] * cfg["BLOCK_B"] * (8 // bits) * min(cfg["BLOCK_M"], m)
    return loop["instructions"] * cfg["num_warps"] / products
