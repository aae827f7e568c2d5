"""Reproduce the shipped weights in minicomp/weights/ on a CPU, with fixed seeds.

    python -m minicomp.pretrained                    # all four models
    python -m minicomp.pretrained --which digits     # the two digits teachers (seconds)
    python -m minicomp.pretrained --which tinygpt    # the character GPT (about 10 min, 2 cores)
    python -m minicomp.pretrained --which student    # TinyGPT distilled into 2 layers (about 8 min)

Each model is written as NAME.safetensors (fp32) plus NAME.json: the architecture and config
that `minicomp.models.load_pretrained` rebuilds, the training recipe, the seed and the metrics
measured at the end of training. Exact bits can differ between machines (thread counts and
math libraries change float rounding), but the metrics land in the same place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_model
from tqdm.auto import tqdm

from minicomp.checks import check_positive_ints, check_positive_numbers, is_int
from minicomp.data import CharCorpus, as_images, batches, load_digits
from minicomp.models import (
    WEIGHTS_DIR,
    GPTConfig,
    TinyGPT,
    accuracy,
    count_parameters,
    digits_cnn_teacher,
    digits_mlp_teacher,
    perplexity,
)


def _environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }


def save(model: torch.nn.Module, meta: dict, out_dir: Path = WEIGHTS_DIR) -> None:
    """Write NAME.safetensors and NAME.json (NAME = meta['name'])."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out_dir / f"{meta['name']}.safetensors"))  # drops the tied lm_head copy
    plain = lambda v: v.item() if hasattr(v, "item") else str(v)   # noqa: E731  (np.int64(3) -> 3)
    (out_dir / f"{meta['name']}.json").write_text(json.dumps(meta, indent=2, default=plain) + "\n")


# ----------------------------------------------------------------------------------------------
# Digits teachers


def train_digits_teacher(
    kind: str = "mlp",
    seed: int = 0,
    epochs: int = 60,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
):
    """Train the MLP or CNN digits teacher on the train split; returns (model, metadata)."""
    if kind not in ("mlp", "cnn"):
        raise ValueError(f"kind={kind!r} must be 'mlp' or 'cnn'")
    check_positive_ints(epochs=epochs, batch_size=batch_size)
    check_positive_numbers(lr=lr)
    t0 = time.time()
    torch.manual_seed(seed)  # dropout masks
    d = load_digits(seed=0)  # the split every lesson uses
    model = digits_mlp_teacher(seed=seed) if kind == "mlp" else digits_cnn_teacher(seed=seed)
    x_train = d.x_train if kind == "mlp" else as_images(d.x_train)  # [N, 64] or [N, 1, 8, 8]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(x_train) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(epochs), desc=f"digits {kind} teacher", leave=False):
        for xb, yb in batches(x_train, d.y_train, batch_size, shuffle=True, generator=g):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    metrics = {
        "train_accuracy": accuracy(model, d.x_train, d.y_train),
        "val_accuracy": accuracy(model, d.x_val, d.y_val),
        "test_accuracy": accuracy(model, d.x_test, d.y_test),
    }
    meta = {
        "name": f"digits_{kind}_teacher",
        "arch": type(model).__name__,
        "config": model.config,
        "params": count_parameters(model),
        "seed": seed,
        "data": f"minicomp.data.load_digits(seed=0): {len(d.y_train)} train / "
        f"{len(d.y_val)} val / {len(d.y_test)} test",
        "recipe": {
            "optimizer": "AdamW",
            "lr": lr,
            "weight_decay": weight_decay,
            "schedule": "OneCycleLR (cosine)",
            "epochs": epochs,
            "batch_size": batch_size,
            "loss": "cross-entropy on train labels",
        },
        "metrics": metrics,
        "train_seconds": round(time.time() - t0, 1),
        "environment": _environment(),
    }
    return model, meta


# ----------------------------------------------------------------------------------------------
# TinyGPT


def train_tinygpt(
    seed: int = 0,
    max_iters: int = 2200,
    batch_size: int = 32,
    lr: float = 2e-3,
    min_lr: float = 2e-4,
    warmup_iters: int = 100,
    weight_decay: float = 0.1,
    eval_interval: int = 250,
    config: GPTConfig | None = None,
):
    """Train TinyGPT on the pydoc character corpus; returns (model, metadata)."""
    check_positive_ints(max_iters=max_iters, batch_size=batch_size, eval_interval=eval_interval)
    if not is_int(warmup_iters) or warmup_iters < 0:
        raise ValueError(f"warmup_iters={warmup_iters!r} must be an int >= 0")
    check_positive_numbers(lr=lr)
    t0 = time.time()
    config = config or GPTConfig()
    corpus = CharCorpus()
    torch.manual_seed(seed)  # dropout masks
    model = TinyGPT(config, seed=seed)
    # nanoGPT's recipe: weight decay on matrices only, not on biases, LayerNorms or embeddings' 1-D
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.99),
    )

    def lr_at(it: int) -> float:  # linear warmup, then cosine decay to min_lr
        if it < warmup_iters:
            return lr * (it + 1) / warmup_iters
        ratio = (it - warmup_iters) / max(1, max_iters - warmup_iters)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    g = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    bar = tqdm(range(max_iters), desc="tinygpt")
    for it in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        x, y = corpus.get_batch("train", batch_size, config.block_size, g)  # [B, T]
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (it + 1) % eval_interval == 0 or it + 1 == max_iters:
            val_ppl = perplexity(model, corpus, "val", max_windows=64)
            history.append(
                {"iter": it + 1, "train_loss": round(loss.item(), 4), "val_ppl": round(val_ppl, 3)}
            )
            bar.write(
                f"iter {it + 1}: train loss {loss.item():.3f}, val ppl {val_ppl:.3f} "
                f"({time.time() - t0:.0f}s)"
            )
    model.eval()

    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size).float() + 1.0
    unigram_nll = -(counts / counts.sum()).log()[corpus.val].mean().item()
    prompt = corpus.encode("The ")[None]  # [1, 4]
    sample = model.generate(
        prompt, 200, temperature=0.8, top_k=20, generator=torch.Generator().manual_seed(seed)
    )
    meta = {
        "name": "tinygpt",
        "arch": "TinyGPT",
        "config": asdict(config),
        "params": count_parameters(model),
        "seed": seed,
        "data": {
            "corpus": "minicomp.data.CharCorpus() (pydoc_data.topics, ASCII-folded)",
            "chars": len(corpus.text),
            "text_sha256": hashlib.sha256(corpus.text.encode()).hexdigest(),
            "vocab": corpus.vocab,
            "splits": [0.9, 0.05, 0.05],
        },
        "recipe": {
            "optimizer": "AdamW",
            "betas": [0.9, 0.99],
            "lr": lr,
            "min_lr": min_lr,
            "warmup_iters": warmup_iters,
            "schedule": "linear warmup + cosine",
            "max_iters": max_iters,
            "batch_size": batch_size,
            "weight_decay": weight_decay,
            "grad_clip": 1.0,
        },
        "metrics": {
            "val_perplexity": perplexity(model, corpus, "val"),  # default windows: 128 x 128
            "test_perplexity": perplexity(model, corpus, "test"),
            "val_perplexity_unigram": math.exp(unigram_nll),
            "perplexity_eval": "minicomp.models.perplexity(model, corpus, split, max_windows=128)",
        },
        "history": history,
        "sample": corpus.decode(sample[0]),
        "train_seconds": round(time.time() - t0, 1),
        "environment": _environment(),
    }
    return model, meta


# ----------------------------------------------------------------------------------------------
# TinyGPT student (lesson 10): distilled from the shipped teacher with minicomp.pipeline


def distill_student(seed: int = 0, steps: int = 1500, batch_size: int = 32, lr: float = 2e-3,
                    warmup: int = 100, temperature: float = 1.0, alpha: float = 0.9,
                    teacher_dir: Path = WEIGHTS_DIR):
    """Distill the TinyGPT in teacher_dir (default: the shipped one) into STUDENT_CONFIG (2 layers);
    returns (model, metadata).

    The same function the lesson runs for a few seconds (`pipeline.distill_tinygpt_student`),
    run here for longer on one thread.
    """
    from minicomp.models import load_pretrained
    from minicomp.pipeline import STUDENT_CONFIG, STUDENT_NAME, distill_tinygpt_student

    t0 = time.time()
    corpus, teacher = CharCorpus(), load_pretrained("tinygpt", weights_dir=teacher_dir)
    student, history = distill_tinygpt_student(
        teacher, corpus, config=STUDENT_CONFIG, steps=steps, batch_size=batch_size, lr=lr,
        warmup=warmup, temperature=temperature, alpha=alpha, seed=seed, eval_every=250)
    student.half().float()  # shipped as float16 (0.85 MB, not 1.7 MB); metrics below use the rounded weights
    meta = {
        "name": STUDENT_NAME,
        "arch": "TinyGPT",
        "config": asdict(STUDENT_CONFIG),
        "params": count_parameters(student),
        "teacher": "tinygpt",
        "teacher_params": count_parameters(teacher),
        "seed": seed,
        "data": "minicomp.data.CharCorpus() train split (pydoc_data.topics), random windows of 128",
        "recipe": {
            "function": "minicomp.pipeline.distill_tinygpt_student",
            "loss": "alpha * T^2 KL(teacher_T || student_T) + (1 - alpha) * cross-entropy, every position",
            "temperature": temperature,
            "alpha": alpha,
            "optimizer": "AdamW",
            "betas": [0.9, 0.99],
            "lr": lr,
            "min_lr": lr / 10,
            "warmup_iters": warmup,
            "schedule": "linear warmup + cosine",
            "steps": steps,
            "batch_size": batch_size,
            "grad_clip": 1.0,
        },
        "metrics": {
            "val_perplexity": perplexity(student, corpus, "val"),
            "test_perplexity": perplexity(student, corpus, "test"),
            "teacher_val_perplexity": perplexity(teacher, corpus, "val"),
            "perplexity_eval": "minicomp.models.perplexity(model, corpus, split, max_windows=128)",
        },
        "history": [{k: round(v, 4) for k, v in row.items()} for row in history],
        "train_seconds": round(time.time() - t0, 1),
        "environment": _environment(),
        "storage": "float16 safetensors; load_student() loads it into a float32 TinyGPT",
    }
    return student.half(), meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Reproduce minicomp's shipped weights.")
    parser.add_argument("--which", choices=["digits", "tinygpt", "student", "all"], default="all")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-iters", type=int, default=2200, help="TinyGPT training steps")
    args = parser.parse_args(argv)

    jobs = []
    if args.which in ("digits", "all"):
        jobs += [
            lambda: train_digits_teacher("mlp", seed=args.seed),
            lambda: train_digits_teacher("cnn", seed=args.seed),
        ]
    if args.which in ("tinygpt", "all"):
        jobs.append(lambda: train_tinygpt(seed=args.seed, max_iters=args.max_iters))
    if args.which in ("student", "all"):  # after the teacher: it distills the tinygpt in --out
        jobs.append(lambda: distill_student(seed=args.seed, teacher_dir=args.out))
    for job in jobs:
        model, meta = job()
        save(model, meta, args.out)
        print(
            f"{meta['name']}: {meta['params']:,} params, {meta['train_seconds']}s, "
            f"metrics {json.dumps({k: v for k, v in meta['metrics'].items() if not isinstance(v, str)})}"
        )


if __name__ == "__main__":
    main()
