"""The ``minicomp`` command.

    minicomp lab                 open the course in JupyterLab, on its start page
    minicomp tour                run the course's end-to-end demonstration in the terminal
    minicomp course build        write exercises/ from solutions/
    minicomp course sync         rewrite each .ipynb that differs from its .py source (never one holding answers)
    minicomp course check        fail if a notebook pair is out of sync, exercises/ is stale or holds answers,
                                 or a solution has no check(...)
    minicomp bench [--quick]     time the packed int4 kernels against dense float (ratios)
    minicomp check NAME FILE.py:FUNCTION
                                 check a function of yours against an exercise, in the terminal
    minicomp grade PATH... [--timeout S] [--out grades.csv] [--jobs N]
                                 run submitted exercise notebooks; one CSV/JSON row per exercise
    minicomp doctor              check this machine's setup: Python, torch, GPU, kernels, Jupyter
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

from minicomp.timelimit import TookTooLong, time_limit

START_PAGE = "lessons/00_bits_and_bytes.ipynb"


def _course_root() -> Path | None:
    """The course folder, or None after saying why there is none (a wheel install, run outside it)."""
    from minicomp.course import repo_root

    try:
        return repo_root()
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _course(args: argparse.Namespace) -> int:
    from minicomp import course

    if (root := _course_root()) is None:
        return 1
    if args.action in ("build", "sync"):
        try:
            written = course.build_exercises(root) if args.action == "build" else course.sync(root)
        except ValueError as e:   # a solution's markers, or a learner's answers it will not overwrite
            print(f"error: {e}", file=sys.stderr)
            return 1
        for path in written:
            print(f"wrote {path.relative_to(root)}")
        if not written:
            print("nothing to write: " + ("exercises/ is up to date" if args.action == "build"
                                          else "every notebook pair is in sync"))
        return 0
    problems = course.check(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"\n{len(problems)} problem(s) in the course notebooks.")
        return 1
    n = sum(len(list((root / f).glob("*.py"))) for f in course.FOLDERS)
    print(f"course check: {n} notebook pairs in sync, exercises/ up to date.")
    return 0


def lab_command(root: Path, port: int | None = None, browser: bool = True) -> list[str]:
    """The JupyterLab command line that ``minicomp lab`` (and ``make lab``) runs."""
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}", START_PAGE]
    if port is not None:
        cmd.append(f"--port={port}")
    if not browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI often run as root; Jupyter refuses otherwise
    return cmd


def _lab(args: argparse.Namespace) -> int:
    if (root := _course_root()) is None:
        return 1
    if not (root / START_PAGE).exists():
        print(f"error: the start page {START_PAGE} is missing; run `minicomp course sync`", file=sys.stderr)
        return 1
    cmd = lab_command(root, args.port, browser=not args.no_browser)
    os.chdir(root)
    os.execv(cmd[0], cmd)  # become JupyterLab, so that stopping this process stops the server


def _port(text: str) -> int:
    """`lab --port`: 0 (any free port) to 65535; JupyterLab would otherwise print a URL that cannot work."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"--port={text!r}: expected a port number from 1 to 65535, "
                                         "such as 8888 (or 0 for any free port)")
    return port


def folder_argument(example: str):
    """An argparse `type` for `--out FOLDER`: a folder name, such as `example`. An empty one would
    silently mean the current folder (`tour` and `bench` both use it)."""
    def folder(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"--out={text!r}: expected a folder name, such as {example} "
                                             "(use --out . for the current folder)")
        return Path(text)
    return folder


def _tour(args: argparse.Namespace) -> int:
    from minicomp.tour import run_tour

    return run_tour(out_dir=Path(args.out), quick=args.quick)


def _bench(args: argparse.Namespace) -> int:
    from minicomp.bench import main as bench_main

    return bench_main(args.args)


class _TargetError(Exception):
    """A `minicomp check` target that cannot be loaded; the message says why and what to do."""


def _load_target(target: str, exercise: str = "EXERCISE"):
    """The function named by FILE.py:FUNCTION, PATH/TO/FILE:FUNCTION or MODULE:FUNCTION (`exercise`:
    the name checked, for the advice on a notebook)."""
    where, _, attr = target.rpartition(":")
    if not where and target.endswith(".py") and exercise != "EXERCISE":   # FILE.py: the exercise's own name
        where, attr = target, exercise
    if not where or not attr:
        raise _TargetError(f"target={target!r} should look like FILE.py:FUNCTION or MODULE:FUNCTION, "
                           "e.g. my_answers.py:soft_targets")
    given = Path(where).expanduser()
    if given.suffix == ".ipynb":
        raise _TargetError(f"{where!r} is a notebook; minicomp check reads functions from .py files. In the "
                           f"notebook, run check(\"{exercise}\", {attr}) in a cell; or save the function in a .py "
                           f"file and give that: my_answers.py:{attr}")
    if given.is_dir() and not Path(where + ".py").is_file() and not (given / "__init__.py").is_file():
        raise _TargetError(f"{where!r} is a folder, not a .py file; give the path of your .py file in it, "
                           f"e.g. {str(given / 'my_answers.py')}:{attr}")
    if given.is_file() and given.suffix != ".py":
        raise _TargetError(f"{where!r} is not a .py file; minicomp check loads Python code: put the function in "
                           f"a .py file and give that, e.g. my_answers.py:{attr}")
    as_path = where.endswith(".py") or "/" in where or os.sep in where
    if as_path:
        path = Path(where if where.endswith(".py") else where + ".py").expanduser().resolve()
        if path.is_dir():
            raise _TargetError(f"{str(path)!r} is a folder, not a .py file; give the path of your .py file, "
                               f"e.g. my_answers.py:{attr}")
        if not path.is_file():
            raise _TargetError(f"no file {str(path)!r}; give the path of your .py file, e.g. my_answers.py:{attr}")
        sys.path.insert(0, str(path.parent))   # so that it can import its neighbours
    else:
        path = Path.cwd() / (where.replace(".", os.sep) + ".py")   # where the module's code would be
        sys.path.insert(0, os.getcwd())
    try:
        if as_path:
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except SyntaxError as e:
        raise _TargetError(f"{e.filename}, line {e.lineno}: SyntaxError: {e.msg}; fix it and run the check again") from None
    except ModuleNotFoundError as e:
        if e.name != where:
            raise _TargetError(f"{where!r} imports {e.name!r}, which is not installed; install it (pip install "
                               f"{e.name}) or remove that import") from None
        raise _TargetError(f"no module {where!r} in the current folder ({os.getcwd()}); run the check from the "
                           f"folder that holds {where}.py, or give its path: path/to/{where}.py:{attr}") from None
    except SystemExit as e:   # sys.exit() at the top level of the file: without this, a silent exit 0
        raise _TargetError(f"loading {where!r} called sys.exit({e.code!r}); code at the top level of the file "
                           "runs when it is loaded: put it under `if __name__ == \"__main__\":`") from None
    except Exception as e:  # the learner's file ran and raised at import time
        mine = [f for f in traceback.extract_tb(e.__traceback__) if os.path.realpath(f.filename) == os.path.realpath(path)]
        where_in = f" at line {mine[-1].lineno} ({mine[-1].line.strip()})" if mine and mine[-1].line else ""
        raise _TargetError(f"loading {where!r} raised {type(e).__name__}: {e}{where_in}; code at the top level of "
                           "the file runs when it is loaded: fix it, or move it into a function") from None
    fn = getattr(module, attr, None)
    if callable(fn):
        return fn
    functions = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
    what = f"has no {attr!r}" if not hasattr(module, attr) else \
        f"holds {attr!r}, but it is not a function (its type: {type(fn).__name__})"
    raise _TargetError(f"{where!r} {what}; {_did_you_mean(attr, functions)}"
                       f"the functions defined there: {', '.join(functions) or 'none'}")


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6) or \
        [c for c in choices if c.lower() == word.lower()]
    return f"did you mean {close[0]!r}? " if close else ""


def _is_exercise(name: str) -> bool:
    """Whether a checker is registered under `name`: a course exercise, or one a file registered."""
    from minicomp.grading import get_checker

    try:
        get_checker(name)
    except ValueError:
        return False
    return True


def _no_exercise(name: str) -> int:
    from minicomp.grading import available

    print(f"error: there is no exercise called {name!r}; {_did_you_mean(name, available())}"
          f"the exercises: {', '.join(available())}", file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    from minicomp.grading import check

    if not args.timeout > 0:
        print(f"error: --timeout={args.timeout} must be a positive number of seconds", file=sys.stderr)
        return 2
    if ":" in args.name or args.name.endswith(".py"):   # `minicomp check FILE.py:fn NAME`
        print(f"error: {args.name!r} looks like the FILE.py:FUNCTION target, which comes second: the exercise's "
              f"name comes first, as in minicomp check {args.target} {args.name}", file=sys.stderr)
        return 2

    known = _is_exercise(args.name)   # (before the clock starts: the first lookup imports every checker)
    if not known and ":" not in args.target and args.target.endswith(".py"):   # FILE.py alone: no function to look for
        return _no_exercise(args.name)
    try:
        with time_limit(args.timeout):   # loading the file runs its top level: under the limit too
            fn = _load_target(args.target, args.name)
            if not known and not _is_exercise(args.name):   # (again after loading: the file may register its own)
                return _no_exercise(args.name)
        report = check(args.name, fn, timeout=args.timeout)   # its own limit: the report names the case
    except _TargetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TookTooLong:
        print(f"error: loading {args.target!r} took longer than {args.timeout:g} s and was stopped; does the "
              "file's top level loop forever, or do slow work (a training run, say)? Put that under "
              "`if __name__ == \"__main__\":`, which a check does not run (--timeout sets the limit)", file=sys.stderr)
        return 1
    print(report)
    return 0 if report.passed else 1


def _grade(args: argparse.Namespace) -> int:
    from minicomp.grader import run

    return run(args)


def _doctor(args: argparse.Namespace) -> int:
    from minicomp.doctor import main as doctor_main

    return doctor_main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minicomp", description="The course's command: open the lessons, check "
                                     "your exercises, grade a class, time the kernels. `minicomp COMMAND --help` "
                                     "says more about each.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str, **kwargs):   # one line in `minicomp --help`, the same atop its own
        return sub.add_parser(name, help=text, description=kwargs.pop("description", text), **kwargs)

    p = command("course", "build, sync and check the course notebooks")
    p.add_argument("action", choices=["build", "sync", "check"],
                   help="build: write exercises/ from solutions/; sync: rewrite each .ipynb that differs from "
                        "its .py source (neither overwrites a learner's answers); check: fail if a pair is out "
                        "of sync, exercises/ is stale or holds answers, or a solution has no check(...)")
    p.set_defaults(func=_course)

    p = command("lab", "open the course in JupyterLab")
    p.add_argument("--port", type=_port, default=None, help="the port to serve on (default: JupyterLab's choice)")
    p.add_argument("--no-browser", action="store_true", help="serve without opening a browser")
    p.set_defaults(func=_lab)

    p = command("tour", "run the end-to-end demonstration and print a results table")
    p.add_argument("--out", type=folder_argument("tour-output"), default="tour-output", help="folder for the plots (default: tour-output)")
    p.add_argument("--quick", action="store_true", help="smaller measurements, for tests")
    p.set_defaults(func=_tour)

    p = command("bench", "time packed kernels against float; writes benchmarks/results/*.json",
                       add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_bench)

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["check"]:   # (listing the exercises loads torch: only for `check`)
        from minicomp.grading import available

        epilog = f"exercises: {', '.join(available())}"
    else:
        epilog = None
    p = command("check", "check one of your functions against an exercise", epilog=epilog)
    p.add_argument("name", help="the exercise, e.g. weight_bytes")
    p.add_argument("target", help="where your function is: FILE.py:FUNCTION (a path), FILE.py alone for a "
                                   "function named like the exercise, or MODULE:FUNCTION for a module importable "
                                   "from the current folder; e.g. my_answers.py:weight_bytes")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="stop the check after this many seconds (default: 60), e.g. for an endless loop")
    p.set_defaults(func=_check)

    p = command("grade", "grade submitted exercise notebooks (not a security sandbox)",
                description="Grade submitted exercise notebooks: each runs in its own kernel on a copy of "
                            "its folder, under a timeout, and every check report becomes a row of a CSV. "
                            "This is not a security sandbox: a submission runs as you, with your files "
                            "and network; grade untrusted work in a container or a throwaway VM.")
    from minicomp.grader import add_arguments as grade_arguments

    grade_arguments(p)
    p.set_defaults(func=_grade)

    p = command("doctor", "check Python, torch, GPU, kernels, JupyterLab, offline data")
    p.set_defaults(func=_doctor)

    if argv[:1] == ["bench"]:  # bench has its own options (see minicomp/bench.py)
        return _bench(argparse.Namespace(args=argv[1:]))
    if not argv:   # `minicomp` alone: the list of commands, not an error
        parser.print_help()
        return 0
    if not argv[0].startswith("-") and argv[0] not in sub.choices:   # a typo: say which command was meant
        print(f"error: there is no command {argv[0]!r}; {_did_you_mean(argv[0], sub.choices)}"
              f"the commands: {', '.join(sub.choices)} (minicomp --help says what each does)", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
