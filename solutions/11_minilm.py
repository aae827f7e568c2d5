# %% [markdown]
# # Exercise 11: from token vectors to a sentence embedding, and its nearest neighbour
#
# Lesson 11 scored compressed versions of all-MiniLM-L6-v2 by two numbers: the cosine to the
# original embeddings and the **nearest-neighbour agreement**. Here you write the two pieces
# underneath them.
#
# A sentence-embedding model runs in three steps:
#
# 1. the BERT encoder gives one 384-d vector per token, `tokens [B, T, 384]`, for a batch of B
#    sentences padded to the longest one's T tokens;
# 2. **mean pooling** averages each sentence's vectors over its *real* tokens: `attention_mask
#    [B, T]` is 1 for a real token and 0 for padding;
# 3. the mean is scaled to length 1.
#
# A search index then answers a query with the sentence whose embedding is most similar: its
# **nearest neighbour** by cosine.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from minicomp.grading import check

# %% [markdown]
# ## Your task 1: mean pooling
#
# Write `mean_pool(tokens, attention_mask)`: `tokens [B, T, dim]` (float) and `attention_mask
# [B, T]` (1 or `True` for a real token, 0 for padding; int, bool or float). Return the
# sentence embeddings `[B, dim]`: for each sentence b, the sum of `tokens[b, t]` over its real
# tokens divided by their number, then scaled to unit length. Every sentence has at least one
# real token.
#
# Example: one sentence with tokens `(1, 0)`, `(3, 4)` and a padded place holding `(9, 9)`
# (mask `1, 1, 0`): the mean is `(2, 2)`, so the answer is `(0.7071, 0.7071)`. The padded place
# holds numbers, as a real encoder's output does: they must not count.
#
# `torch.nn.functional.normalize(v, dim=1)` scales each row of v to length 1.

# %%
def mean_pool(tokens, attention_mask):
    """[B, dim] unit-length mean of each sentence's real tokens; tokens [B, T, dim], attention_mask [B, T]."""
    ### BEGIN SOLUTION
    mask = attention_mask.to(tokens.dtype).unsqueeze(-1)  # [B, T, 1]
    mean = (tokens * mask).sum(1) / mask.sum(1)           # [B, dim]
    return F.normalize(mean, dim=1)
    ### END SOLUTION


# %%
check("mean_pool", mean_pool)

# %% [markdown]
# ## Your task 2: nearest neighbours
#
# Write `nearest_neighbours(emb)`: `emb [N, dim]` holds N ≥ 2 embeddings, not necessarily of unit
# length. Return an int64 tensor `[N]` whose entry i is the index of the row with the **largest
# cosine** to row i, among the *other* rows (a sentence is not its own neighbour, even when every
# other row points away from it).
#
# Example: rows `(1, 0)`, `(9, 1)`, `(0, 1)`, `(1, 9)`: rows 0 and 1 point almost the same way,
# as do 2 and 3, so the answer is `[1, 0, 3, 2]`. Row 1 is long, but only directions count.

# %%
def nearest_neighbours(emb):
    """[N] int64: for each row of emb [N, dim], the index of the most cosine-similar other row."""
    ### BEGIN SOLUTION
    e = F.normalize(emb.float(), dim=1)
    sim = e @ e.T                          # [N, N] cosines
    sim.fill_diagonal_(float("-inf"))      # never the row itself
    return sim.argmax(1)
    ### END SOLUTION


# %%
check("nearest_neighbours", nearest_neighbours)

# %% [markdown]
# ## Using it: what the padding does to a search
#
# From here on the notebook uses the library's `minicomp.sentence.mean_pool` and
# `nearest_neighbours`, so it runs to the end whether or not your functions are finished.
#
# First, the claim behind task 1: mean pooling over the real tokens, then scaling, **is** the
# model's sentence embedding. We run the bundled all-MiniLM-L6-v2 (no download) on 64 held-out
# sentences of Python's documentation as *one* padded batch, pool its token vectors ourselves,
# and compare with the model's own `encode`.

# %%
from minicomp.data import text_sentences
from minicomp.models import load_minilm
from minicomp.sentence import embed, mean_pool, nearest_neighbours, nn_agreement, token_embeddings

model = load_minilm(None, device="cpu")
sentences = text_sentences("heldout", 64, seed=0)
tokens, mask = token_embeddings(model, sentences)   # [64, T, 384], [64, T]
pooled = mean_pool(tokens, mask)                    # [64, 384]
ref = embed(model, sentences)                       # the model's own embeddings
real = mask.sum(1)                                  # real tokens per sentence
print(f"tokens {tuple(tokens.shape)}: sentences of {real.min()} to {real.max()} tokens, padded to {mask.shape[1]}")
print(f"largest difference from the model's embeddings: {(pooled - ref).abs().max():.1e}")
assert (pooled - ref).abs().max() < 1e-5

# %% [markdown]
# Now the mistake task 1 warns about: `tokens.mean(1)` averages the padded places too. In a batch
# the short sentences are mostly padding, so their embeddings move the most. The longest one has
# no padding and does not move at all.

# %%
careless = F.normalize(tokens.mean(1), dim=1)        # the padding averaged in
cos = (careless * pooled).sum(1)                     # [64] cosine to the right embedding
padding = 1 - real / mask.shape[1]                   # share of each sentence that is padding
longest = int(real.argmax())
print(f"cosine to the right embedding: {cos.min():.3f} (most padded, {padding.max():.0%} padding) "
      f"to {cos[longest]:.4f} (no padding); mean {cos.mean():.3f}")

plt.figure(figsize=(5, 3))
plt.scatter(padding, cos, s=12)
plt.gca().set(xlabel="share of the sentence's batch row that is padding",
              ylabel="cosine to the right embedding", title="averaging the padding in")
plt.show()

# %% [markdown]
# Claims: the unpadded sentence keeps its embedding; the more padding, the further a sentence
# moves (the most padded one moves the most, to a cosine below 0.8).

# %%
assert cos[longest] > 0.9999
assert int(cos.argmin()) == int(padding.argmax()) and cos.min() < 0.8
assert torch.corrcoef(torch.stack([padding, cos]))[0, 1] < -0.5
print(f"checked: correlation of padding and cosine {torch.corrcoef(torch.stack([padding, cos]))[0, 1]:.2f}")

# %% [markdown]
# Worse, the careless embedding of a sentence depends on **which other sentences share its
# batch**: alone, the first sentence has no padding; in the batch it has some. The right pooling
# gives the same vector either way.

# %%
alone_tokens, alone_mask = token_embeddings(model, sentences[:1])   # [1, T0, 384]
right_moved = (mean_pool(alone_tokens, alone_mask)[0] - pooled[0]).abs().max()
careless_cos = float(F.normalize(alone_tokens.mean(1), dim=1)[0] @ careless[0])
print(f"sentence 0 alone vs in the batch: right pooling moves it by {right_moved:.1e}; "
      f"careless pooling to a cosine of {careless_cos:.3f}")
assert right_moved < 1e-5 and careless_cos < 0.95

# %% [markdown]
# Last, what a search notices (task 2). Each sentence's nearest neighbour is the top hit it would
# get as a query. Here are three, and then the share of top hits the careless pooling keeps.

# %%
hits = nearest_neighbours(pooled)
for i in range(3):
    print(f"{sentences[i][:70]!r}\n   → {sentences[int(hits[i])][:70]!r}")
kept = nn_agreement(pooled, careless)
print(f"\nthe careless pooling keeps {kept:.0%} of the {len(sentences)} top hits")
assert kept < 0.8
assert nn_agreement(pooled, ref) == 1.0

# %% [markdown]
# One line of masking is the difference between a working search and one that changes its
# answers with the batch size. Lesson 11 uses this `nearest_neighbours` (inside `nn_agreement`)
# to score the quantized and distilled models.
