# %% [markdown]
# # Exercise 07: the GPTQ inner loop
#
# GPTQ quantizes a weight `W [out, in]` one column at a time. After column `i` is rounded, its
# error is spread over the columns that are not quantized yet, so that they can make up for it.
# How much each later column moves comes from `Hinv`, the upper Cholesky factor of the inverse
# Hessian `(2 XᵀX + λI)⁻¹` of the layer's inputs (lesson 07):
#
# ```
# for i in range(in):
#     q   = quantize-dequantize(W[:, i])          # with this row's scale and zero point
#     err = (W[:, i] − q) / Hinv[i, i]
#     W[:, i:] −= err ⊗ Hinv[i, i:]               # error feedback (GPTQ eq. 2, Cholesky form)
# ```

# %%
import torch

from minicomp.grading import check

# %% [markdown]
# ## Your task
#
# Write `gptq_columns(W, Hinv, scale, zero, qmax)` and return the quantized weight `Q [out, in]`
# as floats (dequantized). `scale` and `zero` have shape `[out, 1]` (one grid per row); a column
# `w [out]` quantizes to `(clamp(round(w / scale) + zero, 0, qmax) − zero) · scale`. Work on a
# copy of `W`: the caller's tensor must not change.

# %%
def gptq_columns(W, Hinv, scale, zero, qmax):
    """GPTQ's column loop with error feedback. W [out, in], Hinv [in, in] upper, scale/zero [out, 1]."""
    ### BEGIN SOLUTION
    W = W.clone()
    Q = torch.zeros_like(W)
    s, z = scale[:, 0], zero[:, 0]
    for i in range(W.shape[1]):
        w = W[:, i]
        q = (torch.clamp(torch.round(w / s) + z, 0, qmax) - z) * s
        Q[:, i] = q
        err = (w - q) / Hinv[i, i]
        W[:, i:] -= err[:, None] * Hinv[i, i:][None, :]
    return Q
    ### END SOLUTION


# %%
check("gptq_columns", gptq_columns)

# %% [markdown]
# ## Using it
#
# The library's `minicomp.gptq.gptq_quantize` runs the same loop with lazy block updates, groups
# and act-order. On a layer with correlated inputs, the feedback pays off against RTN:

# %%
from minicomp.gptq import gptq_quantize, input_hessian
from minicomp.rtn import rtn_quantize

g = torch.Generator().manual_seed(0)
W = torch.randn(32, 128, generator=g) * 0.1
X = torch.randn(512, 128, generator=g) @ torch.randn(128, 128, generator=g)
H = input_hessian([X])
err = {name: ((X @ (W - Wq).T) ** 2).sum().item() for name, Wq in
       [("rtn", rtn_quantize(W, 4, -1).dequantize()), ("gptq", gptq_quantize(W, H, 4, -1).dequantize())]}
print(f"layer output error  RTN {err['rtn']:.1f}   GPTQ {err['gptq']:.1f}")
assert err["gptq"] < err["rtn"]
