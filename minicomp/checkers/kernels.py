"""Checkers for lesson 09 ("From bits to bytes to speed").

    pack_int4(q)                                      -> uint8 bytes, two codes each
    unpack_int4(packed)                               -> uint8 codes 0..15
    packed_gemv(packed, scales, zeros, x, group_size) -> y = W x with W dequantized from the bytes
    two_codes_fp16(words)                             -> codes 0 and 4 of each int32 word as fp16 1024 + q

The convention: along the last dimension, element 2i goes in the low nibble of byte i and
element 2i + 1 in the high nibble. Each case is built so that every listed mistake gives a
different answer on at least one of them (the test-suite checks this).
"""

from __future__ import annotations

import torch

from minicomp.checkers._common import exactly_as, noting_half_precision
from minicomp.grading import Case, Mistake, register


def _codes(shape, seed: int) -> torch.Tensor:
    return torch.randint(0, 16, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


_require_uint8 = exactly_as(torch.uint8, "one byte per element", "finish with .to(torch.uint8)")


# ── pack_int4 ────────────────────────────────────────────────────────────────────────────────
def _pack_reference(q):
    from minicomp.pack import pack_int4

    return pack_int4(q)


def _pack_cases():
    return [
        Case("the lesson's example: [3, 10, 7, 1] -> [0xA3, 0x17] = [163, 23]",
             (torch.tensor([3, 10, 7, 1], dtype=torch.uint8),)),
        Case("two rows [out=2, in=4]: each row packs on its own",
             (torch.tensor([[0, 1, 2, 3], [15, 14, 13, 12]], dtype=torch.uint8),)),
        Case("every code 0..15 once", (torch.arange(16, dtype=torch.uint8),)),
        Case("codes given as int64 (as torch.randint makes them)", (torch.tensor([[15, 0, 9, 6, 1, 8]]),)),
        Case("a [4, 16] block of random codes", (_codes((4, 16), 0),)),
        Case("a [3, 2, 8] batch of random codes", (_codes((3, 2, 8), 1),)),
    ]


def _pack_wrong(low_of, high_of, shift=4):
    def fn(q):
        q = q.to(torch.uint8)
        return (low_of(q) | (high_of(q) << shift)).to(torch.uint8)
    return fn


register(
    "pack_int4",
    params=("q",),
    reference=_pack_reference,
    cases=_pack_cases,
    compare=_require_uint8,
    mistakes=[  # the dtype mistake first: its values are right, so it must not shadow the others
        Mistake("returning int64 bytes", lambda q: q.long()[..., 0::2] | (q.long()[..., 1::2] << 4),
                "The point of packing is one byte per two codes: return a torch.uint8 tensor."),
        Mistake("swapped nibbles", _pack_wrong(lambda q: q[..., 1::2], lambda q: q[..., 0::2]),
                "Element 2i goes in the LOW nibble (bits 0-3) and element 2i+1 in the HIGH nibble: "
                "byte = q[0::2] | (q[1::2] << 4)."),
        Mistake("a missing shift", lambda q: (q[..., 0::2] | q[..., 1::2]).to(torch.uint8),
                "Without `<< 4` both codes land in the low nibble and mix. Shift the second code up "
                "four bits: q[..., 1::2] << 4."),
        Mistake("halves instead of neighbours (GGUF's Q4_0 order)",
                lambda q: (q[..., : q.shape[-1] // 2] | (q[..., q.shape[-1] // 2:] << 4)).to(torch.uint8),
                "Pair each code with its neighbour: byte i holds elements 2i and 2i+1 "
                "(q[..., 0::2] and q[..., 1::2]), not element i and element i + n/2."),
        Mistake("an empty high nibble (the odd code shifted out of the byte)",
                _pack_wrong(lambda q: q[..., 0::2], lambda q: q[..., 1::2], 8),
                "Each byte holds only its even code: the odd one never reached bits 4-7. Shift it LEFT by "
                "exactly 4, q[..., 1::2] << 4: `<< 8` pushes it out of the byte, `>> 4` shifts a code "
                "0..15 to 0, and a mask `& 0x0F` after the shift clears it."),
        Mistake("(even + odd) << 4: + binds tighter than <<",
                lambda q: ((q[..., 0::2] + q[..., 1::2]) << 4).to(torch.uint8),
                "In Python + binds tighter than <<, so even + odd << 4 shifts the sum. Write "
                "even | (odd << 4) (or even + (odd << 4)), with the parentheses."),
        Mistake("packing along the first dimension",
                lambda q: (q[0::2] | (q[1::2] << 4)).to(torch.uint8) if q.dim() > 1 else
                (q[..., 0::2] | (q[..., 1::2] << 4)).to(torch.uint8),
                "Pack along the LAST dimension (the inputs of a weight row): q[..., 0::2], not q[0::2]."),
    ],
    hint="Take the even elements q[..., 0::2] and the odd ones q[..., 1::2]; "
         "byte = even | (odd << 4), as torch.uint8.",
)


# ── unpack_int4 ──────────────────────────────────────────────────────────────────────────────
def _unpack_reference(packed):
    from minicomp.pack import unpack_int4

    return unpack_int4(packed)


def _bytes(shape, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _unpack_cases():
    return [
        Case("the lesson's example: [163, 23] -> [3, 10, 7, 1]", (torch.tensor([163, 23], dtype=torch.uint8),)),
        Case("0x0F, 0xF0 and 0xFF: one nibble set, the other, both", (torch.tensor([0x0F, 0xF0, 0xFF], dtype=torch.uint8),)),
        Case("two rows of bytes", (torch.tensor([[0x10, 0x32], [0xEF, 0xCD]], dtype=torch.uint8),)),
        Case("all 256 byte values", (torch.arange(256, dtype=torch.int32).to(torch.uint8),)),
        Case("a [3, 2, 5] batch of random bytes", (_bytes((3, 2, 5), 2),)),
    ]


_NO_INTERLEAVE = "lows first, then highs (no interleave)"
_NO_INTERLEAVE_HINT = "Interleave: low0, high0, low1, high1, ... e.g. torch.stack((low, high), dim=-1).flatten(-2)."


def _interleave(low, high):
    return torch.stack((low, high), dim=-1).flatten(-2)


register(
    "unpack_int4",
    params=("packed",),
    reference=_unpack_reference,
    cases=_unpack_cases,
    compare=_require_uint8,
    mistakes=[
        Mistake("swapped nibbles", lambda p: _interleave(p >> 4, p & 0x0F),
                "The low nibble (p & 0x0F) is the EARLIER element, 2i; the high nibble (p >> 4) is 2i+1."),
        Mistake("a missing mask", lambda p: _interleave(p, p >> 4),
                "The low code is only bits 0-3: keep them with `p & 0x0F` (or `p & 15`); without the "
                "mask the high nibble's bits stay in."),
        Mistake(_NO_INTERLEAVE, lambda p: torch.cat((p & 0x0F, p >> 4), dim=-1), _NO_INTERLEAVE_HINT),
        Mistake("masking the high nibble without shifting", lambda p: _interleave(p & 0x0F, p & 0xF0),
                "p & 0xF0 keeps the high nibble where it is (16× too big); shift it down: p >> 4."),
        Mistake("p & 0xF0 >> 4: >> binds tighter than &",
                lambda p: _interleave(p & 0x0F, p & 0xF0 >> 4),
                "In Python >> binds tighter than &, so p & 0xF0 >> 4 is p & 0x0F, the low code again. "
                "Write (p & 0xF0) >> 4, or simply p >> 4."),
        Mistake("shifting by 8 bits", lambda p: _interleave(p & 0x0F, (p.int() >> 8).to(torch.uint8)),
                "A nibble is 4 bits: the high code is p >> 4."),
        Mistake("working in int8 (signed)",
                lambda p: _interleave(p.view(torch.int8) & 0x0F, p.view(torch.int8) >> 4).to(torch.uint8),
                "In int8 a byte ≥ 128 is negative and `>> 4` copies the sign bit in: unpack uint8 bytes "
                "(or mask the high nibble too: (p >> 4) & 0x0F)."),
    ],
    hint="low = packed & 0x0F, high = packed >> 4, then interleave them: "
         "torch.stack((low, high), dim=-1).flatten(-2).",
)


# ── packed_gemv: dequantize inside a matrix-vector product ───────────────────────────────────
def _gemv_reference(packed, scales, zeros, x, group_size):
    from minicomp.kernels.reference import dequantize_packed

    w = dequantize_packed(packed, scales, zeros, pack_bits=4, group_size=group_size)  # [out, in]
    return w @ x.to(torch.float32)


def _gemv_case(out, n_in, group_size, seed):
    g = torch.Generator().manual_seed(seed)
    from minicomp.pack import pack_int4

    codes = torch.randint(0, 16, (out, n_in), generator=g)
    n_groups = n_in // group_size
    scales = (torch.rand(out, n_groups, generator=g) * 0.1 + 0.01)
    zeros = torch.randint(1, 15, (out, n_groups), generator=g).to(torch.uint8)
    x = torch.randn(n_in, generator=g)
    return (pack_int4(codes), scales, zeros, x, group_size)


def _gemv_cases():
    hand = (torch.tensor([[0x21, 0x43]], dtype=torch.uint8),   # codes [1, 2, 3, 4]
            torch.tensor([[0.5, 2.0]]), torch.tensor([[1, 3]], dtype=torch.uint8),
            torch.tensor([1.0, 2.0, 3.0, 4.0]), 2)
    return [
        Case("by hand: codes [1,2,3,4], groups of 2, scales [0.5, 2], zeros [1, 3] -> [9.0]", hand),
        Case("two rows, one group each", _gemv_case(2, 8, 8, 0)),
        Case("4 rows, 4 groups of 4", _gemv_case(4, 16, 4, 1)),
        Case("16 rows, in=64, groups of 16", _gemv_case(16, 64, 16, 2)),
        Case("32 rows, in=256, groups of 128", _gemv_case(32, 256, 128, 3)),
    ]


#: A miss as small as half-precision rounding (a dequantize or a product done in float16 or
#: bfloat16) is named as such.
_gemv_compare = noting_half_precision(1e-4, 1e-4, "keep the arithmetic in float32 (scales.float(), x.float(), "
                                      "and q − zero computed as float32), as the reference does")


def _gemv_wrong(transform):
    """A GEMV that dequantizes with `transform(q, s, z) -> w` ([out, groups, g] each)."""
    def fn(packed, scales, zeros, x, group_size):
        low, high = packed & 0x0F, packed >> 4
        q = torch.stack((low, high), -1).flatten(-2).float()
        out, n_in = q.shape
        q = q.reshape(out, n_in // group_size, group_size)
        w = transform(q, scales.float()[..., None], zeros.float()[..., None])
        return w.reshape(out, n_in) @ x.float()
    return fn


def _lows_then_highs(packed, scales, zeros, x, group_size):
    """(a mistake) The codes unpacked as all the low nibbles, then all the high ones."""
    q = torch.cat((packed & 0x0F, packed >> 4), dim=-1).float()
    w = (q - zeros.float().repeat_interleave(group_size, -1)) * scales.float().repeat_interleave(group_size, -1)
    return w @ x.float()


def _swapped_nibbles(packed, scales, zeros, x, group_size):
    swapped = (packed >> 4) | (packed << 4)
    return _gemv_reference(swapped.to(torch.uint8), scales, zeros, x, group_size)


def _scale_by_column(packed, scales, zeros, x, group_size):
    from minicomp.pack import unpack_int4

    q = unpack_int4(packed).float()                      # [out, in]
    cols = torch.arange(q.shape[1]) % scales.shape[1]     # group j % n_groups: wrong
    w = (q - zeros.float()[:, cols]) * scales.float()[:, cols]
    return w @ x.float()


def _uint8_wraps(packed, scales, zeros, x, group_size):
    from minicomp.pack import unpack_int4

    q = unpack_int4(packed)                                     # uint8 [out, in]
    z = zeros.repeat_interleave(group_size, dim=-1)             # uint8: q - z wraps
    return ((q - z) * scales.float().repeat_interleave(group_size, dim=-1)) @ x.float()


def _groupwise(packed, scales, zeros, x, group_size, n_groups=None, row_sum=False, short=0):
    """The lesson's s·(Σ q·x − z·Σ x), group by group (with `n_groups`, Σ x over the row, or each
    group's slice ending `short` inputs early: wrong)."""
    from minicomp.pack import unpack_int4

    q, x = unpack_int4(packed).float(), x.float()
    y = torch.zeros(q.shape[0])
    for k in range(q.shape[1] // group_size if n_groups is None else n_groups(q.shape[1] // group_size)):
        cols = slice(k * group_size, (k + 1) * group_size - short)
        xs = x.sum() if row_sum else x[cols].sum()
        y += scales[:, k].float() * (q[:, cols] @ x[cols] - zeros[:, k].float() * xs)
    return y


def _row_sum_of_x(packed, scales, zeros, x, group_size):
    return _groupwise(packed, scales, zeros, x, group_size, row_sum=True)


def _last_group_left_out(packed, scales, zeros, x, group_size):
    return _groupwise(packed, scales, zeros, x, group_size, n_groups=lambda n: n - 1)


def _slice_one_short(packed, scales, zeros, x, group_size):
    return _groupwise(packed, scales, zeros, x, group_size, short=1)


register(
    "packed_gemv",
    params=("packed", "scales", "zeros", "x", "group_size"),
    reference=_gemv_reference,
    cases=_gemv_cases,
    atol=1e-4,
    rtol=1e-4,
    compare=_gemv_compare,
    mistakes=[
        Mistake("forgetting the zero point", _gemv_wrong(lambda q, s, z: q * s),
                "Dequantize with ŵ = (q − zero)·scale: subtract the group's zero point before scaling."),
        Mistake("subtracting the zero point after scaling", _gemv_wrong(lambda q, s, z: q * s - z),
                "The zero point is in code units: (q − zero)·scale, not q·scale − zero."),
        Mistake("swapped nibbles", _swapped_nibbles,
                "Unpack element 2i from the low nibble (p & 0x0F) and 2i+1 from the high nibble (p >> 4)."),
        Mistake(_NO_INTERLEAVE, _lows_then_highs, _NO_INTERLEAVE_HINT),
        Mistake("one scale per row", _gemv_wrong(lambda q, s, z: (q - z[:, :1]) * s[:, :1]),
                "Each group of `group_size` consecutive inputs has its own scale and zero: group "
                "j // group_size, not group 0 for all."),
        Mistake("groups taken round-robin (j % n_groups)", _scale_by_column,
                "Input j belongs to group j // group_size (consecutive inputs share a group), "
                "not j % n_groups."),
        Mistake("adding the zero point", _gemv_wrong(lambda q, s, z: (q + z) * s),
                "The zero point is the code of 0.0: subtract it, ŵ = (q − zero)·scale."),
        Mistake("uint8 arithmetic that wraps around", _uint8_wraps,
                "The codes and the zeros are torch.uint8, and uint8 cannot hold a negative q − zero: "
                "2 − 5 wraps around to 253. Convert first: q.float() − zeros.float() (or .to(torch.int32))."),
        Mistake("Σx over the whole row in the zero-point term", _row_sum_of_x,
                "In s·(Σ q·x − z·Σ x) both sums run over the group's inputs only: Σ x is "
                "x[k·group_size:(k+1)·group_size].sum(), not x.sum()."),
        Mistake("the last group left out", _last_group_left_out,
                "range(n_groups) already stops at the last group, n_groups − 1; range(n_groups − 1) "
                "leaves it out. Loop over every group of the row."),
        Mistake("each group's slice one input short", _slice_one_short,
                "A Python slice already leaves out its end: x[k*group_size:(k+1)*group_size] holds group_size "
                "inputs, the last at (k+1)*group_size − 1. Ending it at (k+1)*group_size − 1 drops each "
                "group's last input."),
    ],
    hint="Unpack the codes (low nibble first), view them as [out, groups, group_size], compute "
         "(q − zero)·scale with the group's scale and zero, and multiply by x.",
)


# ── two_codes_fp16: two codes, one AND-OR, no conversion (the GPU kernel's trick) ────────────
def _bits_as_pairs(bits):
    """int32 [...] -> its 32 bits read as two float16, [..., 2] (the low half first)."""
    return bits.view(torch.float16).reshape(*bits.shape, 2)


def _two_codes_reference(words):
    return _bits_as_pairs((words & 0x000F000F) | 0x64006400)


def _word(codes) -> int:
    """The int32 holding 8 codes, code k at bits 4k (as a signed int32)."""
    w = sum(int(q) << (4 * k) for k, q in enumerate(codes))
    return w - (1 << 32) if w >= 1 << 31 else w


def _words(shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-(1 << 31), 1 << 31, shape, generator=g, dtype=torch.int64).to(torch.int32)


def _two_codes_cases():
    return [
        Case("the lesson's word: codes [3, 14, 0, 7, 9, 1, 15, 5] -> [1027, 1033]",
             (torch.tensor([_word([3, 14, 0, 7, 9, 1, 15, 5])], dtype=torch.int32),)),
        Case("codes 0 and 4 are 0, the others 15 -> [1024, 1024]",
             (torch.tensor([_word([0, 15, 15, 15, 0, 15, 15, 15])], dtype=torch.int32),)),
        Case("code 7 is 15, so the int32 is negative", (torch.tensor([_word([1, 2, 3, 4, 5, 6, 7, 15])], dtype=torch.int32),)),
        Case("16 random words", (_words((16,), 0),)),
        Case("a [3, 4] block of random words", (_words((3, 4), 1),)),
    ]


register(
    "two_codes_fp16",
    params=("words",),
    reference=_two_codes_reference,
    cases=_two_codes_cases,
    compare=exactly_as(torch.float16, "the int32's 32 bits read as two fp16",
                        "reinterpret the bits with .view(torch.float16)"),
    mistakes=[
        Mistake("the mask of code 0 only (0x0000000F)", lambda w: _bits_as_pairs((w & 0xF) | 0x64006400),
                "One mask takes two codes: 0x000F000F keeps bits 0-3 (code 0) in the low half and bits "
                "16-19 (code 4) in the high half."),
        Mistake("the mask of codes 1 and 5 (0x00F000F0)", lambda w: _bits_as_pairs((w & 0x00F000F0) | 0x64006400),
                "0x00F000F0 keeps bits 4-7 and 20-23: codes 1 and 5, 16x too big. Codes 0 and 4 are "
                "bits 0-3 and 16-19: 0x000F000F."),
        Mistake("no exponent bits (q read as a tiny fp16)", lambda w: _bits_as_pairs(w & 0x000F000F),
                "Or in 0x64006400, the bits of fp16 1024 in each half: without them the code's bits "
                "read as a subnormal number near 1e-7, not as q."),
        Mistake("1.0's bits (0x3C00) instead of 1024's", lambda w: _bits_as_pairs((w & 0x000F000F) | 0x3C003C00),
                "Between 1 and 2 an fp16 step is 1/1024, so 0x3C00 | q is 1 + q/1024. Use 1024's bits, "
                "0x6400: between 1024 and 2048 the step is exactly 1, so 0x6400 | q is 1024 + q."),
        Mistake("the codes themselves, without the 1024",
                lambda w: torch.stack((w & 15, (w >> 16) & 15), dim=-1).to(torch.float16),
                "The trick returns 1024 + q (a subtraction later turns it into q − z). Or 0x6400 into "
                "each half and view the int32 as two float16."),
        Mistake("converting with .to(torch.float16) instead of .view",
                lambda w: ((w & 0x000F000F) | 0x64006400).to(torch.float16),
                ".to(torch.float16) converts the int32's value (about 1.7e9, inf in fp16) into ONE number; "
                ".view(torch.float16) reads the same 32 bits as TWO float16, which is the trick. Then "
                "reshape to [..., 2]."),
        Mistake("the two halves swapped", lambda w: _bits_as_pairs((w & 0x000F000F) | 0x64006400).flip(-1),
                "The low 16 bits (code 0) are the first float16 of the pair: .view(torch.float16) already "
                "puts them first."),
    ],
    hint="bits = (words & 0x000F000F) | 0x64006400, then bits.view(torch.float16) gives two fp16 per "
         "word; reshape to [..., 2].",
)
