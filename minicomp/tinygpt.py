"""TinyGPT: a character-level causal transformer, nanoGPT style, readable top to bottom.

* `GPTConfig`: its shape. The defaults are the course's teacher (4 layers, 128 wide, 0.8 M
  parameters); in it every Linear has in_features divisible by 128, the group size the
  quantization lessons use.
* `CausalSelfAttention`, `Block`, `TinyGPT`: idx [B, T] token ids -> logits [B, T, vocab_size].
  `TinyGPT.generate` samples text.
* `perplexity`, `next_char_scores`: how well a model predicts the next character of a
  `minicomp.data.CharCorpus` split.

`minicomp.models` imports all of these too, beside the other models of the course and the
loaders of the shipped weights (`load_pretrained("tinygpt")`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from minicomp.checks import (
    capturing,
    check_fraction,
    check_module,
    check_positive_ints,
    is_int,
    is_real,
    seeded,
)


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
        with seeded(seed):
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
        device = self.transformer.wte.weight.device
        if idx.device != device:   # (a meta tensor stands for another device in the tests)
            raise ValueError(f"{name} is on {idx.device} but the model is on {device}; move it: {name}.to({str(device)!r})")
        if capturing():   # reading the ids' range back would break a CUDA graph or torch.compile
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
        if capturing() or targets.is_meta or not targets.numel():
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
    most = getattr(getattr(model, "config", None), "block_size", None)
    if is_int(most) and T > most:
        raise ValueError(f"block_size={T} is longer than the model's context, model.config.block_size={most}: "
                         f"pass block_size={most} or less (None: the model's own)")
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
