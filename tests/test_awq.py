"""minicomp.awq: the scale search, clipping, AWQLinear and quantize_model(method="awq")."""

import math

import pytest
import torch

from minicomp.awq import (
    AWQLinear,
    activation_scales,
    awq_quantize,
    awq_search_clip,
    awq_search_scale,
    output_error,
)
from minicomp.calibrate import quantize_model
from minicomp.gptq import input_hessian
from minicomp.models import GPTConfig, TinyGPT
from minicomp.rtn import rtn_quantize


def _layer(out=32, n_in=128, tokens=512, seed=0, outliers=4):
    """W [out, in] and X [tokens, in] in which a few channels are much louder (salient)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n_in, generator=g) * 0.1
    X = torch.randn(tokens, n_in, generator=g)
    X[:, :outliers] *= 20.0
    return W, X


def _err(W, W_hat, X):
    return ((X @ (W - W_hat).T) ** 2).sum().item()


def test_activation_scales_is_mean_abs():
    x = torch.tensor([[1.0, -2.0], [-3.0, 0.0]])
    assert torch.equal(activation_scales([x[:1], x[1:]]), torch.tensor([2.0, 1.0]))


def test_output_error_through_hessian_equals_direct():
    W, X = _layer(seed=1)
    W_hat = rtn_quantize(W, 4, 32).dequantize()
    n = X.shape[0]
    assert output_error(W, W_hat, input_hessian([X])).item() == pytest.approx(_err(W, W_hat, X) / n, rel=1e-4)


def test_alpha_zero_is_rtn_and_search_never_loses_to_it():
    W, X = _layer(seed=2)
    H = input_hessian([X])
    s, curve = awq_search_scale(W, activation_scales([X]), H, 4, 32)
    assert len(curve) == 20 and curve[0][0] == 0.0 and all(0 <= a < 1 for a, _ in curve)
    rtn = output_error(W, rtn_quantize(W, 4, 32).dequantize(), H).item()
    assert curve[0][1] == pytest.approx(rtn, rel=1e-5)  # α = 0: s = 1, plain RTN
    assert min(e for _, e in curve) <= rtn
    assert s.shape == (128,) and (s > 0).all()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("bits,group_size", [(4, 32), (3, -1)])
def test_awq_beats_rtn_on_salient_channels(seed, bits, group_size):
    W, X = _layer(seed=seed)
    qw, s = awq_quantize(W, [X], bits, group_size)
    W_hat = qw.dequantize() / s  # the layer computes (x / s) Q(W s)ᵀ
    assert _err(W, W_hat, X) < _err(W, rtn_quantize(W, bits, group_size).dequantize(), X)


def test_clip_search_never_worse_than_minmax_per_group():
    W, X = _layer(seed=3)
    H = input_hessian([X])
    r = awq_search_clip(W, H, 4, 32)
    assert r.shape == (32, 4) and (r <= 1).all() and (r >= 0.5).all()
    qw, s = awq_quantize(W, [X], 4, 32, clip=True)
    qn, sn = awq_quantize(W, [X], 4, 32, clip=False)
    assert torch.equal(s, sn)
    assert output_error(W, qw.dequantize() / s, H) <= output_error(W, qn.dequantize() / sn, H) * (1 + 1e-5)


def test_awq_linear_is_exact_in_float():
    W, X = _layer(seed=4)
    qw, s = awq_quantize(W, [X], 8, 32)
    layer = AWQLinear(qw, s, torch.zeros(32))
    assert torch.allclose(layer(X), X @ layer.weight.T, atol=1e-3)
    assert torch.allclose(layer.weight, W, atol=0.02)
    with pytest.raises(ValueError, match="input_scale"):
        AWQLinear(qw, s[:5])


def test_bad_input():
    W, X = _layer()
    with pytest.raises(ValueError, match="group_size=96 must divide in_features=128"):
        awq_quantize(W, [X], 4, 96)
    with pytest.raises(ValueError, match="inputs is empty"):
        awq_quantize(W, [], 4, 32)
    with pytest.raises(ValueError, match="in_features=128"):
        awq_quantize(W, [X[:, :64]], 4, 32)


def test_quantize_model_awq_on_tinygpt():
    gpt = TinyGPT(GPTConfig(n_layer=1, n_embd=128, n_head=4, block_size=32), seed=0).eval()
    calib = [torch.randint(0, 96, (4, 32), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    x = torch.randint(0, 96, (4, 32), generator=torch.Generator().manual_seed(9))
    ref = gpt(x)[0]
    quantize_model(gpt, "awq", bits=4, group_size=128, calibration=calib, progress=False)
    layers = [m for m in gpt.modules() if isinstance(m, AWQLinear)]
    assert len(layers) == 4
    assert math.isfinite((gpt(x)[0] - ref).abs().max().item())


def test_exercise_transcription_is_the_library_search():
    from minicomp.checkers.awq import _cases, reference, search

    for case in _cases():
        assert torch.allclose(search(*case.args), reference(*case.args), rtol=1e-5)
