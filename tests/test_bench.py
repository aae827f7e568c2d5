"""`minicomp bench` (minicomp/bench.py): its arguments, what each row's numbers are, the file it writes.

The runs here are tiny (128 x 128, one repeat, one copy of each weight): they check what is
reported, not how fast anything is."""

import json
import warnings

import pytest
import torch

from minicomp import bench


def _run(**kwargs):
    return bench.run("cpu", [(128, 128)], [1], repeats=1, cold=False, log=None, **kwargs)


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize("args, argument", [
    (["--sizes", "0x256"], "--sizes"),
    (["--sizes", "256x255"], "--sizes"),       # 4-bit codes cannot be packed two to a byte
    (["--sizes", "256x192"], "--sizes"),       # not a multiple of the group size 128
    (["--batches", "0"], "--batches"),
    (["--batches", "-1"], "--batches"),
    (["--repeats", "-1"], "--repeats"),
    (["--repeats", "0"], "--repeats"),         # was silently taken for the default, 20
])
def test_bad_arguments_are_usage_errors_naming_the_argument(args, argument, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("ran with bad arguments"))
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--device", "cpu", "--no-save", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argument}" in err and "Traceback" not in err


def test_repeats_given_are_the_repeats_used(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(bench, "run", lambda *a, **k: seen.update(k) or {"rows": [], "skipped": []})
    assert bench.main(["--device", "cpu", "--no-save", "--sizes", "128x128", "--repeats", "3"]) == 0
    assert seen["repeats"] == 3


def test_an_out_that_is_not_a_folder_is_an_error_before_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("ran, then could not save"))
    a_file = tmp_path / "results"
    a_file.write_text("")
    assert bench.main(["--device", "cpu", "--sizes", "128x128", "--out", str(a_file)]) == 2
    assert "--out" in capsys.readouterr().err
    # an existing folder that refuses writes (a read-only mount; root ignores chmod, so simulated)
    import tempfile

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(30, "Read-only file system", str(dir))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    assert bench.main(["--device", "cpu", "--sizes", "128x128", "--out", str(tmp_path)]) == 2
    assert "Read-only file system" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, argument", [
    ({"sizes": [(128, 192)]}, "sizes"), ({"sizes": []}, "sizes"), ({"batches": [0]}, "batches"),
    ({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup"), ({"max_call_s": 0}, "max_call_s"),
])
def test_run_checks_its_arguments_first(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        bench.run("cpu", **{"sizes": [(128, 128)], "log": None, **kwargs})


# ------------------------------------------------------------------ what is timed, and what is reported


def test_rows_say_what_their_ratios_are_against():
    found = _run()
    rows = {r["variant"]: r for r in found["rows"]}
    assert {"fp32", "int4-reference"} <= set(rows)
    for r in rows.values():
        assert r["speedup_vs_fp32"] == pytest.approx(r["fp32_median_s"] / r["median_s"])
    assert rows["fp32"]["fp32_median_s"] == rows["fp32"]["median_s"]
    assert rows["int4-reference"]["group_size"] == bench.GROUP_SIZE
    assert 0 < rows["int4-reference"]["rel_error_vs_fp32"] < bench.MAX_ERROR_VS_FP32


def test_a_contestant_with_a_wrong_answer_is_not_timed(monkeypatch):
    real = bench._contestants

    def with_wrong_ones(*args, **kwargs):
        fns, sizes, missing = real(*args, **kwargs)
        ref = fns["int4-reference"]
        fns["int4-negated"], sizes["int4-negated"] = (lambda x: -ref(x)), sizes["int4-reference"]
        # 5% off: within int4's error against fp32, but not the same codes' answer
        fns["int4-scaled"], sizes["int4-scaled"] = (lambda x: 1.05 * ref(x)), sizes["int4-reference"]
        return fns, sizes, missing

    monkeypatch.setattr(bench, "_contestants", with_wrong_ones)
    found = _run()
    variants = {r["variant"] for r in found["rows"]}
    assert "int4-reference" in variants and not {"int4-negated", "int4-scaled"} & variants
    why = {s["variant"]: s["reason"] for s in found["skipped"]}
    assert "off fp32's" in why["int4-negated"] and "off int4-reference's" in why["int4-scaled"]


def test_a_contestant_that_cannot_run_here_is_listed_with_the_reason(monkeypatch):
    def absent(*args):
        raise bench._Unavailable("torch 9.9 has no int4 kernel here")

    monkeypatch.setattr(bench, "_torch_int4", absent)
    logged = []
    found = bench.run("cpu", [(128, 128)], [1], repeats=1, cold=False, log=logged.append)
    assert "int4-torch" not in {r["variant"] for r in found["rows"]}
    (entry,) = [s for s in found["skipped"] if s["variant"] == "int4-torch"]
    assert entry["batch"] is None and entry["reason"] == "torch 9.9 has no int4 kernel here"
    assert any("int4-torch" in line and "no int4 kernel" in line for line in logged)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_int4_torch_bytes_are_what_torch_holds():
    """Its codes, and its scales and zeros: [in / 128, out, 2] float32 on a CPU, more than ours."""
    fns, sizes = bench.contestants(32, 256, torch.device("cpu"))
    if "int4-torch" not in fns:
        pytest.skip("this torch has no int4 CPU kernel")
    assert sizes["int4-torch"] == 32 * 256 // 2 + (256 // 128) * 32 * 2 * 4
    assert sizes["int4-torch"] > sizes["int4-fused"]


def test_run_leaves_the_warning_filters_as_they_were():
    before = list(warnings.filters)
    _run()
    assert warnings.filters == before


def test_targets_use_the_ratio_the_row_reports():
    """A slow contestant is divided by the fp32 of its own round; so is its target."""
    case = {"device": "cpu", "out": 4096, "in": 4096, "batch": 1}
    rows = [{**case, "variant": "fp32", "median_s": 1e-3, "fp32_median_s": 1e-3, "speedup_vs_fp32": 1.0,
             "round": "shared"},
            {**case, "variant": "int4-fused", "median_s": 6e-3, "fp32_median_s": 0.8e-3,
             "speedup_vs_fp32": 0.8 / 6, "round": "own", "bytes_ratio_vs_fp32": 7.64}]
    (speed, size) = bench.check_targets(rows)
    assert speed["measured_ratio"] == rows[1]["speedup_vs_fp32"] and not speed["met"]
    assert size["measured_ratio"] == 7.64 and size["met"]


def test_the_table_says_which_fp32_a_slow_row_is_against():
    row = {"device": "cpu", "out": 128, "in": 128, "batch": 1, "variant": "int4-reference", "median_s": 4e-3,
           "speedup_vs_fp32": 0.25, "weight_bytes": 100, "bytes_ratio_vs_fp32": 7.0, "round": "own",
           "fp32_median_s": 1e-3}
    assert "own round, fp32 there 1.000ms" in bench.format_table([row], header=False)
    assert "own round" not in bench.format_table([{**row, "round": "shared"}], header=False)


# ------------------------------------------------------------------ the results file


def test_a_second_run_in_the_same_second_does_not_overwrite_the_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench._dt, "datetime", type("Frozen", (bench._dt.datetime,), {
        "now": classmethod(lambda cls, tz=None: bench._dt.datetime(2026, 1, 2, 3, 4, 5))}))
    monkeypatch.setattr(bench, "run", lambda *a, **k: {"rows": [], "skipped": []})
    for batch in ("1", "2"):
        assert bench.main(["--device", "cpu", "--sizes", "128x128", "--batches", batch, "--out", str(tmp_path)]) == 0
    files = sorted(tmp_path.glob("bench-cpu-*.json"))
    assert [f.name for f in files] == ["bench-cpu-20260102-030405-2.json", "bench-cpu-20260102-030405.json"]
    assert {json.loads(f.read_text())["argv"][-3] for f in files} == {"1", "2"}   # --batches 1, then 2
    settings = json.loads(files[0].read_text())["settings"]
    assert settings["max_call_s"] == bench.MAX_CALL_S and settings["group_size"] == bench.GROUP_SIZE
