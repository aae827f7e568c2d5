"""The distillation checkers, beyond what tests/test_checkers.py proves for every checker.

1. Right answers written in other ways (F.kl_div, a manual log-sum-exp, torch.no_grad for the
   teacher, ...) pass: a checker must not insist on one spelling.
2. Wrong answers that are *not* in the registry of known mistakes are rejected too: the cases,
   not the list of mistakes, are what catches a bug.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minicomp.grading import check

pytestmark = pytest.mark.usefixtures("one_thread")   # (conftest.py)


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


def soft_targets_numpy(z, T):
    a = z.numpy() / T
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)   # a float64 numpy array


def kd_cross_entropy_minus_entropy(s, t, T):
    log_p_t = F.log_softmax(t.detach() / T, -1)
    cross = -(log_p_t.exp() * F.log_softmax(s / T, -1)).sum(-1)
    entropy = -(log_p_t.exp() * log_p_t).sum(-1)
    return T * T * (cross - entropy).mean()


def dl_lerp(s, t, y, T, a):
    return torch.lerp(F.cross_entropy(s.reshape(-1, s.shape[-1]), y.reshape(-1)), kd_manual(s, t, T), a)


def dl_gather(s, t, y, T, a):   # cross-entropy by hand, and the KD term skipped where alpha = 0
    ce = -F.log_softmax(s, -1).gather(-1, y.unsqueeze(-1)).mean()
    return ce if a == 0 else a * kd_with_kl_div(s, t, T) + (1 - a) * ce


RIGHT = [
    ("soft_targets", lambda z, T: F.softmax(z / T, dim=z.dim() - 1)),
    ("soft_targets", stable_softmax),
    ("soft_targets", lambda z, T: torch.exp(F.log_softmax(z / T, dim=-1))),
    ("soft_targets", soft_targets_numpy),
    ("soft_targets", lambda z, T: torch.softmax(z.double() / T, -1)),
    ("soft_targets", lambda z, T: torch.exp(z / T - torch.logsumexp(z / T, -1, keepdim=True))),
    ("kd_loss", kd_with_kl_div),
    ("kd_loss", kd_manual),
    ("kd_loss", lambda s, t, T: T**2 * F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t.detach() / T, -1),
                                               reduction="sum", log_target=True) / s[..., 0].numel()),
    ("kd_loss", kd_cross_entropy_minus_entropy),
    ("kd_loss", lambda s, t, T: T * T * F.kl_div(F.log_softmax(s.double() / T, -1), F.log_softmax(t.data.double() / T, -1),
                                                reduction="none", log_target=True).sum(-1).mean()),
    ("distillation_loss", dl_right),
    ("distillation_loss", dl_lerp),
    ("distillation_loss", dl_gather),
    ("distillation_loss", dl_transposed),
    ("hint_loss", lambda s, t, r: F.mse_loss(r(s), t.detach())),
    ("hint_loss", lambda s, t, r: (r(s) - t.detach()).pow(2).sum() / t.numel()),
    ("hint_loss", lambda s, t, r: torch.linalg.vector_norm(t.data - r(s)) ** 2 / t.numel()),
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
    ("distillation_loss", "the cross-entropy built from detached student logits (right value, wrong gradient)",
     lambda s, t, y, T, a: a * kd_with_kl_div(s, t, T) + (1 - a) * ce(s.detach(), y)),
    ("distillation_loss", "the T² applied to the cross-entropy too",
     lambda s, t, y, T, a: a * kd_with_kl_div(s, t, T) + (1 - a) * T * T * ce(s, y)),
    # hint_loss
    ("hint_loss", "cosine distance", lambda s, t, r: (1 - F.cosine_similarity(r(s), t.detach(), dim=1)).mean()),
    ("hint_loss", "normalised features", lambda s, t, r: F.mse_loss(F.normalize(r(s), dim=1), F.normalize(t.detach(), dim=1))),
    ("hint_loss", "the teacher's mean removed", lambda s, t, r: F.mse_loss(r(s), (t - t.mean(0)).detach())),
    ("hint_loss", "a frozen student side", lambda s, t, r: F.mse_loss(r(s).detach(), t.detach())),
    ("hint_loss", "sum over channels, mean elsewhere", lambda s, t, r: ((r(s) - t.detach()) ** 2).sum(1).mean()),
    ("hint_loss", "the adapter's output detached", lambda s, t, r: F.mse_loss(r(s).detach(), t.detach())),
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


# Wrong answers that are not registered mistakes themselves, but make the same error as one on the
# first failing case: the report must name that one (and not another that happens to agree there).
def stable_softmax_max_no_keepdim(z, T):
    z = z / T
    e = torch.exp(z - z.max(dim=-1).values)
    return e / e.sum(-1, keepdim=True)


NAMED = [
    ("soft_targets", "F.softmax without dim (dim 0 for 3-D logits)", lambda z, T: F.softmax(z / T), "softmax without dim="),
    ("soft_targets", "the row maximum without keepdim", stable_softmax_max_no_keepdim, "keepdim=True"),
    ("kd_loss", "the student detached, the teacher not", lambda s, t, T: kd_with_kl_div(s.detach(), t.detach(), T),
     "detaching the student"),
    ("kd_loss", "T applied to the student only (the by-hand student [0, 0] hides it)",
     lambda s, t, T: T**2 * F.kl_div(F.log_softmax(s / T, -1).reshape(-1, s.shape[-1]),
                                     F.softmax(t.detach(), -1).reshape(-1, s.shape[-1]), reduction="batchmean"),
     "softening only the student"),
    ("kd_loss", "T applied to the teacher only",
     lambda s, t, T: T**2 * F.kl_div(F.log_softmax(s, -1).reshape(-1, s.shape[-1]),
                                     F.softmax(t.detach() / T, -1).reshape(-1, s.shape[-1]), reduction="batchmean"),
     "softening only the teacher"),
    ("kd_loss", "F.log_softmax without dim",
     lambda s, t, T: T**2 * (F.softmax(t.detach() / T) * (F.log_softmax(t.detach() / T) - F.log_softmax(s / T))).sum(-1).mean(),
     "log_softmax without dim="),
    ("distillation_loss", "the KD term computed from student_logits.detach() (right value, no gradient)",
     lambda s, t, y, T, a: a * kd_manual(s.detach(), t, T) + (1 - a) * ce(s, y), "detached student logits"),
    ("distillation_loss", "alpha forgotten on the KD term", lambda s, t, y, T, a: kd_manual(s, t, T) + (1 - a) * ce(s, y),
     "forgetting alpha on the KD term"),
    ("hint_loss", "FitNets' ½ · sum (the by-hand batch of 2 made it look like averaging over the batch)",
     lambda s, t, r: 0.5 * F.mse_loss(r(s), t.detach(), reduction="sum"), "FitNets' ½‖·‖² as written, a sum"),
    ("hint_loss", "FitNets' ½ · sum per example", lambda s, t, r: 0.5 * F.mse_loss(r(s), t.detach(), reduction="sum") / len(s),
     "averaged over the batch"),
    ("hint_loss", "the student's feature detached", lambda s, t, r: F.mse_loss(r(s.detach()), t.detach()),
     "detaching the student"),
]


@pytest.mark.parametrize("name, what, fn, named", NAMED, ids=[f"{n}-{w.replace(' ', '-')}" for n, w, _, _ in NAMED])
def test_report_names_the_mistake_made(name, what, fn, named):
    report = check(name, fn)
    assert report.status == "failed", f"{what} was accepted"
    assert report.hint.startswith("this looks like") and named in report.hint, f"{what}: {report.hint}"


def test_report_for_a_detached_term_says_the_gradient_is_wrong():
    """A loss whose value is right but one of whose terms trains nothing used to pass."""
    report = check("distillation_loss", lambda s, t, y, T, a: a * kd_manual(s, t, T) + (1 - a) * ce(s.detach(), y))
    assert report.status == "failed"
    assert "the value is right, but the gradient" in str(report) and "detached" in str(report)


def test_a_loss_that_ran_backward_itself_is_reported_not_a_crash():
    def kd_and_backward(s, t, T):
        loss = kd_with_kl_div(s, t, T)
        if loss.requires_grad:
            loss.backward()   # frees the graph the check (and a training loop) still needs
        return loss

    report = check("kd_loss", kd_and_backward)
    assert report.status == "failed" and ".backward()" in str(report) and "Traceback" not in str(report)


def _backward_kept(loss):
    if loss.requires_grad:
        loss.backward(retain_graph=True)   # the graph survives, but .grad is filled: the loop's backward doubles it
    return loss


@pytest.mark.parametrize("name,fn", [
    ("kd_loss", lambda s, t, T: _backward_kept(kd_with_kl_div(s, t, T))),
    ("distillation_loss", lambda s, t, y, T, a: _backward_kept(dl_right(s, t, y, T, a))),
    ("hint_loss", lambda s, t, r: _backward_kept(F.mse_loss(r(s), t.detach()))),
], ids=["kd_loss", "distillation_loss", "hint_loss"])
def test_a_loss_that_ran_backward_with_retain_graph_is_caught(name, fn):
    """These passed: with retain_graph=True the graph is still there, only .grad gives it away."""
    report = check(name, fn)
    assert report.status == "failed" and "already ran .backward()" in str(report)
    assert "without calling .backward()" in str(report) and "Traceback" not in str(report)


@pytest.mark.parametrize("name,fn", [
    ("kd_loss", lambda s, t, T: kd_with_kl_div(s, t, T).detach().numpy()),
    ("distillation_loss", lambda s, t, y, T, a: dl_right(s, t, y, T, a).detach().numpy()),
    ("hint_loss", lambda s, t, r: np.float32(F.mse_loss(r(s), t.detach()).item())),
], ids=["kd_loss", "distillation_loss", "hint_loss"])
def test_a_loss_in_numpy_is_refused(name, fn):
    """These passed: compare_values reads a numpy answer by its values, and a loss has no other use
    than its gradient, which numpy has lost."""
    report = check(name, fn)
    assert report.status == "failed" and "a loss must stay a tensor for .backward()" in str(report)


def test_cross_entropy_on_3d_logits_is_named_by_the_error_it_raises():
    """The mistake the exercise warns of raises inside F.cross_entropy; it used to get only the
    general hint (a raised error was never matched with a known mistake)."""
    def distillation_loss(s, t, y, T, a):
        return a * kd_with_kl_div(s, t, T) + (1 - a) * F.cross_entropy(s, y)   # [B, T, C] not flattened

    report = check("distillation_loss", distillation_loss)
    assert report.hint.startswith("this looks like cross-entropy on [B, T, C] logits without flattening them")
    assert "F.cross_entropy(s, y)" in str(report)   # the learner's own line, not PyTorch's
