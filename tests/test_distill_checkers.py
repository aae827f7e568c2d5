"""The distillation checkers, beyond what tests/test_checkers.py proves for every checker.

1. Right answers written in other ways (F.kl_div, a manual log-sum-exp, torch.no_grad for the
   teacher, ...) pass: a checker must not insist on one spelling.
2. Wrong answers that are *not* in the registry of known mistakes are rejected too: the cases,
   not the list of mistakes, are what catches a bug.
"""

import pytest
import torch
import torch.nn.functional as F

from minicomp.grading import check


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def stable_softmax(z, T):
    z = z / T
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def kd_with_kl_div(s, t, T):
    C = s.shape[-1]
    with torch.no_grad():
        p_t = F.softmax(t.reshape(-1, C) / T, dim=1)
    return F.kl_div(F.log_softmax(s.reshape(-1, C) / T, dim=1), p_t, reduction="batchmean") * T**2


def kd_manual(s, t, T):
    log_p_s = s / T - torch.logsumexp(s / T, dim=-1, keepdim=True)
    log_p_t = (t / T - torch.logsumexp(t / T, dim=-1, keepdim=True)).detach()
    kl = torch.xlogy(log_p_t.exp(), log_p_t.exp()) - log_p_t.exp() * log_p_s
    return T * T * kl.sum(-1).mean()


def dl_right(s, t, y, T, a):
    C = s.shape[-1]
    return a * kd_with_kl_div(s, t, T) + (1 - a) * F.cross_entropy(s.reshape(-1, C), y.reshape(-1))


def dl_transposed(s, t, y, T, a):  # cross_entropy on [B, C, T] logits with [B, T] labels is right too
    ce = F.cross_entropy(s.transpose(1, -1), y) if s.dim() == 3 else F.cross_entropy(s, y)
    return a * kd_manual(s, t, T) + (1 - a) * ce


RIGHT = [
    ("soft_targets", lambda z, T: F.softmax(z / T, dim=z.dim() - 1)),
    ("soft_targets", stable_softmax),
    ("soft_targets", lambda z, T: torch.exp(F.log_softmax(z / T, dim=-1))),
    ("kd_loss", kd_with_kl_div),
    ("kd_loss", kd_manual),
    ("kd_loss", lambda s, t, T: T**2 * F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t.detach() / T, -1),
                                               reduction="sum", log_target=True) / s[..., 0].numel()),
    ("distillation_loss", dl_right),
    ("distillation_loss", dl_transposed),
    ("hint_loss", lambda s, t, r: F.mse_loss(r(s), t.detach())),
    ("hint_loss", lambda s, t, r: (r(s) - t.detach()).pow(2).sum() / t.numel()),
]


@pytest.mark.parametrize("name, fn", RIGHT, ids=[f"{n}-{i}" for i, (n, _) in enumerate(RIGHT)])
def test_other_right_answers_pass(name, fn):
    report = check(name, fn)
    assert report.passed, str(report)


def ce(s, y):
    return F.cross_entropy(s.reshape(-1, s.shape[-1]), y.reshape(-1))


WRONG = [
    # soft_targets
    ("soft_targets", "dividing by T squared", lambda z, T: torch.softmax(z / T**2, dim=-1)),
    ("soft_targets", "normalising over every element", lambda z, T: torch.softmax((z / T).flatten(), 0).view_as(z)),
    ("soft_targets", "softmax over dim -2", lambda z, T: torch.softmax(z / T, dim=-2)),
    ("soft_targets", "clamping logits to ±50 'against overflow'", lambda z, T: torch.softmax(z.clamp(-50, 50) / T, -1)),
    ("soft_targets", "temperature as an exponent of the probabilities",
     lambda z, T: torch.softmax(z, -1) ** (1 / T)),
    ("soft_targets", "returning the one-hot argmax", lambda z, T: F.one_hot(z.argmax(-1), z.shape[-1]).float()),
    # kd_loss
    ("kd_loss", "log-probabilities as F.kl_div's target without log_target=True",
     lambda s, t, T: T**2 * F.kl_div(F.log_softmax(s.reshape(-1, s.shape[-1]) / T, -1),
                                     F.log_softmax(t.detach().reshape(-1, s.shape[-1]) / T, -1), reduction="batchmean")),
    ("kd_loss", "dividing by T after log_softmax",
     lambda s, t, T: T**2 * F.kl_div(F.log_softmax(s, -1).reshape(-1, s.shape[-1]) / T,
                                     F.softmax(t.detach() / T, -1).reshape(-1, s.shape[-1]), reduction="batchmean")),
    ("kd_loss", "student at T = 1, teacher at T",
     lambda s, t, T: T**2 * F.kl_div(F.log_softmax(s, -1).reshape(-1, s.shape[-1]),
                                     F.softmax(t.detach() / T, -1).reshape(-1, s.shape[-1]), reduction="batchmean")),
    ("kd_loss", "mean squared error of the soft targets",
     lambda s, t, T: T**2 * F.mse_loss(F.softmax(s / T, -1), F.softmax(t.detach() / T, -1))),
    ("kd_loss", "symmetric KL", lambda s, t, T: 0.5 * (kd_with_kl_div(s, t, T) + kd_with_kl_div(t.detach(), s, T))),
    ("kd_loss", "only the first row", lambda s, t, T: kd_with_kl_div(s.reshape(-1, s.shape[-1])[:1],
                                                                     t.reshape(-1, s.shape[-1])[:1], T)),
    ("kd_loss", "rounding the logits to float16", lambda s, t, T: kd_with_kl_div(s.half().float(), t.half().float(), T)),
    # distillation_loss
    ("distillation_loss", "cross-entropy against the teacher's top class",
     lambda s, t, y, T, a: a * kd_with_kl_div(s, t, T) + (1 - a) * ce(s, t.argmax(-1))),
    ("distillation_loss", "cross-entropy of probabilities (softmax twice)",
     lambda s, t, y, T, a: a * kd_with_kl_div(s, t, T) + (1 - a) * ce(F.softmax(s, -1), y)),
    ("distillation_loss", "nll_loss on raw logits",
     lambda s, t, y, T, a: a * kd_with_kl_div(s, t, T) + (1 - a) * F.nll_loss(s.reshape(-1, s.shape[-1]), y.reshape(-1))),
    ("distillation_loss", "cross-entropy summed over rows",
     lambda s, t, y, T, a: a * kd_with_kl_div(s, t, T) + (1 - a) * F.cross_entropy(
         s.reshape(-1, s.shape[-1]), y.reshape(-1), reduction="sum")),
    ("distillation_loss", "alpha applied twice",
     lambda s, t, y, T, a: a * a * kd_with_kl_div(s, t, T) + (1 - a) * ce(s, y)),
    ("distillation_loss", "the T² applied to the whole sum",
     lambda s, t, y, T, a: T**2 * (a * kd_with_kl_div(s, t, T) / T**2 + (1 - a) * ce(s, y))),
    ("distillation_loss", "the student's gradient cut (.detach() on the wrong side)",
     lambda s, t, y, T, a: dl_right(s.detach(), t, y, T, a)),
    # hint_loss
    ("hint_loss", "cosine distance", lambda s, t, r: (1 - F.cosine_similarity(r(s), t.detach(), dim=1)).mean()),
    ("hint_loss", "normalised features", lambda s, t, r: F.mse_loss(F.normalize(r(s), dim=1), F.normalize(t.detach(), dim=1))),
    ("hint_loss", "the teacher's mean removed", lambda s, t, r: F.mse_loss(r(s), (t - t.mean(0)).detach())),
    ("hint_loss", "a frozen student side", lambda s, t, r: F.mse_loss(r(s).detach(), t.detach())),
    ("hint_loss", "sum over channels, mean elsewhere", lambda s, t, r: ((r(s) - t.detach()) ** 2).sum(1).mean()),
]


@pytest.mark.parametrize("name, what, fn", WRONG, ids=[f"{n}-{w.replace(' ', '-')}" for n, w, _ in WRONG])
def test_unregistered_wrong_answers_are_rejected(name, what, fn):
    report = check(name, fn)
    assert report.status == "failed", f"{what} was accepted"
    assert report.hint and "Traceback" not in str(report)


def test_report_for_overflow_names_the_problem():
    report = check("soft_targets", lambda z, T: torch.exp(z / T) / torch.exp(z / T).sum(-1, keepdim=True))
    text = str(report)
    assert "huge logits" in text and "NaN" in text and "overflow" in report.hint


def test_report_for_a_teacher_gradient_says_detach():
    report = check("kd_loss", lambda s, t, T: T * T * F.kl_div(F.log_softmax(s.reshape(-1, s.shape[-1]) / T, -1),
                                                               F.softmax(t.reshape(-1, s.shape[-1]) / T, -1),
                                                               reduction="batchmean"))
    assert report.status == "failed" and report.n_passed == report.n_total - 1
    assert "detach" in str(report) and "teacher" in str(report)
