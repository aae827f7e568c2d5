"""The triton backend: fused W4A16 (and W2/W8) GPU kernels for GEMV and small-batch GEMM.

Same idea as the cpu kernel, written for a GPU: the float weight is never written anywhere.
8192 × 8192 at 4 bits moves 34 MB from memory instead of 134 MB of fp16, which is where a
memory-bound GEMV gets its speed, *if* the kernel issues few enough instructions per weight to
keep up with the memory: at 4.8 TB/s an H200 delivers about ten 4-bit weights a picosecond, some
37 to each of its 132 SMs every clock cycle (lesson 09 counts it).

The kernels (device code), one file each, imported with triton on first use:
- `gemv.py`, `packed_gemv`: one row of x (batch 1); codes made float32 by their bits.
- `half2.py`, `packed_gemv_half2`: fp16 x, 4-bit codes, 1 to 4 rows of x; two codes per
  instruction in f16x2 registers (inline PTX, `ptx.py`).
- `tile.py`, `packed_matmul`: BLOCK_M rows of x at once; on tensor cores from 4 rows on; and
  `dequantize_weight`, the whole weight decoded for a dense matmul (prompts).
- The GEMV and tile kernels can also read the codes *steps-first* (`steps_first_layout`, a
  rearranged copy kept on the layer), so that each program's step is one contiguous block.
- `common.py`: `finish_tile`. For big N·K and few rows of x the input dimension is also split
  across programs (SPLIT_K) whose partial sums meet with atomic adds in float32 sums kept on the
  layer (`_kept_sums`), so that there are enough programs to keep every SM's memory busy; the
  last program to finish each block of y stores it and zeroes its sums, in the same kernel.

The host side: `configs.py` says which configurations exist (`candidates`; `_config` is the
default); this file, which one to run (`tune`), and the launch (`linear`, `_launch`). Which kernel and block
sizes are fastest depends on the GPU, so on a GPU `tune` times the `candidates` on the first call
for each class of batch size (`batch_class`: 1, 2, 3–4, …, 129–256, 257 and up), shape and
format, keeps the fastest that agrees with the reference kernel, and records every time
(`tuned()`; `minicomp bench` saves them). `MINICOMP_TRITON_TUNE=0` switches tuning off.

Runs on CUDA tensors. With `TRITON_INTERPRET=1` (set before the first call) triton interprets
the same kernels on the CPU with numpy, which is how the tests check them without a GPU; there
`_config` runs. `sass.py` compiles a configuration for an NVIDIA GPU that is not there and counts
the instructions of its main loop, so the tests also check that every candidate compiles, and
`benchmarks/triton_static.py` counts each one's instructions per weight.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os

import torch
from tqdm.auto import tqdm

from minicomp.kernels.reference import check_call, dequantize_packed
from minicomp.kernels.triton.configs import (  # noqa: F401  (the tests and lesson 09 use them from here)
    _block_bytes,
    _block_words,
    _config,
    _dequant,
    _exact,
    _gemv,
    _half2,
    _split,
    _step_bytes,
    _tile,
    candidates,
    launch_grid,
)

NAME = "triton"
PACK_BITS = (2, 4, 8)
triton = None  # imported on first use (`_import`): TRITON_INTERPRET must be set before `import triton`


def installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available() -> bool:
    """Whether the kernels can run here: triton, and a CUDA GPU it compiles for (or the interpreter)."""
    if not installed():
        return False
    return interpreting() or (torch.cuda.is_available() and gpu_too_old(torch.cuda.current_device()) is None)


MIN_CAPABILITY = (7, 0)   # Volta and newer: triton's compiler fails for older GPUs (a P100 is 6.0)


@functools.cache
def gpu_too_old(device: int) -> str | None:
    """Why CUDA GPU `device` is too old for the kernels, or None if it is not."""
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) >= MIN_CAPABILITY:
        return None
    return (f"{torch.cuda.get_device_name(device)} has compute capability {major}.{minor}; triton compiles for "
            f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} and newer (V100, T4, A100, H100, RTX 20xx and later); "
            "the 'reference' backend runs there")


def _import():
    """Import triton and the kernel modules, which import it (`common`, `gemv`, `half2`, `tile`,
    module globals from then on), once; returns the triton module."""
    global triton, common, gemv, half2, tile
    if triton is None:
        import triton as _triton

        from minicomp.kernels.triton import common, gemv, half2, tile
        triton = _triton
    return triton


SUMS_ROWS = 16   # split-K sums kept on the layer between calls, for up to this many rows of x


def _kept_sums(layer, m: int, n: int, tiles: int, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The float32 [m, n] zeros a split-K call adds its partial sums into, and int32 zeros, one
    counter per block of y (`tiles` of them), kept on the layer between calls (for m <=
    SUMS_ROWS). The last program to finish each block of y stores it from the sums and zeroes
    them and its counter again (`common.finish_tile`), so a call is one launch: no zeroing
    before it, no cast after it. Each launch saved is ~1.4 µs on an H200, where a batch-1 call
    of an 8192² layer takes ~16-20 µs. Calls of one layer must then be ordered, as on one CUDA
    stream; a CUDA graph that replays a call keeps using these tensors, so it must not outlive
    them (`.to()` and friends drop them). None: use fresh zeros (more rows, or a layer without a
    kernel cache)."""
    cache = getattr(layer, "_kernel_cache", None)
    if cache is None or m > SUMS_ROWS:
        return None
    key = ("triton split-K sums", str(device))
    sums, counts = cache.get(key, (None, None))
    # made once per layer (a bigger set of counters may replace the old, which is all zero between calls)
    if sums is None or sums.shape[1] != n or counts.numel() < tiles:
        sums = torch.zeros(SUMS_ROWS, n, device=device, dtype=torch.float32)
        counts = torch.zeros(max(tiles, 0 if counts is None else counts.numel()), device=device, dtype=torch.int32)
        cache[key] = (sums, counts)
    return sums[:m], counts


def steps_first_layout(layer, block_w: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's codes, scales and zero points rearranged for the kernels' STEPS_FIRST (GEMV and tile):
    words [K/(PER·block_w), N, block_w] int32, where the layer keeps each row's words together,
    [N, K/PER]; and scales and zeros [K/GROUP, N], the layer's transposed. A program reads
    BLOCK_N rows' words of one step, which the layer's own layout spreads over BLOCK_N places a
    row (4 KB at 8192 inputs) apart, 64 bytes each; here they are one contiguous block. Made once
    per layer and block_w and kept on the layer beside its own buffers (the packed bytes once
    more); remade when those change (e.g. load_state_dict), as the cpu backend's `layout` is, and
    dropped by `.to()` and friends."""
    def make():
        words = layer.qweight.contiguous().view(torch.int32)   # [N, K/PER]
        n, k_words = words.shape
        if k_words % block_w:
            raise ValueError(f"block_w={block_w} words must divide a row's {k_words} words")
        return (words.reshape(n, k_words // block_w, block_w).transpose(0, 1).contiguous(),
                layer.scales.t().contiguous(), layer.zeros.t().contiguous())

    return layer.kept_layout(_steps_first_key(block_w, device), make)


def _steps_first_key(block_w: int, device) -> tuple:
    return ("triton steps-first", block_w, str(device))


def _steps_first_words(cfg: dict) -> int | None:
    """int32 words of a row per step in the steps-first copy configuration `cfg` reads (the GEMV
    kernels' BLOCK_W; the tile kernel's BLOCK_B bytes, read from the same copy), or None."""
    if not cfg.get("STEPS_FIRST") or cfg["KERNEL"] == "dequant":
        return None
    if "BLOCK_W" in cfg:
        return cfg["BLOCK_W"]
    if cfg["BLOCK_B"] % 4:
        raise ValueError(f"config BLOCK_B={cfg['BLOCK_B']}: the steps-first layout holds whole int32 words, "
                         "so BLOCK_B must be a multiple of 4")
    return cfg["BLOCK_B"] // 4


def unsupported(layer, x: torch.Tensor) -> str | None:
    """Why this backend cannot run `layer` on `x`, or None if it can."""
    if not installed():
        return "triton is not installed (pip install triton; it needs a CUDA GPU)"
    if x.device.type != "cuda" and not interpreting():
        return f"x is on {x.device}; triton needs a CUDA tensor (or TRITON_INTERPRET=1)"
    if x.device.type == "cuda" and (old := gpu_too_old(x.device.index or 0)) is not None:
        return old
    if layer.pack_bits not in PACK_BITS:
        return f"pack_bits={layer.pack_bits} is not one of {PACK_BITS}"
    if _step_bytes(layer.pack_bits, layer.group_size) < 16:
        return (f"group_size={layer.group_size} at {layer.pack_bits} bits is {layer.group_size * layer.pack_bits // 8} "
                "bytes; the kernel needs groups of a multiple of 16 bytes")
    return None


TUNE = os.environ.get("MINICOMP_TRITON_TUNE", "1") not in ("", "0")  # time the candidates on a GPU
_tuned: dict[tuple, dict] = {}


def tuned() -> list[dict]:
    """What `tune` chose so far, one record per (batch class, shape, format): the batch it timed,
    the winner, its time in µs, and every candidate's time (or why it was left out). `minicomp
    bench` saves them."""
    return [dict(record) for record in _tuned.values()]


def _gpu_timer(fn) -> float:
    """Seconds per call of fn on a GPU, as a served model runs it: fn captured in a CUDA graph, and
    each replay queued behind a spinning kernel, with the L2 cache flushed before it
    (`hardware.measure(hold=True, flush=True)`), as `minicomp bench` times. Neither Python's
    launch nor a weight left in the cache is timed. (With triton's do_bench, used before
    2026-11-30, `tune` timed the half2 kernel at 39 µs on an H200, where graph replays took 18-24.)"""
    from minicomp import hardware

    replay = hardware.cuda_graph(fn, warmup=2)
    device = torch.device("cuda", torch.cuda.current_device())
    return hardware.measure(replay, warmup=2, repeats=15, device=device, hold=True, flush=True).median


def _agrees(y: torch.Tensor, ref: torch.Tensor) -> bool:
    """y agrees with ref up to summation order and the rounding of y's dtype (a 16-bit store)."""
    rtol = max(2e-3, 2 * torch.finfo(y.dtype).eps)   # bf16: 1.6e-2, fp16 and fp32: 2e-3
    y, ref = y.float(), ref.float()
    return bool(torch.allclose(y, ref, rtol=rtol, atol=1e-3 * max(ref.abs().max().item(), 1e-6)))


def timed_configs(m: int, n: int, k: int, bits: int, group_size: int, dtype: torch.dtype) -> list[dict]:
    """The configurations `tune` times for x [m, k] of `dtype`: `candidates`, each made to suit the
    dtype (`_exact`), once each (for float32 or bf16 x the 'half2' ones become 'gemv' duplicates)."""
    found = []
    for cfg in candidates(m, n, k, bits, group_size):
        if _exact(cfg, dtype) not in found:
            found.append(_exact(cfg, dtype))
    return found


def batch_class(m: int) -> int:
    """The batch sizes `tune` times once for: m rounded up to a power of two, at most 512 (1, 2,
    3–4, 5–8, …, 129–256, and one class, 512, for 257 and up). Every configuration runs for any m, and the best one
    changes with the batch's order of magnitude, not with each size: a model fed sentences of
    varying length would otherwise time the candidates again for each new number of tokens."""
    return min(1 << (m - 1).bit_length(), 512)


def tune(layer, x: torch.Tensor, timer=None) -> dict:
    """The fastest of `candidates` for this layer and x's batch size and dtype, timed once per
    (`batch_class`, shape, format) and remembered. timer(fn) -> seconds per call (default:
    `_gpu_timer`).

    A candidate that fails to run (e.g. a tile too large for this GPU's registers or shared
    memory) or whose output differs from the reference kernel's (dequantize, then matmul) is left
    out, and its record says why. The default configuration is checked too: a wrong kernel is
    never chosen, whichever configuration it is. A progress bar shows while it runs (the first
    call of a shape compiles most candidates, a second or so each).

    A steps-first copy of the codes made only to time candidates is dropped again unless the
    winner reads it, so the layer keeps the extra memory only where it buys speed. (A copy made
    before, by an earlier winner, stays: a CUDA graph may have captured it.)"""
    try:   # (linear has checked x; tune runs on every GPU call, so a bad x costs nothing until it fails)
        m, k = x.shape
    except (AttributeError, ValueError):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a [M, in_features] torch.Tensor, as linear() passes it, "
                            f"got {type(x).__name__}") from None
        raise ValueError(f"x must be a [M, in_features] tensor, as linear() passes it, got {tuple(x.shape)}") from None
    n = layer.out_features
    key = (batch_class(m), n, k, layer.pack_bits, layer.group_size, x.dtype)
    if key not in _tuned:
        kept_before = set(layer._kernel_cache)
        timer = timer or _gpu_timer
        found = timed_configs(m, n, k, layer.pack_bits, layer.group_size, x.dtype)
        # x is in the codes' stored column order already: dequantize without undoing `perm`
        w = dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=layer.pack_bits,
                              group_size=layer.group_size)     # [out, in]
        expected, results = x.float() @ w.T, []
        del w
        # the first call of a shape compiles most candidates (a second or so each): show progress
        bar = tqdm(found, desc=f"triton: tuning {n}x{k} {layer.pack_bits}-bit, batch {m}", leave=False)
        for cfg in bar:
            try:
                if not _agrees(_launch(layer, x, cfg), expected):
                    raise ValueError("its output differs from the reference kernel's")
                results.append({"config": cfg, "us": timer(lambda c=cfg: _launch(layer, x, c)) * 1e6})
            except Exception as err:  # any failure only removes this candidate
                results.append({"config": cfg, "us": None, "error": f"{type(err).__name__}: {err}"[:300]})
        ran = [r for r in results if r["us"] is not None]
        if not ran:
            raise RuntimeError(f"no triton configuration ran for x {tuple(x.shape)} and a {n} x {k} "
                               f"{layer.pack_bits}-bit layer; the first failed with {results[0]['error']}")
        best = min(ran, key=lambda r: r["us"])  # ties: the earlier candidate
        words = _steps_first_words(best["config"])   # (timed_configs already suits x's dtype)
        used = None if words is None else _steps_first_key(words, x.device)
        for made in set(layer._kernel_cache) - kept_before:
            if made[0] == "triton steps-first" and made != used:
                del layer._kernel_cache[made]
        _tuned[key] = {"batch": m, "batch_class": key[0], "out": n, "in": k, "bits": layer.pack_bits,
                       "group_size": layer.group_size, "dtype": str(x.dtype).replace("torch.", ""),
                       "config": best["config"], "us": best["us"], "candidates": results}
    return _tuned[key]["config"]


def _launch(layer, x: torch.Tensor, cfg: dict, out: torch.Tensor | None = None) -> torch.Tensor:
    """One kernel call with configuration `cfg` on a prepared x [M, in] (permuted, contiguous).
    Returns y [M, out]: in x's dtype unless a float32 bias is still to be added, or, with split-K
    over more than SUMS_ROWS rows, float32. out: a y to add into (split-K: float32) or to write
    (no split-K) instead, returned as it is; for timing the kernel alone (triton_graphs.py)."""
    m, k = x.shape
    n = layer.out_features
    y_dtype = torch.float32 if layer.bias is not None else x.dtype   # each output stored once
    grid = launch_grid(cfg, m, n)
    kept = _kept_sums(layer, m, n, grid[0] * grid[1], x.device) if out is None and cfg["SPLIT_K"] > 1 else None
    result = counts = None
    if out is not None:
        y = out
    elif kept is not None:   # partial sums added into the kept zeros; the last program stores y
        (y, counts), result = kept, torch.empty(m, n, device=x.device, dtype=y_dtype)
    elif cfg["SPLIT_K"] > 1:  # partial sums are added into y: float32 zeros
        y = torch.zeros(m, n, device=x.device, dtype=torch.float32)
    else:
        y = torch.empty(m, n, device=x.device, dtype=y_dtype)
    try:   # with kept sums, the last program of each block of y stores it in `result`
        _run_kernel(layer, x, cfg, grid, y, None if kept is None else (result, counts))
    except BaseException:
        if kept is not None:   # never leave partial sums or counts behind for the next call
            y.zero_()
            counts.zero_()
        raise
    return y if result is None else result


def _run_kernel(layer, x: torch.Tensor, cfg: dict, grid: tuple, y: torch.Tensor,
                finish: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """`_launch`'s launch: the kernel of `cfg` on x [M, in], writing y [M, out] or, with split-K,
    adding into it; finish: (out, counts) when y is the layer's kept sums (`_kept_sums`), for the
    kernel to store the result in out (FINISH), else None."""
    m, k = x.shape
    n = layer.out_features
    qweight, scales, zeros = (t.contiguous() for t in (layer.qweight, layer.scales, layer.zeros))
    interp = interpreting()   # no PTX there, and bf16 needs float32 dot operands (DOT_FP32)
    shared = dict(BITS=layer.pack_bits, GROUP=layer.group_size, BLOCK_N=cfg["BLOCK_N"], ATOMIC=cfg["SPLIT_K"] > 1,
                  FINISH=finish is not None, num_warps=cfg["num_warps"], enable_fp_fusion=True)  # FFMA: a·b + c rounded once
    finish = finish or (y, y)   # (without FINISH the kernels read neither)
    gemv_kernel = cfg["KERNEL"] in ("gemv", "half2")
    if gemv_kernel and k % (32 // layer.pack_bits * cfg["BLOCK_W"]):
        raise ValueError(f"config BLOCK_W={cfg['BLOCK_W']} covers {32 // layer.pack_bits * cfg['BLOCK_W']} inputs "
                         f"per step, which must divide in_features={k}; pick one of `candidates`")
    row_bytes, row_scales = qweight.stride(0), scales.stride(0)
    step_words = _steps_first_words(cfg)
    if step_words:   # the same numbers, rearranged: codes [steps, out, step], scales and zeros [groups, out]
        words, scales, zeros = steps_first_layout(layer, step_words, x.device)
        qweight, row_bytes, row_scales = words.view(torch.uint8), 4 * step_words, 1
        shared["STEPS_FIRST"] = True
    if gemv_kernel:
        # [out, in / PER] (steps-first: [steps, out, BLOCK_W]) int32 words: 4 bytes, little-endian, as the
        # cpu kernel reads them
        words = qweight.view(torch.int32)
        row_words = row_bytes // 4
        if cfg["KERNEL"] == "gemv":
            gemv.packed_gemv[grid](x, words, scales, zeros, y, *finish, n, k, cfg["SPLIT_K"],
                                   x.stride(0), row_words, row_scales, y.stride(0),
                                   BLOCK_W=cfg["BLOCK_W"], **shared)
        else:
            if x.dtype != torch.float16 or layer.pack_bits != 4 or cfg["BLOCK_W"] % 2:
                raise ValueError(f"config KERNEL='half2' needs float16 x, 4-bit codes and an even BLOCK_W, not "
                                 f"{x.dtype}, {layer.pack_bits}-bit codes and BLOCK_W={cfg['BLOCK_W']}; "
                                 "`linear` turns it into the 'gemv' kernel for other inputs (`_exact`)")
            if cfg["BLOCK_M"] not in (1, 2, 4):
                raise ValueError(f"config BLOCK_M={cfg['BLOCK_M']}: the 'half2' kernel takes 1, 2 or 4 rows of x "
                                 "to a program; pick one of `candidates`")
            if x.storage_offset() % 2:     # x starts mid-way through an int32: copy it to read it in pairs
                x = x.clone()
            pairs = x.view(torch.int32)    # [M, in / 2]: element j holds inputs 2j and 2j + 1
            half2.packed_gemv_half2[grid](pairs, words, scales, zeros, y, *finish, m, n, k, cfg["SPLIT_K"],
                                          pairs.stride(0), row_words, row_scales, y.stride(0),
                                          BLOCK_M=cfg["BLOCK_M"], BLOCK_W=cfg["BLOCK_W"], ASM=not interp,
                                          PREFETCH=cfg["PREFETCH"], STAGES=cfg.get("STAGES", 1), **shared)
    elif cfg["KERNEL"] == "dequant":   # the whole weight in x's dtype, then a dense matmul
        w = torch.empty(n, k, device=x.device, dtype=x.dtype)
        tile.dequantize_weight[(grid[0],)](qweight, scales, zeros, w, n, k, qweight.stride(0), scales.stride(0),
                                          w.stride(0), BITS=layer.pack_bits, GROUP=layer.group_size,
                                          BLOCK_N=cfg["BLOCK_N"], BLOCK_B=cfg["BLOCK_B"], num_warps=cfg["num_warps"])
        if y.dtype == x.dtype:
            torch.mm(x, w.t(), out=y)
        else:   # float32 y for a bias: the product rounded to x's dtype first (cuBLAS's output)
            y.copy_(torch.mm(x, w.t()))
    else:
        bb = cfg["BLOCK_B"]
        tile.packed_matmul[grid](x, qweight, scales, zeros, y, *finish, m, n, k, cfg["SPLIT_K"],
                                 x.stride(0), row_bytes, row_scales, y.stride(0),
                                 BLOCK_M=cfg["BLOCK_M"], BLOCK_B=bb, ACC_B=1 if cfg["USE_DOT"] else bb,
                                 USE_DOT=cfg["USE_DOT"], DOT_FP32=interp and x.dtype == torch.bfloat16,
                                 ASM=cfg.get("ASM", False) and not interp, **shared)


def linear(layer, x: torch.Tensor, config: dict | None = None, *, check: bool = True) -> torch.Tensor:
    """y = x Wᵀ for a `PackedLinear` `layer`, x [M, in] -> y [M, out], W never built.

    y is x's dtype when there is no bias, else float32 (the bias is added in float32), and float32
    too with split-K over more than SUMS_ROWS rows of x (the partial sums are added in float32 in
    y itself); PackedLinear casts it to x's dtype.

    config: which kernel and block sizes (one of `candidates`); by default `tune` picks them on a
    GPU (when `TUNE`) and `_config` does under the interpreter.

    check=False skips checking the arguments: `PackedLinear.forward` has already."""
    if check:
        check_call(layer, x)   # (a wrong width would have the kernel read past x's rows)
    if config is not None:
        _check_config(config)
    _import()
    if layer.perm is not None:
        x = x[:, layer.perm.to(x.device)]           # codes are stored in permuted column order
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        x = x.to(torch.float32)
    x = x.contiguous()
    m, k = x.shape
    with _device_of(x):
        if config is None:
            if TUNE and not interpreting():
                config = tune(layer, x)
            else:
                config = _config(m, layer.out_features, k, layer.pack_bits, layer.group_size)
        return _launch(layer, x, _exact(config, x.dtype))


CONFIG_KEYS = {   # what each kernel's configuration must say (`configs.py` makes them)
    "gemv": ("BLOCK_N", "BLOCK_W", "SPLIT_K", "num_warps"),
    "half2": ("BLOCK_N", "BLOCK_W", "SPLIT_K", "num_warps", "BLOCK_M", "PREFETCH"),
    "tile": ("BLOCK_M", "BLOCK_N", "BLOCK_B", "SPLIT_K", "USE_DOT", "num_warps"),
    "dequant": ("BLOCK_N", "BLOCK_B", "SPLIT_K", "num_warps"),
}


def _check_config(config) -> None:
    """Raise unless `config` is a configuration dict of the kind `candidates` returns."""
    kernel = config.get("KERNEL") if isinstance(config, dict) else None
    missing = [key for key in CONFIG_KEYS.get(kernel, ()) if key not in config]
    if kernel not in CONFIG_KEYS or missing:
        hint = " (a `tuned()` record holds one under 'config')" if isinstance(config, dict) and "config" in config else ""
        raise ValueError(f"config must be None (automatic) or one of candidates(m, n, k, bits, group_size): a dict "
                         f"with 'KERNEL' one of {list(CONFIG_KEYS)} and that kernel's block sizes"
                         f"{f', missing {missing}' if missing else ''}; got {config!r}{hint}")


def _device_of(x: torch.Tensor):
    """A context that makes x's GPU the current one if it is not (triton launches on the current
    device: x on cuda:1 while cuda:0 is current would be read from the wrong GPU)."""
    if x.is_cuda and x.device.index != torch.cuda.current_device():
        return torch.cuda.device(x.device)
    return contextlib.nullcontext()
