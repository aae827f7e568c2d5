"""minicomp.pipeline: distill, then quantize (lesson 10). Tiny models, a few steps: seconds."""

import math

import pytest
import torch

from minicomp.data import CharCorpus
from minicomp.models import GPTConfig, TinyGPT, perplexity
from minicomp.pipeline import (
    STUDENT_CONFIG,
    Result,
    check_claims,
    comparison_table,
    distill_tinygpt_student,
    format_table,
    load_student,
    measure,
    pareto_front,
    quality,
    quantize_variants,
)
from minicomp.rtn import QuantLinear

TINY = GPTConfig(n_layer=1, n_head=2, n_embd=128, block_size=16)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is faster than two on a shared 2-core machine."""
    from minicomp.hardware import num_threads

    with num_threads(1):
        yield


@pytest.fixture(scope="module")
def corpus():
    return CharCorpus()


@pytest.fixture(scope="module")
def teacher():
    return TinyGPT(GPTConfig(n_layer=2, n_head=2, n_embd=128, block_size=16), seed=1).eval()


def r(name, params=10, nbytes=100, ppl=2.0, acc=0.5, ms=1.0, step="quantized"):
    return Result(name, step, params, nbytes, ppl, acc, ms)


def test_distill_few_steps(teacher, corpus):
    teacher.train()
    student, history = distill_tinygpt_student(teacher, corpus, config=TINY, steps=4, batch_size=2,
                                               eval_every=2, progress=False)
    assert isinstance(student, TinyGPT) and student.config == TINY and not student.training
    assert teacher.training  # the teacher's mode is restored
    assert [h["step"] for h in history] == [2, 4]
    assert all(math.isfinite(h["loss"]) and h["val_ppl"] > 1 for h in history)
    assert not any(p.grad is not None for p in teacher.parameters())  # the teacher never trains
    teacher.eval()


def test_distill_is_deterministic_and_changes_the_student(teacher, corpus):
    start = TinyGPT(TINY, seed=0)
    a, _ = distill_tinygpt_student(teacher, corpus, TinyGPT(TINY, seed=0), steps=2, batch_size=2, progress=False)
    b, _ = distill_tinygpt_student(teacher, corpus, TinyGPT(TINY, seed=0), steps=2, batch_size=2, progress=False)
    wa, wb = a.transformer.h[0].mlp.c_fc.weight, b.transformer.h[0].mlp.c_fc.weight
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, start.transformer.h[0].mlp.c_fc.weight)


def test_fake_quant_distillation_returns_quantized_student(teacher, corpus):
    student, _ = distill_tinygpt_student(teacher, corpus, TinyGPT(TINY, seed=0), steps=2, batch_size=2,
                                         fake_quant_bits=2, progress=False)
    q = [m for m in student.modules() if isinstance(m, QuantLinear)]
    assert len(q) == 4 and all(m.bits == 2 and m.group_size == 128 for m in q)


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps=0"),
    (dict(batch_size=-1), "batch_size=-1"),
    (dict(alpha=1.5), "alpha=1.5"),
    (dict(alpha=True), "alpha=True"),  # before: taken as 1 (pure distillation)
    (dict(lr=0), "lr=0"),
    (dict(steps=5, warmup=5), "warmup=5"),
    (dict(eval_every=0), "eval_every=0"),
    (dict(student=TinyGPT(TINY), config=TINY), "not both"),
    (dict(config=GPTConfig(vocab_size=50, n_layer=1, block_size=16)), "vocab_size=50"),
    (dict(student=TinyGPT(TINY), fake_quant_bits=0), "bits"),
    (dict(min_lr=-1.0), "min_lr=-1.0"),  # a negative learning rate would train uphill
    (dict(lr=1e-3, min_lr=1e-2), "min_lr=0.01"),  # the "decay" would go up
    (dict(min_lr="x"), "min_lr='x'"),
    (dict(lr=math.inf), "lr=inf"),
])
def test_distill_bad_inputs(teacher, corpus, kwargs, match):
    with pytest.raises(ValueError, match=match):
        distill_tinygpt_student(teacher, corpus, **{"progress": False, **kwargs})


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(temperature=0), ValueError, "temperature=0"),
    (dict(min_lr=-1.0), ValueError, "min_lr"),
    (dict(group_size=48), ValueError, "group_size=48"),  # does not divide in_features=128
    (dict(group_size=0), ValueError, "group_size=0"),
])
def test_bad_arguments_leave_the_callers_student_untouched(teacher, corpus, kwargs, error, match):
    """Every argument is checked before fake_quant_bits swaps the student's Linear layers."""
    student = TinyGPT(TINY, seed=0)
    before = {n: type(m) for n, m in student.named_modules()}
    with pytest.raises(error, match=match):
        distill_tinygpt_student(teacher, corpus, student, fake_quant_bits=4, progress=False, **kwargs)
    assert {n: type(m) for n, m in student.named_modules()} == before


def test_distill_runs_on_the_teachers_device(corpus, monkeypatch):
    """A fresh student is built on the teacher's device and the batches go there too. The meta
    device stands in for a GPU: it has shapes and devices but no values, so the loss is stopped."""
    import minicomp.distill

    class Stop(Exception):
        pass

    seen = {}

    def spy(s_logits, t_logits, labels, **kwargs):
        seen.update(student=s_logits.device.type, teacher=t_logits.device.type, labels=labels.device.type)
        raise Stop

    monkeypatch.setattr(minicomp.distill, "distillation_loss", spy)
    teacher = TinyGPT(TINY, seed=1).to("meta")
    with pytest.raises(Stop):
        distill_tinygpt_student(teacher, corpus, config=TINY, steps=1, batch_size=2, progress=False)
    assert seen == {"student": "meta", "teacher": "meta", "labels": "meta"}
    with pytest.raises(ValueError, match="student is on cpu but teacher is on meta"):
        distill_tinygpt_student(teacher, corpus, TinyGPT(TINY), steps=1, batch_size=2, progress=False)


def test_distill_needs_a_gpt(corpus):
    with pytest.raises(TypeError, match="teacher"):
        distill_tinygpt_student(torch.nn.Linear(2, 2), corpus, progress=False)


def test_quality_matches_perplexity(teacher, corpus):
    q = quality(teacher, corpus, max_windows=8)
    assert q["perplexity"] == pytest.approx(perplexity(teacher, corpus, "val", max_windows=8), rel=1e-5)
    assert 0 <= q["accuracy"] <= 1
    with pytest.raises(ValueError, match="max_windows=0"):
        quality(teacher, corpus, max_windows=0)


def test_quantize_variants_and_measure(teacher, corpus):
    g = torch.Generator().manual_seed(0)
    calib = [corpus.get_batch("train", 2, 16, g)[0]]
    v = quantize_variants(teacher, calib, methods=("rtn", "gptq"), bits=(4,), progress=False)
    assert list(v) == ["RTN INT4", "GPTQ INT4"]
    assert not any(isinstance(m, QuantLinear) for m in teacher.modules())  # copies, the original is untouched
    rows = measure({"float": teacher, **v}, corpus, timed=["float"], repeats=2, max_windows=4)
    by = {x.name: x for x in rows}
    assert by["float"].latency_ms > 0 and math.isnan(by["RTN INT4"].latency_ms)
    assert by["float"].params == by["RTN INT4"].params  # quantized weights still count as parameters
    assert by["RTN INT4"].bytes < by["float"].bytes / 3
    with pytest.raises(ValueError, match="timed"):
        measure({"float": teacher}, corpus, timed=["nope"])
    with pytest.raises(ValueError, match="methods"):
        quantize_variants(teacher, calib, methods=())


def test_pareto_front_by_hand():
    rows = [r("a", nbytes=100, ppl=5.0), r("b", nbytes=200, ppl=4.0), r("c", nbytes=300, ppl=4.5),
            r("d", nbytes=400, ppl=3.0), r("e", nbytes=100, ppl=6.0)]
    assert [x.name for x in pareto_front(rows)] == ["a", "b", "d"]  # c is beaten by b, e by a
    assert [x.name for x in pareto_front(rows, "latency_ms")] == ["d"]  # equal latency: best ppl wins
    with pytest.raises(ValueError, match="'size'"):
        pareto_front(rows, "size")


def test_comparison_table_and_claims():
    rows = [r("teacher", 1000, 4000, 2.0, 0.60, 2.0, "teacher"), r("student", 500, 2000, 2.5, 0.50, 1.0, "distilled"),
            r("INT4", 500, 400, 2.6, 0.48, 4.0)]
    t = {x["model"]: x for x in comparison_table(rows, "teacher")}
    assert t["student"]["compression"] == 2 and t["INT4"]["compression"] == 10
    assert t["student"]["speed-up"] == 2 and t["INT4"]["speed-up"] == 0.5
    assert t["student"]["accuracy retained"] == pytest.approx(0.5 / 0.6)
    assert t["teacher"]["training"] == "no" and "distillation" in t["student"]["training"]
    assert "compression" in format_table(list(t.values()))
    with pytest.raises(ValueError, match="baseline='x'"):
        comparison_table(rows, "x")
    c = check_claims(rows, teacher="teacher", student="student", four_bit=["INT4"], combined="INT4")
    assert [x["holds"] for x in c] == [False, True, False]
    assert c[0]["value"] == 2 and c[1]["value"] == pytest.approx(0.96) and c[2]["value"] == 10
    with pytest.raises(ValueError, match="missing|no"):
        check_claims(rows, teacher="teacher", student="student", four_bit=["INT3"], combined="INT4")


def test_shipped_student_loads():
    student = load_student()
    assert student.config == STUDENT_CONFIG and not student.training
    with pytest.raises(ValueError, match="name='nope'"):
        load_student("nope")


def test_pareto_front_skips_unmeasured_rows():
    rows = [r("timed", ms=2.0, ppl=3.0), r("untimed", ms=float("nan"), ppl=1.0)]
    assert [x.name for x in pareto_front(rows, "latency_ms")] == ["timed"]
    assert [x.name for x in pareto_front(rows, "bytes")] == ["untimed"]



def test_student_recipe_runs_and_records_its_metadata():
    from minicomp.pretrained import distill_student

    model, meta = distill_student(steps=2, batch_size=2, warmup=0)
    assert next(model.parameters()).dtype == torch.float16  # shipped as float16
    assert meta["name"] == "tinygpt_student" and meta["config"]["n_layer"] == STUDENT_CONFIG.n_layer
    assert meta["recipe"]["steps"] == 2 and meta["metrics"]["val_perplexity"] > 1


def test_measure_names_a_model_on_another_device(teacher, corpus):
    """A model left on another device failed inside the timing with torch's "Expected all tensors to
    be on the same device", naming no model."""
    elsewhere = TinyGPT(TINY, seed=1).to("meta")
    with pytest.raises(ValueError, match=r"models\['moved'\] has tensors on \['meta'\] but device='cpu'.*\.to\('cpu'\)"):
        measure({"float": teacher, "moved": elsewhere}, corpus, repeats=2, max_windows=4)
    with pytest.raises(TypeError, match=r"models\['x'\] must be a TinyGPT"):
        measure({"x": torch.nn.Linear(2, 2)}, corpus)


def test_check_claims_names_a_zero_it_would_divide_by():
    """A student of accuracy 0 gave ZeroDivisionError."""
    rows = [r("teacher", 1000, 4000, 2.0, 0.60, 2.0, "teacher"), r("student", 500, 2000, 2.5, 0.0, 1.0, "distilled"),
            r("INT4", 500, 400, 2.6, 0.48, 4.0)]
    with pytest.raises(ValueError, match="row 'student' has accuracy=0.0"):
        check_claims(rows, teacher="teacher", student="student", four_bit=["INT4"], combined="INT4")


def test_argument_errors_name_the_argument(teacher, corpus):
    student = TinyGPT(GPTConfig(n_layer=1, n_head=2, n_embd=64, block_size=16), seed=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        distill_tinygpt_student(teacher, corpus, student, steps=1, seed=1.5, progress=False)
    with pytest.raises(ValueError, match="bits=4.0 must be an int"):
        quantize_variants(teacher, None, methods=("rtn",), bits=[4.0], progress=False)
    with pytest.raises(TypeError, match="bits must be an int or a list"):
        quantize_variants(teacher, None, methods=("rtn",), bits=4.0, progress=False)
    with pytest.raises(ValueError, match=r"latency_tokens=100 is longer than models\['t'\]'s context"):
        measure({"t": teacher}, corpus, latency_tokens=100)
    with pytest.raises(ValueError, match="block_size=64 is longer than the model's context"):
        perplexity(teacher, corpus, block_size=64)
