# %% [markdown]
# # 07 · GPTQ: rounding with error feedback
#
# Round-to-nearest (lesson 06) rounds every weight on its own. GPTQ (Frantar et al., ICLR 2023)
# rounds the weights of a layer one input column at a time and, after each column, nudges the
# columns not yet rounded so that the layer's **output** changes as little as possible. It needs
# a little calibration data and no training. The code is `minicomp/gptq.py`, to read beside this lesson.
#
# 1. the layer-wise objective ‖XWᵀ − XŴᵀ‖² and its Hessian H = 2XᵀX;
# 2. the Optimal Brain Surgeon (OBS) update on a 2×2 example, by hand;
# 3. column by column with error feedback; the Cholesky form and lazy batches, timed;
# 4. groups and act-order;
# 5. the whole model: TinyGPT and all-MiniLM-L6-v2, layer by layer.

# %%
import copy
import time

import matplotlib.pyplot as plt
import torch

from minicomp import hardware
from minicomp.calibrate import capture_inputs, find_linears, quantize_model
from minicomp.data import CharCorpus, text_sentences
from minicomp.gptq import gptq_quantize, input_hessian, inverse_hessian_factor
from minicomp.models import load_minilm, load_pretrained, perplexity
from minicomp.quant import compute_qparams
from minicomp.rtn import rtn_quantize
from minicomp.sentence import calibration_batches, embed, forward, mean_cosine

torch.manual_seed(0)
corpus = CharCorpus()
gpt = load_pretrained("tinygpt")
g = torch.Generator().manual_seed(0)
calib = [corpus.get_batch("train", 8, 128, g)[0] for _ in range(2)]  # 16 windows of 128 characters

# %% [markdown]
# ## 1. The objective and its Hessian
#
# For one linear layer with calibration inputs X `[tokens, in]`, GPTQ minimises
# E(Ŵ) = ‖XWᵀ − XŴᵀ‖². Each output row is independent, and for a row w the error of a change δ
# is δ H δᵀ / 2 with **H = 2XᵀX** `[in, in]`: the same matrix for every row, computed once from
# the data. (`input_hessian` divides it by the number of tokens, as the GPTQ reference code does:
# a mean over tokens keeps H's size the same for any amount of calibration data, and a scale of H
# changes neither the best weights nor the updates.) We take TinyGPT's first MLP layer and its
# real inputs.

# %%
layer = gpt.transformer.h[0].mlp.c_fc  # weight [512, 128]
X = torch.cat(capture_inputs(gpt, layer, calib))  # [tokens, 128]
W = layer.weight.detach()
H = input_hessian([X])  # 2 XᵀX / tokens


def objective(W_hat):
    return ((X @ (W - W_hat).T) ** 2).sum().item()


e_rtn = objective(rtn_quantize(W, 3, -1).dequantize())
print(f"X {tuple(X.shape)}   H {tuple(H.shape)}   RTN 3-bit layer error {e_rtn:.1f}")
assert torch.allclose(H, 2 * X.T @ X / len(X), rtol=1e-4, atol=1e-5)

# %% [markdown]
# ## 2. OBS on a 2×2 example, by hand
#
# One row w = (w₁, w₂) = (0.4, 0.4), H = [[2, 1], [1, 2]] (two correlated inputs), grid step 1. Rounding
# w₁ = 0.4 to 0 makes an error of 0.4. OBS says: move the remaining weight by
# δ₂ = −(w₁ − q₁) · [H⁻¹]₁₂ / [H⁻¹]₁₁. Here H⁻¹ = [[2, −1], [−1, 2]] / 3, so
# δ₂ = −0.4 · (−1/3) / (2/3) = +0.2: w₂ = 0.4 becomes 0.6 and rounds to 1, where RTN gives 0.
# The error δHδᵀ/2 drops from 0.48 to 0.28.

# %%
H2 = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
w = torch.tensor([0.4, 0.4])
Hi = torch.linalg.inv(H2)
delta2 = -(w[0] - 0.0) * Hi[0, 1] / Hi[0, 0]
obs = torch.tensor([0.0, torch.round(w[1] + delta2)])
rtn = torch.round(w)
err = lambda q: ((w - q) @ H2 @ (w - q) / 2).item()  # noqa: E731
print(f"δ₂ = {delta2:.2f}   RTN {rtn.tolist()} error {err(rtn):.3f}   OBS {obs.tolist()} error {err(obs):.3f}")
assert abs(delta2 - 0.2) < 1e-6 and abs(err(rtn) - 0.48) < 1e-6 and abs(err(obs) - 0.28) < 1e-6

# %% [markdown]
# ## 3. Column by column, then the Cholesky form and lazy batches
#
# The straightforward loop keeps the inverse Hessian of the columns not yet quantized, H_F⁻¹,
# and removes one row and column from it after each step (a Gaussian elimination step). GPTQ's
# observation: row i of the upper Cholesky factor of H⁻¹ is exactly the row of H_F⁻¹ that step i
# needs, scaled; so one Cholesky factorisation replaces all the updates, and it is the
# numerically stable way to get them. GPTQ also uses *lazy batches*: the error of a block of 128
# columns reaches the columns after the block in one matrix product. Both give the same weights
# (but for a rare code on a rounding boundary, where float rounding can tip it); we time them
# on this layer. At 128 columns both are quick. Both also do on the order of in³ operations; the
# difference is how: the naive loop makes `in` updates of the whole remaining inverse, one
# pass over `in`² numbers each, where the library factors once (a Cholesky), updates only the
# columns left in its block of 128 one by one, and hands each block's error to all the columns
# after it in one matrix product (section 4 times both again on a layer of 512 inputs).

# %%
def gptq_naive(W, H=H):
    s, z = (t[:, 0] for t in compute_qparams(W, 3, axis=0))   # per-row 3-bit grid
    damp = 0.01 * torch.diag(H).mean()
    W, Q = W.clone(), torch.zeros_like(W)
    Hinv = torch.linalg.inv(H + damp * torch.eye(len(H)))  # H_F⁻¹ for F = all columns
    for i in range(W.shape[1]):
        q = (torch.clamp(torch.round(W[:, i] / s) + z, 0, 7) - z) * s
        Q[:, i] = q
        err = (W[:, i] - q) / Hinv[i, i]
        W[:, i:] -= err[:, None] * Hinv[i, i:][None, :]  # OBS update (GPTQ eq. 2)
        Hinv = Hinv - Hinv[:, i:i + 1] @ Hinv[i:i + 1, :] / Hinv[i, i]  # remove column i (eq. 3)
    return Q


def time_both(W, H):
    """Both forms on one layer, timed in one interleaved run on one core: (naive ms, library ms),
    each the best of 3 (the run least disturbed by whatever else the machine was doing)."""
    with hardware.num_threads(1):   # steady when the machine is shared (lesson 00)
        t = hardware.compare({"naive": lambda: gptq_naive(W, H),
                              "library": lambda: gptq_quantize(W, H, bits=3, group_size=-1)}, warmup=1, repeats=3)
    return 1e3 * t["naive"].min, 1e3 * t["library"].min


Q_naive = gptq_naive(W)
Q_lib = gptq_quantize(W, H, bits=3, group_size=-1).dequantize()
same = torch.isclose(Q_naive, Q_lib, atol=1e-5).float().mean().item()
naive_ms, lib_ms = time_both(W, H)
print(f"naive OBS loop {naive_ms:.0f} ms   Cholesky + lazy batches {lib_ms:.0f} ms   same weights: {same:.2%}")
print(f"layer error  RTN {e_rtn:.1f}   GPTQ {objective(Q_lib):.1f}")
assert same > 0.99 and objective(Q_lib) < e_rtn

# %% [markdown]
# The Cholesky factor itself: `inverse_hessian_factor(H)` returns U, upper triangular with
# UᵀU = (H + λI)⁻¹, where λ = 1 % of the mean diagonal (dampening, raised automatically if the
# factorisation fails on a singular H).

# %%
U = inverse_hessian_factor(H.double(), 0.01)
assert torch.allclose(U.T @ U, torch.linalg.inv(H.double() + 0.01 * torch.diag(H.double()).mean() * torch.eye(128)))
assert torch.equal(U, torch.triu(U))

# %% [markdown]
# ## 4. Groups and act-order
#
# Groups of 128 inputs get their own grid (lesson 05). **Act-order** quantizes the columns with
# the largest H_qq (the loudest inputs) first, while many columns are still free to absorb their
# error; `static_groups=True` fixes each group's grid from the original weight, so the grids do
# not depend on that order. Measured on TinyGPT's second MLP layer (512 inputs): GPTQ beats RTN
# at either granularity, groups help it, and act-order lowers its error further still, more
# than static groups alone do (so the gain is the order's, not the fixed grids'). On this layer
# (512 inputs, 128 outputs) the library still gives the naive loop's weights, and its lead over
# the loop is larger than on section 3's (128 inputs, 512 outputs).

# %%
layer2 = gpt.transformer.h[0].mlp.c_proj  # [128, 512]
X2 = torch.cat(capture_inputs(gpt, layer2, calib))
W2, H2 = layer2.weight.detach(), input_hessian([X2])
obj2 = lambda W_hat: ((X2 @ (W2 - W_hat).T) ** 2).sum().item()  # noqa: E731
rows = {
    "RTN per-channel": obj2(rtn_quantize(W2, 3, -1).dequantize()),
    "RTN g128": obj2(rtn_quantize(W2, 3, 128).dequantize()),
    "GPTQ per-channel": obj2(gptq_quantize(W2, H2, 3, -1).dequantize()),
    "GPTQ g128": obj2(gptq_quantize(W2, H2, 3, 128).dequantize()),
    "GPTQ g128 static": obj2(gptq_quantize(W2, H2, 3, 128, static_groups=True).dequantize()),
    "GPTQ g128 act-order": obj2(gptq_quantize(W2, H2, 3, 128, act_order=True, static_groups=True).dequantize()),
}
for name, e in rows.items():
    print(f"{name:>22}  {e:10.2f}")
assert rows["GPTQ g128"] < rows["RTN g128"] and rows["GPTQ per-channel"] < rows["RTN per-channel"]
assert rows["GPTQ g128"] < rows["GPTQ per-channel"]
assert rows["GPTQ g128 act-order"] < min(rows["GPTQ g128"], rows["GPTQ g128 static"])   # the order's gain
same2 = torch.isclose(gptq_naive(W2, H2), gptq_quantize(W2, H2, 3, -1).dequantize(), atol=1e-5).float().mean().item()
assert same2 > 0.99, same2   # the same weights here too, where lazy batches have 4 blocks to pass on
naive2_ms, lib2_ms = time_both(W2, H2)
print(f"{W2.shape[1]} inputs: naive OBS loop {naive2_ms:.0f} ms, Cholesky + lazy batches {lib2_ms:.0f} ms: "
      f"{naive2_ms / lib2_ms:.1f}× (at {W.shape[1]} inputs: {naive_ms / lib_ms:.1f}×)")
assert naive2_ms / lib2_ms > max(2.0, naive_ms / lib_ms)   # the lead is larger on this layer

# %% [markdown]
# ## 5. The whole model, layer by layer
#
# `quantize_model(model, "gptq", calibration=...)` captures each layer's inputs *in the model
# quantized so far*, so each layer's Hessian describes the inputs it will really see, errors of
# the layers before it included (the GPTQ reference code does the same). We compare TinyGPT's
# perplexity at 3 bits, and each layer's relative output error.

# %%
def layer_errors(model, reference):
    """Relative output error of each quantized linear on the calibration data, against float."""
    out = {}
    for name, ref_layer in find_linears(reference).items():
        x = torch.cat(capture_inputs(reference, ref_layer, calib))
        y = ref_layer(x)
        out[name] = ((model.get_submodule(name)(x) - y).norm() / y.norm()).item()
    return out


models = {"rtn": quantize_model(copy.deepcopy(gpt), "rtn", bits=3, group_size=128, progress=False),
          "gptq": quantize_model(copy.deepcopy(gpt), "gptq", bits=3, group_size=128, calibration=calib,
                                 progress=False, act_order=True, static_groups=True)}
ppl = {"float": perplexity(gpt, corpus, "val", max_windows=32)}
ppl.update({k: perplexity(m, corpus, "val", max_windows=32) for k, m in models.items()})
errs = {k: layer_errors(m, gpt) for k, m in models.items()}
print("TinyGPT perplexity, 3-bit g128: " + "   ".join(f"{k} {v:.3f}" for k, v in ppl.items()))
names = list(errs["rtn"])
plt.figure(figsize=(8, 3))
for k in ("rtn", "gptq"):
    plt.plot(range(len(names)), [errs[k][n] for n in names], "o-", label=k)
plt.xticks(range(len(names)), [n.replace("transformer.", "") for n in names], rotation=60, fontsize=7)
plt.ylabel("relative output error")
plt.title("TinyGPT 3-bit g128, per layer")
plt.legend()
plt.tight_layout()
plt.show()
assert ppl["gptq"] < ppl["rtn"]
assert sum(errs["gptq"].values()) < sum(errs["rtn"].values())

# %% [markdown]
# **Where each layer's inputs come from.** Captured naively, layer k's inputs cost a forward pass
# of the model from its first layer up to layer k, for every layer. Like the reference GPTQ code,
# `quantize_model` instead runs the calibration data through the model once, keeps what the first
# transformer block receives, and from then on runs only the block the layer sits in, on that
# block's cached inputs; a finished (quantized) block's outputs are the next block's inputs
# (`minicomp/blockwise.py`). `by_block=False` does it the naive way. Claim: every layer sees the
# very same inputs, so the two give the same model, bit for bit, and the block way calls fewer
# layers. We count the calls of every linear layer during each run:

# %%
from torch.nn.modules.module import register_module_forward_pre_hook

from minicomp.rtn import QuantLinear


def gptq_counting_calls(by_block):
    """TinyGPT quantized as above, and how many times a linear layer ran meanwhile."""
    calls = [0]

    def count(module, args):
        calls[0] += isinstance(module, (torch.nn.Linear, QuantLinear))

    handle = register_module_forward_pre_hook(count)
    try:
        m = quantize_model(copy.deepcopy(gpt), "gptq", bits=3, group_size=128, calibration=calib,
                           progress=False, act_order=True, static_groups=True, by_block=by_block)
    finally:
        handle.remove()
    return m, calls[0]


(blockwise, block_calls), (naive, naive_calls) = gptq_counting_calls(True), gptq_counting_calls(False)
a, b = blockwise.state_dict(), naive.state_dict()
same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
print(f"linear layer calls: {naive_calls} naive, {block_calls} block by block "
      f"({naive_calls / block_calls:.1f}x fewer); identical models: {same}")
assert same and block_calls < naive_calls

# %% [markdown]
# ### all-MiniLM-L6-v2
#
# The same call on a sentence-embedding model: `forward=lambda m, b: m(b)` feeds it tokenized
# sentences. We compare embeddings of held-out sentences by cosine similarity (1 = unchanged).
# (`benchmarks/minilm_ptq.py` records the full table, AWQ included, with more calibration data.)
# Claim: GPTQ keeps the embeddings closer than RTN, above 0.98 cosine.

# %%
minilm = load_minilm(device="cpu")
batches = calibration_batches(minilm, text_sentences("calib", 128, seed=0))  # 4 batches of 32, by length
held = text_sentences("heldout", 128, seed=0)
ref = embed(minilm, held)  # [128, 384] unit-length embeddings
cos = {}
gptq_options = dict(calibration=batches, forward=forward, act_order=True, static_groups=True)
for method, options in (("rtn", {}), ("gptq", gptq_options)):
    m = copy.deepcopy(minilm)
    t0 = time.perf_counter()
    quantize_model(m, method, bits=4, group_size=128, progress=False, **options)
    seconds = time.perf_counter() - t0
    cos[method] = mean_cosine(ref, embed(m, held))
    print(f"MiniLM INT4 g128 {method:>4}: mean cosine {cos[method]:.4f}   ({seconds:.1f} s)")
assert cos["gptq"] > cos["rtn"] and cos["gptq"] > 0.98

# %% [markdown]
# ## Summary
#
# * RTN rounds each weight alone. GPTQ rounds a layer one input column at a time and moves the
#   columns not yet rounded to cancel each rounding's effect on the output, weighted by the
#   Hessian H = 2XᵀX of calibration inputs. It needs no training. Its output error was below
#   RTN's at every granularity measured here, and over a whole model's layers.
# * What makes it practical: one Cholesky factor of H⁻¹ holds the row of the shrinking inverse
#   that each step needs, and lazy batches pass a block's error on in one matrix product. The
#   weights are the naive loop's, and the time is a few large calls instead of one small update
#   per column: several times faster on a layer of 512 inputs.
# * Groups and act-order (the loudest inputs first, with grids fixed up front) each lowered
#   GPTQ's error further.
# * A whole model is quantized layer by layer, on inputs from the model quantized so far, one
#   transformer block at a time (bit for bit what the naive capture gives, with fewer layer
#   calls). TinyGPT at 3 bits got a lower perplexity than with RTN. MiniLM at 4 bits kept its
#   embeddings above 0.98 cosine, closer than RTN's.
#
# Exercise 07 asks you to write GPTQ's inner loop yourself (`gptq_columns`): round a column,
# then spread its error over the columns still to come along a row of the Cholesky factor.
#
# Next: AWQ (lesson 08) protects the weights that matter another way, with no error feedback:
# it scales up the weights that meet large activations, so that rounding hurts them less.
