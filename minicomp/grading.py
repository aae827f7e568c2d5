"""Exercise checkers: ``check(name, fn)`` runs a learner's function and says what is wrong.

A *checker* is registered under the exercise's name. It knows

* the reference implementation (the library's own function),
* a list of test cases, small ones a person can check by hand first, edge cases after,
* a list of *known mistakes*: wrong implementations that people really write, each with a hint.

``check`` calls the learner's function on every case and compares the result with the reference.
When a case fails it also runs each known mistake on that case: if the learner's output equals
the output of, say, "floor instead of round", the report names that mistake; when the function
raises, a mistake that raises the same error there is named. The same list of
mistakes is what the test-suite uses to prove that every checker rejects them.

A report never shows a traceback. An unfinished exercise (``NotImplementedError``) is reported
as "not done yet", and an exception, a wrong shape or a wrong dtype is reported as a failure
with a sentence about what went wrong.

    >>> from minicomp.grading import check
    >>> check("weight_bytes", lambda num_params, bits: num_params * bits // 8).passed
    False
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import io
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from minicomp import timelimit
from minicomp.checks import check_flag, is_real
from minicomp.feedback import (
    REPORT_MIME,
    CaseResult,
    Report,
    _in_folder,
    _library_file,
    check_tolerances,
    compare_values,
    preview,
    short_error,
    warning_text,
)

__all__ = ["Case", "Mistake", "Checker", "register", "available", "get_checker", "check", "compare_values",
           "Report", "CaseResult", "REPORT_MIME", "REPORTS_ENV", "CHECK_TIMEOUT", "MAX_WARNINGS"]

#: The environment variable in which ``minicomp grade`` names a file for every report's summary.
REPORTS_ENV = "MINICOMP_CHECK_REPORTS"


# ── cases, mistakes, checkers ────────────────────────────────────────────────────────────────
@dataclass
class Case:
    """One call of the function under test: ``fn(*args, **kwargs)``."""

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass
class Mistake:
    """A plausible wrong implementation and the hint to give someone who wrote it."""

    name: str
    fn: Callable
    hint: str


@dataclass
class Checker:
    """Everything needed to check one exercise. Create it with :func:`register`."""

    name: str
    params: tuple[str, ...]
    reference: Callable
    cases: Callable[[], list[Case]]
    mistakes: list[Mistake] = field(default_factory=list)
    hint: str = ""
    atol: float = 1e-5
    rtol: float = 1e-4
    compare: Callable[[Any, Any], str | None] | None = None
    call: Callable[..., Any] | None = None

    @property
    def signature(self) -> str:
        return f"fn({', '.join(self.params)})"


_REGISTRY: dict[str, Checker] = {}
_BUILTIN: set[str] = set()   # the course's own exercises (registered by minicomp.checkers)


def register(
    name: str,
    *,
    params: Sequence[str],
    reference: Callable,
    cases: Callable[[], list[Case]],
    mistakes: Sequence[Mistake] = (),
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
    compare: Callable[[Any, Any], str | None] | None = None,
    call: Callable[..., Any] | None = None,
    replace: bool = False,
) -> Checker:
    """Register a checker under ``name``; ``check(name, fn)`` will use it.

    Registering a name again replaces your earlier checker (so a notebook cell can be rerun), but
    a built-in exercise's name is refused unless ``replace=True``: otherwise which checker
    ``check`` used would depend on what was imported first.

    ``cases`` is a function that builds the cases (so they are made fresh, and deterministically,
    on every check). ``compare(got, expected)`` may replace the default comparison; it returns
    ``None`` when the answer is right, or a sentence saying what differs. ``call(fn, *args,
    **kwargs)`` may replace the plain call ``fn(*args, **kwargs)``, for what an output alone does
    not show: the checker of a straight-through estimator also back-propagates through ``fn``
    and returns the output with the gradient. The reference and the known mistakes are called
    the same way.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(reference):
        raise TypeError(f"reference must be callable, got {type(reference).__name__}")
    if not callable(cases):
        raise TypeError(f"cases must be a function returning a list of Case, got {type(cases).__name__}")
    if call is not None and not callable(call):
        raise TypeError(f"call must be callable or None, got {type(call).__name__}")
    if compare is not None and not callable(compare):
        raise TypeError(f"compare must be callable or None, got {type(compare).__name__}")
    if isinstance(params, str):   # one parameter's name: "x" is ("x",), not ("x",) spelled out letter by letter
        params = (params,)
    if not isinstance(params, Sequence) or not all(isinstance(p, str) for p in params):
        raise TypeError(f"params must be the function's parameter names, such as ('x', 'bits'), got {params!r}")
    if not isinstance(mistakes, Sequence):
        raise TypeError(f"mistakes must be a list of Mistake, got {type(mistakes).__name__}")
    for i, m in enumerate(mistakes):
        if not isinstance(m, Mistake):
            raise TypeError(f"mistakes[{i}] must be a Mistake(name, fn, hint), got {type(m).__name__} {m!r:.80}")
    check_tolerances(atol, rtol)
    replace = check_flag("replace", replace)
    if _called_from_course_checkers():
        _BUILTIN.add(name)
    else:
        _load_builtin_checkers()   # first, so that they cannot replace yours afterwards
        if name in _BUILTIN and not replace:
            raise ValueError(f"name={name!r} is a built-in exercise; register yours under another name, such "
                             f"as 'my_{name}', or pass replace=True to replace the course's checker")
    checker = Checker(name, tuple(params), reference, cases, list(mistakes), hint, atol, rtol, compare, call)
    _REGISTRY[name] = checker
    return checker


def _called_from_course_checkers() -> bool:
    """Whether `register`'s caller is one of the course's own checker modules (minicomp/checkers/)."""
    caller = sys._getframe(2)   # (0: this function, 1: register, 2: who called register)
    return caller.f_globals.get("__name__", "").startswith("minicomp.checkers.")


def _load_builtin_checkers() -> None:
    from minicomp import checkers  # noqa: F401  (importing registers them)


def available() -> list[str]:
    """Names of all registered exercises, sorted (names starting with ``_`` are private)."""
    _load_builtin_checkers()
    return sorted(n for n in _REGISTRY if not n.startswith("_"))


def get_checker(name: str) -> Checker:
    _load_builtin_checkers()
    if not isinstance(name, str):
        swapped = " (the name comes first: check('kd_loss', kd_loss))" if callable(name) else ""
        raise TypeError(f"name must be the exercise's name, a str such as 'weight_bytes', got "
                        f"{type(name).__name__} {name!r:.80}{swapped}")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, available(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"name={name!r} is not a known exercise; {hint}known exercises: {', '.join(available())}")
    return _REGISTRY[name]


def _call_text(params: Sequence[str], case: Case) -> str:
    names = list(params) + [f"arg{i}" for i in range(len(params), len(case.args))]
    parts = [f"{n}={preview(a, 120)}" for n, a in zip(names, case.args)]
    parts += [f"{k}={preview(v, 120)}" for k, v in case.kwargs.items()]
    return f"fn({', '.join(parts)})"


# ── check ────────────────────────────────────────────────────────────────────────────────────
def _run(fn: Callable, case: Case, call: Callable | None = None) -> Any:
    """Call ``fn`` on a fresh copy of the case's arguments (so nobody can spoil them)."""
    return _call(fn, case, call, inputs=False)[0]


class _GradientsSwitchedOff(Exception):
    """The learner's function returned with gradients switched off for everything after it."""


def _call(fn: Callable, case: Case, call: Callable | None = None,
          warned: list[str] | None = None, inputs: bool = True) -> tuple[Any, list[int | str]]:
    """``(result, changed)`` for ``fn(*case.args, **case.kwargs)`` on copies, or for
    ``call(fn, *args, **kwargs)`` when the checker has its own way of calling. ``changed``: the
    arguments the call changed in place, as positions (0 for the first) and keyword names.

    Warnings are kept out of the notebook (a checker calls the function many times). With
    ``warned``, each different one is appended to it as a line, for the report to show: PyTorch's
    warnings often name the bug ("Implicit dimension choice for softmax").

    Every call runs with gradients on, whatever the notebook's mode (a `check` inside `torch.no_grad()`
    would skip the gradient checks), and the mode is restored afterwards; a function that leaves
    them switched off raises `_GradientsSwitchedOff` (it would silence every later training cell)."""
    args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
    with warnings.catch_warnings(record=True) as caught, torch.enable_grad():
        warnings.simplefilter("default")   # once per line of code and case: a loop's warning cannot pile up
        try:
            result = fn(*args, **kwargs) if call is None else call(fn, *args, **kwargs)
            if not torch.is_grad_enabled():   # (torch.enable_grad restores the notebook's mode on exit)
                raise _GradientsSwitchedOff()
        finally:
            if warned is not None:
                for w in caught:
                    text = warning_text(w)
                    if text not in warned:
                        warned.append(text)
    if not inputs:   # (the reference's and the known mistakes' calls: nobody asks)
        return result, []
    changed = [i for i, (a, b) in enumerate(zip(args, case.args)) if _changed_safely(a, b)]
    return result, changed + [k for k in kwargs if _changed_safely(kwargs[k], case.kwargs[k])]


def _changed_safely(after: Any, before: Any) -> bool:
    """`_changed`, or False where the values cannot be compared (an object array of tensors, a
    quantized tensor): the learner is never blamed for the comparison's own error."""
    try:
        return _changed(after, before)
    except Exception:
        return False


def _changed(after: Any, before: Any) -> bool:
    """True if an argument was modified: a tensor's values or shape, a list's items (numbers and
    strings compared by value, tensors as tensors, nested lists and dicts in turn); anything else
    is taken as unchanged, since it may not compare."""
    if isinstance(after, torch.Tensor) and isinstance(before, torch.Tensor):
        return after.shape != before.shape or not torch.equal(torch.nan_to_num(after.detach()),
                                                              torch.nan_to_num(before.detach()))
    if isinstance(after, (list, tuple)) and isinstance(before, (list, tuple)):
        return len(after) != len(before) or any(_changed(a, b) for a, b in zip(after, before))
    if isinstance(after, dict) and isinstance(before, dict):
        return after.keys() != before.keys() or any(_changed(after[k], before[k]) for k in before)
    if isinstance(after, np.ndarray) and isinstance(before, np.ndarray):
        if after.dtype.kind == "O":   # Python objects: item by item, as a list's
            return _changed(after.tolist(), before.tolist())
        return after.shape != before.shape or not np.array_equal(after, before, equal_nan=after.dtype.kind in "fc")
    if isinstance(before, (bool, int, float, str, np.number)):
        return type(after) is not type(before) or not (after == before or after != after and before != before)
    return False


def _changed_text(changed: list[int | str], params: Sequence[str], case: Case) -> str:
    """The problem line for an answer that is right but changed its inputs in place."""
    names = [f"`{params[c]}`" if isinstance(c, int) and c < len(params) else
             f"argument {c + 1}" if isinstance(c, int) else f"`{c}`" for c in changed]
    spoiled = [case.args[c] if isinstance(c, int) else case.kwargs[c] for c in changed]
    def holds(a, kind) -> bool:   # a tensor, or a list or dict of them
        items = a.values() if isinstance(a, dict) else a if isinstance(a, (list, tuple)) else [a]
        return any(isinstance(t, kind) for t in items)
    fixes = []
    if any(holds(a, torch.Tensor) for a in spoiled):
        fixes.append("x = x.clone() for a tensor (x.detach() and x.view(...) share x's memory: they are not copies)")
    if any(holds(a, np.ndarray) for a in spoiled):
        fixes.append("x = x.copy() for a numpy array")
    if any(isinstance(a, list) and not holds(a, (torch.Tensor, np.ndarray)) for a in spoiled):
        fixes.append("sorted(xs) or list(xs) for a list, not xs.sort() or xs.append(...)")
    if any(isinstance(a, dict) and not holds(a, (torch.Tensor, np.ndarray)) for a in spoiled):
        fixes.append("dict(d) for a dict")
    fix = "; ".join(fixes)
    return (f"your function changed its input {' and '.join(names)} in place; the caller's "
            f"{'copy is' if len(names) == 1 else 'copies are'} spoiled. Work on a copy instead"
            + (f": {fix}" if fix else ""))


def _compare(checker: Checker, got: Any, expected: Any) -> str | None:
    """The checker's own comparison if it has one, else `compare_values` with its tolerances. An
    answer of a kind the checker's comparison did not foresee (a tuple of tensors where a list of
    ints was expected, say) is compared plainly instead, so the learner reads what differs, not
    the checker's traceback."""
    if checker.compare is not None:
        try:
            return checker.compare(got, expected)
        except Exception as exc:
            plain = compare_values(got, expected, checker.atol, checker.rtol)
            return plain if plain is not None else f"your answer could not be checked: {short_error(exc)}"
    return compare_values(got, expected, checker.atol, checker.rtol)


def _same(checker: Checker, got: Any, wrong: Any) -> bool:
    """Does the learner's output equal a known mistake's output? Equal values count; so does the
    checker's own comparison (which may accept other forms, e.g. numbers for 0-dim tensors)."""
    if compare_values(got, wrong, checker.atol, checker.rtol) is None:
        return True
    if checker.compare is None:
        return False
    try:  # a checker's compare may assume a well-formed "expected"; a mistake's output may not be
        return checker.compare(got, wrong) is None
    except Exception:
        return False


def _gives(checker: Checker, mistake: Mistake, case: Case) -> Any:
    """What `mistake` answers on `case` (None if it raises)."""
    try:
        return _run(mistake.fn, case, checker.call)
    except Exception:
        return None


def _explains(checker: Checker, mistake: Mistake, case: Case, got: Any, expected: Any, problem: str) -> bool:
    """Whether `mistake` makes the learner's error on `case`: it gives the same answer, and that
    answer is wrong in the same way (wrong values; or, where the values are right, the same
    problem, such as a gradient reaching the teacher)."""
    wrong = _gives(checker, mistake, case)
    if wrong is None or not _same(checker, got, wrong):
        return False
    if compare_values(got, expected, checker.atol, checker.rtol) is not None:
        return compare_values(wrong, expected, checker.atol, checker.rtol) is not None
    try:
        return _compare(checker, wrong, expected) == problem
    except Exception:
        return False


def _diagnose(checker: Checker, failed: tuple[Case, Any, Any, str], answers: list[tuple[Case, Any]]) -> str:
    """The hint for the known mistake that explains the learner's answers, else the general hint.

    failed: the first failing case, the learner's answer, the right one and the problem found.
    The suspects are the mistakes that make the same error there (`_explains`). Two mistakes can
    agree on one case (a zero on the diagonal and no exclusion at all, where every other row
    points away), so when several do, the one that also gives the learner's answers, right or
    wrong, on the most of the other cases (`answers`) is named; on a tie, the first listed. A
    mistake that gives the learner's answers on fewer than half of the other cases matched the
    first by coincidence (a small hand example can make two errors look alike): the general hint
    is given instead of a wrong diagnosis."""
    suspects = [m for m in checker.mistakes if _explains(checker, m, *failed)]
    if not suspects:
        return checker.hint
    others = [(c, g) for c, g in answers if c is not failed[0]]
    score = {id(m): sum(_same(checker, g, _gives(checker, m, c)) for c, g in others) for m in suspects}
    suspects.sort(key=lambda m: -score[id(m)])   # stable: ties keep the listed order
    if 2 * score[id(suspects[0])] < len(others):
        return checker.hint
    return f"this looks like {suspects[0].name}. {suspects[0].hint}"


def _diagnose_raised(checker: Checker, raised: list[tuple[Case, BaseException]],
                     answers: list[tuple[Case, Any]]) -> str:
    """The hint for the known mistake that raises the learner's errors, else the general hint.

    raised: each case where the learner's function raised, with what it raised; answers: what it
    returned on the others. The mistake must raise the same error (type and message: F.cross_entropy
    given [B, T, C] logits names the shapes it refused) on every one of those cases, and give the
    learner's answers on at least half of the others. Where two mistakes do, which one was made
    cannot be told: the general hint."""
    def raises_the_same(m: Mistake, case: Case, exc: BaseException) -> bool:
        try:
            _run(m.fn, case, checker.call)
        except Exception as theirs:
            return type(theirs) is type(exc) and str(theirs) == str(exc)
        return False

    suspects = [m for m in checker.mistakes if all(raises_the_same(m, c, e) for c, e in raised)
                and 2 * sum(_same(checker, g, _gives(checker, m, c)) for c, g in answers) >= len(answers)]
    return f"this looks like {suspects[0].name}. {suspects[0].hint}" if len(suspects) == 1 else checker.hint


#: Seconds a learner's function may take over all of a check's cases before it is stopped.
CHECK_TIMEOUT = 60.0
#: The most different warnings a report shows.
MAX_WARNINGS = 3


def check(name: str, fn: Callable, timeout: float = CHECK_TIMEOUT) -> Report:
    """Check a learner's implementation of exercise ``name``; return a :class:`Report`.

    Put it as the last line of a cell to see the report: ``check("soft_targets", soft_targets)``.
    ``timeout``: seconds the function may take over all the cases together; past them it is
    stopped (an endless loop) and the report says so.
    """
    checker = get_checker(name)
    if not is_real(timeout) or not timeout > 0:
        raise ValueError(f"timeout={timeout!r} must be a positive number of seconds")
    printed, warned = _CappedOutput(), []
    try:
        report = _check(checker, fn, float(timeout), printed, warned)
    finally:
        printed.show()
    if report.status != "not done":
        report.warnings = warned[:MAX_WARNINGS]
    _record(report)
    return report


def _check(checker: Checker, fn: Callable, timeout: float, printed: _CappedOutput, warned: list[str]) -> Report:
    name = checker.name
    if not callable(fn):
        return Report(name, "failed", message=f"expected a function {checker.signature}, got {type(fn).__name__}.")
    results: list[CaseResult] = []
    answers: list[tuple[Case, Any]] = []   # every answer the function returned, for `_diagnose`
    failed: tuple[Case, Any, Any, str] | None = None   # the first wrong answer, for `_diagnose`
    raised: list[tuple[Case, BaseException]] = []   # every exception the function raised, for `_diagnose_raised`
    backward_raised = False   # one of them came from a .backward() inside the function
    no_backward = False   # one was PyTorch's for a torch.autograd.Function without a backward
    used = 0.0   # seconds the learner's function has run so far
    outer = timelimit.active()   # inside `minicomp check --timeout`, whose limit is the one that counts
    cases = checker.cases()
    if not isinstance(cases, list) or not cases or not all(isinstance(c, Case) for c in cases):
        raise TypeError(f"the checker of {name!r} is broken: its cases() must return a non-empty list of Case, "
                        f"got {preview(cases, 120)}")
    wrong = _wrong_signature(fn, cases[0]) if checker.call is None else None
    if wrong:
        return Report(name, "failed", message=f"your function takes {wrong}, but the exercise calls it as "
                      f"{checker.signature}: give it {'that parameter' if len(checker.params) == 1 else 'those parameters, in that order'}.")
    positional = min(len(c.args) for c in cases)   # (an argument passed by keyword finds its name anyway)
    order = _reordered(fn, checker.params[:positional]) if checker.call is None else None
    if order:
        return Report(name, "failed", message=f"your function's parameters are ({', '.join(order)}), but the "
                      f"exercise passes its arguments in the order {checker.signature}, by position: put the "
                      "parameters in that order (each would get another one's value).")
    for i, case in enumerate(cases):
        call = _call_text(checker.params, case)
        expected = _run(checker.reference, case, checker.call)
        start = time.monotonic()
        try:
            with timelimit.time_limit(max(timeout - used, 1e-3)), contextlib.redirect_stdout(printed):
                got, changed = _call(fn, case, checker.call, warned)
        except timelimit.TookTooLong:
            if outer:
                raise
            results.append(CaseResult(case.label, False, call, preview(expected), "",
                                      f"your function was still running after {timeout:g} s (all cases so far "
                                      "together) and was stopped"))
            results += [CaseResult(c.label, False, problem="not run: stopped on an earlier case") for c in cases[i + 1:]]
            return Report(name, "failed", results, hint="Does it loop forever? Look at each loop's condition, "
                          "and at what changes on every pass. If it is just slow, check(..., timeout=...) "
                          "allows more time.")
        except _GradientsSwitchedOff:
            used += time.monotonic() - start
            results.append(CaseResult(case.label, False, call, preview(expected), "",
                                      "your function switched gradients off and left them off "
                                      "(torch.set_grad_enabled(False)), for every cell after it too"))
            results += [CaseResult(c.label, False, problem="not run: stopped on an earlier case") for c in cases[i + 1:]]
            return Report(name, "failed", results, hint="Don't switch gradients off globally. To compute "
                          "something without gradients (the teacher's side, say), use .detach() on it, or "
                          "`with torch.no_grad():` around just that part: both end where they should.")
        except (Exception, SystemExit) as exc:  # the learner's code may raise anything; report it, never re-raise
            own = isinstance(exc, NotImplementedError) and _raised_by_learner(exc)
            if own and i == 0:   # the exercise's stub, still in place
                return Report(name, "not done", message="Replace `raise NotImplementedError(...)` with your "
                              "code, then run the check again.")
            used += time.monotonic() - start
            said = (f"your function called exit() (SystemExit: {exc.code!r}), which would stop the notebook's "
                    "kernel; return a value instead" if isinstance(exc, SystemExit)
                    else f"your function raised {short_error(exc)}")
            missing = isinstance(exc, NotImplementedError) and "backward or vjp" in str(exc)   # PyTorch's own
            no_backward = no_backward or missing
            if own:   # a partial answer, unfinished for this case
                said += ": it is not finished for inputs like these"
            elif not missing and _called_backward(exc):
                said += "; it came from a .backward() inside your function"
                backward_raised = True
            results.append(CaseResult(case.label, False, call, preview(expected), "", said))
            raised.append((case, exc))
            continue
        used += time.monotonic() - start
        answers.append((case, got))
        problem = _compare(checker, got, expected)
        if problem is not None and got is None and expected is not None:
            problem = ("your function returned None: is a `return` missing? (print shows a value, but only "
                       "return gives it back)")
        if problem is not None:
            failed = failed or (case, got, expected, problem)
        elif changed:   # the answer is right, but the input was spoiled: the problem line says it all
            problem = _changed_text(changed, checker.params, case)
        else:
            results.append(CaseResult(case.label, True, call))
            continue
        results.append(CaseResult(case.label, False, call, preview(expected), preview(got), problem))
    if all(r.ok for r in results):
        return Report(name, "passed", results)
    if failed:
        hint = _diagnose(checker, failed, answers)
    elif raised:   # an exception: a known mistake that raises it, else the general hint
        hint = _diagnose_raised(checker, raised, answers)
    else:   # only inputs changed in place: the problem line says it all
        hint = ""
    if hint == checker.hint and backward_raised:
        hint = _BACKWARD_HINT   # no known mistake explains it, and a .backward() inside raised
    if hint == checker.hint and no_backward:
        hint = _NO_BACKWARD_HINT
    return Report(name, "failed", results, hint=hint)


_BACKWARD_HINT = ("Don't call .backward() in the function: return the loss, and the training loop calls "
                  "loss.backward() once, on the total. (Where the inputs need no gradient, as in some of the "
                  "checks, .backward() has nothing to go back to and raises.)")


_NO_BACKWARD_HINT = ("Your torch.autograd.Function has no backward that PyTorch can find: it needs a "
                     "@staticmethod named exactly `backward(ctx, grad_output)`, returning one gradient per "
                     "input of forward (None for those that need none).")


def _raised_by_learner(exc: BaseException) -> bool:
    """True if the learner's own code raised `exc`: the last frame is theirs and, where its source
    can be read, is a `raise` statement. (PyTorch's operators raise NotImplementedError from C++,
    with the learner's line as the last Python frame: `q + 1` on a quantized tensor, say.)"""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames or _library_file(frames[-1].filename):
        return False
    line = (frames[-1].line or "").strip()
    return not line or line.startswith("raise")


def _reordered(fn: Callable, params: Sequence[str]) -> list[str] | None:
    """fn's first parameter names when they are the exercise's names in another order, else None."""
    try:
        names = [p.name for p in inspect.signature(fn).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:len(params)]
    except (TypeError, ValueError):
        return None
    return names if len(params) > 1 and sorted(names) == sorted(params) and names != list(params) else None


def _called_backward(exc: BaseException) -> bool:
    """True if `exc` was raised inside PyTorch's backward (a learner's `loss.backward()`)."""
    return any(f.name == "backward" and _in_folder(f.filename, _TORCH_DIR) for f in traceback.extract_tb(exc.__traceback__))


_TORCH_DIR = os.path.join(os.path.normcase(os.path.dirname(os.path.abspath(torch.__file__))), "")


def _wrong_signature(fn: Callable, case: Case) -> str | None:
    """``"(x)"``, fn's parameters, when fn cannot be called with the case's arguments; else None
    (also when its signature cannot be read, as for some builtins: then the call will tell)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*case.args, **case.kwargs)
    except TypeError:
        return str(sig)
    return None


class _CappedOutput(io.TextIOBase):
    """Where the learner's prints go during a check: the first `limit` characters are kept (and
    shown before the report), the rest only counted, so a debugging print in a loop cannot bury
    the report under thousands of lines (nor fill a grader's memory)."""

    def __init__(self, limit: int = 4000):
        self.kept, self.limit, self.dropped_lines, self.dropped = [], limit, 0, False
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = self.limit - self.size
        if room > 0:
            self.kept.append(text[:room])
            self.size += len(text[:room])
        if len(text) > room:
            self.dropped = True
            self.dropped_lines += text[max(room, 0):].count("\n")
        return len(text)

    def show(self) -> None:
        """Print what was kept, and how much was not."""
        if self.kept:
            sys.stdout.write("".join(self.kept))
        if self.dropped:
            sys.stdout.write(f"\n[… your function printed {self.dropped_lines:,} more lines, not shown]\n")


def _record(report: Report) -> None:
    """Under ``minicomp grade``, append the report's summary to the file it names, so that a
    check whose report is not displayed (``r = check(...)``, ``print(check(...))``) counts too."""
    path = os.environ.get(REPORTS_ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(report.to_dict()) + "\n")
    except OSError:   # the grader still reads the displayed report
        pass
