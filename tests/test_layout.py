"""The repository's top level is exactly what DESIGN.md's layout card lists, plus config files."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "lessons", "minicomp", "exercises", "solutions", "tests", "benchmarks", ".ci",
    "pyproject.toml", "README.md", "Makefile", "jupytext.toml", ".gitignore", "LICENSE",
}


def test_top_level_is_the_design_card():
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    top = {line.split("/")[0] for line in tracked.splitlines() if line}
    if not top:
        pytest.skip("nothing tracked yet")
    assert top <= ALLOWED, f"unexpected top-level entries: {sorted(top - ALLOWED)}"
    assert {"lessons", "minicomp", "exercises", "solutions", "tests", "pyproject.toml", "README.md",
            "Makefile", ".ci"} <= top


def test_ci_calls_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_makefile_never_pins_torch():
    text = (ROOT / "Makefile").read_text()
    assert "torch==" not in text and "torch>=" not in text
    for target in ("lab:", "test:", "tour:"):
        assert target in text
