"""Offline, deterministic datasets for the course.

Nothing here touches the network. Three sources:

* **Digits** (`load_digits`): scikit-learn's bundled copy of the UCI 8x8 handwritten digits,
  1797 images, 10 classes. Small enough that a teacher trains in seconds on a laptop CPU.
* **Characters** (`CharCorpus`): the Python reference documentation that ships inside the
  standard library (`pydoc_data.topics`, about 465k characters), for a character-level GPT.
* **Sentences** (`text_sentences`): natural-language sentences cut from the same text, used as
  offline calibration and evaluation data for a sentence-embedding model.

Every random choice takes an explicit seed or `torch.Generator`, so a lesson run twice prints
the same numbers.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import NamedTuple

import torch

from minicomp.checks import (
    check_fraction,
    check_rows,
    check_same_device,
    check_seed,
    check_tensor,
    is_int,
    is_real,
)
from minicomp.hardware import check_device

# ----------------------------------------------------------------------------------------------
# Digits


class Digits(NamedTuple):
    """The digits dataset, split three ways. Pixels are scaled to [0, 1] (pixel / 16)."""

    x_train: torch.Tensor  # [N_train, 64] float32
    y_train: torch.Tensor  # [N_train] int64, values 0..9
    x_val: torch.Tensor  # [N_val, 64]
    y_val: torch.Tensor  # [N_val]
    x_test: torch.Tensor  # [N_test, 64]
    y_test: torch.Tensor  # [N_test]


def load_digits(
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    device: str | torch.device | None = None,
) -> Digits:
    """Load scikit-learn's 8x8 digits with a stratified, seeded train/val/test split.

    Each class is split separately, so every split has (almost exactly) the same class balance.
    Indices inside each split are sorted, so the order does not depend on the class.

    Returns a `Digits` tuple: `x_*` are [N, 64] float32 in [0, 1], `y_*` are [N] int64.
    Use `as_images(x)` to get [N, 1, 8, 8] for a CNN.
    """
    check_fraction("val_fraction", val_fraction, "(0, 1)", ": the share of each class held out for validation")
    check_fraction("test_fraction", test_fraction, "(0, 1)", ": the share of each class held out for testing")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction={val_fraction} + test_fraction={test_fraction} must be below 1 "
            "so that some examples are left for training"
        )
    seed = check_seed(seed)
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_digits needs scikit-learn (it ships the digits images): "
            "pip install scikit-learn  (or pip install 'minicomp[course]')"
        ) from e

    raw = _sk_load_digits()
    x = torch.tensor(raw.data, dtype=torch.float32) / 16.0  # [1797, 64], pixels were 0..16
    y = torch.tensor(raw.target, dtype=torch.int64)  # [1797]

    g = torch.Generator().manual_seed(seed)
    train, val, test = [], [], []
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = round(len(idx) * test_fraction)
        n_val = round(len(idx) * val_fraction)
        for name, fraction, count in (("val_fraction", val_fraction, n_val),
                                      ("test_fraction", test_fraction, n_test)):
            if count == 0:
                raise ValueError(
                    f"{name}={fraction} leaves digit {c} ({len(idx)} images) with no example in "
                    f"that split; use at least {1 / min(torch.bincount(y).tolist()):.3f}"
                )
        if n_test + n_val >= len(idx):
            raise ValueError(
                f"val_fraction={val_fraction} + test_fraction={test_fraction} leaves digit {c} "
                f"({len(idx)} images) with no training example; lower one of them"
            )
        test.append(idx[:n_test])
        val.append(idx[n_test : n_test + n_val])
        train.append(idx[n_test + n_val :])
    train, val, test = (torch.cat(parts).sort().values for parts in (train, val, test))

    device = None if device is None else check_device(device, "device")

    def put(t: torch.Tensor) -> torch.Tensor:
        return t.to(device) if device is not None else t

    return Digits(
        put(x[train]), put(y[train]), put(x[val]), put(y[val]), put(x[test]), put(y[test])
    )


def as_images(x: torch.Tensor) -> torch.Tensor:
    """Reshape flat digits [N, 64] to images [N, 1, 8, 8]. Images pass through unchanged."""
    check_tensor("x", x)
    if x.dim() == 4 and tuple(x.shape[1:]) == (1, 8, 8):
        return x
    if x.dim() != 2 or x.shape[1] != 64:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected [N, 64] or [N, 1, 8, 8]")
    return x.reshape(-1, 1, 8, 8)


def few_label_split(y: torch.Tensor, labels_per_class: int, seed: int = 0) -> torch.Tensor:
    """Pick `labels_per_class` labelled examples of each class: the few-label setting.

    Returns sorted int64 indices into `y` (shape [labels_per_class * num_classes]). The rest of
    the training set plays the unlabelled transfer set in the distillation lessons:

        idx = few_label_split(d.y_train, 6)
        unlabelled = torch.ones(len(d.y_train), dtype=torch.bool); unlabelled[idx] = False
    """
    if not is_int(labels_per_class) or labels_per_class <= 0:
        raise ValueError(f"labels_per_class={labels_per_class!r} must be a positive int")
    check_tensor("y", y)
    if y.dim() != 1:
        raise ValueError(f"y has shape {tuple(y.shape)}; expected a 1-D tensor of class labels")
    seed = check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    y_cpu = y.detach().cpu()
    picked = []
    for c in torch.unique(y_cpu).tolist():
        idx = torch.nonzero(y_cpu == c).flatten()
        if len(idx) < labels_per_class:
            raise ValueError(
                f"labels_per_class={labels_per_class} but class {c} has only {len(idx)} examples"
            )
        picked.append(idx[torch.randperm(len(idx), generator=g)[:labels_per_class]])
    return torch.cat(picked).sort().values


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield minibatches (x[i], y[i]) over the first dimension: a DataLoader in five lines.

    x [N, ...] and y [N, ...] -> pairs x [B, ...], y [B, ...] with B = batch_size (the last batch
    is smaller unless drop_last=True, which skips it).

    shuffle=True needs an explicit `generator` (torch.Generator().manual_seed(...)), so that
    the order is reproducible.
    """
    if not is_int(batch_size) or batch_size <= 0:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int")
    check_rows(x, y)
    check_same_device(x, y, "x", "y")   # one index picks both rows
    if shuffle and generator is None:
        raise ValueError(
            "shuffle=True needs generator=torch.Generator().manual_seed(<seed>) "
            "so the batch order is reproducible"
        )
    n = len(x)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        i = order[start : start + batch_size]
        yield x[i], y[i]


# ----------------------------------------------------------------------------------------------
# Characters

# The vocabulary is fixed: newline plus printable ASCII, 96 characters, already sorted. The text
# of pydoc_data differs a little between Python versions; a fixed vocabulary keeps the shipped
# TinyGPT's token ids meaning the same characters everywhere.
VOCAB = "\n" + "".join(chr(i) for i in range(32, 127))

# Typographic characters in the docs, mapped to ASCII. Anything else outside VOCAB becomes "?".
_ASCII_FOLD = {
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "–": "-",
    "—": "-",
    "…": "...",
    "°": " degrees",
}


def pydoc_text() -> str:
    """The Python reference docs shipped in the stdlib: topics in sorted key order, ASCII-folded."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    text = "".join(_ASCII_FOLD.get(ch, ch) for ch in text)
    known = set(VOCAB)
    return "".join(ch if ch in known else "?" for ch in text)


class CharCorpus:
    """A character-level corpus with contiguous train/val/test splits, as in nanoGPT.

    >>> corpus = CharCorpus()
    >>> x, y = corpus.get_batch("train", 4, 128, torch.Generator().manual_seed(0))  # [4, 128]
    """

    def __init__(
        self, text: str | None = None, splits: tuple[float, float, float] = (0.9, 0.05, 0.05)
    ):
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text must be a str (or None: the bundled corpus), got {type(text).__name__}"
                            + ("; decode bytes first, e.g. text.decode('utf-8')" if isinstance(text, bytes) else ""))
        if (not isinstance(splits, (tuple, list)) or len(splits) != 3
                or not all(is_real(s) and not isinstance(s, bool) for s in splits)):
            raise TypeError(f"splits must be three fractions (train, val, test) such as (0.9, 0.05, 0.05), got {splits!r}")
        if any(s <= 0 for s in splits) or abs(sum(splits) - 1.0) > 1e-6:
            raise ValueError(f"splits={splits!r} must be three positive fractions summing to 1")
        self.text = pydoc_text() if text is None else text
        self.vocab = VOCAB  # sorted characters; token id i is the character vocab[i]
        self.vocab_size = len(self.vocab)
        self.stoi = {ch: i for i, ch in enumerate(self.vocab)}
        self.itos = dict(enumerate(self.vocab))
        data = self.encode(self.text)  # [len(text)] int64
        n_train = int(len(data) * splits[0])
        n_val = int(len(data) * splits[1])
        self.train = data[:n_train]
        self.val = data[n_train : n_train + n_val]
        self.test = data[n_train + n_val :]

    def encode(self, s: str) -> torch.Tensor:
        """String -> [len(s)] int64 token ids. Unknown characters raise ValueError."""
        if not isinstance(s, str):
            raise TypeError(f"s must be a str, got {type(s).__name__}")
        try:
            return torch.tensor([self.stoi[ch] for ch in s], dtype=torch.long)
        except KeyError as e:
            raise ValueError(
                f"character {e.args[0]!r} (U+{ord(e.args[0]):04X}) is not in the vocabulary; "
                "it holds newline and printable ASCII"
            ) from None

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Token ids ([T] tensor or list of ints) -> string."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1 or ids.is_floating_point():
                raise ValueError(f"ids is a {ids.dtype} tensor of shape {tuple(ids.shape)}; expected a 1-D integer "
                                 "tensor [T] (for a batch, decode each row: idx[0])")
            ids = ids.tolist()
        elif isinstance(ids, Iterator):  # a generator: the checks below would use it up
            ids = list(ids)
        if isinstance(ids, str) or not all(is_int(i) for i in ids):
            raise TypeError(f"ids must be a 1-D tensor or a list of int token ids, got {str(ids)[:40]!r}")
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids contains {bad[0]}; expected token ids in [0, {self.vocab_size})")
        return "".join(self.itos[i] for i in ids)

    def split(self, name: str) -> torch.Tensor:
        """The 1-D int64 tensor of one split: 'train', 'val' or 'test'."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split={name!r} is not one of 'train', 'val', 'test'")
        return getattr(self, name)

    def get_batch(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        generator: torch.Generator,
        device: str | torch.device | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows of a split: inputs x [B, T] and next-character targets y [B, T]."""
        data = self.split(split)
        if not is_int(batch_size) or batch_size <= 0:
            raise ValueError(f"batch_size={batch_size!r} must be a positive int")
        if not is_int(block_size) or not 0 < block_size < len(data):
            raise ValueError(
                f"block_size={block_size!r} must be a positive int below the length of "
                f"split {split!r} ({len(data)})"
            )
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator, got {type(generator).__name__}; "
                "use torch.Generator().manual_seed(<seed>)"
            )
        ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # [B]
        x = torch.stack([data[i : i + block_size] for i in ix.tolist()])  # [B, T]
        y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix.tolist()])  # [B, T]
        if device is not None:
            if not isinstance(device, torch.device):  # a name ("gpu"?) is checked; a device object is taken as is
                device = check_device(device, "device")
            x, y = x.to(device), y.to(device)
        return x, y

    def __repr__(self) -> str:
        return (
            f"CharCorpus(chars={len(self.text)}, vocab_size={self.vocab_size}, "
            f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)})"
        )


# ----------------------------------------------------------------------------------------------
# Sentences


def _all_sentences() -> list[str]:
    """Every prose sentence of pydoc_data (40-300 characters, mostly letters), deduplicated."""
    from pydoc_data.topics import topics

    sentences = []
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            lines = [line.strip() for line in para.split("\n") if line.strip()]
            if not lines or set(lines[-1]) <= set("*=-^~"):  # a heading and its underline
                continue
            para = " ".join(lines)
            if ">>>" in para or "::=" in para:  # doctest or grammar, not prose
                continue
            for s in re.split(r'(?<!e\.g\.)(?<!i\.e\.)(?<=[.!?])\s+(?=[A-Z"(])', para):
                s = s.strip()
                letters = sum(ch.isalpha() or ch == " " for ch in s)
                if (
                    40 <= len(s) <= 300
                    and s[0].isupper()
                    and s[-1] in ".!?"
                    and letters >= 0.85 * len(s)
                ):
                    sentences.append(s)
    return list(dict.fromkeys(sentences))  # dedupe, keep first occurrence order


def text_sentences(split: str = "calib", n: int | None = None, seed: int = 0) -> list[str]:
    """Natural-language sentences from the stdlib's Python docs (about 1.8k in all).

    split: "calib" (about half), "heldout" (the other half, disjoint from calib) or "all".
    The calib/heldout assignment depends only on each sentence's text (its CRC32 is even or
    odd), never on `seed`, so the two sets stay disjoint whatever seed is used.
    n: if given, a seeded random subset of n sentences, returned in corpus order.
    """
    if split not in ("calib", "heldout", "all"):
        raise ValueError(f"split={split!r} is not one of 'calib', 'heldout', 'all'")
    sentences = _all_sentences()
    if split != "all":
        want = 0 if split == "calib" else 1
        sentences = [s for s in sentences if zlib.crc32(s.encode()) % 2 == want]
    if n is None:
        return sentences
    if not is_int(n) or not 0 < n <= len(sentences):
        raise ValueError(f"n={n!r} must be an int in [1, {len(sentences)}] for split={split!r}")
    seed = check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(sentences), generator=g)[:n].sort().values
    return [sentences[i] for i in keep.tolist()]
