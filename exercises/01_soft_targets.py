# %% [markdown]
# # Exercise 01: soft targets
#
# Fill in the function where it says `# YOUR CODE HERE` (delete the `raise NotImplementedError`
# line), then run the check cell after it. Cells further down use the library's version, so the
# notebook runs to the end before you have finished.

# %%
import math

import torch

from minicomp.grading import check

torch.set_num_threads(1)

# %% [markdown]
# ## Your task
#
# Write `soft_targets(logits, temperature)`: the softmax of `logits / temperature` over the
# **last** dimension. `logits` has shape `[..., C]`: `[B, C]` for a classifier, `[B, T, C]` for a
# language model. The result has the same shape, and each row sums to 1.
#
# | logits | T | soft targets |
# |---|---|---|
# | [ln 3, 0] | 1 | [3/4, 1/4] |
# | [2 ln 3, 0] | 2 | [3/4, 1/4] |
# | [0, 0] | any | [1/2, 1/2] |
# | [1000, −1000] | 1 | [1, 0] (and no `nan`!) |
#
# `torch.exp(1000.)` is `inf`. Either subtract each row's maximum before `exp` (the answer does
# not change), or find the PyTorch function that does it for you.

# %%
def soft_targets(logits, temperature):
    """softmax(logits / temperature) over the last dimension: [..., C] -> [..., C]."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


# %%
check("soft_targets", soft_targets)

# %% [markdown]
# ## Using it
#
# From here on the notebook uses the library's `minicomp.distill.soft_targets`. Here is what the
# course's digits teacher says about one test image, at three temperatures.

# %%
from minicomp.data import load_digits
from minicomp.distill import soft_targets as library_soft_targets
from minicomp.models import load_pretrained

digits = load_digits(seed=0)
teacher = load_pretrained("digits_mlp_teacher")
with torch.no_grad():
    z = teacher(digits.x_test[:1])  # [1, 10]
print("label:", digits.y_test[0].item())
for T in (1.0, 4.0, 20.0):
    print(f"T = {T:>4}: " + " ".join(f"{p:.3f}" for p in library_soft_targets(z, T)[0].tolist()))

# %%
# The higher T, the flatter: the largest probability falls, and at T = 20 every class gets a share.
tops = [library_soft_targets(z, T).max().item() for T in (1.0, 4.0, 20.0)]
assert tops[0] > tops[1] > tops[2] > 0.1
assert library_soft_targets(z, 20.0).min() > 0.01

# %% [markdown]
# Next: lesson 02 and exercise 02 turn soft targets into the distillation loss.
