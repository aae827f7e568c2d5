"""``minicomp tour`` (``make tour``): the course's end-to-end demonstration, in the terminal.

It measures everything it reports, in this run, on this machine: nothing in its table is
hard-coded. Each stage (`STAGES`: the shipped models, the hardware, distillation, the
distill-then-quantize pipeline on TinyGPT, MiniLM at INT4) adds rows to one results table and
saves a plot to the output folder. A stage that fails is reported, the others still run, and
the tour then exits 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from minicomp.doctor import unwritable


@dataclass
class Row:
    """One line of the results table."""

    stage: str
    item: str
    measured: str
    note: str = ""


@dataclass
class TourContext:
    out_dir: Path
    quick: bool
    plots: list[Path]

    def save(self, fig, filename: str) -> None:
        """Save a matplotlib figure into the output folder and remember it for the summary."""
        import matplotlib.pyplot as plt

        fig.tight_layout()
        path = self.out_dir / filename
        fig.savefig(path, dpi=120)
        plt.close(fig)
        self.plots.append(path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ── stages ───────────────────────────────────────────────────────────────────────────────────
def stage_models(ctx: TourContext) -> list[Row]:
    """The shipped models: size in bytes at each precision, and their measured quality."""
    from minicomp.data import CharCorpus, as_images, load_digits
    from minicomp.hardware import human_bytes, model_bytes, weight_bytes
    from minicomp.models import accuracy, count_parameters, load_pretrained, perplexity

    digits, corpus = load_digits(), CharCorpus()
    rows, sizes = [], {}
    for name in ("digits_mlp_teacher", "digits_cnn_teacher", "tinygpt"):
        model = load_pretrained(name)
        n = count_parameters(model)
        if name == "tinygpt":
            quality = f"val perplexity {perplexity(model, corpus, 'val', max_windows=16 if ctx.quick else 64):.2f}"
        else:
            x = as_images(digits.x_test) if "cnn" in name else digits.x_test
            quality = f"test accuracy {100 * accuracy(model, x, digits.y_test):.1f}%"
        sizes[name] = {b: weight_bytes(n, b) for b in (32, 16, 8, 4)}
        rows.append(Row("models", name, quality,
                        f"{n:,} params, {human_bytes(model_bytes(model))} in fp32, "
                        f"{human_bytes(weight_bytes(n, 4))} at 4 bits (before scales)"))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.2
    for i, bits in enumerate((32, 16, 8, 4)):
        ax.bar([j + i * width for j in range(len(sizes))], [s[bits] / 1e6 for s in sizes.values()],
               width, label=f"{bits}-bit")
    ax.set_xticks([j + 1.5 * width for j in range(len(sizes))], list(sizes))
    ax.set_ylabel("weights (MB)")
    ax.set_title("Shipped models: bytes at each precision")
    ax.legend()
    ctx.save(fig, "model_sizes.png")
    return rows


def stage_hardware(ctx: TourContext) -> list[Row]:
    """Matmul throughput by dtype, and GEMV (memory-bound) against GEMM (compute-bound)."""
    from minicomp.hardware import num_threads

    with num_threads(1):  # one thread: steadier numbers when other programs share the cores
        return _hardware_rows(ctx)


def _hardware_rows(ctx: TourContext) -> list[Row]:
    from minicomp.hardware import gemv_vs_gemm, matmul_flops

    size, repeats = (256, 3) if ctx.quick else (512, 10)
    rows, fp32 = [], None
    for dtype in (torch.float32, torch.bfloat16, torch.int8):
        r = matmul_flops(size, size, size, dtype, "cpu", repeats=repeats)
        if dtype == torch.float32:
            fp32 = r["gflops"]
        ratio = r["gflops"] / fp32 if fp32 else float("nan")
        rows.append(Row("hardware", f"{size}³ matmul, {r['dtype']}, 1 thread",
                        f"{r['gflops']:.1f} GFLOP/s ({ratio:.2f}× fp32)", r["backend"]))
    batches = (1, 4, 16, 64) if ctx.quick else (1, 2, 4, 8, 16, 32, 64, 128, 256)
    dim = 512 if ctx.quick else 1024
    curve = gemv_vs_gemm(batches, dim, dim, repeats=repeats)
    first, last = curve[0], curve[-1]
    rows.append(Row("hardware", f"linear {dim}×{dim}: batch {last['batch']} vs batch 1",
                    f"{last['gflops'] / first['gflops']:.1f}× the GFLOP/s",
                    f"batch 1 moves {first['bytes'] / first['flops']:.2f} bytes per FLOP: memory-bound"))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog([r["intensity"] for r in curve], [r["gflops"] for r in curve], "o-")
    for r in curve:
        ax.annotate(str(r["batch"]), (r["intensity"], r["gflops"]), fontsize=7)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("measured GFLOP/s")
    ax.set_title(f"{dim}×{dim} fp32 linear on 1 thread; labels = batch size")
    ctx.save(fig, "gemv_vs_gemm.png")
    return rows


def stage_distill(ctx: TourContext) -> list[Row]:
    """Lesson 02's result: a tiny student with 60 labels, alone and distilled from the teacher."""
    from minicomp.data import few_label_split, load_digits
    from minicomp.hardware import num_threads
    from minicomp.models import load_pretrained

    digits, teacher = load_digits(), load_pretrained("digits_mlp_teacher")
    idx = few_label_split(digits.y_train, 6, seed=0)
    y_few = torch.full_like(digits.y_train, -1)  # -1 marks an unlabelled image of the transfer set
    y_few[idx] = digits.y_train[idx]
    steps = 200 if ctx.quick else 600
    with num_threads(1):  # a 2,410-parameter student trains fastest on one thread
        return _distill_rows(digits, teacher, idx, y_few, steps)


def _distill_rows(digits, teacher, idx, y_few, steps) -> list[Row]:
    from minicomp.distill import CE, KD, Distiller
    from minicomp.models import count_parameters, digits_mlp_student

    alone = Distiller(digits_mlp_student(seed=0), None, {"ce": (1.0, CE())}, seed=0, progress=False)
    alone.fit(digits.x_train[idx], digits.y_train[idx], steps=steps)
    student = digits_mlp_student(seed=0)
    kd = Distiller(student, teacher, {"kd": (0.9, KD(4.0)), "ce": (0.1, CE())}, seed=0, progress=False)
    kd.fit(digits.x_train, y_few, steps=steps)
    a = alone.accuracy(digits.x_test, digits.y_test)
    d = kd.accuracy(digits.x_test, digits.y_test)
    ratio = count_parameters(teacher) / count_parameters(student)
    return [
        Row("distill", "student alone, 60 labels", f"test accuracy {100 * a:.1f}%",
            f"{count_parameters(student):,} params, {ratio:.0f}× fewer than the teacher"),
        Row("distill", "student distilled (T=4, alpha=0.9)", f"test accuracy {100 * d:.1f}%",
            f"{100 * (d - a):+.1f} points from the teacher's soft targets on unlabelled images"),
    ]


def stage_pipeline(ctx: TourContext) -> list[Row]:
    """Lesson 10: teacher -> distilled student -> RTN / GPTQ / AWQ -> packed kernels, measured."""
    from minicomp.hardware import num_threads

    with num_threads(1):  # tiny models: one thread is as fast, and steadier on a shared machine
        return _pipeline_rows(ctx)


def _pipeline_rows(ctx: TourContext) -> list[Row]:
    import copy

    from minicomp.data import CharCorpus
    from minicomp.kernels import pack_model
    from minicomp.models import load_pretrained
    from minicomp.pipeline import (
        check_claims,
        comparison_table,
        distill_tinygpt_student,
        load_student,
        measure,
        plot_pareto,
        quantize_variants,
    )

    corpus, teacher, student = CharCorpus(), load_pretrained("tinygpt"), load_student()
    g = torch.Generator().manual_seed(0)
    calibration = [corpus.get_batch("train", 8, 128, g)[0] for _ in range(2)]  # 2 x [8, 128]
    methods, bits = (("rtn", "gptq"), (4,)) if ctx.quick else (("rtn", "gptq", "awq"), (8, 4))
    variants = quantize_variants(student, calibration, methods=methods, bits=bits)
    packed = {f"packed GPTQ INT{b}": pack_model(copy.deepcopy(variants[f"GPTQ INT{b}"])) for b in bits}
    models = {"teacher": teacher, "student": student, **variants, **packed}
    steps = {"teacher": "teacher", "student": "distilled", **{n: "quantized" for n in variants},
             **{n: "packed" for n in packed}}
    if not ctx.quick:  # quantization-aware distillation at INT2 against distill-then-GPTQ
        qad, _ = distill_tinygpt_student(teacher, corpus, copy.deepcopy(student), fake_quant_bits=2,
                                         steps=120, batch_size=8, lr=1e-3, seed=1)
        models["GPTQ INT2"] = quantize_variants(student, calibration, methods=("gptq",), bits=(2,),
                                                progress=False)["GPTQ INT2"]
        models["QAD INT2"] = qad
        steps.update({"GPTQ INT2": "quantized", "QAD INT2": "QAD"})
    rows = measure(models, corpus, steps=steps, timed=["teacher", "student", *packed],
                   repeats=10 if ctx.quick else 30, max_windows=16 if ctx.quick else 32)
    ctx.save(plot_pareto(rows), "pipeline_pareto.png")
    out = []
    for t in comparison_table(rows, baseline="teacher"):
        speed = "" if t["speed-up"] != t["speed-up"] else f", {t['speed-up']:.2f}x the teacher's speed"
        r = next(r for r in rows if r.name == t["model"])
        out.append(Row("pipeline", t["model"], f"val perplexity {r.perplexity:.2f}, accuracy {100 * r.accuracy:.1f}%",
                       f"{t['compression']:.1f}x fewer bytes, {100 * t['accuracy retained']:.0f}% of the "
                       f"teacher's accuracy{speed}"))
    four = [n for n in variants if n.endswith("INT4")]
    for c in check_claims(rows, teacher="teacher", student="student", four_bit=four, combined="packed GPTQ INT4"):
        out.append(Row("claims", c["claim"], "holds" if c["holds"] else "does not hold here", c["measured"]))
    return out


def stage_minilm(ctx: TourContext) -> list[Row]:
    """Lessons 07, 08 and 11: all-MiniLM-L6-v2 at INT4 g128 with RTN, GPTQ and AWQ, packed."""
    import copy

    from minicomp.calibrate import quantize_model, storage_bytes
    from minicomp.data import text_sentences
    from minicomp.hardware import compare, human_bytes, ratios
    from minicomp.models import load_minilm
    from minicomp.sentence import calibration_batches, embed, forward, mean_cosine, nn_agreement

    teacher = load_minilm(device="cpu")
    held = text_sentences("heldout", 64 if ctx.quick else 256, seed=0)
    batches = calibration_batches(teacher, text_sentences("calib", 32 if ctx.quick else 128, seed=0))
    ref = embed(teacher, held)  # [N, 384]
    models, scores = {"float32": teacher}, {}
    for method in ("rtn",) if ctx.quick else ("rtn", "gptq", "awq"):
        t0 = time.perf_counter()
        options = dict(act_order=True, static_groups=True) if method == "gptq" else {}
        models[method] = quantize_model(copy.deepcopy(teacher), method, bits=4, group_size=128, pack=True,
                                        calibration=None if method == "rtn" else batches, forward=forward,
                                        progress=not ctx.quick, **options)   # the longest step: show it
        seconds = time.perf_counter() - t0  # calibration included, scoring not
        emb = embed(models[method], held)
        scores[method] = (mean_cosine(ref, emb), nn_agreement(ref, emb), seconds)
    query = calibration_batches(teacher, held[:1])[0]  # one sentence, tokenized: latency per query
    with torch.no_grad():
        timing = compare({n: (lambda m=m: forward(m, query)) for n, m in models.items()},
                         warmup=2, repeats=5 if ctx.quick else 15)
    speed = ratios(timing, "float32")
    base = storage_bytes(teacher)["total"]
    rows = [Row("MiniLM", "float32", f"{human_bytes(base)}, {timing['float32'].median * 1e3:.1f} ms per sentence",
                f"all-MiniLM-L6-v2, {len(held)} held-out sentences")]
    for method, (cos, agree, seconds) in scores.items():
        size = storage_bytes(models[method])["total"]
        rows.append(Row("MiniLM", f"INT4 g128 {method.upper()}, packed",
                        f"cosine {cos:.4f}, nearest neighbour kept {agree:.1%}",
                        f"{base / size:.2f}x fewer bytes, {speed[method]:.2f}x the float speed per sentence, "
                        f"quantized in {seconds:.0f} s"))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    names = list(scores)
    ax.bar([n.upper() for n in names], [scores[n][0] for n in names], color="tab:blue")
    ax.set(ylim=(min(scores[n][0] for n in names) - 0.02, 1.0), ylabel="cosine to float embeddings",
           title="all-MiniLM-L6-v2 at INT4 g128")
    ctx.save(fig, "minilm_int4.png")
    return rows


STAGES: list[tuple[str, Callable[[TourContext], list[Row]]]] = [
    ("shipped models", stage_models),
    ("hardware", stage_hardware),
    ("distillation", stage_distill),
    ("distill, then quantize (TinyGPT)", stage_pipeline),
    ("a real pretrained model (MiniLM)", stage_minilm),
]


# ── driver ───────────────────────────────────────────────────────────────────────────────────
def format_table(rows: list[Row]) -> str:
    from minicomp.pipeline import text_table

    return text_table(("stage", "item", "measured", "note"), [(r.stage, r.item, r.measured, r.note) for r in rows])


def run_tour(out_dir: Path = Path("tour-output"), quick: bool = False) -> int:
    """Run every stage, print the results table, save plots in ``out_dir``. Return 0, or 1 when a
    stage failed (the others still run; the error is printed), or 2, with an error, when
    ``out_dir`` cannot be written (checked before anything runs)."""
    from tqdm.auto import tqdm

    from minicomp.hardware import describe_machine, format_machine

    out_dir = Path(out_dir)
    if why := unwritable(out_dir, create=True):   # can the plots be written there?
        print(f"error: cannot save the tour's plots in out_dir={str(out_dir)!r} (--out): "
              f"{why}; choose a folder you can write, e.g. --out tour-output", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    print("minicomp tour: every number below is measured now, on this machine.\n")
    print(format_machine(describe_machine()), "\n")
    ctx, rows, failed = TourContext(out_dir, quick, []), [], []
    start = time.perf_counter()
    for name, stage in tqdm(STAGES, desc="tour", unit="stage"):
        t0 = time.perf_counter()
        try:
            rows += stage(ctx)
        except Exception as exc:  # report it, and keep the other stages' results
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
            tqdm.write(f"  {name}: FAILED after {time.perf_counter() - t0:.1f} s ({type(exc).__name__}: {exc})")
            continue
        tqdm.write(f"  {name}: {time.perf_counter() - t0:.1f} s")
    print()
    print(format_table(rows))
    print(f"\n{len(rows)} results in {time.perf_counter() - start:.0f} s. "
          f"Plots saved in {out_dir.resolve()}/: {', '.join(p.name for p in ctx.plots) or 'none'}")
    if failed:
        print(f"\n{len(failed)} stage(s) failed:\n" + "".join(f"  {f}\n" for f in failed) +
              "`minicomp doctor` says what this machine is missing.", file=sys.stderr)
        return 1
    return 0
