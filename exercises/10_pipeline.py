# %% [markdown]
# # Exercise 10: the Pareto front
#
# Lesson 10 measured a dozen models made from one teacher: distilled, quantized to 8, 4 and 2
# bits, packed. Each has a size and an error (perplexity), and the lesson kept the ones worth
# deploying: the **Pareto front**. A model is on it when no other model beats it, and
#
# > model j **beats** model i when j is no larger *and* no worse (`sizes[j] <= sizes[i]` and
# > `errors[j] <= errors[i]`), and strictly better on at least one of the two.
#
# Everything off the front is beaten on both counts by some model on it. Two identical models do
# not beat each other: both stay.

# %%
import matplotlib.pyplot as plt
import torch

from minicomp.grading import check

# %% [markdown]
# ## Your task
#
# Write `pareto_front_indices(sizes, errors)`: two lists of numbers of the same length (model
# i has size `sizes[i]` and error `errors[i]`; lower is better for both). Return the indices of
# the models on the front, **smallest model first** (equal sizes: lower error first, then lower
# index).
#
# Example: sizes `[1, 2, 3, 4]` and errors `[0.9, 0.5, 0.6, 0.2]`. Model 2 (size 3, error 0.6)
# is beaten by model 1 (size 2, error 0.5); the others are not, so the answer is `[0, 1, 3]`.
#
# Any correct way passes. One is to test each model against every other (fine for a few dozen
# models). A faster one sorts the indices by (size, error) and keeps a model when its error is
# below every error before it, or equal to the one just kept *and* of the same size (a
# duplicate).

# %%
def pareto_front_indices(sizes, errors):
    """Indices of the models no other model beats (lower size and error are better), smallest first."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


# %%
check("pareto_front_indices", pareto_front_indices)

# %% [markdown]
# ## Using it: 200 made-up models
#
# From here on the notebook uses the library's `minicomp.pipeline.pareto_front` (the one lesson
# 10 used on its measured rows), so it runs to the end whether or not your function is finished.
# Models that trade size for error, each with some noise: the front is the lower-left edge of
# the cloud.

# %%
from minicomp.pipeline import Result, pareto_front

g = torch.Generator().manual_seed(0)
sizes = (2 ** (torch.rand(200, generator=g) * 8)).tolist()                  # 1 to 256 "MB"
errors = [3 + 20 / s ** 0.5 + 2 * float(torch.rand(1, generator=g)) for s in sizes]
rows = [Result(name=str(i), step="made up", params=0, bytes=s, perplexity=e, accuracy=float("nan"))
        for i, (s, e) in enumerate(zip(sizes, errors, strict=True))]
front = [int(r.name) for r in pareto_front(rows, "bytes", "perplexity")]        # smallest first
print(f"{len(front)} of {len(sizes)} models are on the front; the smallest is {sizes[front[0]]:.1f} MB "
      f"(error {errors[front[0]]:.2f}), the best {sizes[front[-1]]:.1f} MB (error {errors[front[-1]]:.2f})")

plt.figure(figsize=(6, 3.5))
plt.scatter(sizes, errors, s=10, color="lightgrey", label="beaten by some model")
plt.plot([sizes[i] for i in front], [errors[i] for i in front], "o-", color="tab:red", ms=4,
         label="the Pareto front")
plt.xscale("log")
plt.gca().set(xlabel="size (MB, log scale)", ylabel="error", title="200 models: which are worth keeping")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# Claims: only some of the models are worth keeping (about a quarter here); along the front each larger
# model has a lower error (that is what being on it means); and every model off it is beaten
# by a model on it.

# %%
assert len(sizes) / 5 < len(front) < len(sizes) / 3  # "about a quarter"
assert all(sizes[a] <= sizes[b] and errors[a] > errors[b] for a, b in zip(front, front[1:]))
off = set(range(len(sizes))) - set(front)
assert all(any(sizes[j] <= sizes[i] and errors[j] <= errors[i] for j in front) for i in off)
print(f"checked: {len(front)} models on the front; each of the other {len(off)} is beaten by one of them")
