"""Checkers for lesson 11 ("A real pretrained model: all-MiniLM-L6-v2"):

    mean_pool(tokens, attention_mask)
        tokens [B, T, dim], attention_mask [B, T] (1 real token, 0 padding) -> [B, dim]: the
        mean of each sentence's real tokens, scaled to unit length.
    nearest_neighbours(emb)
        emb [N, dim] -> [N] int64: each row's most cosine-similar *other* row.

The pooling cases pad sentences of different lengths and leave numbers in the padded places, so
that averaging the padding, taking the first token, scaling each token instead of the mean, or
skipping the final scaling each fail somewhere. (Dividing by the padded length T instead of the
count of real tokens is *not* a mistake here: the final scaling to unit length undoes any
positive factor per sentence.)
The by-hand pooling case has B = dim = 2, where a count or a norm of shape [B] (keepdim
forgotten) broadcasts without an error, so its report can name that mistake.
The neighbour cases use rows of different lengths and a row whose every other row points away
from it, so that a dot product, a zero on the diagonal, or no exclusion at all each fail; two
rows pointing in exactly opposite ways (cosine −1, so a −1 on the diagonal ties with the other
row); and two rows of the same direction (cosine 1, a tie with the row itself, so taking the
second of a sort can return the row itself).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minicomp.checkers._common import exactly_as
from minicomp.grading import Case, Mistake, register
from minicomp.sentence import mean_pool, nearest_neighbours

# ── mean_pool ────────────────────────────────────────────────────────────────────────────────


def _padded(lengths, dim: int, seed: int, mask_dtype=torch.int64):
    """tokens [B, T, dim] with garbage in the padded places (as a real encoder leaves), and the mask."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    tokens = torch.randn(len(lengths), T, dim, generator=g)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).to(mask_dtype)  # [B, T]
    return tokens, mask


def _pool_cases():
    by_hand = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [9.0, 9.0]],   # 2 real tokens: mean (2, 2) → (0.71, 0.71)
                            [[0.0, 2.0], [5.0, 5.0], [7.0, -1.0]]])  # 1 real token: (0, 2) → (0, 1)
    return [
        Case("by hand: 2 sentences of 2 and 1 real tokens in 3 places (expected [[0.7071, 0.7071], [0, 1]])",
             (by_hand, torch.tensor([[1, 1, 0], [1, 0, 0]]))),
        Case("no padding at all: 3 sentences of 4 tokens", _padded([4, 4, 4], 5, seed=1)),
        Case("a padded batch as a tokenizer gives it: lengths 7, 3, 5, 1", _padded([7, 3, 5, 1], 16, seed=2)),
        Case("the mask as booleans", _padded([2, 6, 4], 8, seed=3, mask_dtype=torch.bool)),
        Case("the mask as floats", _padded([5, 2], 8, seed=4, mask_dtype=torch.float32)),
        Case("one sentence", _padded([3], 384, seed=5)),
    ]


def _all_tokens(tokens, mask):
    """(a mistake) The padding is averaged in."""
    return F.normalize(tokens.mean(1), dim=1)


def _not_normalized(tokens, mask):
    """(a mistake) The right mean, left at its own length."""
    m = mask[..., None].to(tokens.dtype)
    return (tokens * m).sum(1) / m.sum(1)


def _sum_to_one(tokens, mask):
    """(a mistake) Scaled so that its entries sum to 1 (L1, signed), not to unit length."""
    v = _not_normalized(tokens, mask)
    return v / v.sum(1, keepdim=True)


def _first_token(tokens, mask):
    """(a mistake) BERT's [CLS] vector instead of the mean."""
    return F.normalize(tokens[:, 0], dim=1)


def _masked_mean_not_normalized(tokens, mask):
    """(a mistake) The padding zeroed, then .mean(1), and no scaling: divided by T, not the count."""
    return (tokens * mask[..., None].to(tokens.dtype)).mean(1)


def _norm_of_batch(tokens, mask):
    """(a mistake) The right mean divided by the length of the whole [B, dim] matrix."""
    v = _not_normalized(tokens, mask)
    return v / v.norm()


def _norm_without_keepdim(tokens, mask):
    """(a mistake) v / v.norm(dim=1): [B, dim] / [B] lines the lengths up with the columns."""
    v = _not_normalized(tokens, mask)
    return v / v.norm(dim=1)


def _count_without_keepdim(tokens, mask):
    """(a mistake) The sum [B, dim] divided by the counts [B]: lined up with the columns."""
    m = mask.to(tokens.dtype)
    return F.normalize((tokens * m[..., None]).sum(1) / m.sum(1), dim=1)


def _normalized_over_batch(tokens, mask):
    """(a mistake) F.normalize(..., dim=0): each feature, not each sentence, scaled to length 1."""
    return F.normalize(_not_normalized(tokens, mask), dim=0)


def _tokens_normalized(tokens, mask):
    """(a mistake) Each token scaled to length 1, then averaged: the mean is shorter than 1."""
    m = mask[..., None].to(tokens.dtype)
    return (F.normalize(tokens, dim=2) * m).sum(1) / m.sum(1)


register(
    "mean_pool",
    params=("tokens", "attention_mask"),
    reference=mean_pool,
    cases=_pool_cases,
    mistakes=[
        Mistake("the padding averaged in", _all_tokens,
                "tokens.mean(1) counts the padded places too, and the encoder leaves numbers there: multiply "
                "by the mask (mask[..., None]) before summing, and divide by the number of real tokens."),
        Mistake("not scaled to unit length", _not_normalized,
                "The mean is right; scale each sentence's vector to length 1 at the end, as the model's "
                "Normalize module does: torch.nn.functional.normalize(pooled, dim=1)."),
        Mistake("scaled to sum 1 instead of to unit length", _sum_to_one,
                "Unit length means the Euclidean (L2) norm is 1: divide by v.norm(dim=1, keepdim=True), or "
                "use F.normalize(v, dim=1); dividing by the sum makes the entries add up to 1 instead."),
        Mistake("the first token ([CLS]) instead of the mean", _first_token,
                "all-MiniLM-L6-v2 pools by the mean of the real tokens, not by BERT's first ([CLS]) token."),
        Mistake("each token scaled to unit length before the mean", _tokens_normalized,
                "Average the tokens as they are, then scale the *mean* to length 1; scaling each token "
                "first weighs them differently, and the mean of unit vectors is shorter than 1."),
        Mistake("the padding zeroed, then .mean(1), not scaled", _masked_mean_not_normalized,
                "Scale each sentence's vector to length 1 at the end: F.normalize(pooled, dim=1). (Then "
                ".mean(1), which divides by the padded length T rather than the number of real tokens, "
                "does no harm: the scaling undoes any factor.)"),
        Mistake("divided by the length of the whole batch", _norm_of_batch,
                "v.norm() without dim is the length of the whole [B, dim] matrix; each sentence is scaled by "
                "its own length: v / v.norm(dim=1, keepdim=True), or F.normalize(v, dim=1)."),
        Mistake("the lengths without keepdim=True", _norm_without_keepdim,
                "v.norm(dim=1) has shape [B], not [B, 1]: dividing [B, dim] by it lines the lengths up with "
                "the columns, not the rows (or fails, when B ≠ dim). Use v.norm(dim=1, keepdim=True)."),
        Mistake("the counts without keepdim=True", _count_without_keepdim,
                "mask.sum(1) has shape [B], not [B, 1]: dividing the [B, dim] sums by it lines the counts up "
                "with the columns, not the rows (or fails, when B ≠ dim). Use mask.sum(1, keepdim=True)."),
        Mistake("scaled to unit length over the batch (dim=0)", _normalized_over_batch,
                "Each sentence, a row, gets length 1: F.normalize(pooled, dim=1). dim=0 scales each "
                "feature, a column, across the sentences instead."),
    ],
    hint="Zero the padding with the mask, sum over the tokens (dim 1), divide by each sentence's "
         "count of real tokens, then normalize each row to length 1.",
)

# ── nearest_neighbours ───────────────────────────────────────────────────────────────────────


def _neighbour_cases():
    # 0 and 1 point almost the same way, 2 and 3 too; 1 and 3 are long rows
    pairs = torch.tensor([[1.0, 0.0], [9.0, 1.0], [0.0, 1.0], [1.0, 9.0]])
    # three directions 120° apart: every cosine to another row is -0.5, so the nearest is still another row
    c, s = -0.5, 3 ** 0.5 / 2
    star = torch.tensor([[1.0, 0.0], [c, s], [c, -s + 0.1]])
    # a long row that points away from row 0: a dot product picks it, the cosine does not
    lengths = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.4, 0.0], [20.0, 20.0, 5.0], [0.0, 0.0, 1.0]])
    g = torch.Generator().manual_seed(11)
    scattered = torch.randn(12, 8, generator=g) * torch.rand(12, 1, generator=g) * 5  # rows of many lengths
    # rows 0 and 1 point the same way (cosine exactly 1, as with a sentence that appears twice)
    same_way = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.1, 1.0], [0.2, 1.0]])
    return [
        Case("by hand: two pairs of close rows (expected [1, 0, 3, 2])", (pairs,)),
        Case("three rows 120° apart (each points away from the others)", (star,)),
        Case("a long row that points elsewhere", (lengths,)),
        Case("two rows", (torch.tensor([[0.3, -0.1], [2.0, 1.0]]),)),
        Case("12 random rows of many lengths in 8 dimensions", (scattered,)),
        Case("two rows pointing in opposite ways (cosine -1)", (torch.tensor([[2.0, 0.0], [-0.5, 0.0]]),)),
        Case("two rows of the same direction, of lengths 1 and 3 (cosine 1, as high as a row's own; "
             "expected [1, 0, 3, 2])", (same_way,)),
    ]


def _cosine(emb):
    e = F.normalize(emb.float(), dim=1)
    return e @ e.T


def _self_included(emb):
    """(a mistake) Each row is its own nearest neighbour."""
    return _cosine(emb).argmax(1)


def _zero_diagonal(emb):
    """(a mistake) The diagonal set to 0: right unless every other row points away."""
    sim = _cosine(emb)
    sim.fill_diagonal_(0.0)
    return sim.argmax(1)


def _dot_product(emb):
    """(a mistake) Raw dot products: long rows look similar to everything."""
    sim = emb.float() @ emb.float().T
    sim.fill_diagonal_(float("-inf"))
    return sim.argmax(1)


def _farthest(emb):
    """(a mistake) argmin: the least similar row."""
    sim = _cosine(emb)
    sim.fill_diagonal_(float("inf"))
    return sim.argmin(1)


def _diagonal_minus_one(emb):
    """(a mistake) The diagonal set to -1: ties with a row pointing the exact opposite way."""
    sim = _cosine(emb)
    sim.fill_diagonal_(-1.0)
    return sim.argmax(1)


def _second_of_sort(emb):
    """(a mistake) The second entry of a descending sort, assuming the row itself comes first."""
    return _cosine(emb).argsort(1, descending=True)[:, 1]


def _second_of_topk(emb):
    """(a mistake) The same with topk(2), which on a tie of 1s may order them the other way."""
    return _cosine(emb).topk(2, dim=1).indices[:, 1]


_RUNNER_UP = "the runner-up of a sort or of topk(2) (the row itself assumed to come first)"
_RUNNER_UP_HINT = ("A row's cosine with itself is 1, but another row can tie with it (the same sentence twice, "
                   "or the same direction at another length), and then the row itself may come second. "
                   "Rule the diagonal out with -inf, then take argmax(1).")


def _euclidean(emb):
    """(a mistake) The closest row by Euclidean distance, without normalizing."""
    d = torch.cdist(emb.float(), emb.float())
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)


# argmax returns int64, as the exercise asks; a wrong answer is told by its values first (the
# known mistakes are told apart by them), a right one in another dtype by its dtype
_int64_indices = exactly_as(torch.int64, "the indices argmax returns",
                            "return argmax's result as it is (no .int()), or finish with .long()", values_first=True)


register(
    "nearest_neighbours",
    params=("emb",),
    reference=nearest_neighbours,
    cases=_neighbour_cases,
    compare=_int64_indices,
    # the zero diagonal first: where it fails (all cosines < 0) it looks like "its own neighbour" too
    mistakes=[
        Mistake("the diagonal set to 0 instead of ruled out", _zero_diagonal,
                "When every other row points away (all cosines < 0), a 0 on the diagonal still wins: "
                "use -inf, so a row can never be its own neighbour."),
        Mistake("each row its own neighbour", _self_included,
                "A row's cosine with itself is 1, the largest there is: rule the diagonal out, "
                "e.g. sim.fill_diagonal_(float('-inf')), before the argmax."),
        Mistake("dot products instead of cosines", _dot_product,
                "Normalize the rows first (F.normalize(emb, dim=1)): a raw dot product favours long rows, "
                "and only the direction of an embedding counts."),
        Mistake("the least similar row (argmin)", _farthest,
                "The nearest neighbour has the *largest* cosine: argmax over each row of the similarity matrix."),
        Mistake("Euclidean distance between rows of different lengths", _euclidean,
                "Distances between unnormalized rows mix length with direction; normalize the rows first "
                "(then the closest row by distance and by cosine are the same)."),
        Mistake("the diagonal set to -1", _diagonal_minus_one,
                "-1 is the smallest cosine there is, but another row can reach it too (one pointing the "
                "exact opposite way), and on a tie argmax takes the first index, maybe the row itself: "
                "use -inf, which nothing else can equal."),
        Mistake(_RUNNER_UP, _second_of_sort, _RUNNER_UP_HINT),
        Mistake(_RUNNER_UP, _second_of_topk, _RUNNER_UP_HINT),
    ],
    hint="Normalize the rows, take sim = e @ e.T ([N, N] cosines), rule out the diagonal with -inf, "
         "then sim.argmax(1).",
)
