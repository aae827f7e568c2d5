"""The checking mechanism itself: comparisons, reports, hints, and the weight_bytes checker."""

import math

import pytest
import torch

from minicomp.grading import (
    REPORT_MIME,
    Case,
    Mistake,
    check,
    compare_values,
    get_checker,
    register,
)


def test_weight_bytes_right_answer():
    report = check("weight_bytes", lambda n, bits: (n * bits + 7) // 8)
    assert report.passed and report.status == "passed"
    assert "all 8 checks passed" in str(report)


def test_weight_bytes_wrong_answer_names_the_mistake():
    report = check("weight_bytes", lambda n, bits: n * bits)
    assert not report.passed
    text = str(report)
    assert "counting bits instead of bytes" in text
    assert "expected" in text and "got" in text and "called" in text


def test_weight_bytes_unfinished():
    def weight_bytes(num_params, bits):
        raise NotImplementedError("Exercise: replace this line with your code")

    report = check("weight_bytes", weight_bytes)
    assert report.status == "not done"
    assert "not done yet" in str(report)


def test_unknown_wrong_answer_gets_generic_hint():
    report = check("weight_bytes", lambda n, bits: 42)
    assert not report.passed
    assert "Total bits" in report.hint


def test_not_a_function():
    report = check("weight_bytes", 3)
    assert not report.passed and "expected a function" in str(report)


def test_unknown_exercise_lists_known_ones():
    try:
        check("no_such_exercise", lambda: 0)
    except ValueError as exc:
        assert "no_such_exercise" in str(exc) and "weight_bytes" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_report_renders_in_notebook_with_machine_readable_part():
    report = check("weight_bytes", lambda n, bits: n * bits)
    bundle = report._repr_mimebundle_()
    assert "text/html" in bundle and "text/plain" in bundle
    summary = bundle[REPORT_MIME]
    assert summary["name"] == "weight_bytes" and summary["passed"] is False
    assert summary["n_total"] == 8 and 0 <= summary["n_passed"] < 8


def test_compare_values_messages():
    a = torch.tensor([1.0, 2.0])
    assert compare_values(a, a.clone()) is None
    assert "shape" in compare_values(torch.zeros(3), a)
    assert "integer" in compare_values(torch.tensor([1, 2]), a) or "floating" in compare_values(torch.tensor([1, 2]), a)
    assert "NaN" in compare_values(torch.tensor([float("nan"), 2.0]), a)
    assert "largest difference" in compare_values(torch.tensor([1.0, 3.0]), a)
    assert "expected a torch.Tensor" in compare_values([1.0, 2.0], a)
    assert compare_values((a, 3), (a, 3)) is None
    assert "item 1" in compare_values((a, 4), (a, 3))
    assert "whole number" in compare_values(1.5, 2)
    assert compare_values(2.0, 2) is None


def test_in_place_modification_is_flagged():
    def reference(x):
        return x * 2

    def sneaky(x):
        x.mul_(2)
        return x

    register("_test_double", params=("x",), reference=reference,
             cases=lambda: [Case("a small tensor", (torch.tensor([1.0, -2.0]),))] * 4,
             mistakes=[Mistake("x", lambda x: x, "h")] * 4)
    report = check("_test_double", sneaky)
    assert not report.passed and "in place" in str(report)
    assert check("_test_double", reference).passed


def test_wrong_shape_and_dtype_are_failures_not_tracebacks():
    register("_test_shape", params=("x",), reference=lambda x: x + 1,
             cases=lambda: [Case("ones", (torch.ones(2, 3),))])
    assert "shape" in str(check("_test_shape", lambda x: (x + 1).flatten()))
    assert "tensor" in str(check("_test_shape", lambda x: (x + 1).long()))
    assert not check("_test_shape", lambda x: math.nan).passed


def test_two_mistakes_that_agree_on_the_first_failure_are_told_apart_by_the_others():
    # on x = 0 both mistakes answer 1; only on x = 2 does "squares, plus one" differ from "plus one"
    register("_test_suspects", params=("x",), reference=lambda x: x,
             cases=lambda: [Case("zero", (0,)), Case("two", (2,)), Case("three", (3,))],
             mistakes=[Mistake("plus one", lambda x: x + 1, "hint A"),
                       Mistake("squares, plus one", lambda x: x * x + 1, "hint B")])
    assert "hint B" in check("_test_suspects", lambda x: x * x + 1).hint
    assert "hint A" in check("_test_suspects", lambda x: x + 1).hint   # the one that agrees everywhere
    assert check("_test_suspects", lambda x: x + 1).hint.startswith("this looks like plus one")
    # an answer that matches no known mistake gets the general hint
    assert check("_test_suspects", lambda x: -x).hint == ""


def test_a_right_answer_with_another_fault_is_not_blamed_on_a_wrong_value_mistake():
    """Right values, wrong otherwise: the report says what is wrong and names no mistake that
    would have given the same values (found by review: "changed its input in place", then
    "Hint: this looks like softmax over dim=1"; "no gradient reaches the student", then "Hint:
    this looks like letting the gradient reach the teacher ... use .detach()")."""
    def soft_targets(logits, temperature=1.0):
        logits /= temperature   # in place
        return torch.softmax(logits, dim=-1)

    report = check("soft_targets", soft_targets)
    assert "changed its input `logits` in place" in str(report) and "looks like" not in str(report)

    def kd_loss(student_logits, teacher_logits, temperature=4.0):
        from minicomp.distill import kd_loss as right

        return right(student_logits.detach(), teacher_logits, temperature)   # the wrong side detached

    report = check("kd_loss", kd_loss)
    assert "no gradient reaches" in str(report) and "gradient reach the teacher" not in str(report)


def test_rounding_mistakes_are_told_apart():
    assert "nearest byte" in check("weight_bytes", lambda n, bits: round(n * bits / 8)).hint
    assert "nearest byte" in check("weight_bytes", lambda n, bits: int(n * bits / 8 + 0.5)).hint
    assert "rounding down" in check("weight_bytes", lambda n, bits: n * bits // 8).hint

    def truncated_zero_point(x, bits, symmetric=False):
        from minicomp.quant import compute_qparams

        scale, zero = compute_qparams(x, bits, symmetric)
        return (scale, zero) if symmetric else (scale, int(-min(x.min().item(), 0.0) / float(scale)))

    report = check("compute_qparams", truncated_zero_point)
    assert "truncated" in report.hint and "not rounded" not in report.hint, report.hint


def test_an_endless_loop_is_stopped_and_reported():
    import time

    def weight_bytes(num_params, bits):
        while True:
            pass

    start = time.monotonic()
    report = check("weight_bytes", weight_bytes, timeout=0.5)
    assert time.monotonic() - start < 10
    assert report.status == "failed" and report.n_total == 8 and report.n_passed == 0
    assert "still running after 0.5 s" in str(report) and "loop forever" in report.hint
    assert check("weight_bytes", lambda n, bits: (n * bits + 7) // 8).passed   # no alarm left behind


def test_a_numpy_answer_is_named_as_such():
    import numpy as np

    report = check("weight_bytes", lambda n, bits: np.array([1, 2]))
    assert "got numpy array" in str(report)


def test_a_chatty_function_cannot_bury_its_report(capsys):
    def weight_bytes(num_params, bits):
        for i in range(2000):
            print("debug", i)
        return (num_params * bits + 7) // 8

    assert check("weight_bytes", weight_bytes).passed
    out = capsys.readouterr().out
    assert out.startswith("debug 0\n") and len(out) < 5000
    assert "more lines, not shown" in out

    def quiet(num_params, bits):
        print("n =", num_params)
        return (num_params * bits + 7) // 8

    check("weight_bytes", quiet)
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == ["n = 1000", "n = 7000000000"] and "not shown" not in out


def test_an_answer_the_checkers_comparison_did_not_foresee_is_a_failure_not_a_traceback():
    """A tuple of tensors where Pareto's comparison expects a list of ints: once a crash in
    check itself; now compared plainly, and the learner reads what differs."""
    report = check("pareto_front_indices", lambda sizes, errors: (torch.zeros(2), torch.zeros(2)))
    assert report.status == "failed" and "expected 3 values but got 2" in str(report)


def test_lists_are_shown_as_lists_and_tuples_as_tuples():
    """A learner who must return a list is shown one: '[0, 1, 3]', not '(0, 1, 3)'."""
    from minicomp.feedback import preview

    assert (preview([0, 1, 3]), preview((1, 2)), preview((1,)), preview([])) == ("[0, 1, 3]", "(1, 2)", "(1,)", "[]")
    report = check("pareto_front_indices", lambda sizes, errors: [3, 1, 0])
    assert "expected  [0, 1, 3]" in str(report), str(report)


def test_a_mistake_that_matches_one_case_by_coincidence_is_not_named():
    """Sorting sizes and errors apart matches 'the front of the wrong corner' on the hand example
    alone; it is not that mistake on the other cases, so the general hint is given, not a wrong one."""
    def front(sizes, errors):
        sizes, errors = sorted(sizes), sorted(errors)
        out, best = [], float("inf")
        for i in range(len(sizes)):
            if errors[i] < best:
                out.append(i)
                best = errors[i]
        return out

    report = check("pareto_front_indices", front)
    assert report.status == "failed" and "this looks like" not in report.hint and report.hint


def test_what_the_function_warned_is_shown_once_in_the_report(tmp_path):
    """A warning often names the bug: softmax without a dim is taken over dim 0 of a 1-D tensor
    but warns; the report shows the warning (each different one once, with the learner's line)
    and the notebook does not see it repeated for every case."""
    import importlib.util
    import warnings

    src = tmp_path / "answer.py"
    src.write_text("import torch.nn.functional as F\n\n"
                   "def soft_targets(logits, temperature):\n"
                   "    return F.softmax(logits / temperature)\n")
    spec = importlib.util.spec_from_file_location("answer", src)
    answer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(answer)
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        report = check("soft_targets", answer.soft_targets)
    assert not leaked and warnings.filters == filters
    assert len(report.warnings) == 1, report.warnings
    assert "Implicit dimension choice for softmax" in report.warnings[0]
    assert "at line 4: return F.softmax(logits / temperature)" in report.warnings[0]
    assert "Your function warned" in str(report) and report.to_dict()["warnings"] == report.warnings


def test_a_passing_function_that_warns_says_so_and_warnings_are_capped():
    import warnings

    from minicomp.grading import MAX_WARNINGS

    def weight_bytes(num_params, bits):
        for i in range(MAX_WARNINGS + 2):
            warnings.warn(f"note {i}", stacklevel=1)
        return (num_params * bits + 7) // 8

    report = check("weight_bytes", weight_bytes)
    assert report.passed and len(report.warnings) == MAX_WARNINGS
    text = str(report)
    assert text.startswith("✅") and "UserWarning: note 0" in text and "note 3" not in text
    quiet = check("weight_bytes", lambda num_params, bits: (num_params * bits + 7) // 8)
    assert quiet.warnings == [] and "warned" not in str(quiet)


def test_a_builtin_exercise_name_is_refused_unless_replace():
    """Registering 'kd_loss' silently replaced the course's checker, or was silently replaced by it,
    depending on which was imported first."""
    from minicomp import grading

    builtin = get_checker("kd_loss")
    args = dict(params=("x",), reference=lambda x: x, cases=lambda: [Case("one", (1.0,))])
    with pytest.raises(ValueError, match="name='kd_loss' is a built-in exercise; .*'my_kd_loss'.*replace=True"):
        register("kd_loss", **args)
    assert get_checker("kd_loss") is builtin
    with pytest.raises(TypeError, match="replace='yes' must be True or False"):
        register("kd_loss", replace="yes", **args)
    try:
        mine = register("kd_loss", replace=True, **args)
        assert get_checker("kd_loss") is mine
    finally:
        grading._REGISTRY["kd_loss"] = builtin
    # one's own name may be registered again (a notebook cell run twice)
    first = register("_test_rerun", **args)
    with pytest.raises(TypeError, match="replace='no' must be True or False"):   # checked for any name
        register("_test_rerun", replace="no", **args)
    assert register("_test_rerun", **args) is not first and get_checker("_test_rerun").params == ("x",)


def test_the_readmes_own_checker_example_runs_and_diagnoses():
    """The README shows teachers how to register a checker; its code must run as printed."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"\*\*A checker for your own exercise\.\*\*.*?```python\n(.*?)```", readme, re.S).group(1)
    space: dict = {}
    exec(compile(code, "README.md", "exec"), space)
    report = check("relu", lambda x: x.abs())
    assert not report.passed and "this looks like absolute value. A negative input gives 0" in str(report)
    assert check("relu", torch.relu).passed


# ── answers that are not tensors, errors and where they happened ─────────────────────────────
def _kd_loss(s, t, T):
    """A right kd_loss (3-D logits too: a row is [C]), to be spoiled below."""
    C = s.shape[-1]
    log_p_s = torch.nn.functional.log_softmax(s.reshape(-1, C) / T, dim=-1)
    p_t = torch.nn.functional.softmax(t.detach().reshape(-1, C) / T, dim=-1)
    return T * T * torch.nn.functional.kl_div(log_p_s, p_t, reduction="batchmean")


def test_an_answer_in_numpy_is_compared_by_its_values():
    """Checkers that need more than values (a loss's gradient, an exact dtype) check for it themselves."""
    assert check("kd_loss", _kd_loss).passed
    assert compare_values(torch.zeros(2).numpy(), torch.zeros(2)) is None
    assert "expected shape (2,)" in compare_values(torch.zeros(3).numpy(), torch.zeros(2))


def test_a_number_where_a_loss_tensor_belongs_names_item():
    report = check("kd_loss", lambda s, t, T: _kd_loss(s, t, T).item())
    assert "expected a torch.Tensor but got float " in str(report) and "without .item(), float() or .numpy()" in str(report)
    assert "return the 0-dim tensor itself, not its .item()" in compare_values(0.5, torch.tensor(0.5))
    assert ".item()" not in compare_values([1.0], torch.zeros(1))   # not a 0-dim tensor: no such fix


def test_an_error_inside_torch_is_shown_at_the_learners_line():
    """The last line outside grading.py used to be PyTorch's own (`ret = input.log_softmax(dim)`)."""
    def kd_loss(s, t, T):
        log_p_s = torch.nn.functional.log_softmax(s / T, dim=2)   # the learner's slip
        return log_p_s.sum()

    text = str(check("kd_loss", kd_loss))
    assert "IndexError" in text and "(at line" in text
    assert "log_p_s = torch.nn.functional.log_softmax(s / T, dim=2)" in text
    assert "ret = input.log_softmax" not in text


def test_an_error_in_the_checkers_backward_pass_says_so():
    """Nothing of the learner's is on the stack when the checker back-propagates through their x̂."""
    def fake_quantize_ste(x, s, z, lo, hi):
        y = torch.sigmoid(x)   # saved for backward ...
        y.mul_(1.0)            # ... and changed in place: backward fails
        x_hat = (torch.clamp(torch.round(x / s) + z, lo, hi) - z) * s
        return x_hat + (y - y.detach())

    text = str(check("fake_quantize_ste", fake_quantize_ste))
    assert "RuntimeError" in text and "while the check ran `" in text and "on your function's output" in text
    assert "run_backward" not in text


def test_exit_is_reported_not_raised():
    import sys

    report = check("weight_bytes", lambda n, bits: sys.exit(1))
    assert not report.passed
    assert "your function called exit() (SystemExit: 1), which would stop the notebook's kernel" in str(report)


def test_a_known_mistake_that_raises_is_named():
    """A mistake that raises (here: cross_entropy on [B, T, C] logits) is matched by the exception
    it raises, type and message, on the case where the learner's raised it."""
    def flat(x):
        return x.reshape(-1, x.shape[-1]).sum(dim=1)

    def unflattened(x):
        return torch.mm(x, torch.ones(x.shape[-1], 1))[:, 0]

    register("_test_rows_sum", params=("x",), reference=flat,
             cases=lambda: [Case("2-D", (torch.ones(2, 3),)), Case("3-D", (torch.ones(2, 2, 3),))],
             mistakes=[Mistake("a wrong sum", lambda x: flat(x) + 1, "off by one"),
                       Mistake("a 3-D input not flattened", unflattened, "flatten it first: x.reshape(-1, C)")],
             hint="the general hint")
    report = check("_test_rows_sum", lambda x: torch.mm(x, torch.ones(x.shape[-1], 1)).flatten())
    assert report.hint == "this looks like a 3-D input not flattened. flatten it first: x.reshape(-1, C)"
    report = check("_test_rows_sum", lambda x: 1 / 0)   # another error: the general hint
    assert report.hint == "the general hint"


def test_a_function_made_by_exec_is_still_shown_at_its_own_line():
    """It has no source to show; its line was skipped for PyTorch's (`return torch._C._nn.cross_entropy_loss(`)."""
    scope = {"F": torch.nn.functional}
    exec("def kd_loss(s, t, T):\n    return F.cross_entropy(s, t.argmax(0))\n", scope)
    text = str(check("kd_loss", scope["kd_loss"]))
    assert "(at line 2 of <string>)" in text and "torch._C" not in text


def test_two_mistakes_that_raise_alike_get_the_general_hint():
    """Which of the two was made cannot be told from the error: naming the first would be a guess."""
    def boom(x):
        raise ValueError("no")

    register("_test_two_alike", params=("x",), reference=lambda x: x + 1,
             cases=lambda: [Case("one", (torch.ones(2),))],
             mistakes=[Mistake("first", boom, "h1"), Mistake("second", boom, "h2")], hint="the general hint")
    assert check("_test_two_alike", boom).hint == "the general hint"


def test_a_reversed_numpy_view_is_compared_not_a_crash():
    """torch.from_numpy refuses negative strides; check() ended in a traceback."""
    import numpy as np

    assert compare_values(np.arange(3)[::-1], torch.tensor([2, 1, 0])) is None
    assert "expected a torch.Tensor but got numpy array" in compare_values(np.array([None]), torch.zeros(1))


def test_a_function_that_switches_gradients_off_is_told_and_the_mode_is_restored():
    import torch.nn.functional as F

    def kd_loss(s, t, T):
        torch.set_grad_enabled(False)   # "freeze the teacher", for the whole notebook
        pt, ps = F.log_softmax(t / T, -1), F.log_softmax(s / T, -1)
        return T**2 * (pt.exp() * (pt - ps)).sum(-1).mean()

    report = check("kd_loss", kd_loss)
    assert report.status == "failed" and "switched gradients off" in str(report)
    assert torch.is_grad_enabled()                       # the notebook's mode is back


def test_gradient_checks_run_inside_no_grad_too():
    import torch.nn.functional as F

    def kd_loss_teacher_not_detached(s, t, T):
        pt, ps = F.log_softmax(t / T, -1), F.log_softmax(s / T, -1)
        return T**2 * (pt.exp() * (pt - ps)).sum(-1).mean()

    with torch.no_grad():
        report = check("kd_loss", kd_loss_teacher_not_detached)
        assert not torch.is_grad_enabled()               # the caller's mode is kept
    assert report.status == "failed"


def test_a_backward_inside_a_loss_is_named_as_the_cause():
    """A loss that calls .backward() itself raises on the checks whose inputs need no gradient;
    the report says where the error came from and what to do, not only PyTorch's message."""
    import torch.nn.functional as F

    def kd_loss(s, t, T):
        pt, ps = F.log_softmax(t.detach() / T, -1), F.log_softmax(s / T, -1)
        loss = T**2 * (pt.exp() * (pt - ps)).sum(-1).mean()
        loss.backward()
        return loss

    report = check("kd_loss", kd_loss)
    assert report.status == "failed"
    assert "it came from a .backward() inside your function" in str(report)
    assert report.hint.startswith("Don't call .backward() in the function")

    def other_error(s, t, T):   # an error not from .backward(): the exercise's own hint
        raise RuntimeError("element 0 of tensors does not require grad")

    report = check("kd_loss", other_error)
    assert "inside your function" not in str(report) and not report.hint.startswith("Don't call .backward()")


# ── from a learner's audit: 107 wrong answers, each run through the checks ──────────────────
def test_a_ceiling_with_too_small_a_constant_fails_and_is_named():
    # (n * bits + 5) // 8 was right on every case (no total left 1 or 2 bits over a byte)
    report = check("weight_bytes", lambda n, bits: (n * bits + 5) // 8)
    assert not report.passed and "9 bits" in str(report) and "adding less than 7" in report.hint


def test_not_implemented_on_some_cases_is_a_failure_that_shows_the_rest():
    from minicomp.distill import kd_loss as right

    def kd_loss(student_logits, teacher_logits, temperature):
        if student_logits.dim() == 3:
            raise NotImplementedError("3-D later")
        return right(student_logits, teacher_logits, temperature)

    report = check("kd_loss", kd_loss)
    assert report.status == "failed" and report.n_passed == report.n_total - 1
    assert "not finished for inputs like these" in str(report) and "3-D later" in str(report)


def test_pytorchs_not_implemented_is_a_failure_with_its_own_hint():
    class STE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale, zero_point, qmin, qmax):
            q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
            return (q - zero_point) * scale

        @staticmethod
        def backwards(ctx, grad):   # misspelt: PyTorch finds no backward
            return grad, None, None, None, None

    report = check("fake_quantize_ste", lambda x, scale, zero_point, qmin, qmax:
                   STE.apply(x, scale, zero_point, qmin, qmax))
    assert report.status == "failed", report
    assert "named exactly `backward" in report.hint and "not done" not in str(report)


def test_parameters_in_another_order_are_named():
    from minicomp.distill import kd_loss as right

    def kd_loss(teacher_logits, student_logits, temperature):
        return right(student_logits, teacher_logits, temperature)

    report = check("kd_loss", kd_loss)
    assert not report.passed and "(teacher_logits, student_logits, temperature)" in str(report)
    assert "in that order" in str(report) and "KL in the wrong direction" not in str(report)


def test_returning_none_asks_whether_return_is_missing():
    def soft_targets(logits, temperature):
        print(torch.softmax(logits / temperature, dim=-1))

    report = check("soft_targets", soft_targets)
    assert "your function returned None: is a `return` missing?" in str(report)
    # only where the whole answer is None: a pair with a None in it has its return
    register("_test_pair", params=("x",), reference=lambda x: (x, x + 1), cases=lambda: [Case("one", (1,))])
    report = check("_test_pair", lambda x: (x, None))
    assert "return` missing" not in str(report) and "item 1" in str(report)


def test_a_list_argument_changed_in_place_is_named():
    right = get_checker("pareto_front_indices").reference

    def pareto_front_indices(sizes, errors):
        answer = right(list(sizes), list(errors))
        sizes.sort()   # spoils the caller's list
        return answer

    report = check("pareto_front_indices", pareto_front_indices)
    assert not report.passed and "changed its input `sizes` in place" in str(report)
    assert "sorted(xs)" in str(report)


def test_changed_compares_lists_dicts_numbers_and_arrays():
    import numpy as np

    from minicomp.grading import _changed

    assert not _changed([1, 2.5, "a", float("nan")], [1, 2.5, "a", float("nan")])
    assert _changed([2, 1], [1, 2]) and _changed([1], [1, 2]) and _changed([1], [1.0])
    assert _changed({"a": [1]}, {"a": [2]}) and not _changed({"a": torch.ones(2)}, {"a": torch.ones(2)})
    assert _changed(np.zeros(3), np.ones(3)) and not _changed(np.full(2, np.nan), np.full(2, np.nan))
    assert not _changed(object(), object())   # what cannot be compared counts as unchanged


def test_a_wrong_pareto_front_names_the_models_missing_beaten_or_repeated():
    check_ = get_checker("pareto_front_indices")
    assert check_.compare([1, 3], [0, 1, 3]).endswith("model 0 is on the front but missing")
    assert check_.compare([0, 2, 3], [0, 1, 3]).endswith(
        "model 1 is on the front but missing; model 2 is beaten (or not a model) but listed")
    assert check_.compare([0, 0, 1, 3], [0, 1, 3]).endswith("model 0 is listed more than once")
    assert "wrong order" in check_.compare([3, 1, 0], [0, 1, 3])


def test_pytorchs_not_implemented_from_cpp_is_a_failure_not_the_stub():
    # review: a C++ operator's NotImplementedError has the learner's line as its last Python frame
    def soft_targets(logits, temperature):
        return torch.ones(3).to_sparse().view(3, 1)   # NotImplementedError: ... 'SparseCPU' backend

    report = check("soft_targets", soft_targets)
    assert report.status == "failed" and "SparseCPU" in str(report) and "not done" not in str(report)


def test_arguments_passed_by_keyword_may_come_in_any_order():
    register("_test_kwargs", params=("x", "bits"), reference=lambda x, bits: x * bits,
             cases=lambda: [Case("by name", kwargs={"x": 3, "bits": 4})])
    assert check("_test_kwargs", lambda bits, x: x * bits).passed


def test_an_unchanged_object_array_with_nan_is_unchanged_and_odd_arguments_never_blame_the_learner():
    import numpy as np

    from minicomp.grading import _changed, _changed_safely

    a = np.array([1.0, np.nan], dtype=object)
    assert not _changed(a, a.copy()) and _changed(np.array([2.0, np.nan], dtype=object), a)
    assert _changed_safely(object(), object()) is False
