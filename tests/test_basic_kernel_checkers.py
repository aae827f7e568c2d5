"""Wrong answers found by trying exercises 00 (weight_bytes) and 09 (packing, the packed GEMV, the
fp16 trick) as a learner: each must fail, and the report must name what the learner did (the
listed mistakes themselves are covered by tests/test_checkers.py)."""

import math

import pytest
import torch

from minicomp.grading import check
from minicomp.pack import unpack_int4

# ── weight_bytes ─────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("fn", [
    lambda n, b: math.ceil(n * b / 8),
    lambda n, b: -(-n * b // 8),
    lambda n, b: n * b // 8 + (1 if n * b % 8 else 0),
], ids=["ceil", "negative-floor", "floor-plus-remainder"])
def test_weight_bytes_accepts_each_way_of_rounding_up(fn):
    assert check("weight_bytes", fn).passed


def test_weight_bytes_rejects_round_plus_a_half():
    """round(x + 0.5) rounds halves to even: 5 whole bytes become 6, which only a case with an odd
    number of whole bytes shows."""
    report = check("weight_bytes", lambda n, b: round(n * b / 8 + 0.5))
    assert not report.passed and "round(x + 0.5)" in report.hint


@pytest.mark.parametrize("fn,named", [
    (lambda n, b: n * b // 8 + 1, "always adding one byte"),
    (lambda n, b: (n * b + 8) // 8, "always adding one byte"),
    (lambda n, b: n * math.ceil(b / 8), "a whole byte per weight"),
    (lambda n, b: n * (b // 8), "bytes per weight rounded down"),
    (lambda n, b: n * round(b / 8), "bytes per weight rounded down"),
    (lambda n, b: (n * b + 7) / 8, "with / instead of //"),
], ids=["plus-one", "plus-eight", "ceil-per-weight", "floor-per-weight", "round-per-weight", "true-division"])
def test_weight_bytes_mistakes_are_named(fn, named):
    report = check("weight_bytes", fn)
    assert not report.passed and named in report.hint, report.hint


def test_weight_bytes_testing_num_params_for_the_last_byte_is_named():
    """n * b // 8 + (n % 8 > 0) matched round(x + 0.5) on every case and was named as it; the case
    of 8 weights at 5 bits (exactly 5 bytes, n % 8 == 0) tells them apart."""
    report = check("weight_bytes", lambda n, b: n * b // 8 + (n % 8 > 0))
    assert not report.passed and "num_params % 8" in report.hint and "round(x + 0.5)" not in report.hint


# ── pack_int4 / unpack_int4 ──────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("fn", [
    lambda q: q.to(torch.uint8)[..., 0::2] | (q.to(torch.uint8)[..., 1::2] >> 4),       # the wrong way
    lambda q: q.to(torch.uint8)[..., 0::2] | ((q.to(torch.uint8)[..., 1::2] << 4) & 0x0F),  # masked off
], ids=["shift-right", "mask-after-shift"])
def test_an_empty_high_nibble_is_not_called_a_shift_by_8(fn):
    report = check("pack_int4", fn)
    assert not report.passed and "empty high nibble" in report.hint
    assert "`>> 4`" in report.hint and "& 0x0F" in report.hint


def test_pack_precedence_mistake_is_named():
    report = check("pack_int4", lambda q: (q[..., 0::2] + q[..., 1::2] << 4).to(torch.uint8))
    assert "+ binds tighter than <<" in report.hint


def test_pack_with_plus_and_times_16_passes():
    assert check("pack_int4", lambda q: (q[..., 0::2] + q[..., 1::2] * 16).to(torch.uint8)).passed


def test_unpack_precedence_mistake_is_named():
    report = check("unpack_int4", lambda p: torch.stack((p & 0x0F, p & 0xF0 >> 4), -1).flatten(-2))
    assert not report.passed and ">> binds tighter than &" in report.hint


def test_unpack_with_parentheses_passes():
    assert check("unpack_int4", lambda p: torch.stack((p & 0x0F, (p & 0xF0) >> 4), -1).flatten(-2)).passed


# ── packed_gemv ──────────────────────────────────────────────────────────────────────────────


def _gemv_uint8(packed, scales, zeros, x, group_size):
    q = unpack_int4(packed)                                  # uint8
    w = (q - zeros.repeat_interleave(group_size, 1)).float() * scales.repeat_interleave(group_size, 1)
    return w @ x


def _gemv_loop(row_sum=False, skip_last=False):
    def fn(packed, scales, zeros, x, group_size):
        q = unpack_int4(packed).float()
        n_groups = q.shape[1] // group_size
        y = torch.zeros(q.shape[0])
        for k in range(n_groups - 1 if skip_last else n_groups):
            cols = slice(k * group_size, (k + 1) * group_size)
            xs = x.sum() if row_sum else x[cols].sum()
            y += scales[:, k] * (q[:, cols] @ x[cols] - zeros[:, k].float() * xs)
        return y
    return fn


def test_the_group_loop_passes():
    assert check("packed_gemv", _gemv_loop()).passed


@pytest.mark.parametrize("fn,named", [
    (_gemv_uint8, "uint8 arithmetic that wraps around"),
    (_gemv_loop(row_sum=True), "over the whole row"),
    (_gemv_loop(skip_last=True), "the last group left out"),
], ids=["uint8", "row-sum", "skip-last"])
def test_gemv_mistakes_are_named(fn, named):
    report = check("packed_gemv", fn)
    assert not report.passed and named in report.hint, report.hint


def _gemv_in(dtype, back_to_float32):
    def fn(packed, scales, zeros, x, group_size):
        q = unpack_int4(packed).to(dtype)
        w = (q - zeros.to(dtype).repeat_interleave(group_size, 1)) * scales.to(dtype).repeat_interleave(group_size, 1)
        y = w @ x.to(dtype)
        return y.float() if back_to_float32 else y
    return fn


@pytest.mark.parametrize("fn,named", [
    (_gemv_in(torch.float16, False), "your answer is torch.float16"),
    (_gemv_in(torch.bfloat16, False), "your answer is torch.bfloat16"),
    (_gemv_in(torch.float16, True), "as small as float16 or bfloat16 rounding"),
], ids=["fp16", "bf16", "fp16-then-float32"])
def test_gemv_in_half_precision_is_named(fn, named):
    """It got only the general hint ("Unpack the codes ..."), which the answer already does."""
    report = check("packed_gemv", fn)
    assert not report.passed and named in str(report) and "keep the arithmetic in float32" in str(report)


# ── two_codes_fp16 ───────────────────────────────────────────────────────────────────────────


def test_converting_instead_of_reinterpreting_is_named():
    report = check("two_codes_fp16", lambda w: ((w & 0x000F000F) | 0x64006400).to(torch.float16))
    assert not report.passed and ".view(torch.float16)" in report.hint and "converts" in report.hint


def test_gemv_lows_then_highs_is_named():
    """Unpacking all the low nibbles, then all the high ones, got only the general hint."""
    def lows_then_highs(packed, scales, zeros, x, group_size):
        q = torch.cat((packed & 15, packed >> 4), -1).float()
        w = (q - zeros.float().repeat_interleave(group_size, -1)) * scales.float().repeat_interleave(group_size, -1)
        return w @ x.float()

    report = check("packed_gemv", lows_then_highs)
    assert not report.passed and "no interleave" in report.hint and "torch.stack((low, high)" in report.hint


def test_codes_in_numpy_are_held_to_the_dtype():
    """An int64 numpy array passed where uint8 codes are asked for: compare_values read its values
    and it passed. A numpy answer in the right dtype is right, as everywhere in the course."""
    def pack_int4(q):
        q = q.long()
        return (q[..., 0::2] | (q[..., 1::2] << 4)).numpy()

    text = str(check("pack_int4", pack_int4))
    assert "expected dtype torch.uint8 (one byte per element) but got torch.int64" in text
    assert check("pack_int4", lambda q: pack_int4(q).astype("uint8")).passed
