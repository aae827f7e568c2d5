"""minicomp.distill against its definitions: Hinton et al. 2015 (soft targets, T² · KL, batchmean),
FitNets (hint loss), RKD (Park et al. 2019), DKD (Zhao et al. 2022), and the Distiller loop."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

from minicomp.distill import (
    CE,
    DKD,
    KD,
    RKD,
    Distiller,
    Hint,
    Outputs,
    Taps,
    distillation_loss,
    dkd_loss,
    dkd_terms,
    hint_loss,
    kd_loss,
    make_adapter,
    rkd_angle_loss,
    rkd_distance_loss,
    soft_targets,
)

LN3 = math.log(3.0)


pytestmark = pytest.mark.usefixtures("one_thread")   # (conftest.py)
temperatures = st.floats(0.05, 50.0)
seeds = st.integers(0, 2**31 - 1)


def randn(*shape, seed=0, scale=1.0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def textbook_kd(s, t, T):
    """Hinton et al. 2015 as PyTorch spells it: F.kl_div(log p_s, p_t, 'batchmean') · T² on [N, C]."""
    C = s.shape[-1]
    return F.kl_div(F.log_softmax(s.reshape(-1, C) / T, -1), F.softmax(t.reshape(-1, C) / T, -1),
                    reduction="batchmean") * T * T


# ── soft targets ─────────────────────────────────────────────────────────────────────────────
def test_soft_targets_hand_checked():
    p = soft_targets(torch.tensor([[LN3, 0.0], [2 * LN3, 0.0]]), 1.0)
    assert torch.allclose(p, torch.tensor([[0.75, 0.25], [0.9, 0.1]]))
    assert torch.allclose(soft_targets(torch.tensor([2 * LN3, 0.0]), 2.0), torch.tensor([0.75, 0.25]))


@settings(max_examples=60, deadline=None)
@given(T=temperatures, seed=seeds, scale=st.floats(0.1, 20.0))
@example(T=0.05078125, seed=0, scale=13.0)  # exp(z / T) overflows float64 here: a naive reference fails
def test_soft_targets_is_softmax_of_logits_over_T(T, seed, scale):
    z = randn(3, 4, 7, seed=seed, scale=scale)
    p = soft_targets(z, T)
    e = torch.exp((z - z.amax(-1, keepdim=True)) / T)  # exp(z/T) / Σ exp(z/T), without overflow at tiny T
    assert torch.allclose(p, e / e.sum(-1, keepdim=True))
    assert torch.allclose(p.sum(-1), torch.ones(3, 4, dtype=z.dtype))


def test_soft_targets_huge_logits_do_not_overflow():
    z = torch.tensor([[1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -1000.0]])
    p = soft_targets(z, 1.0)
    assert torch.isfinite(p).all()
    expected0 = torch.tensor([1.0, 0.0, math.exp(-1.0)]) / (1 + math.exp(-1.0))
    assert torch.allclose(p[0], expected0) and torch.allclose(p[1], torch.full((3,), 1 / 3))


def test_temperature_limits_uniform_and_one_hot():
    z = torch.tensor([[3.0, 1.0, 0.0, -2.0]])
    assert torch.allclose(soft_targets(z, 1e6), torch.full((1, 4), 0.25), atol=1e-5)
    assert torch.equal(soft_targets(z, 1e-3), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    entropy = [-(p * p.log()).sum().item() for p in (soft_targets(z, T) for T in (0.5, 1, 2, 4, 8))]
    assert entropy == sorted(entropy)  # flatter as T grows


# ── kd_loss ──────────────────────────────────────────────────────────────────────────────────
def test_kd_loss_hand_checked():
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL([3/4, 1/4] ‖ [1/2, 1/2])
    s = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    assert kd_loss(s, torch.tensor([[LN3, 0.0]], dtype=torch.float64), 1.0).item() == pytest.approx(kl, rel=1e-12)
    assert kd_loss(s, torch.tensor([[2 * LN3, 0.0]], dtype=torch.float64), 2.0).item() == pytest.approx(4 * kl, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(T=temperatures, seed=seeds, rows=st.integers(1, 6), C=st.integers(2, 12))
def test_kd_loss_equals_textbook_formula(T, seed, rows, C):
    s, t = randn(rows, C, seed=seed, scale=3.0), randn(rows, C, seed=seed + 1, scale=3.0)
    got = kd_loss(s, t, T)
    assert got.shape == ()
    assert torch.allclose(got, textbook_kd(s, t, T), rtol=1e-9, atol=1e-12)
    assert got.item() >= -1e-12


def test_kd_loss_3d_logits_average_over_every_leading_dimension():
    s, t = randn(2, 3, 5, seed=1, scale=2.0), randn(2, 3, 5, seed=2, scale=2.0)
    per_row = torch.stack([kd_loss(s[i, j:j + 1], t[i, j:j + 1], 2.0) for i in range(2) for j in range(3)])
    assert torch.allclose(kd_loss(s, t, 2.0), per_row.mean())
    assert torch.allclose(kd_loss(s, t, 2.0), textbook_kd(s, t, 2.0))


def test_kd_loss_zero_iff_same_distribution():
    z = randn(4, 6, seed=3)
    assert kd_loss(z, z, 3.0).abs().item() < 1e-12
    assert kd_loss(z + 5.0, z, 3.0).abs().item() < 1e-12  # a constant shift leaves softmax unchanged
    assert kd_loss(z * 2, z, 3.0).item() > 1e-3


def test_kd_loss_huge_logits_exact():
    s, t = torch.tensor([[1000.0, -1000.0]]), torch.tensor([[-1000.0, 1000.0]])
    assert kd_loss(s, t, 1.0).item() == pytest.approx(2000.0)  # log p_s(class 1) = -2000, p_t = [0, 1]
    loss = kd_loss(s.double(), t.double(), 10.0)  # T² · (200 · tanh(100)) at T = 10
    p = torch.softmax(t.double() / 10, -1)
    expected = 100 * (p * (p.log() - F.log_softmax(s.double() / 10, -1))).sum()
    assert torch.isfinite(loss) and torch.allclose(loss, expected)


@pytest.mark.parametrize("C", [2, 5, 10])
def test_high_temperature_limit_is_half_mean_squared_centered_logit_gap(C):
    """Hinton et al. 2015, section 2.1: as T → ∞, T² · KL → 1/(2C) · Σ_c (Δ_c − mean Δ)², Δ = z_s − z_t."""
    s, t = randn(7, C, seed=C, scale=2.0), randn(7, C, seed=C + 10, scale=2.0)
    d = (s - s.mean(-1, keepdim=True)) - (t - t.mean(-1, keepdim=True))
    limit = (d ** 2).sum(-1).mean() / (2 * C)
    rel = [abs(kd_loss(s, t, T).item() / limit.item() - 1) for T in (10.0, 100.0, 1000.0, 10000.0)]
    assert rel[-1] < 1e-4
    for a, b in zip(rel, rel[1:], strict=False):  # the gap shrinks like 1/T (like 1/T² when C = 2, by symmetry)
        assert a / b > 4


@settings(max_examples=30, deadline=None)
@given(T=temperatures, seed=seeds)
def test_kd_gradient_is_T_times_probability_gap(T, seed):
    """∂(T² KL)/∂z_s = T · (p_s − p_t) / N: the T² factor undoes the 1/T of the soft softmax."""
    s = randn(5, 8, seed=seed, scale=3.0).requires_grad_()
    t = randn(5, 8, seed=seed + 1, scale=3.0).requires_grad_()
    kd_loss(s, t, T).backward()
    expected = T * (torch.softmax(s / T, -1) - torch.softmax(t / T, -1)) / 5
    assert torch.allclose(s.grad, expected, atol=1e-10)
    assert t.grad is None  # no gradient reaches the teacher


# ── distillation_loss ────────────────────────────────────────────────────────────────────────
@settings(max_examples=40, deadline=None)
@given(T=temperatures, alpha=st.floats(0.0, 1.0), seed=seeds)
def test_distillation_loss_is_alpha_weighted_kd_plus_ce_at_T1(T, alpha, seed):
    s, t = randn(2, 3, 5, seed=seed, scale=2.0), randn(2, 3, 5, seed=seed + 1, scale=2.0)
    y = torch.randint(0, 5, (2, 3), generator=torch.Generator().manual_seed(seed))
    ce = F.cross_entropy(s.reshape(-1, 5), y.reshape(-1))
    expected = alpha * textbook_kd(s, t, T) + (1 - alpha) * ce
    assert torch.allclose(distillation_loss(s, t, y, T, alpha), expected, rtol=1e-9)


def test_distillation_loss_extremes_of_alpha():
    s, t, y = randn(6, 4, seed=5), randn(6, 4, seed=6), torch.tensor([0, 1, 2, 3, 0, 1])
    for T in (1.0, 4.0, 20.0):  # alpha = 0: plain cross-entropy, whatever T
        assert torch.allclose(distillation_loss(s, t, y, T, 0.0), F.cross_entropy(s, y))
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 1.0), kd_loss(s, t, 4.0))
    hand = 0.5 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) + 0.5 * math.log(2.0)
    got = distillation_loss(torch.zeros(1, 2), torch.tensor([[LN3, 0.0]]), torch.tensor([0]), 1.0, 0.5)
    assert got.item() == pytest.approx(hand, rel=1e-6)


@pytest.mark.parametrize("call, words", [
    (lambda: kd_loss(torch.zeros(4, 10), torch.zeros(4, 5), 2.0), ["(4, 10)", "(4, 5)", "match"]),
    (lambda: kd_loss(torch.zeros(4, 10), torch.zeros(4, 10), 0), ["temperature=0", "> 0"]),
    (lambda: soft_targets(torch.zeros(4, 10), -1.0), ["temperature=-1", "> 0"]),
    (lambda: distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]), 2.0, 1.5),
     ["alpha=1.5", "[0, 1]"]),
    (lambda: distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3]), 2.0, 0.5),
     ["labels", "3", "[0, 3)"]),
    (lambda: distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, -1]), 2.0, 0.5),
     ["labels", "-1"]),
    (lambda: distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1, 2]), 2.0, 0.5),
     ["labels", "(3,)", "(2,)"]),
    (lambda: hint_loss(torch.zeros(2, 3), torch.zeros(2, 4)), ["(2, 3)", "(2, 4)", "adapter"]),
    (lambda: make_adapter(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 2, 2)), ["(2, 3, 4, 4)", "same H, W"]),
    (lambda: rkd_distance_loss(torch.zeros(4, 3), torch.zeros(5, 3)), ["4 rows", "5"]),
    (lambda: dkd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]), beta=-1.0), ["beta=-1.0"]),
])
def test_bad_input_raises_value_error_naming_the_problem(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_any_integer_dtype_of_labels_works(dtype):
    """int32 or uint8 labels (e.g. from numpy) give the same losses as int64 ones."""
    s, t, y = randn(4, 5, seed=1), randn(4, 5, seed=2), torch.tensor([0, 1, 2, 4])
    assert torch.equal(distillation_loss(s, t, y.to(dtype)), distillation_loss(s, t, y))
    assert torch.equal(dkd_loss(s, t, y.to(dtype)), dkd_loss(s, t, y))


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="labels"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0.0, 1.0]), 2.0, 0.5)
    with pytest.raises(TypeError, match="temperature"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), "4")
    with pytest.raises(TypeError, match="student_logits"):
        kd_loss([[0.0, 1.0]], torch.zeros(1, 2), 2.0)


# ── taps, adapters, hint loss ────────────────────────────────────────────────────────────────
def small_mlp(seed, widths=(6, 5, 3)):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(widths[0], widths[1]), nn.ReLU(), nn.Linear(widths[1], widths[2]))


def test_taps_record_named_outputs_and_remove_their_hooks():
    model, x = small_mlp(0), randn(4, 6, seed=1, dtype=torch.float32)
    with Taps(model, ["0", "1"]) as feats:
        out = model(x)
    assert torch.equal(feats["0"], model[0](x)) and torch.equal(feats["1"], torch.relu(model[0](x)))
    assert torch.equal(out, model(x))
    assert all(not m._forward_hooks for m in model.modules())  # hooks gone after the block
    with pytest.raises(ValueError, match="'fc9' is not a submodule"):
        Taps(model, "fc9")


def test_make_adapter_shapes_and_seed():
    a = make_adapter(torch.zeros(2, 4), torch.zeros(2, 16), seed=3)
    assert isinstance(a, nn.Linear) and (a.in_features, a.out_features) == (4, 16)
    assert torch.equal(a.weight, make_adapter(torch.zeros(2, 4), torch.zeros(2, 16), seed=3).weight)
    c = make_adapter(torch.zeros(2, 3, 4, 4), torch.zeros(2, 8, 4, 4))
    assert isinstance(c, nn.Conv2d) and c.kernel_size == (1, 1) and c(torch.zeros(2, 3, 4, 4)).shape == (2, 8, 4, 4)


def test_hint_loss_is_mse_after_adapter_and_keeps_teacher_frozen():
    s = randn(5, 3, 4, 4, seed=1, dtype=torch.float32).requires_grad_()
    t = randn(5, 8, 4, 4, seed=2, dtype=torch.float32).requires_grad_()
    r = make_adapter(s, t)
    loss = hint_loss(s, t, r)
    assert torch.allclose(loss, F.mse_loss(r(s), t))
    loss.backward()
    assert t.grad is None and s.grad is not None and r.weight.grad is not None
    assert hint_loss(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[1.0, 5.0], [0.0, 2.0]])).item() == 3.25


# ── relational KD ────────────────────────────────────────────────────────────────────────────
def loop_psi_d(e):
    N = len(e)
    d = [torch.dist(e[i], e[j]) for i in range(N) for j in range(N) if i != j]
    d = torch.stack(d)
    return d / d.mean()


def loop_psi_a(e):
    N, out = len(e), []
    for j in range(N):
        for i in range(N):
            for k in range(N):
                u = F.normalize(e[i] - e[j], dim=0)
                v = F.normalize(e[k] - e[j], dim=0)
                out.append((u * v).sum())
    return torch.stack(out)


def test_rkd_losses_match_a_loop_over_pairs_and_triplets():
    s, t = randn(5, 3, seed=1), randn(5, 7, seed=2)
    assert torch.allclose(rkd_distance_loss(s, t), F.smooth_l1_loss(loop_psi_d(s), loop_psi_d(t)))
    assert torch.allclose(rkd_angle_loss(s, t), F.smooth_l1_loss(loop_psi_a(s), loop_psi_a(t)))


def test_rkd_is_invariant_to_scale_rotation_and_shift():
    t = randn(9, 4, seed=3)
    q, _ = torch.linalg.qr(randn(4, 4, seed=4))  # an orthogonal matrix
    s = 3.0 * t @ q + 7.0  # same shape of the point cloud, other place and size
    assert rkd_distance_loss(s, t).item() < 1e-12 and rkd_angle_loss(s, t).item() < 1e-12
    assert rkd_distance_loss(randn(9, 4, seed=5), t).item() > 1e-3


def test_rkd_gradient_is_finite_and_skips_the_teacher():
    s = randn(6, 3, seed=6).requires_grad_()
    t = randn(6, 8, seed=7).requires_grad_()
    (rkd_distance_loss(s, t) + rkd_angle_loss(s, t)).backward()
    assert torch.isfinite(s.grad).all() and t.grad is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rkd_of_half_precision_embeddings_is_finite(dtype):
    """In float16 normalize's eps (1e-12) is 0: the zero vectors e_i − e_i would give NaN angles."""
    s, t = randn(8, 5, seed=1), randn(8, 12, seed=2)
    s_half = s.to(dtype).requires_grad_()
    for loss in (rkd_distance_loss, rkd_angle_loss):
        got = loss(s_half, t.to(dtype))
        assert torch.isfinite(got) and got.item() == pytest.approx(loss(s, t).item(), rel=2e-2)
        got.backward()
        assert torch.isfinite(s_half.grad).all()


# ── decoupled KD ─────────────────────────────────────────────────────────────────────────────
def official_dkd(s, t, y, alpha, beta, T):
    """The reference implementation of Zhao et al. 2022 (mdistiller), for moderate logits."""
    gt = F.one_hot(y, s.shape[1]).to(s.dtype)
    other = 1 - gt

    def cat_mask(p):
        return torch.stack([(p * gt).sum(1), (p * other).sum(1)], dim=1)

    ps, pt = cat_mask(F.softmax(s / T, 1)), cat_mask(F.softmax(t / T, 1))
    tckd = F.kl_div(torch.log(ps), pt, reduction="sum") * T ** 2 / y.shape[0]
    pt2 = F.softmax(t / T - 1000.0 * gt, 1)
    ls2 = F.log_softmax(s / T - 1000.0 * gt, 1)
    nckd = F.kl_div(ls2, pt2, reduction="sum") * T ** 2 / y.shape[0]
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dkd_matches_the_official_implementation(T):
    s, t = randn(8, 10, seed=1, scale=2.0), randn(8, 10, seed=2, scale=2.0)
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(dkd_loss(s, t, y, T, 1.0, 8.0), official_dkd(s, t, y, 1.0, 8.0, T), rtol=1e-6)


@settings(max_examples=30, deadline=None)
@given(T=temperatures, seed=seeds)
def test_kd_decomposes_into_tckd_plus_weighted_nckd(T, seed):
    """Zhao et al. 2022, eq. 5, per row: KD = TCKD + (1 − p_t of the target class) · NCKD."""
    s, t = randn(1, 6, seed=seed, scale=3.0), randn(1, 6, seed=seed + 1, scale=3.0)
    y = torch.tensor([seed % 6])
    tckd, nckd = dkd_terms(s, t, y, T)
    p_gt = torch.softmax(t / T, -1)[0, y]
    assert torch.allclose(kd_loss(s, t, T), tckd + (1 - p_gt) * nckd, rtol=1e-7, atol=1e-12)


def test_dkd_is_finite_on_huge_logits_and_skips_the_teacher():
    s = torch.tensor([[1000.0, -1000.0, 0.0], [0.0, 1000.0, -1000.0]], requires_grad=True)
    t = torch.tensor([[-1000.0, 1000.0, 0.0], [1000.0, 0.0, -1000.0]], requires_grad=True)
    loss = dkd_loss(s, t, torch.tensor([0, 1]), 1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all() and t.grad is None


def test_dkd_with_a_ruled_out_class_matches_the_probabilities():
    """A −inf teacher logit (probability 0) is allowed; TCKD by hand from the binary split."""
    s = torch.tensor([[0.5, 1.0, 2.0]], dtype=torch.float64)
    t = torch.tensor([[-math.inf, 1.0, 2.0]], dtype=torch.float64)
    tckd, nckd = dkd_terms(s, t, torch.tensor([1]), 1.0)
    p_t, p_s = torch.softmax(t, -1)[0, 1], torch.softmax(s, -1)[0, 1]
    hand = p_t * torch.log(p_t / p_s) + (1 - p_t) * torch.log((1 - p_t) / (1 - p_s))
    assert tckd.item() == pytest.approx(hand.item(), rel=1e-9) and tckd.item() > 0
    assert torch.isfinite(nckd) and nckd.item() >= 0
    assert torch.allclose(kd_loss(s, t, 1.0), tckd + (1 - p_t) * nckd)  # eq. 5 still holds


@pytest.mark.parametrize("s_row, t_row, label", [
    ([-math.inf, 1.0, 2.0], [-math.inf, 1.5, 2.0], 1),  # both rule out class 0
    ([0.5, 1.0], [-math.inf, 1.0], 1),  # the teacher is certain: no non-target distribution
])
def test_dkd_gradient_is_finite_with_minus_inf_logits(s_row, t_row, label):
    s = torch.tensor([s_row], requires_grad=True)
    tckd, nckd = dkd_terms(s, torch.tensor([t_row]), torch.tensor([label]), 1.0)
    (tckd + nckd).backward()
    assert torch.isfinite(tckd) and torch.isfinite(nckd) and torch.isfinite(s.grad).all()


# ── the Distiller ────────────────────────────────────────────────────────────────────────────
class RecordingTeacher(nn.Module):
    """A teacher that records whether it ran in eval mode under no_grad."""

    def __init__(self):
        super().__init__()
        self.net = small_mlp(1, (6, 12, 3))
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.net(x)


def toy_data(n=96):
    """Inputs and the labels of RecordingTeacher (a teacher that is always right)."""
    x = randn(n, 6, seed=11, dtype=torch.float32)
    with torch.no_grad():
        y = RecordingTeacher().net(x).argmax(-1)  # [n], 3 classes
    return x, y


def run(losses, seed=0, steps=40, teacher=None):
    x, y = toy_data()
    y = y.clone()
    y[::2] = -1  # half the rows unlabelled
    teacher = teacher or RecordingTeacher()
    d = Distiller(small_mlp(2), teacher, losses, lr=1e-2, seed=seed, progress=False)
    d.fit(x, y, steps=steps, batch_size=16, x_val=x, y_val=toy_data()[1], log_every=10)
    return d


def test_distiller_freezes_the_teacher():
    teacher = RecordingTeacher().train()
    before = [p.clone() for p in teacher.parameters()]
    run({"kd": (0.9, KD(4.0)), "ce": (0.1, CE()), "hint": (1.0, Hint("1", "net.1"))}, teacher=teacher)
    assert teacher.calls and all(not training and not grad for training, grad in teacher.calls)
    assert teacher.training  # its mode is restored afterwards
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not m._forward_hooks for m in teacher.modules())


def test_distiller_is_repeatable_and_records_history():
    losses = lambda: {"kd": (0.5, KD(2.0)), "ce": (0.5, CE()), "rkd": (0.1, RKD("1", "net.1"))}
    a, b = run(losses()), run(losses())
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert all(torch.equal(p, q) for p, q in zip(a.student.parameters(), b.student.parameters(), strict=True))
    assert [r["step"] for r in a.history] == [10, 20, 30, 40]
    assert {"loss", "kd", "ce", "rkd", "val_acc", "seconds"} <= set(a.history[0])
    c = run(losses(), seed=1)
    assert [r["loss"] for r in c.history] != [r["loss"] for r in a.history]


def test_distiller_total_is_the_weighted_sum_and_learns():
    d = run({"kd": (0.7, KD(3.0)), "dkd": (0.2, DKD(3.0)), "ce": (0.3, CE())}, steps=200)
    for row in d.history:
        assert row["loss"] == pytest.approx(0.7 * row["kd"] + 0.2 * row["dkd"] + 0.3 * row["ce"], rel=1e-5)
    assert d.history[-1]["loss"] < 0.8 * d.history[0]["loss"]
    assert d.history[-1]["val_acc"] > 0.8


def test_hint_term_builds_and_trains_an_adapter():
    losses = {"hint": (1.0, Hint("0", "net.0"))}  # widths 5 and 12: a Linear(5, 12) adapter
    d = run(losses, steps=30)
    adapter = losses["hint"][1].adapter
    assert isinstance(adapter, nn.Linear) and (adapter.in_features, adapter.out_features) == (5, 12)
    assert not torch.equal(adapter.weight, make_adapter(torch.zeros(1, 5), torch.zeros(1, 12), seed=0).weight)
    assert d.history[-1]["hint"] < d.history[0]["hint"]


def test_distiller_without_teacher_and_bad_arguments():
    x, y = toy_data()
    d = Distiller(small_mlp(2), None, {"ce": (1.0, CE())}, progress=False)
    d.fit(x, y, steps=5, batch_size=32)
    assert len(d.history) == 1 and "val_acc" not in d.history[0]
    with pytest.raises(ValueError, match="needs a teacher"):
        Distiller(small_mlp(2), None, {"kd": (1.0, KD())})
    with pytest.raises(ValueError, match="weight -1"):
        Distiller(small_mlp(2), None, {"ce": (-1, CE())})
    for w in (math.inf, math.nan):  # an infinite weight trains to NaN
        with pytest.raises(ValueError, match=f"weight {w}.*finite"):
            Distiller(small_mlp(2), None, {"ce": (w, CE())})
    with pytest.raises(ValueError, match="steps=0"):
        d.fit(x, y, steps=0)
    with pytest.raises(ValueError, match="96 rows but y has 95"):
        d.fit(x, y[:-1])
    with pytest.raises(ValueError, match=r"values from \d+ to 3 .*\[0, 3\)"):
        d.fit(x, torch.cat([y[:-1], torch.tensor([3])]).clamp_min(-1), steps=1)


def test_distiller_accepts_any_integer_dtype_of_labels():
    """int32 labels (and -1 for unlabelled rows) train exactly as int64 ones do."""
    x, y = toy_data()
    y[::2] = -1
    losses = lambda: {"kd": (0.5, KD(2.0)), "ce": (0.5, CE()), "dkd": (0.1, DKD(2.0))}  # noqa: E731
    a = Distiller(small_mlp(2), RecordingTeacher(), losses(), progress=False)
    b = Distiller(small_mlp(2), RecordingTeacher(), losses(), progress=False)
    a.fit(x, y, steps=3, batch_size=16)
    b.fit(x, y.int(), steps=3, batch_size=16)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]


def test_losses_refuse_rows_of_no_class_and_undefined_student_logits():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    t[0] = -math.inf                                    # no class possible: its softmax is NaN
    with pytest.raises(ValueError, match=r"teacher_logits has 1 row\(s\) of −inf only"):
        kd_loss(s, t)
    with pytest.raises(ValueError, match="teacher_logits has 1 row"):
        dkd_terms(s, t, torch.zeros(4, dtype=torch.long))
    s[2, 1] = math.nan
    with pytest.raises(ValueError, match="student_logits contains NaN"):
        kd_loss(s, torch.randn(4, 5))


def test_hint_takes_a_plain_function_as_its_adapter():
    hint = Hint("a", "b", adapter=lambda x: 2 * x)
    o = Outputs(torch.zeros(3, 2), None, torch.zeros(3, dtype=torch.long), {"a": torch.ones(3, 4)},
                {"b": torch.ones(3, 4)})
    assert hint.build(o, 0) == []                                         # nothing to train
    assert hint(o) > 0                                                    # mean((2·1 − 1)²) = 1
    with pytest.raises(TypeError, match="adapter must be a module .* a function"):
        Hint("a", "b", adapter=3)


def test_distiller_accuracy_refuses_labels_the_student_cannot_predict():
    d = Distiller(nn.Linear(4, 3), None, {"ce": (1.0, CE())}, progress=False)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="y holds class ids from 0 to 20"):
        d.accuracy(x, torch.tensor([0, 1, 2, 1, 20]))
    with pytest.raises(ValueError, match="from -1 to"):
        d.accuracy(x, torch.tensor([-1, 1, 2, 1, 0]))
    assert 0 <= d.accuracy(x, torch.tensor([0, 1, 2, 1, 0])) <= 1
