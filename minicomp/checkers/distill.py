"""Checkers for lessons 01-03: soft targets, the KD loss, the distillation loss, the hint loss.

Cases go from hand-checkable (two classes, logits built from ln 3 so the probabilities are 3/4
and 1/4) to the ones that catch real bugs: 3-D logits [B, T, C] (every leading dimension is a
row), logits of ±1000 (naive exp overflows, log of a softmax underflows), high temperature, and
a teacher whose logits carry a gradient (the loss must not send one back).

The losses are compared by value, then by where their gradient goes (not into the teacher; into
the student and the adapter), then by that gradient itself, so a term computed from a detached
copy of the student's output, whose value is right but which trains nothing, is caught too.
"""

import math
from collections import Counter

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from minicomp.grading import Case, Mistake, compare_values, register

LN3 = math.log(3.0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int, scale: float = 1.0, grad: bool = False, dtype=torch.float32) -> torch.Tensor:
    x = (torch.randn(*shape, generator=_gen(seed)) * scale).to(dtype)
    return x.requires_grad_(grad)


def _huge(seed: int) -> torch.Tensor:
    """[4, 6] logits of ±1000 with a different top class in every row."""
    x = torch.full((4, 6), -1000.0)
    x[torch.arange(4), torch.randperm(6, generator=_gen(seed))[:4]] = 1000.0
    return x


# ── gradients: the teacher is frozen, the student is not ────────────────────────────────────
def _leaves(t) -> list[torch.Tensor]:
    """The tensors that `t.backward()` would accumulate a gradient into."""
    found, seen, stack = [], set(), [getattr(t, "grad_fn", None)]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):  # an AccumulateGrad node: a leaf tensor that requires grad
            found.append(fn.variable)
        stack += [f for f, _ in fn.next_functions]
    return found


def _leaf_shapes(t) -> Counter:
    """Shapes of the tensors that `t.backward()` would accumulate a gradient into."""
    return Counter(tuple(v.shape) for v in _leaves(t))


def _gradients(t) -> dict | None:
    """{shape: ∂t/∂leaf} for each leaf of a 0-d `t` whose shape no other leaf has; None when `t`'s
    graph was already freed (by a .backward() inside the function that returned it)."""
    leaves = _leaves(t)
    if t.dim() != 0 or not leaves:
        return {}
    count = Counter(tuple(v.shape) for v in leaves)
    try:
        grads = torch.autograd.grad(t, leaves, retain_graph=True, allow_unused=True)
    except RuntimeError:   # "Trying to backward through the graph a second time"
        return None
    return {tuple(v.shape): (torch.zeros_like(v) if g is None else g)
            for v, g in zip(leaves, grads) if count[tuple(v.shape)] == 1}


def _compare_with_grads(atol: float, rtol: float):
    """Compare the loss's value, then which tensors it sends a gradient into (not the teacher; the
    student and the adapter), then that gradient itself: a term built from a detached copy of the
    student's output leaves the value right and the gradient wrong."""
    def compare(got, expected):
        if isinstance(got, (np.ndarray, np.generic, int, float)) and not isinstance(got, bool):
            # (compare_values would read a numpy answer by its values): the gradient is what a loss is for
            kind = "a numpy array" if isinstance(got, np.ndarray) else f"{type(got).__name__} {got!r}"
            return (f"expected a torch.Tensor but got {kind}: a loss must stay a tensor for .backward() to train "
                    "through it; return it without .item(), float() or .numpy()")
        problem = compare_values(got, expected, atol, rtol)
        if problem is not None or not isinstance(got, torch.Tensor):
            return problem
        g, e = _leaf_shapes(got), _leaf_shapes(expected)
        if g - e:
            shapes = ", ".join(str(s) for s in (g - e))
            return (f"the value is right, but your loss sends a gradient into a tensor of shape {shapes} "
                    "that must stay frozen: the teacher. Detach its side (teacher.detach()) or compute "
                    "it under torch.no_grad()")
        if e - g:
            shapes = ", ".join(str(s) for s in (e - g))
            return (f"the value is right, but no gradient reaches a tensor of shape {shapes} that should be "
                    "trained (the student's output, or the adapter's weights); build the loss from them "
                    "without .item(), .detach() or torch.no_grad()")
        grad_got, grad_expected = _gradients(got), _gradients(expected)
        if grad_got is None:
            return ("the value is right, but your function already ran .backward() through it, which frees "
                    "its graph: the training loop's own loss.backward() would then fail. Return the loss "
                    "without calling .backward()")
        if any(v.grad is not None for v in _leaves(got)):   # the case's tensors come fresh, without .grad
            return ("the value is right, but your function already ran .backward(), so the gradients are in "
                    ".grad already: the training loop's own loss.backward() would add them a second time. "
                    "Return the loss without calling .backward()")
        for shape, want in grad_expected.items():
            if shape in grad_got:
                problem = compare_values(grad_got[shape].to(want.dtype), want, atol, rtol)
                if problem is not None:
                    return (f"the value is right, but the gradient it sends into the tensor of shape {shape} "
                            f"is not ({problem}): is one of its terms built from a detached copy of the "
                            "student's output (.detach(), .data, torch.no_grad())?")
        return None
    return compare


# ── soft_targets(logits, temperature) ────────────────────────────────────────────────────────
def _soft_targets(logits, temperature):
    from minicomp.distill import soft_targets

    return soft_targets(logits, temperature)


def _soft_cases():
    return [
        Case("logits [ln 3, 0] at T = 1: the answer is [3/4, 1/4]", (torch.tensor([[LN3, 0.0]]), 1.0)),
        Case("two rows at T = 2: [2 ln 3, 0] -> [3/4, 1/4], [0, 0] -> [1/2, 1/2]",
             (torch.tensor([[2 * LN3, 0.0], [0.0, 0.0]]), 2.0)),
        Case("a batch of 5 rows, 10 classes, T = 4", (_randn(5, 10, seed=1, scale=3.0), 4.0)),
        Case("3-D logits [B, T, C] = [2, 3, 7] (a sequence model), T = 2", (_randn(2, 3, 7, seed=2, scale=3.0), 2.0)),
        Case("huge logits of ±1000 at T = 1", (_huge(3), 1.0)),
        Case("huge logits of ±1000 at T = 10", (_huge(4), 10.0)),
        Case("rows whose maxima are far apart, [[1000, 0], [-1000, -1001]]: each row needs its own maximum",
             (torch.tensor([[1000.0, 0.0], [-1000.0, -1001.0]]), 1.0)),
        Case("a high temperature, T = 100: nearly uniform", (_randn(3, 8, seed=5, scale=5.0), 100.0)),
    ]


def _naive_softmax(z, T):
    e = torch.exp(z / T)
    return e / e.sum(-1, keepdim=True)


def _implicit_dim(z: torch.Tensor) -> int:
    """The dimension F.softmax(z) / F.log_softmax(z) picks when no dim= is given (deprecated)."""
    return 0 if z.dim() in (0, 1, 3) else 1


def _global_max(z, T):
    """(a mistake) The maximum of the whole tensor: exact for rows near it, NaN for rows far below."""
    e = torch.exp((z - z.max()) / T)
    return e / e.sum(-1, keepdim=True)


def _sum_over_everything(z, T):
    """(a mistake) sum() without dim: every row is divided by the whole batch's total."""
    e = torch.exp((z - z.max(dim=-1, keepdim=True).values) / T)
    return e / e.sum()


def _max_without_keepdim(z, T):
    """(a mistake) z.max(-1).values is [...] not [..., 1]: it lines up with the classes, not the rows."""
    z = z / T
    e = torch.exp(z - z.max(dim=-1).values)
    return e / e.sum(-1, keepdim=True)


def _sum_without_keepdim(z, T):
    """(a mistake) The row sums [...] broadcast against the classes, not the rows."""
    z = z / T
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(-1)


register(
    "soft_targets",
    params=("logits", "temperature"),
    reference=_soft_targets,
    cases=_soft_cases,
    mistakes=[
        Mistake("forgetting to divide by the temperature", lambda z, T: torch.softmax(z, dim=-1),
                "Divide the logits by T before the softmax: softmax(logits / T)."),
        Mistake("multiplying by the temperature", lambda z, T: torch.softmax(z * T, dim=-1),
                "A high temperature should flatten the distribution: divide by T, don't multiply."),
        Mistake("exp without subtracting the maximum (overflow)", _naive_softmax,
                "exp(1000) overflows to inf and inf / inf is NaN. Subtract each row's maximum before "
                "exp (the answer does not change), or use torch.softmax, which does it for you."),
        Mistake("softmax over the first dimension (dim=0)", lambda z, T: torch.softmax(z / T, dim=0),
                "The classes are the last dimension: use dim=-1, so each row sums to 1."),
        Mistake("softmax over dim=1", lambda z, T: torch.softmax(z / T, dim=1),
                "dim=1 is the class dimension only for 2-D logits; for [B, T, C] it is T. Use dim=-1."),
        Mistake("log_softmax instead of softmax", lambda z, T: F.log_softmax(z / T, dim=-1),
                "Return probabilities (softmax), not log-probabilities (log_softmax)."),
        Mistake("dividing the probabilities by T after the softmax", lambda z, T: torch.softmax(z, dim=-1) / T,
                "The temperature goes inside: softmax(logits / T). Dividing afterwards breaks the sum to 1."),
        Mistake("softmax without dim=", lambda z, T: torch.softmax(z / T, dim=_implicit_dim(z)),
                "Without dim=, F.softmax guesses the dimension: dim=1 for 2-D logits, but dim=0 for 3-D "
                "[B, T, C] ones (PyTorch warns when it guesses). Always pass dim=-1."),
        Mistake("the maximum of the whole tensor, not of each row", _global_max,
                "z.max() with no dim is one number for the whole batch: a row far below it underflows to "
                "exp(−2000) = 0 everywhere, and 0 / 0 is NaN. Subtract each row's own maximum: "
                "z.max(dim=-1, keepdim=True).values."),
        Mistake("summing over the whole batch (sum() without dim)", _sum_over_everything,
                "e.sum() adds up every row, so the rows no longer each sum to 1. Sum over the classes: "
                "e.sum(dim=-1, keepdim=True)."),
        Mistake("the row maximum without keepdim=True", _max_without_keepdim,
                "z.max(dim=-1).values has shape [B], not [B, 1]: subtracting it from [B, C] logits lines it "
                "up with the classes instead of the rows (or fails, when B ≠ C). Use "
                "z.max(dim=-1, keepdim=True).values."),
        Mistake("the row sum without keepdim=True", _sum_without_keepdim,
                "e.sum(-1) has shape [B], not [B, 1]: dividing [B, C] by it divides each class by another "
                "row's sum (or fails, when B ≠ C). Use e.sum(-1, keepdim=True)."),
    ],
    hint="Compute softmax(logits / T) over the last dimension; torch.softmax(x, dim=-1) is stable on huge logits.",
)


# ── kd_loss(student_logits, teacher_logits, temperature) ─────────────────────────────────────
def _kd_loss(student_logits, teacher_logits, temperature):
    from minicomp.distill import kd_loss

    return kd_loss(student_logits, teacher_logits, temperature)


def _kd_cases():
    return [
        Case("student [0, 0], teacher [ln 3, 0], T = 1: KL = 3/4 ln(3/2) + 1/4 ln(1/2) ≈ 0.1308",
             (torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]]), 1.0)),
        Case("student [0, 0], teacher [2 ln 3, 0], T = 2: the same KL, times T² = 4",
             (torch.tensor([[0.0, 0.0]]), torch.tensor([[2 * LN3, 0.0]]), 2.0)),
        Case("a batch of 8 rows, 10 classes, T = 4",
             (_randn(8, 10, seed=11, scale=2.0, grad=True), _randn(8, 10, seed=12, scale=4.0), 4.0)),
        Case("3-D logits [B, T, C] = [2, 3, 5]: the mean is over all 6 rows, T = 2",
             (_randn(2, 3, 5, seed=13, scale=2.0, grad=True), _randn(2, 3, 5, seed=14, scale=3.0), 2.0)),
        Case("huge logits of ±1000 at T = 1, student and teacher disagree",
             (_huge(15).requires_grad_(), _huge(16), 1.0)),
        Case("huge logits of ±1000 at T = 20", (_huge(17), _huge(18), 20.0)),
        # float64: at T = 100 the KL is ~1e-3 before the T² = 10⁴ factor, so float32 rounding in
        # a correct formula (e.g. Σ p log p − Σ p log q) can already move the 4th digit.
        Case("a high temperature, T = 100, in float64",
             (_randn(4, 6, seed=19, scale=5.0, dtype=torch.float64),
              _randn(4, 6, seed=20, scale=5.0, dtype=torch.float64), 100.0)),
        Case("the teacher's logits carry a gradient (as they do fresh out of a model)",
             (_randn(4, 5, seed=21, scale=2.0, grad=True), _randn(4, 5, seed=22, scale=2.0, grad=True), 3.0)),
    ]


def _lsm(z, T):
    return F.log_softmax(z / T, dim=-1)


def _kd_with_eps(s, t, T, eps=1e-8):
    """(a mistake) log(softmax + eps): the logs are capped at log(eps)."""
    p_t, p_s = torch.softmax(t.detach() / T, -1), torch.softmax(s / T, -1)
    return T * T * (p_t * (torch.log(p_t + eps) - torch.log(p_s + eps))).sum(-1).mean()


def _kl(log_p_t, log_p_s):  # per row, [..., C] -> [...]
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)


register(
    "kd_loss",
    params=("student_logits", "teacher_logits", "temperature"),
    reference=_kd_loss,
    cases=_kd_cases,
    compare=_compare_with_grads(1e-5, 1e-4),
    mistakes=[  # value-right mistakes first: a wrong value never matches them, a right one must
        Mistake("letting the gradient reach the teacher", lambda s, t, T: T * T * _kl(_lsm(t, T), _lsm(s, T)).mean(),
                "The teacher is frozen: use teacher_logits.detach()."),
        Mistake("detaching the student", lambda s, t, T: T * T * _kl(_lsm(t.detach(), T), _lsm(s.detach(), T)).mean(),
                "Only the teacher is frozen. The gradient of this loss is what trains the student, so keep "
                "student_logits as they are (no .detach(), no torch.no_grad()) and detach teacher_logits."),
        Mistake("forgetting the T² factor", lambda s, t, T: _kl(_lsm(t.detach(), T), _lsm(s, T)).mean(),
                "Multiply by T². Softening by T shrinks the gradients by 1/T²; T² puts them back on the "
                "scale of the hard-label loss (Hinton et al. 2015)."),
        Mistake("dividing by T² instead of multiplying", lambda s, t, T: _kl(_lsm(t.detach(), T), _lsm(s, T)).mean() / (T * T),
                "Multiply by T², don't divide: softening by T already shrinks the gradients by 1/T², and the "
                "factor T² puts them back on the scale of the hard-label loss."),
        Mistake("multiplying by T instead of T²", lambda s, t, T: T * _kl(_lsm(t.detach(), T), _lsm(s, T)).mean(),
                "The factor is T squared."),
        Mistake("KL in the wrong direction, KL(p_student ‖ p_teacher)",
                lambda s, t, T: T * T * _kl(_lsm(s, T), _lsm(t.detach(), T)).mean(),
                "The teacher's distribution is the target: KL(p_teacher ‖ p_student) = Σ p_t (log p_t − log p_s). "
                "With F.kl_div(input, target) the input is the student's log-probabilities."),
        Mistake("reduction='mean' instead of 'batchmean'",
                lambda s, t, T: T * T * F.kl_div(_lsm(s, T), _lsm(t.detach(), T), reduction="mean", log_target=True),
                "reduction='mean' divides by rows × classes; the KL divergence is a sum over classes, "
                "averaged over rows ('batchmean')."),
        Mistake("averaging over the first dimension only",
                lambda s, t, T: T * T * F.kl_div(_lsm(s, T), _lsm(t.detach(), T), reduction="batchmean", log_target=True),
                "For [B, T, C] logits every one of the B·T positions is a row: F.kl_div's 'batchmean' divides "
                "by B only, so reshape to [-1, C] first (or sum over classes and take .mean())."),
        Mistake("log-probabilities as F.kl_div's target without log_target=True",
                lambda s, t, T: T * T * F.kl_div(_lsm(s, T), _lsm(t.detach(), T), reduction="sum") / s[..., 0].numel(),
                "F.kl_div reads its target as probabilities unless you pass log_target=True: give it "
                "F.softmax(teacher / T) as the target, or keep the log-probabilities and add log_target=True."),
        Mistake("passing probabilities where F.kl_div expects log-probabilities",
                lambda s, t, T: T * T * F.kl_div(torch.softmax(s / T, -1), torch.softmax(t.detach() / T, -1),
                                                 reduction="sum") / s[..., 0].numel(),
                "F.kl_div(input, target) wants input = log-probabilities (F.log_softmax), not probabilities."),
        Mistake("taking log of a softmax (underflows on huge logits)",
                lambda s, t, T: T * T * (torch.softmax(t.detach() / T, -1) * (torch.log(torch.softmax(t.detach() / T, -1))
                                         - torch.log(torch.softmax(s / T, -1)))).sum(-1).mean(),
                "softmax(-2000) underflows to 0 and log(0) = -inf. Use F.log_softmax, which stays finite; "
                "and count 0 · log 0 as 0."),
        Mistake("log(softmax + a small epsilon)", _kd_with_eps,
                "Adding an epsilon caps log p at log(1e-8) ≈ −18.4, so where the teacher is confident and "
                "the student is not, the loss comes out far too small. Use F.log_softmax(logits / T, dim=-1): "
                "it is exact and never -inf."),
        Mistake("the per-row losses, not their mean", lambda s, t, T: T * T * _kl(_lsm(t.detach(), T), _lsm(s, T)),
                "A loss is one number, a 0-dim tensor: sum the KL over the classes, then take .mean() over "
                "every row."),
        Mistake(".mean(0): the first dimension only", lambda s, t, T: T * T * _kl(_lsm(t.detach(), T), _lsm(s, T)).mean(0),
                "For [B, T, C] logits, .mean(0) averages over B only and leaves T values: take .mean() with "
                "no dim, over every row."),
        Mistake("not dividing the logits by T", lambda s, t, T: T * T * _kl(_lsm(t.detach(), 1.0), _lsm(s, 1.0)).mean(),
                "Both distributions are softened: softmax(student / T) and softmax(teacher / T)."),
        Mistake("softening only the teacher", lambda s, t, T: T * T * _kl(_lsm(t.detach(), T), _lsm(s, 1.0)).mean(),
                "The student's logits are divided by T too: compare log_softmax(student / T) with "
                "softmax(teacher / T), two distributions at the same temperature."),
        Mistake("softening only the student", lambda s, t, T: T * T * _kl(_lsm(t.detach(), 1.0), _lsm(s, T)).mean(),
                "The teacher's logits are divided by T too: the soft targets are softmax(teacher / T)."),
        Mistake("log_softmax without dim=",
                lambda s, t, T: T * T * _kl(F.log_softmax(t.detach() / T, dim=_implicit_dim(t)),
                                            F.log_softmax(s / T, dim=_implicit_dim(s))).mean(),
                "Without dim=, F.log_softmax (and F.softmax) guess the dimension: dim=1 for 2-D logits, but "
                "dim=0 for 3-D [B, T, C] ones. Always pass dim=-1, the classes."),
        Mistake("cross-entropy with the soft targets instead of KL",
                lambda s, t, T: T * T * -(torch.softmax(t.detach() / T, -1) * _lsm(s, T)).sum(-1).mean(),
                "Soft cross-entropy has the same gradient but not the same value: KL subtracts the teacher's "
                "entropy, so it is 0 when the student matches the teacher. Use Σ p_t (log p_t − log p_s)."),
        Mistake("summing over rows instead of averaging", lambda s, t, T: T * T * _kl(_lsm(t.detach(), T), _lsm(s, T)).sum(),
                "Average over rows (batchmean), so the loss does not grow with the batch size."),
    ],
    hint="T² · Σ_c p_t,c (log p_t,c − log p_s,c), averaged over rows, with p = softmax(logits / T) over the last "
         "dimension; use F.log_softmax for the logs and detach the teacher.",
)


# ── distillation_loss(student_logits, teacher_logits, labels, temperature, alpha) ───────────
def _distillation_loss(student_logits, teacher_logits, labels, temperature, alpha):
    from minicomp.distill import distillation_loss

    return distillation_loss(student_logits, teacher_logits, labels, temperature, alpha)


def _labels(*shape, C, seed):
    return torch.randint(0, C, shape, generator=_gen(seed))


def _dl_cases():
    return [
        Case("student [0, 0], teacher [ln 3, 0], label 0, T = 1, alpha = 0.5: (0.1308 + ln 2) / 2",
             (torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]]), torch.tensor([0]), 1.0, 0.5)),
        Case("the same pair at T = 2 (teacher [2 ln 3, 0]), label 1, alpha = 0.9",
             (torch.tensor([[0.0, 0.0]]), torch.tensor([[2 * LN3, 0.0]]), torch.tensor([1]), 2.0, 0.9)),
        Case("a batch of 8 rows, 10 classes, T = 4, alpha = 0.9",
             (_randn(8, 10, seed=31, scale=2.0, grad=True), _randn(8, 10, seed=32, scale=4.0),
              _labels(8, C=10, seed=33), 4.0, 0.9)),
        Case("3-D logits [B, T, C] = [2, 3, 5] with labels [2, 3], T = 2, alpha = 0.7",
             (_randn(2, 3, 5, seed=34, scale=2.0, grad=True), _randn(2, 3, 5, seed=35, scale=3.0),
              _labels(2, 3, C=5, seed=36), 2.0, 0.7)),
        Case("alpha = 0: only the labels count", (_randn(6, 4, seed=37, scale=2.0), _randn(6, 4, seed=38),
                                                   _labels(6, C=4, seed=39), 3.0, 0.0)),
        Case("alpha = 1: only the teacher counts", (_randn(6, 4, seed=40, scale=2.0), _randn(6, 4, seed=41),
                                                    _labels(6, C=4, seed=42), 3.0, 1.0)),
        Case("huge logits of ±1000 at T = 1, alpha = 0.3", (_huge(43).requires_grad_(), _huge(44),
                                                            _labels(4, C=6, seed=45), 1.0, 0.3)),
        Case("a high temperature, T = 50, alpha = 0.8",
             (_randn(5, 7, seed=46, scale=5.0), _randn(5, 7, seed=47, scale=5.0), _labels(5, C=7, seed=48), 50.0, 0.8)),
        Case("the teacher's logits carry a gradient",
             (_randn(4, 5, seed=49, grad=True), _randn(4, 5, seed=50, grad=True), _labels(4, C=5, seed=51), 2.0, 0.6)),
    ]


def _kd(s, t, T, square=True, direction="tp"):
    a, b = _lsm(t.detach(), T), _lsm(s, T)
    kl = _kl(a, b) if direction == "tp" else _kl(b, a)
    return (T * T if square else 1.0) * kl.mean()


def _ce(s, y, T=1.0):
    return F.cross_entropy(s.reshape(-1, s.shape[-1]) / T, y.reshape(-1))


register(
    "distillation_loss",
    params=("student_logits", "teacher_logits", "labels", "temperature", "alpha"),
    reference=_distillation_loss,
    cases=_dl_cases,
    compare=_compare_with_grads(1e-5, 1e-4),
    mistakes=[
        Mistake("letting the gradient reach the teacher",
                lambda s, t, y, T, a: a * T * T * _kl(_lsm(t, T), _lsm(s, T)).mean() + (1 - a) * _ce(s, y),
                "The teacher is frozen: use teacher_logits.detach()."),
        Mistake("alpha weighting the wrong term", lambda s, t, y, T, a: (1 - a) * _kd(s, t, T) + a * _ce(s, y),
                "Here alpha weights the teacher's term: alpha · KD + (1 − alpha) · CE. (Some libraries use the "
                "opposite convention; always check which term their alpha weights.)"),
        Mistake("cross-entropy at temperature T", lambda s, t, y, T, a: a * _kd(s, t, T) + (1 - a) * _ce(s, y, T),
                "The hard-label term uses the student's ordinary logits, T = 1, as at test time."),
        Mistake("forgetting T² in the KD term", lambda s, t, y, T, a: a * _kd(s, t, T, square=False) + (1 - a) * _ce(s, y),
                "The KD term is T² · KL; without T² the teacher's term fades as T grows."),
        Mistake("KL in the wrong direction", lambda s, t, y, T, a: a * _kd(s, t, T, direction="st") + (1 - a) * _ce(s, y),
                "Use KL(p_teacher ‖ p_student): the teacher's distribution is the target."),
        Mistake("cross_entropy given probabilities (softmax) instead of logits",
                lambda s, t, y, T, a: a * _kd(s, t, T) + (1 - a) * F.cross_entropy(
                    torch.softmax(s.reshape(-1, s.shape[-1]), -1), y.reshape(-1)),
                "F.cross_entropy applies the (log-)softmax itself: pass it the raw student logits."),
        Mistake("nll_loss on raw logits", lambda s, t, y, T, a: a * _kd(s, t, T) + (1 - a) * F.nll_loss(
                    s.reshape(-1, s.shape[-1]), y.reshape(-1)),
                "F.nll_loss expects log-probabilities (it only picks the label's entry and negates it): "
                "use F.cross_entropy on the logits, or F.nll_loss(F.log_softmax(logits, -1), labels)."),
        Mistake("cross_entropy with reduction='sum'", lambda s, t, y, T, a: a * _kd(s, t, T) + (1 - a) * F.cross_entropy(
                    s.reshape(-1, s.shape[-1]), y.reshape(-1), reduction="sum"),
                "Average the cross-entropy over rows, as the KD term is: F.cross_entropy's default "
                "reduction='mean'. Summed, it grows with the batch and drowns the teacher's term."),
        Mistake("forgetting (1 − alpha) on the cross-entropy", lambda s, t, y, T, a: a * _kd(s, t, T) + _ce(s, y),
                "The two weights add up to 1: alpha · KD + (1 − alpha) · CE."),
        Mistake("forgetting alpha on the KD term", lambda s, t, y, T, a: _kd(s, t, T) + (1 - a) * _ce(s, y),
                "The two weights add up to 1: alpha · KD + (1 − alpha) · CE."),
        Mistake("the KD term built from detached student logits",
                lambda s, t, y, T, a: a * _kd(s.detach(), t, T) + (1 - a) * _ce(s, y),
                "Only the teacher is detached. With student_logits.detach() in the KD term its value is "
                "right but it trains nothing: only the cross-entropy reaches the student (and at alpha = 1 "
                "nothing does)."),
        Mistake("the KD term without the temperature",
                lambda s, t, y, T, a: a * T * T * _kl(_lsm(t.detach(), 1.0), _lsm(s, 1.0)).mean() + (1 - a) * _ce(s, y),
                "In the KD term both distributions are softened: softmax(student / T) and softmax(teacher / T); "
                "only the cross-entropy uses T = 1."),
        Mistake("soft cross-entropy instead of KL in the KD term",
                lambda s, t, y, T, a: a * T * T * -(torch.softmax(t.detach() / T, -1) * _lsm(s, T)).sum(-1).mean()
                + (1 - a) * _ce(s, y),
                "The KD term is KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s), not −Σ p_t log p_s: the same gradient, "
                "but the value is off by the teacher's entropy. Does your kd_loss from task 1 pass its check?"),
        Mistake("cross-entropy on [B, T, C] logits without flattening them",
                lambda s, t, y, T, a: a * _kd(s, t, T) + (1 - a) * F.cross_entropy(s, y),
                "F.cross_entropy wants [N, C] logits and [N] labels (given 3-D logits, it takes dimension 1 for "
                "the classes): flatten both first, F.cross_entropy(student_logits.reshape(-1, C), labels.reshape(-1))."),
        Mistake("averaging the KD term over the first dimension only",
                lambda s, t, y, T, a: a * T * T * _kl(_lsm(t.detach(), T), _lsm(s, T)).sum() / s.shape[0] + (1 - a) * _ce(s, y),
                "For [B, T, C] logits all B·T positions are rows, for the KD term as for the cross-entropy."),
    ],
    hint="alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) (batchmean) + (1 − alpha) · cross_entropy(s, labels) at T = 1. "
         "If the KD term is the culprit, check your kd_loss from task 1 on its own first: check('kd_loss', kd_loss).",
)


# ── hint_loss(student_feature, teacher_feature, adapter) ─────────────────────────────────────
def _hint_loss(student_feature, teacher_feature, adapter):
    from minicomp.distill import hint_loss

    return hint_loss(student_feature, teacher_feature, adapter)


def _fixed_linear(weight) -> nn.Linear:
    """A hand-made, frozen adapter x -> x @ weight.T (no bias), for the hand-checkable cases."""
    weight = torch.as_tensor(weight, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer.requires_grad_(False)


def _adapter(s, t, seed):
    from minicomp.distill import make_adapter

    return make_adapter(s, t, seed=seed)


def _hint_cases():
    s3, t3 = _randn(8, 4, seed=61, grad=True), _randn(8, 16, seed=62)
    s4, t4 = _randn(4, 3, 4, 4, seed=63, grad=True), _randn(4, 8, 4, 4, seed=64)
    s5, t5 = _randn(6, 5, seed=65, grad=True), _randn(6, 5, seed=66)
    s6, t6 = _randn(4, 3, seed=67, grad=True), _randn(4, 6, seed=68, grad=True)
    return [
        Case("a fixed identity adapter: student [[1, 2], [0, 0]], teacher [[1, 5], [0, 2]] -> (0 + 3² + 0 + 2²) / 4 = 3.25",
             (torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[1.0, 5.0], [0.0, 2.0]]), _fixed_linear([[1, 0], [0, 1]]))),
        Case("a fixed adapter 2 -> 3 maps [1, 2] to [1, 2, 3]; teacher [1, 2, 5] -> (0 + 0 + 2²) / 3 = 4/3",
             (torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0, 5.0]]), _fixed_linear([[1, 0], [0, 1], [1, 1]]))),
        Case("a batch of 8: student width 4, teacher width 16, a linear adapter", (s3, t3, _adapter(s3, t3, 0))),
        Case("conv features [N, C, H, W]: student 3 channels, teacher 8, a 1×1 conv adapter", (s4, t4, _adapter(s4, t4, 1))),
        Case("same widths (5 and 5), but the adapter still maps the student first", (s5, t5, _adapter(s5, t5, 2))),
        Case("the teacher's feature carries a gradient", (s6, t6, _adapter(s6, t6, 3))),
    ]


register(
    "hint_loss",
    params=("student_feature", "teacher_feature", "adapter"),
    reference=_hint_loss,
    cases=_hint_cases,
    compare=_compare_with_grads(1e-5, 1e-4),
    mistakes=[
        Mistake("letting the gradient reach the teacher", lambda s, t, r: ((r(s) - t) ** 2).mean(),
                "The teacher is frozen: use teacher_feature.detach()."),
        Mistake("summing instead of averaging", lambda s, t, r: ((r(s) - t.detach()) ** 2).sum(),
                "Take the mean over every element (as F.mse_loss does), so the size does not depend on the "
                "batch or the width."),
        Mistake("averaging over the batch only",
                lambda s, t, r: ((r(s) - t.detach()) ** 2).flatten(1).sum(1).mean(),
                "Average over every element, features too, not only over the batch."),
        Mistake("keeping FitNets' factor ½", lambda s, t, r: 0.5 * ((r(s) - t.detach()) ** 2).mean(),
                "FitNets writes ½‖·‖²; this exercise folds the ½ into the loss weight: plain mean squared error."),
        Mistake("FitNets' ½‖·‖² as written, a sum", lambda s, t, r: 0.5 * ((r(s) - t.detach()) ** 2).sum(),
                "FitNets writes ½‖u_t − r(u_s)‖², a sum; this exercise takes the plain mean over every element "
                "instead (F.mse_loss): no ½, and divide by the number of elements."),
        Mistake("FitNets' ½‖·‖² averaged over the batch",
                lambda s, t, r: 0.5 * ((r(s) - t.detach()) ** 2).sum() / s.shape[0],
                "That is FitNets' ½‖u_t − r(u_s)‖² per example; this exercise takes the plain mean over every "
                "element instead (F.mse_loss): no ½, and divide by the number of elements, not of rows."),
        Mistake("detaching the student", lambda s, t, r: ((r(s.detach()) - t.detach()) ** 2).mean(),
                "Only the teacher is frozen. The gradient of this loss trains the student's layer and the "
                "adapter, so keep student_feature as it is and detach teacher_feature."),
        Mistake("student @ adapter.weight.T (the adapter's bias left out)",
                lambda s, t, r: ((s @ r.weight.T - t.detach()) ** 2).mean(),
                "Call the adapter itself, adapter(student_feature): that adds its bias, and works for the 1×1 "
                "conv adapter of image features too, where a matrix product with its weight does not."),
        Mistake("forgetting the adapter", lambda s, t, r: ((s - t.detach()) ** 2).mean(),
                "Map the student's feature with the adapter first: adapter(student_feature)."),
        Mistake("applying the adapter to the teacher", lambda s, t, r: ((s - r(t.detach())) ** 2).mean(),
                "The adapter belongs to the student: it maps the student's feature to the teacher's shape."),
        Mistake("dividing the sum by the student's element count",
                lambda s, t, r: ((r(s) - t.detach()) ** 2).sum() / s.numel(),
                "Average over the elements of the difference, which has the teacher's shape (the adapter "
                "changed the width): .mean() on it, or divide by teacher_feature.numel()."),
        Mistake("absolute instead of squared difference", lambda s, t, r: (r(s) - t.detach()).abs().mean(),
                "The hint loss is squared (L2): ((adapter(s) − t) ** 2).mean()."),
        Mistake("taking a square root (RMSE)", lambda s, t, r: ((r(s) - t.detach()) ** 2).mean().sqrt(),
                "No square root: the mean of the squared differences."),
    ],
    hint="mean((adapter(student_feature) − teacher_feature.detach()) ** 2) over every element, i.e. F.mse_loss.",
)
