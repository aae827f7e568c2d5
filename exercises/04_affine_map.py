# %% [markdown]
# # Exercise 04: the affine map
#
# Lesson 04 quantized numbers with
#
# $$q = \mathrm{clamp}\big(\mathrm{round}(x / s) + z,\; q_{min},\; q_{max}\big) \qquad\qquad \hat x = (q - z)\cdot s$$
#
# Here you write the three functions behind it. Fill in each function where it says
# `# YOUR CODE HERE`, then run the `check(...)` cell after it. The report tells you what is
# wrong and, for the usual mistakes, why.

# %%
import torch

from minicomp.grading import check

# %% [markdown]
# ## 1. `quantize(x, scale, zero_point, qmin, qmax)`
#
# Return the integer codes `clamp(round(x / scale) + zero_point, qmin, qmax)` as an **integer**
# tensor (`.to(torch.int32)`). `scale` and `zero_point` may be numbers or tensors that broadcast
# against `x` (per-channel: shape `[rows, 1]`). Use `torch.round`: halfway values go to the even
# neighbour (2.5 → 2), as in PyTorch's quantization.
#
# | x | scale | zero_point | qmin, qmax | q |
# |---|---|---|---|---|
# | [-1.0, -0.4, 0.0, 0.9, 1.2] | 0.5 | 3 | 0, 7 | [1, 2, 3, 5, 5] |
# | [-5.0, 5.0] | 0.25 | 8 | 0, 15 | [0, 15] (clamped) |

# %%
def quantize(x, scale, zero_point, qmin, qmax):
    """Integer codes of x: clamp(round(x / scale) + zero_point, qmin, qmax)."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


# %%
check("quantize", quantize)

# %% [markdown]
# ## 2. `dequantize(q, scale, zero_point)`
#
# Return the floats `(q − zero_point) · scale`. Careful: `q` may be a `torch.uint8` tensor (that
# is how codes are stored), and uint8 cannot hold a negative difference.

# %%
def dequantize(q, scale, zero_point):
    """Float values of the codes q: (q - zero_point) * scale."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


# %%
check("dequantize", dequantize)

# %% [markdown]
# ## 3. `compute_qparams(x, bits, symmetric)`
#
# Return `(scale, zero_point)` for the whole tensor `x` (numbers or 0-dim tensors):
#
# * **asymmetric** (codes `0 … 2^bits − 1`): widen the range to include 0,
#   `lo = min(x.min(), 0)`, `hi = max(x.max(), 0)`; then `scale = (hi − lo) / (2^bits − 1)` and
#   `zero_point = round(−lo / scale)`, an integer;
# * **symmetric** (codes `−2^(bits−1) … 2^(bits−1) − 1`): `scale = max|x| / (2^(bits−1) − 1)`,
#   `zero_point = 0`;
# * if the range is zero (an all-zero tensor), use `scale = 1.0` so nothing divides by zero.
#
# | x | bits | symmetric | scale | zero_point |
# |---|---|---|---|---|
# | [-1, 0, 2] | 2 | False | 1.0 | 1 |
# | [2, 3, 4] | 8 | False | 4/255 | 0 (the range is widened to [0, 4]) |
# | [-2.8, 1.0] | 4 | True | 0.4 | 0 |

# %%
def compute_qparams(x, bits, symmetric):
    """(scale, zero_point) for the whole tensor x, by min-max."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


# %%
check("compute_qparams", compute_qparams)

# %% [markdown]
# ## Using it
#
# From here on the notebook uses the library's versions (`minicomp.quant`), which are the same
# computations, so it runs even before you have finished. A round trip through INT8 and INT4:

# %%
from minicomp import quant

x = torch.randn(8, generator=torch.Generator().manual_seed(0))
for bits in (8, 4):
    scale, zero = quant.compute_qparams(x, bits)
    q = quant.quantize(x, scale, zero, 0, 2**bits - 1)
    x_hat = quant.dequantize(q, scale, zero)
    print(f"INT{bits}: scale {scale.item():.4f}, zero point {zero.item()}, codes {q.tolist()}")
    print(f"       max error {(x_hat - x).abs().max():.4f} <= scale / 2 = {scale.item() / 2:.4f}")
    assert (x_hat - x).abs().max() <= scale / 2 + 1e-6
