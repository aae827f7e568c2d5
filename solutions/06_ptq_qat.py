# %% [markdown]
# # Exercise 06: fake quantization and the straight-through estimator
#
# Lesson 06 trained TinyGPT *through* the rounding (QAT), so that it learned weights that still
# work once rounded to 2 bits. The training needs one function that does two things:
#
# * **forward**: fake quantization, x̂ = dequantize(quantize(x)), the value the deployed model
#   will see;
# * **backward**: a gradient for x. Rounding is flat almost everywhere, so its true gradient is
#   0 and nothing would learn. The **straight-through estimator** (STE; Bengio et al. 2013)
#   pretends the rounding was the identity, ∂x̂/∂x = 1, except where the clamp cut the code off:
#   there x̂ stays put however x moves, so the gradient is 0.
#
# ```
#   forward:   x̂ = (clamp(round(x / scale) + zero_point, qmin, qmax) − zero_point) · scale
#   backward:  ∂x̂/∂x = 1 if qmin ≤ round(x / scale) + zero_point ≤ qmax, else 0
# ```
#
# PyTorch has no switch for "use this value forward, that gradient backward", but `.detach()`
# builds one: `a + (b - a).detach()` has the *value* of `b` and the *gradient* of `a`.

# %%
import matplotlib.pyplot as plt
import torch

from minicomp.grading import check

# %% [markdown]
# ## Your task
#
# Write `fake_quantize_ste(x, scale, zero_point, qmin, qmax)`: it returns x̂ (a float tensor of
# x's shape), and when x requires grad, x's gradient is the straight-through one above.
#
# Steps:
#
# 1. `q = round(x / scale) + zero_point` (the code before clamping);
# 2. `x_hat = (clamp(q, qmin, qmax) − zero_point) · scale`;
# 3. `x_pass = torch.where(inside, x, x.detach())`, where `inside` is `qmin ≤ q ≤ qmax`: x where
#    the gradient should pass, a constant (no gradient) where it should not;
# 4. return `x_pass + (x_hat − x_pass).detach()`: the value is x̂, the gradient is x_pass's.
#
# Example: scale 0.5, zero point 2, codes 0..7. x = 0.9 gives the code round(1.8) + 2 = 4 and
# x̂ = 1.0, with gradient 1; x = 3.1 gives round(6.2) + 2 = 8, clamped to 7, so x̂ = 2.5 with
# gradient 0. The check back-propagates a gradient of distinct values (from 0.5 to 2) through
# your function and compares both: `x_hat`, and `grad_x`, which should be that gradient where it
# passes and 0 where it is blocked.

# %%
def fake_quantize_ste(x, scale, zero_point, qmin, qmax):
    """x̂ = dequantize(quantize(x)) [x's shape], with the straight-through gradient."""
    ### BEGIN SOLUTION
    q = torch.round(x / scale) + zero_point                     # codes, not yet clamped
    x_hat = (torch.clamp(q, qmin, qmax) - zero_point) * scale
    x_pass = torch.where((q >= qmin) & (q <= qmax), x, x.detach())
    return x_pass + (x_hat - x_pass).detach()
    ### END SOLUTION


# %%
check("fake_quantize_ste", fake_quantize_ste)

# %% [markdown]
# ## Using it: learning on a 4-bit grid
#
# The library's version is `minicomp.quant.fake_quantize` (it also takes per-group scales);
# `QATLinear` in lesson 06 calls it on its weight at every step. Here it fits 16 weights of a
# linear model, y = X w, with w seen only through a 4-bit grid, by plain gradient descent. The
# same loop with the rounding alone (no estimator) gets a zero gradient and never moves. The
# dotted line is the best the grid allows that we know of: the true weights, rounded.

# %%
from minicomp.quant import fake_quantize

g = torch.Generator().manual_seed(0)
X = torch.randn(256, 16, generator=g)                        # [256, 16] inputs
w_true = torch.randn(16, generator=g)
y = X @ w_true
scale, zero, qmin, qmax = (w_true.abs().max() / 7).item(), 0, -8, 7   # symmetric 4-bit grid


def round_only(w, s, z, lo, hi):
    """Fake quantization without an estimator: torch.round's gradient, 0."""
    return (torch.clamp(torch.round(w / s) + z, lo, hi) - z) * s


def fit(quantizer, steps=100, lr=0.05):
    """SGD on the mean squared error of X · quantizer(w); returns w and the loss at each step."""
    w = (0.5 * torch.randn(16, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    optimizer = torch.optim.SGD([w], lr=lr)
    losses = []
    for _ in range(steps):
        loss = ((X @ quantizer(w, scale, zero, qmin, qmax) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return w.detach(), losses


w_ste, ste = fit(fake_quantize)
w_round, stuck = fit(round_only)
rounded_truth = ((X @ round_only(w_true, scale, zero, qmin, qmax) - y) ** 2).mean().item()
print(f"loss: start {ste[0]:.2f}; after {len(ste)} steps with the STE {ste[-1]:.3f}, "
      f"with rounding alone {stuck[-1]:.2f}; the true weights rounded: {rounded_truth:.3f}")

plt.figure(figsize=(5, 3))
plt.semilogy(ste, label="straight-through estimator")
plt.semilogy(stuck, label="rounding alone (gradient 0)")
plt.axhline(rounded_truth, color="grey", ls=":", label="true weights, rounded")
plt.gca().set(xlabel="step", ylabel="mean squared error", title="learning through a 4-bit grid")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# Claims: with the estimator the loss falls more than a hundredfold, to within 25 % of the
# rounded true weights; with rounding alone the weights never move at all.

# %%
assert ste[-1] < ste[0] / 100 and ste[-1] < 1.25 * rounded_truth
assert stuck[-1] == stuck[0]
assert torch.equal(w_round, 0.5 * torch.randn(16, generator=torch.Generator().manual_seed(1)))
print("checked: the STE learns on the grid; rounding alone leaves every weight where it started")
