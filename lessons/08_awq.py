# %% [markdown]
# # 08 · AWQ: protect the salient weights by scaling
#
# AWQ (Lin et al., MLSys 2024) starts from an observation: a few input channels carry much larger
# activations than the others, and the weights they meet matter most. Keeping those weights in
# higher precision helps (section 1 measures how much), but mixed precision is awkward for kernels. AWQ gets the same
# effect with one trick: multiply those weight columns by a larger s than the others before
# rounding, and divide the input by s, which changes nothing in float. The code is `minicomp/awq.py`.
#
# 1. salient channels: keep 1 % of the weights in float;
# 2. scaling instead of mixed precision, and the search for the exponent α;
# 3. clipping;
# 4. RTN, GPTQ and AWQ on TinyGPT and all-MiniLM-L6-v2;
# 5. where the scale goes: folding x / s into the op before.

# %%
import copy
import re

import matplotlib.pyplot as plt
import torch

from minicomp.awq import (
    activation_scales,
    awq_quantize,
    awq_search_clip,
    awq_search_scale,
    fold_awq_scales,
    output_error,
)
from minicomp.calibrate import capture_inputs, quantize_model
from minicomp.data import CharCorpus, text_sentences
from minicomp.gptq import input_hessian
from minicomp.models import load_minilm, load_pretrained, perplexity
from minicomp.rtn import rtn_quantize
from minicomp.sentence import calibration_batches, embed, forward, mean_cosine, nn_agreement

torch.manual_seed(0)
corpus = CharCorpus()
gpt = load_pretrained("tinygpt")
g = torch.Generator().manual_seed(0)
calib = [corpus.get_batch("train", 8, 128, g)[0] for _ in range(2)]  # 16 windows of 128 characters
BITS, GROUP = 3, 128  # 3-bit groups of 128: where the differences are easy to see

layer = gpt.transformer.h[0].mlp.c_proj  # weight [128, 512]; its inputs come out of a GELU
X = torch.cat(capture_inputs(gpt, layer, calib))  # [tokens, 512]
W = layer.weight.detach()
H = input_hessian([X])
err = lambda W_hat: output_error(W, W_hat, H).item()  # noqa: E731  ‖XWᵀ − XŴᵀ‖² / tokens
e_rtn = err(rtn_quantize(W, BITS, GROUP).dequantize())

# %% [markdown]
# ## 1. Salient channels
#
# s_x = mean |x| per input channel. Keep the weight columns of the top 1 % of channels in float
# and round the rest: which 1 % we pick matters. By activation it helps most. TinyGPT's outliers
# are mild (the loudest channel is about 3× the median; the AWQ and SmoothQuant papers report
# outliers around 100× in large LLMs), so the effects in this lesson are modest, but they are
# measured and they hold.

# %%
s_x = activation_scales([X])  # [512]
loudness = (s_x.max() / s_x.median()).item()
print(f"loudest channel / median: {loudness:.1f}")
assert 2 < loudness < 5  # "about 3x": mild outliers
k = max(1, round(0.01 * W.shape[1]))


def keep_in_float(cols):
    W_hat = rtn_quantize(W, BITS, GROUP).dequantize()
    W_hat[:, cols] = W[:, cols]
    return err(W_hat)


picks = {"by activation": s_x.topk(k).indices, "by weight norm": W.norm(dim=0).topk(k).indices,
         "at random": torch.randperm(W.shape[1], generator=torch.Generator().manual_seed(0))[:k]}
kept = {name: keep_in_float(cols) for name, cols in picks.items()}
print(f"RTN {BITS}-bit: {e_rtn:.4f}   keeping {k} column(s) in float: "
      + "   ".join(f"{n} {e:.4f}" for n, e in kept.items()))
assert kept["by activation"] == min(kept.values()) and kept["by activation"] < e_rtn  # helps most

# %% [markdown]
# ## 2. Scaling instead of mixed precision
#
# y = xWᵀ = (x / s)(W s)ᵀ. Scaling column j up, by a larger s_j than its neighbours', shrinks its
# rounding error relative to its size, while the other columns of its group share a slightly
# coarser grid. AWQ sets s = s_x^α, divided by √(max s · min s) as the reference code does (only
# the ratios between channels matter, so some s_j end up below 1), and searches α on a grid of
# 20 points in [0, 1), measuring the layer's output error. α = 0 is plain RTN.

# %%
s, curve = awq_search_scale(W, s_x, H, BITS, GROUP)
alphas, errors = zip(*curve)
best_alpha = alphas[errors.index(min(errors))]
plt.figure(figsize=(5, 3))
plt.plot(alphas, errors, "o-")
plt.axhline(e_rtn, color="gray", ls="--", label="RTN")
plt.xlabel("α"), plt.ylabel("output error"), plt.title(f"AWQ scale search, {BITS}-bit")
plt.legend(), plt.tight_layout(), plt.show()
print(f"best α = {best_alpha:.2f}: error {min(errors):.4f} (RTN {e_rtn:.4f})")
assert abs(errors[0] - e_rtn) < 1e-6 * max(1.0, e_rtn) and min(errors) < e_rtn
assert len(curve) == 20 and alphas[0] == 0 and max(alphas) < 1   # a grid of 20 points in [0, 1)

# %% [markdown]
# ## 3. Clipping
#
# Min-max grids waste levels on the few largest weights of a group. After scaling, AWQ shrinks
# each group's range where that lowers the group's share of the output error.

# %%
Ws, Hs = W * s, H / s[:, None] / s[None, :]  # the weight and input statistics after scaling
ratio = awq_search_clip(Ws, Hs, BITS, GROUP)
q_noclip, s1 = awq_quantize(W, [X], BITS, GROUP, clip=False)
q_clip, s2 = awq_quantize(W, [X], BITS, GROUP, clip=True)
e_noclip, e_clip = err(q_noclip.dequantize() / s1), err(q_clip.dequantize() / s2)
shrunk = (ratio < 1).float().mean().item()  # ratio [128 rows, 4 groups]: chosen range / min-max range
print(f"groups shrunk {shrunk:.0%}, mean range ratio {ratio.mean():.3f}   "
      f"error: scaled {e_noclip:.4f}, scaled + clipped {e_clip:.4f}")
assert shrunk > 0.5 and e_clip <= e_noclip and e_clip < e_rtn

# %% [markdown]
# ## 4. RTN, GPTQ and AWQ on whole models
#
# `quantize_model(model, "awq", ...)` searches s per layer on inputs captured in the model
# quantized so far; layers fed the same tensor (MiniLM's query, key and value) share one s. By
# default it then folds each s into the op before, where that is exact (section 5). Here we keep
# MiniLM's AWQ model with every s explicit (`fold=False`) to fold it by hand in section 5.

# %%
def tinygpt_ppl(method, bits):
    opts = {} if method == "rtn" else dict(calibration=calib)
    if method == "gptq":
        opts.update(act_order=True, static_groups=True)
    m = quantize_model(copy.deepcopy(gpt), method, bits=bits, group_size=128, progress=False, **opts)
    return perplexity(m, corpus, "val", max_windows=32)


minilm = load_minilm(device="cpu")
batches = calibration_batches(minilm, text_sentences("calib", 128, seed=0))  # 4 batches of 32, by length
held = text_sentences("heldout", 128, seed=0)
ref = embed(minilm, held)  # [128, 384] unit-length embeddings


def minilm_scores(method):
    opts = {} if method == "rtn" else dict(calibration=batches, forward=forward)
    if method == "gptq":
        opts.update(act_order=True, static_groups=True)
    if method == "awq":
        opts.update(fold=False)
    m = quantize_model(copy.deepcopy(minilm), method, bits=4, group_size=128, progress=False, **opts)
    e = embed(m, held)
    return mean_cosine(ref, e), nn_agreement(ref, e), m


table, minilm_models = {}, {}
for method in ("rtn", "gptq", "awq"):
    cos, nn_agree, minilm_models[method] = minilm_scores(method)
    table[method] = dict(ppl3=tinygpt_ppl(method, 3), cos=cos, nn=nn_agree)
print(f"float TinyGPT perplexity {perplexity(gpt, corpus, 'val', max_windows=32):.3f}")
print(f"{'method':>6} {'TinyGPT ppl 3-bit g128':>23} {'MiniLM cos INT4 g128':>21} {'NN agreement':>13}")
for method, r in table.items():
    print(f"{method:>6} {r['ppl3']:>23.3f} {r['cos']:>21.4f} {r['nn']:>13.2%}")
for method in ("gptq", "awq"):
    assert table[method]["ppl3"] < table["rtn"]["ppl3"] and table[method]["cos"] > table["rtn"]["cos"]
assert table["awq"]["cos"] > 0.97 and table["gptq"]["cos"] > 0.98
awq_layers = dict(minilm_models["awq"].named_modules())   # every s explicit (fold=False)
blocks = [name for name in awq_layers if re.fullmatch(r".*encoder\.layer\.\d+", name)]
qkv_s = [[awq_layers[f"{b}.attention.self.{p}"].input_scale for p in ("query", "key", "value")] for b in blocks]
assert len(blocks) == 6 and all(torch.equal(q, k) and torch.equal(q, v) for q, k, v in qkv_s)
print(f"MiniLM AWQ: query, key and value share one s in each of its {len(blocks)} layers")

# %% [markdown]
# ## 5. Where the scale goes: folding
#
# An `AWQLinear` divides its input by s at every call. That division is free if the op that
# computes the input absorbs it: a LayerNorm y = norm(x)·w + b gives y / s with w / s and b / s; a
# linear gives y / s with its output rows divided by s (for a quantized one, its row scales, since
# Ŵ = (codes − zero)·scale). Attention mixes value rows channel by channel, so the value
# projection's rows can take the attention output projection's s. `fold_awq_scales` finds each
# layer's producer with forward hooks and tries the fold; since a hook cannot see whether the same
# tensor also feeds a residual connection, it keeps a fold only if the model's output does not
# change on a few calibration examples (a wrong fold changes almost every output, so 4 examples
# show it at a fraction of a batch's cost). `quantize_model(..., "awq")` does this by default.

# %%
explicit = quantize_model(copy.deepcopy(gpt), "awq", bits=4, group_size=128, calibration=calib,
                          progress=False, fold=False)
folded = copy.deepcopy(explicit)
report = fold_awq_scales(folded, calib)
for name, into in list(report.items())[:4]:
    print(f"{name:28} → {into or 'kept explicit x / s'}")
x_val = corpus.get_batch("val", 4, 128, torch.Generator().manual_seed(1))[0]
with torch.no_grad():
    a, b = explicit(x_val)[0], folded(x_val)[0]
rel = ((a - b).abs().max() / a.abs().max()).item()
print(f"TinyGPT: {sum(map(bool, report.values()))}/{len(report)} scales folded; "
      f"output change {rel:.1e} (relative)")
assert rel < 1e-5 and report["transformer.h.0.attn.c_attn"] == "transformer.h.0.ln_1"
assert report["transformer.h.0.mlp.c_fc"] == "transformer.h.0.ln_2"

# %% [markdown]
# MiniLM is a post-LN BERT: x = LayerNorm(x + sublayer(x)), and that LayerNorm's output feeds the
# next query, key and value *and* the residual. Dividing it by s would divide the residual too, so
# the fold is refused there; only value → attention output folds. Below we force one refused fold
# by hand to see that it changes the model: the folds that were kept moved the embeddings by less
# than 1e-4, this one (a single layer) moves them visibly, an error added on top of quantization.

# %%
minilm_q = minilm_models["awq"]  # the AWQ MiniLM of section 4, every s explicit
minilm_folded = copy.deepcopy(minilm_q)
mreport = fold_awq_scales(minilm_folded, batches, forward=forward)
L = "0.model.encoder.layer"
for name, into in mreport.items():
    if name.startswith(f"{L}.1."):
        print(f"{name:45} → {into or 'kept explicit x / s'}")
e_explicit, e_folded = embed(minilm_q, held), embed(minilm_folded, held)
print(f"MiniLM: {sum(map(bool, mreport.values()))}/{len(mreport)} scales folded; "
      f"embeddings change {(e_explicit - e_folded).abs().max():.1e}")
assert (e_explicit - e_folded).abs().max() < 1e-4
assert mreport[f"{L}.1.attention.output.dense"] == f"{L}.1.attention.self.value[0:384]"
assert mreport[f"{L}.1.attention.self.query"] is None  # post-LN: refused
folded = [name for name, into in mreport.items() if into]
assert folded and all(name.endswith("attention.output.dense") for name in folded), folded  # only value → output

forced = copy.deepcopy(minilm_q)  # fold layer 1's q/k/v scale into layer 0's output LayerNorm anyway
ln, att = forced.get_submodule(f"{L}.0.output.LayerNorm"), forced.get_submodule(f"{L}.1.attention.self")
s_qkv = att.query.input_scale.clone()
with torch.no_grad():
    ln.weight /= s_qkv
    ln.bias /= s_qkv
    for proj in (att.query, att.key, att.value):
        proj.input_scale.fill_(1.0)
e_forced = embed(forced, held)
cos_forced = mean_cosine(e_explicit, e_forced)
moved = ((e_forced - e_explicit).abs().amax(dim=1) > 1e-4).float().mean().item()  # per sentence
print(f"forced post-LN fold: cosine to the correct model {cos_forced:.4f}; "
      f"{moved:.0%} of the {len(held)} sentences moved by more than 1e-4")
assert cos_forced < 0.999 and moved > 0.9  # a wrong fold shows on almost every input

# %% [markdown]
# ## Summary
#
# * A few input channels carry larger activations, and the weights they meet matter most.
#   Keeping the top 1 % of columns by activation in float lowered the output error most, but
#   mixed precision is awkward for kernels.
# * AWQ gets the effect with one number per channel: y = (x / s)(W s)ᵀ, with s = s_xᵅ and α
#   searched on a grid of 20 points in [0, 1). The search includes α = 0, plain RTN, so it can
#   only do as well or better, and on this layer it did better. Clipping, after scaling,
#   shrank most groups' ranges and did not raise the error.
# * On whole models, AWQ beat RTN on both TinyGPT and MiniLM. Layers fed the same tensor (q, k, v)
#   share one s.
# * The division by s is free where the op before can absorb it: a LayerNorm's weight and bias,
#   or the value projection's rows for the attention output. `fold_awq_scales` keeps a fold only
#   if the model's output does not change. In a post-LN BERT like MiniLM most folds are
#   refused, and forcing one changed almost every embedding.
#
# Exercise 08 asks you to write the scale search for one layer yourself (`awq_scale_search`).
#
# Next: lesson 09 stores these codes in real bytes, two per byte, and runs them in kernels that
# never expand the weight.
