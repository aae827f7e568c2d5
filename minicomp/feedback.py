"""What a learner reads after a check: how an answer is compared with the right one
(``compare_values``), how values, errors and warnings are put in a line, and the ``Report``.

``minicomp.grading`` registers the checkers and runs them; this module only describes what it
found, so it can be read (and a checker's own ``compare`` written) without the machinery.
"""

from __future__ import annotations

import functools
import html
import linecache
import math
import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from minicomp.checks import is_real

#: The MIME type under which a report's machine-readable summary is displayed in a notebook.
#: ``minicomp grade`` reads it back from executed notebooks.
REPORT_MIME = "application/vnd.minicomp.check+json"


# ── comparing values ─────────────────────────────────────────────────────────────────────────
def _as_tensor(x: Any) -> Any:
    """A numpy array as a tensor (a copy where torch cannot share it: a reversed view, a[::-1]);
    anything else as it is."""
    if isinstance(x, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(x))
        except TypeError:   # an array of objects or strings: no tensor holds it, and the comparison says so
            return x
    return x


def check_tolerances(atol, rtol) -> None:
    """Raise ValueError unless atol and rtol are numbers >= 0 (what `compare_values` takes)."""
    for name, v in (("atol", atol), ("rtol", rtol)):
        if not is_real(v) or not v >= 0:
            raise ValueError(f"{name}={v!r} must be a number >= 0, such as 1e-5")


def compare_values(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """``None`` if ``got`` matches ``expected``; otherwise one sentence describing the difference.

    Tensors must match in shape, dtype kind (floating/integer/bool) and value (``allclose``, NaN in
    the same places); a numpy array counts as a tensor (an answer written with numpy is right if its
    values are; checkers that need a gradient or an exact dtype check for that themselves). Tuples
    and lists are compared element by element; numbers with tolerance.
    """
    check_tolerances(atol, rtol)
    got_type = "numpy array" if isinstance(got, np.ndarray) else type(got).__name__   # as the learner wrote it
    got, expected = _as_tensor(got), _as_tensor(expected)
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor but got {got_type}{_item_fix(got, expected)}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"expected shape {tuple(expected.shape)} but got shape {tuple(got.shape)}"
        if _kind(got.dtype) != _kind(expected.dtype):
            kind = _kind(expected.dtype)
            return f"expected {'an' if kind[0] in 'aeiou' else 'a'} {kind} tensor ({expected.dtype}) but got {got.dtype}"
        as_ = torch.complex128 if expected.is_complex() else torch.float64   # .double() drops an imaginary part
        g, e = got.detach().cpu().to(as_), expected.detach().cpu().to(as_)
        if not torch.equal(torch.isnan(g), torch.isnan(e)):
            return "NaN where none was expected" if torch.isnan(g).any() else "expected NaN values"
        if not torch.allclose(g, e, atol=atol, rtol=rtol, equal_nan=True):
            diff = (g - e).abs().nan_to_num(0.0)
            i = int(diff.argmax())
            return (f"values differ: largest difference {diff.max().item():.4g} at flat index {i} "
                    f"(expected {e.flatten()[i].item():.6g}, got {g.flatten()[i].item():.6g})")
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"expected a {type(expected).__name__} of {len(expected)} values but got {got_type}"
        if len(got) != len(expected):
            return f"expected {len(expected)} values but got {len(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            msg = compare_values(g, e, atol, rtol)
            if msg:
                return f"item {i}: {msg}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"expected a dict but got {got_type}"
        if set(got) != set(expected):
            return f"expected the keys {sorted(map(repr, expected))} but got {sorted(map(repr, got))}"
        for k in expected:
            msg = compare_values(got[k], expected[k], atol, rtol)
            if msg:
                return f"item {k!r}: {msg}"
        return None
    if isinstance(expected, (bool, np.bool_, int, float, np.number)) and isinstance(got, torch.Tensor) \
            and got.numel() == 1:
        got = got.item()   # a one-value tensor (or numpy array) where a number or a bool is expected
    if isinstance(expected, (bool, np.bool_)):
        if isinstance(got, torch.Tensor):   # `got == expected` would be a tensor, true or false for all of it
            return f"expected {expected} but got {got_type} of shape {tuple(got.shape)}"
        return None if got == expected else f"expected {expected} but got {got!r}"
    if isinstance(expected, (int, float, np.number)):
        if not isinstance(got, (int, float, np.number)) or isinstance(got, bool):
            return f"expected a number but got {got_type}"
        try:
            g, e = float(got), float(expected)
        except OverflowError:   # an int past float's range: compared exactly
            return None if got == expected else f"expected {expected!r} but got {got!r}"
        if isinstance(expected, (int, np.integer)) and not g.is_integer():
            return f"expected a whole number {expected} but got {got!r}"
        if math.isnan(e) and math.isnan(g):   # as for tensors: NaN where NaN is expected is right
            return None
        if not math.isclose(g, e, rel_tol=rtol, abs_tol=atol):
            return f"expected {expected!r} but got {got!r}"
        return None
    return None if got == expected else f"expected {expected!r} but got {got!r}"


def _item_fix(got: Any, expected: torch.Tensor) -> str:
    """The fix for a number where a 0-dim tensor belongs: the tensor's .item() was returned."""
    if expected.dim() == 0 and isinstance(got, (int, float, np.number)) and not isinstance(got, bool):
        return "; return the 0-dim tensor itself, not its .item() or float()"
    return ""


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "floating-point"
    if dtype == torch.bool:
        return "boolean"
    if dtype.is_complex:
        return "complex"
    return "integer"


def preview(x: Any, limit: int = 240) -> str:
    if isinstance(x, torch.Tensor):
        with torch.no_grad():
            text = repr(x.detach())
        if x.numel() > 12:
            text = f"tensor of shape {tuple(x.shape)}, dtype {x.dtype}"
    elif isinstance(x, (tuple, list)):
        items = [preview(v, 80) for v in x]
        if hasattr(x, "_fields"):   # a namedtuple: name each item
            items = [f"{name}={item}" for name, item in zip(x._fields, items)]
        inside = ", ".join(items) + ("," if len(items) == 1 and isinstance(x, tuple) else "")
        text = f"[{inside}]" if isinstance(x, list) else f"({inside})"   # brackets as Python prints them
    else:
        text = repr(x)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ── the report ───────────────────────────────────────────────────────────────────────────────
@dataclass
class CaseResult:
    label: str
    ok: bool
    call: str = ""
    expected: str = ""
    got: str = ""
    problem: str = ""


_STATUS_COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "not done": "#9a6700"}


@dataclass
class Report:
    """What ``check`` found. ``.passed`` is True only when every case passed.

    ``status`` is ``"passed"``, ``"failed"`` or ``"not done"``. In a notebook the report renders
    as a short coloured summary; ``str(report)`` gives the same text for a terminal.
    """

    name: str
    status: str
    results: list[CaseResult] = field(default_factory=list)
    message: str = ""
    hint: str = ""
    #: What the learner's function warned while it ran (each different warning once, at most
    #: `MAX_WARNINGS`), shown under the report, passed or not.
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def n_passed(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def n_total(self) -> int:
        return len(self.results)

    def __post_init__(self) -> None:
        if self.status not in _STATUS_COLOURS:
            raise ValueError(f"status={self.status!r} must be one of {', '.join(map(repr, _STATUS_COLOURS))}")

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        bad = self._failure()
        return {"name": self.name, "status": self.status, "passed": self.passed,
                "n_passed": self.n_passed, "n_total": self.n_total,
                "message": self.message, "hint": self.hint, "warnings": list(self.warnings),
                "problem": "" if bad is None else f"{bad.label}: {bad.problem}"}

    def _failure(self) -> CaseResult | None:
        return next((r for r in self.results if not r.ok), None)

    def __str__(self) -> str:
        if self.status == "passed":
            return f"✅ {self.name}: all {self.n_total} checks passed. Well done!" + self._warned()
        if self.status == "not done":
            return f"⏳ {self.name}: not done yet. {self.message}"
        lines = [f"❌ {self.name}: {self.n_passed} of {self.n_total} checks passed." if self.results
                 else f"❌ {self.name}: not checked."]   # (the message says why, e.g. the wrong parameters)
        if self.message:
            lines.append(f"   {self.message}")
        bad = self._failure()
        if bad is not None:
            lines.append(f"   First failure, {bad.label}:")
            if bad.call:
                lines.append(f"     called    {bad.call}")
            if bad.expected:
                lines.append(f"     expected  {bad.expected}")
            if bad.got:
                lines.append(f"     got       {bad.got}")
            lines.append(f"     problem   {bad.problem}")
        if self.hint:
            lines.append(f"   Hint: {self.hint}")
        return "\n".join(lines) + self._warned()

    def _warned(self) -> str:
        if not self.warnings:
            return ""
        lines = ["", "   Your function warned (worth reading: a warning often names a bug):"]
        lines += [f"     {w}" for w in self.warnings]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = _STATUS_COLOURS[self.status]
        text = html.escape(str(self))
        return (f'<pre style="border-left:4px solid {colour};padding:6px 10px;'
                f'white-space:pre-wrap">{text}</pre>')

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": str(self), "text/html": self._repr_html_(), REPORT_MIME: self.to_dict()}


# ── errors and warnings, in a line ───────────────────────────────────────────────────────────
def warning_text(w: warnings.WarningMessage, limit: int = 300) -> str:
    """``"UserWarning: Implicit dimension choice ... (at line 3: p = F.softmax(z))"``: one line."""
    where = ""
    try:
        line = linecache.getline(w.filename, w.lineno).strip()
        where = f" (at line {w.lineno}: {line})" if line else ""
    except Exception:   # a file that cannot be read back: the message alone
        pass
    text = " ".join(f"{w.category.__name__}: {w.message}{where}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_error(exc: BaseException) -> str:
    """``"ZeroDivisionError: division by zero (at line 3: y = 1 / 0)"``, with no traceback.

    The line is the learner's own: the last one in the traceback that is not in minicomp, PyTorch,
    numpy or Python's own library (an error raised deep inside F.cross_entropy is shown at the
    learner's call of it). Where no line of theirs is in it, as when a checker's `call`
    back-propagates through their output, the checker's line is shown and named as such."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != _GRADING_FILE]   # not check's own lines
    theirs = [f for f in frames if not _library_file(f.filename)]
    checking = [f for f in frames if _in_folder(f.filename, _CHECKERS_DIR) and f.line]
    if theirs:   # (a function made by exec() has no source lines to show: its line number, and where)
        f = theirs[-1]
        where = f" (at line {f.lineno}: {f.line.strip()})" if f.line else f" (at line {f.lineno} of {f.filename})"
    elif checking:
        where = f" (while the check ran `{checking[-1].line.strip()}` on your function's output)"
    else:
        where = f" (at line {frames[-1].lineno}: {frames[-1].line.strip()})" if frames and frames[-1].line else ""
    return f"{type(exc).__name__}: {exc}{where}"


_HERE = os.path.dirname(os.path.abspath(__file__))
_GRADING_FILE = os.path.join(_HERE, "grading.py")   # where `check` calls the learner's function
_CHECKERS_DIR = os.path.join(os.path.normcase(_HERE), "checkers", "")


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Folders whose code is not the learner's: minicomp's, torch's, numpy's, every folder of
    installed packages (the environment's, the user's, the system's) and Python's own library."""
    import site
    import sysconfig
    dirs = {os.path.dirname(m.__file__) for m in (sys.modules[__package__], torch, np, os)}
    dirs |= {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    dirs |= set(getattr(site, "getsitepackages", list)()) | {getattr(site, "getusersitepackages", str)()}
    return tuple(os.path.join(os.path.normcase(os.path.abspath(d)), "") for d in dirs if d)


def _in_folder(filename: str, folder: str) -> bool:
    return os.path.normcase(os.path.abspath(filename)).startswith(folder)


def _library_file(filename: str) -> bool:
    return filename.startswith("<frozen ") or _in_folder(filename, _library_dirs())
