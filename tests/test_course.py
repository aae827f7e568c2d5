"""The notebook pipeline: solution stripping, pair syncing, and `minicomp course check`."""

import shutil
import sys
from pathlib import Path

import pytest

from minicomp import course
from minicomp.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_strip_solutions_keeps_indentation_and_everything_else():
    src = (
        "x = 1\n"
        "def f(a):\n"
        "    '''doc'''\n"
        "    ### BEGIN SOLUTION\n"
        "    return a + 1\n"
        "    ### END SOLUTION\n"
        "y = 2\n"
    )
    out = course.strip_solutions(src)
    assert "return a + 1" not in out
    assert "    # YOUR CODE HERE\n    raise NotImplementedError(" in out
    assert out.startswith("x = 1\ndef f(a):\n    '''doc'''\n") and out.endswith("y = 2\n")
    namespace = {}
    exec(out, namespace)
    with pytest.raises(NotImplementedError):
        namespace["f"](1)


@pytest.mark.parametrize(
    "src,message",
    [
        ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "inside a function"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
        ("def f():\n    return 1\n    ### END SOLUTION\n", "without a matching"),
        ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n", "inside the block"),
    ],
)
def test_strip_solutions_rejects_bad_markers(src, message):
    with pytest.raises(ValueError, match=message):
        course.strip_solutions(src, "nb.py")


def test_repository_course_is_in_sync():
    problems = course.check(ROOT)
    assert problems == [], "\n".join(map(str, problems))
    assert main(["course", "check"]) == 0


def test_every_folder_has_notebooks():
    for folder in course.FOLDERS:
        assert list((ROOT / folder).glob("*.py")), f"{folder}/ is empty"


@pytest.fixture
def course_copy(tmp_path):
    for folder in course.FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "jupytext.toml", tmp_path)
    assert course.check(tmp_path) == []
    return tmp_path


def _first(root, folder, suffix):
    return sorted((root / folder).glob(f"*{suffix}"))[0]


def test_check_catches_py_edited_alone(course_copy):
    py = _first(course_copy, "lessons", ".py")
    py.write_text(py.read_text() + "\n# %%\nprint('a new cell')\n")
    problems = course.check(course_copy)
    assert any("out of sync" in p.what and p.path.suffix == ".ipynb" for p in problems)
    course.sync(course_copy)
    assert course.check(course_copy) == []


def test_sync_and_build_leave_what_is_in_sync_untouched(course_copy):
    files = sorted(p for f in course.FOLDERS for p in (course_copy / f).iterdir())
    before = {p: p.read_bytes() for p in files}
    assert course.sync(course_copy) == [] and course.build_exercises(course_copy) == []
    assert {p: p.read_bytes() for p in files} == before   # cell ids included: no churn in a diff
    py = _first(course_copy, "lessons", ".py")
    py.write_text(py.read_text() + "\n# %%\nprint('a new cell')\n")
    assert course.sync(course_copy) == [py.with_suffix(".ipynb")]   # only the pair that needed it


def test_check_catches_ipynb_edited_alone(course_copy):
    import nbformat

    ipynb = _first(course_copy, "lessons", ".ipynb")
    nb = nbformat.read(ipynb, as_version=4)
    nb.cells[-1].source += "\nprint('edited in the browser only')"
    nbformat.write(nb, ipynb)
    assert any("out of sync" in p.what for p in course.check(course_copy))


def test_check_catches_outputs(course_copy):
    import nbformat

    ipynb = _first(course_copy, "lessons", ".ipynb")
    nb = nbformat.read(ipynb, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="hello")]
    nbformat.write(nb, ipynb)
    assert any("outputs" in p.what for p in course.check(course_copy))


def test_check_catches_stale_exercise_and_build_fixes_it(course_copy):
    sol = _first(course_copy, "solutions", ".py")
    sol.write_text(sol.read_text().replace("# %% [markdown]", "# %% [markdown]\n# A new sentence.", 1))
    course.sync(course_copy)
    problems = course.check(course_copy)
    assert any("stale" in p.what for p in problems)
    course.build_exercises(course_copy)
    assert course.check(course_copy) == []


def test_built_exercise_has_stub_not_solution():
    for name, text in course.built_exercises(ROOT).items():
        solution = (ROOT / "solutions" / name).read_text()
        assert course.BEGIN in solution and course.BEGIN not in text
        assert "NotImplementedError" in text


def test_check_catches_missing_pair(course_copy):
    _first(course_copy, "lessons", ".ipynb").unlink()
    assert any("no paired" in p.what for p in course.check(course_copy))


# ── `minicomp check`: what a learner types in a terminal ─────────────────────────────────────
def _answers(folder):
    (folder / "good.py").write_text("import math\n\ndef weight_bytes(num_params, bits):\n"
                                    "    return math.ceil(num_params * bits / 8)\n\n"
                                    "def loops(num_params, bits):\n    while True:\n        pass\n")
    (folder / "broken.py").write_text("def weight_bytes(n, bits)\n    return 1\n")
    (folder / "raises.py").write_text("def weight_bytes(n, bits):\n    return 1\n\nprint(1 / 0)\n")
    (folder / "value.py").write_text("weight_bytes = 3\n")
    (folder / "loops_on_load.py").write_text("while True:\n    pass\n")


@pytest.mark.parametrize("target, said", [
    ("good.py:weight_bytes", None),                               # a path: passes
    ("good:weight_bytes", None),                                  # a module in the current folder: passes
    ("broken.py:weight_bytes", "broken.py, line 1: SyntaxError"),
    ("nosuch:weight_bytes", "no module 'nosuch' in the current folder"),
    ("nosuch.py:weight_bytes", "no file"),
    ("good.py:nosuchfn", "the functions defined there: loops, weight_bytes"),
    ("good.py:weight_byte", "did you mean 'weight_bytes'?"),
    ("raises.py:weight_bytes", "ZeroDivisionError: division by zero at line 4 (print(1 / 0))"),
    ("value.py:weight_bytes", "is not a function (its type: int)"),
    ("good", "should look like FILE.py:FUNCTION"),
])
def test_check_loads_answers_or_says_why_in_one_line(tmp_path, monkeypatch, capsys, target, said):
    _answers(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(["check", "weight_bytes", target])
    err = capsys.readouterr().err
    if said is None:
        assert code == 0 and err == ""
    else:
        assert code == 2 and said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1



def test_check_runs_an_exercise_that_the_file_registers(tmp_path, monkeypatch, capsys):
    """A teacher's own exercise: the answer file registers its checker (the README's example).
    The name used to be refused before the file was loaded."""
    (tmp_path / "mine.py").write_text(
        "from minicomp.grading import Case, register\n"
        "register('_cli_double', params=('x',), reference=lambda x: 2 * x,\n"
        "         cases=lambda: [Case('two', (2,)), Case('minus one', (-1,))])\n"
        "def double(x):\n    return x + x\n"
        "def wrong(x):\n    return x * x\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", "_cli_double", "mine.py:double"]) == 0
    assert "all 2 checks passed" in capsys.readouterr().out
    assert main(["check", "_cli_double", "mine.py:wrong"]) == 1
    assert main(["check", "_cli_doubel", "mine.py:double"]) == 2
    assert "did you mean '_cli_double'?" not in capsys.readouterr().err   # (private names are not offered)


def test_check_names_the_known_exercises_and_stops_an_endless_loop(tmp_path, monkeypatch, capsys):
    _answers(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", "weight_byte", "good.py:weight_bytes"]) == 2
    assert "did you mean 'weight_bytes'? the exercises: " in capsys.readouterr().err
    assert main(["check", "weight_bytes", "good.py:loops", "--timeout", "1"]) == 1
    assert "your function was still running after 1 s" in capsys.readouterr().out   # the report, naming the case
    assert main(["check", "weight_bytes", "loops_on_load.py:weight_bytes", "--timeout", "1"]) == 1   # the file's top level
    assert "loading 'loops_on_load.py:weight_bytes' took longer than 1 s" in capsys.readouterr().err


@pytest.mark.parametrize("alarm", [True, False], ids=["SIGALRM", "watchdog thread (Windows)"])
def test_time_limit_stops_a_python_loop_and_leaves_nothing_behind(alarm):
    import time

    from minicomp.timelimit import TookTooLong, time_limit

    if alarm and not hasattr(__import__("signal"), "SIGALRM"):
        pytest.skip("no SIGALRM here")
    start = time.monotonic()
    with pytest.raises(TookTooLong):
        with time_limit(0.3, alarm=alarm):
            while True:
                pass
    assert 0.25 < time.monotonic() - start < 5
    with time_limit(0.2, alarm=alarm):   # a block that ends in time: no late exception afterwards
        total = sum(range(1000))
    time.sleep(0.4)
    for _ in range(100_000):
        total += 1
    assert total == 499_500 + 100_000


def test_check_stops_an_endless_loop_without_sigalrm_as_on_windows(tmp_path, monkeypatch, capsys):
    import signal

    _answers(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delattr(signal, "SIGALRM")
    assert main(["check", "weight_bytes", "good.py:loops", "--timeout", "1"]) == 1
    assert "your function was still running after 1 s" in capsys.readouterr().out
    assert main(["check", "weight_bytes", "good.py:weight_bytes"]) == 0


# ── a learner's answers are never overwritten ────────────────────────────────────────────────
_STUB = f"    {course.STUB}\n"
_ANSWER = "    return (num_params * bits + 7) // 8  # my answer\n"


def test_build_and_check_keep_answers_written_in_an_exercise(course_copy):
    py = course_copy / "exercises" / "00_bits_and_bytes.py"
    assert _STUB in py.read_text()
    py.write_text(py.read_text().replace(_STUB, _ANSWER, 1))   # as JupyterLab with jupytext saves it
    course.write_ipynb(py)
    before = {p: p.read_bytes() for p in (py, py.with_suffix(".ipynb"))}
    problems = course.check(course_copy)
    assert [p.path for p in problems] == [py] and "holds answers" in problems[0].what
    assert "my answer" in problems[0].what and "move it" in problems[0].fix   # not "run course build"
    with pytest.raises(ValueError, match=r"nothing written(.|\n)*00_bits_and_bytes.py(.|\n)*my_answers/"):
        course.build_exercises(course_copy)
    assert {p: p.read_bytes() for p in before} == before


def test_build_and_sync_keep_answers_written_in_the_ipynb_only(course_copy):
    import nbformat

    ipynb = course_copy / "exercises" / "00_bits_and_bytes.ipynb"
    nb = nbformat.read(ipynb, as_version=4)
    cell = next(c for c in nb.cells if course.STUB in c.source)
    cell.source = cell.source.replace(course.STUB, _ANSWER.strip())   # JupyterLab without jupytext
    nbformat.write(nb, ipynb)
    before = ipynb.read_bytes()
    problems = course.check(course_copy)
    assert len(problems) == 1 and "holds answers the .py lacks" in problems[0].what
    assert "jupytext --to py:percent" in problems[0].fix
    for action in (course.build_exercises, course.sync):
        with pytest.raises(ValueError, match="nothing written"):
            action(course_copy)
        assert ipynb.read_bytes() == before


@pytest.mark.parametrize("edit", [
    lambda t: t.replace('"""Bytes to store', '"""How many bytes store', 1),                   # a docstring
    lambda t: t.replace("def weight_bytes(num_params, bits):", "def weight_bytes(n, bits):", 1),
    lambda t: t.replace('# %%\ncheck("weight_bytes", weight_bytes)\n', '# %%\ncheck("weight_bytes", weight_bytes)\nx = 1\n', 1),
], ids=["docstring", "signature", "cell after"])
def test_a_teachers_edit_next_to_an_exercise_still_builds(course_copy, edit):
    sol = course_copy / "solutions" / "00_bits_and_bytes.py"
    sol.write_text(edit(sol.read_text()))
    course.sync(course_copy)
    assert course.build_exercises(course_copy)
    assert course.check(course_copy) == []


def test_check_catches_a_solution_without_a_check(course_copy):
    sol = course_copy / "solutions" / "00_bits_and_bytes.py"
    sol.write_text(sol.read_text() + '\n# %%\ndef bits_per_weight(total_bytes, num_params):\n'
                   '    """Average bits per weight."""\n    ### BEGIN SOLUTION\n'
                   '    return 8 * total_bytes / num_params\n    ### END SOLUTION\n')
    course.sync(course_copy)
    course.build_exercises(course_copy)
    problems = course.check(course_copy)
    assert len(problems) == 1 and problems[0].path == sol and "bits_per_weight()" in problems[0].what
    assert 'check("bits_per_weight", bits_per_weight)' in problems[0].fix
