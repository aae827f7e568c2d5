"""Every registered checker accepts its reference and rejects every known mistake.

New checkers are picked up automatically: registering one is enough to have it tested here.
"""

import pytest

from minicomp.grading import available, check, get_checker

NAMES = available()


def test_there_are_checkers():
    assert "weight_bytes" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name):
    report = check(name, get_checker(name).reference)
    assert report.passed, str(report)
    assert report.warnings == [], "the reference warns: the report would blame the learner"
    assert report.n_passed == report.n_total >= 4


@pytest.mark.parametrize("name", NAMES)
def test_has_at_least_four_known_mistakes(name):
    assert len(get_checker(name).mistakes) >= 4


@pytest.mark.parametrize(
    "name,mistake",
    [(n, m) for n in NAMES for m in get_checker(n).mistakes],
    ids=lambda v: v if isinstance(v, str) else v.name.replace(" ", "-"),
)
def test_known_mistake_is_rejected_with_its_hint(name, mistake):
    report = check(name, mistake.fn)
    assert not report.passed
    assert report.status == "failed"
    # its own hint, not another mistake's: where two mistakes agree on the first failing case,
    # the one that also agrees on the other cases is named
    assert mistake.hint in report.hint, f"{mistake.name!r} was reported as: {report.hint}"
    assert "Traceback" not in str(report)


@pytest.mark.parametrize("name", NAMES)
def test_unfinished_answer_is_not_done(name):
    def stub(*args, **kwargs):
        raise NotImplementedError("Exercise: replace this line with your code")

    report = check(name, stub)
    assert report.status == "not done" and not report.passed
    assert "not done yet" in str(report)


@pytest.mark.parametrize("name", NAMES)
def test_crashing_answer_is_reported_not_raised(name):
    def crashes(*args, **kwargs):
        return 1 / 0

    report = check(name, crashes)
    assert not report.passed
    assert "ZeroDivisionError" in str(report) and "Traceback" not in str(report)


def test_fake_quantize_ste_accepts_each_usual_way_of_writing_it():
    """The straight-through estimator on x̂, on x / scale (clamp's own gradient then masks), or
    with the mask taken from the unrounded code in x's units: the cases avoid the half-step where
    these differ, so all three pass; and the checker reads the gradient, not only the values."""
    import torch

    def on_x_hat(x, s, z, lo, hi):
        q = torch.round(x / s) + z
        x_hat = (torch.clamp(q, lo, hi) - z) * s
        x_pass = torch.where((q >= lo) & (q <= hi), x, x.detach())
        return x_pass + (x_hat - x_pass).detach()

    def on_codes(x, s, z, lo, hi):
        u = x / s
        return (torch.clamp(u + (torch.round(u) - u).detach() + z, lo, hi) - z) * s

    def in_x_units(x, s, z, lo, hi):
        s, z = torch.as_tensor(s, dtype=x.dtype), torch.as_tensor(z, dtype=x.dtype)
        kept = torch.minimum(torch.maximum(x, (lo - z) * s), (hi - z) * s)
        x_hat = (torch.clamp(torch.round(x / s) + z, lo, hi) - z) * s
        return kept + (x_hat - kept).detach()

    for fn in (on_x_hat, on_codes, in_x_units):
        report = check("fake_quantize_ste", fn)
        assert report.passed, (fn.__name__, str(report))
    report = check("fake_quantize_ste", lambda x, s, z, lo, hi: on_x_hat(x, s, z, lo, hi).detach())
    assert not report.passed and "gradient" in str(report) and "straight-through" in str(report)
    report = check("fake_quantize_ste", lambda x, s, z, lo, hi: x[:2])
    assert not report.passed and "x's shape" in str(report)
    report = check("fake_quantize_ste", lambda x, s, z, lo, hi: (on_x_hat(x, s, z, lo, hi), x))  # a tuple
    assert not report.passed and "but got tuple" in str(report)
