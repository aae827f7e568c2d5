"""``minicomp grade``: run submitted exercise notebooks and collect their check reports.

Each submission runs in its own Jupyter kernel, in a child process, with its working directory
in a temporary copy of the submission's folder. The submission itself is only ever read. The
child executes the notebook cell by cell under a per-notebook deadline and, after every cell,
writes what it has collected so far: the machine-readable summary of each ``check(...)`` report
(MIME type :data:`minicomp.grading.REPORT_MIME`) and the first error. Other outputs are dropped,
so a notebook that prints gigabytes cannot fill the grader's memory. The parent kills the child
and its kernel if they outlive the deadline.

The expected exercises of a submission are the names in its ``check("...")`` calls, read from
the source text (even when the JSON is broken), so an unfinished exercise and a notebook that
dies before its checks still get one row per exercise, with a reason.

This is **not a security sandbox**: the submitted code runs with your user's rights and can read
or change any file you can. For untrusted code, run the grader inside a container
(``docker``/``podman run --network none`` with the submissions mounted read-only), or use
nbgrader with JupyterHub, or firejail/bubblewrap.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import numbers
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from minicomp.submissions import (
    _check_paths,
    _find,
    course_exercises,
    expected_exercises,
    find_notebooks,
    folders_without_notebooks,
    identical_files,
    student_names,
)

#: Same as :data:`minicomp.grading.REPORT_MIME`, repeated so that ``minicomp --help`` need not
#: import torch (a test checks that the two agree).
REPORT_MIME = "application/vnd.minicomp.check+json"
#: Same as :data:`minicomp.grading.REPORTS_ENV`: the file in which every ``check`` in the kernel
#: appends its report, displayed or not (``r = check(...)``, ``print(check(...))``).
REPORTS_ENV = "MINICOMP_CHECK_REPORTS"
#: At most this many reports (and bytes of them) are read back from a notebook.
_MAX_REPORTS, _MAX_REPORT_BYTES = 1000, 4_000_000

#: The values of :attr:`Row.status`.
STATUSES = ("ok", "timeout", "kernel died", "invalid notebook", "error")
#: Extra seconds the child may take beyond the notebook's timeout (kernel start and shutdown).
STARTUP_GRACE = 60.0
#: Bytes of the files beside a notebook (its data) copied into its working folder; the rest are
#: left out, and its rows say so.
MAX_COPY_BYTES = 500_000_000
_MAX_REASON = 300


@dataclass
class Row:
    """One submission and one exercise: a line of the CSV."""

    student: str
    exercise: str
    passed: int | None
    total: int | None
    status: str
    reason: str
    notebook: str


def _n_cases(name: str) -> int | None:
    from minicomp.grading import get_checker

    try:
        return len(get_checker(name).cases())
    except Exception:  # an unknown exercise or a broken checker: the total is unknown
        return None


def _short(text: str, limit: int = _MAX_REASON) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read_leniently(nbformat, text: str):
    """The notebook in `text`, read as Jupyter opens it: ``nbformat.reads`` only logs a schema
    problem (a code cell without ``execution_count``, say). What running it needs is required: a
    list of cells, each a cell_type and a source; a code cell's missing fields are filled in."""
    nb = nbformat.reads(text, as_version=4)
    if not isinstance(nb.get("cells"), list):
        raise ValueError("the notebook has no list of cells")
    for i, cell in enumerate(nb.cells, 1):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str) \
                or not isinstance(cell.get("source"), str):
            raise ValueError(f"cell {i} has no cell_type or source")
        cell.setdefault("metadata", nbformat.NotebookNode())
        if cell.cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
    return nb


# ── the child: execute one notebook ────────────────────────────────────────────────────────
def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _execute(notebook: Path, result_path: Path, timeout: float) -> None:
    """Run in the child process: execute ``notebook`` and keep ``result_path`` up to date."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    # errors: [cell index (0-based, markdown counted), text] of each cell that raised, the first 50
    state: dict = {"status": "running", "reports": [], "error": "", "errors": [], "kernel_pid": None,
                   "cells_done": 0}

    class Collector(NotebookClient):
        """Keeps only check reports and errors; every other output is dropped."""

        def output(self, outs, msg, display_id, cell_index):
            kind, content = msg["msg_type"], msg.get("content") or {}
            if kind in ("display_data", "execute_result"):
                summary = (content.get("data") or {}).get(REPORT_MIME)
                if isinstance(summary, dict) and len(state["reports"]) < 1000:
                    state["reports"].append({k: summary.get(k) for k in
                                             ("name", "status", "n_passed", "n_total", "message", "problem", "hint")})
            elif kind == "error" and len(state["errors"]) < 50:
                # IPython names a cell's code like "3198007283.py": that says nothing to a teacher
                evalue = re.sub(r"\(\d+\.py, line (\d+)\)", r"(line \1 of the cell)", str(content.get("evalue")))
                first = next((line.strip() for line in nb.cells[cell_index].source.splitlines() if line.strip()), "")
                text = _short(f"cell {cell_index + 1} ({first[:40]!r}): {content.get('ename')}: {evalue}")
                state["errors"].append([cell_index, text])
                state["error"] = state["error"] or text
            return None

    nb = _read_leniently(nbformat, notebook.read_text(encoding="utf-8", errors="replace"))
    deadline = time.monotonic() + timeout
    client = Collector(nb, timeout=max(1, int(timeout)), allow_errors=True, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook.parent)}},
                       interrupt_on_timeout=False, record_timing=False)

    def started() -> None:   # the parent kills this pid's group if the child outlives it
        try:
            state["kernel_pid"] = client.km.provisioner.process.pid
        except AttributeError:
            pass
        _write_json(result_path, state)

    try:
        _start_kernel(client, deadline, started)
        with client.setup_kernel():  # the kernel is up: this only shuts it down at the end
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CellTimeoutError(f"the notebook ran past its {timeout:g} s timeout")
                client.timeout = max(1, int(left + 0.999))
                state["cell"] = index + 1  # 1-based position in the notebook, markdown included
                client.execute_cell(cell, index)
                cell.outputs = []
                state["cells_done"] += 1
                _write_json(result_path, state)
        state["status"] = "done"
    except CellTimeoutError:
        state["status"] = "timeout"
        state["error"] = f"ran past the {timeout:g} s timeout (in cell {state.get('cell', '?')})"
    except DeadKernelError:
        state["status"] = "kernel died"
        state["error"] = f"the kernel died (in cell {state.get('cell', '?')}): os._exit, a crash or out of memory"
    except Exception as exc:  # anything else that stops the run: report it, never re-raise
        if time.monotonic() >= deadline:
            state["status"], state["error"] = "timeout", f"ran past the {timeout:g} s timeout"
        else:
            state["status"], state["error"] = "error", _short(f"{type(exc).__name__}: {exc}")
    _write_json(result_path, state)


def _start_kernel(client, deadline: float, started=lambda: None, tries: int = 3) -> None:
    """Start `client`'s kernel and wait until it answers, trying again if it dies first.

    A kernel can die before its first reply through no fault of the submission (no cell has run
    yet): jupyter_client picks free ports, then the kernel binds them, and a kernel started at the
    same moment by another grader job (or any other program) can take a port in between. The
    usual cure is to start again (nbclient and nbval do not). Tries `tries` times while
    `deadline` (a time.monotonic() value) has not passed; the last error, or any other error, is
    raised (a kernel slow to answer is not started again). started() is
    called as each kernel process starts, before it has answered."""
    for attempt in range(tries):
        try:
            client.km = client.create_kernel_manager()
            client.start_new_kernel()
            started()
            client.start_new_kernel_client()
            return
        except RuntimeError as exc:
            try:
                if client.km is not None:
                    client.km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 -- already dead or never started: nothing to stop
                pass
            client.km = client.kc = None
            # only a kernel that died: one that was slow to answer ("didn't respond in 60 seconds")
            # would be as slow again, and three of those would use up the notebook's time
            if "died" not in str(exc) or attempt == tries - 1 or time.monotonic() >= deadline:
                raise


# ── the parent: grade one notebook ─────────────────────────────────────────────────────────
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kill(pid: int | None, group: bool = False) -> None:
    """Kill process `pid`; with group=True also every process it started (its process group on
    POSIX, where the child and the kernel each lead one; its process tree on Windows, which has
    neither process groups nor SIGKILL). Gone already is fine."""
    if not pid:
        return
    try:
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", *(["/T"] if group else []), "/PID", str(pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        elif group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:  # ProcessLookupError, PermissionError (a reused pid), no taskkill
        pass


def _check_timeout(timeout, name: str = "timeout") -> None:
    # finite: the child hands int(timeout) to nbclient, and int(inf) fails there, for every notebook
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout < math.inf:
        raise ValueError(f"{name}={timeout!r} must be a positive, finite number of seconds, such as 120")


def grade_notebook(path: str | os.PathLike, timeout: float = 120.0, student: str | None = None) -> list[Row]:
    """Grade one submitted notebook; one :class:`Row` per expected (or reported) exercise.
    student: the name its rows carry (default: the file name without .ipynb)."""
    import nbformat

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a notebook's file name (str or Path), got {type(path).__name__} {path!r:.80}")
    path = Path(path)
    if not path.is_file():
        what = "is a folder (grade() takes folders)" if path.is_dir() else "does not exist"
        raise ValueError(f"path={str(path)!r} {what}; expected a .ipynb file")
    _check_timeout(timeout)
    student, shown = student or path.stem, str(path)
    raw = path.read_bytes()
    before = hashlib.sha256(raw).hexdigest()
    text = raw.decode("utf-8", errors="replace")

    try:   # as leniently as Jupyter opens it: a missing execution_count is fine, cells without source are not
        nb = _read_leniently(nbformat, text)
    except Exception as exc:  # broken JSON, or JSON that is not a notebook
        found = expected_exercises(text)   # the course's exercises too: a cut-off file holds only some
        names = [*course_exercises(path.stem), *found]
        names = list(dict.fromkeys(names)) or [""]
        reason = _short(f"cannot read the notebook: {type(exc).__name__}: {exc}", 200)
        return [Row(student, n, 0, _n_cases(n) if n else None, "invalid notebook", reason, shown)
                for n in names]

    check_cells = _check_cells(nb)
    own = list(check_cells)
    course = course_exercises(path.stem)
    expected = course + [n for n in own if n not in course]
    missing = {n for n in course if n not in own}   # check cells deleted from the submission
    run_root = Path(tempfile.mkdtemp(prefix="minicomp-grade-"))
    result_dir = Path(tempfile.mkdtemp(prefix="minicomp-grade-result-"))
    result_path = result_dir / "result.json"
    try:
        work = run_root / "submission"
        # the folder, for the data files a notebook may read beside it; not the other notebooks in
        # it (a class's flat folder of submissions would be copied once per submission)
        ignore = _CopyBudget(MAX_COPY_BYTES)
        try:
            shutil.copytree(path.parent, work, symlinks=True, ignore=ignore)
        except shutil.Error:   # a file it cannot copy (a named pipe, an unreadable file): the rest is copied
            pass
        copy = work / path.name
        copy.write_bytes(raw)  # exactly the bytes we hashed, whatever happened to the folder since
        state = _run_child(copy, result_path, timeout)
    finally:
        shutil.rmtree(run_root, ignore_errors=True)
        shutil.rmtree(result_dir, ignore_errors=True)

    rows = _rows(student, shown, expected, state, timeout, missing, check_cells)
    if ignore.left_out:   # the notebook may have needed them: say so on its rows
        for row in rows:
            row.reason = _short(f"[{ignore.left_out} file(s) beside it not copied: the grader copies at most "
                                f"{MAX_COPY_BYTES // 10**6} MB of a folder] {row.reason}")
    if path.exists() and _sha256(path) != before:  # should never happen; say so loudly if it does
        for row in rows:
            row.reason = _short("WARNING: the submission file changed during grading. " + row.reason)
    return rows


class _CopyBudget:
    """shutil.copytree's `ignore`: what not to copy of a submission's folder. Never the notebooks
    (a class's flat folder would be copied once per submission), Jupyter's and git's folders, or the
    grader's own temporary folders (a notebook saved in the temporary folder would copy its copy,
    over and over); and, past `limit` bytes of files, nothing more (a notebook in a home folder),
    counted in `left_out`."""

    _NEVER = staticmethod(shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.ipynb", ".git", ".venv",
                                                 "minicomp-grade-*"))

    def __init__(self, limit: int):
        self.left, self.left_out = limit, 0

    def __call__(self, folder: str, names: list[str]) -> set[str]:
        skipped = set(self._NEVER(folder, names))
        for name in names:
            p = os.path.join(folder, name)
            if name in skipped or os.path.islink(p) or not os.path.isfile(p):
                continue
            try:
                size = os.path.getsize(p)
            except OSError:
                continue
            if size > self.left:
                skipped.add(name)
                self.left_out += 1
            else:
                self.left -= size
        return skipped


def _run_child(copy: Path, result_path: Path, timeout: float) -> dict:
    recorded_path = result_path.parent / "reports.jsonl"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1",
               JUPYTER_RUNTIME_DIR=str(result_path.parent / "runtime"), **{REPORTS_ENV: str(recorded_path)})
    # -c, then drop sys.path[0] (the working directory), so a student's file named like a module
    # (nbformat.py, minicomp.py) cannot replace the grader's own imports.
    code = "import sys; del sys.path[0]; from minicomp.grader import _main; _main()"
    cmd = [sys.executable, "-c", code, str(copy), str(result_path), repr(float(timeout))]
    log_path = result_path.parent / "stderr.log"
    with log_path.open("wb") as log:  # a file, not a pipe: a notebook may write gigabytes to fd 2
        proc = subprocess.Popen(cmd, cwd=copy.parent, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
        with _RUNNING_LOCK:
            _RUNNING[proc.pid] = result_path
        if _STOPPING.is_set():   # Ctrl-C came while this one was being set up
            _kill(proc.pid, group=True)
        killed = False
        try:
            proc.wait(timeout=timeout + STARTUP_GRACE)
        except subprocess.TimeoutExpired:
            killed = True
            _kill(proc.pid, group=True)
            proc.wait()
        except KeyboardInterrupt:   # (jobs=1: Ctrl-C arrives here) stop it and its kernel now
            _kill_run(proc.pid, result_path)
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.pop(proc.pid, None)
    with log_path.open("rb") as log:
        log.seek(max(0, log_path.stat().st_size - 4000))
        err = log.read()
    state = _read_state(result_path)
    state["recorded"] = _read_recorded(recorded_path)
    # The kernel leads its own process group; kill the group, so that a kernel that is still
    # looping and anything it started in the background are gone too (normally already gone).
    _kill(state.get("kernel_pid"), group=True)
    if killed:
        state["status"], state["error"] = "timeout", f"ran past the {timeout:g} s timeout"
    elif state.get("status") in (None, "running"):
        lines = (err or b"")[-4000:].decode("utf-8", "replace").strip().splitlines()
        tail = _short(lines[-1], 200) if lines else ""
        state["status"] = "error"
        state["error"] = f"the grader's runner stopped (exit code {proc.returncode}) {tail}".strip()
    return state


def _read_state(result_path: Path) -> dict:
    try:
        return json.loads(result_path.read_text())
    except (OSError, ValueError):
        return {"status": None, "reports": [], "error": ""}


def _read_recorded(path: Path) -> list[dict]:
    """The reports the kernel's ``check`` calls appended to `path`, in order (a bounded read)."""
    try:
        with path.open("rb") as f:
            lines = f.read(_MAX_REPORT_BYTES).decode("utf-8", "replace").splitlines()[:_MAX_REPORTS]
    except OSError:
        return []
    reports = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:   # a line cut short by the bound, or a kernel killed while writing
            continue
        if isinstance(r, dict):
            reports.append({k: r.get(k) for k in ("name", "status", "n_passed", "n_total", "message", "problem", "hint")})
    return reports


def _check_cells(nb) -> dict[str, int]:
    """Each exercise's check cell: the index (markdown cells counted) of the first cell calling it."""
    cells: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for name in expected_exercises(cell.source):
                cells.setdefault(name, i)
    return cells


def _also(reason: str, other: str | None) -> str:
    """`reason`, then what else went wrong in the notebook, kept short so that the row's own
    reason is never cut off for it."""
    if not other:
        return _short(reason)
    other = _short(other, 120)
    return f"{_short(reason, _MAX_REASON - len(other) - 22)} [the notebook also: {other}]"


def _rows(student: str, shown: str, expected: list[str], state: dict, timeout: float,
          missing: set[str] = frozenset(), check_cells: dict[str, int] | None = None) -> list[Row]:
    """missing: expected exercises (the course's) whose check call is not in the submission;
    check_cells: each exercise's check cell (`_check_cells`), so that a row's reason is the error
    its own cell raised, and a row that got a report still says that another cell raised."""
    reports: dict[str, dict] = {}
    # every check the kernel ran, displayed or not; else (an older kernel's minicomp) what it displayed
    for r in state.get("recorded") or state.get("reports", []):
        if isinstance(r.get("name"), str):
            reports[r["name"]] = r  # the last report of an exercise counts
    names = expected + [n for n in reports if n not in expected]
    run_status = state.get("status") or "error"
    problem = state.get("error") or ""
    errors = [(i, text) for i, text in state.get("errors") or [] if isinstance(text, str)]
    check_cells = check_cells or {}
    rows = []
    for name in names or [""]:
        total = _n_cases(name) if name else None
        r = reports.get(name)
        own = next((text for i, text in errors if i == check_cells.get(name)), None)
        # what else went wrong in the notebook: another cell's error, else how the run ended
        other = next((text for i, text in errors if i != check_cells.get(name)), None)
        if other is None and run_status in ("timeout", "kernel died", "error") and problem not in (own, ""):
            other = f"{'then ' if r is not None else ''}{problem}"
        if r is not None:
            n_total = r.get("n_total") or 0
            total = max(n_total, total or 0)
            if r.get("status") == "passed":
                reason = "passed"
            elif r.get("status") == "not done":
                reason = "not done (still raises NotImplementedError)"
            else:   # what the learner saw: the first failure, then the hint
                said = [r.get("message"), r.get("problem"), r.get("hint") and f"Hint: {r['hint']}"]
                reason = " | ".join(s.strip() for s in said if s)
                reason = f"{r.get('status')}: {reason}" if reason else str(r.get("status"))
            rows.append(Row(student, name, int(r.get("n_passed") or 0), total, "ok", _also(reason, other), shown))
            continue
        if name in missing:
            status, reason = "error", (f"no check(\"{name}\", ...) call in the notebook (the course's exercise has "
                                       "one): was its cell deleted?")
        elif not name:
            status = run_status if run_status in ("timeout", "kernel died") else "error"
            reason = "no check(...) calls found in the notebook: is it one of this course's exercises?"
            reason += f" ({problem})" if problem else ""
        elif own is not None:   # its check cell raised (the function's name misspelt, say), maybe because
            status, reason = "error", _also(own, other)   # another cell did (its def, say)
        elif run_status == "done":
            status = "error"
            reason = problem or "the check cell did not display a report"
        elif run_status in ("timeout", "kernel died"):
            status, reason = run_status, f"no report: {problem}"
        else:
            status, reason = "error", problem or "the notebook could not be run"
        rows.append(Row(student, name, 0, total, status, _short(reason), shown))
    return rows


# ── many notebooks, files and the table ────────────────────────────────────────────────────
def grade(paths: Sequence[str | os.PathLike], timeout: float = 120.0, progress=None, jobs: int = 1) -> list[Row]:
    """Grade every notebook in ``paths`` (files or folders); the rows come in the notebooks' order.

    jobs: how many notebooks run at once, each in its own kernel and temporary folder (a class of
    30 on a 4-core laptop: ``jobs=4``, about 4x sooner). More than the CPU's cores slows each
    notebook down, and one that runs past ``timeout`` is stopped. progress(nb) is called as each
    notebook starts."""
    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs < 1:   # (checks.is_int: no torch here)
        raise ValueError(f"jobs={jobs!r} must be a positive int, the number of notebooks run at once")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or a function called with each notebook's path, such as "
                        f"lambda nb: print('grading', nb); got {type(progress).__name__} {progress!r:.80}")
    _check_timeout(timeout)
    found = _find(paths)
    if not found:
        raise ValueError(f"paths={[str(p) for p in _check_paths(paths)]!r} hold no .ipynb notebooks")
    notebooks = list(found)
    names = student_names(notebooks, list(found.values()))
    empty = [Row(folder.name or str(folder), "", 0, None, "error",
                 _short("no .ipynb notebook in this folder" + (f" (it holds {', '.join(files)})" if files else
                                                               " (it is empty)")), str(folder))
             for folder, files in folders_without_notebooks(paths).items()]

    _STOPPING.clear()

    def one(nb: Path) -> list[Row]:
        if _STOPPING.is_set():   # Ctrl-C came before this notebook started
            raise KeyboardInterrupt
        if progress:
            progress(nb)
        try:
            return grade_notebook(nb, timeout=timeout, student=names[nb])
        except (OSError, ValueError) as exc:   # gone, unreadable, a folder named .ipynb: a row; the rest go on
            return [Row(names[nb], "", 0, None, "error", _short(f"cannot grade it: {type(exc).__name__}: {exc}"),
                        str(nb))]

    done: list[list[Row]] = []
    futures: list = []
    pool = None
    try:
        if jobs == 1:
            for nb in notebooks:
                done.append(one(nb))
        else:   # threads suffice: each notebook runs in a child process of its own
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=min(jobs, len(notebooks)))
            futures = [pool.submit(one, nb) for nb in notebooks]
            done = [f.result() for f in futures]
    except KeyboardInterrupt:
        if pool is not None:   # the notebooks finished by now, in order (before the kill below)
            done = [f.result() for f in futures if f.done() and not f.cancelled() and f.exception() is None]
        _STOPPING.set()        # a notebook about to start its runner kills it at once
        _kill_running()        # the running ones: their threads then return soon, their rows unused
        raise GradingInterrupted([row for rows in done for row in rows] + empty, len(done), len(notebooks)) from None
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return [row for rows in done for row in rows] + empty


class GradingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `grade`: every running notebook was stopped; `rows` holds those of the
    `graded` notebooks finished before it, of `total`."""

    def __init__(self, rows: list[Row], graded: int, total: int):
        super().__init__(f"interrupted: {graded} of {total} notebooks graded")
        self.rows, self.graded, self.total = rows, graded, total


#: The runner processes running now, with their result files (which name each one's kernel);
#: `_STOPPING` is set by Ctrl-C, after which a runner is killed as soon as it starts.
_RUNNING: dict[int, Path] = {}
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()


def _kill_running() -> None:
    """Kill every running child and its kernel (Ctrl-C: they are in sessions of their own, so the
    terminal's SIGINT does not reach them)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING.items())
    for pid, result_path in running:
        _kill_run(pid, result_path)


def _kill_run(pid: int, result_path: Path) -> None:
    """Kill a runner and its kernel (named in its result file), each with what it started."""
    _kill(pid, group=True)
    _kill(_read_state(result_path).get("kernel_pid"), group=True)


def _check_out(out, name: str = "out") -> Path:
    """`out` as a Path: a .csv name whose file, and the .json beside it, are new or were written by
    `write_reports` (a rerun overwrites its own table, never another file, such as a submission's data)."""
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"{name} must be a .csv file name, got {type(out).__name__} {out!r:.80}")
    given, out = os.fspath(out), Path(out)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"{name}={given!r} must be a .csv file name, such as grades.csv")
    header = ",".join(f.name for f in fields(Row))
    for path, first in ((out, header), (out.with_suffix(".json"), "[")):
        if path.is_dir():
            raise ValueError(f"{name}={given!r}: {str(path)!r} is a folder, where the grader writes a file; "
                             f"choose another file name, such as {str(out.parent / 'grades.csv')!r}")
        if path.exists() and not _starts_with(path, first):
            raise ValueError(f"{name}={given!r} would overwrite {str(path)!r}, which is not a table written by "
                             "minicomp grade; choose another file name")
    return out


def _starts_with(path: Path, text: str) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(text.encode())) == text.encode()
    except OSError:
        return False


def write_reports(rows: Sequence[Row], out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out`` (CSV) and the same rows as JSON beside it; return both paths."""
    out = _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in fields(Row)]
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    js = out.with_suffix(".json")
    js.write_text(json.dumps([asdict(r) for r in rows], indent=1, ensure_ascii=False) + "\n",
                  encoding="utf-8")
    return out, js


def format_table(rows: Sequence[Row], width: int = 60) -> str:
    """The terminal summary: one line per row."""
    head = ("student", "exercise", "checks", "status", "reason")
    body = [(r.student, r.exercise or "-",
             f"{r.passed}/{r.total if r.total is not None else '?'}", r.status,
             r.reason if len(r.reason) <= width else r.reason[: width - 1] + "…") for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cols: "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def format_students(rows: Sequence[Row]) -> str:
    """One line per student, in the rows' order: how many of their exercises passed every check,
    and how many checks passed in all (a row of unknown total counts as none passed of none)."""
    students: dict[str, list[Row]] = {}
    for r in rows:
        students.setdefault(r.student, []).append(r)
    width = max((len(name) for name in students), default=0)
    lines = []
    for name, own in students.items():
        done = sum(r.status == "ok" and bool(r.total) and r.passed == r.total for r in own)
        checks, total = sum(r.passed or 0 for r in own), sum(r.total or 0 for r in own)
        exercises = [r for r in own if r.exercise]
        lines.append(f"{name.ljust(width)}  {done} of {len(exercises)} exercise(s) passed, "
                     f"{checks} of {total} checks" if exercises else f"{name.ljust(width)}  no exercise graded")
    return "\n".join(lines)


def _main() -> None:
    """The child process: ``NOTEBOOK RESULT_JSON TIMEOUT`` in ``sys.argv``."""
    _execute(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))


def main(argv: Sequence[str] | None = None) -> int:
    """``minicomp grade PATH... [--timeout S] [--out report.csv]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="minicomp grade", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="submitted notebooks, or folders of them")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds each notebook may run (default: 120)")
    parser.add_argument("--out", default="grades.csv",
                        help="the CSV to write; a .json with the same rows goes beside it (default: grades.csv)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at once, each in its own kernel (default: 1; at most the CPU's cores, "
                             "or each is slower and may pass its --timeout)")


def run(args) -> int:
    """Grade, write the files, print the table. 0 when grading completed, 130 after Ctrl-C (the rows
    graded so far are written), 1 when the grades could be written nowhere, 2 for bad arguments."""
    from minicomp.doctor import unwritable

    try:
        _check_timeout(args.timeout, "--timeout")
        out = _check_out(args.out, "--out")
        if args.jobs < 1:
            raise ValueError(f"--jobs={args.jobs} must be at least 1, the number of notebooks run at once")
        notebooks = find_notebooks(args.paths)
        if not notebooks:
            raise ValueError(f"PATH={' '.join(args.paths)!r} holds no .ipynb notebooks")
        if why := unwritable(out.parent, create=True):   # now, not after an hour of grading
            raise ValueError(f"--out={args.out!r}: cannot write in {str(out.parent)!r} ({why}); choose another folder")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    if args.jobs > cores:
        print(f"warning: --jobs {args.jobs} is more than this machine's {cores} cores: each notebook runs slower "
              "and may pass its --timeout", file=sys.stderr)
    done = iter(range(1, len(notebooks) + 1))
    printing = threading.Lock()

    def progress(nb: Path) -> None:
        with printing:   # one line at a time: print writes the text and its newline apart, and --jobs threads interleave
            print(f"[{next(done)}/{len(notebooks)}] grading {nb} ...", flush=True)

    interrupted = None
    try:
        rows = grade(args.paths, timeout=args.timeout, jobs=args.jobs, progress=progress)
    except GradingInterrupted as stop:
        rows, interrupted = stop.rows, stop
    try:
        csv_path, json_path = write_reports(rows, out)
    except (OSError, ValueError) as exc:   # the folder went away, a full disk: keep the grades anyway
        print(f"error: could not write --out={args.out!r} ({type(exc).__name__}: {exc})", file=sys.stderr)
        try:
            csv_path, json_path = write_reports(rows, Path(tempfile.mkdtemp(prefix="minicomp-grades-")) / "grades.csv")
            print(f"the grades are in {csv_path} instead", file=sys.stderr)
        except OSError:   # nowhere to write: the terminal, then
            print("nor in a temporary folder; here they are in full, as CSV:", file=sys.stderr)
            writer = csv.DictWriter(sys.stdout, fieldnames=[f.name for f in fields(Row)])
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
            return 1
    print()
    print(format_table(rows))
    print("\nper student:")
    print(format_students(rows))
    for group in identical_files(notebooks, ignore=_course_notebooks()):
        print(f"note: these submissions are the same file, byte for byte: {', '.join(map(str, group))}")
    if interrupted is not None:
        print(f"\n{interrupted}; wrote what was graded to {csv_path} and {json_path}", file=sys.stderr)
        return 130
    print(f"\ngraded {len(notebooks)} notebook(s); wrote {csv_path} and {json_path} (with each reason in full)")
    return 0


def _course_notebooks() -> set[str]:
    """The sha256 of each of the course's exercise notebooks, as handed out: two untouched copies
    are alike without anyone having copied anyone (empty if there is no course folder)."""
    from minicomp.course import repo_root

    try:
        return {_sha256(nb) for nb in (repo_root() / "exercises").glob("*.ipynb")}
    except (OSError, ValueError):
        return set()


if __name__ == "__main__":
    sys.exit(main())
