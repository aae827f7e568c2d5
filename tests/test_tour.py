"""`make tour` runs `minicomp tour`: it must finish, print its table and save its plots."""

import re

from minicomp.cli import main


def test_tour_quick(tmp_path, capsys):
    out = tmp_path / "tour"
    assert main(["tour", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stage" in text and "measured" in text
    assert "digits_mlp_teacher" in text and "tinygpt" in text and "GFLOP/s" in text
    assert "student distilled" in text
    assert "packed GPTQ INT4" in text and "4-bit keeps 95-99% of accuracy" in text  # the pipeline stage
    cos = re.search(r"INT4 g128 RTN, packed\s+cosine (\d\.\d+)", text)  # the MiniLM stage
    assert cos and 0.9 < float(cos.group(1)) < 1.0, text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "pipeline_pareto.png" in pngs and "minilm_int4.png" in pngs
    assert pngs and all((out / p).stat().st_size > 1000 for p in pngs)


def _fake_stages(monkeypatch, calls):
    from minicomp import tour

    def fine(ctx):
        calls.append("fine")
        return [tour.Row("fake", "a result", "1.0")]

    def broken(ctx):
        calls.append("broken")
        raise ImportError("sentence-transformers is not installed")

    monkeypatch.setattr(tour, "STAGES", [("fine", fine), ("broken", broken), ("fine again", fine)])


def test_tour_refuses_an_output_folder_it_cannot_write_before_running(tmp_path, monkeypatch, capsys):
    calls = []
    _fake_stages(monkeypatch, calls)
    a_file = tmp_path / "plots"
    a_file.write_text("not a folder")
    assert main(["tour", "--quick", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "cannot save the tour's plots" in err and "it is a file" in err and "--out" in err
    assert "Traceback" not in err and calls == []   # nothing measured for nothing


def test_a_failing_stage_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    calls = []
    _fake_stages(monkeypatch, calls)
    assert main(["tour", "--quick", "--out", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert calls == ["fine", "broken", "fine"]   # the stage after the broken one ran too
    assert out.count("a result") == 2 and "2 results" in out
    assert "1 stage(s) failed" in err and "broken: ImportError: sentence-transformers is not installed" in err
