"""Counting bytes (lessons 00, 06 and 09): `dtype_bytes`, `tensor_bytes`, `model_bytes` (tied
weights counted once), `weight_bytes(num_params, bits)` and `human_bytes`."""

from __future__ import annotations

import math

import torch
from torch import nn

from minicomp.checks import is_int, is_real


def dtype_bytes(dtype: torch.dtype) -> int:
    """Bytes per element of a torch dtype: float32 -> 4, bfloat16 -> 2, int8 -> 1."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32, got "
                        f"{type(dtype).__name__} {dtype!r}")
    itemsize = getattr(dtype, "itemsize", None)
    return int(itemsize) if itemsize is not None else torch.empty((), dtype=dtype).element_size()


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes held by the elements of ``t`` (numel × element size; shape and strides ignored)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    return t.numel() * t.element_size()


def model_bytes(model: nn.Module, include_buffers: bool = True) -> int:
    """Bytes of a model's parameters (and buffers, e.g. BatchNorm statistics).

    A tensor reachable from two places is counted once: tied weights (an output layer that shares
    the embedding matrix) occupy memory once, whether they are the same Parameter object or two
    tensors over the same memory. Memory is counted as the union of the byte ranges the tensors
    span, so a view over part of another tensor (or an expanded one) adds nothing twice.
    """
    from minicomp.checks import check_flag, check_module

    check_module(model)
    check_flag("include_buffers", include_buffers)
    tensors = list(model.parameters())
    if include_buffers:
        tensors += list(model.buffers())
    return union_bytes(tensors)


def union_bytes(tensors) -> int:
    """Bytes that ``tensors`` occupy together, each byte once: the union of the byte ranges they span.

    Two tensors over the same memory (tied weights, ``nn.Parameter(other.data)``), a view over
    part of another or an expanded tensor add nothing twice. Meta tensors have no memory; each is
    counted at its full size, once per object.
    """
    seen, spans, total = set(), [], 0
    for t in tensors:
        if not t.data_ptr():  # meta tensors have no memory (data_ptr 0): tell them apart by identity
            if id(t) not in seen:
                seen.add(id(t))
                total += tensor_bytes(t)
        elif t.numel():  # bytes from the first element to one past the last, strides included
            extent = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
            spans.append((t.data_ptr(), t.data_ptr() + extent * t.element_size()))
    end = 0
    for start, stop in sorted(spans):  # the union of the ranges: overlapping bytes count once
        total += max(0, stop - max(start, end))
        end = max(end, stop)
    return total


def weight_bytes(num_params: int, bits: int) -> int:
    """Bytes to store ``num_params`` weights at ``bits`` bits each: ceil(num_params · bits / 8).

    7_000_000_000 params: 32 bits -> 28e9 B, 16 -> 14e9, 8 -> 7e9, 4 -> 3.5e9 (scales and zero
    points of a quantized model come on top; later lessons count them).
    """
    for name, value in (("num_params", num_params), ("bits", bits)):
        if not is_int(value):
            hint = f"; write int({value!r})" if isinstance(value, float) and value.is_integer() else ""
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}{hint}")
    if num_params < 0:
        raise ValueError(f"num_params={num_params} must be >= 0")
    if bits <= 0:
        raise ValueError(f"bits={bits} must be a positive number of bits such as 4, 8, 16 or 32")
    return (int(num_params) * int(bits) + 7) // 8


def human_bytes(n: float, *, binary: bool = False) -> str:
    """``28e9 -> '28.0 GB'``. Decimal SI units by default (1 GB = 10⁹ B, as disk and GPU makers
    write); ``binary=True`` gives IEC units (1 GiB = 2³⁰ B ≈ 1.074 GB, as `free -h` writes)."""
    if not is_real(n) or not math.isfinite(n) or n < 0:
        raise ValueError(f"n must be a finite number of bytes >= 0, got {n!r}")
    if not isinstance(binary, bool):  # "no" would read as True
        raise TypeError(f"binary={binary!r} must be True or False")
    base = 1024 if binary else 1000
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB") if binary else ("B", "kB", "MB", "GB", "TB", "PB")
    if n < base:
        return f"{n:.0f} B"
    i = min(int(math.log(n, base)), len(units) - 1)
    value = n / base**i
    if round(value, 1) >= base and i + 1 < len(units):  # 999.96 kB prints as 1.0 MB
        i, value = i + 1, value / base
    return f"{value:.1f} {units[i]}"
