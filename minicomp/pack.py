"""Bit packing: storing 4-bit and 2-bit integer codes several to a byte.

A quantizer turns each weight into a small unsigned integer *code* (0..15 for 4 bits). PyTorch
has no 4-bit dtype, so a tensor of codes is held in bytes, one code per byte, and half of every
byte is wasted. Packing puts the codes side by side:

    INT4, two codes per byte, element 2i in the low nibble:

        codes   [ 3, 10,  7,  1 ]
        bytes   [ 3 | 10 << 4,  7 | 1 << 4 ] = [ 0xA3, 0x17 ] = [163, 23]

    INT2, four codes per byte, element 4i in the lowest two bits:

        byte = q[4i] | q[4i+1] << 2 | q[4i+2] << 4 | q[4i+3] << 6

    INT8 is already one code per byte: packing only checks the range and makes it uint8.

Packing works along the last dimension, so a weight of codes ``[out, in]`` packs to
``[out, in / 2]`` bytes at 4 bits. This is minicomp's interchange layout: `PackedLinear`,
the kernels and `export` all read it. (llama.cpp's GGUF uses a different order inside each
block of 32; `minicomp.export` converts.)

Every function here is a few lines of shifts and masks, written to be read, and every round
trip is exact: ``unpack_int4(pack_int4(q))`` equals ``q``.
"""

from __future__ import annotations

import torch

from minicomp.checks import is_int

__all__ = ["pack_int4", "unpack_int4", "pack_int2", "unpack_int2", "pack", "unpack",
           "codes_per_byte", "SUPPORTED_BITS"]

#: Bit widths that pack into whole bytes with no code split across two bytes.
SUPPORTED_BITS = (2, 4, 8)


def codes_per_byte(bits: int) -> int:
    """How many codes of ``bits`` bits share one byte: 2 -> 4, 4 -> 2, 8 -> 1."""
    if not is_int(bits) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits!r} is not supported; expected one of {SUPPORTED_BITS}")
    return 8 // int(bits)


def _check_codes(q, bits: int, name: str = "q") -> torch.Tensor:
    """``q`` as uint8, after checking it is an integer tensor of codes in 0..2^bits - 1 whose last
    dimension splits into whole bytes."""
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer codes, got {type(q).__name__}")
    if q.dtype.is_floating_point or q.dtype.is_complex or q.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer codes (e.g. torch.uint8 or torch.int32), got "
                        f"dtype {q.dtype}; round and convert first, e.g. q.round().to(torch.uint8)")
    if q.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension to pack along, got a 0-d tensor")
    per = codes_per_byte(bits)
    n = q.shape[-1]
    if n % per:
        what = "even" if per == 2 else f"a multiple of {per}"
        raise ValueError(f"{name}.shape[-1]={n} must be {what} to pack {per} codes of {bits} bits "
                         f"per byte (shape {tuple(q.shape)}); pad the last dimension first")
    if q.numel():
        lo, hi = int(q.min()), int(q.max())
        if lo < 0 or hi > 2**bits - 1:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} holds the code {bad}, but {bits}-bit codes must lie in "
                             f"0..{2**bits - 1}")
    return q.to(torch.uint8)


def _check_packed(packed, name: str = "packed") -> torch.Tensor:
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of packed bytes, got {type(packed).__name__}")
    if packed.dtype != torch.uint8:
        raise TypeError(f"{name} must have dtype torch.uint8 (bytes), got {packed.dtype}")
    if packed.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension, got a 0-d tensor")
    return packed


# ── INT4: two codes per byte ─────────────────────────────────────────────────────────────────
def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit codes two per byte along the last dimension.  ``[..., n] -> [..., n / 2]`` uint8.

    Element 2i goes in the low nibble (bits 0-3) of byte i, element 2i+1 in the high nibble.
    ``n`` must be even and every code must lie in 0..15, or ValueError says which.
    """
    q = _check_codes(q, 4)
    low = q[..., 0::2]   # [..., n/2] elements 0, 2, 4, ...
    high = q[..., 1::2]  # [..., n/2] elements 1, 3, 5, ...
    return low | (high << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_int4`.  ``[..., m]`` uint8 -> ``[..., 2m]`` uint8 codes in 0..15."""
    packed = _check_packed(packed)
    low = packed & 0x0F   # the mask keeps bits 0-3
    high = packed >> 4    # uint8 shifts in zeros, so no mask is needed here
    return torch.stack((low, high), dim=-1).flatten(-2)  # interleave: low0, high0, low1, ...


# ── INT2: four codes per byte ────────────────────────────────────────────────────────────────
def pack_int2(q: torch.Tensor) -> torch.Tensor:
    """Pack 2-bit codes four per byte along the last dimension.  ``[..., n] -> [..., n / 4]`` uint8.

    Element 4i + k goes in bits 2k and 2k+1 of byte i (element 4i is lowest). ``n`` must be a
    multiple of 4 and every code must lie in 0..3.
    """
    q = _check_codes(q, 2)
    return q[..., 0::4] | (q[..., 1::4] << 2) | (q[..., 2::4] << 4) | (q[..., 3::4] << 6)


def unpack_int2(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_int2`.  ``[..., m]`` uint8 -> ``[..., 4m]`` uint8 codes in 0..3."""
    packed = _check_packed(packed)
    parts = [(packed >> shift) & 0b11 for shift in (0, 2, 4, 6)]
    return torch.stack(parts, dim=-1).flatten(-2)


# ── any supported width ──────────────────────────────────────────────────────────────────────
def pack(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack codes of ``bits`` bits (2, 4 or 8) along the last dimension into uint8 bytes.

    ``[..., n] -> [..., n * bits / 8]``. At 8 bits this only checks the range (0..255) and
    returns the codes as uint8: one code already fills a byte.
    """
    per = codes_per_byte(bits)
    if per == 4:
        return pack_int2(q)
    if per == 2:
        return pack_int4(q)
    return _check_codes(q, 8)


def unpack(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of `pack`: uint8 bytes ``[..., m]`` -> uint8 codes ``[..., m * 8 / bits]``."""
    per = codes_per_byte(bits)
    if per == 4:
        return unpack_int2(packed)
    if per == 2:
        return unpack_int4(packed)
    return _check_packed(packed)
