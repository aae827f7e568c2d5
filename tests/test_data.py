"""Tests for minicomp.data: deterministic splits, shapes, and argument checking."""

import pytest
import torch

from minicomp.data import (
    VOCAB,
    CharCorpus,
    as_images,
    batches,
    few_label_split,
    load_digits,
    text_sentences,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def corpus():
    return CharCorpus()


# ---- digits ----------------------------------------------------------------------------------


def test_digits_shapes_dtypes_and_range(digits):
    d = digits
    assert d.x_train.shape[1] == d.x_val.shape[1] == d.x_test.shape[1] == 64
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 1797
    assert len(d.x_train) == len(d.y_train) and len(d.x_test) == len(d.y_test)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert 0.0 <= d.x_train.min() and d.x_train.max() == 1.0
    assert set(d.y_test.tolist()) == set(range(10))


def test_digits_split_is_stratified(digits):
    counts = torch.bincount(digits.y_test, minlength=10)
    assert counts.max() - counts.min() <= 2  # each class contributes its 20%


def test_digits_split_is_deterministic_and_seeded(digits):
    again = load_digits(seed=0)
    for a, b in zip(digits, again, strict=True):
        assert torch.equal(a, b)
    other = load_digits(seed=1)
    assert not torch.equal(digits.x_test, other.x_test)


def test_digits_splits_are_disjoint(digits):
    rows = lambda x: {tuple(r) for r in x.mul(16).round().int().tolist()}
    # some digits images are exact duplicates in the raw data, so compare counts not sets
    train, test = rows(digits.x_train), rows(digits.x_test)
    assert len(train & test) < 5


@pytest.mark.parametrize("kw", ["val_fraction", "test_fraction"])
@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_digits_fraction_errors_name_the_argument(kw, bad):
    with pytest.raises(ValueError, match=kw):
        load_digits(**{kw: bad})


def test_digits_fractions_must_leave_training_data():
    with pytest.raises(ValueError, match="val_fraction"):
        load_digits(val_fraction=0.5, test_fraction=0.5)


def test_as_images(digits):
    imgs = as_images(digits.x_train[:5])
    assert imgs.shape == (5, 1, 8, 8)
    assert torch.equal(imgs.flatten(1), digits.x_train[:5])
    assert as_images(imgs) is imgs
    with pytest.raises(ValueError, match="shape"):
        as_images(torch.zeros(3, 63))


def test_few_label_split(digits):
    idx = few_label_split(digits.y_train, 6, seed=0)
    assert idx.dtype == torch.int64 and len(idx) == 60
    assert torch.equal(torch.bincount(digits.y_train[idx], minlength=10), torch.full((10,), 6))
    assert torch.equal(idx, few_label_split(digits.y_train, 6, seed=0))
    assert not torch.equal(idx, few_label_split(digits.y_train, 6, seed=1))
    assert len(torch.unique(idx)) == 60


def test_few_label_split_errors(digits):
    with pytest.raises(ValueError, match="labels_per_class"):
        few_label_split(digits.y_train, 0)
    with pytest.raises(ValueError, match="labels_per_class"):
        few_label_split(digits.y_train, 10_000)


def test_batches_cover_everything_once(digits):
    x, y = digits.x_val, digits.y_val
    got = list(batches(x, y, 32))
    assert [len(b[0]) for b in got[:-1]] == [32] * (len(got) - 1)
    assert torch.equal(torch.cat([b[0] for b in got]), x)
    g = torch.Generator().manual_seed(0)
    shuffled = torch.cat([b[1] for b in batches(x, y, 32, shuffle=True, generator=g)])
    assert torch.equal(shuffled.sort().values, y.sort().values)
    assert not torch.equal(shuffled, y)
    assert all(len(b[0]) == 32 for b in batches(x, y, 32, drop_last=True))


def test_batches_errors(digits):
    x, y = digits.x_val, digits.y_val
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(x, y, 0))
    with pytest.raises(ValueError, match="generator"):
        next(batches(x, y, 8, shuffle=True))
    with pytest.raises(ValueError, match="rows"):
        next(batches(x, y[:-1], 8))


# ---- characters ------------------------------------------------------------------------------


def test_vocab_is_sorted_and_fixed(corpus):
    assert corpus.vocab == VOCAB == "".join(sorted(VOCAB))
    assert corpus.vocab_size == 96
    assert set(corpus.text) <= set(VOCAB)


def test_corpus_text_is_deterministic(corpus):
    assert CharCorpus().text == corpus.text
    assert len(corpus.text) > 400_000


def test_encode_decode_round_trip(corpus):
    s = 'def f(x):\n    return x ** 2  # "squares" ~ {ok}'
    ids = corpus.encode(s)
    assert ids.dtype == torch.int64 and ids.shape == (len(s),)
    assert corpus.decode(ids) == s
    assert corpus.decode(ids.tolist()) == s


def test_encode_unknown_character_names_it(corpus):
    with pytest.raises(ValueError, match="'é'"):
        corpus.encode("café")


def test_decode_rejects_bad_ids(corpus):
    with pytest.raises(ValueError, match="ids"):
        corpus.decode([0, 96])


def test_splits_are_contiguous(corpus):
    n = len(corpus.text)
    assert len(corpus.train) + len(corpus.val) + len(corpus.test) == n
    assert abs(len(corpus.train) / n - 0.9) < 1e-3
    joined = torch.cat([corpus.train, corpus.val, corpus.test])
    assert corpus.decode(joined[:200]) == corpus.text[:200]
    assert corpus.decode(corpus.val[:50]) == corpus.text[len(corpus.train) : len(corpus.train) + 50]


def test_get_batch_shapes_and_shift(corpus):
    g = torch.Generator().manual_seed(0)
    x, y = corpus.get_batch("train", 4, 16, g)
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one


def test_get_batch_is_deterministic(corpus):
    a = corpus.get_batch("val", 3, 8, torch.Generator().manual_seed(7))
    b = corpus.get_batch("val", 3, 8, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_get_batch_errors(corpus):
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="block_size"):
        corpus.get_batch("val", 2, len(corpus.val), g)
    with pytest.raises(ValueError, match="batch_size"):
        corpus.get_batch("val", 0, 8, g)
    with pytest.raises(ValueError, match="split"):
        corpus.get_batch("dev", 2, 8, g)
    with pytest.raises(TypeError, match="generator"):
        corpus.get_batch("val", 2, 8, None)


def test_corpus_splits_argument():
    with pytest.raises(ValueError, match="splits"):
        CharCorpus(text="hello world", splits=(0.5, 0.5, 0.5))


# ---- sentences -------------------------------------------------------------------------------


def test_text_sentences_disjoint_and_complete():
    calib, held, everything = (
        text_sentences("calib"),
        text_sentences("heldout"),
        text_sentences("all"),
    )
    assert len(calib) > 500 and len(held) > 500
    assert not set(calib) & set(held)
    assert set(calib) | set(held) == set(everything)
    assert all(40 <= len(s) <= 300 and s[0].isupper() for s in everything)


def test_text_sentences_subsample_is_seeded():
    a = text_sentences("heldout", n=20, seed=0)
    assert len(a) == 20 and a == text_sentences("heldout", n=20, seed=0)
    assert a != text_sentences("heldout", n=20, seed=1)
    assert set(a) <= set(text_sentences("heldout"))


def test_text_sentences_errors():
    with pytest.raises(ValueError, match="split"):
        text_sentences("train")
    with pytest.raises(ValueError, match="n="):
        text_sentences("calib", n=0)


def test_decode_reads_a_generator_once(corpus):
    """all() consumed the generator while checking it, and decode returned ''."""
    assert corpus.decode(i for i in corpus.encode("abc").tolist()) == "abc"


def test_get_batch_device_error_names_the_argument(corpus):
    """Was torch's "Expected one of cpu, cuda, ... at start of device string: gpu"."""
    with pytest.raises(ValueError, match="device='gpu'"):
        corpus.get_batch("val", 2, 8, torch.Generator().manual_seed(0), device="gpu")


def test_char_corpus_names_a_wrong_text_or_splits():
    with pytest.raises(TypeError, match=r"text must be a str .* decode bytes first"):
        CharCorpus(text=b"abc")
    for bad in (5, ("a", 0.1, 0.1), (0.5, None, 0.5)):
        with pytest.raises(TypeError, match="splits must be three fractions"):
            CharCorpus(text="hello world", splits=bad)
