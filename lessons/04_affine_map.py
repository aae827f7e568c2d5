# %% [markdown]
# # 04 · The affine map: scale and zero point
#
# Quantization replaces each float with a small integer *code*. The map between the two is an
# **affine** one (a multiplication and a shift), defined by two numbers:
#
# * the **scale** `s > 0`, a float: the gap between neighbouring representable values;
# * the **zero point** `z`, an *integer* code: the code that stands for 0.0.
#
# $$q = \mathrm{clamp}\big(\mathrm{round}(x / s) + z,\; q_{min},\; q_{max}\big) \qquad\qquad \hat x = (q - z)\cdot s$$
#
# With `b` bits there are `2^b` codes. **Asymmetric** quantization uses codes `0 … 2^b − 1` and
# places them over the data's range `[lo, hi]`; **symmetric** uses the signed codes
# `−2^(b−1) … 2^(b−1) − 1` with `z = 0`.
#
# This lesson measures:
#
# 1. the map on five numbers, by hand, then with the library;
# 2. how the error shrinks with each extra bit (INT8 against INT4);
# 3. symmetric against asymmetric;
# 4. rounding error against clipping error, and the best clipping range;
# 5. why an *integer* zero point represents 0.0 exactly, and the float-offset variant that
#    blog posts often show;
# 6. agreement with PyTorch's own fake-quantize op.
#
# The code is in `minicomp/quant.py`; open it beside this notebook.

# %%
import torch
import matplotlib.pyplot as plt

from minicomp.quant import (
    compute_qparams, dequantize, fake_quantize, mse_range, qrange, quantize, quantize_dequantize,
)

gen = torch.Generator().manual_seed(0)  # every random tensor below comes from this generator

# %% [markdown]
# ## 1. The map by hand
#
# Five numbers, quantized to INT8 (asymmetric, codes 0 … 255):
#
# * the range is widened to include 0: `lo = min(x.min(), 0)`, `hi = max(x.max(), 0)`;
# * `s = (hi − lo) / 255`: 255 steps between the lowest and the highest code;
# * `z = round(−lo / s)`: the code that lands on 0.0.

# %%
x = torch.tensor([-1.0, -0.25, 0.0, 0.4, 2.0])
lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
s = (hi - lo) / 255
z = round(-lo / s)
q = torch.clamp(torch.round(x / s) + z, 0, 255).to(torch.int32)
x_hat = (q - z) * s
print(f"scale s = ({hi} - ({lo})) / 255 = {s:.6f}    zero point z = round({-lo} / s) = {z}")
for xi, qi, xh in zip(x.tolist(), q.tolist(), x_hat.tolist()):
    print(f"  x = {xi:6.2f}  ->  q = {qi:3d}  ->  x̂ = {xh:8.5f}   error {xh - xi:+.5f}")

# %% [markdown]
# Claims: the library's `compute_qparams`, `quantize` and `dequantize` give the same numbers;
# every error is at most half a step (`s/2`); and 0.0 comes back as exactly 0.0.

# %%
scale, zero = compute_qparams(x, bits=8)
assert abs(scale.item() - s) < 1e-9 and zero.item() == z == 85
assert torch.equal(quantize(x, scale, zero, 0, 255), q)
assert torch.allclose(dequantize(q, scale, zero), x_hat)
assert ((x_hat - x).abs() <= s / 2 + 1e-7).all()
assert x_hat[2].item() == 0.0
print(f"checked: library == hand computation; max error {(x_hat - x).abs().max():.5f} <= s/2 = {s / 2:.5f}; 0.0 is exact")

# %% [markdown]
# ## 2. INT8 against INT4: every bit halves the step
#
# The step `s` is the range divided by `2^b − 1`. Inside the range, rounding moves each value by
# at most `s/2`, and for smooth data the error is spread evenly over `[−s/2, s/2]`, whose mean
# square is `s²/12`. So each extra bit halves `s` and divides the mean squared error by 4
# (6 dB per bit, the rule of thumb of audio engineers).

# %%
data = torch.randn(100_000, generator=gen)  # weights are often roughly Gaussian
mse = {}
for bits in range(2, 9):
    mse[bits] = (quantize_dequantize(data, bits) - data).pow(2).mean().item()
    step = compute_qparams(data, bits)[0].item()
    print(f"INT{bits}: step {step:.5f}   MSE {mse[bits]:.3e}   s²/12 = {step**2 / 12:.3e}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].semilogy(list(mse), list(mse.values()), "o-")
axes[0].set(xlabel="bits", ylabel="mean squared error", title="Gaussian data, per-tensor min-max")
sc, zp = compute_qparams(data, 4)
grid = (torch.arange(16) - zp) * sc  # every value INT4 can represent
axes[1].hist(data.numpy(), bins=200, density=True, color="lightgray")
axes[1].vlines(grid.numpy(), 0, 0.45, color="C1", lw=0.8)
axes[1].set(title="the 16 values INT4 can represent", xlabel="x")
plt.tight_layout()
plt.show()

# %% [markdown]
# Claims: going from INT(b) to INT(b+1) divides the error by about 4 (from 4 bits up, where the
# data is smooth at the scale of a step), and at 6–8 bits the error is `s²/12` within 3 %. INT8
# is about 17² ≈ 290 times more precise than INT4 in mean squared error (255 steps against 15).

# %%
for bits in range(4, 8):
    assert 3.5 < mse[bits] / mse[bits + 1] < 4.5, (bits, mse[bits] / mse[bits + 1])
for bits in (6, 7, 8):
    step = compute_qparams(data, bits)[0].item()
    assert abs(mse[bits] / (step**2 / 12) - 1) < 0.03
assert 250 < mse[4] / mse[8] < 330  # "about 17² ≈ 290"
print(f"checked: each bit divides the MSE by ~4; INT4 / INT8 MSE ratio = {mse[4] / mse[8]:.0f}")

# %% [markdown]
# ## 3. Symmetric against asymmetric
#
# Symmetric quantization fixes `z = 0` and uses `s = max|x| / (2^(b−1) − 1)`. That makes the
# arithmetic cheaper (no zero point to subtract, lesson 09) and suits data centred on 0, like
# weights. But after a ReLU every value is ≥ 0: the negative codes are never used, so half the
# grid is wasted and the step is twice as large.

# %%
weights = torch.randn(100_000, generator=gen) * 0.05  # centred on 0
relu_out = torch.relu(torch.randn(100_000, generator=gen) + 0.3)  # all >= 0
rows = []
for name, t in [("weights (centred)", weights), ("after ReLU (>= 0)", relu_out)]:
    for bits in (8, 4):
        e_asym = (quantize_dequantize(t, bits, symmetric=False) - t).pow(2).mean().item()
        e_sym = (quantize_dequantize(t, bits, symmetric=True) - t).pow(2).mean().item()
        rows.append((name, bits, e_asym, e_sym))
        print(f"{name:18} INT{bits}: asymmetric MSE {e_asym:.3e}   symmetric {e_sym:.3e}   ratio {e_sym / e_asym:.2f}")

# %% [markdown]
# Claims: on centred data the two are about equally good (within 50 %); on ReLU outputs
# symmetric is about 4 times worse (twice the step, four times the squared error).

# %%
for name, _bits, e_asym, e_sym in rows:
    if name.startswith("weights"):
        assert 0.6 < e_sym / e_asym < 1.5
    else:
        assert 3.0 < e_sym / e_asym < 5.0
print("checked: symmetric ≈ asymmetric on centred data, ~4x worse on ReLU outputs")

# %% [markdown]
# ## 4. Rounding error against clipping error
#
# Min-max puts the ends of the grid on the most extreme values. With heavy-tailed data (a few
# large values, most near 0) that makes the step large for the sake of a handful of values. We
# can *clip* instead: use the range `p · [lo, hi]` with `p < 1`. Values inside get a finer grid
# (less **rounding** error); values outside are pushed to the ends (**clipping** error). The
# best `p` balances the two.
#
# Below: Laplace-distributed data (heavier tails than a Gaussian), symmetric quantization,
# error split into its two parts as `p` varies.

# %%
u = torch.rand(40_000, generator=gen) - 0.5
laplace = -torch.sign(u) * torch.log1p(-2 * u.abs())  # inverse-CDF sampling of Laplace(0, 1)
amax = laplace.abs().max().item()
ps = torch.linspace(0.05, 1.0, 39).tolist()  # steps of 0.025


def split_error(t, bits, p):
    """(rounding part, clipping part) of the mean squared error with the range p * [-amax, amax]."""
    qmin, qmax = qrange(bits, symmetric=True)
    sc = torch.tensor(p * amax / qmax)
    err2 = (fake_quantize(t, sc, 0, qmin, qmax) - t).pow(2)
    inside = t.abs() <= (qmax + 0.5) * sc
    return err2[inside].sum().item() / t.numel(), err2[~inside].sum().item() / t.numel()


best_p = {}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, bits in zip(axes, (4, 8)):
    parts = [split_error(laplace, bits, p) for p in ps]
    total = [r + c for r, c in parts]
    best_p[bits] = ps[min(range(len(ps)), key=total.__getitem__)]
    ax.semilogy(ps, [r for r, _ in parts], label="rounding")
    ax.semilogy(ps, [c + 1e-12 for _, c in parts], label="clipping")
    ax.semilogy(ps, total, "k", label="total")
    ax.axvline(best_p[bits], color="gray", ls="--")
    ax.set(xlabel="p (fraction of max|x| kept)", title=f"INT{bits}, Laplace data: best p = {best_p[bits]:.2f}")
    ax.set_ylim(1e-7 if bits == 8 else 1e-4, 1)
    ax.legend()
plt.tight_layout()
plt.show()
mse_minmax = {b: sum(split_error(laplace, b, 1.0)) for b in (4, 8)}
mse_best = {b: sum(split_error(laplace, b, best_p[b])) for b in (4, 8)}
for b in (4, 8):
    print(f"INT{b}: min-max MSE {mse_minmax[b]:.3e}   best clipping (p = {best_p[b]:.2f}) {mse_best[b]:.3e}"
          f"   {mse_minmax[b] / mse_best[b]:.1f}x lower")

# %% [markdown]
# Claims: clipping helps, and it helps more with fewer bits: at INT4 the best range keeps well
# under half of `max|x|` and cuts the error by more than 3×; at INT8 rounding is already fine,
# so the best `p` is larger. The library's `mse_range` (a grid search of the same kind, used by
# `compute_qparams(..., clip="mse")` and by the MSE observer of lesson 06) finds the same range.

# %%
assert best_p[4] < 0.5 and best_p[4] < best_p[8]
assert mse_minmax[4] / mse_best[4] > 3
lo4, hi4 = mse_range(laplace[None], 4, symmetric=True)
assert abs(hi4.item() / amax - best_p[4]) < 0.04
print(f"checked: best p INT4 {best_p[4]:.2f} < INT8 {best_p[8]:.2f}; mse_range keeps {hi4.item() / amax:.2f} of max|x|")

# %% [markdown]
# ## 5. Why the zero point is an integer
#
# Many blog posts write quantization with a *float* offset, the minimum itself:
#
# $$q = \mathrm{round}\big((x - \min) / s\big) \qquad\qquad \hat x = q \cdot s + \min$$
#
# It uses the same step `s` and has the same worst-case error `s/2`. The difference is *where*
# the grid sits. In our form the grid is `{(q − z)·s}`, which contains `0·s = 0` exactly,
# because `z` is an integer. In the float-offset form the grid is `{q·s + min}`, and 0.0 is on it
# only by luck. Zeros matter: ReLU outputs, zero padding and masked positions are exact zeros,
# and a value that should be 0 but comes back as 0.003 adds a small bias to every sum it enters.
#
# An integer zero point also keeps the arithmetic in integers:
# `Σ x̂·ŵ = s_x s_w Σ (q_x − z_x)(q_w − z_w)`, a sum of integer products (lesson 09).

# %%
acts = torch.relu(torch.randn(10_000, generator=gen) - 0.2) - 0.37  # shifted: the range is [-0.37, ...]
acts[::3] = 0.0  # a third are exact zeros (padding, masked positions)
bits = 4
sc, zp = compute_qparams(acts, bits)
ours = dequantize(quantize(acts, sc, zp, 0, 15), sc, zp)
lo = acts.min()
offset_q = torch.clamp(torch.round((acts - lo) / sc), 0, 15)
offset = offset_q * sc + lo  # the float-offset variant
zeros = acts == 0
print(f"INT{bits}: step {sc.item():.4f}, zero point {zp.item()}, float offset {lo.item():.4f}")
print(f"  zeros kept exactly: integer zero point {(ours[zeros] == 0).float().mean():.0%}, "
      f"float offset {(offset[zeros] == 0).float().mean():.0%} (0.0 comes back as {offset[zeros][0].item():+.4f})")
print(f"  max error: integer zero point {(ours - acts).abs().max():.4f}, float offset "
      f"{(offset - acts).abs().max():.4f}, half a step {sc.item() / 2:.4f}")
print(f"  mean error on the zeros (a bias): {ours[zeros].mean():+.4f} against {offset[zeros].mean():+.4f}")

# %% [markdown]
# Claims: the integer zero point brings every 0.0 back exactly; the float offset brings none of
# them back; both keep every error within half a step.

# %%
assert (ours[zeros] == 0).all()
assert (offset[zeros] != 0).all()
assert (ours - acts).abs().max() <= sc / 2 + 1e-6 and (offset - acts).abs().max() <= sc / 2 + 1e-6
print("checked: 0.0 is exact only with the integer zero point; both errors <= s/2")

# %% [markdown]
# ## 6. Agreement with PyTorch
#
# PyTorch ships the same map as `torch.fake_quantize_per_tensor_affine(x, scale, zero_point,
# qmin, qmax)`: quantize, then dequantize. Two details must match: halfway values round to the
# *even* neighbour (`torch.round(2.5) = 2`), and PyTorch's kernel multiplies by `1/s` where we
# divide by `s`. With a power-of-two scale both are exact, and the results must be identical; with
# any other scale the two roundings of x/s can differ in the last bit, so a value a hair from a
# halfway point can land one step apart. Random values rarely come that close, so we add values
# at every halfway point of the grid and one float32 step either side of it.

# %%
print("torch.round([0.5, 1.5, 2.5, 3.5]) =", torch.round(torch.tensor([0.5, 1.5, 2.5, 3.5])).tolist())
x = torch.randn(100_000, generator=gen) * 3
results, steps, hair = {}, {}, {}  # values that differ; the largest difference (in steps); distance from a tie
for sc in (2.0**-5, 0.0371):
    ties = (torch.arange(-120, 120) + 0.5) * sc                       # halfway between two grid points
    xs = torch.cat([x, ties, ties.nextafter(ties + 1), ties.nextafter(ties - 1)])
    ours = fake_quantize(xs, torch.tensor(sc), 128, 0, 255)          # zero point 128: the range is ±4.7 at 0.0371
    torch_ = torch.fake_quantize_per_tensor_affine(xs, sc, 128, 0, 255)
    differ = ours != torch_
    results[sc] = differ.sum().item()
    steps[sc] = ((ours - torch_).abs().max() / sc).item()
    hair[sc] = ((xs[differ] / sc) % 1 - 0.5).abs().max().item() if results[sc] else 0.0
    print(f"scale {sc:<8}: {results[sc]} of {xs.numel():,} values differ, by at most {steps[sc]:.3g} step(s), "
          f"each within {hair[sc]:.1e} of a step from a halfway point")

# %%
assert results[2.0**-5] == 0
assert results[0.0371] > 0 and steps[0.0371] < 1.0001   # some values do differ, by one step at most
assert hair[0.0371] < 1e-4                               # and only a hair from a halfway point
print("checked: identical to torch.fake_quantize_per_tensor_affine (power-of-two scale); otherwise "
      "different only at halfway points, by one step")

# %% [markdown]
# ## 7. Try it: bits and range
#
# `show_grid(bits, p, symmetric)` draws the grid over the data and the histogram of the errors.
# The figure below is drawn in any case; with a Jupyter front end, the sliders under it redraw it.

# %%
def show_grid(bits=4, p=1.0, symmetric=False):
    t = laplace[:20_000]
    lo_, hi_ = t.min() * p, t.max() * p
    sc_, zp_ = compute_qparams(torch.stack([lo_, hi_]), bits, symmetric)  # the range p * [min, max]
    qmin_, qmax_ = qrange(bits, symmetric)
    err = fake_quantize(t, sc_, zp_, qmin_, qmax_) - t
    fig_, (a, b) = plt.subplots(1, 2, figsize=(10, 3))
    a.hist(t.numpy(), bins=200, color="lightgray", density=True)
    a.vlines(((torch.arange(qmin_, qmax_ + 1) - zp_) * sc_).numpy(), 0, 0.6, color="C1", lw=0.6)
    a.set(xlim=(-6, 6), title=f"INT{bits} {'symmetric' if symmetric else 'asymmetric'} grid, range x{p:.2f}")
    b.hist(err.numpy(), bins=100, color="C0")
    b.set(yscale="log", title=f"error: MSE {err.pow(2).mean():.2e}, max {err.abs().max():.2f}")
    plt.tight_layout()
    plt.show()


show_grid(4, 1.0, False)  # the static figure

try:
    from ipywidgets import FloatSlider, IntSlider, interact

    interact(show_grid, bits=IntSlider(4, 2, 8), p=FloatSlider(1.0, min=0.1, max=1.0, step=0.05), symmetric=False)
except ImportError:
    print("ipywidgets is not installed: change the arguments of show_grid above to explore")

# %% [markdown]
# ## Summary
#
# * `q = clamp(round(x/s) + z, qmin, qmax)`, `x̂ = (q − z)·s`. Inside the range the error is at
#   most `s/2`, with mean square `s²/12`; each bit divides it by 4.
# * Asymmetric fits any range; symmetric (`z = 0`) is cheaper and as good for centred data, but
#   wastes half its codes on data that is never negative.
# * Clipping trades rounding error for clipping error; with few bits and heavy tails a tighter
#   range wins by a wide margin.
# * An integer zero point keeps 0.0 exact and the arithmetic in integers.
#
# **Exercise 04** asks you to write `quantize`, `dequantize` and `compute_qparams` yourself.
# Lesson 05 asks *how many* scales a tensor should get: one per tensor, per row, or per group.
