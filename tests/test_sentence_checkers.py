"""The lesson-11 checkers (mean_pool, nearest_neighbours), beyond what tests/test_checkers.py proves
for every checker: right answers written in other ways pass, wrong ones that are not registered
are rejected, and a wrong answer is told the mistake it made, not another one."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minicomp.grading import check

pytestmark = pytest.mark.usefixtures("one_thread")   # (conftest.py)


# ── mean_pool ────────────────────────────────────────────────────────────────────────────────
def pooled(tokens, mask):
    """The right mean over the real tokens, not yet scaled."""
    m = mask[..., None].to(tokens.dtype)
    return (tokens * m).sum(1) / m.sum(1)


def pool_loop(tokens, mask):
    return torch.stack([F.normalize(tokens[b][mask[b].bool()].mean(0), dim=0) for b in range(len(tokens))])


def pool_numpy(tokens, mask):
    v = (tokens.numpy() * mask.numpy()[..., None]).sum(1)    # no division: the scaling undoes it
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pool_like_sentence_transformers(tokens, mask):
    m = mask.unsqueeze(-1).expand(tokens.size()).float()
    v = torch.sum(tokens * m, 1) / torch.clamp(m.sum(1), min=1e-9)
    return F.normalize(v, p=2, dim=1)


# ── nearest_neighbours ───────────────────────────────────────────────────────────────────────
def cosines(emb):
    e = F.normalize(emb, dim=1)
    return e @ e.T


def nn_numpy(emb):
    a = emb.numpy() / np.linalg.norm(emb.numpy(), axis=1, keepdims=True)
    s = a @ a.T
    np.fill_diagonal(s, -np.inf)
    return s.argmax(1)


def nn_loop(emb):
    out = []
    for i in range(len(emb)):
        others = [(F.cosine_similarity(emb[i], emb[j], dim=0).item(), j) for j in range(len(emb)) if j != i]
        out.append(max(others, key=lambda cj: (cj[0], -cj[1]))[1])   # the first index on a tie, as argmax
    return torch.tensor(out)


def nn_below_any_cosine(emb):
    s = cosines(emb) - 3 * torch.eye(len(emb))   # every cosine is >= -1, so -2 or less never wins
    return s.argmax(1)


def nn_distance_of_unit_rows(emb):
    e = F.normalize(emb, dim=1)
    d = torch.cdist(e, e)
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)


RIGHT = [
    ("mean_pool", pool_loop),
    ("mean_pool", pool_numpy),
    ("mean_pool", pool_like_sentence_transformers),
    ("mean_pool", lambda tokens, mask: F.normalize(torch.einsum("btd,bt->bd", tokens, mask.to(tokens.dtype)), dim=-1)),
    ("mean_pool", lambda tokens, mask: F.normalize(tokens.masked_fill(~mask.bool()[..., None], 0).sum(1).double(), dim=1)),
    ("nearest_neighbours", nn_numpy),
    ("nearest_neighbours", nn_loop),
    ("nearest_neighbours", nn_below_any_cosine),
    ("nearest_neighbours", nn_distance_of_unit_rows),
    ("nearest_neighbours", lambda emb: cosines(emb).masked_fill(torch.eye(len(emb), dtype=torch.bool), -torch.inf).argmax(0)),
]


@pytest.mark.parametrize("name, fn", RIGHT, ids=[f"{n}-{i}" for i, (n, _) in enumerate(RIGHT)])
def test_other_right_answers_pass(name, fn):
    report = check(name, fn)
    assert report.passed, str(report)


def nn_diagonal_minus_one(emb):
    s = cosines(emb)
    s.fill_diagonal_(-1.0)
    return s.argmax(1)


WRONG = [
    ("mean_pool", "max pooling", lambda tokens, mask: F.normalize(tokens.masked_fill(~mask.bool()[..., None], -1e9).amax(1), dim=1)),
    ("mean_pool", "the mask inverted", lambda tokens, mask: F.normalize((tokens * (1 - mask.float())[..., None]).sum(1), dim=1)),
    ("mean_pool", "L1 instead of L2 scaling", lambda tokens, mask: F.normalize(pooled(tokens, mask), p=1, dim=1)),
    ("mean_pool", "the last real token", lambda tokens, mask: F.normalize(tokens[torch.arange(len(tokens)), mask.long().sum(1) - 1], dim=1)),
    ("nearest_neighbours", "the diagonal set to -1", nn_diagonal_minus_one),
    ("nearest_neighbours", "the second of an ascending sort", lambda emb: cosines(emb).argsort(1)[:, -2]),
    ("nearest_neighbours", "the second of a stable descending sort",
     lambda emb: cosines(emb).sort(dim=1, descending=True, stable=True).indices[:, 1]),
]


@pytest.mark.parametrize("name, what, fn", WRONG, ids=[f"{n}-{w.replace(' ', '-')}" for n, w, _ in WRONG])
def test_unregistered_wrong_answers_are_rejected(name, what, fn):
    report = check(name, fn)
    assert report.status == "failed", f"{what} was accepted"
    assert report.hint and "Traceback" not in str(report)


NAMED = [
    ("mean_pool", "(tokens · mask).mean(1), not scaled", lambda tokens, mask: (tokens * mask[..., None]).mean(1),
     "not scaled"),
    ("mean_pool", "v / v.norm(): the whole batch's length", lambda tokens, mask: pooled(tokens, mask) / pooled(tokens, mask).norm(),
     "the whole batch"),
    ("mean_pool", "torch.linalg.norm(v, dim=1) without keepdim",
     lambda tokens, mask: pooled(tokens, mask) / torch.linalg.norm(pooled(tokens, mask), dim=1), "the lengths without keepdim"),
    ("mean_pool", "mask.sum(1) without keepdim",
     lambda tokens, mask: F.normalize((tokens * mask[..., None]).sum(1) / mask.sum(1), dim=1), "the counts without keepdim"),
    ("mean_pool", "F.normalize(v, dim=0)", lambda tokens, mask: F.normalize(pooled(tokens, mask), dim=0), "dim=0"),
    ("nearest_neighbours", "-1 on the diagonal (two opposite rows tie with it)", nn_diagonal_minus_one,
     "the diagonal set to -1"),
    ("nearest_neighbours", "the second of a descending sort (two parallel rows tie with the row itself)",
     lambda emb: cosines(emb).sort(dim=1, descending=True).indices[:, 1], "the runner-up"),
    ("nearest_neighbours", "the second of topk(2)", lambda emb: cosines(emb).topk(2).indices[:, 1], "the runner-up"),
]


@pytest.mark.parametrize("name, what, fn, named", NAMED, ids=[f"{n}-{w.replace(' ', '-')}" for n, w, _, _ in NAMED])
def test_report_names_the_mistake_made(name, what, fn, named):
    report = check(name, fn)
    assert report.status == "failed", f"{what} was accepted"
    assert report.hint.startswith("this looks like") and named in report.hint, f"{what}: {report.hint}"


@pytest.mark.parametrize("fn", [
    lambda emb: nn_below_any_cosine(emb).int(),
    lambda emb: nn_numpy(emb).astype(np.int32),
], ids=["torch-int32", "numpy-int32"])
def test_nearest_neighbours_in_int32_is_refused_naming_int64(fn):
    """The right indices as int32 passed, though the exercise asks for int64."""
    report = check("nearest_neighbours", fn)
    assert not report.passed and "expected dtype torch.int64" in str(report) and "torch.int32" in str(report)
