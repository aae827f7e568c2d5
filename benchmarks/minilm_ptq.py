"""Post-training quantization of all-MiniLM-L6-v2 and TinyGPT: RTN against GPTQ and AWQ.

    python benchmarks/minilm_ptq.py              # both models, saved to benchmarks/results/
    python benchmarks/minilm_ptq.py --no-tinygpt # MiniLM only

MiniLM: mean cosine between float and quantized sentence embeddings (normalised) on held-out
sentences (`text_sentences("heldout")`), and how often the nearest neighbour of a sentence among
the others stays the same; 128 calibration sentences from the disjoint "calib" split. The GPTQ
time is the wall time of the whole model, calibration (tokenizing, capturing inputs) included.
TinyGPT: validation perplexity at 4 and 3 bits, per channel and g128. Results, with the machine
(`minicomp.hardware.describe_machine`), go to benchmarks/results/minilm_ptq-<date>.json.

Targets (issue): INT4 g128 GPTQ ≥ 0.985, AWQ ≥ 0.97, both above RTN; INT3 g128 GPTQ ≥ 0.93;
whole-model GPTQ ≤ 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import pathlib
import sys
import time

import torch

from minicomp.calibrate import quantize_model
from minicomp.data import CharCorpus, text_sentences
from minicomp.hardware import describe_machine
from minicomp.models import load_minilm, load_pretrained, perplexity
from minicomp.sentence import calibration_batches, embed, forward, mean_cosine, nn_agreement

RESULTS = pathlib.Path(__file__).parent / "results"
GPTQ_OPTIONS = dict(act_order=True, static_groups=True)


def minilm(n_calib=128, n_heldout=512, seed=0):
    model = load_minilm(device="cpu")
    calib = text_sentences("calib", n_calib, seed=seed)
    held = text_sentences("heldout", n_heldout, seed=seed)
    ref = embed(model, held)
    rows = []
    for bits in (4, 3):
        for method in ("rtn", "gptq", "awq"):
            m = copy.deepcopy(model)
            options = GPTQ_OPTIONS if method == "gptq" else {}
            t = time.perf_counter()
            batches = calibration_batches(m, calib) if method != "rtn" else None
            quantize_model(m, method, bits=bits, group_size=128, calibration=batches,
                           forward=forward, progress=False, **options)
            seconds = time.perf_counter() - t
            emb = embed(m, held)
            row = dict(model="all-MiniLM-L6-v2", method=method, bits=bits, group_size=128, options=options,
                       mean_cosine=mean_cosine(ref, emb), nn_agreement=nn_agreement(ref, emb),
                       seconds=seconds)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows, dict(n_calib=n_calib, n_heldout=n_heldout, seed=seed)


def tinygpt(n_calib=16, windows=32):
    corpus = CharCorpus()
    gpt = load_pretrained("tinygpt")
    g = torch.Generator().manual_seed(0)
    calib = [corpus.get_batch("train", 8, 128, g)[0] for _ in range(n_calib // 8)]
    rows = [dict(model="tinygpt", method="float", bits=32, group_size=None,
                 perplexity=perplexity(gpt, corpus, "val", max_windows=windows))]
    print(json.dumps(rows[0]), flush=True)
    for bits in (4, 3):
        for group_size in (-1, 128):
            for method in ("rtn", "gptq", "awq"):
                m = copy.deepcopy(gpt)
                options = GPTQ_OPTIONS if method == "gptq" else {}
                quantize_model(m, method, bits=bits, group_size=group_size,
                               calibration=calib if method != "rtn" else None, progress=False, **options)
                row = dict(model="tinygpt", method=method, bits=bits, group_size=group_size, options=options,
                           perplexity=perplexity(m, corpus, "val", max_windows=windows))
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows, dict(n_calib_windows=n_calib, val_windows=windows, block_size=128)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-tinygpt", action="store_true")
    p.add_argument("--no-minilm", action="store_true")
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    result = dict(benchmark="minilm_ptq", date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  machine=describe_machine())
    if not args.no_minilm:
        result["minilm"], result["minilm_setup"] = minilm()
    if not args.no_tinygpt:
        result["tinygpt"], result["tinygpt_setup"] = tinygpt()
    out = args.out or RESULTS / f"minilm_ptq-{datetime.date.today():%Y%m%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
