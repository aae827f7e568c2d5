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

The arithmetic is float32 whatever the input dtype, and the result is cast back to x's dtype.
"""

from __future__ import annotations

import torch

from minicomp.pack import unpack

NAME = "reference"


def dequantize_packed(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, *,
                      pack_bits: int, group_size: int, perm: torch.Tensor | None = None,
                      ) -> torch.Tensor:
    """The float32 weight W [out, in] that packed codes stand for, in the original column order.

    qweight [out, in * pack_bits / 8] uint8 (`minicomp.pack` layout), scales [out, n_groups],
    zeros [out, n_groups] uint8. Group k of a row is the `group_size` consecutive columns
    k·group_size ... (k+1)·group_size − 1 (in the permuted order, if there is a `perm`).
    """
    codes = unpack(qweight, pack_bits)                                     # [out, in] uint8
    out, n_in = codes.shape
    w = codes.reshape(out, n_in // group_size, group_size).to(torch.float32)  # [out, groups, g]
    w -= zeros[..., None]                     # q − zero: small integers, exact in float32
    w *= scales.to(torch.float32)[..., None]  # ŵ = (q − zero)·scale, one scale per group
    w = w.reshape(out, n_in)                  # (in place: the 4-bytes-a-weight copy is made once)
    if perm is not None:
        # Column j of the codes holds original column perm[j] (GPTQ act-order): put them back.
        w = w[:, torch.argsort(perm)]
    return w


def linear(layer, x: torch.Tensor) -> torch.Tensor:
    """y = x Wᵀ + b for a `PackedLinear` `layer`, x [M, in] -> y [M, out], in float32."""
    w = dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=layer.pack_bits,
                          group_size=layer.group_size, perm=layer.perm)     # [out, in]
    return x.to(torch.float32) @ w.T                                       # [M, out]


def unsupported(layer, x: torch.Tensor) -> str | None:
    """Why this backend cannot run `layer` on `x`, or None: the reference runs everything."""
    return None
