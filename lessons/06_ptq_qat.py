# %% [markdown]
# # 06 · Post-training quantization and quantization-aware training
#
# Lessons 04 and 05 quantized single tensors. Now whole models:
#
# * **PTQ** (post-training quantization) takes a trained model and quantizes it, with no
#   training. The simplest PTQ method is **RTN**, round-to-nearest: per group, min-max scale and
#   zero point, round every weight. Every smarter method (GPTQ, AWQ: lessons 07 and 08) is
#   measured against it.
# * **Activations** can be quantized too (W8A8): *dynamically*, with a range computed from each
#   input as it arrives, or *statically*, with one range fixed in advance from calibration data
#   by an **observer**.
# * **QAT** (quantization-aware training) fine-tunes the model *through* the rounding, so that it
#   learns weights that survive it.
#
# Two models: the digits MLP (85k parameters, 99.4 % test accuracy) and TinyGPT, a 4-layer
# character-level transformer trained on Python's documentation (822k parameters, judged by
# perplexity: lower is better). The code is in `minicomp/rtn.py` and `minicomp/calibrate.py`.

# %%
import copy
import time

import torch
import matplotlib.pyplot as plt

from minicomp.calibrate import observe_inputs, find_linears, quantize_model, storage_bytes
from minicomp.data import CharCorpus, load_digits
from minicomp.hardware import human_bytes, model_bytes
from minicomp.models import accuracy, load_pretrained, perplexity
from minicomp.rtn import QuantLinear, convert_qat, prepare_qat
from tqdm.auto import tqdm

digits = load_digits()
mlp = load_pretrained("digits_mlp_teacher")
gpt = load_pretrained("tinygpt")
corpus = CharCorpus()
WINDOWS = 32  # perplexity on 32 windows of 128 characters of the validation split


def ppl(model):
    return perplexity(model, corpus, "val", max_windows=WINDOWS)


float_acc = accuracy(mlp, digits.x_test, digits.y_test)
float_ppl = ppl(gpt)
print(f"float digits MLP: test accuracy {float_acc:.2%}    float TinyGPT: perplexity {float_ppl:.3f}")
n_mlp, n_gpt = (sum(p.numel() for p in m.parameters()) for m in (mlp, gpt))
print(f"parameters: MLP {n_mlp:,}, TinyGPT {n_gpt:,}")
assert round(n_mlp, -3) == 85_000 and round(n_gpt, -3) == 822_000 and abs(float_acc - 0.994) < 0.005  # as said above

# %% [markdown]
# ## 1. Weight-only RTN: how many bits does a model need?
#
# `quantize_model` finds the `nn.Linear` layers, RTN-quantizes each weight into a
# `QuantizedWeight`, and swaps in a `QuantLinear` in place. Activations stay in float: this is
# W8A16, W4A16, ... The MLP's layers have 64 and 256 inputs, so they get one group per row
# (`group_size=-1`); TinyGPT's have 128 and 512, so they get groups of 128. TinyGPT's output
# layer shares its matrix with the token embedding and is left in float (`find_linears` skips
# tied weights).

# %%
BITS = [8, 4, 3, 2]
acc, perp, sizes = {}, {}, {}
for bits in BITS:
    q_mlp = quantize_model(copy.deepcopy(mlp), bits=bits, group_size=-1, progress=False)
    acc[bits] = accuracy(q_mlp, digits.x_test, digits.y_test)
    q_gpt = quantize_model(copy.deepcopy(gpt), bits=bits, group_size=128, progress=(bits == 8))
    perp[bits] = ppl(q_gpt)
    sizes[bits] = (storage_bytes(q_gpt), model_bytes(q_gpt))
    print(f"INT{bits}: digits accuracy {acc[bits]:.2%}   TinyGPT perplexity {perp[bits]:.3f} "
          f"({perp[bits] / float_ppl - 1:+.1%})")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(BITS, [100 * acc[b] for b in BITS], "o-")
axes[0].axhline(100 * float_acc, color="gray", ls="--", label="float32")
axes[0].set(xlabel="weight bits", ylabel="test accuracy (%)", title="digits MLP, RTN per channel")
axes[1].semilogy(BITS, [perp[b] for b in BITS], "o-", color="C1")
axes[1].axhline(float_ppl, color="gray", ls="--", label="float32")
axes[1].set(xlabel="weight bits", ylabel="perplexity", title="TinyGPT, RTN groups of 128")
for ax in axes:
    ax.invert_xaxis()
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Claims: the small classifier barely notices: down to INT2 its accuracy stays within 1 point.
# The language model is more demanding: INT8 costs nothing (within 0.5 % perplexity), INT4 a
# little (under 8 %), INT3 clearly more (under 25 %), and INT2 breaks it (perplexity more than
# doubles). Every bit removed costs more than the one before.

# %%
assert all(abs(acc[b] - float_acc) <= 0.01 for b in BITS)
assert abs(perp[8] / float_ppl - 1) < 0.005
assert perp[4] / float_ppl < 1.08
assert perp[4] < perp[3] < 1.25 * float_ppl
assert perp[2] > 2 * float_ppl
assert perp[8] - float_ppl < perp[4] - perp[8] < perp[3] - perp[4] < perp[2] - perp[3]
print("checked: MLP within 1 point to INT2; TinyGPT +<0.5% at INT8, +<8% INT4, +<25% INT3, x2+ at INT2")

# %% [markdown]
# ## 2. Measured sizes
#
# Two numbers per model. `storage_bytes` counts the codes *packed* at their bit width plus the
# scales and zero points (`QuantizedWeight.nbytes`) plus everything left in float (embeddings,
# LayerNorms, the tied output layer): what a file or a packed kernel holds. `model_bytes`
# measures the tensors in memory right now, where `QuantLinear` keeps one code per byte
# (`uint8`): packing them (lesson 09's `PackedLinear`) is what makes INT4 smaller than INT8 in
# memory too.

# %%
float_bytes = model_bytes(gpt)
print(f"{'TinyGPT':10} {'packed':>10} {'in memory':>10} {'vs float32':>11}")
print(f"{'float32':10} {human_bytes(float_bytes):>10} {human_bytes(float_bytes):>10} {1:>10.1f}x")
for bits in BITS:
    packed, in_memory = sizes[bits][0]["total"], sizes[bits][1]
    print(f"{f'INT{bits} g128':10} {human_bytes(packed):>10} {human_bytes(in_memory):>10} "
          f"{float_bytes / packed:>10.1f}x")
print(f"left in float: {human_bytes(sizes[4][0]['float'])} (token and position embeddings, LayerNorms)")

# %% [markdown]
# Claims: INT8 is more than 3× smaller than float32 and INT4 more than 5× (not 8×: scales, zero
# points and the float embeddings come on top). Unpacked in memory, INT4 takes exactly as many
# bytes as INT8.

# %%
packed = {b: sizes[b][0]["total"] for b in BITS}
assert float_bytes / packed[8] > 3 and float_bytes / packed[4] > 5
assert sizes[4][1] == sizes[8][1] == sizes[2][1]
assert packed[8] > packed[4] > packed[3] > packed[2]
print("checked: INT8 > 3x and INT4 > 5x smaller packed; in memory INT4 == INT8 until packed")

# %% [markdown]
# ## 3. Quantizing activations: dynamic against static
#
# W8A8 quantizes each linear layer's *input* to 8 bits as well, so that the matrix multiply
# could run in integers. The input's range must come from somewhere:
#
# * **dynamic**: compute min and max of every input row (token) at run time. Accurate, but every
#   layer must first find its input's range (a reduction over the input) before it can quantize
#   it, and the scale is known only at run time.
# * **static**: run a few calibration batches once, let an **observer** watch each layer's input,
#   and fix one per-tensor range for good. Nothing is left to compute at run time but the
#   rounding, but the range must suit inputs the observer never saw. Observers differ in how
#   they pick the range: `minmax` (the extremes ever seen), `moving_average` (an exponential
#   moving average of each batch's extremes, PyTorch's constant 0.01: over 4 batches, nearly the
#   first batch's),
#   `percentile` (ignore the rarest 0.01 % at each end), `mse` (the range with the least squared
#   error, lesson 04). Each is a few lines in `minicomp/observers.py`.
#
# Calibration data: 4 batches of 8 random windows of the *training* split.

# %%
gen = torch.Generator().manual_seed(0)
calibration = [corpus.get_batch("train", 8, 128, gen)[0] for _ in range(4)]  # each [8, 128]

c_proj = {"h.1.mlp.c_proj": gpt.transformer.h[1].mlp.c_proj}
ranges = {}
for kind in ("minmax", "moving_average", "percentile", "mse"):
    obs = observe_inputs(gpt, c_proj, calibration, observer=kind)
    lo, hi = ranges[kind] = [float(v) for v in obs["h.1.mlp.c_proj"].range()]
    print(f"{kind:15} range of the input of block 1's c_proj: [{lo:7.3f}, {hi:7.3f}]")
first = [float(v) for v in observe_inputs(gpt, c_proj, calibration[:1], observer="minmax")["h.1.mlp.c_proj"].range()]
drift = max(abs(a - b) / abs(b) for a, b in zip(ranges["moving_average"], first))
assert drift < 0.05, (ranges["moving_average"], first)   # "over 4 batches, nearly the first batch's"
print(f"checked: moving_average's range is within {drift:.1%} of the first batch's alone, [{first[0]:.3f}, {first[1]:.3f}]")

# %%
OBSERVERS = ["minmax", "moving_average", "percentile", "mse"]
act = {}
for act_bits in (8, 4):
    start = time.perf_counter()
    dynamic = quantize_model(copy.deepcopy(gpt), bits=8, group_size=-1, act_bits=act_bits, progress=False)
    act[act_bits, "dynamic"] = ppl(dynamic)
    for kind in OBSERVERS:
        static = quantize_model(copy.deepcopy(gpt), bits=8, group_size=-1, act_bits=act_bits,
                                act_mode="static", observer=kind, calibration=calibration, progress=False)
        act[act_bits, kind] = ppl(static)
    print(f"W8A{act_bits}: dynamic {act[act_bits, 'dynamic']:.3f} | static: " +
          ", ".join(f"{k} {act[act_bits, k]:.3f}" for k in OBSERVERS) + f"   ({time.perf_counter() - start:.0f} s)")
print(f"(float {float_ppl:.3f})")

# %% [markdown]
# Claims: at 8 bits both modes cost under 1 % perplexity, whichever observer. At 4 bits the
# choices matter: dynamic is best; among the static ranges, min-max is worst (a single extreme
# value stretches the grid for every token), percentile and MSE clipping beat it, and MSE comes
# closest to dynamic.

# %%
assert all(act[8, k] / float_ppl < 1.01 for k in ["dynamic"] + OBSERVERS)
assert act[4, "dynamic"] < min(act[4, k] for k in OBSERVERS)
assert act[4, "minmax"] == max(act[4, k] for k in OBSERVERS)   # the worst static range
assert act[4, "minmax"] > max(act[4, "percentile"], act[4, "mse"])
assert act[4, "mse"] == min(act[4, k] for k in OBSERVERS)
print("checked: W8A8 costs < 1%; at A4 dynamic beats every static range, MSE is the best static one, "
      "min-max worse than percentile and MSE")

# %% [markdown]
# ## 4. Quantization-aware training: teaching the model to live with INT2
#
# INT2 RTN broke TinyGPT. QAT fine-tunes the model with the rounding in the forward pass:
# `prepare_qat` swaps each `nn.Linear` for a `QATLinear`, whose forward uses
# `fake_quantize(W)`, exactly the weights RTN will ship. Rounding has zero gradient almost
# everywhere, so the backward pass uses the **straight-through estimator**: it treats the
# rounding as the identity, `∂Ŵ/∂W ≈ 1` (Bengio et al. 2013). The float weights keep learning
# and drift to places where their rounded versions work well together. At the end,
# `convert_qat` swaps in ordinary `QuantLinear`s.
#
# 60 steps of AdamW on batches of 16 training windows (the cell prints how long they took).

# %%
QAT_BITS, QAT_STEPS = 2, 60


def fine_tune(model, steps, seed=0, every=20):
    """AdamW on random training windows; returns [(step, perplexity)] every `every` steps."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for step in tqdm(range(1, steps + 1), desc="fine-tuning"):
        model.train()
        x, y = corpus.get_batch("train", 16, 128, gen)  # [16, 128] inputs and next-character targets
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % every == 0:
            history.append((step, ppl(model)))
    model.eval()
    return history


qat = prepare_qat(copy.deepcopy(gpt), bits=QAT_BITS, group_size=128)
before = ppl(qat)  # QATLinear's forward is RTN's output, so this is the INT2 RTN model
start = time.perf_counter()
history = fine_tune(qat, QAT_STEPS)
qat_seconds = time.perf_counter() - start
convert_qat(qat)
after = ppl(qat)
print(f"INT{QAT_BITS} g128: RTN perplexity {before:.3f} -> after {QAT_STEPS} QAT steps {after:.3f} "
      f"(float {float_ppl:.3f}); {qat_seconds:.0f} s")
print("during training:", ", ".join(f"step {s}: {p:.3f}" for s, p in history))

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([0] + [s for s, _ in history], [before] + [p for _, p in history], "o-", label=f"INT{QAT_BITS} QAT")
ax.axhline(float_ppl, color="gray", ls="--", label="float32")
ax.axhline(perp[4], color="C2", ls=":", label="INT4 RTN")
ax.set(xlabel="QAT step", ylabel="perplexity", yscale="log", title="TinyGPT: QAT recovers INT2")
ax.legend()
plt.show()

# %% [markdown]
# Is it the quantization-*aware* part, or just more training? The control: fine-tune the float
# model with the same steps, data and optimizer, *then* round it to INT2.

# %%
control = copy.deepcopy(gpt)
fine_tune(control, QAT_STEPS, every=QAT_STEPS)
control_float = ppl(control)
control_int2 = ppl(quantize_model(control, bits=QAT_BITS, group_size=128, progress=False))
print(f"fine-tuned in float: perplexity {control_float:.3f}; then INT{QAT_BITS} RTN: {control_int2:.3f} "
      f"(QAT: {after:.3f})")

# %% [markdown]
# Claims: QAT recovers most of what INT2 RTN lost: the perplexity falls by more than half, to
# within 30 % of float. The same amount of ordinary fine-tuning helps the INT2 model, but far
# less (it stays above twice QAT's perplexity): what matters is training *through* the rounding.
# After conversion the model is a plain INT2 `QuantLinear` model with the perplexity QAT reached.

# %%
assert abs(before / perp[2] - 1) < 1e-4  # the same INT2 RTN model
assert after < 0.5 * before and after < 1.3 * float_ppl
assert after < control_int2 < before and control_int2 > 2 * after   # helps, but far less
assert abs(after - history[-1][1]) < 1e-3
converted = [m for m in qat.modules() if isinstance(m, QuantLinear)]
assert len(converted) == len(find_linears(gpt)) and all(m.bits == QAT_BITS for m in converted)
print(f"checked: INT2 perplexity {before:.2f} -> {after:.2f} with QAT (float fine-tuning then RTN: {control_int2:.2f})")

# %% [markdown]
# ## 5. On a GPU
#
# Nothing above needs one. On a CUDA machine the cell below repeats the INT4 measurement there
# (the numbers match the CPU's to rounding).

# %%
if torch.cuda.is_available():
    gpu_model = quantize_model(copy.deepcopy(gpt).cuda(), bits=4, group_size=128, progress=False)
    gpu_ppl = ppl(gpu_model)
    print(f"INT4 g128 on {torch.cuda.get_device_name()}: perplexity {gpu_ppl:.3f} (CPU: {perp[4]:.3f})")
    assert abs(gpu_ppl / perp[4] - 1) < 1e-3, (gpu_ppl, perp[4])  # "to rounding"
else:
    print("No CUDA GPU here: on one, this cell would quantize TinyGPT to INT4 on the GPU and compare its perplexity with the CPU's.")

# %% [markdown]
# ## Summary
#
# * RTN is free at INT8 and cheap at INT4 (groups of 128); at INT3 and below it hurts, and a
#   language model hurts more than a small classifier.
# * Packed INT4 is more than 5× smaller than float32 here; scales, zeros and float embeddings
#   are why it is not 8×.
# * W8A8 costs little either way; at lower activation precision the range matters: dynamic
#   per-token ranges beat static ones, and a clipped static range (MSE, percentile) beats min-max.
# * QAT trains through the rounding with the straight-through estimator and rescues INT2 in
#   60 steps of training.
#
# Exercise 06 asks you to write fake quantization with its straight-through estimator yourself,
# and watches it learn on a 4-bit grid where rounding alone cannot.
#
# Next: GPTQ (lesson 07) improves on RTN with no training at all, by choosing the rounding of
# each weight to compensate for the errors of the others.
