"""`minicomp doctor` runs on any machine, says when there is no GPU, and advises on each problem."""

import os
import subprocess
import sys
from pathlib import Path

from minicomp import doctor

ROOT = Path(__file__).resolve().parents[1]


def test_doctor_without_a_gpu_says_so():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # hide any GPU, so this holds everywhere
    proc = subprocess.run([sys.executable, "-m", "minicomp", "doctor"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "no GPU" in out
    for name in ("python", "torch", "gpu", "numba kernel", "triton kernel", "jupyterlab", "widgets",
                 "saving work", "offline data", "shipped models", "offline MiniLM", "GPU sections"):
        assert name in out, name
    assert "09_packed_kernels" in out  # the lessons whose GPU sections are skipped are named


def test_each_problem_gets_one_line_of_advice(monkeypatch):
    monkeypatch.setattr(doctor, "_version", lambda module: None)  # nothing optional installed
    monkeypatch.setattr(doctor, "_widget_extension", lambda: None)
    findings = [doctor.check_numba(), doctor.check_jupyterlab(), doctor.check_widgets(),
                doctor.check_triton(cuda=True)]
    assert all(f.level in (doctor.WARN, doctor.FAIL) for f in findings)
    assert all(f.advice and "\n" not in f.advice for f in findings)
    text = doctor.format_findings(findings)
    assert text.count("→") == len(findings) and "4 problem(s)" in text


def test_no_gpu_is_not_a_problem(monkeypatch):
    monkeypatch.setattr(doctor, "_nvidia_smi", lambda: False)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    f = doctor.check_gpu()
    assert f.level == doctor.INFO and "no GPU" in f.detail and not f.advice


def test_gpu_lessons_are_read_from_the_sources():
    lessons = doctor.gpu_lessons(ROOT)
    assert lessons.get("09_packed_kernels") is True  # needs triton as well as CUDA
    assert lessons.get("02_distillation_loss") is False
    can = doctor.lesson_findings(cuda=True, triton=False)
    assert "02_distillation_loss" in can[0].detail and "09_packed_kernels" in can[1].detail


def test_a_gpu_too_old_for_triton_is_a_warning_with_advice(monkeypatch):
    import torch

    from minicomp.kernels import triton as triton_backend

    monkeypatch.setattr(doctor, "_version", lambda module: "3.6.0")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(triton_backend, "gpu_too_old", lambda device: "Tesla P100 has compute capability 6.0")
    f = doctor.check_triton(cuda=True)
    assert f.level == doctor.WARN and "Tesla P100 has compute capability 6.0" in f.detail
    assert "'reference'" in f.advice and "\n" not in f.advice
    monkeypatch.setattr(triton_backend, "gpu_too_old", lambda device: None)
    assert doctor.check_triton(cuda=True).level == doctor.OK


def _only(findings, name):
    return next(f for f in findings if f.name == name)


def test_a_package_installed_but_broken_is_not_called_missing(tmp_path, monkeypatch):
    (tmp_path / "numba").mkdir()   # numba built for another NumPy fails like this on import
    (tmp_path / "numba" / "__init__.py").write_text('raise ImportError("Numba needs NumPy 2.3 or less")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    f = _only(doctor.run_checks(slow=False), "numba kernel")
    assert f.level == doctor.WARN and "installed but does not import" in f.detail
    assert "Numba needs NumPy 2.3 or less" in f.detail and "pip install -U numba" in f.advice
    assert "not installed" not in f.detail
    assert doctor._version("no_such_package_minicomp") is None   # really missing: None, as before


def test_without_torch_every_skipped_check_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # `import torch` raises ImportError
    findings = doctor.run_checks(slow=True)
    for name in ("numba kernel", "offline data", "shipped models", "offline MiniLM"):
        f = _only(findings, name)
        assert f.level == doctor.INFO and "not checked" in f.detail and "torch" in f.detail
    skipped = [f for f in findings if f.name == "GPU sections"][-1].detail
    assert "no CUDA GPU" not in skipped and "torch does not import" in skipped


def test_a_check_that_crashes_does_not_crash_the_doctor(monkeypatch):
    def boom(cuda):
        raise RuntimeError("CUDA driver error")

    monkeypatch.setattr(doctor, "check_triton", boom)
    monkeypatch.setattr(doctor, "check_gpu", lambda: (_ for _ in ()).throw(RuntimeError("no driver")))
    findings = doctor.run_checks(slow=False)
    assert "CUDA driver error" in _only(findings, "triton kernel").detail
    assert "no driver" in _only(findings, "gpu").detail


def test_a_course_folder_that_cannot_be_written_is_a_failure_with_advice(tmp_path, monkeypatch):
    """A course copied by another user, or on a read-only mount: JupyterLab would open it and then
    refuse every save. (Run as root, a chmod blocks nothing, so the failure is simulated.)"""
    for folder in ("lessons", "exercises"):
        (tmp_path / folder).mkdir()
    assert doctor.check_writable(tmp_path).level == doctor.OK
    import tempfile

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    f = doctor.check_writable(tmp_path)
    assert f.level == doctor.FAIL and "lessons/" in f.detail and "exercises/" in f.detail
    assert "Permission denied" in f.detail and "cp -r" in f.advice


def test_a_widget_extension_too_old_for_ipywidgets_8_is_named(monkeypatch, tmp_path):
    """ipywidgets 8 with jupyterlab-manager 3.x (jupyterlab_widgets 1.x): every slider shows
    'Error displaying widget'. The doctor names both versions and the fix."""
    pkg = tmp_path / "package.json"
    monkeypatch.setattr(doctor, "_widget_extension", lambda: pkg)
    monkeypatch.setattr(doctor, "_version", lambda module: "8.1.5")
    pkg.write_text('{"name": "@jupyter-widgets/jupyterlab-manager", "version": "3.1.1"}')
    old = doctor.check_widgets()
    assert old.level == doctor.WARN and "3.1.1" in old.detail and "jupyterlab_widgets>=3" in old.advice
    pkg.write_text('{"name": "@jupyter-widgets/jupyterlab-manager", "version": "5.0.13"}')
    assert doctor.check_widgets().level == doctor.OK
    monkeypatch.setattr(doctor, "_version", lambda module: "7.8.0")   # ipywidgets 7 with either is fine
    pkg.write_text('{"name": "@jupyter-widgets/jupyterlab-manager", "version": "3.1.1"}')
    assert doctor.check_widgets().level == doctor.OK


def test_the_command_line_starts_without_torch():
    """`minicomp --help`, `minicomp doctor` and `minicomp grade` must not import torch at start:
    it is slow, and a broken torch install must reach the doctor, which names it. (A shared check
    imported into timelimit.py once pulled torch in through minicomp.checks.)"""
    import subprocess

    code = ("import sys; sys.modules['torch'] = None   # `import torch` raises ImportError\n"
            "import minicomp.cli, minicomp.timelimit, minicomp.grader, minicomp.doctor\n"
            "for argv in (['--help'], ['grade', '--help'], ['doctor', '--help']):\n"
            "    try:\n"
            "        minicomp.cli.main(argv)\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, (argv, e.code)\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("\nok"), out.stderr[-2000:]
