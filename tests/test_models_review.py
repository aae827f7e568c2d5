"""Regression tests for defects found in review of minicomp.models and minicomp.pretrained."""

import json
import sys
import types

import pytest
import torch

from minicomp import models, pretrained
from minicomp.data import CharCorpus
from minicomp.models import (
    CNN,
    GPTConfig,
    TinyGPT,
    accuracy,
    digits_cnn_student,
    digits_mlp_student,
)


@pytest.fixture(scope="module")
def corpus():
    return CharCorpus()


def small_gpt(seed=0, **kw):
    cfg = dict(vocab_size=96, block_size=16, n_layer=2, n_head=2, n_embd=32)
    return TinyGPT(GPTConfig(**{**cfg, **kw}), seed=seed)


# ---- accuracy ---------------------------------------------------------------------------------


def test_accuracy_rejects_column_labels():
    """y [N, 1] broadcast against the predictions [N] to [N, N]: an 'accuracy' of 35.9 on digits."""
    x, y = torch.rand(40, 64), torch.randint(0, 10, (40,))
    with pytest.raises(ValueError, match=r"y has shape \(40, 1\).*y\.flatten\(\)"):
        accuracy(digits_mlp_student(), x, y[:, None])
    assert 0.0 <= accuracy(digits_mlp_student(), x, y) <= 1.0


def test_scores_restore_training_mode_when_the_model_raises(corpus):
    model = small_gpt().train()
    with pytest.raises(ValueError, match="block_size"):
        models.perplexity(model, corpus, "val", block_size=32, max_windows=2)  # model's max is 16
    assert model.training
    mlp = digits_mlp_student().train()
    with pytest.raises(ValueError, match="x"):
        accuracy(mlp, torch.rand(4, 63), torch.zeros(4, dtype=torch.long))
    assert mlp.training


# ---- CNN -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, match", [
    ((5, 1, 4, 16), r"\[N, 1, 8, 8\]"),  # was: silently 78% on the digits test set, not 99%
    ((5, 8, 8), r"x\[:, None\]"),  # was: Conv2d's "expected input[1, 5, 8, 8] to have 1 channels"
    ((5, 64, 1, 1), r"\[N, 1, 8, 8\]"),
])
def test_cnn_rejects_images_of_the_wrong_shape(shape, match):
    with pytest.raises(ValueError, match=match):
        digits_cnn_student()(torch.rand(shape))


@pytest.mark.parametrize("kwargs, match", [
    (dict(dropout=1.0), "dropout"),  # was: built, and trained on all-zero features
    (dict(hidden=0), "hidden"),  # was: built, logits = the head's bias whatever the input
])
def test_cnn_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CNN(**kwargs)


# ---- TinyGPT.generate ------------------------------------------------------------------------


def test_generate_is_reproducible_in_training_mode():
    """Dropout in train mode drew from the global RNG, so a seeded generator gave different text."""
    model = small_gpt(dropout=0.5).train()
    start = torch.zeros(2, 1, dtype=torch.long)
    a = model.generate(start, 12, generator=torch.Generator().manual_seed(0))
    b = model.generate(start, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert torch.equal(model.generate(start, 12, temperature=0), model.generate(start, 12, temperature=0))
    assert model.training  # the mode is restored


@pytest.mark.parametrize("top_k", [2.5, "5", True, 0])
def test_generate_top_k_errors_name_it(top_k):
    with pytest.raises(ValueError, match="top_k"):
        small_gpt().generate(torch.zeros(1, 1, dtype=torch.long), 1, top_k=top_k)


# ---- load_minilm stays offline ---------------------------------------------------------------


@pytest.fixture
def fake_sentence_transformers(monkeypatch):
    """A stand-in SentenceTransformer that records how it was called, and touches nothing."""
    calls = []
    module = types.ModuleType("sentence_transformers")
    module.SentenceTransformer = lambda *args, **kwargs: calls.append((args, kwargs)) or "model"
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    return calls


def test_load_minilm_hub_id_is_cache_only_even_if_the_hub_was_imported_first(
    fake_sentence_transformers, monkeypatch
):
    """HF_HUB_OFFLINE is read when huggingface_hub is imported; setting it later (as load_minilm
    does, after a notebook imported transformers) does nothing, and a hub id went to the network
    (75 s of retries here, a download where there is a network)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert models.load_minilm("org/not-a-local-folder") == "model"
    assert fake_sentence_transformers[-1][1].get("local_files_only") is True


def test_load_minilm_hub_id_may_download_if_the_user_says_so(fake_sentence_transformers, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    models.load_minilm("org/not-a-local-folder")
    assert not fake_sentence_transformers[-1][1].get("local_files_only")


# ---- pretrained.main --out -------------------------------------------------------------------


def test_student_is_distilled_from_the_teacher_in_out(tmp_path, monkeypatch):
    """--which all --out DIR trained a teacher into DIR, then distilled the shipped one."""
    teacher = small_gpt(seed=1).eval()
    pretrained.save(teacher, {"name": "tinygpt", "arch": "TinyGPT", "config": vars(teacher.config)},
                    tmp_path)
    seen = {}

    def fake_distill(teacher, corpus, **kwargs):
        seen["teacher"] = teacher
        return small_gpt(seed=2), [{"step": 1, "loss": 1.0}]

    monkeypatch.setattr("minicomp.pipeline.distill_tinygpt_student", fake_distill)
    monkeypatch.setattr(pretrained, "perplexity", lambda *args, **kwargs: 1.0)
    pretrained.main(["--which", "student", "--out", str(tmp_path)])
    assert torch.equal(seen["teacher"].lm_head.weight, teacher.lm_head.weight)
    assert json.loads((tmp_path / "tinygpt_student.json").read_text())["teacher"] == "tinygpt"


def test_load_minilm_uncached_hub_id_names_the_argument(monkeypatch):
    """Was transformers' "We couldn't connect to 'https://huggingface.co'", with the network off."""
    def not_cached(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setitem(sys.modules, "sentence_transformers",
                        types.SimpleNamespace(SentenceTransformer=not_cached))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="name_or_path='org/not-cached'.*HF_HUB_OFFLINE=0"):
        models.load_minilm("org/not-cached")


def test_seeds_and_devices_are_named_when_wrong():
    """A seed of the wrong type reached torch's 'expected a long' without naming seed; a device
    name like "gpu" reached sentence-transformers' own error."""
    from minicomp.data import few_label_split, load_digits, text_sentences
    from minicomp.models import load_minilm

    for bad in (True, "1", 1.5):
        with pytest.raises(TypeError, match="seed must be an int"):
            text_sentences("calib", 3, seed=bad)
        with pytest.raises(TypeError, match="seed must be an int"):
            few_label_split(torch.tensor([0, 1, 0, 1]), 1, seed=bad)
    with pytest.raises(TypeError, match="seed must be an int"):
        load_digits(seed=True)
    with pytest.raises(ValueError, match="device='gpu'"):
        load_minilm(device="gpu")


def test_digits_splits_are_never_empty():
    """val_fraction=0.002 rounded to 0 images per digit and gave an empty validation split."""
    from minicomp.data import load_digits

    with pytest.raises(ValueError, match="val_fraction=0.002 leaves digit 0.*use at least 0.006"):
        load_digits(val_fraction=0.002)
    with pytest.raises(ValueError, match="test_fraction=0.001"):
        load_digits(test_fraction=0.001)
    with pytest.raises(ValueError, match="no training example"):
        load_digits(val_fraction=0.5, test_fraction=0.4999)
    assert all(len(part) > 0 for part in load_digits(val_fraction=0.006))


def test_sizes_refuse_true_and_labels_must_be_tensors():
    """True was taken as 1 (a batch of one, one label per class); a list of labels raised
    AttributeError: 'list' object has no attribute 'dim'."""
    from minicomp.data import CharCorpus, as_images, batches, few_label_split, text_sentences

    y = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="labels_per_class=True"):
        few_label_split(y, True)
    with pytest.raises(ValueError, match="batch_size=True"):
        list(batches(torch.zeros(4, 2), y, True))
    with pytest.raises(ValueError, match="n=True"):
        text_sentences("calib", True)
    corpus = CharCorpus()
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="batch_size=True"):
        corpus.get_batch("train", True, 8, g)
    with pytest.raises(ValueError, match="block_size=True"):
        corpus.get_batch("train", 2, True, g)
    with pytest.raises(TypeError, match=r"y must be a torch.Tensor, got list.*torch.as_tensor\(y\)"):
        few_label_split([0, 1, 0, 1], 1)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        as_images([[0.0] * 64])


def test_a_numpy_integer_seed_is_a_seed():
    """np.int64 (from np.random.randint, say) was refused by the data functions ("seed must be an
    int ... got int64 3"), and torch.Generator().manual_seed refuses it too; it is an int."""
    import numpy as np

    from minicomp.data import few_label_split, load_digits, text_sentences
    from minicomp.models import digits_mlp_student

    seed = np.int64(3)
    assert torch.equal(load_digits(seed=seed).y_val, load_digits(seed=3).y_val)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    assert torch.equal(few_label_split(y, 2, seed=seed), few_label_split(y, 2, seed=3))
    assert text_sentences("calib", 3, seed=seed) == text_sentences("calib", 3, seed=3)
    a, b = digits_mlp_student(seed=seed), digits_mlp_student(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
