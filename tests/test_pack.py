"""Tests for minicomp.pack: hand-checked bytes, exact round trips (property tests), bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minicomp.pack import (
    codes_per_byte,
    pack,
    pack_int2,
    pack_int4,
    unpack,
    unpack_int2,
    unpack_int4,
)

# ------------------------------------------------------------------ small cases checked by hand


def test_pack_int4_by_hand():
    # element 2i in the low nibble: 3 | 10 << 4 = 0xA3 = 163, 7 | 1 << 4 = 0x17 = 23
    packed = pack_int4(torch.tensor([3, 10, 7, 1]))
    assert packed.dtype == torch.uint8
    assert packed.tolist() == [0xA3, 0x17]


def test_unpack_int4_by_hand():
    assert unpack_int4(torch.tensor([0xA3, 0x17, 0xF0], dtype=torch.uint8)).tolist() == [3, 10, 7, 1, 0, 15]


def test_pack_int4_rows_stay_rows():
    q = torch.tensor([[0, 1, 2, 3], [15, 14, 13, 12]])  # [out=2, in=4]
    packed = pack_int4(q)
    assert packed.shape == (2, 2)
    assert packed.tolist() == [[0x10, 0x32], [0xEF, 0xCD]]


def test_pack_int2_by_hand():
    # 1 | 2 << 2 | 3 << 4 | 0 << 6 = 1 + 8 + 48 = 57
    assert pack_int2(torch.tensor([1, 2, 3, 0])).tolist() == [57]
    assert unpack_int2(torch.tensor([57, 0xFF], dtype=torch.uint8)).tolist() == [1, 2, 3, 0, 3, 3, 3, 3]


def test_int8_passes_through():
    q = torch.tensor([[0, 255, 7]], dtype=torch.int32)
    packed = pack(q, 8)
    assert packed.dtype == torch.uint8 and packed.tolist() == [[0, 255, 7]]
    assert unpack(packed, 8).tolist() == [[0, 255, 7]]


def test_codes_per_byte():
    assert [codes_per_byte(b) for b in (2, 4, 8)] == [4, 2, 1]
    with pytest.raises(ValueError, match="bits=3"):
        codes_per_byte(3)


def test_dispatch_matches_named_functions():
    q = torch.randint(0, 4, (3, 8), generator=torch.Generator().manual_seed(0))
    assert torch.equal(pack(q, 4), pack_int4(q))
    assert torch.equal(pack(q, 2), pack_int2(q))
    assert torch.equal(unpack(pack(q, 2), 2), q.to(torch.uint8))


def test_empty_last_dimension():
    assert pack_int4(torch.zeros(3, 0, dtype=torch.uint8)).shape == (3, 0)
    assert unpack_int4(torch.zeros(3, 0, dtype=torch.uint8)).shape == (3, 0)


# ------------------------------------------------------------------ property tests: exact round trips

def _codes(bits):
    per = 8 // bits
    shapes = st.tuples(st.integers(1, 3), st.integers(0, 12)).map(lambda s: (s[0], s[1] * per))
    return shapes.flatmap(lambda shape: arrays(np.int64, shape, elements=st.integers(0, 2**bits - 1)))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_round_trip_is_exact(bits):
    @settings(max_examples=150, deadline=None)
    @given(_codes(bits))
    def round_trip(codes):
        q = torch.from_numpy(codes)
        packed = pack(q, bits)
        assert packed.dtype == torch.uint8
        assert packed.shape == (*q.shape[:-1], q.shape[-1] * bits // 8)
        assert torch.equal(unpack(packed, bits), q.to(torch.uint8))

    round_trip()


@settings(max_examples=150, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(0, 20))))
def test_every_byte_unpacks_and_repacks_to_itself(raw):
    packed = torch.from_numpy(raw)
    assert torch.equal(pack_int4(unpack_int4(packed)), packed)
    assert torch.equal(pack_int2(unpack_int2(packed)), packed)


@settings(max_examples=100, deadline=None)
@given(_codes(4))
def test_int4_nibbles_follow_the_convention(codes):
    q = torch.from_numpy(codes)
    packed = pack_int4(q).to(torch.int64)
    assert torch.equal(packed & 15, q[..., 0::2])
    assert torch.equal(packed >> 4, q[..., 1::2])


def test_every_integer_dtype_packs_the_same():
    q = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    expected = pack_int4(q)
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        assert torch.equal(pack_int4(q.to(dtype)), expected)


def test_non_contiguous_input():
    q = torch.randint(0, 16, (8, 6), generator=torch.Generator().manual_seed(1))
    assert torch.equal(pack_int4(q.t()), pack_int4(q.t().contiguous()))


# ------------------------------------------------------------------ bad input names the argument

def test_odd_last_dimension_raises():
    with pytest.raises(ValueError, match=r"q.shape\[-1\]=3 must be even"):
        pack_int4(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="multiple of 4"):
        pack_int2(torch.tensor([1, 2, 3, 0, 1, 2]))


@pytest.mark.parametrize("bad", [16, -1, 255])
def test_codes_out_of_range_raise(bad):
    with pytest.raises(ValueError, match=f"code {bad}.*0..15"):
        pack_int4(torch.tensor([0, bad]))


def test_int2_codes_out_of_range_raise():
    with pytest.raises(ValueError, match="0..3"):
        pack_int2(torch.tensor([0, 1, 2, 4]))


def test_int8_codes_out_of_range_raise():
    with pytest.raises(ValueError, match="0..255"):
        pack(torch.tensor([0, 256]), 8)


def test_float_codes_raise_type_error():
    with pytest.raises(TypeError, match="integer codes"):
        pack_int4(torch.tensor([1.0, 2.0]))


def test_not_a_tensor_raises_type_error():
    with pytest.raises(TypeError, match="torch.Tensor"):
        pack_int4([1, 2])
    with pytest.raises(TypeError, match="torch.Tensor"):
        unpack_int4(np.zeros(2, dtype=np.uint8))


def test_unpack_wants_bytes():
    with pytest.raises(TypeError, match="torch.uint8"):
        unpack_int4(torch.tensor([1, 2], dtype=torch.int8))


def test_zero_dim_raises():
    with pytest.raises(ValueError, match="0-d"):
        pack_int4(torch.tensor(3))


# ------------------------------------------------------------------ the exercise checkers

from minicomp.grading import check, get_checker  # noqa: E402


@pytest.mark.parametrize("name", ["pack_int4", "unpack_int4"])
def test_each_known_mistake_is_named(name):
    """A learner who makes a listed mistake is told which one."""
    for mistake in get_checker(name).mistakes:
        report = check(name, mistake.fn)
        assert not report.passed
        assert report.hint == f"this looks like {mistake.name}. {mistake.hint}", mistake.name


def _lows_plus_highs(q):
    return (q[..., 0::2] + q[..., 1::2]).to(torch.uint8)


FURTHER_WRONG_PACKS = {
    "adds the two codes": _lows_plus_highs,
    "shifts by 3": lambda q: (q[..., 0::2] | (q[..., 1::2] << 3)).to(torch.uint8),
    "flattens the batch": lambda q: pack_int4(q.reshape(-1)),
    "returns the codes unpacked": lambda q: q.to(torch.uint8),
    "reverses the bytes": lambda q: pack_int4(q).flip(-1),
    "multiplies the low code by 16": lambda q: ((q[..., 0::2] << 4) | q[..., 1::2]).to(torch.uint8) + 0,
}

FURTHER_WRONG_UNPACKS = {
    "returns only the low nibbles": lambda p: p & 0x0F,
    "divides by 8 for the high nibble": lambda p: torch.stack((p & 15, p // 8), -1).flatten(-2),
    "concatenates along the first dimension": lambda p: torch.cat((p & 15, p >> 4), 0),
    "returns floats": lambda p: unpack_int4(p).float(),
    "returns int64": lambda p: unpack_int4(p).long(),
    "reverses the result": lambda p: unpack_int4(p).flip(-1),
}


@pytest.mark.parametrize("wrong", FURTHER_WRONG_PACKS.values(), ids=FURTHER_WRONG_PACKS.keys())
def test_further_wrong_packs_are_rejected(wrong):
    report = check("pack_int4", wrong)
    assert not report.passed and report.status == "failed"
    assert "Traceback" not in str(report)


@pytest.mark.parametrize("wrong", FURTHER_WRONG_UNPACKS.values(), ids=FURTHER_WRONG_UNPACKS.keys())
def test_further_wrong_unpacks_are_rejected(wrong):
    report = check("unpack_int4", wrong)
    assert not report.passed and report.status == "failed"
    assert "Traceback" not in str(report)


def test_library_functions_pass_their_checkers():
    assert check("pack_int4", pack_int4).passed
    assert check("unpack_int4", unpack_int4).passed
