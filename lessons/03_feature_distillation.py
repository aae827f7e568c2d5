# %% [markdown]
# # 03 · Feature and relation distillation
#
# Lesson 02 distilled the teacher's *outputs*. A teacher has more to show: its hidden layers.
# Three well-known ideas, each a loss term that the `Distiller` adds to the cross-entropy:
#
# * **Hints** (FitNets, Romero et al. 2015): make a student layer predict a teacher layer. The
#   widths differ (32 against 256 here), so a small trainable **adapter** maps one onto the
#   other: a linear layer, or a 1×1 convolution for feature maps.
# * **Relations** (RKD, Park et al. 2019): do not copy the features, copy their *geometry*:
#   the distances between examples and the angles between triples of examples. No adapter
#   needed, since only distances are compared.
# * **Decoupled KD** (DKD, Zhao et al. 2022): the logit loss of lesson 02 split in two, the
#   target class (TCKD) and the other classes (NCKD), weighted separately. A modern variant
#   of plain KD.
#
# We read the layers with **forward hooks**, so no model is edited (the idea is torchdistill's).
# At the end, one table: the five methods on the same data and the same training budget.
#
# Library code: `minicomp/distill.py` (`Taps`, `make_adapter`, `hint_loss`, `rkd_*`, `dkd_*`).

# %%
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from minicomp.data import as_images, few_label_split, load_digits
from minicomp.distill import (CE, DKD, KD, RKD, Distiller, Hint, Taps, dkd_terms, hint_loss, kd_loss,
                              make_adapter, rkd_angle_loss, rkd_distance_loss, soft_targets)
from minicomp.models import digits_cnn_student, digits_mlp_student, load_pretrained

torch.set_num_threads(1)  # these models are tiny: one thread is plenty, and runs the same on any machine
torch.manual_seed(0)

digits = load_digits(seed=0)
teacher = load_pretrained("digits_mlp_teacher")  # 64 -> 256 -> 256 -> 10
student = digits_mlp_student(seed=0)  # 64 -> 32 -> 10
print(teacher)
print(student)

# %% [markdown]
# ## 1. Taps: reading a layer without editing the model
#
# `module.register_forward_hook(fn)` makes PyTorch call `fn(module, inputs, output)` every
# time the module runs. `Taps(model, names)` registers one hook per named layer, stores each
# output in a dict, and removes the hooks when the `with` block ends. The names are those of
# `model.named_modules()`: `"hidden"` is the MLP's whole hidden stack, `"hidden.fc1"` its first
# Linear.

# %%
x = digits.x_train[:128]
with Taps(teacher, ["hidden"]) as t_feats, Taps(student, ["hidden"]) as s_feats:
    with torch.no_grad():
        t_logits = teacher(x)
    s_logits = student(x)
h_t, h_s = t_feats["hidden"], s_feats["hidden"]
print("teacher hidden:", tuple(h_t.shape), " student hidden:", tuple(h_s.shape))

# %%
# Claims: the tapped tensors are exactly the layers' outputs, and no hook is left behind.
assert torch.equal(h_t, teacher.hidden(x)) and torch.equal(h_s, student.hidden(x))
assert h_t.shape == (128, 256) and h_s.shape == (128, 32)
assert all(not m._forward_hooks for m in [*teacher.modules(), *student.modules()])

# %% [markdown]
# ## 2. Hints and adapters
#
# FitNets' hint loss: $\tfrac12 \lVert u_t - r(u_s) \rVert^2$, where $u_t$ is the teacher's
# feature, $u_s$ the student's and $r$ the adapter. We use the mean instead of the sum over
# elements (so the size does not depend on width or batch) and fold the ½ into the loss
# weight. Written out:

# %%
adapter = make_adapter(h_s, h_t, seed=0)  # nn.Linear(32, 256), trained with the student
print(adapter)
by_hand = ((adapter(h_s) - h_t.detach()) ** 2).mean()
print(f"hint loss by hand {by_hand:.5f}, library {hint_loss(h_s, h_t, adapter):.5f}")

# %%
assert isinstance(adapter, nn.Linear) and (adapter.in_features, adapter.out_features) == (32, 256)
assert torch.allclose(by_hand, hint_loss(h_s, h_t, adapter))
assert torch.allclose(hint_loss(h_s, h_t, adapter), F.mse_loss(adapter(h_s), h_t))

# %% [markdown]
# For a CNN the features are maps [N, C, H, W]. The shipped CNN teacher has 64 channels after
# its conv stack, the CNN student 8. The adapter is then a **1×1 convolution**: the same
# Linear(8 → 64), applied at every pixel.

# %%
cnn_teacher, cnn_student = load_pretrained("digits_cnn_teacher"), digits_cnn_student(seed=0)
images = as_images(digits.x_train[:16])  # [16, 1, 8, 8]
with Taps(cnn_teacher, "features") as tf, Taps(cnn_student, "features") as sf, torch.no_grad():
    cnn_teacher(images), cnn_student(images)
conv_adapter = make_adapter(sf["features"], tf["features"])
print("teacher maps:", tuple(tf["features"].shape), " student maps:", tuple(sf["features"].shape),
      " adapter:", conv_adapter)
with torch.no_grad():
    as_conv = conv_adapter(sf["features"])  # [16, 64, 4, 4]
    as_linear = F.linear(sf["features"].permute(0, 2, 3, 1), conv_adapter.weight[:, :, 0, 0],
                         conv_adapter.bias).permute(0, 3, 1, 2)  # a Linear over channels, per pixel

# %%
assert isinstance(conv_adapter, nn.Conv2d) and conv_adapter.kernel_size == (1, 1)
assert as_conv.shape == tf["features"].shape == (16, 64, 4, 4)
assert torch.allclose(as_conv, as_linear, atol=1e-6)

# %% [markdown]
# ## 3. Relations: distances and angles between examples (RKD)
#
# RKD compares the *shape* of the batch in feature space. For every pair of examples, the
# distance potential is their distance divided by the batch's mean distance,
# $\psi_D(t_i, t_j) = \lVert t_i - t_j \rVert / \mu$; for every triple, the angle potential is
# the cosine of the angle at $t_j$. The loss is the Huber loss between the student's and the
# teacher's potentials (eqs. 5-8 of the paper; weights 25 and 50 as there).
#
# Only distances and angles enter, so the widths (32 and 256) need not match, and the loss
# ignores how the student's feature space is rotated, shifted or scaled. We check that on a
# copy of the teacher's features moved around by a random rotation:

# %%
g = torch.Generator().manual_seed(0)
Q, _ = torch.linalg.qr(torch.randn(256, 256, generator=g))  # a random orthogonal matrix
moved = 3.0 * h_t @ Q + 1.0  # rotated, scaled by 3, shifted
print(f"RKD distance / angle loss, student vs teacher:       {rkd_distance_loss(h_s, h_t):.4f} / {rkd_angle_loss(h_s, h_t):.4f}")
print(f"RKD distance / angle loss, moved teacher vs teacher: {rkd_distance_loss(moved, h_t):.1e} / {rkd_angle_loss(moved, h_t):.1e}")

# %%
assert rkd_distance_loss(moved, h_t) < 1e-6 and rkd_angle_loss(moved, h_t) < 1e-6
assert rkd_distance_loss(h_s, h_t) > 1e-3

# %% [markdown]
# ## 4. Decoupled KD: what plain KD under-weights
#
# Split each softmax into "the target class" against "everything else", $b = [p_{gt}, 1 - p_{gt}]$,
# and the distribution $\hat p$ over the non-target classes alone. Zhao et al. show that, per
# example,
#
# $$\mathrm{KL}(p_t \,\|\, p_s) = \underbrace{\mathrm{KL}(b_t \,\|\, b_s)}_{\text{TCKD}} + (1 - p_{t,gt})\, \underbrace{\mathrm{KL}(\hat p_t \,\|\, \hat p_s)}_{\text{NCKD}}$$
#
# The dark knowledge lives in NCKD, and plain KD multiplies it by $1 - p_{t,gt}$: small exactly
# when the teacher is confident. DKD weights the two freely: $\alpha\,$TCKD $+ \beta\,$NCKD,
# with $\beta = 8$ by default. We check the identity on real logits, one example at a time.

# %%
y = digits.y_train[:128]
T = 4.0
zs, zt = s_logits.detach().double(), t_logits.double()  # float64, to see the identity exactly
rows = []
for i in range(len(x)):
    tckd, nckd = dkd_terms(zs[i:i + 1], zt[i:i + 1], y[i:i + 1], T)
    p_gt = soft_targets(zt[i], T)[y[i]]
    rows.append((kd_loss(zs[i:i + 1], zt[i:i + 1], T), tckd, (1 - p_gt) * nckd))
kd_vals, tckd_vals, weighted_nckd = (torch.stack(c) for c in zip(*rows, strict=True))
weight = 1 - soft_targets(t_logits, T)[torch.arange(len(y)), y]
print(f"largest |KD - (TCKD + (1-p_gt)·NCKD)| over 128 examples: {(kd_vals - tckd_vals - weighted_nckd).abs().max():.1e}")
print(f"the weight (1 - p_gt) plain KD puts on NCKD at T = 4: mean {weight.mean():.2f}, "
      f"min {weight.min():.2f}; DKD uses beta = 8")

# %%
assert torch.allclose(kd_vals, tckd_vals + weighted_nckd, rtol=1e-10, atol=1e-12)
assert weight.mean() < 0.5

# %% [markdown]
# ## 5. One table, one budget
#
# The setting of lesson 02, made harder: **60 labelled images** plus a transfer set of only
# **200 unlabelled ones** (with the full transfer set, lesson 02 found that even the teacher's
# hard labels do as well as KD, which leaves little to compare). Every method trains the same student for the same
# 300 steps of 64 images (the 60 labelled images alone, for the student without a teacher) with
# AdamW (lr 0.01), over three seeds, each with its paper's weights:
#
# | method | loss |
# |---|---|
# | student alone | CE on the 60 labelled images |
# | KD (Hinton) | 0.9 · KD(T = 4) + 0.1 · CE |
# | hint (FitNets) | CE + 100 · hint(student `hidden` → adapter → teacher `hidden`) |
# | RKD | CE + 25 · distance + 50 · angle, on the `hidden` features |
# | DKD | CE + TCKD + 8 · NCKD (T = 4) |
# | KD + hint | both terms of KD, plus 1 · hint |
#
# Our hint loss is a mean over the teacher's 256 features, so a weight of 100 on it equals a
# weight of 100/256 ≈ 0.4 on the per-example sum of squared errors (≈ 0.8 on FitNets' ½‖·‖²). DKD needs each row's target class; on unlabelled rows the
# `DKD` term uses the teacher's top class.

# %%
STEPS, BATCH, SEEDS = 300, 64, (0, 1, 2)
METHODS = {
    "student alone": lambda: {"ce": (1.0, CE())},
    "KD": lambda: {"kd": (0.9, KD(4.0)), "ce": (0.1, CE())},
    "hint": lambda: {"hint": (100.0, Hint("hidden", "hidden")), "ce": (1.0, CE())},
    "RKD": lambda: {"rkd": (1.0, RKD("hidden", "hidden")), "ce": (1.0, CE())},
    "DKD": lambda: {"dkd": (1.0, DKD(4.0, alpha=1.0, beta=8.0)), "ce": (1.0, CE())},
    "KD + hint": lambda: {"kd": (0.9, KD(4.0)), "ce": (0.1, CE()), "hint": (1.0, Hint("hidden", "hidden"))},
}


def data_for(seed, n_transfer=200):
    """60 labelled training images (6 per digit) plus n_transfer unlabelled ones (label -1)."""
    labelled = few_label_split(digits.y_train, 6, seed=seed)
    rest = torch.ones(len(digits.y_train), dtype=torch.bool)
    rest[labelled] = False
    rest = torch.nonzero(rest).flatten()
    rest = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(100 + seed))][:n_transfer]
    x = digits.x_train[torch.cat([labelled, rest])]
    y = torch.cat([digits.y_train[labelled], torch.full((n_transfer,), -1)])
    return x, y


acc = {m: [] for m in METHODS}
seconds = {m: [] for m in METHODS}
for seed in tqdm(SEEDS, desc="seeds"):
    x_s, y_s = data_for(seed)
    for name, losses in METHODS.items():
        alone = name == "student alone"
        x_m, y_m = (x_s[y_s >= 0], y_s[y_s >= 0]) if alone else (x_s, y_s)
        d = Distiller(digits_mlp_student(seed=seed), None if alone else teacher, losses(),
                      lr=1e-2, seed=seed, progress=False)
        d.fit(x_m, y_m, steps=STEPS, batch_size=BATCH)
        acc[name].append(d.accuracy(digits.x_test, digits.y_test))
        seconds[name].append(d.seconds)

mean = lambda v: sum(v) / len(v)
print(f"{'method':<14} {'test acc':>9} {'(min - max)':>15} {'s / run':>8} {'time vs KD':>11}")
for name in METHODS:
    a = acc[name]
    print(f"{name:<14} {mean(a):>9.1%} {f'({min(a):.1%} - {max(a):.1%})':>15} {mean(seconds[name]):>8.2f}"
          f" {mean(seconds[name]) / mean(seconds['KD']):>10.1f}x")

fig, ax = plt.subplots(figsize=(7, 3))
names = list(METHODS)
ax.barh(names, [100 * mean(acc[n]) for n in names], xerr=[[100 * (mean(acc[n]) - min(acc[n])) for n in names],
        [100 * (max(acc[n]) - mean(acc[n])) for n in names]], color="C0")
low = 100 * min(min(acc[n]) for n in names)   # the axis starts a little below the worst run, so no bar is cut
ax.set(xlim=(max(0, 5 * (low // 5) - 5), 100), xlabel="test accuracy (%), mean and range of 3 seeds",
       title="60 labels + 200 unlabelled images, 300 steps each")
ax.invert_yaxis()
plt.tight_layout()
plt.show()

# %% [markdown]
# What helped here, honestly:
#
# * **Every method beats the student alone.** The teacher's knowledge reaches the student
#   through its outputs, its features or the geometry of its features.
# * **The logit methods win: KD and DKD**, both about 12 points above the student alone.
#   DKD and KD are within about a point of each other: DKD's re-weighting buys nothing
#   measurable on this small problem.
# * **Hints and RKD help less** (about 8-9 points). They transfer the hidden layer, but the
#   student still has to learn its output layer from the 60 labels. RKD is also the slowest
#   per step: its angle term compares every triple of examples, N³ of them per batch.
# * **Adding a hint to KD** changes nothing measurable: once the outputs are matched, the
#   hidden layer has little left to teach.

# %%
gain = {m: mean(acc[m]) - mean(acc["student alone"]) for m in METHODS}
assert all(gain[m] > 0.03 for m in METHODS if m != "student alone")
assert all(0.09 < gain[m] < 0.15 for m in ("KD", "DKD")), gain          # "about 12 points"
assert all(0.06 < gain[m] < 0.11 for m in ("hint", "RKD")), gain        # "about 8-9 points"
assert min(mean(acc["KD"]), mean(acc["DKD"])) > max(mean(acc["hint"]), mean(acc["RKD"]))
assert abs(mean(acc["DKD"]) - mean(acc["KD"])) < 0.015
assert abs(mean(acc["KD + hint"]) - mean(acc["KD"])) < 0.015
assert mean(seconds["RKD"]) > 1.5 * mean(seconds["KD"])
assert max(METHODS, key=lambda m: mean(seconds[m])) == "RKD"            # "the slowest"

# %% [markdown]
# ## On a GPU
#
# RKD's angle term compares every triple of a batch's examples (N³ of them). On a GPU this cell
# runs one RKD run and one KD run there and prints their accuracy and time, and how many times
# KD's time RKD took, beside the CPU's ratio above. With batches of 64 and a model this small,
# launching kernels may cost more than their arithmetic, which would bring the two closer than
# on the CPU; the cell prints the ratio for you to see (it checks nothing: no GPU ran it for
# this course's tests).

# %%
if torch.cuda.is_available():
    x_s, y_s = data_for(0)
    gpu_seconds = {}
    for name in ("KD", "RKD"):
        d = Distiller(digits_mlp_student(seed=0), teacher, METHODS[name](), lr=1e-2, seed=0, device="cuda",
                      progress=False)
        d.fit(x_s, y_s, steps=STEPS, batch_size=BATCH)
        gpu_seconds[name] = d.seconds
        print(f"{name} on {torch.cuda.get_device_name()}: {d.accuracy(digits.x_test, digits.y_test):.1%} "
              f"in {d.seconds:.2f} s")
    teacher.cpu()
    print(f"RKD took {gpu_seconds['RKD'] / gpu_seconds['KD']:.1f}x KD's time on the GPU, "
          f"{mean(seconds['RKD']) / mean(seconds['KD']):.1f}x on the CPU")
else:
    print("No CUDA GPU here: this cell would time the KD and RKD runs on the GPU.")

# %% [markdown]
# ## Summary
#
# * `Taps` reads any named layer through forward hooks; the models stay untouched.
# * A hint needs an adapter when widths differ: `nn.Linear`, or a 1×1 `nn.Conv2d` for feature
#   maps (the same Linear at every pixel).
# * RKD compares distances and angles between examples, so it needs no adapter and ignores
#   rotations, shifts and scale of the student's feature space.
# * KD = TCKD + (1 − p_gt) · NCKD; DKD re-weights the two.
# * On this problem, logit distillation (KD or DKD) beats feature and relation distillation,
#   and combining KD with a hint adds nothing. The FitNets and RKD papers report their gains on
#   deep networks, where a student's middle layers are hard to train from the output alone;
#   this lesson does not test that.
