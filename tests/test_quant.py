"""minicomp.quant: the affine map against hand-computed values, PyTorch's own ops, and properties."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minicomp.checks import check_finite
from minicomp.observers import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    make_observer,
)
from minicomp.quant import (
    QuantizedWeight,
    compute_qparams,
    dequantize,
    fake_quantize,
    mse_range,
    qparams_from_range,
    qrange,
    quantize,
    quantize_dequantize,
)

# ── hand-computed examples ───────────────────────────────────────────────────────────────────


def test_asymmetric_two_bit_by_hand():
    x = torch.tensor([-1.0, 0.0, 3.0])
    scale, zero = compute_qparams(x, bits=2)  # range [-1, 3], 3 steps -> scale 4/3, zero round(0.75) = 1
    assert scale.shape == () and zero.shape == ()
    assert scale.item() == pytest.approx(4 / 3)
    assert zero.item() == 1 and zero.dtype == torch.int32
    q = quantize(x, scale, zero, 0, 3)  # -0.75 -> -1 + 1 = 0;  0 -> 1;  2.25 -> 2 + 1 = 3
    assert q.tolist() == [0, 1, 3] and q.dtype == torch.int32
    assert torch.allclose(dequantize(q, scale, zero), torch.tensor([-4 / 3, 0.0, 8 / 3]))


def test_symmetric_four_bit_by_hand():
    x = torch.tensor([-1.75, 0.625, 0.875, 0.0])
    scale, zero = compute_qparams(x, bits=4, symmetric=True)  # max|x| / 7 = 0.25, zero 0
    assert scale.item() == 0.25 and zero.item() == 0
    assert qrange(4, symmetric=True) == (-8, 7)
    q = quantize(x, scale, zero, -8, 7)  # -7; 2.5 -> 2 (even); 3.5 -> 4 (even); 0
    assert q.tolist() == [-7, 2, 4, 0]
    assert dequantize(q, scale, zero).tolist() == [-1.75, 0.5, 1.0, 0.0]


def test_rounding_is_half_to_even_like_torch_round():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
    assert quantize(x, 1.0, 0, -8, 7).tolist() == [0, 2, 2, 0, -2, -2]
    assert torch.equal(quantize(x, 1.0, 0, -8, 7).float(), torch.round(x))


def test_clamp_and_zero_point_shift():
    x = torch.tensor([-10.0, -0.5, 0.0, 0.5, 10.0])
    assert quantize(x, 0.5, 3, 0, 7).tolist() == [0, 2, 3, 4, 7]  # round(x/0.5) + 3, clamped to [0, 7]


def test_per_channel_broadcast_by_hand():
    w = torch.tensor([[1.0, -2.0], [30.0, 10.0]])  # [out=2, in=2]
    scale, zero = compute_qparams(w, bits=8, symmetric=True, axis=0)
    assert scale.shape == (2, 1) and torch.allclose(scale, torch.tensor([[2 / 127], [30 / 127]]))
    q = quantize(w, scale, zero, -128, 127)
    assert q.tolist() == [[64, -127], [127, 42]]  # 63.5 -> 64 (ties to even), 42.33 -> 42


def test_per_group_shapes_and_values():
    w = torch.arange(12.0).reshape(2, 6)  # [out=2, in=6], groups of 3 along the input
    scale, zero = compute_qparams(w, bits=8, group_size=3)
    assert scale.shape == (2, 2)
    expected_hi = torch.tensor([[2.0, 5.0], [8.0, 11.0]])  # each group's max (its min is >= 0 -> 0)
    assert torch.allclose(scale, expected_hi / 255)
    x_hat = dequantize(quantize(w, scale, zero, 0, 255, group_size=3), scale, zero, group_size=3)
    assert torch.allclose(x_hat, w, atol=6 / 255)
    s_row, _ = compute_qparams(w, bits=8, group_size=-1)  # -1: one group per row = per-channel
    s_ax, _ = compute_qparams(w, bits=8, axis=0)
    assert torch.equal(s_row, s_ax)


def test_range_includes_zero_for_positive_data():
    x = torch.tensor([2.0, 3.0, 4.0])  # post-ReLU-like: the range is widened to [0, 4]
    scale, zero = compute_qparams(x, bits=8)
    assert zero.item() == 0 and scale.item() == pytest.approx(4 / 255)
    x = torch.tensor([-4.0, -2.0])  # all negative: [-4, 0], zero at the top code
    scale, zero = compute_qparams(x, bits=8)
    assert zero.item() == 255


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("value", [0.0, 5.0, -3.0, 1e-30])
def test_constant_tensors_are_safe(value, symmetric):
    x = torch.full((4, 6), value)
    for kwargs in ({}, {"axis": 0}, {"group_size": 3}):
        scale, zero = compute_qparams(x, 8, symmetric, **kwargs)
        assert torch.isfinite(scale).all() and (scale > 0).all()
        qmin, qmax = qrange(8, symmetric)
        g = kwargs.get("group_size")
        x_hat = dequantize(quantize(x, scale, zero, qmin, qmax, group_size=g), scale, zero, group_size=g)
        assert torch.isfinite(x_hat).all()
        assert torch.allclose(x_hat, x, rtol=1e-5, atol=1e-30)
    if value == 0.0:
        assert compute_qparams(x, 8, symmetric)[0].item() == 1.0


# ── bad input ────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("bits", [1, 9, 0, 16, 4.0, True, "4"])
def test_bits_outside_2_to_8(bits):
    with pytest.raises(ValueError, match="bits="):
        compute_qparams(torch.randn(4), bits)


def test_group_size_must_divide():
    with pytest.raises(ValueError, match="group_size=100 must divide in_features=384"):
        compute_qparams(torch.randn(8, 384), 4, group_size=100)
    with pytest.raises(ValueError, match="group_size=100 must divide in_features=384"):
        quantize(torch.randn(8, 384), torch.ones(8, 3), torch.zeros(8, 3, dtype=torch.int32), 0, 15, group_size=100)
    with pytest.raises(ValueError, match="axis"):
        compute_qparams(torch.randn(8, 4), 4, axis=0, group_size=2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_refused(bad):
    x = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        compute_qparams(x, 8)
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        quantize(x, 0.1, 0, 0, 255)


def test_bad_qrange_scale_and_zero_point():
    x = torch.randn(5)
    with pytest.raises(ValueError, match="qmin=5 must be smaller than qmax=5"):
        quantize(x, 0.1, 0, 5, 5)
    with pytest.raises(ValueError, match="scale must be positive"):
        quantize(x, 0.0, 0, 0, 255)
    with pytest.raises(ValueError, match="scale must be positive"):
        dequantize(torch.tensor([1, 2]), torch.tensor([-0.1]), 0)
    with pytest.raises(ValueError, match="zero_point must hold integers"):
        quantize(x, 0.1, torch.tensor(3.5), 0, 255)
    with pytest.raises(ValueError, match="does not broadcast"):
        quantize(torch.randn(4, 3), torch.ones(3, 1), 0, 0, 255)
    with pytest.raises(TypeError, match="floating-point"):
        quantize(torch.tensor([1, 2]), 0.1, 0, 0, 255)


# ── agreement with PyTorch's own ops ─────────────────────────────────────────────────────────


CONFIGS = [(0, 255, 0), (0, 255, 131), (-128, 127, 0), (0, 15, 8), (-8, 7, 0), (0, 3, 1), (-2, 1, -1)]


@pytest.mark.parametrize("qmin,qmax,zero", CONFIGS)
@pytest.mark.parametrize("scale", [2.0**-4, 2.0**-7, 1.0])
def test_matches_torch_fake_quantize_per_tensor_exactly(qmin, qmax, zero, scale):
    """Power-of-two scales make x / s and torch's x * (1 / s) identical, ties included."""
    g = torch.Generator().manual_seed(qmax + zero)
    x = torch.randn(4000, generator=g) * scale * (qmax - qmin) / 3
    x = torch.cat([x, torch.arange(-40, 40) * 0.5 * scale])  # exact ties, half to even
    ours = dequantize(quantize(x, scale, zero, qmin, qmax), scale, zero)
    theirs = torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)
    assert torch.equal(ours, theirs)
    ff = fake_quantize(x, torch.tensor(scale), zero, qmin, qmax)
    assert torch.equal(ff, theirs)


@pytest.mark.parametrize("qmin,qmax,zero", CONFIGS)
def test_matches_torch_fake_quantize_per_tensor_with_any_scale(qmin, qmax, zero):
    """Any scale: torch multiplies by 1/s, so the two may differ by one step, only next to a tie."""
    g = torch.Generator().manual_seed(7)
    scale = 0.0371
    x = torch.randn(20000, generator=g) * 0.3 * (qmax - qmin) * scale
    ours = dequantize(quantize(x, scale, zero, qmin, qmax), scale, zero)
    theirs = torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)
    differ = ours != theirs
    near_tie = ((x / scale) - (x / scale).floor() - 0.5).abs() < 1e-4
    assert torch.allclose(ours, theirs, atol=scale * 1.0001, rtol=0)
    assert not (differ & ~near_tie).any()
    assert differ.float().mean() < 1e-3


@pytest.mark.parametrize("axis", [0, 1])
def test_matches_torch_fake_quantize_per_channel(axis):
    g = torch.Generator().manual_seed(axis)
    x = torch.randn(6, 50, generator=g) * 3
    x[2] = 0.0  # an all-zero channel
    scale, zero = compute_qparams(x, bits=4, axis=axis)  # [6, 1] or [1, 50]
    ours = dequantize(quantize(x, scale, zero, 0, 15), scale, zero)
    theirs = torch.fake_quantize_per_channel_affine(x, scale.flatten(), zero.flatten(), axis, 0, 15)
    assert torch.allclose(ours, theirs, atol=scale.max().item() * 1.0001, rtol=0)
    assert (ours == theirs).float().mean() > 0.999
    p2 = torch.full_like(scale, 2.0**-3)  # power-of-two scales: identical element by element
    assert torch.equal(dequantize(quantize(x, p2, zero, 0, 15), p2, zero),
                       torch.fake_quantize_per_channel_affine(x, p2.flatten(), zero.flatten(), axis, 0, 15))


def test_straight_through_gradient_matches_torch():
    x = torch.linspace(-3, 3, 101, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    weights = torch.linspace(0.5, 2, 101)
    (fake_quantize(x, 0.03125, 10, 0, 63) * weights).sum().backward()
    (torch.fake_quantize_per_tensor_affine(x_ref, 0.03125, 10, 0, 63) * weights).sum().backward()
    assert torch.equal(x.grad, x_ref.grad)
    assert (x.grad == 0).any() and (x.grad == weights).any()  # clipped outside, passed inside


def test_qparams_match_torch_observers():
    from torch.ao.quantization import MinMaxObserver as TorchMinMax
    from torch.ao.quantization import PerChannelMinMaxObserver as TorchPerChannel

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 40, generator=g) * torch.rand(16, 1, generator=g) * 4 + 0.3
    obs = TorchMinMax(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    obs(x)
    s_t, z_t = obs.calculate_qparams()
    s, z = compute_qparams(x, bits=8)
    assert torch.allclose(s, s_t.squeeze(), rtol=1e-6) and z.item() == z_t.item()
    obs = TorchMinMax(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-127, quant_max=127)
    obs(x)  # torch's symmetric scale is max|x| / ((qmax - qmin) / 2): ours when qmin = -qmax
    s_t, z_t = obs.calculate_qparams()
    s, z = compute_qparams(x, bits=8, symmetric=True)
    assert torch.allclose(s, s_t.squeeze(), rtol=1e-6) and z.item() == z_t.item() == 0
    obs = TorchPerChannel(ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine)
    obs(x)
    s_t, z_t = obs.calculate_qparams()
    s, z = compute_qparams(x, bits=8, axis=0)
    assert torch.allclose(s.flatten(), s_t, rtol=1e-6) and torch.equal(z.flatten(), z_t.to(torch.int32))


# ── properties ───────────────────────────────────────────────────────────────────────────────


@st.composite
def tensors_and_settings(draw):
    rows, cols_per_group, groups = draw(st.integers(1, 5)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    offset = draw(st.sampled_from([0.0, 1.0, -5.0]))
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, cols_per_group * groups, generator=g) + offset) * magnitude
    bits = draw(st.integers(2, 8))
    symmetric = draw(st.booleans())
    granularity = draw(st.sampled_from(["tensor", "channel", "group"]))
    kwargs = {"tensor": {}, "channel": {"axis": 0}, "group": {"group_size": cols_per_group}}[granularity]
    return x, bits, symmetric, kwargs


@settings(max_examples=200, deadline=None)
@given(tensors_and_settings())
def test_round_trip_error_is_at_most_half_a_step(case):
    x, bits, symmetric, kwargs = case
    scale, zero = compute_qparams(x, bits, symmetric, **kwargs)
    g = kwargs.get("group_size")
    qmin, qmax = qrange(bits, symmetric)
    q = quantize(x, scale, zero, qmin, qmax, group_size=g)
    assert q.min() >= qmin and q.max() <= qmax
    x_hat = dequantize(q, scale, zero, group_size=g)
    step = scale if g is None else scale.repeat_interleave(g, dim=-1)
    assert ((x_hat - x).abs() <= step / 2 * (1 + 1e-5) + 1e-30).all()  # min-max range: nothing clips
    zero_hat = dequantize(zero, scale, zero)  # the code `zero` stands for exactly 0.0
    assert torch.equal(zero_hat, torch.zeros_like(zero_hat))


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 8), st.booleans(), st.floats(1e-3, 10.0), st.integers(0, 1000))
def test_outside_the_range_values_clip_to_the_ends(bits, symmetric, spread, seed):
    x = torch.randn(200, generator=torch.Generator().manual_seed(seed)) * spread
    scale, zero = compute_qparams(x, bits, symmetric)
    qmin, qmax = qrange(bits, symmetric)
    lo, hi = (qmin - zero) * scale, (qmax - zero) * scale  # the representable range
    # the rounded zero point may shift the grid by up to half a step, never more
    inside = (x >= lo - scale / 2 * 1.0001) & (x <= hi + scale / 2 * 1.0001)
    assert inside.all()
    far = torch.cat([x.max()[None] + 100 * spread, x.min()[None] - 100 * spread])
    x_hat = dequantize(quantize(far, scale, zero, qmin, qmax), scale, zero)
    assert torch.allclose(x_hat, torch.stack([hi, lo]))


def test_fake_quantize_and_quantize_dequantize_agree():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 32, generator=g)
    s, z = compute_qparams(w, 4, group_size=8)
    assert torch.equal(quantize_dequantize(w, 4, group_size=8), fake_quantize(w, s, z, 0, 15, group_size=8))
    # per group == per channel on each group's columns
    manual = torch.cat([quantize_dequantize(w[:, i:i + 8], 4, axis=0) for i in range(0, 32, 8)], dim=1)
    assert torch.allclose(quantize_dequantize(w, 4, group_size=8), manual)


def test_mse_clipping_never_worse_than_min_max_and_helps_with_outliers():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 4096, generator=g)
    x[:, 0] = 40.0  # one large outlier per row
    err = lambda **kw: (quantize_dequantize(x, 4, axis=0, **kw) - x).pow(2).sum(dim=1)
    assert (err(clip="mse") <= err(clip="minmax") + 1e-6).all()
    assert err(clip="mse").sum() < 0.5 * err(clip="minmax").sum()
    lo, hi = mse_range(x, 4)
    assert (hi < 40.0).all() and (lo >= x.amin(dim=1)).all()


# ── QuantizedWeight ──────────────────────────────────────────────────────────────────────────


def test_quantized_weight_dequantize_and_bytes_by_hand():
    codes = torch.tensor([[0, 1, 2, 3], [3, 3, 0, 0]])
    scale = torch.tensor([[1.0, 0.5], [2.0, 0.25]])  # [out=2, groups=2], group_size=2
    zero = torch.tensor([[1, 0], [2, 1]])
    qw = QuantizedWeight(codes, scale, zero, bits=2, group_size=2)
    assert qw.dequantize().tolist() == [[-1.0, 0.0, 1.0, 1.5], [2.0, 2.0, -0.25, -0.25]]
    assert qw.codes.dtype == torch.uint8 and qw.zero.dtype == torch.uint8
    # 8 codes x 2 bits = 2 bytes; 4 float32 scales = 16 bytes; 4 zeros x 2 bits = 1 byte
    assert qw.nbytes == 2 + 16 + 1
    assert qw.bits_per_weight == pytest.approx(8 * 19 / 8)
    sym = QuantizedWeight(codes, scale.half(), torch.full((2, 2), 2), bits=2, group_size=2, symmetric=True)
    assert sym.nbytes == 2 + 8  # fp16 scales, no stored zeros


def test_quantized_weight_permutation():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(3, 8, generator=g)
    perm = torch.randperm(8, generator=g)
    s, z = compute_qparams(w[:, perm], 8, group_size=4)
    codes = quantize(w[:, perm], s, z, 0, 255, group_size=4)
    qw = QuantizedWeight(codes, s, z, 8, 4, perm=perm)
    assert torch.allclose(qw.dequantize(), w, atol=s.max().item() / 2 + 1e-6)  # original order back
    assert qw.nbytes == 24 + 6 * 4 + 6 + 8 * 8


def test_quantized_weight_validation():
    codes, s, z = torch.zeros(2, 4, dtype=torch.int32), torch.ones(2, 2), torch.zeros(2, 2)
    with pytest.raises(ValueError, match="group_size=3 must divide in_features=4"):
        QuantizedWeight(codes, s, z, 4, 3)
    with pytest.raises(ValueError, match="codes must lie in"):
        QuantizedWeight(codes + 16, s, z, 4, 2)
    with pytest.raises(ValueError, match="scale and zero must have shape"):
        QuantizedWeight(codes, torch.ones(2, 1), z, 4, 2)
    with pytest.raises(ValueError, match="bits=9"):
        QuantizedWeight(codes, s, z, 9, 2)
    with pytest.raises(ValueError, match="scale must be positive"):
        QuantizedWeight(codes, -s, z, 4, 2)
    with pytest.raises(ValueError, match="perm"):
        QuantizedWeight(codes, s, z, 4, 2, perm=torch.tensor([0, 0, 1, 2]))
    # symmetric: nbytes stores no zeros, so they must all be the middle code 2^(bits-1)
    QuantizedWeight(codes, s, torch.full((2, 2), 8), 4, 2, symmetric=True)
    with pytest.raises(ValueError, match=r"symmetric=True needs every zero to be 2\^\(bits-1\) = 8.*\[3, 8\]"):
        QuantizedWeight(codes, s, torch.tensor([[3, 8], [8, 8]]), 4, 2, symmetric=True)


# ── observers ────────────────────────────────────────────────────────────────────────────────


def _batches(seed=0, n=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(32, 16, generator=g) * (i + 1) for i in range(n)]


def test_min_max_observer_sees_every_batch():
    obs = MinMaxObserver(bits=8)
    for b in _batches():
        assert obs(b) is b
    everything = torch.cat(_batches())
    lo, hi = obs.range()
    assert lo == everything.min() and hi == everything.max()
    assert torch.allclose(obs.qparams()[0], compute_qparams(everything, 8)[0])


def test_moving_average_observer_formula():
    obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    obs(torch.tensor([-1.0, 1.0]))
    obs(torch.tensor([-3.0, 5.0]))  # lo = -1 + 0.5 (-3 + 1) = -2, hi = 1 + 0.5 (5 - 1) = 3
    lo, hi = obs.range()
    assert lo.item() == -2.0 and hi.item() == 3.0


def test_percentile_observer_clips_a_rare_outlier():
    x = torch.linspace(-1, 1, 100_001)
    x[5] = 500.0
    obs = PercentileObserver(percentile=99.9)
    obs(x)
    lo, hi = obs.range()
    assert hi < 1.0 and lo > -1.0 and lo < -0.99
    full = PercentileObserver(percentile=100.0)
    full(x)
    assert full.range()[1].item() == 500.0


def test_mse_observer_has_lower_error_than_min_max_on_heavy_tails():
    g = torch.Generator().manual_seed(4)
    # Student-t with 2 degrees of freedom, heavy tails: z / sqrt(chi2_2 / 2), chi2_2 = -2 log(u)
    data = [torch.randn(4096, generator=g) / torch.sqrt(-torch.log(torch.rand(4096, generator=g)))
            for _ in range(3)]
    errs = {}
    for kind in ("minmax", "mse"):
        obs = make_observer(kind, bits=4)
        for d in data:
            obs(d)
        s, z = obs.qparams()
        x = torch.cat(data)
        errs[kind] = (dequantize(quantize(x, s, z, 0, 15), s, z) - x).pow(2).mean().item()
    assert errs["mse"] < errs["minmax"]


def test_mse_observer_keeps_an_early_outlier():
    obs = MSEObserver(bits=8, max_samples=64)  # 61 batches of 1000 values: most values are dropped
    first = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    first[500] = 50.0
    obs(first)
    for i in range(60):
        obs(torch.randn(1000, generator=torch.Generator().manual_seed(i + 1)))
    assert obs.range()[1].item() == 50.0  # at 8 bits, clipping it would cost more than it saves
    assert obs.samples.numel() == 64


def test_mse_observer_samples_every_batch_alike_and_repeatably():
    def observe(seed=0):
        obs = MSEObserver(bits=8, seed=seed)  # keeps 65536 of 64 × 20000 values
        for b in range(64):
            obs(b + torch.rand(20_000, generator=torch.Generator().manual_seed(b)))  # batch b: values in [b, b + 1)
        return obs

    obs = observe()
    per_batch = torch.bincount(obs.samples.floor().long(), minlength=64).float()  # [64]
    assert per_batch.min() > 0.75 * 1024 and per_batch.max() < 1.25 * 1024  # 65536 / 64 = 1024 each
    assert torch.equal(observe().samples, obs.samples)  # the same batches, the same sample
    assert not torch.equal(observe(seed=1).samples, obs.samples)


def test_observer_errors():
    with pytest.raises(ValueError, match="no data"):
        MinMaxObserver().qparams()
    with pytest.raises(ValueError, match="kind='median' is not one of 'minmax'"):   # (make_observer's argument)
        make_observer("median")
    with pytest.raises(ValueError, match="x contains NaN"):
        MinMaxObserver()(torch.tensor([float("nan")]))
    assert "MinMaxObserver" in repr(MinMaxObserver())


def test_qparams_from_range_matches_compute_qparams():
    lo, hi = torch.tensor([-1.0, 0.5]), torch.tensor([2.0, 4.0])
    s, z = qparams_from_range(lo, hi, 8)
    assert torch.allclose(s, torch.tensor([3.0, 4.0]) / 255)  # the second range widens to [0, 4]
    assert z.tolist() == [round(255 / 3), 0]
    assert math.isclose(qparams_from_range(torch.tensor(-2.0), torch.tensor(1.0), 4, True)[0].item(), 2 / 7, rel_tol=1e-6)


def test_qparams_from_range_rejects_a_reversed_range():
    with pytest.raises(ValueError, match=r"lo must be ≤ hi .*got lo=1 > hi=-1"):
        qparams_from_range(1.0, -1.0, 8)
    with pytest.raises(ValueError, match=r"lo=3 > hi=1 \(1 of 2 ranges reversed\)"):
        qparams_from_range(torch.tensor([-1.0, 3.0]), torch.tensor([2.0, 1.0]), 8)
    assert qparams_from_range(0.5, 0.5, 8)[0].item() == pytest.approx(0.5 / 255)  # lo = hi is a range


def test_check_finite_checks_only_the_type_of_a_meta_tensor():
    check_finite("x", torch.empty(3, 4, device="meta"))  # no values to look at: no error
    with pytest.raises(TypeError, match="x must be a floating-point"):
        check_finite("x", torch.empty(3, dtype=torch.int64, device="meta"))
    with pytest.raises(ValueError, match="x contains NaN"):
        check_finite("x", torch.tensor([1.0, float("inf")]))


@settings(max_examples=100, deadline=None)
@given(st.integers(-128, 0), st.integers(1, 255), st.integers(-10, 2), st.data())
def test_any_power_of_two_grid_matches_torch_exactly(qmin, width, log2_scale, data):
    qmax = qmin + width
    zero = data.draw(st.integers(qmin, qmax))
    scale = 2.0**log2_scale
    seed = data.draw(st.integers(0, 2**31 - 1))
    x = torch.randn(500, generator=torch.Generator().manual_seed(seed)) * scale * width
    x = torch.cat([x, (torch.arange(-20, 20) + 0.5) * scale])  # exact ties
    ours = fake_quantize(x, torch.tensor(scale), zero, qmin, qmax)
    assert torch.equal(ours, torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax))


def test_zero_point_outside_the_codes_and_ranges_that_do_not_broadcast_are_refused():
    x = torch.randn(4, 8)
    for fn in (quantize, fake_quantize):
        with pytest.raises(ValueError, match=r"zero_point must lie in \[qmin, qmax\] = \[0, 15\] .* from 100 to 100"):
            fn(x, 0.1, 100, 0, 15)
    with pytest.raises(ValueError, match=r"lo has shape \(3,\) and hi \(4,\): they must broadcast"):
        qparams_from_range(torch.zeros(3), torch.ones(4), 8)
