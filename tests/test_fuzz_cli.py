"""Bad input to the `minicomp` command line: each gets a one-line `error:` naming the option, never a
traceback, a silent exit 0, or a run that cannot work. Every case stops before any work starts."""

import sys

import pytest

from minicomp import bench, course, tour
from minicomp.cli import main


def _usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_lab_refuses_a_port_out_of_range(port, capsys, monkeypatch):
    # before: JupyterLab started and printed http://localhost:70000/..., a URL that cannot work
    monkeypatch.setattr("os.execv", lambda *a: pytest.fail("started JupyterLab"))
    err = _usage_error(["lab", "--no-browser", "--port", port], capsys)
    assert "argument --port" in err and repr(port) in err and "65535" in err


@pytest.mark.parametrize("argv", [["course", "check"], ["lab", "--no-browser"]])
def test_course_and_lab_outside_the_course_folder_say_so(argv, capsys, monkeypatch):
    # before: a FileNotFoundError traceback (an install from a wheel, run outside the course folder)
    def nowhere(start=None):
        raise FileNotFoundError("could not find the course folder (one holding lessons/ and pyproject.toml) "
                                "above /tmp; run this from inside the minicomp repository")

    monkeypatch.setattr(course, "repo_root", nowhere)
    monkeypatch.setattr("os.execv", lambda *a: pytest.fail("started JupyterLab"))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not find the course folder") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, option", [(["tour", "--out", ""], "--out"), (["bench", "--out", ""], "--out")])
def test_an_empty_out_is_refused(argv, option, capsys, monkeypatch):
    # before: an empty --out silently meant the current folder, and the plots or JSON landed there
    monkeypatch.setattr(tour, "run_tour", lambda **k: pytest.fail("ran the tour"))
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("ran the benchmark"))
    err = _usage_error(argv, capsys)
    assert f"argument {option}" in err and "--out=''" in err and "--out ." in err


@pytest.mark.parametrize("args", [["--sizes", "1000000000x1000000000"], ["--batches", "1000000000"]])
def test_bench_refuses_sizes_that_cannot_fit_in_memory(args, capsys, monkeypatch):
    # before: a RuntimeError traceback from torch ("can't allocate memory") once the run had started
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("ran the benchmark"))
    assert main(["bench", "--device", "cpu", "--no-save", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --sizes") and "--batches" in err and "of memory" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("source, code, said", [
    # before: both exited 0 with no output at all, as if nothing were wrong
    ("import sys\nsys.exit(0)\ndef weight_bytes(n, bits):\n    return 1\n", 2, "called sys.exit(0)"),
    # the function's own exit is a failed case of the report, as in a notebook (check catches it)
    ("def weight_bytes(n, bits):\n    raise SystemExit(0)\n", 1, "your function called exit() (SystemExit: 0)"),
])
def test_check_reports_a_sys_exit_instead_of_exiting_silently(source, code, said, tmp_path, capsys, monkeypatch):
    (tmp_path / "answers.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", "weight_bytes", "answers.py:weight_bytes"]) == code
    out = capsys.readouterr()
    assert said in out.out + out.err and "Traceback" not in out.out + out.err


def test_check_says_a_target_that_is_a_folder_is_a_folder(tmp_path, capsys, monkeypatch):
    # before: "no file '.../answers.py'", though there was one: a folder of that name
    (tmp_path / "answers.py").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["check", "weight_bytes", "answers.py:weight_bytes"]) == 2
    assert "is a folder, not a .py file" in capsys.readouterr().err
    (tmp_path / "sub").mkdir()
    (tmp_path / "notes.txt").write_text("def f(): pass\n")
    for target, said in [("sub:f", "'sub' is a folder"),        # was "'sub' has no 'f'"
                         (".:f", "'.' is a folder"),            # was a TypeError about relative imports
                         ("notes.txt:f", "is not a .py file"),  # was "install it (pip install notes)"
                         ("ex.ipynb:f", 'In the notebook, run check("weight_bytes", f) in a cell')]:  # was "no file 'ex.ipynb.py'"
        assert main(["check", "weight_bytes", target]) == 2
        assert said in capsys.readouterr().err, target
    (tmp_path / "answers").mkdir()   # a folder beside answers.py: the MODULE form still loads the file
    (tmp_path / "answers.py").rmdir()
    (tmp_path / "answers.py").write_text("def weight_bytes(n, b):\n    return (n * b + 7) // 8\n")
    assert main(["check", "weight_bytes", "answers:weight_bytes"]) == 0


def test_minicomp_alone_prints_the_commands(capsys):
    assert main([]) == 0   # was "the following arguments are required: command", exit 2
    assert "course,lab,tour,bench,check,grade,doctor" in capsys.readouterr().out


def test_a_misspelt_command_gets_did_you_mean(capsys):
    assert main(["chek", "weight_bytes"]) == 2
    assert "there is no command 'chek'; did you mean 'check'?" in capsys.readouterr().err


def test_check_with_its_arguments_swapped_says_which_comes_first(tmp_path, capsys, monkeypatch):
    # before: "target='weight_bytes' should look like FILE.py:FUNCTION", which did not say why
    monkeypatch.chdir(tmp_path)
    assert main(["check", "answers.py:weight_bytes", "weight_bytes"]) == 2
    assert "the exercise's name comes first, as in minicomp check weight_bytes answers.py:weight_bytes" \
        in capsys.readouterr().err


def test_check_given_a_file_alone_takes_the_function_named_like_the_exercise(tmp_path, capsys, monkeypatch):
    (tmp_path / "answers.py").write_text("def weight_bytes(n, b):\n    return (n * b + 7) // 8\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", "weight_bytes", "answers.py"]) == 0
    assert "all 8 checks passed" in capsys.readouterr().out


def test_check_that_runs_too_long_reports_the_case(tmp_path, capsys, monkeypatch):
    # before: only "the check took longer than 15 s and was stopped", with no case named
    (tmp_path / "answers.py").write_text("def weight_bytes(n, b):\n    while n > 100:\n        pass\n    return (n * b + 7) // 8\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", "weight_bytes", "answers.py:weight_bytes", "--timeout", "1"]) == 1
    out = capsys.readouterr().out
    assert "1,000 float16 weights" in out and "still running after" in out


def test_check_given_a_file_alone_and_a_misspelt_exercise_names_the_exercise(tmp_path, capsys, monkeypatch):
    # review: it said "'answers.py' has no 'weight_byte'", inviting a rename of a function that was right
    (tmp_path / "answers.py").write_text("def weight_bytes(n, b):\n    return (n * b + 7) // 8\n")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "weight_byte", "answers.py"]) == 2
    assert "there is no exercise called 'weight_byte'; did you mean 'weight_bytes'?" in capsys.readouterr().err
