# %% [markdown]
# # Exercise 09: packing codes, and a GEMV that reads them
#
# Lesson 09 packed two 4-bit codes into each byte and multiplied straight from the bytes. Now you
# write the pieces yourself, and then the GPU kernel's trick for turning codes into fp16 numbers.
# The convention, along the **last** dimension:
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
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


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
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


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
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


# %%
check("packed_gemv", packed_gemv)

# %% [markdown]
# ## 4. Two codes, one instruction: `two_codes_fp16(words)`
#
# The GPU kernel reads the codes 32 bits at a time: an int32 word holds 8 codes, code `k` at bits
# `4k`. Lesson 09 turns two of them into fp16 numbers with a single AND-OR and no conversion:
#
# * `words & 0x000F000F` keeps code 0 (bits 0–3) and code 4 (bits 16–19), one in each 16-bit half;
# * `| 0x64006400` writes the bits of fp16 1024 (`0x6400`) around each. Between 1024 and 2048
#   an fp16 number steps by exactly 1, so each half now *is* the number 1024 + q.
#
# `words` is an int32 tensor `[...]`; return a `torch.float16` tensor `[..., 2]`: for each word,
# (1024 + code 0, 1024 + code 4). `tensor.view(torch.float16)` reads the same bytes as float16
# (two per int32, the low half first). Example: codes `[3, 14, 0, 7, 9, 1, 15, 5]` → `[1027, 1033]`.

# %%
def two_codes_fp16(words):
    """int32 [...] -> float16 [..., 2]: codes 0 and 4 of each word as the fp16 numbers 1024 + q."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


# %%
check("two_codes_fp16", two_codes_fp16)

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
