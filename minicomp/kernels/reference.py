"""The reference backend: unpack, dequantize, multiply. Plain PyTorch, written to be read.

This is the definition every other backend is tested against. It does the three steps of a
weight-only quantized linear layer one after another, each on the whole weight:

    codes  = unpack(qweight)                      # [out, in]  integers 0 .. 2^bits - 1
    W      = (codes - zero) · scale, per group    # [out, in]  float32: the full float weight
    y      = x Wᵀ + b                             # [..., out]

Simple, and slow where it matters: step 2 writes a float32 weight as big as the original
(4 bytes a weight), and step 3 reads it back, so all the memory saved by packing is spent again
on every call. The fused backends (`cpu`, `triton`) never build W; they dequantize a few codes
at a time, inside the loop that multiplies.

The arithmetic is float32 whatever the input dtype: `linear` returns float32, and
`PackedLinear.forward` adds the bias and casts the result back to x's dtype.
"""

from __future__ import annotations

import torch

from minicomp.checks import is_int
from minicomp.pack import unpack
from minicomp.quant import check_input, check_perm

NAME = "reference"


def dequantize_packed(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, *,
                      pack_bits: int, group_size: int, perm: torch.Tensor | None = None,
                      ) -> torch.Tensor:
    """The float32 weight W [out, in] that packed codes stand for, in the original column order.

    qweight [out, in * pack_bits / 8] uint8 (`minicomp.pack` layout), scales [out, n_groups],
    zeros [out, n_groups] uint8. Group k of a row is the `group_size` consecutive columns
    k·group_size ... (k+1)·group_size − 1 (in the permuted order, if there is a `perm`);
    group_size -1: one group per row.
    """
    if not is_int(pack_bits) or pack_bits not in (2, 4, 8):
        raise ValueError(f"pack_bits={pack_bits!r} must be 2, 4 or 8 (the slot width of the packed codes)")
    check_qweight(qweight)
    codes = unpack(qweight, pack_bits)                                     # [out, in] uint8
    out, n_in = codes.shape
    group_size = _check_packed(codes, scales, zeros, group_size, perm)
    w = codes.reshape(out, n_in // group_size, group_size).to(torch.float32)  # [out, groups, g]
    w -= zeros[..., None]                     # q − zero: small integers, exact in float32
    w *= scales.to(torch.float32)[..., None]  # ŵ = (q − zero)·scale, one scale per group
    w = w.reshape(out, n_in)                  # (in place: the 4-bytes-a-weight copy is made once)
    if perm is not None:
        # Column j of the codes holds original column perm[j] (GPTQ act-order): put them back.
        w = w[:, torch.argsort(perm)]
    return w


def check_qweight(qweight) -> None:
    """Raise unless qweight is a 2-D torch.uint8 tensor of packed codes (naming `qweight`)."""
    if not isinstance(qweight, torch.Tensor) or qweight.dtype != torch.uint8:
        got = (f"{qweight.dtype} of shape {tuple(qweight.shape)}" if isinstance(qweight, torch.Tensor)
               else type(qweight).__name__)
        raise TypeError(f"qweight must be a 2-D torch.uint8 tensor of packed codes [out, in · pack_bits / 8], "
                        f"got {got}")
    if qweight.dim() != 2:
        raise ValueError(f"qweight must be 2-D [out, in · pack_bits / 8], got shape {tuple(qweight.shape)}")


def _check_packed(codes: torch.Tensor, scales, zeros, group_size, perm) -> int:
    """group_size (-1: one group per row) as a length, after checking that it divides the row
    and that scales and zeros hold one value per group (else they would broadcast, silently)."""
    out, n_in = codes.shape
    g = n_in if group_size == -1 else group_size
    if not is_int(g) or g <= 0 or n_in % g:
        raise ValueError(f"group_size={group_size!r} must divide in_features={n_in} (or be -1); "
                         f"in_features is read from qweight at this pack_bits")
    for name, t in (("scales", scales), ("zeros", zeros)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (out, n_in // g):
            raise ValueError(f"{name} must be a tensor of shape [out, in / group_size] = {[out, n_in // g]}, "
                             f"got {getattr(t, 'shape', type(t).__name__)}; check pack_bits and group_size")
    if not scales.is_floating_point():
        raise TypeError(f"scales must be a floating-point tensor (one step size per group), got {scales.dtype}")
    if zeros.is_floating_point() or zeros.is_complex() or zeros.dtype == torch.bool:
        raise TypeError(f"zeros must be an integer tensor of codes (uint8: the code that stands for 0.0), got "
                        f"{zeros.dtype}; a fractional zero point is not a code")
    check_perm(perm, n_in)
    return int(g)


def check_call(layer, x, *, matrix: bool = True) -> None:
    """Raise unless `layer` is a PackedLinear and x a floating-point tensor [M, in_features] (any
    [..., in_features] if not `matrix`): the arguments of a backend's `linear`, called directly.
    (PackedLinear's forward checks x itself, then calls the backend with check=False.)"""
    if not callable(getattr(layer, "kept_layout", None)):
        raise TypeError(f"layer must be a minicomp.kernels.PackedLinear, got {type(layer).__name__}; "
                        "make one with PackedLinear.from_linear(...) or PackedLinear.from_quantized(...)")
    check_input(x, layer.in_features)
    if matrix and x.dim() != 2:
        n = layer.in_features
        raise ValueError(f"x has shape {tuple(x.shape)}; a backend's linear takes x [M, {n}]: pass "
                         f"x.reshape(-1, {n}), or call the layer itself, which takes [..., {n}]")


def linear(layer, x: torch.Tensor, *, check: bool = True) -> torch.Tensor:
    """y = x Wᵀ for a `PackedLinear` `layer`, x [M, in] -> y [M, out], in float32 (the layer adds
    the bias). check=False skips checking the arguments: `PackedLinear.forward` has already."""
    if check:
        check_call(layer, x, matrix=False)
    w = dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=layer.pack_bits,
                          group_size=layer.group_size, perm=layer.perm)     # [out, in]
    return x.to(torch.float32) @ w.T                                       # [M, out]


def unsupported(layer, x: torch.Tensor) -> str | None:
    """Why this backend cannot run `layer` on `x`, or None: the reference runs everything."""
    return None
