# %% [markdown]
# # 00 · Bits, bytes and your hardware
#
# Compression makes a model cheaper to **store** and cheaper to **run**. Before we distill or
# quantize anything we need two instruments: a way to count bytes exactly, and a way to time
# code honestly. This lesson builds both on the machine in front of you and uses them to answer
# four questions:
#
# 1. What machine is this?
# 2. How many bytes does a number, a tensor, a model take?
# 3. How fast is a matrix multiply in float32, bfloat16 and int8?
# 4. Why is multiplying by *one* vector limited by memory, while multiplying by *many* is
#    limited by arithmetic?
#
# Every claim is measured, then checked by an `assert` in the next cell. Timings are noisy, so
# those asserts are loose: they check the shape of a result, never an exact time.
#
# All the tools come from `minicomp/hardware/` (four short files, one per kind of tool); open
# them beside this notebook.

# %%
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from minicomp.hardware import (
    compare, describe_machine, dtype_bytes, format_machine, gemv_vs_gemm, human_bytes,
    linear_cost, make_matmul, matmul_flops, measure, measure_bandwidth, model_bytes,
    num_threads, pick_device, ratios, roofline, tensor_bytes, weight_bytes,
)

torch.manual_seed(0)

# %% [markdown]
# ## 1. What machine is this?
#
# Three facts explain most of the numbers below:
#
# * **threads**: PyTorch splits a large matrix multiply across CPU cores;
# * **SIMD level** (`AVX2`, `AVX512`, Arm `NEON`/`SVE`): how many numbers one instruction
#   handles, and whether the CPU has instructions for bfloat16 or int8 at all;
# * **memory**: how much fits, and (section 5) how fast it can be read.
#
# `pick_device()` chooses CUDA, then Apple MPS, then the CPU. Set the environment variable
# `MINICOMP_DEVICE=cpu` before starting Jupyter to force the CPU.

# %%
desc = describe_machine()
print(format_machine(desc))
device = pick_device()
print("pick_device() ->", device)

# %% [markdown]
# ## 2. Bytes per number
#
# | dtype | bits | bytes | what it keeps |
# |---|---|---|---|
# | float32 | 32 | 4 | 8 exponent + 23 mantissa bits: about 7 significant digits |
# | float16 | 16 | 2 | 5 exponent + 10 mantissa bits: about 3 digits, largest value 65504 |
# | bfloat16 | 16 | 2 | 8 exponent + 7 mantissa bits: float32's *range*, about 2–3 digits |
# | int8 | 8 | 1 | the integers −128 … 127 |
# | int4 | 4 | ½ | the integers −8 … 7; PyTorch has no int4 tensor, so two are packed in a byte |
#
# `eps` below is the gap between 1.0 and the next representable number: the relative precision.

# %%
print(f"{'dtype':15} {'bits':>4} {'bytes':>5} {'largest':>11} {'eps':>9}")
for dt in (torch.float32, torch.float16, torch.bfloat16, torch.int8):
    info = torch.finfo(dt) if dt.is_floating_point else torch.iinfo(dt)
    eps = f"{info.eps:.1e}" if dt.is_floating_point else "1"
    print(f"{str(dt):15} {8 * dtype_bytes(dt):>4} {dtype_bytes(dt):>5} {info.max:>11.4g} {eps:>9}")
bits = 4  # no torch dtype: from the definition, two codes a byte, signed codes -8 .. 7
print(f"{'int4 (packed)':15} {bits:>4} {bits / 8:>5} {2 ** (bits - 1) - 1:>11} {'1':>9}")

# %% [markdown]
# Claims: bytes per element are 4, 2, 2, 1; a tensor's bytes are its element count times that;
# the table's mantissa bits are what `eps` says (eps = 2⁻ᵐᵃⁿᵗⁱˢˢᵃ), which gives the digits
# (log₁₀ of 2 to the mantissa bits plus the hidden one: 7.2, 3.3, 2.4); float16's largest value
# is 65504; bfloat16 keeps float32's range (100 000 is fine) while float16 overflows to infinity.

# %%
assert [dtype_bytes(d) for d in (torch.float32, torch.float16, torch.bfloat16, torch.int8)] == [4, 2, 2, 1]
x = torch.randn(1000)
assert tensor_bytes(x) == 4000
assert tensor_bytes(x.bfloat16()) == 2000
assert tensor_bytes(x.to(torch.int8)) == 1000
big = torch.tensor(100_000.0)
assert torch.isfinite(big.bfloat16()) and torch.isinf(big.half())
mantissa = {torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}
digits = {dt: math.log10(2 ** (m + 1)) for dt, m in mantissa.items()}
assert all(torch.finfo(dt).eps == 2.0 ** -m for dt, m in mantissa.items())
assert [round(d, 1) for d in digits.values()] == [7.2, 3.3, 2.4], digits
assert torch.finfo(torch.float16).max == 65504 and torch.finfo(torch.bfloat16).max > 3e38
assert (torch.iinfo(torch.int8).min, torch.iinfo(torch.int8).max) == (-128, 127)
print("checked: 4/2/2/1 bytes; bf16 keeps the range of float32, float16 overflows at 65504")

# %% [markdown]
# ## 3. Model memory arithmetic
#
# The weights of a model take `parameters × bits / 8` bytes. For a 7-billion-parameter model:

# %%
N_PARAMS = 7_000_000_000
for name, bits in [("float32", 32), ("bf16/fp16", 16), ("int8", 8), ("int4", 4)]:
    b = weight_bytes(N_PARAMS, bits)
    print(f"{name:10} {bits:>2} bits  {human_bytes(b):>8}   = {human_bytes(b, binary=True)}")
assert weight_bytes(N_PARAMS, 32) == 28 * 10**9 and human_bytes(28 * 10**9, binary=True) == "26.1 GiB"

# %% [markdown]
# GB here is decimal (10⁹ bytes), as GPU and disk makers write it; GiB is 2³⁰ bytes, as `free -h`
# and many dashboards write it. 28 GB is 26.1 GiB (the table's first row). The weights are not all a model needs
# (activations and the attention cache come on top), but they usually dominate, and they are
# what quantization shrinks.

# %%
assert weight_bytes(N_PARAMS, 32) == 28_000_000_000   # 28 GB
assert weight_bytes(N_PARAMS, 16) == 14_000_000_000   # 14 GB
assert weight_bytes(N_PARAMS, 8) == 7_000_000_000     # 7 GB
assert weight_bytes(N_PARAMS, 4) == 3_500_000_000     # 3.5 GB
assert weight_bytes(N_PARAMS, 32) == 8 * weight_bytes(N_PARAMS, 4)   # int4 weights are 8x smaller than fp32
print("checked: 28 / 14 / 7 / 3.5 GB, and int4 is 8x smaller than float32")

# %% [markdown]
# Now a real model. `model_bytes` adds up the bytes of every parameter and buffer.

# %%
mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
n_params = sum(p.numel() for p in mlp.parameters())
print(f"parameters: {n_params:,}   model_bytes: {model_bytes(mlp):,} B = {human_bytes(model_bytes(mlp))}")
mlp_bf16 = copy.deepcopy(mlp).to(torch.bfloat16)
print(f"in bfloat16: {human_bytes(model_bytes(mlp_bf16))}")

# %%
assert model_bytes(mlp) == n_params * 4 == weight_bytes(n_params, 32)
assert model_bytes(mlp_bf16) == n_params * 2
print("checked: model_bytes = parameters x 4 in float32, x 2 in bfloat16")

# %% [markdown]
# One trap: **tied weights**. Language models often use the same matrix for the input embedding
# and the output layer. It is stored once, but a naive sum over every named parameter sees it
# twice. `model_bytes` counts each tensor once.

# %%
class TinyLM(nn.Module):
    def __init__(self, vocab=1000, dim=64):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)                 # [vocab, dim]
        self.head = nn.Linear(dim, vocab, bias=False)       # [vocab, dim]
        self.head.weight = self.emb.weight                  # tied: one tensor, two uses

lm = TinyLM()
naive = sum(tensor_bytes(p) for _, p in lm.named_parameters(remove_duplicate=False))
print(f"naive sum: {human_bytes(naive)}   model_bytes: {human_bytes(model_bytes(lm))}")

# %%
assert model_bytes(lm) == 1000 * 64 * 4
assert naive == 2 * model_bytes(lm)
print("checked: the tied matrix is counted once")

# %% [markdown]
# ## 4. How fast is a matrix multiply?
#
# `A [m, k] @ B [k, n]` does `m·n·k` multiply-adds, which we count as `2·m·k·n` floating-point
# operations (FLOPs). Throughput is FLOPs / seconds, in GFLOP/s (10⁹ per second).
#
# Timing honestly takes three habits, all inside `measure` and `compare`:
#
# * **warm up**: the first calls pay for memory allocation and caches, so they are not timed;
# * **repeat and take the median**: one slow call (another program woke up) does not move it;
# * **interleave**: to compare A with B, run A B A B … rather than A A A … B B B …, so a slow
#   minute hurts both equally. Then report a *ratio* against a baseline from the same run.

# %%
fn32, info32 = make_matmul(256, 256, 256, torch.float32, "cpu")
t = measure(fn32, warmup=2, repeats=10)
print(t)
print(f"{info32['flops'] / t.median / 1e9:.1f} GFLOP/s in float32")

# %% [markdown]
# Now a 384×384×384 product in float32, bfloat16 and int8 (int8 × int8 → int32 with
# `torch._int_mm`), timed together by `compare`:

# %%
M = K = N = 384
fns, infos = {}, {}
for dt in (torch.float32, torch.bfloat16, torch.int8):
    fn, info = make_matmul(M, K, N, dt, "cpu", seed=0)
    if fn is None:
        print(f"skipped {info['dtype']}: {info['note']}")
        continue
    fns[info["dtype"]], infos[info["dtype"]] = fn, info

timings = compare(fns, warmup=2, repeats=10, baseline="float32")
speedup = ratios(timings, "float32")
print(f"{'dtype':9} {'median':>9} {'GFLOP/s':>8} {'vs fp32':>8}  backend")
for name, tm in timings.items():
    gflops = infos[name]["flops"] / tm.median / 1e9
    print(f"{name:9} {tm.median * 1e3:7.2f}ms {gflops:8.1f} {speedup[name]:7.2f}x  {infos[name]['backend']}")

# %% [markdown]
# On many CPUs bfloat16 and int8 are **not** faster than float32, and can be far slower (the
# table above shows what this CPU does).
# Fewer bits always save memory; they save *time* only when the hardware has instructions for
# that type **and** the library has a kernel that uses them. x86 CPUs multiply bfloat16 natively
# only with AVX512-BF16 or AMX; without them PyTorch falls back to slow generic code. GPUs have
# tensor cores for both. (Later lessons write their own low-bit kernels.)
#
# What *is* guaranteed is the arithmetic: bfloat16 keeps 2–3 significant digits, and int8 ×
# int8 products summed in int32 are **exact** (no overflow either: 384 · 128 · 128 ≪ 2³¹). And on
# an x86 CPU without AVX-512 or AMX, the measurement above should show bfloat16 slower than
# float32; on one with AVX512-BF16 or AMX (the flags printed at the top), faster. The cell checks
# whichever applies.

# %%
g = torch.Generator().manual_seed(0)
A, B = torch.randn(M, K, generator=g), torch.randn(K, N, generator=g)
ref = A @ B
err = ((A.bfloat16() @ B.bfloat16()).float() - ref).norm() / ref.norm()
print(f"bfloat16 relative error: {err:.2e}")
assert 1e-3 < err < 1e-2  # 2-3 significant digits

a8 = torch.randint(-128, 128, (M, K), generator=g, dtype=torch.int8)
b8 = torch.randint(-128, 128, (K, N), generator=g, dtype=torch.int8)
exact = a8.double() @ b8.double()
out8 = torch._int_mm(a8, b8) if "_int_mm" in infos["int8"]["backend"] else a8.int() @ b8.int()
assert out8.dtype == torch.int32 and torch.equal(out8.double(), exact)

features = desc["cpu_features"]
x86 = desc["machine"].lower() in ("x86_64", "amd64") and bool(features)
if "bfloat16" in speedup and x86 and not any(f.startswith(("avx512", "amx")) for f in features):
    assert speedup["bfloat16"] < 1, speedup
    print("checked: without AVX-512/AMX, bfloat16 matmul is slower than float32 here")
elif "bfloat16" in speedup and x86 and {"avx512_bf16", "amx_bf16"} & set(features):
    assert speedup["bfloat16"] > 1.2, speedup
    print("checked: with bfloat16 instructions (AVX512-BF16 or AMX), bfloat16 matmul is faster than float32 here")
else:
    print("this CPU may have some bfloat16 support: see the 'vs fp32' column above")
print("checked: bf16 is close but not exact; int8 x int8 -> int32 is exact")

# %% [markdown]
# On a GPU the picture flips: tensor cores run bfloat16 and float16 (and int8, where PyTorch
# has a kernel for it) much faster than float32. This cell runs only when `pick_device()` chose a CUDA GPU.

# %%
if device.type == "cuda":
    S = 4096
    gfns, ginfos = {}, {}
    for dt in (torch.float32, torch.bfloat16, torch.float16, torch.int8):
        fn, info = make_matmul(S, S, S, dt, device)
        if fn is not None:
            gfns[info["dtype"]], ginfos[info["dtype"]] = fn, info
    gtimings = compare(gfns, warmup=3, repeats=10, device=device, baseline="float32")
    gspeed = ratios(gtimings, "float32")
    print(f"{torch.cuda.get_device_name(device)}, {S}x{S}x{S}:")
    for name, tm in gtimings.items():
        print(f"{name:9} {ginfos[name]['flops'] / tm.median / 1e12:7.1f} TFLOP/s "
              f"{gspeed[name]:6.2f}x  {ginfos[name]['backend']}")
    if torch.cuda.get_device_capability(device) >= (8, 0):   # Ampere or newer: bf16 tensor cores
        assert gspeed["bfloat16"] > 2 and gspeed["float16"] > 2, gspeed
        print("checked: bfloat16 and float16 are more than twice float32's speed on this GPU")
else:
    print(f"No CUDA GPU selected ({device}): this cell would time 4096^3 matmuls in fp32, bf16, "
          "fp16 and int8 on the GPU and show the low-precision ones several times faster.")

# %% [markdown]
# ## 5. GEMV vs GEMM: memory-bound vs compute-bound
#
# A linear layer computes `y = x Wᵀ` with `W [out, in]` and a batch `x [b, in]`. When a language
# model writes text for one user, `b = 1`: a matrix–vector product (**GEMV**). Serving many
# requests at once, or processing a long prompt, makes `b` large: a matrix–matrix product
# (**GEMM**).
#
# * FLOPs: `2 · b · in · out`
# * bytes moved (at least): the weight `in · out · s_w` plus activations `b · (in + out) · s_a`
#   (`s` = bytes per element)
# * **arithmetic intensity** `I = FLOPs / bytes`
#
# At `b = 1` in float32 every 4-byte weight is read once and used for a single multiply-add:
# `I ≈ 2 / 4 = 0.5` FLOP per byte. At batch `b` each weight is reused `b` times.

# %%
IN = OUT = 2048

def intensity_by_hand(b, s_w=4, s_a=4):
    flops = 2 * b * IN * OUT
    bytes_moved = IN * OUT * s_w + b * (IN + OUT) * s_a
    return flops / bytes_moved

for b in (1, 8, 64, 512):
    print(f"batch {b:>3}: I = {intensity_by_hand(b):6.2f} FLOP/byte "
          f"(library: {linear_cost(b, IN, OUT)['intensity']:6.2f})")
print(f"batch   1 with int4 weights (0.5 byte each): I = {intensity_by_hand(1, s_w=0.5):.2f}")

# %% [markdown]
# Claims: the hand count matches the library's `linear_cost`; at batch 1, shrinking the weights
# to int4 raises the intensity about 8× (fewer bytes for the same FLOPs). That is why
# quantization can speed up text generation even without an int4 multiply instruction (lesson
# 09 measures it with a real kernel).

# %%
for b in (1, 8, 64, 512):
    assert abs(intensity_by_hand(b) - linear_cost(b, IN, OUT)["intensity"]) < 1e-9
gain = intensity_by_hand(1, s_w=0.5) / intensity_by_hand(1)
assert 7 < gain <= 8, gain
print(f"checked: hand count = library; int4 weights raise batch-1 intensity {gain:.1f}x")

# %% [markdown]
# The **roofline** model: a kernel can go no faster than the arithmetic peak, nor than memory
# bandwidth × intensity:
#
# $$\text{attainable GFLOP/s} = \min(\text{peak},\ \text{bandwidth} \times I)$$
#
# The **ridge point** `peak / bandwidth` separates the two regimes: left of it a kernel waits for
# memory, right of it for arithmetic. We measure both ceilings on this machine: bandwidth by
# summing a buffer as large as our weight (16 MB, so we measure whichever memory holds it: a big
# L3 cache or main memory), peak from a large float32 matmul.
#
# From here on we measure **one core** (`num_threads(THREADS)`). The roofline of one core has the
# same shape as the whole chip's, and its timings stay steady when other programs share the
# machine: a multi-threaded kernel waits for its slowest thread, and a busy core makes that thread
# slow. On a quiet machine, try `THREADS = torch.get_num_threads()`.

# %%
THREADS = 1
with num_threads(THREADS):
    bw = measure_bandwidth(IN * OUT * 4, method="read", repeats=10)
    peak = matmul_flops(512, 512, 512, torch.float32, "cpu", repeats=10)
print(f"read bandwidth: {bw['gbytes_per_s']:.1f} GB/s    float32 matmul: {peak['gflops']:.1f} GFLOP/s")

# %% [markdown]
# Now one fixed weight `W [2048, 2048]` (16 MB in float32) times batches from 1 to 512, all timed
# interleaved by `gemv_vs_gemm`:

# %%
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
with num_threads(THREADS):
    rows = gemv_vs_gemm(BATCHES, IN, OUT, dtype=torch.float32, device="cpu", warmup=2, repeats=10)
print(f"{'batch':>5} {'FLOP/byte':>9} {'ms':>8} {'GFLOP/s':>8} {'GB/s':>7}")
for r in rows:
    print(f"{r['batch']:>5} {r['intensity']:9.2f} {r['seconds'] * 1e3:8.3f} "
          f"{r['gflops']:8.1f} {r['gbytes_per_s']:7.1f}")
peak_gflops = max(peak["gflops"], max(r["gflops"] for r in rows))
ridge = peak_gflops / bw["gbytes_per_s"]
print(f"ridge point: {ridge:.1f} FLOP/byte")

# %% [markdown]
# Read the table from the top: at batch 1 each weight read from memory serves one multiply-add,
# so GFLOP/s is low and GB/s is at the top of the table. As the batch grows, the same bytes feed
# more FLOPs and GFLOP/s climbs
# until it meets the arithmetic peak. Kinks at small batches are real too: libraries switch
# kernels for thin matrices.
#
# Claims: batch 512 reaches at least 2.5× the GFLOP/s of batch 1 (several times more on a quiet
# machine); batch 1 runs at less than half the arithmetic peak, batch 512 at more than half of
# it; and the thinnest batches move the most bytes per second: batch 1 comes within 10% of the
# table's highest GB/s (batch 2 reads almost the same bytes, so either may top it) and beats every
# batch from 16 on.

# %%
by_batch = {r["batch"]: r for r in rows}
speedup_512 = by_batch[512]["gflops"] / by_batch[1]["gflops"]
assert speedup_512 >= 2.5, speedup_512
assert by_batch[1]["gflops"] < 0.5 * peak_gflops, (by_batch[1]["gflops"], peak_gflops)
assert by_batch[512]["gflops"] > 0.5 * peak_gflops, (by_batch[512]["gflops"], peak_gflops)
assert by_batch[1]["gbytes_per_s"] >= 0.9 * max(r["gbytes_per_s"] for r in rows), rows
assert by_batch[1]["gbytes_per_s"] > max(r["gbytes_per_s"] for r in rows if r["batch"] >= 16), rows
print(f"checked: batch 512 reaches {speedup_512:.1f}x the GFLOP/s of batch 1; batch 1 runs at "
      f"{by_batch[1]['gflops'] / peak_gflops:.0%} of the peak, batch 512 at "
      f"{by_batch[512]['gflops'] / peak_gflops:.0%}")

# %%
I = [r["intensity"] for r in rows]
G = [r["gflops"] for r in rows]
grid = torch.logspace(-1, 3, 100).tolist()   # 0.1 ... 1000 FLOP/byte
fig, ax = plt.subplots(figsize=(6.5, 4.5))
ax.loglog(grid, roofline(peak_gflops, bw["gbytes_per_s"], grid), "k--",
          label=f"roofline: min({peak_gflops:.0f} GFLOP/s, {bw['gbytes_per_s']:.0f} GB/s × I)")
ax.loglog(I, G, "o-", label=f"measured y = x Wᵀ, W [2048, 2048] fp32, {THREADS} thread(s)")
for r in rows[::2]:   # label every other point: b = 1, 4, 16, 64, 256
    ax.annotate(f"b={r['batch']}", (r["intensity"], r["gflops"]), textcoords="offset points",
                xytext=(5, -10), fontsize=8)
ax.axvline(ridge, color="gray", lw=0.8, ls=":")
for axis in (ax.xaxis, ax.yaxis):   # ticks at 1, 2, 5, 10, 20, ... written as plain numbers
    axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
ax.set_xlabel("arithmetic intensity (FLOP / byte)")
ax.set_ylabel("GFLOP/s")
ax.set_title("GEMV is memory-bound, GEMM is compute-bound")
ax.legend(fontsize=8, loc="lower right")
plt.show()

# %% [markdown]
# One more check, of size: doubling the weight (32 MB → 64 MB) should make a GEMV take clearly
# longer. We assert more than 1.3× (the ideal is 2×; caches and noise move it either way). This
# doubles the multiply-adds too, so on its own it cannot tell bytes from arithmetic; the table
# above is what shows batch 1 far below the arithmetic peak.

# %%
x1 = torch.randn(1, 2048)
W_small, W_large = torch.randn(4096, 2048), torch.randn(4096, 4096)   # [out, in]
x2 = torch.randn(1, 4096)
with num_threads(THREADS):
    tw = compare({"32 MB": lambda: F.linear(x1, W_small), "64 MB": lambda: F.linear(x2, W_large)},
                 warmup=3, repeats=30, baseline="32 MB")
slower = tw["64 MB"].median / tw["32 MB"].median
print(f"GEMV with a 2x larger weight takes {slower:.2f}x as long")

# %%
assert slower > 1.3, slower
print("checked: batch-1 time grows with the weight's size")

# %% [markdown]
# On a GPU the ridge point is far higher (a data-center GPU's bfloat16 peak over its memory
# bandwidth is a few hundred FLOP/byte on the spec sheet), so even batch 64 can be memory-bound
# there: under 60 % of the throughput of large batches, the cell checks.

# %%
if device.type == "cuda":
    grows = gemv_vs_gemm(BATCHES + [1024, 2048, 4096], 8192, 8192, dtype=torch.bfloat16,
                         device=device, warmup=3, repeats=10)
    for r in grows:
        print(f"batch {r['batch']:>5}: I = {r['intensity']:7.1f} FLOP/byte  "
              f"{r['gflops'] / 1e3:7.1f} TFLOP/s  {r['gbytes_per_s']:7.0f} GB/s")
    assert grows[-1]["gflops"] >= 4 * grows[0]["gflops"]
    at64 = next(r for r in grows if r["batch"] == 64)
    assert at64["gflops"] < 0.6 * max(r["gflops"] for r in grows), at64
    print("checked: on the GPU too, large batches reach far higher throughput than batch 1, and batch 64 "
          f"reaches {at64['gflops'] / max(r['gflops'] for r in grows):.0%} of the best")
else:
    print(f"No CUDA GPU selected ({device}): this cell would sweep batch 1..4096 for a bf16 "
          "8192x8192 weight on the GPU and show TFLOP/s rising until far larger batches.")

# %% [markdown]
# ## What's next
#
# You can now count bytes exactly and time code honestly, and you have seen the two facts this
# course is built on:
#
# * **memory** is set by parameters × bits, so fewer parameters or fewer bits shrink a model;
# * **small-batch inference is memory-bound**, so fewer bytes per weight can also mean faster
#   (lesson 09 measures when it does).
#
# Lesson **01** makes models smaller by *distillation*: a small student learns to imitate a
# large teacher. Lesson **04** starts *quantization*: storing the same weights in 8 and 4 bits,
# and measuring what that costs in accuracy.
