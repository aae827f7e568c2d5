"""`minicomp grade`: six awkward submissions, each gets a row with a reason, none is modified."""

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from minicomp import grader, grading

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = ROOT / "exercises" / "00_bits_and_bytes.ipynb"
SOLUTION = ROOT / "solutions" / "00_bits_and_bytes.ipynb"
TIMEOUT = 45  # seconds per notebook; a normal run of notebook 00 takes about 10 s on 2 busy cores


def _with_cell_before_check(source: Path, code: str) -> str:
    nb = nbformat.read(source, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "check(" in c.source)
    nb.cells.insert(at, nbformat.v4.new_code_cell(code))
    return nbformat.writes(nb)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _submissions(folder: Path) -> None:
    folder.mkdir()
    (folder / "finished.ipynb").write_bytes(SOLUTION.read_bytes())
    (folder / "untouched.ipynb").write_bytes(EXERCISE.read_bytes())
    raw = EXERCISE.read_bytes()
    (folder / "broken_json.ipynb").write_bytes(raw.replace(b'"cells": [', b'"cells": [,,{oops', 1))
    (folder / "endless_loop.ipynb").write_text(_with_cell_before_check(SOLUTION, "while True:\n    pass"))
    (folder / "dying_kernel.ipynb").write_text(_with_cell_before_check(SOLUTION, "import os\nos._exit(3)"))
    escape = (
        "import glob, os, shutil\n"
        "open('../escaped.txt', 'w').write('written outside my folder')\n"
        "open('../../escaped.txt', 'w').write('written further outside')\n"
        "for name in glob.glob('*.ipynb'):\n"
        "    os.remove(name)  # deletes the other submissions, in the copy\n"
        "print('x' * 5_000_000)  # and a huge output\n"
    )
    (folder / "escaper.ipynb").write_text(_with_cell_before_check(SOLUTION, escape))


def test_grade_six_awkward_submissions(tmp_path):
    subs = tmp_path / "submissions"
    _submissions(subs)
    before = {p.name: _sha(p) for p in subs.iterdir()}
    out = tmp_path / "out" / "grades.csv"

    proc = subprocess.run(
        [sys.executable, "-m", "minicomp", "grade", str(subs), "--timeout", str(TIMEOUT), "--out", str(out),
         "--jobs", "2"],   # two at once: the rows still come in the notebooks' order
        cwd=tmp_path, capture_output=True, text=True, timeout=6 * (TIMEOUT + 60) + 60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # every submission is byte-identical, and nothing new appeared beside them or above them
    assert {p.name: _sha(p) for p in subs.iterdir()} == before
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path.parent / "escaped.txt").exists()

    with out.open(newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert json.loads(out.with_suffix(".json").read_text())  # the JSON beside it
    assert set(rows) == {"finished", "untouched", "broken_json", "endless_loop", "dying_kernel", "escaper"}
    assert all(r["exercise"] == "weight_bytes" and r["reason"] for r in rows.values()), rows

    assert (rows["finished"]["status"], rows["finished"]["passed"], rows["finished"]["total"]) == ("ok", "8", "8")
    assert rows["untouched"]["status"] == "ok" and rows["untouched"]["passed"] == "0"
    assert "not done" in rows["untouched"]["reason"]
    assert rows["broken_json"]["status"] == "invalid notebook"
    assert rows["endless_loop"]["status"] == "timeout"
    assert rows["dying_kernel"]["status"] == "kernel died"
    assert (rows["escaper"]["status"], rows["escaper"]["passed"]) == ("ok", "8")

    for name in rows:  # the terminal summary names every student
        assert name in proc.stdout
    with out.open(newline="") as f:   # in the notebooks' (sorted) order, whatever finished first
        assert [r["student"] for r in csv.DictReader(f)] == sorted(rows)
    assert sorted(line.split()[0] for line in proc.stdout.splitlines() if line.startswith("[")) == \
        [f"[{i}/6]" for i in range(1, 7)]


def test_jobs_must_be_at_least_one(tmp_path, capsys):
    assert grader.main([str(SOLUTION), "--jobs", "0", "--out", str(tmp_path / "g.csv")]) == 2
    assert "--jobs=0 must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="jobs=0 must be a positive int"):
        grader.grade([SOLUTION], jobs=0)


def test_exception_in_check_cell_is_an_error_row(tmp_path):
    nb = tmp_path / "raises.ipynb"
    nb.write_text(_with_cell_before_check(SOLUTION, "del weight_bytes"))
    rows = grader.grade_notebook(nb, timeout=TIMEOUT)
    assert [(r.exercise, r.status) for r in rows] == [("weight_bytes", "error")]
    assert "NameError" in rows[0].reason


def test_expected_exercises_read_from_source_even_when_broken():
    text = EXERCISE.read_text()
    assert grader.expected_exercises(text) == ["weight_bytes"]
    assert grader.expected_exercises(text[: len(text) * 3 // 4].replace("{", "")) == ["weight_bytes"]
    assert grader.expected_exercises('check("a", f)\ncheck(\'b\', g)\ncheck("a", h)') == ["a", "b"]


def test_report_mime_matches_grading():
    assert grader.REPORT_MIME == grading.REPORT_MIME
    assert grader.REPORTS_ENV == grading.REPORTS_ENV


def test_printed_deleted_and_unvalidated_checks_named_twice_in_a_shared_folder(tmp_path):
    """What learners really hand in: a report printed rather than displayed (counted), a check
    cell deleted (a row that says so: the course's exercise has one), a notebook written by a
    tool that leaves out execution_count (run, as Jupyter would). A notebook named twice is graded
    once, and a notebook does not see the other notebooks of its folder."""
    stem = EXERCISE.stem
    solution = nbformat.read(SOLUTION, as_version=4)
    check_cell = next(c for c in solution.cells if c.cell_type == "code" and "check(" in c.source)

    def write(path: Path, edit) -> None:
        nb = nbformat.read(SOLUTION, as_version=4)
        edit(nb)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(nbformat.writes(nb) if not isinstance(nb, str) else nb)

    def printed(nb):
        cell = next(c for c in nb.cells if c.source == check_cell.source)
        cell.source = f"print({cell.source.strip()})"

    def deleted(nb):
        nb.cells = [c for c in nb.cells if c.source != check_cell.source]

    write(tmp_path / "alice" / f"{stem}.ipynb", printed)
    write(tmp_path / "carl" / f"{stem}.ipynb", deleted)
    fred = json.loads(nbformat.writes(solution))
    for cell in fred["cells"]:
        cell.pop("execution_count", None)
        cell.pop("outputs", None) if cell["cell_type"] == "code" else None
    with pytest.raises(nbformat.ValidationError):
        nbformat.validate(nbformat.from_dict(fred))
    (tmp_path / "fred").mkdir()
    (tmp_path / "fred" / f"{stem}.ipynb").write_text(json.dumps(fred))
    alone = "import glob\nassert glob.glob('*.ipynb') == ['dana.ipynb'], glob.glob('*.ipynb')"
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "dana.ipynb").write_text(_with_cell_before_check(SOLUTION, alone))
    (tmp_path / "shared" / "erin.ipynb").write_bytes(EXERCISE.read_bytes())

    notebooks = grader.find_notebooks([tmp_path, tmp_path / "shared" / "dana.ipynb"])
    assert len(notebooks) == 5
    rows = {r.student: r for r in grader.grade(notebooks, timeout=TIMEOUT, jobs=2)}
    assert set(rows) == {f"{who}/{stem}" for who in ("alice", "carl", "fred")} | {"dana", "erin"}
    assert (rows[f"alice/{stem}"].status, rows[f"alice/{stem}"].passed) == ("ok", 8)
    carl = rows[f"carl/{stem}"]
    assert (carl.exercise, carl.status, carl.passed) == ("weight_bytes", "error", 0)
    assert "was its cell deleted?" in carl.reason
    assert (rows[f"fred/{stem}"].status, rows[f"fred/{stem}"].passed) == ("ok", 8)
    assert (rows["dana"].status, rows["dana"].passed) == ("ok", 8), rows["dana"].reason
    assert "not done" in rows["erin"].reason


def test_recorded_reports_are_read_with_a_bound(tmp_path, monkeypatch):
    path = tmp_path / "reports.jsonl"
    assert grader._read_recorded(path) == []   # no file: nothing recorded
    monkeypatch.setenv(grading.REPORTS_ENV, str(path))
    grading.check("weight_bytes", lambda num_params, bits: (num_params * bits + 7) // 8)
    grading.check("weight_bytes", lambda num_params, bits: num_params * bits // 8)
    with path.open("a") as f:
        f.write('{"name": "cut sh')   # a kernel killed while it wrote
    got = grader._read_recorded(path)
    assert [(r["name"], r["status"], r["n_passed"]) for r in got] == [("weight_bytes", "passed", 8),
                                                                    ("weight_bytes", "failed", 5)]
    monkeypatch.setattr(grader, "_MAX_REPORTS", 1)
    assert len(grader._read_recorded(path)) == 1


def test_bad_paths_and_options(tmp_path):
    with pytest.raises(ValueError, match="path="):
        grader.find_notebooks([tmp_path / "missing"])
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="path="):
        grader.find_notebooks([tmp_path / "a.txt"])
    with pytest.raises(ValueError, match="timeout="):
        grader.grade_notebook(EXERCISE, timeout=0)
    with pytest.raises(ValueError, match="out="):
        grader.write_reports([], tmp_path / "grades.txt")
    assert grader.main([str(tmp_path)]) == 2  # a folder without notebooks: a usage error


def test_same_file_name_in_student_folders_and_the_reason_a_check_failed(tmp_path):
    """A folder per student, each with the same file name: the rows tell them apart. A failed
    check's row says what the learner saw: the first failure and the hint, not just 'failed'."""
    for student in ("alice", "bob"):
        (tmp_path / student).mkdir()
    (tmp_path / "alice" / "00.ipynb").write_bytes(SOLUTION.read_bytes())
    wrong = SOLUTION.read_text().replace("(num_params * bits + 7) // 8", "num_params * bits // 8")  # rounds down
    assert wrong != SOLUTION.read_text()
    (tmp_path / "bob" / "00.ipynb").write_text(wrong)
    rows = {r.student: r for r in grader.grade([tmp_path], timeout=TIMEOUT, jobs=2)}
    assert set(rows) == {"alice/00", "bob/00"}
    assert rows["alice/00"].reason == "passed"
    bob = rows["bob/00"].reason
    assert bob.startswith("failed: ") and "Hint: " in bob and len(bob) > len("failed: Hint: "), bob
    assert grader.student_names([Path("/a/x.ipynb"), Path("/b/y.ipynb")]) == {Path("/a/x.ipynb"): "x",
                                                                              Path("/b/y.ipynb"): "y"}


def test_kill_uses_taskkill_on_windows_and_ignores_a_gone_process(monkeypatch):
    calls = []
    monkeypatch.setattr(grader.os, "name", "nt")
    monkeypatch.setattr(grader.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    grader._kill(1234, group=True)
    grader._kill(1234)
    grader._kill(None, group=True)
    assert calls == [["taskkill", "/F", "/T", "/PID", "1234"], ["taskkill", "/F", "/PID", "1234"]]

    def no_taskkill(cmd, **kw):
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(grader.subprocess, "run", no_taskkill)
    grader._kill(1234, group=True)  # says nothing: there is nothing more it could do



class _FlakyKernelClient:
    """Stands in for nbclient's NotebookClient: its kernel dies before replying `deaths` times."""

    def __init__(self, deaths: int):
        self.deaths, self.starts, self.shutdowns = deaths, 0, 0
        self.km = self.kc = None

    def create_kernel_manager(self):
        client = self

        class Manager:
            def shutdown_kernel(self, now=False):
                client.shutdowns += 1
        return Manager()

    def start_new_kernel(self):
        self.starts += 1

    def start_new_kernel_client(self):
        if self.starts <= self.deaths:
            raise RuntimeError("Kernel died before replying to kernel_info")
        self.kc = "client"


def test_a_kernel_that_dies_before_it_answers_is_started_again():
    """Two kernels started at once can race for the same free ports (a CI flake of this test file,
    "Kernel died before replying to kernel_info"): the grader starts such a kernel again."""
    client, started = _FlakyKernelClient(deaths=2), []
    grader._start_kernel(client, grader.time.monotonic() + 60, lambda: started.append(client.starts))
    assert (client.starts, client.shutdowns, client.kc) == (3, 2, "client")
    assert started == [1, 2, 3]   # each kernel's pid is recorded as it starts, before it answers
    assert client.km is not None

    client = _FlakyKernelClient(deaths=3)   # three deaths in a row: the error is the grader's row
    with pytest.raises(RuntimeError, match="Kernel died"):
        grader._start_kernel(client, deadline=grader.time.monotonic() + 60)
    assert client.starts == 3 and client.km is None and client.kc is None

    client = _FlakyKernelClient(deaths=1)   # past the notebook's deadline: no second start
    with pytest.raises(RuntimeError, match="Kernel died"):
        grader._start_kernel(client, deadline=grader.time.monotonic() - 1)
    assert client.starts == 1


def test_each_row_names_its_own_cells_error_and_the_notebooks_other_errors(tmp_path):
    """A teacher's audit: every failed row blamed the notebook's first error, even one in an
    unrelated cell, and a notebook that raised before a check that passed said nothing of it."""
    subs = tmp_path / "class"
    for who in ("ann", "ben", "cat"):
        (subs / who).mkdir(parents=True)
    unrelated = "import numpyy   # a typo in a cell that the exercise does not need"
    (subs / "ann" / "00_bits_and_bytes.ipynb").write_text(_with_cell_before_check(SOLUTION, unrelated))
    misspelt = _with_cell_before_check(SOLUTION, unrelated).replace(
        'check(\\"weight_bytes\\", weight_bytes)', 'check(\\"weight_bytes\\", weight_byte)')
    assert "weight_byte)" in misspelt
    (subs / "ben" / "00_bits_and_bytes.ipynb").write_text(misspelt)
    (subs / "cat" / "answer.py").write_text("def weight_bytes(n, b): ...\n")   # no notebook handed in
    (subs / "ann" / "data").mkdir()   # a folder beside a notebook is its data, not a student
    rows = {r.student: r for r in grader.grade([subs], timeout=TIMEOUT, jobs=2)}
    assert set(rows) == {"ann/00_bits_and_bytes", "ben/00_bits_and_bytes", "cat"}
    ann, ben, cat = rows["ann/00_bits_and_bytes"], rows["ben/00_bits_and_bytes"], rows["cat"]
    assert (ann.status, ann.passed) == ("ok", 8) and ann.reason.startswith("passed [the notebook also: cell ")
    assert "ModuleNotFoundError" in ann.reason
    assert ben.status == "error" and "NameError" in ben.reason and "weight_byte" in ben.reason, ben
    # its own cell's error first (it was the first one of the notebook alone), then the other
    assert ben.reason.index("weight_byte") < ben.reason.index("[the notebook also: ") < ben.reason.index("numpyy")
    assert (cat.status, cat.exercise) == ("error", "") and cat.reason == \
        "no .ipynb notebook in this folder (it holds answer.py)"


def test_names_keep_the_student_folder_and_a_notebook_without_checks_is_an_error(tmp_path):
    (tmp_path / "jane").mkdir()
    (tmp_path / "jane" / "untitled.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1")])))
    (tmp_path / "kim.ipynb").write_text("{}")
    found = grader._find([tmp_path, tmp_path / "kim.ipynb"])
    names = grader.student_names(list(found), list(found.values()))
    assert sorted(names.values()) == ["jane/untitled", "kim"]   # was "untitled": whose?
    (row,) = grader.grade([tmp_path / "jane"], timeout=TIMEOUT)
    assert row.status == "error" and row.reason.startswith("no check(...) calls found"), row   # was "ok"


def test_a_cut_off_course_notebook_gets_a_row_for_each_of_its_exercises(tmp_path):
    text = (ROOT / "solutions" / "04_affine_map.ipynb").read_text()
    cut = tmp_path / "04_affine_map.ipynb"
    cut.write_text(text[: len(text) // 3])
    rows = grader.grade_notebook(cut, timeout=TIMEOUT)
    assert {r.exercise for r in rows} == set(grader.course_exercises("04_affine_map")) and len(rows) >= 3
    assert all(r.status == "invalid notebook" for r in rows)


def test_ctrl_c_stops_the_grading_and_keeps_what_was_graded(tmp_path, monkeypatch, capsys):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.ipynb").write_text("{}")

    def grade_notebook(path, timeout, student):
        if path.stem == "b":
            raise KeyboardInterrupt
        return [grader.Row(student, "x", 1, 1, "ok", "passed", str(path))]

    monkeypatch.setattr(grader, "grade_notebook", grade_notebook)
    for jobs in (1, 2):
        with pytest.raises(grader.GradingInterrupted) as stop:
            grader.grade([tmp_path], timeout=10, jobs=jobs)
        graded = [r.student for r in stop.value.rows]
        if jobs == 1:
            assert graded == ["a"] and stop.value.graded == 1
        else:   # with two at once, c may have finished too
            assert graded in (["a"], ["a", "c"]) and stop.value.graded == len(graded)
        assert stop.value.total == 3
    out = tmp_path / "out" / "g.csv"
    assert grader.main([str(tmp_path), "--out", str(out), "--jobs", "1"]) == 130
    assert [r["student"] for r in csv.DictReader(out.open())] == ["a"]
    assert "interrupted" in capsys.readouterr().err


def test_an_unwritable_out_is_refused_before_grading_and_copies_say_the_same_file(tmp_path, capsys):
    nb = tmp_path / "a.ipynb"
    nb.write_bytes(SOLUTION.read_bytes())
    assert grader.main([str(nb), "--out", str(nb / "g.csv")]) == 2   # its folder would be a file
    assert "cannot write in" in capsys.readouterr().err
    assert grader.main([str(nb), "--out", ""]) == 2
    assert "--out='' must be a .csv" in capsys.readouterr().err   # was "--out='.'"
    (tmp_path / "old.csv").mkdir()
    assert grader.main([str(nb), "--out", str(tmp_path / "old.csv")]) == 2
    assert "is a folder, where the grader writes a file" in capsys.readouterr().err
    (tmp_path / "b.ipynb").write_bytes(SOLUTION.read_bytes())
    (tmp_path / "c.ipynb").write_text("{}")
    (tmp_path / "d.ipynb").write_text("")
    (tmp_path / "e.ipynb").write_text("")
    assert grader.identical_files([nb, tmp_path / "b.ipynb", tmp_path / "c.ipynb", tmp_path / "d.ipynb",
                                   tmp_path / "e.ipynb"]) == [[nb, tmp_path / "b.ipynb"]]
    assert grader.identical_files([nb, tmp_path / "b.ipynb"], ignore={grader._sha256(nb)}) == []
    assert EXERCISE.read_bytes() and grader._sha256(EXERCISE) in grader._course_notebooks()   # untouched: alike


def test_the_copy_of_a_folder_leaves_out_the_graders_own_folders_and_is_bounded(tmp_path):
    """A notebook saved in the temporary folder copied its own copy, over and over; one in a home
    folder copied all of it."""
    (tmp_path / "minicomp-grade-abc").mkdir()
    (tmp_path / "small.txt").write_bytes(b"x" * 10)
    (tmp_path / "big.bin").write_bytes(b"x" * 1000)
    budget = grader._CopyBudget(500)
    skipped = budget(str(tmp_path), sorted(p.name for p in tmp_path.iterdir()))
    assert skipped == {"minicomp-grade-abc", "big.bin"} and budget.left_out == 1 and budget.left == 490


def test_a_runner_started_after_ctrl_c_is_killed_at_once(tmp_path):
    """With --jobs, a notebook still being copied when Ctrl-C came started its runner afterwards,
    which then ran to its timeout."""
    nb = tmp_path / "a.ipynb"
    nb.write_text(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time; time.sleep(60)")])))
    grader._STOPPING.set()
    try:
        start = grader.time.monotonic()
        state = grader._run_child(nb, tmp_path / "result.json", 60)
        assert grader.time.monotonic() - start < 20 and state["status"] == "error", state
    finally:
        grader._STOPPING.clear()
    assert not grader._RUNNING


def test_symlinked_student_folders_and_a_file_that_cannot_be_graded(tmp_path, monkeypatch):
    """A class folder of links to each student's folder found nothing in them (pathlib's rglob does
    not follow links); one notebook that could not be read stopped the whole run with a traceback."""
    (tmp_path / "real" / "jane").mkdir(parents=True)
    (tmp_path / "real" / "jane" / "hw.ipynb").write_text("{}")
    (tmp_path / "class" / "bob").mkdir(parents=True)
    (tmp_path / "class" / "bob" / "hw.ipynb").write_text("{}")
    (tmp_path / "class" / "jane").symlink_to(tmp_path / "real" / "jane")
    (tmp_path / "class" / "bob" / "up").symlink_to(tmp_path / "class")   # a loop: each folder once
    (tmp_path / "class" / "bob" / "x.ipynb").mkdir()                     # a folder named like a notebook
    found = grader._find([tmp_path / "class"])
    assert [p.relative_to(tmp_path / "class").as_posix() for p in found] == ["bob/hw.ipynb", "jane/hw.ipynb"]
    assert grader.folders_without_notebooks([tmp_path / "class"]) == {}

    def grade_notebook(path, timeout, student):
        if student == "bob/hw":
            raise PermissionError(13, "Permission denied", str(path))
        return [grader.Row(student, "x", 1, 1, "ok", "passed", str(path))]

    monkeypatch.setattr(grader, "grade_notebook", grade_notebook)
    rows = grader.grade([tmp_path / "class"], timeout=10)
    assert [(r.student, r.status) for r in rows] == [("bob/hw", "error"), ("jane/hw", "ok")]
    assert rows[0].reason.startswith("cannot grade it: PermissionError")


def test_the_rows_own_reason_is_never_cut_off_by_another_cells_error():
    state = {"status": "done", "errors": [[2, "cell 3 ('import torch.cuda'): RuntimeError: " + "x" * 400],
                                          [5, "cell 6 ('check(\"weight_bytes\", f)'): NameError: name 'f' is not defined"]],
             "recorded": [{"name": "quantize", "status": "failed", "n_passed": 1, "n_total": 6,
                           "message": "1 of 6", "problem": "case 4: expected 3 but got 2", "hint": "round"}]}
    rows = {r.exercise: r for r in grader._rows("s", "s.ipynb", ["weight_bytes", "quantize"], state, 60,
                                                check_cells={"weight_bytes": 5, "quantize": 8})}
    q, w = rows["quantize"].reason, rows["weight_bytes"].reason
    assert q.startswith("failed: 1 of 6 | case 4: expected 3 but got 2 | Hint: round [the notebook also: cell 3")
    assert w.startswith("cell 6 ('check(\"weight_bytes\", f)'): NameError") and "[the notebook also: cell 3" in w
    assert len(q) <= 300 and len(w) <= 300


def test_a_copy_too_big_to_copy_is_named_on_the_rows(tmp_path, monkeypatch):
    (tmp_path / "a.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import os; assert not os.path.exists('big.bin')")])))
    (tmp_path / "big.bin").write_bytes(b"x" * 2000)
    monkeypatch.setattr(grader, "MAX_COPY_BYTES", 1000)
    (row,) = grader.grade_notebook(tmp_path / "a.ipynb", timeout=TIMEOUT)
    assert row.reason.startswith("[1 file(s) beside it not copied"), row
    assert "AssertionError" not in row.reason   # the notebook ran, without big.bin


def test_the_terminal_ends_with_a_line_per_student():
    rows = [grader.Row("alice", "quantize", 6, 6, "ok", "passed", "a.ipynb"),
            grader.Row("alice", "dequantize", 3, 6, "ok", "failed: ...", "a.ipynb"),
            grader.Row("bob", "quantize", 0, 6, "timeout", "no report", "b.ipynb"),
            grader.Row("bob", "bonus", 0, None, "error", "unknown exercise", "b.ipynb"),
            grader.Row("hank", "", 0, None, "error", "no .ipynb notebook in this folder", "hank")]
    assert grader.format_students(rows).splitlines() == [
        "alice  1 of 2 exercise(s) passed, 9 of 12 checks",
        "bob    0 of 2 exercise(s) passed, 0 of 6 checks",
        "hank   no exercise graded"]


def test_a_folder_named_on_its_own_without_notebooks_gets_a_row(tmp_path):
    (tmp_path / "hank").mkdir()
    (tmp_path / "hank" / "answers.py").write_text("x = 1\n")
    (tmp_path / "empty").mkdir()
    assert grader.folders_without_notebooks([tmp_path / "hank", tmp_path / "empty"]) == {
        tmp_path / "hank": ["answers.py"], tmp_path / "empty": []}


def test_progress_lines_from_several_jobs_never_share_a_line(tmp_path, monkeypatch, capsys):
    # found in CI: with --jobs 2 one "[4/6] grading ..." line was missing, printed onto another
    # (print writes its text and its newline apart, and two threads can come in between)
    import threading
    import time

    for i in range(8):
        shutil.copy(SOLUTION, tmp_path / f"s{i}.ipynb")

    class Slow:   # a terminal slow enough to interleave two threads' writes
        def __init__(self):
            self.parts = []

        def write(self, text):
            self.parts.append(text)
            time.sleep(0.002)
            return len(text)

        def flush(self):
            pass

    slow = Slow()

    def fake_grade(paths, timeout, jobs, progress):
        threads = [threading.Thread(target=progress, args=(nb,)) for nb in sorted(tmp_path.glob("*.ipynb"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return []

    monkeypatch.setattr(grader, "grade", fake_grade)
    monkeypatch.setattr(sys, "stdout", slow)
    grader.main([str(tmp_path), "--jobs", "8", "--out", str(tmp_path / "g.csv")])
    lines = "".join(slow.parts).splitlines()
    assert sorted(line.split()[0] for line in lines if line.startswith("[")) == [f"[{i}/8]" for i in range(1, 9)]
