"""minicomp.awq: the scale search, clipping, AWQLinear and quantize_model(method="awq")."""

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minicomp.awq import (
    AWQLinear,
    PackedAWQLinear,
    activation_scales,
    awq_quantize,
    awq_search_clip,
    awq_search_scale,
    fold_awq_scales,
    output_error,
)
from minicomp.calibrate import _head, quantize_model
from minicomp.gptq import input_hessian
from minicomp.kernels import PackedLinear
from minicomp.models import GPTConfig, TinyGPT, load_pretrained
from minicomp.rtn import QuantLinear, rtn_quantize


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
    with pytest.raises(TypeError, match="inputs must be a"):
        awq_quantize(W, 3, 4, 32)
    H = input_hessian([X])
    for bad in (torch.ones(1), torch.ones(32), torch.ones(128, 1)):  # a number, [out], [in, 1]
        with pytest.raises(ValueError, match=r"x_scale has shape .*; expected \[in\] = \[128\]"):
            awq_search_scale(W, bad, H, 4, 32)
    for search in (lambda h: awq_search_scale(W, activation_scales([X]), h, 4, 32),
                   lambda h: awq_search_clip(W, h, 4, 32)):
        for bad in (torch.eye(32), torch.eye(256)):  # smaller and larger than [in, in]
            with pytest.raises(ValueError, match=r"hessian has shape .*; expected \[in, in\] = \[128, 128\]"):
                search(bad)


def test_awq_quantize_takes_inputs_from_a_generator():
    W, X = _layer()
    batches = [X[:256], X[256:]]
    qw, s = awq_quantize(W, (x for x in batches), 4, 32)  # used up by the first pass over it
    qw_list, s_list = awq_quantize(W, batches, 4, 32)
    assert torch.equal(s, s_list) and torch.equal(qw.codes, qw_list.codes)


def _small_gpt():
    gpt = TinyGPT(GPTConfig(n_layer=1, n_embd=128, n_head=4, block_size=32), seed=0).eval()
    calib = [torch.randint(0, 96, (4, 32), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    return gpt, calib


def test_quantize_model_awq_on_tinygpt():
    gpt, calib = _small_gpt()
    x = torch.randint(0, 96, (4, 32), generator=torch.Generator().manual_seed(9))
    ref = gpt(x)[0]
    quantize_model(gpt, "awq", bits=4, group_size=128, calibration=calib, progress=False, fold=False)
    layers = [m for m in gpt.modules() if isinstance(m, AWQLinear)]
    assert len(layers) == 4
    assert math.isfinite((gpt(x)[0] - ref).abs().max().item())


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def tinygpt_awq():
    """The trained TinyGPT, AWQ 4-bit g128 with explicit scales (fold=False), its calibration, a batch."""
    torch.manual_seed(0)
    gpt = load_pretrained("tinygpt").eval()
    g = torch.Generator().manual_seed(0)
    calib = [torch.randint(0, gpt.config.vocab_size, (4, 64), generator=g)]
    x = torch.randint(0, gpt.config.vocab_size, (4, 64), generator=g)
    q = quantize_model(copy.deepcopy(gpt), "awq", bits=4, group_size=128, calibration=calib,
                       progress=False, fold=False)
    return gpt, q, calib, x


def test_fold_on_tinygpt_is_exact(tinygpt_awq):
    _, q, calib, x = tinygpt_awq
    m = copy.deepcopy(q)
    with torch.no_grad():
        before = m(x)[0]
        report = fold_awq_scales(m, calib)
        after = m(x)[0]
    assert _rel(after, before) < 1e-5
    for i in range(m.config.n_layer):
        h = f"transformer.h.{i}"
        assert report[f"{h}.attn.c_attn"] == f"{h}.ln_1"  # pre-LN: ln_1 feeds only c_attn
        assert report[f"{h}.mlp.c_fc"] == f"{h}.ln_2"
        C = m.config.n_embd  # attention mixes the value rows of c_attn linearly: c_proj folds there
        assert report[f"{h}.attn.c_proj"] == f"{h}.attn.c_attn[{2 * C}:{3 * C}]"
        assert report[f"{h}.mlp.c_proj"] is None  # after a GELU: keeps x / s
        assert type(m.get_submodule(f"{h}.attn.c_attn")) is QuantLinear
        assert type(m.get_submodule(f"{h}.mlp.c_proj")) is AWQLinear


def test_quantize_model_folds_by_default_and_packs(tinygpt_awq):
    gpt, q, calib, x = tinygpt_awq
    folded = quantize_model(copy.deepcopy(gpt), "awq", bits=4, group_size=128, calibration=calib, progress=False)
    packed = quantize_model(copy.deepcopy(gpt), "awq", bits=4, group_size=128, calibration=calib, progress=False,
                            pack=True)
    kinds = {type(m) for n, m in folded.named_modules() if n.startswith("transformer.h.") and n.endswith(
        ("c_attn", "c_fc", "c_proj"))}
    assert kinds == {QuantLinear, AWQLinear}
    layers = [m for n, m in packed.named_modules() if n.endswith(("c_attn", "c_fc", "c_proj"))]
    assert len(layers) == 4 * gpt.config.n_layer and all(isinstance(m, PackedLinear) for m in layers)
    assert any(isinstance(m, PackedAWQLinear) for m in layers)  # mlp.c_proj: explicit x / s, packed
    assert not any(isinstance(m, (QuantLinear, AWQLinear)) for m in packed.modules())
    with torch.no_grad():
        ref = q(x)[0]
        assert _rel(folded(x)[0], ref) < 1e-5
        assert _rel(packed(x)[0], ref) < 1e-4


def test_awq_still_beats_rtn_on_tinygpt(tinygpt_awq):
    gpt, _, calib, x = tinygpt_awq
    with torch.no_grad():
        ref = gpt(x)[0]
        errs = {}
        for method in ("rtn", "awq"):
            opts = dict(calibration=calib) if method == "awq" else {}
            m = quantize_model(copy.deepcopy(gpt), method, bits=3, group_size=128, progress=False, **opts)
            errs[method] = ((m(x)[0] - ref) ** 2).mean().item()
    assert errs["awq"] < errs["rtn"]


class _Block(nn.Module):
    """One attention + ReLU-MLP block with separate q, k, v, pre-LN or post-LN (BERT-style).

    Post-LN: the LayerNorm's output feeds q, k, v *and* the residual, so s cannot go into it."""

    def __init__(self, C=64, post_ln=False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.post_ln, self.ln = post_ln, nn.LayerNorm(C)
        self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))
        self.fc, self.fc2 = nn.Linear(C, 2 * C), nn.Linear(2 * C, C)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.dim() == 1 and p is self.ln.weight else 0))

    def forward(self, x):  # x [B, T, C]
        h = self.ln(x)
        if self.post_ln:
            x = h  # post-LN: the normalised stream is also the residual
        a = torch.softmax(self.q(h) @ self.k(h).transpose(1, 2) / 8, -1) @ self.v(h)  # [B, T, C]
        y = x + self.o(a)
        return y + self.fc2(F.relu(self.fc(y)))


def _block_calib():
    g = torch.Generator().manual_seed(1)
    calib = [torch.randn(2, 16, 64, generator=g) for _ in range(2)]
    for c in calib:
        c[..., :3] *= 10
    return calib


@pytest.mark.parametrize("post_ln", [False, True])
def test_fold_refuses_post_ln_residual_and_shares_qkv_scale(post_ln):
    calib = _block_calib()
    m = quantize_model(_Block(post_ln=post_ln), "awq", bits=4, group_size=32, calibration=calib,
                       progress=False, fold=False)
    s = m.q.input_scale
    assert torch.equal(m.k.input_scale, s) and torch.equal(m.v.input_scale, s)  # q, k, v: one s
    assert not torch.allclose(s, torch.ones_like(s))
    with torch.no_grad():
        before = m(calib[1])
        report = fold_awq_scales(m, calib)
        after = m(calib[1])
    assert _rel(after, before) < 1e-5
    for name in "qkv":
        assert report[name] == (None if post_ln else "ln")
    assert report["o"] == "v[0:64]"  # attention mixes value rows linearly
    assert report["fc"] is None  # its input is a residual sum
    assert report["fc2"] == "fc[0:128]"  # ReLU commutes with a positive scale
    assert isinstance(m.q, AWQLinear) == post_ln


def test_head_cuts_the_examples_and_keeps_the_rest():
    from collections import namedtuple

    x, y = torch.arange(12.0).reshape(6, 2), torch.arange(6)
    assert torch.equal(_head(x, 4), x[:4])
    cut = _head({"ids": x, "mask": y, "modality": "text"}, 2)
    assert torch.equal(cut["ids"], x[:2]) and torch.equal(cut["mask"], y[:2]) and cut["modality"] == "text"
    a, b = _head((x, y), 3)
    assert torch.equal(a, x[:3]) and torch.equal(b, y[:3])
    assert isinstance(_head([x, y], 3), list)
    pair = namedtuple("Pair", "x y")(x, y)
    for kept in (pair, (x, y[:5]), {"a": torch.tensor(1.0)}, "text", []):  # not cut: returned as they are
        assert _head(kept, 2) is kept


def test_fold_checks_on_a_few_examples_or_the_whole_batch():
    calib = [torch.cat(_block_calib())]  # one batch of 4 examples
    m = quantize_model(_Block(), "awq", bits=4, group_size=32, calibration=calib, progress=False, fold=False)
    seen = []

    def whole_batches_only(model, batch):
        seen.append(len(batch))
        if len(batch) != 4:
            raise RuntimeError("this forward needs the whole batch")
        return model(batch)

    reports = []
    for forward, n in ((None, 1), (whole_batches_only, 1), (None, 4)):
        q = copy.deepcopy(m)
        with torch.no_grad():
            before = q(calib[0])
            reports.append(fold_awq_scales(q, calib, forward, check_examples=n))
            assert _rel(q(calib[0]), before) < 1e-5
    assert reports[0] == reports[1] == reports[2] and reports[0]["o"] == "v[0:64]"
    assert seen[0] == 1 and set(seen[1:]) == {4}  # cut to one example, then the fallback
    with pytest.raises(ValueError, match="check_examples=0"):
        fold_awq_scales(copy.deepcopy(m), calib, check_examples=0)


def test_fold_bad_input():
    gpt, calib = _small_gpt()
    with pytest.raises(ValueError, match="no AWQLinear"):
        fold_awq_scales(gpt, calib)
    with pytest.raises(TypeError, match="model must be"):
        fold_awq_scales("gpt", calib)
    with pytest.raises(TypeError, match="fold='no'"):
        quantize_model(copy.deepcopy(gpt), "awq", calibration=calib, progress=False, fold="no")
    quantize_model(gpt, "awq", bits=4, group_size=128, calibration=calib, progress=False, fold=False)
    with pytest.raises(ValueError, match="tol=0"):
        fold_awq_scales(gpt, calib, tol=0)
    with pytest.raises(ValueError, match="calibration"):
        fold_awq_scales(gpt, None)


def test_exercise_transcription_is_the_library_search():
    from minicomp.checkers.awq import _cases, reference, search

    for case in _cases():
        assert torch.allclose(search(*case.args), reference(*case.args), rtol=1e-5)
    # a dead input channel (mean |x| exactly 0): s = max(0 ** α, 1e-4), as the exercise and llm-awq
    # say (the library once floored x_scale at 1e-8 first, giving that channel 1e-8 ** α instead)
    g = torch.Generator().manual_seed(3)
    W, X = torch.randn(8, 32, generator=g), torch.randn(64, 32, generator=g)
    X[:, 5] = 0
    X[:, 7] *= 30
    args = (W, activation_scales(X), input_hessian(X), 3, 16)
    assert activation_scales(X)[5] == 0
    assert torch.allclose(search(*args), reference(*args), rtol=1e-5)


def test_pack_model_and_export_keep_the_awq_input_scale(tinygpt_awq, tmp_path):
    """An AWQ layer whose scale did not fold must keep x / s when packed, saved and loaded."""
    from minicomp.export import load_quantized, save_quantized
    from minicomp.kernels import pack_model

    gpt, q, calib, x = tinygpt_awq
    folded = quantize_model(copy.deepcopy(gpt), "awq", bits=4, group_size=128, calibration=calib, progress=False)
    assert any(type(m) is AWQLinear for m in folded.modules())
    with torch.no_grad():
        ref = folded(x)[0]
        packed = pack_model(copy.deepcopy(folded))
        assert any(isinstance(m, PackedAWQLinear) for m in packed.modules())
        assert _rel(packed(x)[0], ref) < 1e-4
        path = save_quantized(folded, tmp_path / "awq.safetensors")
        loaded = load_quantized(copy.deepcopy(gpt), path)
        assert any(isinstance(m, PackedAWQLinear) for m in loaded.modules())
        assert _rel(loaded(x)[0], ref) < 1e-4


def test_awq_with_act_bits_is_refused(tinygpt_awq):
    gpt, _, calib, _ = tinygpt_awq
    with pytest.raises(ValueError, match="weight-only.*act_bits"):
        quantize_model(copy.deepcopy(gpt), "awq", calibration=calib, act_bits=8, progress=False)


def test_packed_awq_linear_checks_its_input_scale():
    lin = nn.Linear(64, 8)
    qw = rtn_quantize(lin.weight.detach(), 4, 32)
    with pytest.raises(ValueError, match=r"input_scale must be a tensor of shape \[in_features\] = \[64\]"):
        PackedAWQLinear(PackedLinear.from_quantized(qw).qweight, qw.scale, qw.zero.to(torch.uint8),
                        in_features=64, bits=4, group_size=32, input_scale=torch.ones(3))
    with pytest.raises(TypeError, match="must be an AWQLinear"):
        PackedAWQLinear.from_awq(lin)


def test_awq_scale_folds_into_an_rmsnorm_which_has_no_bias():
    torch.manual_seed(0)
    model = nn.Sequential(nn.RMSNorm(32), nn.Linear(32, 8))
    x = torch.randn(64, 32)
    q = quantize_model(copy.deepcopy(model), "awq", bits=4, group_size=16, calibration=[x], progress=False)
    assert type(q[1]) is QuantLinear                      # folded: the norm's weight took s
    assert not torch.equal(q[0].weight, model[0].weight)
    with torch.no_grad():
        assert (q(x) - model(x)).abs().max() < 0.5        # still the same layer, up to 4-bit rounding


def test_packed_awq_linear_rejects_a_zero_input_scale():
    layer = PackedLinear.from_linear(nn.Linear(16, 4), bits=4, group_size=16)
    args = (layer.qweight, layer.scales, layer.zeros)
    with pytest.raises(ValueError, match="input_scale"):
        PackedAWQLinear(*args, in_features=16, bits=4, group_size=16, input_scale=torch.zeros(16))


def test_awq_quantize_passes_n_grid_to_the_clip_search(monkeypatch):
    import minicomp.awq as awq_module

    seen = []
    real = awq_module.awq_search_clip
    monkeypatch.setattr(awq_module, "awq_search_clip", lambda *a, **k: seen.append((a, k)) or real(*a, **k))
    W, X = torch.randn(8, 32), torch.randn(64, 32)
    awq_module.awq_quantize(W, [X], bits=4, group_size=16, n_grid=5)
    assert seen and (seen[0][0][5:6] == (5,) or seen[0][1].get("n_grid") == 5)


def test_awq_search_scale_names_a_negative_x_scale():
    W, X = torch.randn(8, 16), torch.randn(32, 16)
    with pytest.raises(ValueError, match="x_scale must be >= 0"):
        awq_search_scale(W, -torch.rand(16), input_hessian([X]), group_size=-1)
