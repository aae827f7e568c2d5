"""minicomp.rtn: round-to-nearest weights, QuantLinear (weight-only and W8A8) and QAT."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minicomp.observers import MinMaxObserver
from minicomp.quant import (
    compute_qparams,
    dequantize,
    quantize,
    quantize_dequantize,
)
from minicomp.rtn import QATLinear, QuantLinear, convert_qat, prepare_qat, rtn_quantize


def _w(out=8, n_in=32, seed=0):
    return torch.randn(out, n_in, generator=torch.Generator().manual_seed(seed))


def test_rtn_matches_compute_qparams_and_quantize():
    w = _w()
    qw = rtn_quantize(w, bits=4, group_size=8)
    s, z = compute_qparams(w, 4, group_size=8)
    assert torch.equal(qw.scale, s) and torch.equal(qw.zero.to(torch.int32), z)
    assert torch.equal(qw.codes.to(torch.int32), quantize(w, s, z, 0, 15, group_size=8))
    assert torch.equal(qw.dequantize(), dequantize(quantize(w, s, z, 0, 15, group_size=8), s, z, group_size=8))
    assert qw.shape == (8, 32) and qw.n_groups == 4 and qw.group_size == 8


def test_rtn_per_channel_is_one_group_per_row():
    w = _w()
    qw = rtn_quantize(w, bits=8, group_size=-1)
    assert qw.group_size == 32 and qw.scale.shape == (8, 1)
    assert torch.allclose(qw.dequantize(), quantize_dequantize(w, 8, axis=0))


def test_rtn_symmetric_codes_are_stored_unsigned():
    w = _w()
    qw = rtn_quantize(w, bits=4, group_size=16, symmetric=True)
    assert qw.codes.dtype == torch.uint8 and qw.codes.max() <= 15
    assert (qw.zero == 8).all()  # signed [-8, 7] stored as [0, 15] with zero point 8
    assert torch.allclose(qw.dequantize(), quantize_dequantize(w, 4, True, group_size=16))
    assert qw.nbytes == 8 * 32 // 2 + 8 * 2 * 4  # codes + float32 scales, no zeros


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.sampled_from([-1, 4, 8, 16]), st.booleans(), st.integers(0, 10_000))
def test_rtn_error_at_most_half_a_step(bits, group_size, symmetric, seed):
    w = _w(6, 16, seed) * 0.05
    qw = rtn_quantize(w, bits, group_size, symmetric)
    step = qw.scale.repeat_interleave(qw.group_size, dim=1)  # [out, in]
    assert ((qw.dequantize() - w).abs() <= step / 2 * (1 + 1e-5)).all()


def test_rtn_with_fp16_scales_counts_two_bytes_per_scale():
    w = _w(16, 128)
    q32, q16 = rtn_quantize(w, 4, 32), rtn_quantize(w, 4, 32, scale_dtype=torch.float16)
    assert q16.scale.dtype == torch.float16
    assert q32.nbytes - q16.nbytes == 16 * 4 * 2  # 64 scales, 2 bytes saved each
    step = q16.scale.float().repeat_interleave(32, dim=1)
    assert ((q16.dequantize() - w).abs() <= step / 2 * (1 + 1e-3)).all()
    assert q16.bits_per_weight == pytest.approx(4 + (16 + 4) / 32)


def test_rtn_bad_input():
    with pytest.raises(ValueError, match="expected a weight matrix"):
        rtn_quantize(torch.randn(8), 4)
    with pytest.raises(ValueError, match="group_size=5 must divide in_features=32"):
        rtn_quantize(_w(), 4, 5)
    with pytest.raises(ValueError, match="w contains NaN"):
        rtn_quantize(torch.full((2, 4), float("nan")), 4)
    with pytest.raises(ValueError, match="bits=1"):
        rtn_quantize(_w(), 1)
    with pytest.raises(TypeError, match="scale_dtype=torch.int8 must be a floating-point torch.dtype"):
        rtn_quantize(_w(), 4, scale_dtype=torch.int8)
    with pytest.raises(TypeError, match="scale_dtype='float16'"):
        rtn_quantize(_w(), 4, scale_dtype="float16")


def test_quant_linear_weight_only_equals_linear_with_dequantized_weight():
    torch.manual_seed(0)
    lin = nn.Linear(32, 8)
    ql = QuantLinear.from_linear(lin, bits=4, group_size=16)
    x = torch.randn(3, 5, 32)
    w_hat = rtn_quantize(lin.weight, 4, 16).dequantize()
    assert torch.allclose(ql(x), F.linear(x, w_hat, lin.bias), atol=1e-6)
    assert torch.allclose(ql.weight, w_hat)
    assert ql.act_mode == "none" and "bits=4" in repr(ql)
    ql8 = QuantLinear.from_linear(lin, bits=8, group_size=-1)
    assert torch.allclose(ql8(x), lin(x), atol=0.02)  # 8-bit is close to float


def test_quant_linear_dynamic_w8a8_quantizes_each_token():
    torch.manual_seed(1)
    lin = nn.Linear(16, 4)
    ql = QuantLinear.from_linear(lin, bits=8, act_bits=8)
    x = torch.randn(2, 3, 16)
    x_hat = torch.stack([torch.stack([quantize_dequantize(tok, 8) for tok in seq]) for seq in x])
    expected = F.linear(x_hat, ql.weight, lin.bias)
    assert ql.act_mode == "dynamic"
    assert torch.allclose(ql(x), expected, atol=1e-6)


def test_quant_linear_static_w8a8_uses_the_calibrated_range():
    torch.manual_seed(2)
    lin = nn.Linear(16, 4)
    obs = MinMaxObserver(bits=8)
    for _ in range(3):
        obs(torch.randn(10, 16))
    s, z = obs.qparams()
    ql = QuantLinear.from_linear(lin, bits=8, act_bits=8, act_scale=s, act_zero=z)
    assert ql.act_mode == "static"
    x = torch.randn(4, 16) * 10  # beyond the calibrated range: clipped
    x_hat = dequantize(quantize(x, s, z, 0, 255), s, z)
    assert torch.allclose(ql(x), F.linear(x_hat, ql.weight, lin.bias), atol=1e-5)
    assert x_hat.max() < x.max()
    with pytest.raises(ValueError, match="act_zero"):
        QuantLinear.from_linear(lin, bits=8, act_bits=8, act_scale=s)
    for zero, symmetric in ((256, False), (-1, False), (128, True)):  # codes [0, 255] or [-128, 127]
        with pytest.raises(ValueError, match=rf"act_zero={zero} must lie in \[-?\d+, \d+\]"):
            QuantLinear.from_linear(lin, bits=8, act_bits=8, act_scale=s, act_zero=zero, act_symmetric=symmetric)
    QuantLinear.from_linear(lin, bits=8, act_bits=8, act_scale=s, act_zero=-128, act_symmetric=True)  # the edge
    with pytest.raises(ValueError, match=r"act_scale must be a single value .* got shape \(3,\)"):
        QuantLinear.from_linear(lin, bits=8, act_bits=8, act_scale=torch.ones(3), act_zero=torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"act_zero must be a single value"):
        QuantLinear.from_linear(lin, bits=8, act_bits=8, act_scale=s, act_zero=torch.zeros(16, dtype=torch.int32))


def test_quant_linear_memory_buffers_and_state_dict_round_trip():
    lin = nn.Linear(64, 16)
    ql = QuantLinear.from_linear(lin, bits=4, group_size=32)
    names = dict(ql.named_buffers())
    assert names["codes"].dtype == torch.uint8 and names["codes"].shape == (16, 64)
    other = QuantLinear.from_linear(nn.Linear(64, 16), bits=4, group_size=32)
    other.load_state_dict(ql.state_dict())
    x = torch.randn(2, 64)
    assert torch.equal(other(x), ql(x))


def test_qat_linear_forward_and_straight_through_gradient():
    torch.manual_seed(3)
    lin = nn.Linear(16, 4)
    qat = QATLinear.from_linear(lin, bits=2, group_size=8)
    x = torch.randn(5, 16)
    w_hat = quantize_dequantize(lin.weight.detach(), 2, group_size=8)
    assert torch.allclose(qat(x), F.linear(x, w_hat, lin.bias), atol=1e-6)
    qat(x).sum().backward()
    # STE: d/dW of sum(x fq(W)^T) is the same as for a float layer (min-max never clips the weights)
    expected = torch.ones(5, 4).T @ x
    assert torch.allclose(qat.weight.grad, expected, atol=1e-5)


def test_qat_linear_checks_group_size_up_front():
    # checked where it is given, not first when convert_qat calls rtn_quantize after training
    for bad in (None, 0, 2.0, True):
        with pytest.raises(ValueError, match=f"group_size={bad!r} must be a positive int"):
            QATLinear(16, 4, group_size=bad)
    with pytest.raises(ValueError, match="group_size=5 must divide in_features=16"):
        QATLinear(16, 4, group_size=5)
    with pytest.raises(ValueError, match="group_size=None"):
        prepare_qat(nn.Sequential(nn.Linear(16, 4)), 4, group_size=None)


def test_qat_trains_and_converts_to_the_same_function():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(256, 8, generator=g)
    teacher = torch.randn(3, 8, generator=g)
    y = x @ teacher.T
    model = nn.Sequential(nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight.copy_(teacher + 0.3 * torch.randn(3, 8, generator=g))
    prepare_qat(model, bits=3, group_size=-1)
    assert isinstance(model[0], QATLinear)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        before = model(x)
    convert_qat(model)
    assert isinstance(model[0], QuantLinear) and model[0].bits == 3
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-5)
