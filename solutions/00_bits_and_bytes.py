# %% [markdown]
# # Exercise 00: how many bytes does a model need?
#
# This is the first exercise of the course. Every exercise works the same way:
#
# 1. Fill in the function where it says `# YOUR CODE HERE` (delete the `raise NotImplementedError` line).
# 2. Run the cell after it. `check(...)` calls your function on several inputs, compares each
#    answer with the library's, and tells you what is wrong, with a hint for the usual mistakes.
# 3. Cells further down use the library's own version, so the notebook runs to the end even
#    before you have finished.
#
# Lesson 00 showed that a model's memory is *parameters × bytes per parameter*. Quantization
# changes the second factor: 32-bit floats become 8-bit or 4-bit integers.

# %%
from minicomp.grading import check

# %% [markdown]
# ## Your task
#
# Write `weight_bytes(num_params, bits)`: the number of **bytes** needed to store `num_params`
# weights at `bits` bits each. Storage comes in whole bytes, so round up.
#
# | num_params | bits | bytes |
# |---|---|---|
# | 1,000 | 16 | 2,000 |
# | 3 | 4 | 2 (12 bits fill one byte and half of another) |

# %%
def weight_bytes(num_params, bits):
    """Bytes to store `num_params` weights of `bits` bits each, rounded up to a whole byte."""
    ### BEGIN SOLUTION
    return (num_params * bits + 7) // 8
    ### END SOLUTION


# %%
check("weight_bytes", weight_bytes)

# %% [markdown]
# ## Using it
#
# From here on the notebook uses the library's `minicomp.hardware.weight_bytes`, which is the
# same computation. How big are some well-known models at each precision?

# %%
from minicomp.hardware import human_bytes
from minicomp.hardware import weight_bytes as library_weight_bytes

models = {"all-MiniLM-L6-v2": 22_700_000, "a 7B LLM": 7_000_000_000, "a 70B LLM": 70_000_000_000}
print(f"{'model':<18}" + "".join(f"{f'{b}-bit':>12}" for b in (32, 16, 8, 4)))
for name, n in models.items():
    print(f"{name:<18}" + "".join(f"{human_bytes(library_weight_bytes(n, b)):>12}" for b in (32, 16, 8, 4)))

# %%
# The arithmetic from the lesson: 7B parameters × 4 bytes = 28 GB, and int4 is 8× smaller.
assert library_weight_bytes(7_000_000_000, 32) == 28_000_000_000
assert library_weight_bytes(7_000_000_000, 32) == 8 * library_weight_bytes(7_000_000_000, 4)
# and for 70B: 140 GB in 16-bit, 35 GB in 4-bit
assert library_weight_bytes(70_000_000_000, 16) == 140_000_000_000
assert library_weight_bytes(70_000_000_000, 4) == 35_000_000_000

# %% [markdown]
# A 70B model needs 140 GB in 16-bit, more than an 80 GB H100 or A100 holds, but 35 GB in 4-bit,
# which fits on one of them (or on a 48 GB workstation card). That gap is why the rest of this
# course exists.
