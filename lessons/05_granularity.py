# %% [markdown]
# # 05 · Granularity and outliers
#
# Lesson 04 gave a whole tensor one scale and one zero point. That is the cheapest choice, and
# often a bad one: a single large value stretches the grid for every other value. The fix is to
# hand out more scales:
#
# | granularity | one (scale, zero point) per | shape for a weight `[out, in]` |
# |---|---|---|
# | per-tensor | the whole tensor | `[]` |
# | per-channel | output row | `[out, 1]` |
# | per-group | `g` consecutive inputs of a row | `[out, in / g]` |
#
# More scales mean less error and more bytes. This lesson measures both on a real model,
# **all-MiniLM-L6-v2** (a 6-layer BERT that turns sentences into 384-d vectors), for its
# weights and for its activations, whose outlier channels are the reason activation quantization
# is hard.

# %%
import torch
import matplotlib.pyplot as plt

from minicomp.calibrate import find_linears
from minicomp.data import text_sentences
from minicomp.models import load_minilm
from minicomp.quant import compute_qparams, quantize, quantize_dequantize
from minicomp.rtn import rtn_quantize

model = load_minilm()
# 6 blocks x (query, key, value, attention output, FFN up, FFN down), named like "layer.0.attention.self.query"
layers = {name.split("encoder.")[-1]: layer for name, layer in find_linears(model, include="*encoder*").items()}
W = {name: layer.weight.detach().clone() for name, layer in layers.items()}  # each [out, in]
print(f"{len(W)} weight matrices, {sum(w.numel() for w in W.values()) / 1e6:.1f}M weights; shapes:",
      sorted({tuple(w.shape) for w in W.values()}))
assert len(W) == 36  # the "36 matrices" of the text below

# %% [markdown]
# ## 1. One matrix up close
#
# The query projection of the first block, `[384, 384]`. Each output row has its own range.
# With one scale for the whole matrix, the grid is sized for the widest row, and narrow rows
# fall on only a few of the 16 INT4 codes.

# %%
w = W["layer.0.attention.self.query"]
row_max = w.abs().amax(dim=1)  # [out]
scale, zero = compute_qparams(w, bits=4)
codes = quantize(w, scale, zero, 0, 15)
codes_used = torch.tensor([len(torch.unique(r)) for r in codes])  # distinct codes per row

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(row_max.sort(descending=True).values.numpy())
axes[0].set(xlabel="output row (sorted)", ylabel="max |w| in the row", title="row ranges differ")
axes[1].hist(codes_used.numpy(), bins=range(1, 18), color="C1")
axes[1].set(xlabel="distinct INT4 codes used by a row", ylabel="rows", title="per-tensor INT4")
plt.tight_layout()
plt.show()
print(f"widest row {row_max.max():.3f}, median row {row_max.median():.3f} ({row_max.max() / row_max.median():.1f}x)")
print(f"per-tensor INT4: a median row uses {codes_used.float().median():.0f} of the 16 codes")

# %% [markdown]
# Claims: the widest row is more than twice as wide as the median row, so per-tensor INT4 leaves
# the median row with at most half of the codes.

# %%
assert row_max.max() / row_max.median() > 2
assert codes_used.float().median() <= 8
print("checked: rows differ by > 2x; a median row uses <= 8 of 16 codes per-tensor")

# %% [markdown]
# ## 2. Per-tensor, per-channel, per-group: the error
#
# For each of the 36 matrices, the relative error `‖W − Ŵ‖ / ‖W‖` (Frobenius norms), averaged.
# Per-group uses the input dimension, the one that is summed over in `x @ W.T`.

# %%
def rel_error(w, bits, **granularity):
    return ((quantize_dequantize(w, bits, **granularity) - w).norm() / w.norm()).item()


_cache = {}


def mean_error(bits, **granularity):
    key = (bits, tuple(granularity.items()))
    if key not in _cache:  # each setting is measured once, then reused by the later sections
        _cache[key] = sum(rel_error(w, bits, **granularity) for w in W.values()) / len(W)
    return _cache[key]


GRANULARITIES = {"per-tensor": {}, "per-channel": {"axis": 0}, "group 128": {"group_size": 128},
                 "group 32": {"group_size": 32}}
err = {(bits, name): mean_error(bits, **kw) for bits in (8, 4) for name, kw in GRANULARITIES.items()}
print(f"{'':12}" + "".join(f"{name:>13}" for name in GRANULARITIES))
for bits in (8, 4):
    print(f"INT{bits:<9}" + "".join(f"{err[bits, name]:>13.4f}" for name in GRANULARITIES))

# %% [markdown]
# Claims: each finer granularity lowers the error, at both bit widths; per-channel is at least
# 2.5 times better than per-tensor; groups of 32 beat per-channel by at least 25 % at INT4.

# %%
for bits in (8, 4):
    e = [err[bits, name] for name in GRANULARITIES]
    assert all(a > b for a, b in zip(e, e[1:])), (bits, e)
    assert err[bits, "per-tensor"] / err[bits, "per-channel"] > 2.5
assert err[4, "group 32"] < 0.75 * err[4, "per-channel"]
print("checked: per-tensor > per-channel > group 128 > group 32 (error), at INT8 and INT4")

# %% [markdown]
# ## 3. Error against group size
#
# Smaller groups track the weights more closely. Per-channel is the largest "group": the
# whole row (384 or 1536 inputs).

# %%
GROUPS = [16, 32, 64, 128]
curve = {bits: [mean_error(bits, group_size=g) for g in GROUPS] + [mean_error(bits, axis=0)] for bits in (3, 4)}
fig, ax = plt.subplots(figsize=(6, 3.2))
xs = GROUPS + [512]
for bits, errs in curve.items():
    ax.plot(xs, errs, "o-", label=f"INT{bits}")
ax.set_xscale("log", base=2)
ax.set_xticks(xs, [str(g) for g in GROUPS] + ["row"])
ax.set(xlabel="group size (inputs per scale)", ylabel="relative weight error", title="all-MiniLM-L6-v2, 36 matrices")
ax.legend()
plt.show()
for bits, errs in curve.items():
    print(f"INT{bits}: " + ", ".join(f"{g}: {e:.4f}" for g, e in zip(GROUPS + ["row"], errs)))

# %% [markdown]
# Claims: the error grows steadily with the group size at both widths; INT3 with groups of 16
# is about as accurate as INT4 per-channel (within 20 %): finer groups buy back a bit's worth of
# *error*. Not of storage, though: as section 4 counts, a scale and a zero point for every 16
# weights cost (16 + 3) / 16 ≈ 1.19 bits per weight, so INT3 g16 stores more than INT4 per-channel.

# %%
for errs in curve.values():
    assert all(a < b for a, b in zip(errs, errs[1:]))
assert abs(curve[3][0] / curve[4][-1] - 1) < 0.2
w_q = W["layer.0.attention.self.query"]   # bits per weight as stored (section 4): INT3 g16 > INT4 per row of 384
assert (rtn_quantize(w_q, 3, 16, scale_dtype=torch.float16).bits_per_weight
        > rtn_quantize(w_q, 4, -1, scale_dtype=torch.float16).bits_per_weight)
print(f"checked: error rises with group size; INT3 g16 {curve[3][0]:.4f} ≈ INT4 per-channel {curve[4][-1]:.4f}")

# %% [markdown]
# ## 4. What the scales cost
#
# Every group stores a scale (float16 in GPTQ and AWQ checkpoints: 16 bits) and, asymmetric, a
# zero point (`b` bits). (llama.cpp's formats differ: Q4_0 stores no zero point, Q4_1 a float16
# minimum.) Per weight that adds `(16 + b) / g` bits:
#
# $$\text{bits per weight} = b + \frac{16 + b}{g}$$
#
# `QuantizedWeight.nbytes` counts exactly this (codes packed at `b` bits, the scales in their
# dtype, zeros at `b` bits). We check it against the formula on a real `[1536, 384]` matrix.

# %%
w_up = W["layer.0.intermediate.dense"]  # [1536, 384]
n_weights = sum(v.numel() for v in W.values())
print(f"{'INT4 format':14} {'bits/weight':>11} {'formula':>8} {'encoder linears':>16} {'rel. error':>10}")
costs = {}
for label, g in [("per-channel", -1), ("group 128", 128), ("group 64", 64), ("group 32", 32)]:
    qw = rtn_quantize(w_up, 4, g, scale_dtype=torch.float16)
    formula = 4 + (16 + 4) / qw.group_size
    total = sum(rtn_quantize(v, 4, g, scale_dtype=torch.float16).nbytes for v in W.values())
    costs[label] = (qw.bits_per_weight, formula, total)
    error = ((qw.dequantize() - w_up).norm() / w_up.norm()).item()
    print(f"{label:14} {qw.bits_per_weight:>11.3f} {formula:>8.3f} {total / 1e6:>13.2f} MB {error:>10.4f}")
print(f"{'float32':14} {32:>11} {'':>8} {n_weights * 4 / 1e6:>13.2f} MB")

# %% [markdown]
# Claims: the measured size equals the formula; groups of 128 cost 0.16 bits per weight, groups of
# 32 cost 0.625; even with groups of 32, INT4 is 6.9 times smaller than float32.

# %%
for bpw, formula, _total in costs.values():
    assert abs(bpw - formula) < 1e-9
assert abs(costs["group 128"][0] - 4.15625) < 1e-9 and abs(costs["group 32"][0] - 4.625) < 1e-9
assert n_weights * 4 / costs["group 32"][2] > 6.9
print("checked: nbytes == b + (16 + b) / g bits per weight")

# %% [markdown]
# ## 5. The whole model: does the embedding survive?
#
# Errors in the weights matter only through what the model outputs. We quantize all 36 matrices
# to INT4 at each granularity (simulated: each weight is replaced by its dequantized value) and
# compare the sentence embeddings with the float model's by cosine similarity, on sentences the
# lesson never looked at before.

# %%
sentences = text_sentences("heldout", n=32, seed=0)
with torch.no_grad():
    reference = model.encode(sentences, convert_to_tensor=True, batch_size=32)
cosine = {}
for name, kw in GRANULARITIES.items():
    with torch.no_grad():
        for lname, layer in layers.items():
            layer.weight.copy_(quantize_dequantize(W[lname], 4, **kw))
        emb = model.encode(sentences, convert_to_tensor=True, batch_size=32)
        for lname, layer in layers.items():
            layer.weight.copy_(W[lname])  # restore the float weights
    cosine[name] = torch.nn.functional.cosine_similarity(emb, reference).mean().item()
    print(f"INT4 {name:12} mean cosine similarity to float: {cosine[name]:.4f}")

# %% [markdown]
# Claims: the order carries over to the output. Per-tensor INT4 wrecks the embedding (cosine
# below 0.5); per-channel, groups of 128 and groups of 32 are each better than the one before,
# and groups of 32 keep the cosine above 0.96.

# %%
c = list(cosine.values())
assert all(a < b for a, b in zip(c, c[1:])), c                      # each better than the one before
assert cosine["per-tensor"] < 0.5 and cosine["group 32"] > 0.96
print("checked: finer granularity -> embeddings closer to the float model")

# %% [markdown]
# ## 6. Activations and their outlier channels
#
# Weights are known in advance; activations change with every input. We record the input of the
# first feed-forward layer of every block (the output of a LayerNorm) with forward pre-hooks,
# for a batch of sentences, and look at the largest magnitude in each of the 384 channels.

# %%
features = model.preprocess(sentences) if hasattr(model, "preprocess") else model.tokenize(sentences)
mask = features["attention_mask"].bool()  # [batch, tokens]: padding is not a real activation
acts, handles = {}, []
for lname, layer in layers.items():
    if lname.endswith("intermediate.dense"):
        handles.append(layer.register_forward_pre_hook(lambda m, args, n=lname: acts.__setitem__(n, args[0][mask])))
with torch.no_grad():
    model(dict(features))
for h in handles:
    h.remove()

top = {}
for lname, X in acts.items():  # X: [tokens, 384]
    chan_max = X.abs().amax(dim=0)  # [384]
    top[lname] = chan_max.topk(3).indices.tolist()
    print(f"block {lname.split('.')[1]}: median channel max {chan_max.median():.2f}, "
          f"largest: channels {top[lname]} with {[round(v, 1) for v in chan_max.topk(3).values.tolist()]}")

X = acts["layer.3.intermediate.dense"]
chan_max = X.abs().amax(dim=0)
fig, ax = plt.subplots(figsize=(8, 2.8))
ax.bar(range(384), chan_max.numpy(), width=1.0)
ax.set(xlabel="channel", ylabel="max |x|", title=f"block 3, FFN input, {X.shape[0]} tokens")
plt.show()

# %% [markdown]
# Claims: one channel, 99, is among the three largest in every block, more than 7 times the
# median channel. The same channel in every block: that points to
# something the trained weights produce, not to noise in the data.

# %%
assert all(99 in t for t in top.values())
for Xb in acts.values():
    m = Xb.abs().amax(dim=0)
    assert m[99] > 7 * m.median()
assert len(acts) == 6                                                # "every block": all 6 of them
print("checked: channel 99 is an outlier (> 7x the median channel) in all 6 blocks")

# %% [markdown]
# ### Which granularity for activations?
#
# `X` is `[tokens, channels]`. Per-tensor is one scale for everything. **Per-token** (one scale
# per row) is cheap at run time: each row's scale is computed on the fly and factors out of the
# matmul. **Per-channel** (one per column) would follow the outlier, but a column scale sits
# inside the sum over channels of `X @ W.T`, so it cannot simply be factored out; it has to be
# moved into the weights instead (SmoothQuant and AWQ, lesson 08).

# %%
act_err = {}
for name, kw in [("per-tensor", {}), ("per-token", {"axis": 0}), ("per-channel", {"axis": 1})]:
    Xq = quantize_dequantize(X, 8, **kw)
    act_err[name] = ((Xq - X).norm() / X.norm()).item()
normal = torch.ones(384, dtype=torch.bool)
normal[99] = False
step_with = compute_qparams(X, 8)[0].item()
step_without = compute_qparams(X[:, normal], 8)[0].item()
step_median = compute_qparams(X, 8, axis=1)[0].median().item()  # what a typical channel needs alone
print("INT8 relative error: " + ", ".join(f"{k} {v:.4f}" for k, v in act_err.items()))
print(f"per-tensor INT8 step {step_with:.4f}; without channel 99 {step_without:.4f} "
      f"({step_with / step_without:.1f}x finer); a median channel on its own {step_median:.4f} "
      f"({step_with / step_median:.1f}x finer)")

# %% [markdown]
# Claims: per-token beats per-tensor, per-channel beats per-token by a wide margin (at least 2×).
# In this block the single outlier channel makes the per-tensor step more than 1.5 times coarser
# for the 383 other channels (in every block, more than 1.25 times), and a typical channel alone
# would use a step over 5 times finer. Per-channel beats per-token by 2× in every block.

# %%
assert act_err["per-channel"] * 2 < act_err["per-token"] < act_err["per-tensor"]
assert step_with / step_without > 1.5 and step_with / step_median > 5
for lname, Xb in acts.items():   # every block, not only block 3
    coarser = compute_qparams(Xb, 8)[0].item() / compute_qparams(Xb[:, normal], 8)[0].item()
    err = {name: ((quantize_dequantize(Xb, 8, **kw) - Xb).norm() / Xb.norm()).item()
           for name, kw in [("per-token", {"axis": 0}), ("per-channel", {"axis": 1})]}
    assert coarser > 1.25 and 2 * err["per-channel"] < err["per-token"], (lname, coarser, err)
print("checked: per-channel << per-token < per-tensor for activations; the outlier sets the step")

# %% [markdown]
# ## Summary
#
# * Finer granularity, lower error: per-tensor > per-channel > per-group, and smaller groups are
#   better still, for the weights and for the model's output.
# * Scales are not free: `b + (16 + b)/g` bits per weight. Groups of 128 cost 0.16 bits, which is
#   why 4-bit formats settle on 32–128.
# * Activations have outlier channels (channel 99 here, in every block). Per-token scales help,
#   but per-channel ones cut the error at least twice as much again: the outliers call for
#   per-channel treatment, which has to live in the weights.
#
# **Exercise 05** asks you to write per-group quantization. Lesson 06 quantizes whole models,
# weights and activations, and trains through the rounding.
