# %% [markdown]
# # Exercise 09: packing codes, and a GEMV that reads them
#
# Lesson 09 packed two 4-bit codes into each byte and multiplied straight from the bytes. Now you
# write the three pieces yourself. The convention, along the **last** dimension:
#
#     byte i = q[2i] | (q[2i+1] << 4)        element 2i in the low nibble, 2i + 1 in the high
#
# | codes | bytes |
# |---|---|
# | `[3, 10, 7, 1]` | `[3 \| 10 << 4, 7 \| 1 << 4]` = `[0xA3, 0x17]` = `[163, 23]` |
#
# Useful tools: slicing `q[..., 0::2]` (even elements) and `q[..., 1::2]` (odd ones), the bit
# operators `|`, `&`, `<<`, `>>`, `torch.stack(..., dim=-1).flatten(-2)` to interleave two tensors,
# and `.to(torch.uint8)`.

# %%
import torch

from minicomp.grading import check

# %% [markdown]
# ## 1. `pack_int4(q)`
#
# `q` is an integer tensor of codes in 0..15 whose last dimension is even. Return a `torch.uint8`
# tensor with half as many elements along the last dimension.

# %%
def pack_int4(q):
    """[..., n] codes in 0..15 -> [..., n / 2] uint8, element 2i in the low nibble of byte i."""
    ### BEGIN SOLUTION
    q = q.to(torch.uint8)
    return q[..., 0::2] | (q[..., 1::2] << 4)
    ### END SOLUTION


# %%
check("pack_int4", pack_int4)

# %% [markdown]
# ## 2. `unpack_int4(packed)`
#
# The inverse: a `torch.uint8` tensor of bytes `[..., m]` becomes the codes `[..., 2m]`, also
# `torch.uint8`. Cut each byte in two with a mask (`& 0x0F`) and a shift (`>> 4`), then put the
# two halves back in order: low0, high0, low1, high1, ...

# %%
def unpack_int4(packed):
    """[..., m] uint8 -> [..., 2m] uint8 codes 0..15 (inverse of pack_int4)."""
    ### BEGIN SOLUTION
    low = packed & 0x0F
    high = packed >> 4
    return torch.stack((low, high), dim=-1).flatten(-2)
    ### END SOLUTION


# %%
check("unpack_int4", unpack_int4)

# %% [markdown]
# ## 3. A GEMV that dequantizes as it goes
#
# `packed_gemv(packed, scales, zeros, x, group_size)` computes `y = W x` for one input vector:
#
# * `packed` `[out, in / 2]` uint8: the codes, packed as above,
# * `scales` `[out, in / group_size]` float and `zeros` `[out, in / group_size]` uint8: group `k` of
#   a row is inputs `k·group_size ... (k+1)·group_size − 1`,
# * `x` `[in]` float; return `y` `[out]` float32, with `ŵ = (q − zero)·scale`.
#
# Work one group at a time, and try the lesson's trick: `s·(Σ q·x − z·Σ x)`, so the zero point
# leaves the inner sum. (Any correct formula passes; the check compares values.)

# %%
def packed_gemv(packed, scales, zeros, x, group_size):
    """y [out] = W x, W [out, in] dequantized group by group from packed 4-bit codes."""
    ### BEGIN SOLUTION
    q = unpack_int4(packed).to(torch.float32)             # [out, in]
    out, n_in = q.shape
    n_groups = n_in // group_size
    x = x.to(torch.float32)
    y = torch.zeros(out)
    for k in range(n_groups):
        cols = slice(k * group_size, (k + 1) * group_size)
        qx = q[:, cols] @ x[cols]                          # [out]  Σ q·x over the group
        xs = x[cols].sum()                                 # Σ x over the group
        y += scales[:, k].float() * (qx - zeros[:, k].float() * xs)
    return y
    ### END SOLUTION


# %%
check("packed_gemv", packed_gemv)

# %% [markdown]
# ## Using it
#
# From here on the notebook uses the library (`minicomp.pack`, `minicomp.kernels`), so it runs
# to the end whether or not your functions are finished. A packed 1024 × 1024 layer, its size,
# and its output next to the dense float layer's:

# %%
from torch import nn

from minicomp import hardware
from minicomp.kernels import PackedLinear
from minicomp.pack import pack_int4 as library_pack, unpack_int4 as library_unpack

torch.manual_seed(0)
dense = nn.Linear(1024, 1024)
layer = PackedLinear.from_linear(dense, bits=4, group_size=128)
x = torch.randn(1, 1024)
with torch.no_grad():
    error = ((layer(x) - dense(x)).norm() / dense(x).norm()).item()
print(f"float32 {hardware.human_bytes(hardware.tensor_bytes(dense.weight))} -> packed "
      f"{hardware.human_bytes(layer.weight_nbytes)}; relative output error {error:.3f}")

# %%
codes = torch.randint(0, 16, (8, 32), dtype=torch.uint8)
assert torch.equal(library_unpack(library_pack(codes)), codes)
assert hardware.tensor_bytes(dense.weight) / layer.weight_nbytes > 7.5
assert error < 0.1
print("checked: round trip exact, 7.5x smaller, output within 10% of the float layer")
