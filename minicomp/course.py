"""Course plumbing: notebook pairs, building ``exercises/`` from ``solutions/``, and checking both.

Every notebook is a jupytext pair: ``NN_topic.py`` (py:percent, the source of truth, easy to
review in a diff) and ``NN_topic.ipynb`` (what JupyterLab opens, committed without outputs).

``solutions/`` holds the worked answers. Code between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` is the learner's job: :func:`build_exercises` replaces each such block with a
stub that raises ``NotImplementedError``, keeps everything else, and writes ``exercises/``.

    minicomp course build   # solutions/ -> exercises/ (both .py and .ipynb)
    minicomp course sync    # rewrite every .ipynb from its .py
    minicomp course check   # fail if a pair is out of sync or exercises/ is stale

Neither build nor sync overwrites a learner's work: an exercise notebook with code written where its
stub was is left alone, and the command says which file and what to do.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

FOLDERS = ("lessons", "exercises", "solutions")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: replace this line with your code")'
YOURS = "# YOUR CODE HERE"
_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")


def repo_root(start: Path | None = None) -> Path:
    """The course folder: the nearest parent of ``start`` (default: cwd, then this file) that
    holds ``lessons/`` and ``pyproject.toml``."""
    candidates = [Path.cwd() if start is None else Path(start), Path(__file__).resolve().parent]
    for base in candidates:
        for folder in [base.resolve(), *base.resolve().parents]:
            if (folder / "lessons").is_dir() and (folder / "pyproject.toml").is_file():
                return folder
    raise FileNotFoundError(
        f"could not find the course folder (one holding lessons/ and pyproject.toml) above {candidates[0]}; "
        "run this from inside the minicomp repository")


# ── solutions -> exercises ───────────────────────────────────────────────────────────────────
def strip_solutions(source: str, filename: str = "<source>") -> str:
    """Replace each ``### BEGIN SOLUTION`` … ``### END SOLUTION`` block with an indented stub.

    The stub keeps the block's indentation, so a solution inside a function body becomes
    ``# YOUR CODE HERE`` plus ``raise NotImplementedError(...)`` in that body. A block at the
    top level of a cell would stop the notebook, so it is refused.
    """
    out: list[str] = []
    inside_since: int | None = None
    for lineno, line in enumerate(source.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside_since is not None:
                raise ValueError(f"{filename}:{lineno}: '{BEGIN}' inside the block opened at line {inside_since}")
            indent = line[: len(line) - len(line.lstrip())]
            if not indent:
                raise ValueError(f"{filename}:{lineno}: a solution block must be inside a function body "
                                 "(indented), so that the exercise still runs to the end with the stub")
            out += [f"{indent}{YOURS}\n", f"{indent}{STUB}\n"]
            inside_since = lineno
        elif marker == END:
            if inside_since is None:
                raise ValueError(f"{filename}:{lineno}: '{END}' without a matching '{BEGIN}'")
            inside_since = None
        elif inside_since is None:
            out.append(line)
    if inside_since is not None:
        raise ValueError(f"{filename}:{inside_since}: '{BEGIN}' is never closed by '{END}'")
    return "".join(out)


def built_exercises(root: Path) -> dict[str, str]:
    """``{filename: text}`` of what ``exercises/*.py`` should hold, built from ``solutions/``."""
    built = {}
    for path in sorted((root / "solutions").glob("*.py")):
        text = path.read_text()
        if BEGIN not in text:
            raise ValueError(f"{path}: a solution notebook needs at least one '{BEGIN}' block")
        built[path.name] = strip_solutions(text, str(path))
    return built


def build_exercises(root: Path | None = None) -> list[Path]:
    """Write ``exercises/`` (py and ipynb) from ``solutions/``; return the files written.

    Exercises that are already what ``solutions/`` builds, with their ``.ipynb`` in sync, are
    left as they are. An exercise notebook that holds a learner's answers (code where the stub
    was) is never overwritten: ValueError names it, and nothing is written."""
    root = repo_root(root)
    built = built_exercises(root)
    exercises = root / "exercises"
    mine = [(path, lines) for name, text in built.items()
            for path in (exercises / name, (exercises / name).with_suffix(".ipynb"))
            if (lines := answers_in(text, path))]
    if mine:
        raise ValueError(
            "nothing written: these exercise notebooks hold answers written where the exercise has a "
            "stub, and `minicomp course build` would overwrite them:\n" +
            "".join(f"  {path} (e.g. {lines[0].strip()!r})\n" for path, lines in mine) +
            "To keep them, move them (the .py and the .ipynb) out of exercises/, e.g. into my_answers/; "
            "to discard them, delete them. Then build again.")
    exercises.mkdir(exist_ok=True)
    written = []
    for name, text in built.items():
        py = exercises / name
        if not py.exists() or py.read_text() != text:
            py.write_text(text)
            written.append(py)
        if py in written or check_pair(py):
            written.append(write_ipynb(py))
    return written


def answers_in(source: str, path: Path) -> list[str]:
    """The lines of notebook ``path`` (.py or .ipynb) written where ``source`` (py:percent text,
    what ``path`` would be rewritten from) has an exercise stub: a learner's answers, which
    rewriting ``path`` would lose. ``[]`` when ``path`` is missing or unreadable.

    Lines that differ elsewhere, a teacher's edit of the text around an exercise, do not count."""
    import jupytext

    if not path.exists() or (path.suffix == ".py" and path.read_text() == source):
        return []
    try:
        edited = _lines(jupytext.read(path))
    except Exception:  # not a notebook: `check` reports it; there are no answers to keep
        return []
    built = _lines(jupytext.reads(source, fmt="py:percent"))
    marks = (YOURS, STUB)
    found = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, built, edited, autojunk=False).get_opcodes():
        # a stub replaced or removed, or code added just before or after one
        at_stub = built[i1:i2] if i1 < i2 else built[max(i1 - 1, 0):i1 + 1]
        if tag != "equal" and any(line.strip() in marks for line in at_stub):
            found += [line for line in edited[j1:j2] if line.strip() and line.strip() not in marks]
    return found


def _lines(nb) -> list[str]:
    return [line for cell in nb.cells for line in cell.source.splitlines()]


def unchecked_solutions(path: Path) -> list[str]:
    """The functions of solution notebook ``path`` that hold a solution block but are never
    passed to ``check(...)``: their exercise would give the learner no feedback, and
    ``minicomp grade`` no row."""
    text = path.read_text()
    tree = ast.parse(text, str(path))
    blocks = [n for n, line in enumerate(text.splitlines(), start=1) if line.strip() == BEGIN]
    with_block = [f.name for f in tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and any(f.lineno <= n <= f.end_lineno for n in blocks)]
    checked = {arg.id for call in ast.walk(tree) if isinstance(call, ast.Call)
               and getattr(call.func, "id", getattr(call.func, "attr", None)) == "check"
               for arg in call.args if isinstance(arg, ast.Name)}
    return [name for name in with_block if name not in checked]


# ── pairs ────────────────────────────────────────────────────────────────────────────────────
def _cells(path: Path) -> list[tuple[str, str]]:
    import jupytext

    nb = jupytext.read(path)
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def write_ipynb(py: Path) -> Path:
    """Write ``py``'s paired ``.ipynb`` (no outputs) and return its path."""
    import jupytext

    nb = jupytext.read(py)
    seen: dict[str, int] = {}
    for cell in nb.cells:  # stable ids (a hash of the source), so re-syncing changes nothing
        digest = hashlib.sha1(cell.source.encode()).hexdigest()[:8]
        seen[digest] = seen.get(digest, 0) + 1
        cell.id = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    ipynb = py.with_suffix(".ipynb")
    jupytext.write(nb, ipynb, fmt="ipynb")
    return ipynb


def sync(root: Path | None = None) -> list[Path]:
    """Rewrite each ``.ipynb`` in the three folders that is missing, out of sync with its ``.py``
    source or saved with outputs; return the notebooks written. Pairs already in sync are left
    as they are, cell ids included, so a sync changes only what needed it. An ``.ipynb`` that
    holds answers its ``.py`` lacks (code where the ``.py`` has a stub) is never overwritten:
    ValueError names it, and nothing is written."""
    root = repo_root(root)
    stale = [py for folder in FOLDERS for py in sorted((root / folder).glob("*.py")) if check_pair(py)]
    mine = [(py, lines) for py in stale if (lines := answers_in(py.read_text(), py.with_suffix(".ipynb")))]
    if mine:
        raise ValueError(
            "nothing written: these notebooks hold answers that their .py lacks, and `minicomp course "
            "sync` would overwrite them from the .py:\n" +
            "".join(f"  {py.with_suffix('.ipynb')} (e.g. {lines[0].strip()!r})\n" for py, lines in mine) +
            "To keep them, write each .py from its notebook: `jupytext --to py:percent NOTEBOOK.ipynb`.")
    return [write_ipynb(py) for py in stale]


@dataclass
class Problem:
    path: Path
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}\n    fix: {self.fix}"


def check_pair(py: Path) -> list[Problem]:
    """Problems with one ``.py``/``.ipynb`` pair: missing side, different cells, saved outputs."""
    ipynb = py.with_suffix(".ipynb")
    if not ipynb.exists():
        return [Problem(py, "has no paired .ipynb", "run `minicomp course sync`")]
    problems = []
    try:
        raw = json.loads(ipynb.read_text())
    except json.JSONDecodeError as exc:
        return [Problem(ipynb, f"is not valid JSON ({exc})", "run `minicomp course sync` to rewrite it from the .py")]
    if any(c.get("outputs") or c.get("execution_count") for c in raw.get("cells", [])):
        problems.append(Problem(ipynb, "is committed with outputs",
                                "clear outputs, or run `minicomp course sync` to rewrite it from the .py"))
    a, b = _cells(py), _cells(ipynb)
    if a != b:
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        what = (f"is out of sync with {py.name} (first difference at cell {n + 1}; "
                f"{len(a)} cells in .py, {len(b)} in .ipynb)")
        if answers_in(py.read_text(), ipynb):
            problems.append(Problem(ipynb, what + ": it holds answers the .py lacks",
                                    f"to keep them, write the .py from it: `jupytext --to py:percent {ipynb}`"))
        else:
            problems.append(Problem(ipynb, what, "edit the .py and run `minicomp course sync`, or save both "
                                    "sides from JupyterLab with jupytext"))
    return problems


def check(root: Path | None = None) -> list[Problem]:
    """All problems in the course: unpaired or out-of-sync notebooks, badly named files, and an
    ``exercises/`` folder that differs from what ``solutions/`` builds (or holds a learner's
    answers), and solution functions never passed to ``check(...)``. Empty list = all good."""
    root = repo_root(root)
    problems: list[Problem] = []
    for folder in FOLDERS:
        base = root / folder
        for py in sorted(base.glob("*.py")):
            if not _NAME.match(py.stem):
                problems.append(Problem(py, "is not named NN_topic.py", "rename it, e.g. 03_feature_distillation.py"))
            problems += check_pair(py)
        for ipynb in sorted(base.glob("*.ipynb")):
            if not ipynb.with_suffix(".py").exists():
                problems.append(Problem(ipynb, "has no .py source",
                                        f"run `jupytext --to py:percent {ipynb}` and commit the .py"))
    try:
        expected = built_exercises(root)
    except ValueError as exc:
        return problems + [Problem(root / "solutions", str(exc), "fix the solution markers")]
    for path in sorted((root / "solutions").glob("*.py")):
        try:
            unchecked = unchecked_solutions(path)
        except SyntaxError as exc:
            problems.append(Problem(path, f"is not valid Python (line {exc.lineno}: {exc.msg})", "fix the .py"))
            continue
        for name in unchecked:
            problems.append(Problem(path, f"has a solution block in {name}() but never calls check(..., {name})",
                                    f"add a cell `check(\"{name}\", {name})` after it (the exercise's "
                                    "checker in minicomp/checkers/), so that the learner gets feedback"))
    for name, text in expected.items():
        path = root / "exercises" / name
        if path.exists() and path.read_text() != text and (lines := answers_in(text, path)):
            problems.append(Problem(path, f"holds answers written where the exercise has a stub (e.g. "
                                    f"{lines[0].strip()!r}), so it differs from what solutions/ builds",
                                    "to keep them, move it and its .ipynb out of exercises/ (e.g. into "
                                    "my_answers/); then `minicomp course build` writes a fresh exercise"))
        elif not path.exists() or path.read_text() != text:
            problems.append(Problem(path, "is stale: it differs from what solutions/ builds",
                                    "run `minicomp course build`"))
    for path in sorted((root / "exercises").glob("*.py")):
        if path.name not in expected:
            problems.append(Problem(path, "has no matching notebook in solutions/",
                                    "add the solution notebook, or delete this exercise"))
    return problems
