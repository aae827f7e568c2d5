"""Checkers for lessons 04 ("The affine map") and 05 ("Granularity and outliers").

    quantize(x, scale, zero_point, qmin, qmax)  -> integer codes
    dequantize(q, scale, zero_point)            -> floats
    compute_qparams(x, bits, symmetric)         -> (scale, zero_point), per tensor
    quantize_per_group(w, bits, group_size)     -> the dequantized weight, asymmetric min-max per group

Scales in the cases are powers of two, or the inputs sit away from the halfway points, so that
x / scale and x * (1 / scale) round the same way: any correct formula passes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from minicomp.checkers._common import noting_half_precision
from minicomp.grading import Case, Mistake, register
from minicomp.quant import compute_qparams, dequantize, qrange, quantize, quantize_dequantize


def _away_from_ties(shape, scale: float, lo: int, hi: int, seed: int) -> torch.Tensor:
    """Random x with x / scale at least 0.1 away from every k + 0.5 (codes lo..hi before clamping)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(lo, hi + 1, shape, generator=g).float()
    frac = torch.rand(shape, generator=g) * 0.8 - 0.4  # in [-0.4, 0.4]
    return (k + frac) * scale


# ── quantize ─────────────────────────────────────────────────────────────────────────────────


def _quantize_cases():
    w = _away_from_ties((4, 6), 1.0, -40, 300, seed=1)
    scale4 = torch.tensor([[0.5], [0.25], [2.0], [0.125]])  # [4, 1]
    zero4 = torch.tensor([[0], [3], [128], [255]], dtype=torch.int32)
    return [
        Case("a hand example: scale 0.5, zero point 3", (torch.tensor([-1.0, -0.4, 0.0, 0.9, 1.2]), 0.5, 3, 0, 7)),
        Case("values outside the range are clamped to [qmin, qmax]",
             (torch.tensor([-5.0, -1.6, 0.3, 1.6, 5.0]), 0.25, 8, 0, 15)),
        Case("symmetric int8: zero point 0, codes -128..127",
             (_away_from_ties((40,), 0.02, -160, 160, seed=2), torch.tensor(0.02), 0, -128, 127)),
        Case("per-channel: scale and zero_point of shape [rows, 1]", (w * scale4, scale4, zero4, 0, 255)),
        Case("halfway values round to even, as torch.round does",
             (torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 3.5]), 1.0, 0, -8, 7)),
        Case("4-bit asymmetric on a random tensor",
             (_away_from_ties((8, 16), 0.0371, -12, 20, seed=3), torch.tensor(0.0371),
              torch.tensor(5, dtype=torch.int32), 0, 15)),
    ]


def _q(rounded, zero_point, qmin, qmax):
    return torch.clamp(rounded + zero_point, qmin, qmax).to(torch.int32)


register(
    "quantize",
    params=("x", "scale", "zero_point", "qmin", "qmax"),
    reference=lambda x, scale, zero_point, qmin, qmax: quantize(x, scale, zero_point, qmin, qmax),
    cases=_quantize_cases,
    atol=0.0,
    rtol=0.0,
    mistakes=[
        Mistake("clamp's bounds swapped: clamp(v, qmax, qmin)",
                lambda x, s, z, lo, hi: _q(torch.round(x / s), z, hi, lo),
                "torch.clamp(input, min, max) takes the lower bound first: clamp(v, qmin, qmax). With them "
                "swapped, min > max and every code comes out the same."),
        Mistake("clamping to 0..255 whatever qmin and qmax are", lambda x, s, z, lo, hi: _q(torch.round(x / s), z, 0, 255),
                "Clamp to the qmin and qmax the function is given, not to 8-bit's 0..255: 4-bit codes run "
                "0..15, symmetric int8 -128..127."),
        Mistake("ceil instead of round", lambda x, s, z, lo, hi: _q(torch.ceil(x / s), z, lo, hi),
                "ceil always rounds up, so 1.2 becomes 2; use torch.round to get the nearest code."),
        Mistake("floor instead of round", lambda x, s, z, lo, hi: _q(torch.floor(x / s), z, lo, hi),
                "floor always rounds down, so 1.8 becomes 1; use torch.round to get the nearest code."),
        Mistake("truncating with .int()", lambda x, s, z, lo, hi: _q((x / s).int(), z, lo, hi),
                ".int() / .long() cut off the fraction (toward zero), they do not round: -0.8 becomes 0 "
                "instead of -1. Round first with torch.round, convert afterwards."),
        Mistake("a missing clamp", lambda x, s, z, lo, hi: (torch.round(x / s) + z).to(torch.int32),
                "Codes must fit in [qmin, qmax]: finish with torch.clamp(..., qmin, qmax)."),
        Mistake("the zero point's sign flipped", lambda x, s, z, lo, hi: _q(torch.round(x / s), -z, lo, hi),
                "The zero point is *added*: q = round(x / scale) + zero_point, so that x = 0 lands on "
                "the code zero_point."),
        Mistake("multiplying by the scale", lambda x, s, z, lo, hi: _q(torch.round(x * s), z, lo, hi),
                "Quantizing divides by the scale (how many steps of size `scale` fit in x); "
                "dequantizing multiplies."),
        Mistake("clamping before adding the zero point",
                lambda x, s, z, lo, hi: (torch.clamp(torch.round(x / s), lo, hi) + z).to(torch.int32),
                "Add the zero point first, then clamp: the range [qmin, qmax] applies to the final code."),
        Mistake("rounding halves up (floor(x + 0.5))",
                lambda x, s, z, lo, hi: _q(torch.floor(x / s + 0.5), z, lo, hi),
                "Halfway values go to the even neighbour in torch.round (2.5 -> 2, 3.5 -> 4), the "
                "convention PyTorch's quantization uses too; use torch.round."),
        Mistake("returning floats", lambda x, s, z, lo, hi: torch.clamp(torch.round(x / s) + z, lo, hi),
                "The codes are integers: finish with .to(torch.int32)."),
        Mistake("a uint8 result", lambda x, s, z, lo, hi: _q(torch.round(x / s), z, lo, hi).to(torch.uint8),
                "torch.uint8 holds only 0..255: the negative codes of symmetric int8 (-128..127) wrap "
                "around (-104 becomes 152). Return .to(torch.int32), which holds every code."),
        Mistake("an int8 result", lambda x, s, z, lo, hi: _q(torch.round(x / s), z, lo, hi).to(torch.int8),
                "torch.int8 holds only -128..127: the codes of asymmetric 8-bit (0..255) wrap around "
                "(185 becomes -71). Return .to(torch.int32), which holds every code."),
    ],
    hint="q = clamp(round(x / scale) + zero_point, qmin, qmax), as an integer tensor.",
)


# ── dequantize ───────────────────────────────────────────────────────────────────────────────


def _dequantize_cases():
    g = torch.Generator().manual_seed(4)
    return [
        Case("a hand example: scale 0.5, zero point 3", (torch.tensor([1, 2, 3, 5, 7], dtype=torch.int32), 0.5, 3)),
        Case("symmetric int8 codes (zero point 0)",
             (torch.tensor([-128, -1, 0, 1, 127], dtype=torch.int32), torch.tensor(0.25), 0)),
        Case("per-channel: scale and zero_point of shape [rows, 1]",
             (torch.randint(0, 16, (3, 5), generator=g, dtype=torch.int32), torch.tensor([[0.5], [0.1], [2.0]]),
              torch.tensor([[8], [0], [15]], dtype=torch.int32))),
        Case("uint8 codes, as a QuantizedWeight stores them",
             (torch.tensor([0, 100, 128, 255], dtype=torch.uint8), torch.tensor(0.1), torch.tensor(128))),
        Case("uint8 codes above 127, zero point 3",
             (torch.tensor([0, 3, 200, 255], dtype=torch.uint8), 0.5, 3)),
        Case("4-bit codes of a random weight",
             (torch.randint(0, 16, (4, 8), generator=g, dtype=torch.int32), 0.037, 7)),
    ]


register(
    "dequantize",
    params=("q", "scale", "zero_point"),
    reference=lambda q, scale, zero_point: dequantize(q, scale, zero_point),
    cases=_dequantize_cases,
    compare=noting_half_precision(1e-5, 1e-4, "keep the arithmetic in float32 (q.to(torch.int32) or q.float(), "
                                  "not .half() or .bfloat16()), as the reference does", close_atol=1e-6, close_rtol=1e-2),
    mistakes=[
        Mistake("the subtraction reversed: (zero_point − q)·scale", lambda q, s, z: (z - q.to(torch.int32)) * s,
                "It is (q − zero_point)·scale: the code minus the zero point. Reversed, every value has the "
                "wrong sign."),
        Mistake("the zero point's sign flipped", lambda q, s, z: (q.to(torch.int32) + z) * s,
                "Subtract the zero point: x = (q - zero_point) * scale, so the code zero_point gives 0.0."),
        Mistake("subtracting the zero point after scaling", lambda q, s, z: q.to(torch.int32) * s - z,
                "The zero point is in code units, so subtract it before multiplying: (q - zero_point) * scale."),
        Mistake("dividing by the scale", lambda q, s, z: (q.to(torch.int32) - z) / s,
                "Dequantizing multiplies by the scale (it undoes the division in quantize)."),
        Mistake("forgetting the zero point", lambda q, s, z: q.to(torch.int32) * s,
                "Subtract the zero point first: x = (q - zero_point) * scale."),
        Mistake("uint8 arithmetic that wraps around", lambda q, s, z: (q - z) * s,
                "q may be a torch.uint8 tensor, and uint8 cannot hold negative numbers: 0 - 128 wraps "
                "around to 128. Convert first: (q.to(torch.int32) - zero_point) * scale."),
        Mistake("returning integers", lambda q, s, z: ((q.to(torch.int32) - z) * s).round().to(torch.int32),
                "Dequantized values are floats: return (q - zero_point) * scale without rounding or .int()."),
        Mistake("int8 codes (signed)", lambda q, s, z: (q.to(torch.int8).to(torch.int32) - z) * s,
                "torch.int8 holds only -128..127: a uint8 code such as 200 becomes -56 (and int8 "
                "arithmetic wraps too). Convert to a type that holds 0..255 and negative numbers: "
                "(q.to(torch.int32) - zero_point) * scale."),
        Mistake("missing parentheses: q - zero_point * scale", lambda q, s, z: q.to(torch.int32) - z * s,
                "* binds tighter than -, so q - zero_point * scale scales only the zero point. Write "
                "(q - zero_point) * scale."),
    ],
    hint="x = (q - zero_point) * scale, computed in integers or floats (not uint8), returned as floats.",
)


# ── compute_qparams ──────────────────────────────────────────────────────────────────────────


#: (a mistake) 2^bits - 1 in Python: 2 XOR (bits - 1), which is 3 at 2 bits (right by chance), 0 at 3,
#: 1 at 4 and 5 at 8.
_xor = lambda b: 2 ^ b - 1  # noqa: E731
_XOR_HINT = ("In Python ^ is XOR, not a power: 2^bits - 1 is 2 XOR (bits - 1), which is 1 at 4 bits (right "
             "only at 2 bits, by chance). Write 2**bits - 1.")


def _qparams_cases():
    g = torch.Generator().manual_seed(5)
    mixed = torch.randn(64, generator=g) * 2 + 0.5
    return [
        Case("a hand example: [-1, 0, 2] at 2 bits (scale 1, zero point 1)", (torch.tensor([-1.0, 0.0, 2.0]), 2, False)),
        Case("asymmetric int8 on mixed-sign data", (mixed, 8, False)),
        Case("all-positive data (after a ReLU): the range must still include 0",
             (torch.rand(50, generator=g) * 3.5 + 0.5, 8, False)),
        Case("all-negative data at 4 bits", (-torch.rand(30, generator=g) * 2 - 1, 4, False)),
        Case("symmetric int8: more negative than positive",
             (torch.cat([torch.tensor([-6.0, 2.0]), torch.randn(20, generator=g)]), 8, True)),
        Case("symmetric 4-bit", (torch.tensor([[0.3, -0.7], [1.4, 0.0]]), 4, True)),
        Case("3-bit asymmetric", (torch.randn(4, 8, generator=g), 3, False)),
        Case("a zero point that rounds down: [-0.1, 0.4, 1.0] at 4 bits (-lo / scale = 1.36 -> 1)",
             (torch.tensor([-0.1, 0.4, 1.0]), 4, False)),
        Case("an all-zero tensor (no division by zero!)", (torch.zeros(6), 8, False)),
        Case("an all-zero tensor, symmetric (no division by zero either)", (torch.zeros(2, 3), 8, True)),
    ]


def _number(v, what: str):
    if isinstance(v, (torch.Tensor, np.ndarray)):
        if (v.size if isinstance(v, np.ndarray) else v.numel()) != 1:
            return None, f"{what} should be a single number (per-tensor), got a tensor of shape {tuple(v.shape)}"
        v = v.item()
    elif isinstance(v, np.generic):   # a numpy scalar, np.float32(0.5) or np.int64(3): its Python number
        v = v.item()                  # (np.bool_ gives a bool, a complex one a complex: both refused below)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None, f"{what} should be a number or a 0-dim tensor, got {type(v).__name__}"
    return float(v), None


def _compare_qparams(got, expected):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a pair (scale, zero_point), got {type(got).__name__}"
    (s, problem) = _number(got[0], "scale")
    if problem:
        return problem
    z, problem = _number(got[1], "zero_point")
    if problem:
        return problem
    s_exp, z_exp = float(expected[0]), float(expected[1])
    if not math.isfinite(s) or not math.isclose(s, s_exp, rel_tol=1e-5, abs_tol=1e-9):
        return f"scale: expected {s_exp:.6g} but got {s:.6g}"
    if z_exp != round(z_exp):   # a known mistake's unrounded zero point (diagnosis compares with those too)
        return None if math.isclose(z, z_exp, rel_tol=1e-6, abs_tol=1e-6) else f"zero_point: expected {z_exp:.6g} but got {z:.6g}"
    z_exp = int(z_exp)
    if not math.isfinite(z) or z != round(z):
        return f"zero_point must be a whole number (an integer code), got {z:.6g}"
    if int(z) != z_exp:
        return f"zero_point: expected {z_exp} but got {int(z)}"
    return None


def _qp(lo, hi, bits, levels=None, round_zero=True, zero_sign=1):
    levels = levels or 2**bits - 1
    scale = (hi - lo) / levels
    zero = -lo / scale
    return scale, zero_sign * (torch.round(zero) if round_zero else zero)


def _qp_truncated(x, bits):
    scale, zero = _qp(*_wide(x), bits, round_zero=False)
    return scale, torch.floor(zero)   # -lo / scale >= 0: int() and floor agree


def _wide(x):
    return torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)


def _zero_point_before_guard(x, bits, symmetric):
    """(a mistake) round(-lo / scale) taken before the all-zero guard: 0 / 0 is NaN there, and int()
    of NaN raises "ValueError: cannot convert float NaN to integer"."""
    if symmetric:
        return compute_qparams(x, bits, True)
    lo, hi = _wide(x)
    scale = (hi - lo) / (2**bits - 1)
    zero_point = int(torch.round(-lo / scale))
    if scale == 0:
        scale = torch.tensor(1.0)
    return scale, zero_point


def _sym(x, levels):
    """Symmetric qparams with max|x| spread over `levels` steps (zero range: scale 1.0)."""
    scale = x.abs().max() / levels
    return (scale if scale > 0 else torch.tensor(1.0)), 0


def _asym_only(fn):
    """A mistake in the asymmetric branch; the symmetric branch is done right."""
    def wrong(x, bits, symmetric):
        return compute_qparams(x, bits, True) if symmetric else fn(x, bits)
    return wrong


register(
    "compute_qparams",
    params=("x", "bits", "symmetric"),
    reference=lambda x, bits, symmetric: compute_qparams(x, bits, symmetric),
    cases=_qparams_cases,
    compare=_compare_qparams,
    mistakes=[  # diagnosis tries these in order: the all-zero guard first, so it wins on that case
        Mistake("returning (zero_point, scale), the other way round",
                lambda x, b, sym: tuple(reversed(compute_qparams(x, b, sym))),
                "Return the pair as (scale, zero_point), in that order: the scale is the small float step, "
                "the zero point the integer code for 0.0."),
        Mistake("no guard against an all-zero tensor",
                lambda x, b, sym: ((x.abs().max() / (2 ** (b - 1) - 1), 0) if sym else _qp(*_wide(x), b)),
                "If the range is 0 (all zeros), the scale would be 0 and x / scale divides by zero: "
                "use scale = 1.0 in that case."),
        Mistake("the zero point computed before the guard against an all-zero tensor", _zero_point_before_guard,
                "For an all-zero tensor -lo / scale is 0 / 0 = NaN, and a NaN cannot become an integer code: "
                "replace a zero scale by 1.0 first, then compute zero_point = round(-lo / scale)."),
        Mistake("a scale from the maximum only, ignoring the minimum",
                _asym_only(lambda x, b: (_wide(x)[1] / (2**b - 1),
                                         torch.round(-_wide(x)[0] / (_wide(x)[1] / (2**b - 1))))),
                "The scale spreads the whole range over the codes: scale = (max - min) / (2**bits - 1)."),
        Mistake("a range that does not include 0",
                _asym_only(lambda x, b: _qp(x.min(), x.max(), b)),
                "Widen the range to include 0 first: lo = min(x.min(), 0), hi = max(x.max(), 0). "
                "Otherwise 0.0 (padding, ReLU zeros) cannot be represented exactly."),
        Mistake("2**bits levels instead of 2**bits - 1 steps",
                _asym_only(lambda x, b: _qp(*_wide(x), b, levels=2**b)),
                "b bits give 2**b codes, 0 .. 2**b - 1, so there are 2**b - 1 steps between min and max."),
        Mistake("^ (XOR) instead of ** in 2**bits - 1", _asym_only(lambda x, b: _qp(*_wide(x), b, levels=_xor(b))),
                _XOR_HINT),
        Mistake("bits**2 instead of 2**bits", _asym_only(lambda x, b: _qp(*_wide(x), b, levels=b**2 - 1)),
                "The number of codes is 2**bits (two to the power bits), not bits**2: they agree at 2 and 4 "
                "bits only. scale = (max - min) / (2**bits - 1)."),
        Mistake("a float zero point that is not rounded",
                _asym_only(lambda x, b: _qp(*_wide(x), b, round_zero=False)),
                "The zero point is a code, so it must be an integer: round(-lo / scale). That is what "
                "makes 0.0 exactly representable."),
        Mistake("a zero point truncated (int() or floor) instead of rounded", _asym_only(_qp_truncated),
                "int(), math.floor and torch.floor cut the fraction off: 105.7 becomes 105, one code away from "
                "where 0.0 lies. Round to the nearest code: round(-lo / scale)."),
        Mistake("the zero point's sign flipped", _asym_only(lambda x, b: _qp(*_wide(x), b, zero_sign=-1)),
                "zero_point = -round(lo / scale): lo is negative (or 0), so the zero point is >= 0."),
        Mistake("symmetric from the maximum instead of the largest magnitude",
                lambda x, b, sym: (x.max().clamp(min=0) / (2 ** (b - 1) - 1), 0) if sym else compute_qparams(x, b),
                "Symmetric uses max(|x|): a large negative value needs the range as much as a positive one."),
        Mistake("missing parentheses: max|x| / 2**(bits-1) - 1",
                lambda x, b, sym: (x.abs().max() / 2 ** (b - 1) - 1, 0) if sym else compute_qparams(x, b),
                "/ binds tighter than -, so max|x| / 2**(bits-1) - 1 divides first and subtracts 1 from the "
                "quotient (a negative scale). Write max|x| / (2**(bits-1) - 1)."),
        Mistake("symmetric dividing by 2**(bits-1)",
                lambda x, b, sym: (x.abs().max() / 2 ** (b - 1), 0) if sym else compute_qparams(x, b),
                "The largest positive code is 2**(bits-1) - 1 (127 for int8): scale = max|x| / 127, so "
                "max|x| is not clipped."),
        Mistake("symmetric dividing by 2**bits - 1",
                lambda x, b, sym: _sym(x, 2**b - 1) if sym else compute_qparams(x, b),
                "Symmetric codes are signed, -2**(bits-1) .. 2**(bits-1) - 1: half of them are for negative "
                "values, so max|x| maps to 2**(bits-1) - 1 (127 for int8), not to 2**bits - 1 (255)."),
        Mistake("a symmetric zero point of 2**(bits-1)",
                lambda x, b, sym: (compute_qparams(x, b, True)[0], 2 ** (b - 1)) if sym else compute_qparams(x, b),
                "Symmetric codes are signed and centred on 0, so 0.0 is the code 0: zero_point = 0. (A zero "
                "point of 2**(bits-1), 128 for 8 bits, is the same grid stored as unsigned codes.)"),
        Mistake("the asymmetric formula for symmetric too",
                lambda x, b, sym: compute_qparams(x, b, False),
                "With symmetric=True use the signed range: scale = max|x| / (2**(bits-1) - 1), zero_point 0."),
    ],
    hint=("asymmetric: lo = min(x.min(), 0), hi = max(x.max(), 0), scale = (hi - lo) / (2**bits - 1), "
          "zero_point = round(-lo / scale). symmetric: scale = max|x| / (2**(bits-1) - 1), zero_point = 0. "
          "A zero range gets scale 1.0."),
)


# ── quantize_per_group ───────────────────────────────────────────────────────────────────────


def _group_cases():
    g = torch.Generator().manual_seed(6)
    outlier = torch.randn(4, 32, generator=g)
    outlier[1, 5] = 12.0  # one outlier: only its own group should suffer
    zero_row = torch.randn(4, 12, generator=g)
    zero_row[2] = 0.0
    return [
        Case("a hand example: [2, 4] at 2 bits, groups of 2",
             (torch.tensor([[-1.0, 2.0, 0.5, 1.5], [3.0, 0.0, -2.0, -1.0]]), 2, 2)),
        Case("4-bit, groups of 4", (torch.randn(8, 16, generator=g), 4, 4)),
        Case("one outlier: per-group contains it", (outlier, 4, 8)),
        Case("group_size = in_features (one group per row)", (torch.randn(3, 8, generator=g) * 0.1, 8, 8)),
        Case("a row of zeros", (zero_row, 3, 4)),
        Case("more columns than rows, groups of 3", (torch.randn(6, 12, generator=g), 4, 3)),
    ]


def _per_group_wrong(reshape, reduce_dim, bits_levels=None, widen=True, symmetric=False, guard=True,
                     round_zero=True, keepdim=True, zero_rounding=torch.round, top=None, dequantize=None):
    """A per-group quantize-dequantize with one thing done wrong, as the arguments say: `top(bits)`
    the largest code clamped to (2**bits - 1 if None), `dequantize(q, zero, scale)` the last step."""
    def wrong(w, bits, group_size):
        out, n_in = w.shape
        wg = reshape(w, group_size)  # some [.., .., ..] view
        lo, hi = wg.amin(dim=reduce_dim, keepdim=keepdim), wg.amax(dim=reduce_dim, keepdim=keepdim)
        if widen:
            lo, hi = lo.clamp(max=0), hi.clamp(min=0)
        if symmetric:
            qmax = 2 ** (bits - 1) - 1
            scale = torch.maximum(-lo, hi) / qmax
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            return (torch.clamp(torch.round(wg / scale), -qmax - 1, qmax) * scale).reshape(out, n_in)
        levels = bits_levels(bits) if bits_levels else 2**bits - 1
        scale = (hi - lo) / levels
        if guard:
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = zero_rounding(-lo / scale) if round_zero else -lo / scale
        q = torch.clamp(torch.round(wg / scale) + zero, 0, top(bits) if top else 2**bits - 1)
        return (dequantize(q, zero, scale) if dequantize else (q - zero) * scale).reshape(out, n_in)
    return wrong


_RIGHT = lambda w, g: w.reshape(w.shape[0], -1, g)  # [out, in/g, g]


def _wrong_dimension(w, bits, group_size):
    return quantize_dequantize(w.T.contiguous(), bits, group_size=group_size).T  # groups down the columns


def _codes_not_values(w, bits, group_size):
    scale, zero = compute_qparams(w, bits, group_size=group_size)
    return quantize(w, scale, zero, *qrange(bits), group_size=group_size).float()


register(
    "quantize_per_group",
    params=("w", "bits", "group_size"),
    reference=lambda w, bits, group_size: quantize_dequantize(w, bits, group_size=group_size),
    cases=_group_cases,
    mistakes=[
        Mistake("groups along the wrong dimension", _wrong_dimension,
                "Groups run along the *input* dimension, the last one of w [out, in]: each row is cut "
                "into in / group_size pieces, w.reshape(out, in // group_size, group_size)."),
        Mistake("min/max over the wrong axis after the reshape", _per_group_wrong(_RIGHT, 1),
                "After w.reshape(out, in // group_size, group_size) the members of one group are the last "
                "axis: take amin/amax over dim=-1 (keepdim=True)."),
        Mistake("group_size groups instead of groups of group_size",
                _per_group_wrong(lambda w, g: w.reshape(w.shape[0], g, -1), -1),
                "reshape(out, group_size, -1), like torch.chunk(w, group_size, dim=1), cuts each row into "
                "group_size groups of in / group_size inputs. Each group should HOLD group_size inputs: "
                "w.reshape(out, -1, group_size) (or w.split(group_size, dim=1))."),
        Mistake("one range per row (ignoring group_size)",
                lambda w, bits, g: quantize_dequantize(w, bits, axis=0),
                "Each group of group_size consecutive inputs needs its own scale and zero point."),
        Mistake("one range for the whole tensor", lambda w, bits, g: quantize_dequantize(w, bits),
                "Compute min and max per group, not over the whole tensor."),
        Mistake("a range that does not include 0", _per_group_wrong(_RIGHT, -1, widen=False),
                "Widen each group's range to include 0: lo = min(min, 0), hi = max(max, 0)."),
        Mistake("2**bits levels instead of 2**bits - 1 steps", _per_group_wrong(_RIGHT, -1, lambda b: 2**b),
                "b bits give 2**b codes, so scale = (hi - lo) / (2**bits - 1)."),
        Mistake("^ (XOR) instead of ** in 2**bits - 1", _per_group_wrong(_RIGHT, -1, _xor, top=_xor),
                _XOR_HINT),
        Mistake("subtracting the zero point after scaling: q·scale − zero",
                _per_group_wrong(_RIGHT, -1, dequantize=lambda q, zero, scale: q * scale - zero),
                "The zero point is in code units: dequantize with (q − zero)·scale, not q·scale − zero."),
        Mistake("symmetric instead of asymmetric", _per_group_wrong(_RIGHT, -1, symmetric=True),
                "This exercise asks for asymmetric min-max: codes 0 .. 2**bits - 1 and a zero point."),
        Mistake("no guard against an all-zero group", _per_group_wrong(_RIGHT, -1, guard=False),
                "In a group of zeros hi == lo, so the scale is 0 and w / scale is 0 / 0 = NaN. Use scale "
                "1.0 there: scale = torch.where(scale > 0, scale, torch.ones_like(scale))."),
        Mistake("a zero point that is not rounded", _per_group_wrong(_RIGHT, -1, round_zero=False),
                "The zero point is a code, an integer: zero = torch.round(-lo / scale). Unrounded, the "
                "codes round(w / scale) + zero are not whole numbers, and the clamp to 0 .. 2**bits - 1 "
                "cuts the ends of the range off the grid."),
        Mistake("a zero point truncated (torch.floor, .int() or .long()) instead of rounded",
                _per_group_wrong(_RIGHT, -1, zero_rounding=torch.floor),
                "torch.floor, .int() and .long() cut the fraction off: 105.7 becomes 105, one code away from where "
                "0.0 lies. Round to the nearest code: zero = torch.round(-lo / scale)."),
        Mistake("the group minimum and maximum without keepdim=True", _per_group_wrong(_RIGHT, -1, keepdim=False),
                "wg.amin(dim=-1) has shape [out, groups], not [out, groups, 1]: dividing the [out, groups, "
                "group_size] groups by a scale of that shape lines it up with the members of a group, not "
                "the groups (or fails, when groups ≠ group_size). Use amin/amax(dim=-1, keepdim=True)."),
        Mistake("returning the codes", _codes_not_values,
                "Return the dequantized weight, (q - zero_point) * scale, with w's shape."),
    ],
    hint=("w.reshape(out, in // group_size, group_size); per group (dim=-1, keepdim=True) compute the "
          "asymmetric min-max scale and zero point; quantize, dequantize, reshape back to [out, in]."),
)
