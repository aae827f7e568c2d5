"""Sentence-embedding models (all-MiniLM-L6-v2): batches, embeddings, fidelity, a smaller student.

Lesson 11, and the MiniLM parts of lessons 07-08 and `benchmarks/minilm_ptq.py`:

* `calibration_batches(model, sentences)`: tokenized batches for `quantize_model(calibration=...)`,
  with `forward` as its `forward=` (a SentenceTransformer takes a dict of tensors).
* `embed(model, sentences)`: unit-length sentence embeddings `[N, dim]`, float32 on the CPU.
* `token_embeddings(model, sentences)` and `mean_pool(tokens, attention_mask)`: the same
  embeddings in two steps, the encoder's vector per token, then their mean over the real
  (non-padding) tokens, scaled to unit length (exercise 11).
* `mean_cosine(ref, emb)` and `nn_agreement(ref, emb)`: how close a compressed model's
  embeddings stay to the original's (cosine per sentence; same nearest neighbour, found by
  `nearest_neighbours(emb)`).
* `encoder_layers(model)`, `layer_reduced_student(teacher, keep)`: a student that keeps some of
  the teacher's transformer layers (sentence-transformers' `model_distillation` recipe).
* `distill_embeddings(student, sentences, targets)`: train it with MSE on the teacher's
  embeddings (sentence-transformers' `MSELoss`).

`model` is a `sentence_transformers.SentenceTransformer` whose first module wraps a Hugging Face
encoder (`model[0].auto_model`), as `minicomp.models.load_minilm` returns.
"""

from __future__ import annotations

import copy
import numbers

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from minicomp.checks import (
    check_finite,
    check_flag,
    check_positive_ints,
    check_positive_numbers,
    check_same_device,
    check_seed,
    is_int,
)

__all__ = ["calibration_batches", "forward", "embed", "token_embeddings", "mean_pool", "mean_cosine",
           "nearest_neighbours", "nn_agreement",
           "encoder_layers", "layer_reduced_student", "distill_embeddings"]


def _check_sentences(sentences, name: str = "sentences") -> list[str]:
    """Return `sentences` as a list of strings; any iterable of them (a generator too) is accepted."""
    kind = type(sentences).__name__
    if isinstance(sentences, str):
        raise TypeError(f"{name} must be a list of strings, got a single str; wrap it in a list: [sentence]")
    try:
        sentences = list(sentences)  # first: a generator can be read only once
    except TypeError:
        raise TypeError(f"{name} must be a list of strings, got {kind}") from None
    if not all(isinstance(s, str) for s in sentences):
        bad = next(s for s in sentences if not isinstance(s, str))
        raise TypeError(f"{name} must be a list of strings, got a {kind} with an item of type {type(bad).__name__}")
    if not sentences:
        raise ValueError(f"{name} must hold at least one sentence, got an empty {kind}")
    return sentences


def _check_model(model, name: str = "model") -> None:
    """Raise unless `model` is a SentenceTransformer-like module: it tokenizes and encodes sentences."""
    if not (isinstance(model, nn.Module) and hasattr(model, "encode")
            and (hasattr(model, "tokenize") or hasattr(model, "preprocess"))):
        raise TypeError(f"{name} must be a sentence_transformers.SentenceTransformer, such as "
                        f"minicomp.models.load_minilm(), got {type(model).__name__}")


def _tokenize(model, sentences: list[str]) -> dict:
    """The model's tokenizer output (input_ids, attention_mask [B, T], ...) for `sentences`."""
    return model.preprocess(sentences) if hasattr(model, "preprocess") else model.tokenize(sentences)


def _features(model, sentences: list[str]) -> dict:
    """`_tokenize`'s output with its tensors on the model's device: a batch ready for model(...)."""
    device = next(model.parameters()).device
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in _tokenize(model, sentences).items()}


def _shape(x) -> str:
    """x's shape, or its type when it is not a tensor: for error messages."""
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def calibration_batches(model, sentences, batch_size: int = 32) -> list[dict]:
    """Tokenized batches of `sentences`, sorted by length so that batches carry little padding.

    Returns a list of dicts (input_ids, attention_mask [B, T], ...), B ≤ batch_size, for
    `quantize_model(model, ..., calibration=batches, forward=minicomp.sentence.forward)`.
    """
    sentences = _check_sentences(sentences)
    check_positive_ints(batch_size=batch_size)
    _check_model(model)
    s = sorted(sentences, key=len)
    return [_tokenize(model, s[i:i + batch_size]) for i in range(0, len(s), batch_size)]


def forward(model, batch: dict) -> dict:
    """forward(model, batch) for `quantize_model`: runs the model on a copy of the tokenized batch.

    A SentenceTransformer adds its outputs to the dict it is given; the copy keeps the calibration
    batches unchanged, so they can be used again.
    """
    return model(dict(batch))


@torch.no_grad()
def embed(model, sentences, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """Unit-length sentence embeddings [N, dim] (float32, CPU) of `sentences`, in their order;
    progress=True shows a bar over the batches (thousands of sentences take minutes on a CPU)."""
    sentences = _check_sentences(sentences)
    check_positive_ints(batch_size=batch_size)
    _check_model(model)
    emb = model.encode(sentences, convert_to_tensor=True, batch_size=batch_size,
                       normalize_embeddings=True, show_progress_bar=check_flag("progress", progress))
    return emb.float().cpu()


@torch.no_grad()
def token_embeddings(model, sentences) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's output before pooling, for `sentences` as one padded batch.

    Returns tokens [N, T, dim] (float32, CPU), one vector per token, and attention_mask [N, T]
    (int64, 1 for a real token, 0 for padding), T being the longest sentence's token count.
    `mean_pool(tokens, attention_mask)` turns them into `embed(model, sentences)`. The model runs
    in eval mode (no dropout), as `embed` runs it; each module's train/eval mode is restored afterwards.
    """
    sentences = _check_sentences(sentences)
    _check_model(model)
    features = _features(model, sentences)
    # Each submodule's own mode, to restore: model.train(True) would switch on every dropout,
    # also in a model whose top is in train mode but whose layers are in eval (load_minilm's).
    modes = {m: m.training for m in model.modules()}
    model.eval()  # dropout off: the same numbers as embed, whatever mode the model was in
    try:
        out = model[0](features)  # the Transformer module alone: adds "token_embeddings"
    finally:
        for m, training in modes.items():
            m.training = training
    return out["token_embeddings"].float().cpu(), features["attention_mask"].cpu()


def mean_pool(tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings [B, dim] of unit length: the mean of each sentence's real tokens.

    tokens [B, T, dim]: the encoder's vector per token; attention_mask [B, T]: 1 (or True) for a
    real token, 0 for padding, at least one real token per sentence. Padding must not count:
    `sum_t mask[b,t]·tokens[b,t] / sum_t mask[b,t]`, then scaled to length 1. This is what a
    SentenceTransformer's Pooling ("mean") and Normalize modules do.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3 or not tokens.is_floating_point():
        raise ValueError(f"tokens must be a floating-point [B, T, dim] tensor, got {_shape(tokens)}")
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(tokens.shape[:2]):
        raise ValueError(f"attention_mask must be a [B, T] = {tuple(tokens.shape[:2])} tensor of 0s and 1s, "
                         f"got {_shape(attention_mask)}")
    check_same_device(tokens, attention_mask, "tokens", "attention_mask")
    if not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (a real token); got values such as "
                         f"{attention_mask[(attention_mask != 0) & (attention_mask != 1)][0].item()!r}")
    mask = attention_mask.to(tokens.dtype).unsqueeze(-1)  # [B, T, 1]
    counts = mask.sum(1)  # [B, 1] real tokens per sentence
    if (counts == 0).any():
        raise ValueError(f"attention_mask has no real token in row(s) {(counts[:, 0] == 0).nonzero()[:, 0].tolist()}; "
                         "every sentence needs at least one")
    return F.normalize((tokens * mask).sum(1) / counts, dim=1)  # [B, dim]


def _check_real(name: str, t: torch.Tensor) -> None:
    """Embeddings are real numbers: .float() would silently drop a complex tensor's imaginary part."""
    if t.is_complex():
        raise TypeError(f"{name} is a {t.dtype} tensor; expected real embeddings (float32, as embed() returns)")


def _check_pair(ref, emb) -> None:
    for name, t in (("ref", ref), ("emb", emb)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            raise ValueError(f"{name} must be a [N, dim] tensor of embeddings, got {_shape(t)}")
        _check_real(name, t)
        if not t.is_floating_point():   # bool or integer "embeddings" are a mix-up (ids, a mask?)
            raise TypeError(f"{name} is a {t.dtype} tensor; expected float embeddings, as embed() returns")
        check_finite(name, t)           # a NaN would make the mean NaN, or a neighbour arbitrary
    if ref.shape != emb.shape:
        raise ValueError(f"ref has shape {tuple(ref.shape)} but emb has shape {tuple(emb.shape)}; "
                         "they must be embeddings of the same sentences")
    if ref.numel() == 0:   # a mean over no sentences is NaN
        raise ValueError(f"ref and emb have shape {tuple(ref.shape)}; expected at least one sentence of dim >= 1")
    check_same_device(ref, emb, "ref", "emb")


def mean_cosine(ref: torch.Tensor, emb: torch.Tensor) -> float:
    """Mean over sentences of cos(ref[i], emb[i]); ref, emb [N, dim]. 1.0 = the same directions."""
    _check_pair(ref, emb)
    return F.cosine_similarity(ref.float(), emb.float(), dim=1).mean().item()


def nearest_neighbours(emb: torch.Tensor) -> torch.Tensor:
    """[N] int64: for each row of emb [N, dim] (N ≥ 2), the index of the most cosine-similar *other* row.

    What a search index returns as the top hit when sentence i is the query. The rows need not
    have unit length: each is normalized first, so only directions count.
    """
    if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or len(emb) < 2:
        raise ValueError(f"emb must be a [N, dim] tensor of embeddings with N ≥ 2, got {_shape(emb)}")
    _check_real("emb", emb)
    if not torch.isfinite(emb).all():
        raise ValueError("emb contains NaN or Inf; expected finite embeddings")
    e = F.normalize(emb.float(), dim=1)
    sim = e @ e.T  # [N, N] cosines
    sim.fill_diagonal_(float("-inf"))  # a sentence is not its own neighbour, however far the others are
    return sim.argmax(1)


def nn_agreement(ref: torch.Tensor, emb: torch.Tensor) -> float:
    """Fraction of sentences whose nearest neighbour among the others is the same in both.

    ref, emb [N, dim] with N ≥ 2: embeddings of the same N sentences by two models. This is
    what a search index sees: 1.0 means every query still finds the same top hit.
    """
    _check_pair(ref, emb)
    if len(ref) < 2:
        raise ValueError(f"ref has {len(ref)} sentence(s); nearest neighbours need at least 2")
    return (nearest_neighbours(ref) == nearest_neighbours(emb)).float().mean().item()


def encoder_layers(model, name: str = "model") -> nn.ModuleList:
    """The transformer layers of a SentenceTransformer's encoder (BERT-style `encoder.layer`)."""
    _check_model(model, name)
    auto = getattr(model[0], "auto_model", None) if len(model) else None
    layers = getattr(getattr(auto, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{name}={type(model).__name__}: expected a SentenceTransformer whose first "
                         "module wraps a BERT-style encoder (model[0].auto_model.encoder.layer)")
    return layers


def layer_reduced_student(teacher, keep) -> nn.Module:
    """A copy of `teacher` that keeps only the transformer layers numbered in `keep` (0-based).

    Embeddings, pooling and the kept layers start as the teacher's own weights, the usual
    initialisation for a layer-reduced student (sentence-transformers' `model_distillation`
    keeps layers 1, 4, 7, 10 of 12). The teacher is not changed.
    """
    n = len(encoder_layers(teacher, "teacher"))
    try:
        keep = list(keep) if not isinstance(keep, numbers.Integral) else [keep]
    except TypeError:
        raise TypeError(f"keep must be a list of layer numbers such as [0, 3], got {type(keep).__name__}") from None
    if all(is_int(i) for i in keep):
        keep = [int(i) for i in keep]   # numpy integers too
    if (not keep or any(not is_int(i) for i in keep)
            or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= n):
        raise ValueError(f"keep={keep!r} must be increasing, distinct layer numbers in [0, {n - 1}]")
    student = copy.deepcopy(teacher)
    auto = student[0].auto_model
    auto.encoder.layer = nn.ModuleList(auto.encoder.layer[i] for i in keep)
    auto.config.num_hidden_layers = len(keep)
    for j, layer in enumerate(auto.encoder.layer):  # attention modules that know their index
        attn = getattr(getattr(layer, "attention", None), "self", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = j
    return student


def distill_embeddings(student, sentences, targets: torch.Tensor, *, epochs: int = 1, batch_size: int = 32,
                       lr: float = 1e-4, seed: int = 0, progress: bool = True) -> list[float]:
    """Train `student` so that its embedding of sentences[i] matches targets[i]; returns the losses.

    sentences  N strings; targets [N, dim]: the teacher's embeddings of them (`embed(teacher, ...)`)
    loss       MSE(student embedding [B, dim], targets [B, dim]), as sentence-transformers'
               `MSELoss`; AdamW at `lr` with a linear decay to 0, on the parameters that
               require grad (freeze some to train fewer); batches of similar length, shuffled
               by `seed`
    The student is trained in place and left in eval mode. One loss per step, in order.
    """
    sentences = _check_sentences(sentences)
    _check_model(student, "student")
    if not isinstance(targets, torch.Tensor) or targets.dim() != 2 or len(targets) != len(sentences):
        raise ValueError(f"targets must be a [N, dim] tensor with N = len(sentences) = {len(sentences)}, got "
                         f"{_shape(targets)}")
    if not torch.isfinite(targets).all():   # one NaN target turns every weight of the student into NaN
        raise ValueError("targets contains NaN or Inf; expected finite embeddings, e.g. embed(teacher, sentences)")
    width = (getattr(student, "get_embedding_dimension", None)   # sentence-transformers' new name, then its old one
             or getattr(student, "get_sentence_embedding_dimension", None))
    dim = width() if width else None
    if dim is not None and targets.shape[1] != dim:
        raise ValueError(f"targets has shape {tuple(targets.shape)}, but the student's embeddings have {dim} "
                         f"dimensions; expected [N, {dim}], e.g. embed(teacher, sentences)")
    check_positive_ints(epochs=epochs, batch_size=batch_size)
    check_flag("progress", progress)
    check_positive_numbers(lr=lr)
    seed = check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([len(s) for s in sentences])
    steps, pool = [], 8 * batch_size  # shuffle, then sort each pool of 8 batches by length: less padding
    for _ in range(epochs):
        idx = torch.randperm(len(sentences), generator=g)
        for start in range(0, len(idx), pool):
            chunk = idx[start:start + pool]
            chunk = chunk[lengths[chunk].argsort()]
            steps += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    params = [p for p in student.parameters() if p.requires_grad]
    if not params:
        raise ValueError("student has no parameter that requires grad: nothing to train; unfreeze some, "
                         "e.g. student.requires_grad_(True)")
    opt = torch.optim.AdamW(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / len(steps))
    student.train()
    losses = []
    try:
        for idx in (bar := tqdm(steps, desc="distill", disable=not progress, leave=False)):
            features = _features(student, [sentences[i] for i in idx.tolist()])
            pred = student(features)["sentence_embedding"]  # [B, dim]
            loss = F.mse_loss(pred, targets[idx].to(pred.device, pred.dtype))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(mse=f"{loss.item():.2e}", refresh=False)
    finally:
        student.eval()
    return losses
