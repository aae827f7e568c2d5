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
