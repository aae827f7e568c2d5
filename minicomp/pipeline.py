"""Distill, then quantize: the whole chain on TinyGPT (lesson 10, and a stage of `minicomp tour`).

    teacher (4 layers) ─ distill_tinygpt_student ─► student (2 layers, float)
                       ─ quantize_variants (rtn | gptq | awq, INT8 / INT4, packed) ─► variants
                       ─ measure ─► Result rows ─► pareto_front, comparison_table, plot_pareto

Every number comes from a measurement in the caller's run: `measure` evaluates perplexity and
next-character accuracy on fixed validation windows, counts stored bytes with
`calibrate.storage_bytes`, and times a batch-1 forward with `hardware.compare` (median of
interleaved repeats), so the ratios in the tables are ratios of numbers measured side by side.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from minicomp.checks import (
    check_fraction,
    check_positive_ints,
    check_positive_numbers,
    is_int,
    is_real,
)
from minicomp.hardware import check_device
from minicomp.models import GPTConfig, TinyGPT, count_parameters

STUDENT_NAME = "tinygpt_student"
STUDENT_CONFIG = GPTConfig(n_layer=2)  # half the teacher's depth; 128 wide, so groups of 128 fit


def _check_gpt(name: str, model) -> None:
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"{name} must be a TinyGPT (an nn.Module with .config), got {type(model).__name__}")


# ── distillation ─────────────────────────────────────────────────────────────────────────────
def distill_tinygpt_student(teacher: nn.Module, corpus, student: nn.Module | None = None, *,
                            config: GPTConfig | None = None, steps: int = 300, batch_size: int = 16,
                            lr: float = 2e-3, min_lr: float | None = None, warmup: int = 0,
                            temperature: float = 1.0, alpha: float = 0.9,
                            fake_quant_bits: int | None = None, group_size: int = 128, seed: int = 0,
                            eval_every: int | None = None, progress: bool = True):
    """Distill `teacher` into a smaller TinyGPT on random training windows; returns (student, history).

    Each step draws x, y [batch_size, block_size] from corpus.get_batch("train"), runs the frozen
    teacher under no_grad (logits [B, T, V]) and minimises, over all B·T positions,

        alpha · T² KL(softmax(t / T) ‖ softmax(s / T)) + (1 − alpha) · cross_entropy(s, y)

    (`distill.distillation_loss`) with AdamW, a linear warm-up and a cosine decay to min_lr
    (default lr / 10; 0 <= min_lr <= lr).

    student          None: a fresh TinyGPT(config or STUDENT_CONFIG, seed=seed), built on the
                     teacher's device. Otherwise it is trained further, in place (e.g. the shipped
                     student, for quantization-aware distillation); it must be on the teacher's
                     device. The batches are moved there too.
    fake_quant_bits  None: train in float. An int: every quantizable nn.Linear is swapped for
                     `rtn.QATLinear` (fake-quantized weights, straight-through estimator, groups of
                     group_size) before training, and converted to `QuantLinear` afterwards, so
                     the returned student is the quantized model that was trained.
    history          [{"step", "loss", "seconds"[, "val_ppl"]}] every eval_every steps (and at
                     the end); val_ppl only when eval_every is set (32 validation windows).
    """
    import time

    from minicomp.calibrate import find_linears
    from minicomp.checks import check_bits, check_flag, check_seed
    from minicomp.distill import _check_temperature, distillation_loss
    from minicomp.models import perplexity
    from minicomp.quant import check_group_size, group_len
    from minicomp.rtn import convert_qat, prepare_qat

    # Every argument is checked before the caller's student is edited (prepare_qat swaps its layers).
    _check_gpt("teacher", teacher)
    check_positive_ints(steps=steps, batch_size=batch_size)
    if eval_every is not None:
        check_positive_ints(eval_every=eval_every)
    check_positive_numbers(lr=lr)
    check_fraction("alpha", alpha, "[0, 1]", ": the weight of the teacher's soft targets")
    if not is_int(warmup) or not 0 <= warmup < steps:
        raise ValueError(f"warmup={warmup!r} must be an int in [0, steps={steps})")
    min_lr = lr / 10 if min_lr is None else min_lr
    if not is_real(min_lr) or not 0 <= min_lr <= lr:
        raise ValueError(f"min_lr={min_lr!r} must be a number in [0, lr={lr}]: the cosine decays from lr to min_lr")
    _check_temperature(temperature)
    seed = check_seed(seed)   # (also with student=: it seeds the batches)
    device = next(teacher.parameters()).device
    if student is None:
        student = TinyGPT(config or STUDENT_CONFIG, seed=seed).to(device)
    elif config is not None:
        raise ValueError("pass config= (to build a new student) or student= (to train one further), not both")
    _check_gpt("student", student)
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ValueError(f"student vocab_size={student.config.vocab_size} must equal the teacher's "
                         f"vocab_size={teacher.config.vocab_size}: KD compares their distributions")
    student_device = next(student.parameters()).device
    if student_device != device:
        raise ValueError(f"student is on {student_device} but teacher is on {device}; move one, "
                         f"e.g. student.to({str(device)!r})")
    if not hasattr(corpus, "get_batch"):
        raise TypeError(f"corpus must be a minicomp.data.CharCorpus (e.g. CharCorpus()), got {type(corpus).__name__}")
    check_flag("progress", progress)
    if fake_quant_bits is not None:
        check_bits(fake_quant_bits)
        check_group_size(group_size)
        for layer in find_linears(student).values():  # the layers prepare_qat will swap
            group_len(layer.weight, group_size)  # group_size must divide each one's in_features
        prepare_qat(student, bits=fake_quant_bits, group_size=group_size)
    block = min(student.config.block_size, teacher.config.block_size)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay from lr to min_lr
        if step < warmup:
            return lr * (step + 1) / warmup
        ratio = (step - warmup) / max(1, steps - warmup)
        return min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr - min_lr)

    opt = torch.optim.AdamW(student.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    teacher_mode, history, running, t0 = teacher.training, [], 0.0, time.perf_counter()
    teacher.eval()
    student.train()
    try:
        bar = tqdm(range(steps), desc="distill" + (f" (INT{fake_quant_bits} fake-quant)" if fake_quant_bits else ""),
                   disable=not progress, leave=False)
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            x, y = corpus.get_batch("train", batch_size, block, g, device)  # [B, T] each
            with torch.no_grad():
                t_logits = teacher(x)[0]  # [B, T, V]
            s_logits = student(x)[0]  # [B, T, V]
            loss = distillation_loss(s_logits, t_logits, y, temperature=temperature, alpha=alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            running += loss.item()
            done = step + 1
            if done == steps or (eval_every and done % eval_every == 0):
                n = done - (history[-1]["step"] if history else 0)
                row = {"step": done, "loss": running / n, "seconds": time.perf_counter() - t0}
                if eval_every:
                    row["val_ppl"] = perplexity(student, corpus, "val", max_windows=32)
                    student.train()
                    bar.set_postfix(val_ppl=f"{row['val_ppl']:.2f}")
                history.append(row)
                running = 0.0
    finally:
        teacher.train(teacher_mode)
        student.eval()
    if fake_quant_bits is not None:
        convert_qat(student)
    return student, history


def load_student(name: str = STUDENT_NAME) -> nn.Module:
    """The shipped distilled student (made by `python -m minicomp.pretrained --which student`):
    `models.load_pretrained("tinygpt_student")`, float32 (stored in float16), eval mode."""
    from minicomp.models import load_pretrained

    return load_pretrained(name)


# ── measuring ────────────────────────────────────────────────────────────────────────────────
def quality(model: nn.Module, corpus, split: str = "val", max_windows: int = 32) -> dict[str, float]:
    """{"perplexity", "accuracy"} on the same fixed windows as `models.perplexity` (in one pass):
    `models.next_char_scores`. accuracy is top-1 next-character accuracy, the "accuracy" that
    claims about quantization usually quote."""
    from minicomp.models import next_char_scores

    _check_gpt("model", model)
    return next_char_scores(model, corpus, split, max_windows=max_windows)


@dataclass
class Result:
    """One model of the chain, measured. bytes: stored size (codes packed at their bit width)."""

    name: str
    step: str  # "teacher", "distilled", "quantized", "packed", "QAD"
    params: int
    bytes: int
    perplexity: float
    accuracy: float
    latency_ms: float = float("nan")
    extra: dict = field(default_factory=dict)

    def asdict(self) -> dict:
        return asdict(self)


def quantize_variants(model: nn.Module, calibration, *, methods=("rtn", "gptq", "awq"), bits=(8, 4),
                      group_size: int = 128, progress: bool = True) -> dict[str, nn.Module]:
    """{"RTN INT8": model', ...}: a quantized deep copy of `model` for each method × bit width.

    calibration: a list of token batches [B, T] for the data-driven methods (gptq, awq).
    The copies hold `QuantLinear` layers (simulated: dequantized weights in float); pack them
    with `kernels.pack_model` to run the fused kernels.
    """
    from minicomp.calibrate import quantize_model
    from minicomp.checks import check_bits, check_flag

    check_flag("progress", progress)
    methods = (methods,) if isinstance(methods, str) else methods   # one method, one bit width: fine too
    bits = (bits,) if is_int(bits) else bits
    if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
        raise TypeError(f"methods must be a method name or a list of them, such as ('rtn', 'gptq'), got {methods!r}")
    if not isinstance(bits, (list, tuple)):
        raise TypeError(f"bits must be an int or a list of ints, such as (8, 4), got {bits!r}")
    if not methods or not bits:
        raise ValueError(f"methods={methods!r} and bits={bits!r} must both be non-empty")
    for b in bits:
        check_bits(b)
    out = {}
    jobs = [(m, b) for m in methods for b in bits]
    for method, b in tqdm(jobs, desc="quantize", disable=not progress, leave=False):
        opts = {} if method == "rtn" else {"calibration": calibration}
        out[f"{method.upper()} INT{b}"] = quantize_model(copy.deepcopy(model), method, bits=b,
                                                         group_size=group_size, progress=False, **opts)
    return out


def measure(models: dict, corpus, *, steps: dict | None = None, timed=None, latency_tokens: int = 1,
            repeats: int = 15, max_windows: int = 32, device="cpu") -> list[Result]:
    """Measure every model of {name: model}: parameters, stored bytes, quality, batch-1 latency.

    Latency: one forward of idx [1, latency_tokens] under no_grad, timed for the models named in
    `timed` (default: all) together with `hardware.compare` (interleaved repeats, median, warm-up
    first) on `device`; the others get latency_ms = nan. Simulated `QuantLinear` models
    dequantize their weights at every call, so their time says nothing about deployment: time
    float and packed models. latency_tokens=1 is one decoding step (as with a KV cache): every
    Linear is a matrix-vector product. steps: {name: "teacher" | "distilled" | ...}, each row's label.
    """
    from minicomp.calibrate import storage_bytes
    from minicomp.hardware import compare

    if not isinstance(models, dict) or not models:
        raise ValueError(f"models={models!r} must be a non-empty dict of name -> model")
    if steps is not None and not isinstance(steps, Mapping):
        raise TypeError(f"steps must be a dict of name -> step such as {{'teacher': 'teacher'}}, got {type(steps).__name__}")
    if timed is not None and not isinstance(timed, str) and not isinstance(timed, Iterable):
        raise TypeError(f"timed must be a model name or a list of names (None: all), got {type(timed).__name__} {timed!r}")
    check_positive_ints(latency_tokens=latency_tokens, repeats=repeats)
    device = check_device(device, "device")
    for name, m in models.items():
        _check_gpt(f"models[{name!r}]", m)
        where = {t.device for t in (*m.parameters(), *m.buffers())}
        if where - {device}:
            raise ValueError(
                f"models[{name!r}] has tensors on {sorted(map(str, where))} but device={str(device)!r}; "
                f"move it with model.to({str(device)!r}), or pass the model's device as device="
            )
        if latency_tokens > m.config.block_size:
            raise ValueError(f"latency_tokens={latency_tokens} is longer than models[{name!r}]'s context "
                             f"(config.block_size={m.config.block_size}): pass {m.config.block_size} or less")
    idx = torch.zeros(1, latency_tokens, dtype=torch.long, device=device)  # [1, T]

    def forward(m):
        def run():
            with torch.no_grad():
                return m(idx)
        return run

    timed = list(models) if timed is None else [timed] if isinstance(timed, str) else list(timed)
    unknown = [n for n in timed if n not in models]
    if unknown:
        raise ValueError(f"timed={unknown!r} names no model; models are {list(models)}")
    timings = compare({n: forward(models[n]) for n in timed}, warmup=3, repeats=repeats, device=device) if timed else {}
    rows = []
    for name, m in models.items():
        q = quality(m, corpus, max_windows=max_windows)
        rows.append(Result(name, (steps or {}).get(name, ""), count_parameters(m) + _buffer_params(m),
                           storage_bytes(m)["total"], q["perplexity"], q["accuracy"],
                           timings[name].median * 1e3 if name in timings else float("nan")))
    return rows


def _buffer_params(model: nn.Module) -> int:
    """Weights (and biases) that QuantLinear / PackedLinear keep as buffers: still parameters of the model."""
    from minicomp.kernels import PackedLinear
    from minicomp.rtn import QuantLinear

    n = 0
    for m in model.modules():
        if isinstance(m, (QuantLinear, PackedLinear)):
            n += m.in_features * m.out_features
            if m.bias is not None and not isinstance(m.bias, nn.Parameter):
                n += m.bias.numel()
    return n


# ── summaries ────────────────────────────────────────────────────────────────────────────────
def _check_results(rows) -> list[Result]:
    """rows as a list, or a clear error unless it is an iterable of Result (what `measure` returns)."""
    if isinstance(rows, Result):
        raise TypeError("rows must be a list of Result rows; got a single Result: wrap it, [row]")
    if not isinstance(rows, Iterable) or isinstance(rows, (str, Mapping)):
        raise TypeError(f"rows must be a list of Result rows, as measure() returns, got {type(rows).__name__}")
    rows = list(rows)
    for i, r in enumerate(rows):
        if not isinstance(r, Result):
            raise TypeError(f"rows[{i}] is a {type(r).__name__}, not a Result; pass the list measure() returns "
                            "(or build rows with pipeline.Result(...))")
    return rows


_LOWER_IS_BETTER = ("bytes", "latency_ms", "perplexity", "params")  # the fields pareto_front can rank


def pareto_front(rows: list[Result], x: str = "bytes", y: str = "perplexity") -> list[Result]:
    """The rows no other row beats on both x and y (lower is better for both), sorted by x.

    A row is dominated when another is <= on both and < on at least one. Rows whose x or y is
    nan (not measured, e.g. an untimed model's latency) are left out; no rows give no front.
    """
    for attr in (x, y):
        if attr == "accuracy":
            raise ValueError("'accuracy' is higher-is-better and this front keeps the lowest values; "
                             "use 'perplexity' (lower is better)")
        if attr not in _LOWER_IS_BETTER:
            raise ValueError(f"{attr!r} must be a numeric field of Result where lower is better: "
                             f"one of {list(_LOWER_IS_BETTER)}")
    rows = [r for r in _check_results(rows) if not (math.isnan(getattr(r, x)) or math.isnan(getattr(r, y)))]
    front = [r for r in rows
             if not any(getattr(o, x) <= getattr(r, x) and getattr(o, y) <= getattr(r, y)
                        and (getattr(o, x) < getattr(r, x) or getattr(o, y) < getattr(r, y)) for o in rows)]
    return sorted(front, key=lambda r: getattr(r, x))


WHAT_CHANGES = {
    "teacher": ("nothing: the float32 teacher", "no"),
    "distilled": ("architecture: fewer layers, trained on the teacher's soft targets", "yes (distillation)"),
    "quantized": ("weights stored in fewer bits, same architecture; simulated (dequantized) here", "no (RTN); calibration data (GPTQ, AWQ)"),
    "packed": ("codes packed into bytes, run by the packed kernels", "no (beyond the quantizer's)"),
    "QAD": ("student trained through fake-quantized weights (STE)", "yes (distillation through the rounding)"),
}


def comparison_table(rows: list[Result], baseline: str) -> list[dict]:
    """The documents' comparison table, rebuilt from measured rows, relative to rows[baseline].

    Per row: what changes, parameters, training needed, compression (baseline bytes / bytes),
    quality retained (accuracy / baseline accuracy, and baseline perplexity / perplexity), speed-up
    (baseline latency / latency). Values are floats; format them when printing.
    """
    rows = _check_results(rows)
    base = {r.name: r for r in rows}.get(baseline)
    if base is None:
        raise ValueError(f"baseline={baseline!r} is not one of the rows: {[r.name for r in rows]}")
    ratio = lambda a, b: a / b if b else math.nan   # noqa: E731  (a row with 0 in it has no ratio)
    table = []
    for r in rows:
        what, training = WHAT_CHANGES.get(r.step, ("", ""))
        table.append({"model": r.name, "what changes": what, "params": r.params, "training": training,
                      "compression": ratio(base.bytes, r.bytes), "accuracy retained": ratio(r.accuracy, base.accuracy),
                      "perplexity retained": ratio(base.perplexity, r.perplexity),
                      "speed-up": ratio(base.latency_ms, r.latency_ms)})
    return table


def format_table(table: list[dict]) -> str:
    """Plain-text columns for a list of dicts (floats: 3 significant digits; ratios get ×/%)."""
    def cell(k, v):
        if isinstance(v, float) and math.isnan(v):
            return "-"  # not measured (e.g. a simulated model is not timed)
        if isinstance(v, float):
            return f"{100 * v:.1f}%" if "retained" in k else f"{v:.2f}×" if k in ("compression", "speed-up") else f"{v:.3g}"
        return f"{v:,}" if isinstance(v, int) else str(v)
    if not isinstance(table, (list, tuple)) or not all(isinstance(row, Mapping) for row in table):
        raise TypeError(f"table must be a list of dicts, as comparison_table() returns, got {type(table).__name__}"
                        + (" of " + ", ".join(sorted({type(r).__name__ for r in table})) if isinstance(table, (list, tuple)) else ""))
    if not table:
        raise ValueError("table=[] has no rows")
    keys = list(table[0])
    for i, row in enumerate(table):
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"table[{i}] has no {missing}; every row needs the keys of table[0]: {keys}")
    return text_table(keys, [[cell(k, row[k]) for k in keys] for row in table])


def text_table(headers, rows) -> str:
    """Left-aligned columns of strings: the header line, a line of dashes, then one line per row."""
    cells = [list(headers)] + [list(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def plot_pareto(rows: list[Result], axes=None):
    """Two panels: stored bytes vs perplexity, and batch-1 latency vs perplexity (timed rows only).

    Colours mark the step of the chain; the dashed line is the Pareto front, whose points are
    labelled (as are the teacher and the student).
    """
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    rows = _check_results(rows)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    elif not (isinstance(axes, Iterable) and len(pair := list(axes)) == 2 and all(isinstance(a, Axes) for a in pair)):
        raise TypeError(f"axes must be two matplotlib Axes, e.g. plt.subplots(1, 2)[1], got {type(axes).__name__}")
    colours = {step: f"C{i}" for i, step in enumerate(dict.fromkeys(r.step for r in rows))}
    for ax, x, label in ((axes[0], "bytes", "stored bytes (KB)"), (axes[1], "latency_ms", "batch-1 latency (ms)")):
        scale = 1e-3 if x == "bytes" else 1.0
        shown = [r for r in rows if not math.isnan(getattr(r, x))]
        if not shown:  # e.g. measure(..., timed=[]): no latencies to plot
            ax.text(0.5, 0.5, "no model measured", ha="center", va="center", transform=ax.transAxes)
            ax.set(xlabel=label, ylabel="val perplexity (lower is better)")
            continue
        front = pareto_front(shown, x)
        for step, colour in colours.items():
            pts = [r for r in shown if r.step == step]
            if pts:
                ax.scatter([getattr(r, x) * scale for r in pts], [r.perplexity for r in pts], color=colour, label=step)
        labelled = set()
        for r in shown:  # label the front, the float models, and every timed model; one label per point
            where = (getattr(r, x), r.perplexity)
            if (r in front or r.step in ("teacher", "distilled") or x == "latency_ms") and where not in labelled:
                labelled.add(where)
                ax.annotate(r.name, (getattr(r, x) * scale, r.perplexity), fontsize=7, alpha=0.8,
                            xytext=(3, 3), textcoords="offset points")
        ax.plot([getattr(r, x) * scale for r in front], [r.perplexity for r in front], "k--", lw=1,
                label="Pareto front")
        xs = [getattr(r, x) * scale for r in shown]
        wide = max(xs) > 10 * min(xs)  # a log axis only where the values span a decade or more
        ax.set(xlabel=label, ylabel="val perplexity (lower is better)", xscale="log" if wide else "linear")
        if wide:
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    axes[0].set_title("bytes against quality")
    axes[1].set_title("latency against quality (float and packed models)")
    return axes[0].figure


def check_claims(rows: list[Result], *, teacher: str, student: str, four_bit: list[str], combined: str) -> list[dict]:
    """The documents' three claims, each tested on measured rows: [{"claim", "measured", "holds"}].

    teacher, student: row names of the float teacher and the float distilled student;
    four_bit: rows of the student quantized to 4 bits (accuracy retained is against the student);
    combined: the row of the distilled and 4-bit (packed) student (compression against the teacher).
    """
    by = {r.name: r for r in _check_results(rows)}
    four_bit = [four_bit] if isinstance(four_bit, str) else four_bit
    if not isinstance(four_bit, Iterable):
        raise TypeError(f"four_bit must be a row name or a list of row names, got {type(four_bit).__name__}")
    four_bit = list(four_bit)
    missing = [n for n in (teacher, student, *four_bit, combined) if n not in by]
    if missing or not four_bit:
        raise ValueError(f"rows have no {missing!r} (four_bit={four_bit!r} must be non-empty); rows: {list(by)}")
    t, s = by[teacher], by[student]
    for row, field_ in ((s, "params"), (s, "accuracy"), (by[combined], "bytes")):
        if not getattr(row, field_) > 0:
            raise ValueError(f"row {row.name!r} has {field_}={getattr(row, field_)!r}; the claims divide by it, "
                             "so it must be above 0 (was that model measured?)")
    fewer = t.params / s.params
    kept = [by[n].accuracy / s.accuracy for n in four_bit]
    together = t.bytes / by[combined].bytes
    return [
        {"claim": "distillation gives 10-100x fewer parameters",
         "measured": f"{fewer:.1f}x fewer ({t.params:,} -> {s.params:,})", "value": fewer, "holds": fewer >= 10},
        {"claim": "4-bit keeps 95-99% of accuracy",
         "measured": f"{100 * min(kept):.1f}% to {100 * max(kept):.1f}% of the student's next-char accuracy",
         "value": min(kept), "holds": min(kept) >= 0.95},
        {"claim": "distillation + 4-bit reach 50x or more",
         "measured": f"{together:.1f}x fewer bytes ({t.bytes:,} -> {by[combined].bytes:,})", "value": together,
         "holds": together >= 50},
    ]
