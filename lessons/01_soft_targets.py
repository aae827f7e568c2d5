# %% [markdown]
# # 01 · Soft targets and temperature
#
# **Knowledge distillation** trains a small *student* network to imitate a large *teacher*
# (Hinton, Vinyals and Dean, *Distilling the Knowledge in a Neural Network*, 2015). Imitate
# what, exactly? Not only the teacher's answer ("this is a 3") but its whole output
# distribution: how much it thinks the image also looks like a 5 or an 8. Those small
# probabilities are what Hinton called **dark knowledge**.
#
# A trained teacher is very sure of itself, so those probabilities are tiny: 0.0001 next to
# 0.999. Dividing the logits by a **temperature** T > 1 before the softmax makes them visible.
# This lesson measures what the temperature does, on the course's digits teacher:
#
# 1. softmax at temperature T, built by hand and checked against the library;
# 2. why you must subtract the maximum (logits of ±1000);
# 3. one digit at four temperatures;
# 4. entropy against T: from almost one-hot to uniform;
# 5. a slider to play with T;
# 6. dark knowledge: which digits the teacher finds alike, and whether that makes sense.
#
# The library code is `minicomp/distill.py` (`soft_targets`).

# %%
import math

import matplotlib.pyplot as plt
import torch

from minicomp.data import load_digits
from minicomp.distill import soft_targets
from minicomp.models import accuracy, load_pretrained

torch.set_num_threads(1)  # these models are tiny: one thread is plenty, and runs the same on any machine
torch.manual_seed(0)

digits = load_digits(seed=0)  # scikit-learn's 8x8 digits: [N, 64] pixels in [0, 1]
teacher = load_pretrained("digits_mlp_teacher")  # 64 -> 256 -> 256 -> 10, shipped weights
print(f"teacher test accuracy: {accuracy(teacher, digits.x_test, digits.y_test):.1%}")
with torch.no_grad():
    z_test = teacher(digits.x_test)  # [N_test, 10] logits
    z_train = teacher(digits.x_train)  # [N_train, 10]

# %% [markdown]
# ## 1. Softmax at temperature T
#
# $$p_i = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}$$
#
# T = 1 is the ordinary softmax. T → ∞ flattens it towards uniform (1/C each); T → 0 sharpens
# it towards a one-hot vector on the largest logit. The order of the classes never changes,
# only how far apart their probabilities are.

# %%
def softmax_T(z, T):
    """Softmax of z / T over the last dimension, written out."""
    z = z / T
    z = z - z.max(dim=-1, keepdim=True).values  # the answer is unchanged, exp cannot overflow
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)


z = torch.tensor([math.log(3.0), 0.0])
for T in (0.5, 1.0, 2.0, 10.0):
    print(f"T={T:>4}: {softmax_T(z, T).tolist()}")

# %%
# Claims: [ln 3, 0] gives [3/4, 1/4] at T = 1 and [3^(1/T), 1] / (3^(1/T) + 1) in general;
# the hand-written version equals the library's on the teacher's real logits.
assert torch.allclose(softmax_T(z, 1.0), torch.tensor([0.75, 0.25]))
assert torch.allclose(softmax_T(z, 2.0), torch.tensor([3**0.5, 1.0]) / (3**0.5 + 1))
for T in (0.5, 1.0, 4.0, 20.0):
    assert torch.allclose(softmax_T(z_test, T), soft_targets(z_test, T))

# %% [markdown]
# ## 2. Why subtract the maximum?
#
# Logits can be large: a confident model easily produces 50, and an untrained or diverging
# one 1000. `exp(1000)` overflows to `inf` in float32 (and in float64: the largest float64 is
# about e^709), and `inf / inf` is `NaN`. Subtracting the row's maximum first changes nothing
# mathematically (the factor exp(−max) cancels) but keeps every exponent ≤ 0.

# %%
huge = torch.tensor([[1000.0, -1000.0, 999.0]])
naive = torch.exp(huge) / torch.exp(huge).sum(-1, keepdim=True)
print("naive :", naive.tolist())
print("stable:", softmax_T(huge, 1.0).tolist())

# %%
assert torch.isnan(naive).any()
stable = softmax_T(huge, 1.0)
assert torch.isfinite(stable).all() and torch.allclose(stable.sum(), torch.tensor(1.0))
assert torch.allclose(stable, soft_targets(huge, 1.0))

# %% [markdown]
# ## 3. One digit at four temperatures
#
# Among the test images the teacher gets right with over 99% confidence at T = 1, take the
# one whose runner-up class is largest at T = 4, and look at its soft targets. At T = 1 it is
# an almost one-hot answer. As T grows, the runners-up appear.

# %%
second = soft_targets(z_test, 4.0).topk(2, dim=-1).values[:, 1]  # [N_test], runner-up at T = 4
sure = (z_test.argmax(-1) == digits.y_test) & (soft_targets(z_test, 1.0).max(-1).values > 0.99)
i = int(torch.where(sure, second, torch.zeros_like(second)).argmax())
print(f"test image {i}: label {digits.y_test[i].item()}")

temps = (1.0, 2.0, 4.0, 10.0)
fig, axes = plt.subplots(1, len(temps) + 1, figsize=(14, 2.6))
axes[0].imshow(digits.x_test[i].reshape(8, 8), cmap="gray_r")
axes[0].set(title=f"label {digits.y_test[i].item()}", xticks=[], yticks=[])
for ax, T in zip(axes[1:], temps, strict=True):
    p = soft_targets(z_test[i], T)
    ax.bar(range(10), p.numpy(), color=["C3" if c == digits.y_test[i] else "C0" for c in range(10)])
    ax.set(title=f"T = {T:g}", xticks=range(10), ylim=(0, 1))
plt.tight_layout()
plt.show()
for T in temps:
    print(f"T={T:>4g}:", " ".join(f"{v:.3f}" for v in soft_targets(z_test[i], T).tolist()))

# %%
# Claims: the top class stays the same at every T; its probability falls as T grows, and the
# runner-up, invisible at T = 1, becomes a real share at T = 4.
tops = [soft_targets(z_test[i], T) for T in temps]
assert len({int(p.argmax()) for p in tops}) == 1
assert all(a.max() > b.max() for a, b in zip(tops, tops[1:], strict=False))
assert tops[0].topk(2).values[1] < 0.1 < tops[2].topk(2).values[1]
# "the order of the classes never changes": the same top three at every T, for every test image,
# read from soft_targets itself (far-behind classes can all round to 0 in float32 probabilities)
top3 = z_test.topk(3, dim=-1).indices
assert all(torch.equal(soft_targets(z_test, T).topk(3, dim=-1).indices, top3) for T in temps)
# and not only on this image: over all test images, the runner-up's share at T = 4 averages over 5 %
assert second.mean() > 0.05, second.mean()

# %% [markdown]
# ## 4. Entropy against temperature
#
# The entropy H(p) = −Σ p log p (in nats) measures how spread out a distribution is: 0 for a
# one-hot vector, log C = log 10 ≈ 2.30 for uniform. We average it over the test set.

# %%
T_grid = torch.logspace(-1, 2, 40)  # T from 0.1 to 100


def entropy(p):
    return -(p * p.clamp_min(1e-30).log()).sum(-1)  # 0 · log 0 counts as 0


H = torch.stack([entropy(soft_targets(z_test, T.item())).mean() for T in T_grid])
plt.figure(figsize=(6, 3.5))
plt.semilogx(T_grid, H, marker=".")
plt.axhline(math.log(10), color="gray", ls="--", label="uniform: log 10")
plt.xlabel("temperature T")
plt.ylabel("mean entropy of the soft targets (nats)")
plt.title("The teacher's soft targets flatten as T grows")
plt.legend()
plt.show()
for T in (1.0, 4.0, 20.0):
    print(f"T={T:>4g}: mean entropy {entropy(soft_targets(z_test, T)).mean():.3f} nats, "
          f"mean top probability {soft_targets(z_test, T).max(-1).values.mean():.3f}")

# %%
# Claims: entropy grows with T; the teacher is near one-hot at T = 1 (under 0.2 nats) and
# near uniform at T = 100 (within 2% of log 10); softmax never leaves [0, log C].
assert all(a <= b + 1e-6 for a, b in zip(H, H[1:], strict=False))
assert entropy(soft_targets(z_test, 1.0)).mean() < 0.2
assert H[-1] > 0.98 * math.log(10) and H.max() <= math.log(10) + 1e-5

# %% [markdown]
# ## 5. Try it: a temperature slider
#
# The figure below is static, so that it shows without a live kernel. In JupyterLab the
# slider under it redraws the same figure for any T.

# %%
def show_soft_targets(T=4.0, image=i):
    p = soft_targets(z_test[image], T)
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.6), gridspec_kw={"width_ratios": [1, 3]})
    a.imshow(digits.x_test[image].reshape(8, 8), cmap="gray_r")
    a.set(title=f"label {digits.y_test[image].item()}", xticks=[], yticks=[])
    b.bar(range(10), p.numpy(), color=["C3" if c == digits.y_test[image] else "C0" for c in range(10)])
    b.set(xticks=range(10), ylim=(0, 1), title=f"T = {T:.1f}, entropy {entropy(p):.2f} nats")
    plt.tight_layout()
    plt.show()


show_soft_targets(4.0)  # the static figure

try:
    from ipywidgets import FloatLogSlider, IntSlider, interact

    interact(show_soft_targets, T=FloatLogSlider(value=4.0, base=10, min=-1, max=2, step=0.05),
             image=IntSlider(value=i, min=0, max=len(z_test) - 1))
except ImportError:
    print("ipywidgets is not installed: call show_soft_targets(T) above with other values of T")

# %% [markdown]
# ## 6. Dark knowledge: which digits does the teacher find alike?
#
# Average the teacher's soft targets (T = 4) over all training images of each digit. Row r of
# the matrix is "what the teacher says, on average, about an r". The diagonal is the right
# answer; the off-diagonal entries are the dark knowledge. The labels alone say nothing about
# them: a one-hot label for a 1 is equally far from an 8 as from a 0.

# %%
p_train = soft_targets(z_train, 4.0)  # [N_train, 10]
M = torch.stack([p_train[digits.y_train == c].mean(0) for c in range(10)])  # [10, 10]
off = M.clone().fill_diagonal_(float("nan"))

fig, ax = plt.subplots(figsize=(5.5, 4.5))
im = ax.imshow(off, cmap="viridis")
ax.set(xticks=range(10), yticks=range(10), xlabel="class the teacher also sees",
       ylabel="true digit", title="Mean soft targets at T = 4 (diagonal hidden)")
fig.colorbar(im)
plt.show()

S = (M + M.T) / 2  # symmetric similarity of a pair of digits
iu = torch.triu_indices(10, 10, offset=1)
pair_sim = S[iu[0], iu[1]]  # [45], one value per pair of digits
order = pair_sim.argsort(descending=True)
print("most alike:", ", ".join(f"{iu[0, k].item()}-{iu[1, k].item()} ({pair_sim[k]:.3f})" for k in order[:5]))
print("least alike:", ", ".join(f"{iu[0, k].item()}-{iu[1, k].item()} ({pair_sim[k]:.3f})" for k in order[-3:]))

# %% [markdown]
# Is this knowledge, or noise? One check that needs no teacher: digits whose *average images*
# are close in pixel space should look alike to the teacher too. We compare the two rankings
# of the 45 pairs with Spearman's rank correlation (1 = the same order, 0 = unrelated).

# %%
means = torch.stack([digits.x_train[digits.y_train == c].mean(0) for c in range(10)])  # [10, 64]
pixel_closeness = -torch.cdist(means, means)[iu[0], iu[1]]  # [45], higher = closer


def ranks(x):
    return x.argsort().argsort().float()


spearman = torch.corrcoef(torch.stack([ranks(pair_sim), ranks(pixel_closeness)]))[0, 1].item()
top_ratio = (pair_sim.max() / pair_sim.median()).item()
print(f"Spearman correlation, teacher similarity vs pixel closeness: {spearman:.2f}")
print(f"the most alike pair gets {top_ratio:.1f}x the median pair's probability")

# %%
# Claims: the off-diagonal mass is far from uniform (the top pair gets over twice the median
# pair's share), and its order agrees with pixel-space closeness (Spearman well above 0).
assert top_ratio > 2.0
assert spearman > 0.5

# %% [markdown]
# ## Summary
#
# * `soft_targets(z, T) = softmax(z / T)`; subtract the maximum first, or ±1000 gives NaN.
# * The shipped teacher is almost one-hot at T = 1 (mean entropy under 0.2 nats). By T = 4 its
#   runners-up carry a real share; by T = 100 it is nearly uniform.
# * The runners-up are structured: the teacher's "also looks like" matrix ranks digit pairs
#   much as pixel distances do. That is the extra information a student can learn from.
#
# Next, lesson 02 turns soft targets into a loss, asks why it is multiplied by T², and
# measures when distillation actually helps a student.
