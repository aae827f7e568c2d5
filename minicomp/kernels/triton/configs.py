"""Which kernel configurations exist, for x [m, k] and an [n, k] weight: `candidates` (what
`tune` times; `_config`'s default first), the helpers that build each kind (`_gemv`, `_half2`,
`_tile`, `_dequant`), `_exact` (a configuration made to suit x's dtype) and `launch_grid` (the
programs it launches). Plain Python: no triton needed, so the configurations can be listed and
counted anywhere. Each comment says which measurement, or which count, put a value there."""

from __future__ import annotations

import torch


def _split(programs: int, k_steps: int, target: int) -> int:
    """Split the input dimension in two until there are `target` programs (at most 16 ways)."""
    split = 1
    while programs * split < target and split * 2 <= k_steps and split < 16:
        split *= 2
    return split


def _block_bytes(bits: int, group_size: int) -> int:
    """Bytes of a row per step of the tile kernel: at most 64, inside one group."""
    return min(_step_bytes(bits, group_size), 64)


def _block_words(bits: int, group_size: int) -> int:
    """int32 words of a row per step of the GEMV kernel: at most 16, inside one group."""
    return min(_step_bytes(bits, group_size) // 4, 16)


def _step_bytes(bits: int, group_size: int) -> int:
    """The largest power of two, at most 128, that divides a group's bytes."""
    b = 1
    while b < 128 and (group_size * bits // 8) % (2 * b) == 0:
        b *= 2
    return b


def _gemv(n: int, k: int, bits: int, group_size: int, block_n: int, warps: int, target: int,
          block_w: int | None = None, steps_first: bool = False) -> dict:
    """A GEMV configuration; block_w: int32 words of a row per step (default: one group's, at
    most 16). A step may span several groups (a scale per word then), if it divides k.
    steps_first: the kernel reads a copy of the codes in which each step's words for all rows
    are contiguous (`steps_first_layout`), so a program's step is one block of memory."""
    bw = block_w or _block_words(bits, group_size)
    k_steps = k // (32 // bits * bw)
    return {"KERNEL": "gemv", "BLOCK_N": block_n, "BLOCK_W": bw,
            "SPLIT_K": _split(-(-n // block_n), k_steps, target), "num_warps": warps,
            **({"STEPS_FIRST": True} if steps_first else {})}


def _half2(n: int, k: int, group_size: int, block_n: int, warps: int, target: int, prefetch: bool,
           block_m: int = 1, stages: int = 1, steps_first: bool = False) -> dict:
    """A configuration of the two-codes-per-instruction kernel (fp16 x, 4-bit codes): block_m
    (1, 2 or 4) rows of x share each program's codes; prefetch: the next step's codes loaded into
    registers before this step computes; stages > 1: the next stages - 1 steps' codes copied into
    shared memory ahead (triton's software pipelining, cp.async); steps_first: as in `_gemv`."""
    return {**_gemv(n, k, 4, group_size, block_n, warps, target, steps_first=steps_first), "KERNEL": "half2",
            "BLOCK_M": block_m, "PREFETCH": prefetch, "STAGES": stages}


def _dequant(bits: int, group_size: int, block_n: int = 16) -> dict:
    """The 'dequant' configuration: the whole weight decoded into x's dtype by `tile.dequantize_weight`
    (block_n rows a program), then one dense matmul (cuBLAS on a GPU). For prompts: at 256 rows of
    x on an H200 the best tile took 145 µs at 8192², fp16 cuBLAS 53; decoding writes 134 MB more.
    vLLM's GPTQ layers switch to this above 50 rows."""
    return {"KERNEL": "dequant", "BLOCK_N": block_n, "BLOCK_B": _block_bytes(bits, group_size), "SPLIT_K": 1,
            "num_warps": 4}


def _tile(m: int, n: int, k: int, bits: int, group_size: int, block_m: int, block_n: int, target: int,
          use_dot: bool = False, asm: bool = False, warps: int = 4, steps_first: bool = False) -> dict:
    """A tile-kernel configuration; with tensor cores (use_dot), asm: 4-bit codes made 16-bit
    floats by inline PTX (`magic_codes`) rather than by what triton makes of the plain code;
    steps_first: as in `_gemv` (the same copy of the codes)."""
    bb = _block_bytes(bits, group_size)
    programs = -(-n // block_n) * -(-m // block_m)
    return {"KERNEL": "tile", "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_B": bb,
            "SPLIT_K": _split(programs, k * bits // 8 // bb, target), "USE_DOT": use_dot, "num_warps": warps,
            **({"ASM": asm} if use_dot else {}), **({"STEPS_FIRST": True} if steps_first else {})}


def _config(m: int, n: int, k: int, bits: int, group_size: int) -> dict:
    """The default configuration for x [m, k] and an [n, k] weight: the GEMV kernel for one row of
    x, small tiles for 2 or 3 rows, tensor-core tiles from 4 rows on (64 rows of x tall from 64 on)."""
    if m == 1:  # one-warp programs of 32 rows, ~2048 of them: the fastest measured on an H200
        return _gemv(n, k, bits, group_size, 32, 1, 2048)
    # 4-bit codes on tensor cores: made 16-bit floats by inline PTX (`magic_codes`), 15-25% faster
    # than what triton makes of the plain code on an H200 (2026-11-30, at 4 to 256 rows of x)
    asm = bits == 4
    if m >= 64:  # taller tiles decode each code once for 64 rows of x, no split-K: at 256 rows on
        # an H200, [64, 128] and [128, 64] were the fastest (8192^2: 145-152 µs; the 32-row tile 160+)
        return _tile(m, n, k, bits, group_size, 64, 128, 1, use_dot=True, asm=asm)
    if m >= 4:  # ~512 programs of 4 warps: 4 to each of an H100's 132 SMs, in one wave (128 programs
        # with split-K 1, the first version, left most SMs one program: 0.3x fp16 at 8192^2 on an H200).
        # Below 16 rows, the rows past m are empty: the FMA tiles cost more per weight from 4 rows
        # on (counted on sm_90: 0.30 warp instructions per weight at 4 rows, against 0.21) and
        # measured 0.6x fp16 at batch 4
        return _tile(m, n, k, bits, group_size, 16 if m <= 16 else 32, 64, 512, use_dot=True, asm=asm)
    return _tile(m, n, k, bits, group_size, 2 if m == 2 else 4, 32, 1024)  # [BLOCK_M, 32, BLOCK_B] sums in registers


def candidates(m: int, n: int, k: int, bits: int, group_size: int) -> list[dict]:
    """The configurations `tune` times for x [m, k] and an [n, k] weight, `_config`'s first.

    Up to 8 rows of x: the GEMV kernel (one row of x per program) with four row blocks or warp
    counts and three degrees of split-K, and with longer steps (spanning groups) on smaller row
    blocks; at 4 bits, the two-codes-per-instruction GEMV (fp16 x), with and without prefetching
    into registers or (STAGES) into shared memory; both GEMV kernels also reading the codes
    steps-first (`steps_first_layout`: each program's step one contiguous block);
    and the tile kernel (all rows of x at once) with three row blocks and two degrees of
    split-K, and from 2 rows on also on tensor cores (16-row tiles). From 16 rows on: tensor-core
    tiles of three widths and three degrees of split-K; from 64 rows on also taller tiles (64 and
    128 rows of x), which decode each code once for more rows, and 'dequant' (the whole weight
    decoded, then a dense matmul). Tensor-core tiles of 4-bit codes come with and without the
    inline-PTX nibbles (`magic_codes`)."""
    found = [_config(m, n, k, bits, group_size)]
    if 4 <= m <= 16:  # the default tile reading the steps-first copy (untimed, as the GEMV's)
        found.append({**found[0], "STEPS_FIRST": True})
    asm_choices = (False, True) if bits == 4 else (False,)   # the PTX nibbles: 4-bit codes

    def add(cfg):
        if cfg not in found:
            found.append(cfg)

    if m >= 16:
        for asm in asm_choices:
            for bn in (32, 64, 128):
                for target in (1, 512, 2048):
                    add(_tile(m, n, k, bits, group_size, 16 if m <= 16 else 32, bn, target, use_dot=True, asm=asm))
            if m >= 64:  # counted on sm_90 at 256 rows: 0.0030 warp instructions per weight and row
                # for [64, 128] tiles, 0.0024 for [128, 64], against 0.0080 for [32, 64] (fp16, no PTX);
                # [128, 64] tiles without split-K only (its atomic adds spilled registers)
                for bm, bn, targets in ((64, 64, (1, 512)), (64, 128, (1, 512)), (128, 64, (1,))):
                    for target in targets:
                        add(_tile(m, n, k, bits, group_size, bm, bn, target, use_dot=True, asm=asm))
        if m >= 64:  # or decode the whole weight, then cuBLAS
            add(_dequant(bits, group_size))
        return found
    if m <= 8:
        for block_n, warps in ((32, 1), (64, 1), (64, 2), (128, 4)):
            for target in (1, 512, 2048):
                add(_gemv(n, k, bits, group_size, block_n, warps, target))
        add(_gemv(n, k, bits, group_size, 32, 1, 2048, steps_first=True))   # as half2's, below
        if bits == 4:  # two codes per instruction (fp16 x only; `_exact` makes them 'gemv' for others)
            for block_n, warps in ((32, 1), (64, 1), (64, 2), (128, 4)):
                for prefetch in (False, True):
                    add(_half2(n, k, group_size, block_n, warps, 2048, prefetch))
            for block_n, warps in ((32, 1), (64, 1)):
                add(_half2(n, k, group_size, block_n, warps, 512, False))
            add(_half2(n, k, group_size, 128, 2, 2048, False))  # 8 rows a thread, as (64, 1): 0.078 counted
            # the codes of later steps copied ahead into shared memory: cold on an H200 (L2 flushed),
            # half2 took as long as packed_gemv with 38% fewer instructions, waiting on memory
            for block_n, warps in ((32, 1), (64, 2)):
                for stages in (2, 3):
                    add(_half2(n, k, group_size, block_n, warps, 2048, False, stages=stages))
            # each step one contiguous block (untimed): cold, 64-byte pieces a row apart may cost DRAM
            # efficiency that fp16 cuBLAS, which streams whole rows, does not pay
            for stages in (1, 3):
                add(_half2(n, k, group_size, 32, 1, 2048, False, stages=stages, steps_first=True))
            if m > 1:  # rows of x sharing each program's codes
                for block_n, warps in ((32, 1), (64, 2)):  # (64, 1) spills with 4 rows of x
                    add(_half2(n, k, group_size, block_n, warps, 2048, False, block_m=2 if m == 2 else 4))
        for block_w in (32, 64):  # steps of several groups: fewer, longer steps
            if k % (32 // bits * block_w) == 0 and block_w > _block_words(bits, group_size):
                for block_n in (16, 32, 64) if block_w == 32 else (16, 32):  # [64, 64] spills
                    for target in (1, 512, 2048):
                        add(_gemv(n, k, bits, group_size, block_n, 4, target, block_w))
    block_m = 1 if m == 1 else 2 if m == 2 else 4 if m <= 4 else 8
    for bn in ((16, 32, 64) if block_m <= 2 else (8, 16, 32)):
        for target in (1, 1024):
            add(_tile(m, n, k, bits, group_size, block_m, bn, target))
    if m > 1:  # tensor-core tiles of 16 rows, those past m empty: a weight's dequantization costs
        # the same for 2 rows of x as for 16, and from 4 rows on less than the FMA tile's, per weight
        for asm in asm_choices:
            for bn in (64, 128):
                add(_tile(m, n, k, bits, group_size, 16, bn, 512, use_dot=True, asm=asm))
    return found


def launch_grid(cfg: dict, m: int, n: int) -> tuple[int, int, int]:
    """The programs configuration `cfg` launches for x [m, in] and an [n, in] weight: GEMV kernels
    (rows of x, row blocks, split-K); the tile kernel (row blocks, blocks of x's rows, split-K)."""
    if cfg["KERNEL"] in ("gemv", "half2"):
        return -(-m // cfg.get("BLOCK_M", 1)), -(-n // cfg["BLOCK_N"]), cfg["SPLIT_K"]
    if cfg["KERNEL"] == "dequant":   # the decoding kernel's row blocks (the matmul is cuBLAS's)
        return -(-n // cfg["BLOCK_N"]), 1, 1
    return -(-n // cfg["BLOCK_N"]), -(-m // cfg["BLOCK_M"]), cfg["SPLIT_K"]


def _exact(cfg: dict, dtype: torch.dtype) -> dict:
    """cfg, made to suit x's dtype: without tensor cores for float32 x (they would round it to
    tf32), and the fp16-only 'half2' kernel as the 'gemv' kernel for other dtypes."""
    if cfg["KERNEL"] == "half2" and dtype != torch.float16:
        return {"KERNEL": "gemv", **{key: cfg[key] for key in ("BLOCK_N", "BLOCK_W", "SPLIT_K", "num_warps",
                                                               "STEPS_FIRST") if key in cfg}}
    if cfg.get("USE_DOT") and dtype == torch.float32:
        plain = {key: value for key, value in cfg.items() if key != "ASM"}
        return {**plain, "USE_DOT": False, "BLOCK_M": 4, "BLOCK_N": min(cfg["BLOCK_N"], 32)}
    return cfg
