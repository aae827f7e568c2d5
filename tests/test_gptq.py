"""minicomp.gptq against its definition: an independent transcription of the reference loop, RTN
on an identity Hessian, the calibration objective, rank-deficient Hessians and bad input."""

import math

import pytest
import torch
import torch.nn as nn

from minicomp.calibrate import quantize_model
from minicomp.gptq import gptq_quantize, input_hessian, inverse_hessian_factor
from minicomp.models import GPTConfig, TinyGPT
from minicomp.rtn import QuantLinear, rtn_quantize

# ── an unoptimised transcription of IST-DASLab/gptq (gptq.py `fasterquant`, quant.py `Quantizer`) ──


def _ref_find_params(x, maxq):  # Quantizer.find_params(x, weight=True), asymmetric, per row
    xmin = torch.minimum(x.min(1).values, torch.zeros(x.shape[0]))
    xmax = torch.maximum(x.max(1).values, torch.zeros(x.shape[0]))
    tmp = (xmin == 0) & (xmax == 0)
    xmin[tmp], xmax[tmp] = -1, +1
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    return scale.unsqueeze(1), zero.unsqueeze(1)


def _ref_quantize(x, scale, zero, maxq):
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def reference_gptq(W, H, bits=4, groupsize=128, blocksize=128, percdamp=0.01, actorder=False,
                   static_groups=False):
    W, H = W.clone().float(), H.clone().float()
    maxq = 2**bits - 1
    columns = W.shape[1]
    scale, zero = _ref_find_params(W, maxq)  # `if not self.quantizer.ready()` (per-row)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if static_groups:
        groups = [_ref_find_params(W[:, i:i + groupsize], maxq) for i in range(0, columns, groupsize)]
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, perm], H[perm][:, perm]
        invperm = torch.argsort(perm)
    Q = torch.zeros_like(W)
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if groupsize != -1:
                if not static_groups:
                    if (i1 + i) % groupsize == 0:
                        scale, zero = _ref_find_params(W[:, (i1 + i):(i1 + i + groupsize)], maxq)
                else:
                    idx = i1 + i
                    if actorder:
                        idx = perm[idx]
                    scale, zero = groups[idx // groupsize]
            q = _ref_quantize(w.unsqueeze(1), scale, zero, maxq).flatten()
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    if actorder:
        Q = Q[:, invperm]
    return Q


# ── data ─────────────────────────────────────────────────────────────────────────────────────


def _layer(out=48, n_in=256, tokens=1024, seed=0, rank=None):
    """A weight [out, in] and correlated inputs X [tokens, in] with uneven channel scales."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n_in, generator=g) * 0.1
    r = rank or n_in
    X = torch.randn(tokens, r, generator=g) @ torch.randn(r, n_in, generator=g) / math.sqrt(r)
    X = X * torch.exp(torch.randn(n_in, generator=g))  # some channels much louder than others
    return W, X


def _objective(W, W_hat, X):
    return ((X @ (W - W_hat).T) ** 2).sum().item()  # ‖XWᵀ − XŴᵀ‖²


CONFIGS = [
    dict(bits=4, group_size=128),
    dict(bits=4, group_size=-1),
    dict(bits=3, group_size=64),
    dict(bits=4, group_size=32, block_size=128),  # groups start inside a block
    dict(bits=4, group_size=128, block_size=32),  # a group spans several blocks
    dict(bits=4, group_size=64, block_size=48),  # both, and blocks that end inside a group
    dict(bits=4, group_size=128, act_order=True),
    dict(bits=3, group_size=64, act_order=True, static_groups=True),
    dict(bits=4, group_size=-1, act_order=True),
    dict(bits=2, group_size=128, static_groups=True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_reference_transcription(cfg):
    W, X = _layer(seed=len(str(cfg)))
    H = input_hessian([X])
    got = gptq_quantize(W, H, **cfg).dequantize()
    ref = reference_gptq(W, H, cfg["bits"], cfg["group_size"], cfg.get("block_size", 128),
                         actorder=cfg.get("act_order", False), static_groups=cfg.get("static_groups", False))
    same = torch.isclose(got, ref, rtol=1e-5, atol=1e-6)
    assert same.float().mean() > 0.999, f"{(~same).sum()} of {same.numel()} weights differ"
    assert _objective(W, got, X) == pytest.approx(_objective(W, ref, X), rel=1e-3)


def test_matches_reference_with_dead_inputs_and_rank_deficient_hessian():
    W, X = _layer(n_in=128, tokens=40, seed=3)  # 40 tokens < 128 inputs: H has rank 40
    X[:, [0, 5, 77]] = 0  # dead inputs: H_qq = 0
    H = input_hessian([X])
    got = gptq_quantize(W, H, bits=4, group_size=64, act_order=True).dequantize()
    ref = reference_gptq(W, H, 4, 64, actorder=True)
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.all(got[:, [0, 5, 77]] == 0)


@pytest.mark.parametrize("group_size,symmetric,c", [(128, False, 1.0), (-1, True, 7.5), (32, False, 0.01),
                                                     (64, True, 1.0)])
def test_identity_hessian_is_rtn(group_size, symmetric, c):
    W, _ = _layer(seed=4)
    q = gptq_quantize(W, c * torch.eye(W.shape[1]), 4, group_size, symmetric)
    r = rtn_quantize(W, 4, group_size, symmetric)
    assert torch.equal(q.codes, r.codes) and torch.equal(q.zero, r.zero)
    assert torch.allclose(q.scale, r.scale) and torch.equal(q.dequantize(), r.dequantize())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bits,group_size", [(4, 128), (3, -1), (2, 64)])
def test_never_loses_to_rtn_on_the_calibration_objective(seed, bits, group_size):
    W, X = _layer(out=32, n_in=128, seed=seed, tokens=512 if seed % 2 else 64)  # even seeds: rank 64
    H = input_hessian([X])
    gptq = gptq_quantize(W, H, bits, group_size).dequantize()
    rtn = rtn_quantize(W, bits, group_size).dequantize()
    assert _objective(W, gptq, X) <= _objective(W, rtn, X)


def test_hessian_scale_does_not_matter():
    W, X = _layer(seed=5)
    H = input_hessian([X])
    a = gptq_quantize(W, H).dequantize()
    b = gptq_quantize(W, 1000.0 * H).dequantize()
    assert torch.isclose(a, b, atol=1e-6).float().mean() > 0.999


def test_block_size_changes_nothing_when_groups_align():
    W, X = _layer(seed=6)
    H = input_hessian([X])
    a = gptq_quantize(W, H, group_size=128, block_size=128)
    b = gptq_quantize(W, H, group_size=128, block_size=16)
    assert (a.codes == b.codes).float().mean() > 0.999


def test_act_order_perm_and_static_groups():
    W, X = _layer(seed=7)
    H = input_hessian([X])
    q = gptq_quantize(W, H, group_size=64, act_order=True)
    assert q.perm is not None and torch.equal(q.perm, torch.argsort(torch.diag(H), descending=True))
    s = gptq_quantize(W, H, group_size=64, act_order=True, static_groups=True)
    assert s.perm is None  # groups in original order: same storage as without act-order
    static_no_order = gptq_quantize(W, H, group_size=64, static_groups=True)
    assert torch.equal(s.scale, static_no_order.scale)  # a group's parameters do not depend on the order


@pytest.mark.parametrize("rank", [1, 8])
def test_survives_rank_deficient_and_singular_hessians(rank):
    W, X = _layer(n_in=128, tokens=200, seed=8, rank=rank)
    H = input_hessian([X])
    q = gptq_quantize(W, H, bits=4, group_size=128, damp=1e-8).dequantize()  # too little: retried
    assert torch.isfinite(q).all()
    assert _objective(W, q, X) <= _objective(W, rtn_quantize(W, 4, 128).dequantize(), X)
    all_dead = torch.zeros(128, 128)
    all_dead[3, 3] = 1.0
    assert torch.isfinite(gptq_quantize(W, all_dead).dequantize()).all()


def test_inverse_hessian_factor_is_cholesky_of_inverse():
    _, X = _layer(n_in=64, seed=9)
    H = input_hessian([X]).double()
    U = inverse_hessian_factor(H, damp=0.01)
    Hd = H + 0.01 * torch.diag(H).mean() * torch.eye(64, dtype=H.dtype)
    assert torch.allclose(U.T @ U, torch.linalg.inv(Hd), atol=1e-8)
    assert torch.equal(U, torch.triu(U))


def test_inverse_hessian_factor_retries_and_says_what_is_wrong():
    indefinite = torch.tensor([[1.0, 3.0], [3.0, 1.0]])  # eigenvalues 4 and −2: needs λ > 2
    with pytest.raises(ValueError, match="damp=0.01, 0.1, 1 ×"):  # retried up to λ = mean(diag(H)) = 1
        inverse_hessian_factor(indefinite, damp=0.01)
    U = inverse_hessian_factor(indefinite, damp=0.5)  # fails at 0.5, retried once more, at 5
    assert torch.allclose(U.T @ U, torch.linalg.inv(indefinite + 5.0 * torch.eye(2)))
    with pytest.raises(ValueError, match="negative diagonal entries"):  # mean(diag) ≤ 0, inputs not 0
        inverse_hessian_factor(-torch.eye(3), damp=5)
    with pytest.raises(ValueError, match="all-zero diagonal.*inputs of this layer are all 0"):
        inverse_hessian_factor(torch.zeros(3, 3))


def test_input_hessian_is_mean_of_outer_products():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    assert torch.allclose(input_hessian([x[:1], x[1:]]), torch.tensor([[10.0, 2.0], [2.0, 4.0]]))


def test_bad_input_is_rejected():
    W = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"hessian has shape \(6, 6\).*\[8, 8\]"):
        gptq_quantize(W, torch.eye(6), group_size=-1)
    bad = torch.eye(8)
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match="hessian contains NaN"):
        gptq_quantize(W, bad, group_size=-1)
    with pytest.raises(ValueError, match="group_size=3 must divide in_features=8"):
        gptq_quantize(W, torch.eye(8), group_size=3)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        gptq_quantize(torch.randn(2, 2), torch.tensor([[1.0, 3.0], [3.0, 1.0]]), group_size=-1)
    with pytest.raises(ValueError, match="damp"):
        gptq_quantize(W, torch.eye(8), group_size=-1, damp=0)
    with pytest.raises(TypeError, match="hessian"):
        gptq_quantize(W, torch.eye(8).long(), group_size=-1)
    with pytest.raises(ValueError, match="inputs is empty"):
        input_hessian([])


def _tiny_gpt(seed=0):
    return TinyGPT(GPTConfig(n_layer=1, n_embd=128, n_head=4, block_size=32), seed=seed).eval()


def test_quantize_model_gptq_beats_rtn_on_each_layer_output():
    torch.manual_seed(0)
    calib = [torch.randint(0, 96, (4, 32), generator=torch.Generator().manual_seed(i)) for i in range(4)]
    float_model = _tiny_gpt()
    x = torch.randint(0, 96, (8, 32), generator=torch.Generator().manual_seed(99))
    ref = float_model(x)[0]
    errs = {}
    for method in ("rtn", "gptq"):
        m = quantize_model(_tiny_gpt(), method, bits=3, group_size=128, calibration=calib, progress=False)
        assert all(isinstance(l, QuantLinear) for n, l in m.named_modules() if n.endswith(("c_attn", "c_fc")))
        errs[method] = (m(x)[0] - ref).pow(2).mean().item()
    assert errs["gptq"] < errs["rtn"]


def test_quantize_model_gptq_keeps_no_inputs_or_hessian_alive():
    import gc

    def alive(shape):  # tensors of this shape that anything still references
        gc.collect()
        return [t for t in gc.get_objects() if type(t) is torch.Tensor and tuple(t.shape) == shape]

    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 5))
    quantize_model(model, "gptq", bits=4, group_size=-1, calibration=[torch.randn(23, 8)], progress=False)
    assert alive((23, 12)) == [] and alive((12, 12)) == []  # the last layer's inputs [23, 12] and H


def test_quantize_model_gptq_layers_sharing_an_input_share_one_hessian():
    class QKV(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = (nn.Linear(16, 16) for _ in range(3))

        def forward(self, x):
            return self.q(x) + self.k(x) * self.v(x)

    torch.manual_seed(0)
    model, batches = QKV(), [torch.randn(32, 16), torch.randn(20, 16)]
    H = input_hessian(batches)
    expected = {n: gptq_quantize(getattr(model, n).weight, H, 3, 8) for n in "qkv"}
    quantize_model(model, "gptq", bits=3, group_size=8, calibration=batches, progress=False)
    for n, qw in expected.items():
        assert torch.equal(getattr(model, n).codes, qw.codes) and torch.equal(getattr(model, n).scale, qw.scale)


def test_quantize_model_gptq_bad_input():
    with pytest.raises(ValueError, match="needs calibration"):
        quantize_model(_tiny_gpt(), "gptq", calibration=None)
    with pytest.raises(ValueError, match="calibration is empty"):
        quantize_model(_tiny_gpt(), "gptq", calibration=[])
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_model(nn.Sequential(nn.ReLU()), "gptq", calibration=[torch.zeros(1, 4)])
    with pytest.raises(ValueError, match="group_size=96 must divide in_features=128"):
        quantize_model(_tiny_gpt(), "gptq", group_size=96, calibration=[torch.zeros(1, 4, dtype=torch.long)])


def test_exercise_reference_is_the_library_loop():
    from minicomp.checkers.gptq import reference
    from minicomp.quant import compute_qparams

    W, X = _layer(out=8, n_in=64, seed=11)
    H = input_hessian([X])
    scale, zero = compute_qparams(W, 4, axis=0)
    mine = reference(W, inverse_hessian_factor(H, 0.01), scale, zero, 15)
    assert torch.allclose(mine, gptq_quantize(W, H, 4, group_size=-1).dequantize(), atol=1e-5)


def test_layers_sharing_an_input_share_one_capture():
    from minicomp.calibrate import capture_shared_inputs

    class QKV(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(4, 4) for _ in range(4))

        def forward(self, x):
            return self.o(self.q(x) + self.k(x) * self.v(x))

    model = QKV()
    batches = [torch.randn(2, 4), torch.randn(3, 4)]
    inputs, n = capture_shared_inputs(model, [model.q, model.k, model.v, model.o], batches)
    assert n == 3 and [x.shape[0] for x in inputs] == [2, 3] and torch.equal(inputs[1], batches[1])
    _, n = capture_shared_inputs(model, [model.o], batches)
    assert n == 1


def test_gptq_refuses_a_hessian_that_is_not_symmetric():
    W = torch.randn(4, 16)
    X = torch.randn(64, 16)
    H = input_hessian([X])
    with pytest.raises(ValueError, match="hessian is not symmetric"):
        gptq_quantize(W, H + torch.triu(torch.ones(16, 16)), bits=4, group_size=-1)
    gptq_quantize(W, H, bits=4, group_size=-1)   # the real one passes
