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
    assert report.hint, f"no hint for {mistake.name}"
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
