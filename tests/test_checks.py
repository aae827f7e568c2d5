"""The shared input checks (`minicomp.checks`): each returns the value in the library's form or
raises an error naming the argument, and the whole library uses these same functions."""

import ast
import math

import numpy as np
import pytest
import torch

from minicomp import checks, data, distill, hardware, pipeline, pretrained, quant, sentence


def test_checks_imports_nothing_else_from_minicomp():
    """Every module can import it, so it must not import any of them (no import cycles)."""
    tree = ast.parse(open(checks.__file__).read())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.split(".")[0] == "minicomp"], imported


@pytest.mark.parametrize("good, expected", [(0, 0), (1234, 1234), (np.int64(3), 3), (-1, -1)])
def test_seed_is_a_plain_int(good, expected):
    got = checks.check_seed(good)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("bad", [True, "1", 1.5, None, np.float64(2.0)])
def test_seed_refuses_what_torch_would_turn_into_another_seed(bad):
    with pytest.raises(TypeError, match="seed must be an int such as 0 or 1234"):
        checks.check_seed(bad)


def test_seeded_runs_a_block_under_a_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected_next = torch.rand(1)
    torch.manual_seed(7)
    with checks.seeded(3):
        a = torch.rand(2)
    assert torch.equal(torch.rand(1), expected_next)   # the global stream went on as if untouched
    with checks.seeded(np.int64(3)):
        assert torch.equal(torch.rand(2), a)            # the same seed, the same numbers
    with checks.seeded(None):                           # None: no seed, the global RNG as it is
        torch.rand(1)
    with pytest.raises(TypeError, match="seed must be an int such as 0 or 1234, got str '3'"):
        with checks.seeded("3"):
            pass


def test_capturing_is_false_in_plain_eager_code():
    assert checks.capturing() is False


def test_positive_ints_name_the_argument():
    checks.check_positive_ints(a=1, b=np.int32(7))
    with pytest.raises(TypeError, match="batch_size must be an int, got bool True"):
        checks.check_positive_ints(batch_size=True)
    with pytest.raises(TypeError, match="steps must be an int, got float 2.0"):
        checks.check_positive_ints(steps=2.0)
    with pytest.raises(ValueError, match="epochs=0 must be >= 1"):
        checks.check_positive_ints(epochs=0)


@pytest.mark.parametrize("bad", [0, -1e-3, math.inf, math.nan, True, "1e-3", None])
def test_positive_numbers_refuse(bad):
    with pytest.raises(ValueError, match=r"lr=.* must be a finite number > 0"):
        checks.check_positive_numbers(lr=bad)


class _SentenceModel(torch.nn.Linear):
    """Just enough of a SentenceTransformer for distill_embeddings' checks that come before lr's."""
    encode = tokenize = None


class _GPT(torch.nn.Linear):
    config = None


@pytest.mark.parametrize("call", [
    lambda lr: distill.Distiller(torch.nn.Linear(2, 2), None, {"ce": (1.0, distill.CE())}, lr=lr),
    lambda lr: pretrained.train_digits_teacher(lr=lr),
    lambda lr: pretrained.train_tinygpt(lr=lr),
    lambda lr: pipeline.distill_tinygpt_student(_GPT(2, 2), "abc", lr=lr),
    lambda lr: sentence.distill_embeddings(_SentenceModel(2, 2), ["a"], torch.zeros(1, 2), lr=lr),
], ids=["Distiller", "train_digits_teacher", "train_tinygpt", "distill_tinygpt_student", "distill_embeddings"])
@pytest.mark.parametrize("lr", [math.inf, 0, -1.0, "1e-3", True])
def test_every_learning_rate_gets_the_same_check(call, lr):
    """Five trainers checked lr in four copies (with three different messages); now one check, one message."""
    with pytest.raises(ValueError, match=rf"lr={lr!r} must be a finite number > 0"):
        call(lr)


@pytest.mark.parametrize("good", [True, False, np.bool_(True)])
def test_flag_accepts_bools(good):
    assert checks.check_flag("progress", good) is bool(good)


@pytest.mark.parametrize("bad", ["no", 0, 1, None])
def test_flag_refuses_what_would_be_read_by_truthiness(bad):
    with pytest.raises(TypeError, match="progress=.* must be True or False"):
        checks.check_flag("progress", bad)


def test_bits():
    assert checks.check_bits(np.int8(4)) == 4
    for bad in (1, 9, 4.0, True, "4"):
        with pytest.raises(ValueError, match="bits=.* must be an int from 2 to 8"):
            checks.check_bits(bad)
    with pytest.raises(ValueError, match="act_bits=16"):
        checks.check_bits(16, "act_bits")


def test_tensor_rows_and_devices():
    with pytest.raises(TypeError, match=r"y must be a torch.Tensor, got list; convert it with torch.as_tensor\(y\)"):
        checks.check_tensor("y", [1, 2])
    with pytest.raises(ValueError, match="x has 3 rows but y has 2"):
        checks.check_rows(torch.zeros(3, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="expected at least one row"):
        checks.check_rows(torch.zeros(0, 4), torch.zeros(0))
    with pytest.raises(ValueError, match=r"a is on cpu but b is on meta; .*b.to\(a.device\)"):
        checks.check_same_device(torch.zeros(1), torch.zeros(1, device="meta"), "a", "b")


def test_callable_and_module():
    with pytest.raises(TypeError, match="fn must be callable"):
        checks.check_callable("fn", 3)
    with pytest.raises(TypeError, match="layer must be a torch.nn.Module, got str"):
        checks.check_module("x", "layer")


@pytest.mark.parametrize("interval, ends_in", [("[0, 1]", (True, True)), ("[0, 1)", (True, False)),
                                               ("(0, 1)", (False, False))])
def test_fraction_intervals(interval, ends_in):
    got = checks.check_fraction("f", np.float32(0.25), interval)
    assert got == 0.25 and type(got) is float
    for end, inside in zip((0, 1), ends_in):
        if inside:
            assert checks.check_fraction("f", end, interval) == end
        else:
            with pytest.raises(ValueError, match=rf"f={end} must be a number in \{interval[0]}0, 1\{interval[-1]}"):
                checks.check_fraction("f", end, interval)
    for bad in (-0.1, 1.5, math.nan, True, "0.5", None):
        with pytest.raises(ValueError, match="f=.* must be a number in"):
            checks.check_fraction("f", bad, interval)


def test_every_fraction_gets_the_same_check():
    """data, distill, quant and awq checked fractions in three copies; one accepted only Python's
    float (np.float32(0.1) was refused). The message names the argument, its interval and its meaning."""
    with pytest.raises(ValueError, match=r"val_fraction=0 must be a number in \(0, 1\): the share of each class"):
        data.load_digits(val_fraction=0)
    assert len(data.load_digits(val_fraction=np.float32(0.1)).y_val) > 0
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"alpha=1.5 must be a number in \[0, 1\]: the weight of the teacher"):
        distill.distillation_loss(logits, logits, torch.zeros(2, dtype=torch.long), alpha=1.5)
    with pytest.raises(ValueError, match=r"maxshrink=1 must be a number in \[0, 1\): the largest fraction"):
        quant.mse_range(torch.ones(4, 8), bits=4, maxshrink=1)
    with pytest.raises(ValueError, match="interval='0..1' must be one of"):
        checks.check_fraction("f", 0.5, "0..1")


def test_the_library_uses_these_functions():
    """The checks are shared, not copied: the modules hold the very same function objects."""
    assert quant.check_bits is checks.check_bits and quant.check_flag is checks.check_flag
    assert data.check_seed is checks.check_seed and data.check_rows is checks.check_rows
    assert distill.check_same_device is checks.check_same_device
    assert hardware.timing.check_callable is checks.check_callable
    assert data.check_fraction is distill.check_fraction is quant.check_fraction is checks.check_fraction


@pytest.mark.parametrize("value, integer, real", [
    (3, True, True), (np.int64(3), True, True), (True, False, False), (np.bool_(True), False, False),
    (2.5, False, True), (np.float32(2.5), False, True), (math.nan, False, True), ("3", False, False),
    (None, False, False), (torch.tensor(3), False, False),
])
def test_is_int_and_is_real(value, integer, real):
    assert checks.is_int(value) is integer and checks.is_real(value) is real


def test_a_numpy_integer_is_a_size_everywhere():
    """Some checks took only Python's int (np.int64(4) from a numpy computation was refused), others
    numbers.Integral; all use is_int now."""
    y = torch.arange(10).repeat(3)
    assert len(data.few_label_split(y, np.int64(2))) == 20
    x = torch.zeros(10, 3)
    assert [len(b) for b, _ in data.batches(x, x, np.int64(4))] == [4, 4, 2]
    assert hardware.copies_beyond_cache(np.int64(1000), most=np.int64(3)) >= 1
    with hardware.num_threads(np.int64(1)):
        assert torch.get_num_threads() == 1


def test_weights_metadata_with_numpy_numbers_is_saved(tmp_path):
    """Numbers a numpy computation gave (now accepted as sizes) must not break the JSON written
    after a training run has finished."""
    import json

    meta = {"name": "m", "recipe": {"warmup_iters": np.int64(10), "lr": np.float32(0.5)}}
    pretrained.save(torch.nn.Linear(2, 2), meta, tmp_path)
    assert json.loads((tmp_path / "m.json").read_text())["recipe"] == {"warmup_iters": 10, "lr": 0.5}
