"""The quantization checkers accept every correct way of writing the answer and reject wrong ones
that are *not* in their list of known mistakes (tests/test_checkers.py covers the listed ones)."""

import math

import numpy as np
import pytest
import torch

from minicomp.grading import check

# ── correct answers written differently: all must pass ───────────────────────────────────────


def quantize_with_inverse(x, scale, zero_point, qmin, qmax):
    inv = 1.0 / torch.as_tensor(scale)
    return torch.clamp(torch.round(x * inv) + zero_point, qmin, qmax).long()


def quantize_with_numpy(x, scale, zero_point, qmin, qmax):
    import numpy as np

    s = np.asarray(scale, dtype=np.float32)
    q = np.clip(np.rint(x.numpy() / s) + np.asarray(zero_point), qmin, qmax)  # rint: half to even
    return torch.from_numpy(q.astype(np.int64))


def dequantize_in_float64(q, scale, zero_point):
    return (q.double() - torch.as_tensor(zero_point).double()) * torch.as_tensor(scale).double()


def qparams_as_python_numbers(x, bits, symmetric):
    if symmetric:
        amax = x.abs().max().item()
        return (amax / (2 ** (bits - 1) - 1) if amax > 0 else 1.0), 0
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (hi - lo) / (2**bits - 1) if hi > lo else 1.0
    return scale, int(round(-lo / scale))


def qparams_float_zero_but_whole(x, bits, symmetric):
    scale, zero = qparams_as_python_numbers(x, bits, symmetric)
    return torch.tensor(scale), torch.tensor(float(zero))


def per_group_with_loops(w, bits, group_size):
    out = torch.empty_like(w)
    for r in range(w.shape[0]):
        for c in range(0, w.shape[1], group_size):
            g = w[r, c:c + group_size]
            lo, hi = min(g.min().item(), 0.0), max(g.max().item(), 0.0)
            scale = (hi - lo) / (2**bits - 1) if hi > lo else 1.0
            zero = round(-lo / scale)
            q = torch.clamp(torch.round(g / scale) + zero, 0, 2**bits - 1)
            out[r, c:c + group_size] = (q - zero) * scale
    return out


def per_group_with_unflatten(w, bits, group_size):
    wg = w.unflatten(-1, (-1, group_size))
    lo = wg.amin(-1, keepdim=True).clamp(max=0)
    hi = wg.amax(-1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).masked_fill(hi == lo, 1.0)
    zero = (-lo / scale).round()
    q = ((wg / scale).round() + zero).clamp(0, 2**bits - 1)
    return ((q - zero) * scale).flatten(-2)


@pytest.mark.parametrize("name,fn", [
    ("quantize", quantize_with_inverse),
    ("quantize", quantize_with_numpy),
    ("dequantize", dequantize_in_float64),
    ("compute_qparams", qparams_as_python_numbers),
    ("compute_qparams", qparams_float_zero_but_whole),
    ("quantize_per_group", per_group_with_loops),
    ("quantize_per_group", per_group_with_unflatten),
], ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_correct_variants_pass(name, fn):
    report = check(name, fn)
    assert report.passed, str(report)


# ── wrong answers that are not in the registry: all must fail, without a traceback ─────────


def _clamp(t, lo, hi):
    return torch.clamp(t, lo, hi).to(torch.int32)


UNLISTED = {
    "quantize": [
        ("ceil", lambda x, s, z, lo, hi: _clamp(torch.ceil(x / s) + z, lo, hi)),
        ("clamp to [0, qmax], ignoring qmin", lambda x, s, z, lo, hi: _clamp(torch.round(x / s) + z, 0, hi)),
        ("clamp to qmax - 1", lambda x, s, z, lo, hi: _clamp(torch.round(x / s) + z, lo, hi - 1)),
        ("int8 wrap-around instead of clamping",
         lambda x, s, z, lo, hi: (torch.round(x / s) + z).to(torch.int64).to(torch.int8).to(torch.int32)),
        ("zero point scaled as a float offset", lambda x, s, z, lo, hi: _clamp(torch.round(x / s + z * s), lo, hi)),
        ("the float offset formula round((x - min) / scale)",
         lambda x, s, z, lo, hi: _clamp(torch.round((x - x.min()) / s), lo, hi)),
        ("magnitude only", lambda x, s, z, lo, hi: _clamp(torch.round(x.abs() / s) + z, lo, hi)),
        ("returns x unchanged", lambda x, s, z, lo, hi: x),
        ("per-channel scale flattened", lambda x, s, z, lo, hi: _clamp(
            torch.round(x / torch.as_tensor(s).flatten()[0]) + torch.as_tensor(z).flatten()[0], lo, hi)),
    ],
    "dequantize": [
        ("rounds the result", lambda q, s, z: ((q.long() - z) * s).round()),
        ("squares the scale", lambda q, s, z: (q.long() - z) * torch.as_tensor(s) ** 2),
        ("one scale for every channel", lambda q, s, z: (q.long() - z) * torch.as_tensor(s).mean()),
        ("adds half a step", lambda q, s, z: (q.long() - z + 0.5) * s),
        ("returns a list", lambda q, s, z: ((q.long() - z) * s).tolist()),
        ("swaps scale and zero point", lambda q, s, z: (q.long() - torch.as_tensor(s)) * torch.as_tensor(z)),
    ],
    "compute_qparams": [
        ("ignores bits (always 8)", lambda x, b, sym: qparams_as_python_numbers(x, 8, sym)),
        ("3-sigma range", lambda x, b, sym: ((6 * x.std() / (2**b - 1)).item() or 1.0, 2 ** (b - 1))),
        ("floors the zero point", lambda x, b, sym: (
            lambda s, z: (s, math.floor(-min(x.min().item(), 0.0) / s)))(*qparams_as_python_numbers(x, b, sym))),
        ("symmetric with 2**b - 1 levels over 2 max|x|", lambda x, b, sym: (
            ((2 * x.abs().max().item() / (2**b - 1)) or 1.0, 0) if sym else qparams_as_python_numbers(x, b, sym))),
        ("returns scale and zero swapped", lambda x, b, sym: qparams_as_python_numbers(x, b, sym)[::-1]),
        ("returns only the scale", lambda x, b, sym: qparams_as_python_numbers(x, b, sym)[0]),
        ("per-element scales", lambda x, b, sym: (x.abs() / (2**b - 1), torch.zeros_like(x))),
        ("bits used as the number of levels", lambda x, b, sym: (
            ((max(x.max().item(), 0) - min(x.min().item(), 0)) / b) or 1.0, 0)),
    ],
    "quantize_per_group": [
        ("floors", lambda w, b, g: _floor_group(w, b, g)),
        ("ignores bits (always 4)", lambda w, b, g: per_group_with_unflatten(w, 4, g)),
        ("first group's range for every group", lambda w, b, g: _first_group_range(w, b, g)),
        ("returns [out, in/g, g]", lambda w, b, g: per_group_with_unflatten(w, b, g).unflatten(-1, (-1, g))),
        ("groups of group_size rows", lambda w, b, g: _row_groups(w, b, g)),
        ("float zero point (the min-offset variant)", lambda w, b, g: _float_zero_group(w, b, g)),
    ],
}


def _floor_group(w, bits, g):
    wg = w.unflatten(-1, (-1, g))
    lo, hi = wg.amin(-1, keepdim=True).clamp(max=0), wg.amax(-1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).masked_fill(hi == lo, 1.0)
    zero = (-lo / scale).round()
    return ((torch.floor(wg / scale) + zero).clamp(0, 2**bits - 1) - zero).mul(scale).flatten(-2)


def _float_zero_group(w, bits, g):
    wg = w.unflatten(-1, (-1, g))
    lo, hi = wg.amin(-1, keepdim=True).clamp(max=0), wg.amax(-1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).masked_fill(hi == lo, 1.0)
    return (torch.round((wg - lo) / scale).clamp(0, 2**bits - 1) * scale + lo).flatten(-2)


def _first_group_range(w, bits, g):
    first = w[:, :g]
    lo, hi = first.amin(-1, keepdim=True).clamp(max=0), first.amax(-1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).masked_fill(hi == lo, 1.0)
    zero = (-lo / scale).round()
    return ((torch.round(w / scale) + zero).clamp(0, 2**bits - 1) - zero) * scale


def _row_groups(w, bits, g):
    out = torch.empty_like(w)
    for r in range(0, w.shape[0], g):
        out[r:r + g] = per_group_with_unflatten(w[r:r + g].reshape(1, -1), bits, w[r:r + g].numel()).reshape(
            w[r:r + g].shape)
    return out


@pytest.mark.parametrize("name,label,fn", [(n, label, fn) for n, v in UNLISTED.items() for label, fn in v],
                         ids=lambda v: v.replace(" ", "-") if isinstance(v, str) else "")
def test_unlisted_mistakes_are_rejected(name, label, fn):
    report = check(name, fn)
    assert not report.passed, f"{label} passed the {name} checker"
    assert report.status == "failed"
    assert report.hint  # a general hint at least
    assert "Traceback" not in str(report)


def test_report_names_the_mistake_for_a_learner_who_floors():
    report = check("quantize", lambda x, s, z, lo, hi: _clamp(torch.floor(x / s) + z, lo, hi))
    assert "floor instead of round" in report.hint


def test_all_zero_case_is_reported_as_a_missing_guard():
    def no_guard(x, bits, symmetric):
        if symmetric:
            return x.abs().max() / (2 ** (bits - 1) - 1), 0
        lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
        scale = (hi - lo) / (2**bits - 1)
        return torch.tensor(scale), torch.round(torch.tensor(-lo) / scale)

    report = check("compute_qparams", no_guard)
    assert report.n_passed == report.n_total - 2  # only the two all-zero cases fail
    assert "all-zero" in report.hint


# ── wrong answers found by trying the exercises as a learner: each is caught and named ──────


def _quantize_as(dtype):
    return lambda x, s, z, lo, hi: torch.clamp(torch.round(x / s) + z, lo, hi).to(dtype)


@pytest.mark.parametrize("dtype,named", [(torch.uint8, "a uint8 result"), (torch.int8, "an int8 result")])
def test_quantize_into_a_byte_dtype_is_named(dtype, named):
    report = check("quantize", _quantize_as(dtype))
    assert not report.passed and named in report.hint and "torch.int32" in report.hint


def test_quantize_into_int64_passes():
    assert check("quantize", _quantize_as(torch.int64)).passed


@pytest.mark.parametrize("fn", [
    lambda q, s, z: (q.to(torch.int8) - z) * s,            # int8 arithmetic: right by luck for zero point 128
    lambda q, s, z: (q.to(torch.int8).float() - z) * s,
], ids=["int8-arithmetic", "int8-then-float"])
def test_dequantize_through_int8_is_caught_and_named(fn):
    report = check("dequantize", fn)
    assert not report.passed and "int8 codes (signed)" in report.hint, report.hint


def test_dequantize_without_parentheses_is_named():
    report = check("dequantize", lambda q, s, z: q.float() - z * s)
    assert "missing parentheses" in report.hint


def test_compute_qparams_needs_a_guard_in_the_symmetric_branch_too():
    def symmetric_unguarded(x, bits, symmetric):
        if symmetric:
            return x.abs().max() / (2 ** (bits - 1) - 1), 0
        return qparams_as_python_numbers(x, bits, symmetric)

    report = check("compute_qparams", symmetric_unguarded)
    assert not report.passed and report.n_passed == report.n_total - 1
    assert "all-zero" in report.hint


def test_compute_qparams_rejects_a_zero_point_rounded_up():
    def ceil_zero(x, bits, symmetric):
        scale, _ = qparams_as_python_numbers(x, bits, symmetric)
        return (scale, 0) if symmetric else (scale, math.ceil(-min(x.min().item(), 0.0) / scale))

    report = check("compute_qparams", ceil_zero)
    assert not report.passed and "rounds down" in str(report)


@pytest.mark.parametrize("fn,named", [
    (lambda x, b, sym: ((x.abs().max().item() / (2**b - 1)) or 1.0, 0) if sym else qparams_as_python_numbers(x, b, sym),
     "symmetric dividing by 2**bits - 1"),
    (lambda x, b, sym: (qparams_as_python_numbers(x, b, sym)[0], 2 ** (b - 1)) if sym
     else qparams_as_python_numbers(x, b, sym), "a symmetric zero point of 2**(bits-1)"),
], ids=["255-levels", "zero-point-128"])
def test_symmetric_qparams_mistakes_are_named(fn, named):
    report = check("compute_qparams", fn)
    assert not report.passed and named in report.hint


def _group_unguarded(w, bits, g):
    wg = w.unflatten(-1, (-1, g))
    lo, hi = wg.amin(-1, keepdim=True).clamp(max=0), wg.amax(-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / (2**bits - 1)                      # 0 for a group of zeros
    zero = (-lo / scale).round()
    return (((wg / scale).round() + zero).clamp(0, 2**bits - 1) - zero).mul(scale).flatten(-2)


def _group_float_zero(w, bits, g):
    wg = w.unflatten(-1, (-1, g))
    lo, hi = wg.amin(-1, keepdim=True).clamp(max=0), wg.amax(-1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).masked_fill(hi == lo, 1.0)
    zero = -lo / scale                                      # not rounded
    return (((wg / scale).round() + zero).clamp(0, 2**bits - 1) - zero).mul(scale).flatten(-2)


def _group_chunks(w, bits, g):
    return torch.cat([per_group_with_unflatten(c, bits, c.shape[1]) for c in torch.chunk(w, g, dim=1)], dim=1)


@pytest.mark.parametrize("fn,named", [
    (_group_unguarded, "no guard against an all-zero group"),
    (_group_float_zero, "a zero point that is not rounded"),
    (_group_chunks, "group_size groups instead of groups of group_size"),
], ids=["no-guard", "float-zero", "torch-chunk"])
def test_per_group_mistakes_are_named(fn, named):
    report = check("quantize_per_group", fn)
    assert not report.passed and named in report.hint, report.hint


def test_per_group_with_an_epsilon_guard_passes():
    """A tiny scale for a group of zeros gives the same zeros back: a correct answer."""
    def eps_guard(w, bits, g):
        wg = w.unflatten(-1, (-1, g))
        lo, hi = wg.amin(-1, keepdim=True).clamp(max=0), wg.amax(-1, keepdim=True).clamp(min=0)
        scale = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8)
        zero = (-lo / scale).round()
        return (((wg / scale).round() + zero).clamp(0, 2**bits - 1) - zero).mul(scale).flatten(-2)

    assert check("quantize_per_group", eps_guard).passed


# ── found by an audit of the exercises: each is accepted, or caught and named ───────────────


def test_compute_qparams_accepts_numpy_scalars():
    """np.float32(scale), np.int64(zero_point) with the right values were refused as "got float32"."""
    def numpy_scalars(x, bits, symmetric):
        scale, zero = qparams_as_python_numbers(x, bits, symmetric)
        return np.float32(scale), np.int64(zero)

    assert check("compute_qparams", numpy_scalars).passed


@pytest.mark.parametrize("wrap,named", [
    (lambda scale, zero: (scale, np.bool_(zero)), "zero_point should be a number"),
    (lambda scale, zero: (np.complex64(scale), zero), "scale should be a number"),
], ids=["numpy-bool", "numpy-complex"])
def test_compute_qparams_still_refuses_numpy_bools_and_complex(wrap, named):
    report = check("compute_qparams", lambda x, b, sym: wrap(*qparams_as_python_numbers(x, b, sym)))
    assert not report.passed and named in str(report)


def _qparams_as_written(x, bits, symmetric, sym_scale=None, guard_first=True):
    """A learner's compute_qparams, with the all-zero guard `if scale == 0` (and its two slips)."""
    if symmetric:
        scale = sym_scale(x, bits) if sym_scale else x.abs().max() / (2 ** (bits - 1) - 1)
        zero_point = 0
    else:
        lo = torch.clamp(x.min(), max=0.0)
        hi = torch.clamp(x.max(), min=0.0)
        scale = (hi - lo) / (2**bits - 1)
        if not guard_first:
            zero_point = int(torch.round(-lo / scale))
    if scale == 0:
        scale = torch.tensor(1.0)
    if not symmetric and guard_first:
        zero_point = int(torch.round(-lo / scale))
    return scale, zero_point


def test_compute_qparams_precedence_slip_is_named():
    report = check("compute_qparams", lambda x, b, sym: _qparams_as_written(
        x, b, sym, sym_scale=lambda x, b: x.abs().max() / 2 ** (b - 1) - 1))
    assert not report.passed and "missing parentheses" in report.hint and "/ binds tighter than -" in report.hint


def test_compute_qparams_zero_point_before_the_guard_is_named():
    """int(NaN) raises on the all-zero tensor: the report names the order, not only the exception."""
    report = check("compute_qparams", lambda x, b, sym: _qparams_as_written(x, b, sym, guard_first=False))
    assert not report.passed and "cannot convert float NaN to integer" in str(report)
    assert "the zero point computed before the guard" in report.hint, report.hint


def _group_as_written(w, bits, g, keepdim=True, zero_rounding=torch.round):
    out, n_in = w.shape
    wg = w.reshape(out, n_in // g, g)
    lo = wg.amin(dim=-1, keepdim=keepdim).clamp(max=0)
    hi = wg.amax(dim=-1, keepdim=keepdim).clamp(min=0)
    scale = (hi - lo) / (2**bits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = zero_rounding(-lo / scale)
    q = torch.clamp(torch.round(wg / scale) + zero, 0, 2**bits - 1)
    return ((q - zero) * scale).reshape(out, n_in)


@pytest.mark.parametrize("kwargs,named", [
    ({"keepdim": False}, "without keepdim=True"),                  # the general hint before
    ({"zero_rounding": torch.floor}, "a zero point truncated"),    # the general hint before
    ({"zero_rounding": lambda t: t.long()}, "a zero point truncated"),
], ids=["no-keepdim", "floor-zero", "long-zero"])
def test_per_group_keepdim_and_truncated_zero_are_named(kwargs, named):
    report = check("quantize_per_group", lambda w, b, g: _group_as_written(w, b, g, **kwargs))
    assert not report.passed and named in report.hint, report.hint


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dequantize_in_half_precision_is_named(dtype):
    """It got only a bare "values differ ... 0.0001953" and the general hint."""
    report = check("dequantize", lambda q, s, z: ((q.to(dtype) - z) * s).to(dtype))
    assert not report.passed
    assert f"your answer is {dtype}" in str(report) and "keep the arithmetic in float32" in str(report)
