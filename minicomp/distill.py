"""Knowledge distillation: a small student learns from a large, frozen teacher.

Lessons 01-03. Everything a lesson builds step by step is here in its final form:

* `soft_targets(logits, T)`: softmax(z / T), the teacher's "dark knowledge" made visible.
* `kd_loss(s, t, T)`: T² · KL(p_t ‖ p_s) at temperature T, batchmean (Hinton et al. 2015).
* `distillation_loss(s, t, labels, T, alpha)`: alpha · kd_loss + (1 − alpha) · CE at T = 1.
* `Taps`, `make_adapter`, `hint_loss`: feature ("hint") distillation as in FitNets (Romero et
  al. 2015). Forward hooks read the named layers, so no model is edited.
* `rkd_distance_loss`, `rkd_angle_loss`: relational KD (Park et al. 2019).
* `dkd_terms`, `dkd_loss`: decoupled KD, TCKD and NCKD (Zhao et al. 2022).
* `Distiller`: the training loop. Loss terms (`CE`, `KD`, `Hint`, `RKD`, `DKD`) are weighted
  and summed; the teacher is frozen, in eval mode and under `no_grad`.

Shapes: logits are [..., C]; every leading dimension counts as a row, so [B, C] has B rows and
the [B, T, C] logits of a language model have B·T rows.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from minicomp.checks import (
    check_class_ids,
    check_flag,
    check_fraction,
    check_positive_numbers,
    check_rows,
    check_same_device,
    check_seed,
    is_int,
    is_real,
)
from minicomp.hardware import check_device


# ── input checks ─────────────────────────────────────────────────────────────────────────────
def _check_logits(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [..., C], got {type(x).__name__}")
    if x.dim() == 0 or not x.is_floating_point():
        raise ValueError(f"{name} has shape {tuple(x.shape)} and dtype {x.dtype}; "
                         "expected a floating-point tensor of shape [..., C]")


def _check_defined(x: torch.Tensor, name: str) -> None:
    """Raise unless x is free of NaN and +inf, and no row is −inf throughout: a softmax of any of
    these is NaN, and `_kl_rows` would silently drop those rows' terms. A −inf (a class ruled
    out, probability 0) is allowed where the row keeps at least one finite class."""
    bad = torch.isnan(x) | (x == math.inf)
    if bad.any():
        raise ValueError(f"{name} contains NaN or +inf ({int(bad.sum())} of {x.numel()} values); expected "
                         "finite logits (−inf, for a class ruled out, is allowed). Check the model that "
                         "produced them, e.g. with torch.isfinite(...).all()")
    empty = (x == -math.inf).all(dim=-1)
    if x.shape[-1] and empty.any():
        raise ValueError(f"{name} has {int(empty.sum())} row(s) of −inf only: no class has any probability "
                         "there, so the softmax is NaN. Keep at least one finite logit per row, or leave "
                         "those rows out")


def _check_pair(s, t, s_name="student_logits", t_name="teacher_logits") -> None:
    _check_logits(s, s_name)
    _check_logits(t, t_name)
    check_same_device(s, t, s_name, t_name)
    _check_defined(t, t_name)
    _check_defined(s, s_name)
    if s.shape != t.shape:
        raise ValueError(f"{s_name} has shape {tuple(s.shape)} but {t_name} has shape "
                         f"{tuple(t.shape)}; they must match")
    if s.numel() == 0:  # a mean over no rows is NaN
        raise ValueError(f"{s_name} has shape {tuple(s.shape)}: no rows or no classes; expected at least one "
                         "row of at least one class")


def _check_temperature(temperature) -> float:
    if isinstance(temperature, torch.Tensor) and temperature.numel() == 1:
        temperature = temperature.item()
    if not is_real(temperature):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature={temperature} must be > 0 and finite")
    return float(temperature)


def _check_weights(**weights) -> None:
    """Each loss weight must be a finite number >= 0."""
    for name, v in weights.items():
        if not is_real(v) or not 0 <= v < math.inf:
            raise ValueError(f"{name}={v!r} must be a finite number >= 0")


def _check_labels(labels, logits, name="labels") -> torch.Tensor:
    """Return labels as int64 (any integer dtype is accepted: cross_entropy and one_hot need int64)."""
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"{name} must be an integer tensor of class indices, got {got}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"{name} has shape {tuple(labels.shape)}; expected {tuple(logits.shape[:-1])}, "
                         f"the logits' shape {tuple(logits.shape)} without its last (class) dimension")
    check_same_device(logits, labels, "student_logits", name)
    C = logits.shape[-1]
    if labels.numel() and (labels.min() < 0 or labels.max() >= C):
        raise ValueError(f"{name} holds values from {labels.min().item()} to {labels.max().item()}; "
                         f"expected class indices in [0, {C}) for C={C} classes")
    return labels.long()


# ── soft targets and the KD loss ─────────────────────────────────────────────────────────────
def soft_targets(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """p_i = exp(z_i / T) / Σ_j exp(z_j / T) over the last dimension: [..., C] -> [..., C].

    T = 1 is the ordinary softmax; T > 1 flattens it, so the small probabilities that say which
    wrong classes look alike become visible. Subtracting the row maximum first (inside
    torch.softmax) keeps exp from overflowing, even for logits of ±1000.
    """
    _check_logits(logits, "logits")
    _check_defined(logits, "logits")
    T = _check_temperature(temperature)
    return torch.softmax(logits / T, dim=-1)  # Hinton et al. 2015, eq. 1


def _kl_rows(log_p_t: torch.Tensor, log_p_s: torch.Tensor) -> torch.Tensor:
    """KL(p_t ‖ p_s) = Σ_c p_t,c (log p_t,c − log p_s,c) per row: [..., C] -> [...].

    Classes where p_t = 0 contribute 0 (the limit of p log p), also when log p_t = −inf.
    """
    p_t = log_p_t.exp()
    terms = torch.where(p_t > 0, p_t * (log_p_t - log_p_s), torch.zeros_like(p_t))
    return terms.sum(-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """T² · KL(p_t,T ‖ p_s,T), averaged over rows ("batchmean"): a 0-d tensor.

    p_t,T = softmax(teacher_logits / T) is the target, p_s,T = softmax(student_logits / T) the
    prediction, both over the last dimension. Every leading dimension counts as a row, so
    [B, T, C] logits are averaged over B·T rows. The teacher's logits are detached: no gradient
    reaches the teacher. The factor T² keeps the gradient's size roughly independent of T
    (Hinton et al. 2015, section 2.1).
    """
    _check_pair(student_logits, teacher_logits)
    T = _check_temperature(temperature)
    log_p_s = F.log_softmax(student_logits / T, dim=-1)  # [..., C]
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=-1)  # [..., C], no grad to teacher
    return T * T * _kl_rows(log_p_t, log_p_s).mean()  # T² · KL, mean over rows


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """alpha · kd_loss(s, t, T) + (1 − alpha) · cross_entropy(s, labels): a 0-d tensor.

    **alpha weights the teacher's term** (the soft targets); 1 − alpha weights the hard labels.
    alpha = 1 is pure distillation, alpha = 0 ordinary training. Libraries disagree on which
    term alpha weights, so read theirs before copying a value of alpha.

    The cross-entropy uses the student's logits at T = 1, as at test time (Hinton et al. 2015),
    averaged over the same rows as the KD term. labels has the logits' shape without the last
    dimension: [B] for [B, C], [B, T] for [B, T, C].
    """
    _check_pair(student_logits, teacher_logits)
    T = _check_temperature(temperature)
    a = check_fraction("alpha", alpha, "[0, 1]", ": the weight of the teacher's soft targets (1 − alpha weights the labels)")
    labels = _check_labels(labels, student_logits)  # int64, whatever integer dtype came in
    C = student_logits.shape[-1]
    ce = F.cross_entropy(student_logits.reshape(-1, C), labels.reshape(-1))  # T = 1
    return a * kd_loss(student_logits, teacher_logits, T) + (1.0 - a) * ce


# ── feature (hint) distillation: taps, adapter, loss ─────────────────────────────────────────
class Taps:
    """Record the outputs of named submodules with forward hooks; the model is not edited.

        with Taps(model, ["hidden"]) as feats:
            logits = model(x)
            h = feats["hidden"]          # [N, 256], the output of model.hidden

    Names are those of `model.named_modules()`, e.g. "hidden", "hidden.fc1", "features".
    """

    def __init__(self, model: nn.Module, names):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"names must be a layer name or a list of them, e.g. ['hidden'], got {names!r}")
        modules = dict(model.named_modules())
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        for name in names:
            if name not in modules or not name:
                known = ", ".join(n for n in modules if n)
                raise ValueError(f"layer {name!r} is not a submodule of {type(model).__name__}; "
                                 f"expected one of: {known}")
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, inputs, output):
            self.outputs[name] = output
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> dict[str, torch.Tensor]:
        return self.outputs

    def __exit__(self, *exc) -> None:
        self.remove()


def make_adapter(student_feature: torch.Tensor, teacher_feature: torch.Tensor, seed: int = 0) -> nn.Module:
    """The trainable regressor r(·) that maps student features onto the teacher's shape.

    [N, Cs] -> [N, Ct]: nn.Linear(Cs, Ct). [N, Cs, H, W] -> [N, Ct, H, W]: a 1×1 nn.Conv2d.
    Built from one example of each feature (e.g. recorded with `Taps`), seeded.
    """
    s, t = student_feature, teacher_feature
    _check_logits(s, "student_feature")
    _check_logits(t, "teacher_feature")
    seed = check_seed(seed)
    if s.dim() != t.dim() or s.dim() not in (2, 4) or (s.dim() == 4 and s.shape[2:] != t.shape[2:]):
        raise ValueError(f"student_feature has shape {tuple(s.shape)} and teacher_feature {tuple(t.shape)}; "
                         "expected [N, Cs] and [N, Ct], or [N, Cs, H, W] and [N, Ct, H, W] (same H, W)")
    if s.shape[1] == 0 or t.shape[1] == 0:
        raise ValueError(f"student_feature has shape {tuple(s.shape)} and teacher_feature {tuple(t.shape)}; "
                         "expected at least one channel (Cs, Ct >= 1) in each")
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(s.shape[1], t.shape[1]) if s.dim() == 2 else nn.Conv2d(s.shape[1], t.shape[1], 1)
    with torch.no_grad():  # PyTorch's default init, but from our own generator
        bound = 1.0 / math.sqrt(s.shape[1])
        layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=g))
        layer.bias.copy_(torch.empty_like(layer.bias).uniform_(-bound, bound, generator=g))
    return layer.to(device=s.device, dtype=s.dtype)


def _check_adapter(adapter) -> None:
    if adapter is not None and not callable(adapter):
        raise TypeError(f"adapter must be a module such as make_adapter(s, t), a function of the student's "
                        f"feature, or None, got {type(adapter).__name__}")


def hint_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, adapter: nn.Module | None = None) -> torch.Tensor:
    """mean((r(u_s) − u_t)²) over every element: FitNets' hint loss, a 0-d tensor.

    r is the adapter (identity when None), u_s the student's feature (student_feature: [N, Cs] or
    [N, Cs, H, W]), u_t the teacher's (teacher_feature, the shape r(u_s) must have: [N, Ct] or
    [N, Ct, H, W]; detached). FitNets writes ½‖u_t − r(u_s)‖²; the mean instead of the sum makes the size
    independent of batch and width, and the constant ½ is folded into the loss weight.
    """
    _check_logits(student_feature, "student_feature")
    _check_logits(teacher_feature, "teacher_feature")
    check_same_device(student_feature, teacher_feature, "student_feature", "teacher_feature")
    _check_adapter(adapter)
    if student_feature.numel() == 0 or teacher_feature.numel() == 0:  # a mean over nothing is NaN
        raise ValueError(f"student_feature has shape {tuple(student_feature.shape)} and teacher_feature "
                         f"{tuple(teacher_feature.shape)}; expected at least one value in each")
    try:
        r = adapter(student_feature) if adapter is not None else student_feature
    except RuntimeError as e:   # e.g. mat1 and mat2 shapes cannot be multiplied
        raise ValueError(f"the adapter cannot take student_feature of shape {tuple(student_feature.shape)} ({e}); "
                         "is it the student's feature, and the adapter made for it (make_adapter(s, t))?") from None
    if r.shape != teacher_feature.shape:
        extra = "after the adapter " if adapter is not None else ""
        raise ValueError(f"student_feature {extra}has shape {tuple(r.shape)} but teacher_feature has shape "
                         f"{tuple(teacher_feature.shape)}; pass an adapter (make_adapter) that maps one to the other")
    return ((r - teacher_feature.detach()) ** 2).mean()  # Romero et al. 2015, eq. 3


# ── relational KD (Park et al. 2019) ─────────────────────────────────────────────────────────
def _check_embeddings(s, t) -> tuple[torch.Tensor, torch.Tensor]:
    _check_logits(s, "student_embedding")
    _check_logits(t, "teacher_embedding")
    check_same_device(s, t, "student_embedding", "teacher_embedding")
    if s.dim() < 2 or t.dim() < 2:
        raise ValueError(f"student_embedding has shape {tuple(s.shape)} and teacher_embedding {tuple(t.shape)}; "
                         "expected [N, ...] each, one embedding per row")
    s, t = s.flatten(1), t.flatten(1)  # [N, Ds], [N, Dt]: the widths may differ
    if len(s) != len(t) or len(s) < 3:
        raise ValueError(f"student_embedding has {len(s)} rows and teacher_embedding {len(t)}; "
                         "expected the same number of rows, at least 3")
    return s, t


def _distance_potential(e: torch.Tensor) -> torch.Tensor:
    """ψ_D(e_i, e_j) = ‖e_i − e_j‖ / μ over ordered pairs i ≠ j, μ their mean: [N, D] -> [N(N−1)]."""
    # float16 -> float32 (float64 stays): in float16 the clamp's 1e-12 is 0, whose sqrt has an
    # infinite gradient, and squared distances overflow past 65504
    e = e.to(torch.promote_types(e.dtype, torch.float32))
    N = len(e)
    off = ~torch.eye(N, dtype=torch.bool, device=e.device)
    d = (e[:, None, :] - e[None, :, :]).pow(2).sum(-1)[off].clamp_min(1e-12).sqrt()  # no sqrt(0) grads
    return d / d.mean().clamp_min(1e-12)  # Park et al. 2019, eq. 5


def _angle_potential(e: torch.Tensor) -> torch.Tensor:
    """ψ_A(e_i, e_j, e_k) = cos∠e_i e_j e_k = ⟨(e_i − e_j)/‖·‖, (e_k − e_j)/‖·‖⟩: [N, D] -> [N³]."""
    # float16 -> float32 (float64 stays): in float16 normalize's eps (1e-12) is 0, and the
    # i = j difference vectors (all 0) would give 0 / 0 = NaN
    e = e.to(torch.promote_types(e.dtype, torch.float32))
    v = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)  # v[j, i] = unit(e_i − e_j)  [N, N, D]
    return torch.bmm(v, v.transpose(1, 2)).flatten()  # Park et al. 2019, eq. 7


def rkd_distance_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    """Σ Huber(ψ_D(s_i, s_j) − ψ_D(t_i, t_j)), averaged over pairs: match relative distances.

    Embeddings are [N, D] (anything after the first dimension is flattened); the widths of
    student and teacher may differ, because only distances between rows are compared.
    float16 / bfloat16 embeddings are compared in float32 (so is the returned loss).
    """
    s, t = _check_embeddings(student_embedding, teacher_embedding)
    with torch.no_grad():
        psi_t = _distance_potential(t)
    return F.smooth_l1_loss(_distance_potential(s), psi_t)  # Park et al. 2019, eq. 6


def rkd_angle_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    """Σ Huber(ψ_A(s_i, s_j, s_k) − ψ_A(t_i, t_j, t_k)), averaged over triplets: match angles.

    Embeddings as in `rkd_distance_loss`; float16 / bfloat16 ones are compared in float32.
    """
    s, t = _check_embeddings(student_embedding, teacher_embedding)
    with torch.no_grad():
        psi_t = _angle_potential(t)
    return F.smooth_l1_loss(_angle_potential(s), psi_t)  # Park et al. 2019, eq. 8


# ── decoupled KD (Zhao et al. 2022) ──────────────────────────────────────────────────────────
def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              temperature: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), two 0-d tensors, each T²-scaled and averaged over rows like `kd_loss`, from
    student_logits and teacher_logits [..., C] and labels [...] (integer class ids).

    TCKD = KL(b_t ‖ b_s) on the binary split b = [p_gt, 1 − p_gt] (target vs all the rest);
    NCKD = KL(p̂_t ‖ p̂_s) on the distribution over the non-target classes alone. Per row,
    KL(p_t ‖ p_s) = TCKD + (1 − p_gt,t) · NCKD (Zhao et al. 2022, eq. 5): classic KD weighs
    NCKD down exactly when the teacher is confident.
    """
    _check_pair(student_logits, teacher_logits)
    T = _check_temperature(temperature)
    labels = _check_labels(labels, student_logits)  # int64, whatever integer dtype came in
    C = student_logits.shape[-1]
    if C < 2:
        raise ValueError(f"student_logits has C={C} classes; decoupled KD needs at least 2")
    gt = F.one_hot(labels, C).bool()  # [..., C]

    def parts(z):  # log b = [log p_gt, log(1 − p_gt)] [..., 2] and log p̂ over non-targets [..., C]
        z = z / T
        lse = z.logsumexp(-1)  # [...]
        # the target's logit [...]: gather, not (z * gt).sum(-1), where a −inf logit · 0 gives NaN
        z_gt = z.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        rest = z.masked_fill(gt, -math.inf)  # [..., C], target class removed
        log_b = torch.stack([z_gt - lse, rest.logsumexp(-1) - lse], dim=-1)
        return log_b, F.log_softmax(rest, dim=-1)

    log_b_s, log_hat_s = parts(student_logits)
    log_b_t, log_hat_t = parts(teacher_logits.detach())
    # A teacher row with every non-target logit −inf has no non-target distribution (log p̂ is
    # NaN): p̂_t = 0 there, so the row adds 0 to NCKD, as its weight 1 − p_gt = 0 in KD says.
    log_hat_t = log_hat_t.masked_fill(log_hat_t.isnan(), -math.inf)
    tckd = T * T * _kl_rows(log_b_t, log_b_s).mean()
    nckd = T * T * _kl_rows(log_hat_t, log_hat_s).mean()
    return tckd, nckd


def dkd_loss(student_logits, teacher_logits, labels, temperature: float = 4.0,
             alpha: float = 1.0, beta: float = 8.0) -> torch.Tensor:
    """alpha · TCKD + beta · NCKD (Zhao et al. 2022, eq. 6), a 0-d tensor; logits [..., C], labels
    [...] as in `dkd_terms`; the paper's defaults alpha=1, beta=8."""
    _check_weights(alpha=alpha, beta=beta)
    tckd, nckd = dkd_terms(student_logits, teacher_logits, labels, temperature)
    return alpha * tckd + beta * nckd


# ── loss terms for the Distiller ─────────────────────────────────────────────────────────────
@dataclass
class Outputs:
    """What a loss term sees for one batch. labels is −1 where a row has no label."""

    student_logits: torch.Tensor  # [B, C]
    teacher_logits: torch.Tensor | None  # [B, C], computed under no_grad
    labels: torch.Tensor  # [B]
    student_features: dict = field(default_factory=dict)
    teacher_features: dict = field(default_factory=dict)


class CE:
    """Cross-entropy on the labelled rows (labels >= 0); 0 for a batch without labels."""

    needs_teacher, student_layers, teacher_layers = False, (), ()

    def __call__(self, o: Outputs) -> torch.Tensor:
        keep = o.labels >= 0
        if not keep.any():
            return o.student_logits.sum() * 0.0
        return F.cross_entropy(o.student_logits[keep], o.labels[keep].long())


class KD:
    """`kd_loss` at temperature T on every row, labelled or not."""

    needs_teacher, student_layers, teacher_layers = True, (), ()

    def __init__(self, temperature: float = 4.0):
        self.temperature = _check_temperature(temperature)

    def __call__(self, o: Outputs) -> torch.Tensor:
        return kd_loss(o.student_logits, o.teacher_logits, self.temperature)


class DKD(KD):
    """`dkd_loss`; unlabelled rows use the teacher's top class as their target class."""

    def __init__(self, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0):
        super().__init__(temperature)
        _check_weights(alpha=alpha, beta=beta)
        self.alpha, self.beta = alpha, beta

    def __call__(self, o: Outputs) -> torch.Tensor:
        target = torch.where(o.labels >= 0, o.labels, o.teacher_logits.argmax(-1))
        return dkd_loss(o.student_logits, o.teacher_logits, target, self.temperature, self.alpha, self.beta)


def _check_layer_names(**names) -> None:
    for arg, name in names.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{arg} must be a layer's name such as 'hidden' (see model.named_modules()), got {name!r}")


class Hint:
    """`hint_loss` between two tapped layers; the adapter is built on the first batch and trained."""

    needs_teacher = True

    def __init__(self, student_layer: str, teacher_layer: str, adapter: nn.Module | None = None):
        _check_layer_names(student_layer=student_layer, teacher_layer=teacher_layer)
        _check_adapter(adapter)
        self.student_layers, self.teacher_layers = (student_layer,), (teacher_layer,)
        self.adapter = adapter

    def build(self, o: Outputs, seed: int) -> list[nn.Parameter]:
        s, t = o.student_features[self.student_layers[0]], o.teacher_features[self.teacher_layers[0]]
        if self.adapter is None and s.shape != t.shape:
            self.adapter = make_adapter(s, t, seed)
        # identity (None) or a plain function: nothing to train
        return list(self.adapter.parameters()) if isinstance(self.adapter, nn.Module) else []

    def __call__(self, o: Outputs) -> torch.Tensor:
        s, t = o.student_features[self.student_layers[0]], o.teacher_features[self.teacher_layers[0]]
        return hint_loss(s, t, self.adapter)


class RKD:
    """distance_weight · RKD-D + angle_weight · RKD-A between two tapped layers (the paper's 25 and 50)."""

    needs_teacher = True

    def __init__(self, student_layer: str, teacher_layer: str, distance_weight: float = 25.0,
                 angle_weight: float = 50.0):
        _check_weights(distance_weight=distance_weight, angle_weight=angle_weight)
        _check_layer_names(student_layer=student_layer, teacher_layer=teacher_layer)
        self.student_layers, self.teacher_layers = (student_layer,), (teacher_layer,)
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def __call__(self, o: Outputs) -> torch.Tensor:
        s, t = o.student_features[self.student_layers[0]], o.teacher_features[self.teacher_layers[0]]
        return self.distance_weight * rkd_distance_loss(s, t) + self.angle_weight * rkd_angle_loss(s, t)


# ── the training loop ────────────────────────────────────────────────────────────────────────
def _check_term(term, name) -> None:
    """A loss term is called with one argument, the batch's `Outputs`: KD(4.0), not KD or kd_loss."""
    if isinstance(term, type):
        raise TypeError(f"losses[{name!r}] holds the class {term.__name__}, not a loss term; "
                        f"call it to make one: {term.__name__}(...)")
    try:
        inspect.signature(term).bind(None)
    except TypeError:
        raise TypeError(f"losses[{name!r}]: {getattr(term, '__name__', type(term).__name__)} cannot be called with "
                        "one argument, the batch's Outputs; expected a term such as KD(4.0), CE() or "
                        "Hint('hidden', 'hidden')") from None
    except ValueError:   # no signature to read (some builtins): trust it
        pass


class Distiller:
    """Train `student` on a weighted sum of loss terms, with a frozen teacher.

        d = Distiller(student, teacher, {"kd": (0.9, KD(4.0)), "ce": (0.1, CE())}, seed=0)
        history = d.fit(x, y, steps=600, x_val=x_val, y_val=y_val)   # y = −1: unlabelled row

    Each step draws a batch (seeded), runs the teacher in eval mode under no_grad, runs the
    student, and minimises Σ weight · term(outputs) with AdamW. The same seed gives the same
    numbers. Student and teacher are moved to `device` (default: the student's device); the
    teacher's train/eval mode is restored after `fit`, and the student is left in eval mode. `history` holds one dict per `log_every` steps: the mean of each term and of the
    total loss since the last entry, the validation accuracy (if x_val is given) and the seconds
    elapsed. `CE` alone, with teacher=None, trains the student without a teacher on the same loop.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, losses: dict, *, lr: float = 1e-2,
                 weight_decay: float = 0.0, seed: int = 0, device=None, progress: bool = True):
        if not isinstance(losses, dict) or not losses:
            raise ValueError(f"losses={losses!r} must be a non-empty dict of name -> (weight, term)")
        for name, pair in losses.items():
            if not (isinstance(pair, tuple) and len(pair) == 2 and callable(pair[1])):
                raise ValueError(f"losses[{name!r}]={pair!r}; expected a (weight, term) pair such as (0.9, KD(4.0))")
            _check_term(pair[1], name)
            w = pair[0]
            if not is_real(w) or not 0 <= w < math.inf:
                raise ValueError(f"losses[{name!r}] has weight {w!r}; expected a finite number >= 0")
            if getattr(pair[1], "needs_teacher", False) and teacher is None:
                raise ValueError(f"losses[{name!r}] needs a teacher, but teacher=None")
        check_positive_numbers(lr=lr)
        _check_weights(weight_decay=weight_decay)
        if not isinstance(student, nn.Module):
            raise TypeError(f"student must be a torch.nn.Module, got {type(student).__name__}")
        if teacher is not None and not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be a torch.nn.Module or None, got {type(teacher).__name__}")
        if next(student.parameters(), None) is None:
            raise ValueError(f"student ({type(student).__name__}) has no parameters to train; expected a model "
                             "with weights, such as models.digits_mlp_student()")
        seed = check_seed(seed)
        self.device = check_device(device, "device") if device is not None else next(student.parameters()).device
        self.student = student.to(self.device)
        self.teacher = teacher.to(self.device) if teacher is not None else None
        self.losses, self.lr, self.weight_decay, self.seed = losses, lr, weight_decay, seed
        self.progress = check_flag("progress", progress)   # "no" would be true, and show the bar
        self.history: list[dict] = []
        self.seconds = 0.0

    def _layers(self, attr: str) -> list[str]:
        return sorted({n for _, term in self.losses.values() for n in getattr(term, attr, ())})

    def _forward(self, xb, yb, s_taps: Taps, t_taps: Taps | None, probe: bool = False) -> Outputs:
        """One batch through teacher and student. probe=True (the first batch): a model that cannot
        take x says which one it is, instead of torch's bare shape error."""
        def run(who, model):
            try:
                return model(xb)
            except RuntimeError as e:   # e.g. mat1 and mat2 shapes cannot be multiplied
                if not probe:
                    raise
                raise ValueError(f"the {who} ({type(model).__name__}) cannot take x with rows of shape "
                                 f"{tuple(xb.shape[1:])} ({e}); are x and the {who} made for each other?") from None

        t_logits = None
        if self.teacher is not None:
            with torch.no_grad():
                t_logits = run("teacher", self.teacher)
        s_logits = run("student", self.student)
        return Outputs(s_logits, t_logits, yb, dict(s_taps.outputs), dict(t_taps.outputs) if t_taps else {})

    def fit(self, x: torch.Tensor, y: torch.Tensor, steps: int = 500, batch_size: int = 64,
            x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, log_every: int = 50) -> list[dict]:
        """Train for `steps` optimizer steps on (x, y): x [N, ...] the models' inputs, y [N] class ids,
        where −1 marks an unlabelled (transfer) row; returns the logged metrics, one dict per log."""
        check_rows(x, y)
        for name, v in (("steps", steps), ("batch_size", batch_size), ("log_every", log_every)):
            if not is_int(v) or v <= 0:
                raise ValueError(f"{name}={v!r} must be a positive int")
        if (x_val is None) != (y_val is None):
            raise ValueError("pass both x_val and y_val, or neither")
        if x_val is not None:
            check_rows(x_val, y_val, "x_val", "y_val")
        s_taps = Taps(self.student, self._layers("student_layers"))
        t_taps = Taps(self.teacher, self._layers("teacher_layers")) if self.teacher is not None else None
        teacher_mode = self.teacher.training if self.teacher is not None else False
        g = torch.Generator().manual_seed(self.seed)
        try:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(self.seed)  # dropout masks, if the student has dropout
                if self.teacher is not None:
                    self.teacher.eval()  # frozen: eval mode, no_grad, not in the optimizer
                params = list(self.student.parameters())
                with torch.no_grad():  # one probe batch builds the adapters (Hint) before AdamW
                    o = self._forward(x[:batch_size].to(self.device), y[:batch_size].to(self.device), s_taps, t_taps,
                                      probe=True)
                C = o.student_logits.shape[-1]
                if tuple(o.student_logits.shape[:-1]) != tuple(y[:batch_size].shape):
                    raise ValueError(f"y has shape {tuple(y.shape)}, but the student's logits for x[:{batch_size}] "
                                     f"have shape {tuple(o.student_logits.shape)}: expected y of one class index "
                                     f"per row, shape {(len(y), *o.student_logits.shape[1:-1])}")
                if y.is_floating_point() or y.dtype == torch.bool or y.min() < -1 or y.max() >= C:
                    raise ValueError(f"y holds values from {y.min().item()} to {y.max().item()} ({y.dtype}); expected "
                                     f"integer class indices in [0, {C}), or -1 for an unlabelled row")
                y = y.long()  # int32, uint8, ... labels: cross_entropy wants int64
                if x_val is not None and tuple(y_val.shape) != (len(y_val), *o.student_logits.shape[1:-1]):
                    raise ValueError(f"y_val has shape {tuple(y_val.shape)}; expected one class index per row, shape "
                                     f"{(len(y_val), *o.student_logits.shape[1:-1])}")
                for _, term in self.losses.values():
                    if hasattr(term, "build"):
                        params += term.build(o, self.seed)
                opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
                self.student.train()
                order, pos, sums, n = torch.randperm(len(x), generator=g), 0, {}, 0
                t0 = time.perf_counter()
                for step in tqdm(range(1, steps + 1), desc="distill", disable=not self.progress, leave=False):
                    if pos + batch_size > len(x):  # a new epoch: reshuffle
                        order, pos = torch.randperm(len(x), generator=g), 0
                    i = order[pos:pos + batch_size]
                    pos += batch_size
                    o = self._forward(x[i].to(self.device), y[i].to(self.device), s_taps, t_taps)
                    values = {name: term(o) for name, (w, term) in self.losses.items()}
                    loss = sum(w * values[name] for name, (w, _) in self.losses.items())  # Σ w_k L_k
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    for name, v in [("loss", loss), *values.items()]:
                        sums[name] = sums.get(name, 0.0) + v.item()
                    n += 1
                    if step % log_every == 0 or step == steps:
                        row = {"step": step, **{k: v / n for k, v in sums.items()}}
                        if x_val is not None:
                            row["val_acc"] = self.accuracy(x_val, y_val)
                        row["seconds"] = self.seconds + time.perf_counter() - t0
                        self.history.append(row)
                        sums, n = {}, 0
                self.seconds += time.perf_counter() - t0
        finally:
            s_taps.remove()
            if t_taps is not None:
                t_taps.remove()
                self.teacher.train(teacher_mode)
            self.student.eval()
        return self.history

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of rows where the student's top class equals y: x [N, ...], y [N] class ids
        (evaluated in eval mode)."""
        check_rows(x, y)
        mode = self.student.training
        self.student.eval()
        try:
            logits = self.student(x.to(self.device))
        finally:
            self.student.train(mode)
        pred = logits.argmax(-1)
        if pred.shape != y.shape:   # [N, 1] labels would broadcast against [N] predictions to [N, N]
            raise ValueError(f"y has shape {tuple(y.shape)}, but the student predicts shape {tuple(pred.shape)} "
                             "for x: expected one class index per row, of that shape")
        check_class_ids(y, logits.shape[-1])
        return (pred == y.to(self.device)).float().mean().item()
