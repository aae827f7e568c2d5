# %% [markdown]
# # Exercise 05: per-group quantization
#
# Lesson 05 showed that one scale for a whole weight matrix is a poor fit: a single large weight
# stretches the grid for everyone. **Per-group** quantization cuts each row of a weight
# `w [out, in]` into pieces of `group_size` consecutive inputs and gives each piece its own
# scale and zero point. It is what GPTQ, AWQ and llama.cpp's formats use (groups of 32–128).
#
# ```
#   w [out, in]  ──reshape──►  [out, in / group_size, group_size]
#                               └ one (scale, zero_point) per group: shape [out, in / group_size, 1]
# ```

# %%
import torch

from minicomp.grading import check

# %% [markdown]
# ## Your task
#
# Write `quantize_per_group(w, bits, group_size)`: quantize `w [out, in]` with **asymmetric
# min-max** per group (codes `0 … 2^bits − 1`, each group's range widened to include 0, scale 1.0
# for an all-zero group), then **dequantize** and return the result with `w`'s shape `[out, in]`.
#
# Steps:
#
# 1. `wg = w.reshape(out, in // group_size, group_size)`;
# 2. per group, over the last axis with `keepdim=True`: `lo = min(amin, 0)`, `hi = max(amax, 0)`,
#    `scale = (hi − lo) / (2^bits − 1)` (1.0 where that is 0), `zero = round(−lo / scale)`;
# 3. `q = clamp(round(wg / scale) + zero, 0, 2^bits − 1)`, then `(q − zero) · scale`;
# 4. reshape back to `[out, in]`.
#
# Example: `w = [[-1.0, 2.0, 0.5, 1.5], [3.0, 0.0, -2.0, -1.0]]`, 2 bits, groups of 2. The first
# group `[-1, 2]` has scale 1 and zero point 1, so it comes back exactly.

# %%
def quantize_per_group(w, bits, group_size):
    """w [out, in] quantized per group of `group_size` inputs (asymmetric min-max), dequantized."""
    ### BEGIN SOLUTION
    out, n_in = w.shape
    wg = w.reshape(out, n_in // group_size, group_size)  # [out, groups, group_size]
    lo = wg.amin(dim=-1, keepdim=True).clamp(max=0)  # [out, groups, 1]
    hi = wg.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / (2**bits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-lo / scale)
    q = torch.clamp(torch.round(wg / scale) + zero, 0, 2**bits - 1)
    return ((q - zero) * scale).reshape(out, n_in)
    ### END SOLUTION


# %%
check("quantize_per_group", quantize_per_group)

# %% [markdown]
# ## Using it
#
# The library's version is `minicomp.quant.quantize_dequantize(w, bits, group_size=...)`, and
# `minicomp.rtn.rtn_quantize` returns the codes, scales and zero points as a `QuantizedWeight`.
# How much does the group size matter for a weight with a few large values?

# %%
from minicomp.quant import quantize_dequantize
from minicomp.rtn import rtn_quantize

g = torch.Generator().manual_seed(0)
w = torch.randn(64, 256, generator=g) * 0.02
w[torch.randint(0, 64, (16,), generator=g), torch.randint(0, 256, (16,), generator=g)] = 0.3  # outliers
print(f"{'group size':>10} {'rel. error':>10} {'bits/weight':>12}")
errors = {}
for gs in (256, 128, 64, 32):
    qw = rtn_quantize(w, 4, gs, scale_dtype=torch.float16)
    errors[gs] = ((qw.dequantize() - w).norm() / w.norm()).item()
    print(f"{gs:>10} {errors[gs]:>10.4f} {qw.bits_per_weight:>12.3f}")
assert errors[32] < errors[256]
assert torch.allclose(quantize_dequantize(w, 4, group_size=32), rtn_quantize(w, 4, 32).dequantize())
