"""The checkers of the method exercises (06 fake_quantize_ste, 07 gptq_columns, 08 awq_scale_search,
10 pareto_front_indices) accept correct answers written differently and reject wrong ones that a
learner really writes, naming the right mistake (tests/test_checkers.py covers the listed ones)."""

import numpy as np
import pytest
import torch

from minicomp.awq import output_error
from minicomp.grading import check, get_checker
from minicomp.quant import quantize_dequantize

# ── awq_scale_search ─────────────────────────────────────────────────────────────────────────


def awq(W, x_scale, H, bits, group_size, *, alphas=None, stat=None, norm="geo", undo="divide", floor=True,
        groups="group"):
    """The search, with the learner's variations."""
    alphas = [k / 20 for k in range(20)] if alphas is None else alphas
    base = x_scale if stat is None else stat
    best, best_s = float("inf"), None
    for a in alphas:
        s = base.pow(a)
        if floor:
            s = s.clamp(min=1e-4)
        s = {"geo": lambda t: t / (t.max() * t.min()).sqrt(), "mean": lambda t: t / t.mean(),
             "max": lambda t: t / t.max()}[norm](s)
        kw = {"group": {"group_size": group_size}, "tensor": {}, "row": {"axis": 0}}[groups]
        Q = quantize_dequantize(W * s, bits, **kw)
        W_hat = Q / s if undo == "divide" else Q * s
        err = output_error(W, W_hat, H).item()
        if err < best:
            best, best_s = err, s
    return best_s


def awq_float64(W, x_scale, H, bits, group_size):
    return awq(W.double(), x_scale.double(), H.double(), bits, group_size).float()


def awq_vectorised_einsum(W, x_scale, H, bits, group_size):
    """All the scales at once, the error without the 1/2 (the argmin is the same), float arange."""
    S = x_scale[None, :].pow(torch.arange(0, 1, 0.05)[:, None]).clamp(min=1e-4)  # [20, in]
    S = S / (S.amax(1, keepdim=True) * S.amin(1, keepdim=True)).sqrt()
    errs = []
    for s in S:
        D = W - quantize_dequantize(W * s, bits, group_size=group_size) / s
        errs.append(torch.einsum("oi,ij,oj->", D, H, D))
    return S[torch.stack(errs).argmin()]


def awq_hand_rtn_numpy(W, x_scale, H, bits, group_size):
    """Its own min-max RTN per group, trace(D H Dᵀ), and a numpy array returned."""
    best = None
    for k in range(20):
        s = torch.clamp(x_scale ** (k / 20), min=1e-4)
        s = s / torch.sqrt(s.max() * s.min())
        Ws = (W * s).reshape(W.shape[0], -1, group_size)
        lo, hi = Ws.amin(-1, keepdim=True).clamp(max=0), Ws.amax(-1, keepdim=True).clamp(min=0)
        scale = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8)
        zero = torch.round(-lo / scale)
        Q = (torch.clamp(torch.round(Ws / scale) + zero, 0, 2**bits - 1) - zero) * scale
        D = W - Q.reshape(W.shape) / s
        err = torch.trace(D @ H @ D.T).item()
        if best is None or err < best[0]:
            best = (err, s)
    return best[1].numpy()


# ── gptq_columns ─────────────────────────────────────────────────────────────────────────────


def gptq(W, Hinv, scale, zero, qmax, *, rnd=torch.round, err="divide", cols="from_i", ret="Q"):
    W = W.clone()
    Q = torch.zeros_like(W)
    s, z = scale[:, 0], zero[:, 0].to(W.dtype)
    for i in range(W.shape[1]):
        w = W[:, i]
        q = (torch.clamp(rnd(w / s) + z, 0, qmax) - z) * s
        Q[:, i] = q
        d = Hinv[i, i]
        e = {"divide": (w - q) / d, "square": (w - q) / d**2, "sqrt": (w - q) / d.sqrt()}[err]
        if cols == "from_i":
            W[:, i:] -= e[:, None] * Hinv[i, i:][None, :]
        elif cols == "after":
            W[:, i + 1:] -= e[:, None] * Hinv[i, i + 1:][None, :]
        else:  # every column: Hinv is upper triangular, so the quantized ones get 0
            W -= torch.outer(e, Hinv[i])
    return {"Q": Q, "W": W, "codes": Q / s[:, None] + z[:, None]}[ret]


def gptq_numpy_float64(W, Hinv, scale, zero, qmax):
    W, H = W.numpy().astype(np.float64), Hinv.numpy().astype(np.float64)
    s, z = scale.numpy().astype(np.float64)[:, 0], zero.numpy().astype(np.float64)[:, 0]
    Q = np.zeros_like(W)
    for i in range(W.shape[1]):
        q = (np.clip(np.rint(W[:, i] / s) + z, 0, qmax) - z) * s
        Q[:, i] = q
        W[:, i:] -= np.outer((W[:, i] - q) / H[i, i], H[i, i:])
    return Q


def gptq_keepdim_matmul(W, Hinv, scale, zero, qmax):
    W, Q = W.clone(), torch.empty_like(W)
    for i in range(W.shape[1]):
        w = W[:, i:i + 1]  # [out, 1]
        q = (torch.clamp(torch.round(w / scale) + zero, 0, qmax) - zero) * scale
        Q[:, i:i + 1] = q
        W[:, i + 1:] -= ((w - q) / Hinv[i, i]) @ Hinv[i:i + 1, i + 1:]
    return Q


def gptq_wrong_product(W, Hinv, scale, zero, qmax):
    """Hinv @ Hinv.T taken for H⁻¹ (it is Hinv.T @ Hinv)."""
    Hi = Hinv @ Hinv.T
    W, Q = W.clone(), torch.zeros_like(W)
    s, z = scale[:, 0], zero[:, 0]
    for i in range(W.shape[1]):
        w = W[:, i]
        q = (torch.clamp(torch.round(w / s) + z, 0, qmax) - z) * s
        Q[:, i] = q
        W[:, i:] -= ((w - q) / Hi[i, i])[:, None] * Hi[i, i:][None, :]
    return Q


# ── fake_quantize_ste ────────────────────────────────────────────────────────────────────────


def ste(x, s, z, lo, hi, *, rnd=torch.round, mask="inclusive", clamp=True, zero_values_outside=False):
    q = rnd(x / s) + z
    x_hat = ((torch.clamp(q, lo, hi) if clamp else q) - z) * s
    inside = {"inclusive": lambda: (q >= lo) & (q <= hi),
              "strict": lambda: (q > lo) & (q < hi),
              "no zero point": lambda: (torch.round(x / s) >= lo) & (torch.round(x / s) <= hi),
              "x units, no zero point": lambda: (x >= lo * s) & (x <= hi * s)}[mask]()
    x_pass = torch.where(inside, x, x.detach())
    out = x_pass + (x_hat - x_pass).detach()
    return out * inside if zero_values_outside else out


class _STEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        q = torch.round(x / scale) + zero_point
        ctx.save_for_backward((q >= qmin) & (q <= qmax))
        return (torch.clamp(q, qmin, qmax) - zero_point) * scale

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def ste_autograd_function(x, s, z, lo, hi):
    return _STEFunction.apply(x, torch.as_tensor(s), torch.as_tensor(z), lo, hi)


def ste_torch_builtin(x, s, z, lo, hi):
    s, z = torch.as_tensor(s, dtype=torch.float32), torch.as_tensor(z)
    if s.numel() == 1:
        return torch.fake_quantize_per_tensor_affine(x, s.reshape(()), z.reshape(()).int(), lo, hi)
    return torch.fake_quantize_per_channel_affine(x, s.flatten(), z.flatten().int(), 0, lo, hi)


def ste_clamp_unrounded_code(x, s, z, lo, hi):
    u = torch.clamp(x / s + z, lo, hi)  # clamp's own gradient masks
    return (u + (torch.round(u) - u).detach() - z) * s


# ── pareto_front_indices ─────────────────────────────────────────────────────────────────────


def pareto(sizes, errors):
    n = len(sizes)

    def beats(j, i):
        return sizes[j] <= sizes[i] and errors[j] <= errors[i] and (sizes[j] < sizes[i] or errors[j] < errors[i])

    front = [i for i in range(n) if not any(beats(j, i) for j in range(n) if j != i)]
    return sorted(front, key=lambda i: (sizes[i], errors[i], i))


def pareto_sorted_scan(sizes, errors):
    """The faster way exercise 10 describes: sort, keep a lower error or a duplicate of the last kept."""
    front, best, last = [], float("inf"), None
    for i in sorted(range(len(sizes)), key=lambda i: (sizes[i], errors[i], i)):
        if errors[i] < best or (last is not None and (sizes[i], errors[i]) == (sizes[last], errors[last])):
            front.append(i)
            best, last = min(best, errors[i]), i
    return front


def pareto_numpy(sizes, errors):
    s, e = np.asarray(sizes), np.asarray(errors)
    no_worse = (s[None, :] <= s[:, None]) & (e[None, :] <= e[:, None])
    better = (s[None, :] < s[:, None]) | (e[None, :] < e[:, None])
    idx = np.where(~(no_worse & better).any(1))[0]
    return idx[np.lexsort((idx, e[idx], s[idx]))]  # an ndarray of np.int64


def pareto_scan(sizes, errors, *, key, keep_equal):
    front, best = [], float("inf")
    for i in sorted(range(len(sizes)), key=key(sizes, errors)):
        if errors[i] < best or (keep_equal and errors[i] == best):
            front.append(i)
            best = errors[i]
    return front


# ── correct answers written differently: all must pass ───────────────────────────────────────


@pytest.mark.parametrize("name,fn", [
    ("awq_scale_search", awq_float64),
    ("awq_scale_search", awq_vectorised_einsum),
    ("awq_scale_search", awq_hand_rtn_numpy),
    ("gptq_columns", lambda *a: gptq(*a, cols="all")),
    ("gptq_columns", lambda *a: gptq(*a, cols="after")),
    ("gptq_columns", lambda *a: gptq(*a, ret="W")),  # column i of W ends as q_i
    ("gptq_columns", gptq_numpy_float64),
    ("gptq_columns", gptq_keepdim_matmul),
    ("fake_quantize_ste", ste_autograd_function),
    ("fake_quantize_ste", ste_torch_builtin),
    ("fake_quantize_ste", ste_clamp_unrounded_code),
    ("fake_quantize_ste", lambda *a: ste(*a, rnd=lambda t: torch.floor(t + 0.5))),  # no ties in the cases
    ("pareto_front_indices", pareto_sorted_scan),
    ("pareto_front_indices", pareto_numpy),
    ("pareto_front_indices", lambda s, e: torch.tensor(pareto(s, e))),
    ("pareto_front_indices", lambda s, e: tuple(pareto(s, e))),
    ("pareto_front_indices", lambda s, e: sorted(pareto(s, e), key=lambda i: s[i])),  # ties are duplicates
], ids=lambda v: v if isinstance(v, str) else "")
def test_correct_variants_pass(name, fn):
    report = check(name, fn)
    assert report.passed, str(report)


# ── wrong answers that are not in the registry: all must fail, without a traceback ─────────

UNLISTED = {
    "awq_scale_search": [
        ("alpha = k/19, from 0 to 1", lambda *a: awq(*a, alphas=[k / 19 for k in range(20)])),
        ("alpha = k/10", lambda *a: awq(*a, alphas=[k / 10 for k in range(10)])),
        ("normalised by the mean", lambda *a: awq(*a, norm="mean")),
        ("normalised by the max", lambda *a: awq(*a, norm="max")),
        ("multiplied by s twice", lambda *a: awq(*a, undo="multiply")),
        ("one scale per row, not per group", lambda *a: awq(*a, groups="row")),
    ],
    "gptq_columns": [
        ("error over the diagonal squared", lambda *a: gptq(*a, err="square")),
        ("error over the square root of the diagonal", lambda *a: gptq(*a, err="sqrt")),
        ("floor", lambda *a: gptq(*a, rnd=torch.floor)),
        ("returns the codes", lambda *a: gptq(*a, ret="codes")),
        ("Hinv @ Hinv.T for H⁻¹", gptq_wrong_product),
    ],
    "fake_quantize_ste": [
        ("trunc", lambda *a: ste(*a, rnd=torch.trunc)),
        ("ceil", lambda *a: ste(*a, rnd=torch.ceil)),
        ("values zeroed where clamped", lambda *a: ste(*a, zero_values_outside=True)),
    ],
    "pareto_front_indices": [
        ("sorted by error", lambda s, e: sorted(pareto(s, e), key=lambda i: e[i])),
        ("the beaten models", lambda s, e: [i for i in range(len(s)) if i not in pareto(s, e)]),
        ("a boolean mask", lambda s, e: [i in pareto(s, e) for i in range(len(s))]),
        ("the sizes of the front", lambda s, e: [s[i] for i in pareto(s, e)]),
    ],
}


@pytest.mark.parametrize("name,label,fn", [(n, label, fn) for n, v in UNLISTED.items() for label, fn in v],
                         ids=lambda v: v.replace(" ", "-") if isinstance(v, str) else "")
def test_unlisted_mistakes_are_rejected(name, label, fn):
    report = check(name, fn)
    assert not report.passed, f"{label} passed the {name} checker"
    assert report.status == "failed"
    assert report.hint  # a general hint at least
    assert "Traceback" not in str(report)


# ── regressions: each wrong answer is rejected, and named for what it is ─────────────────────


@pytest.mark.parametrize("alphas", [
    [k / 20 for k in range(1, 20)],   # no α = 0
    [k / 20 for k in range(21)],      # α = 1 too
    [k / 20 for k in range(1, 21)],   # shifted by one
], ids=["no-zero", "with-one", "shifted"])
def test_awq_grid_off_by_one_is_rejected_and_named(alphas):
    # these passed every case before: in all of them the best α was inside the grid
    report = check("awq_scale_search", lambda *a: awq(*a, alphas=alphas))
    assert not report.passed
    assert "range(20)" in report.hint


@pytest.mark.parametrize("kwargs,named", [
    ({"floor": False}, "clamp s to at least 1e-4"),               # passed before
    ({"groups": "tensor"}, "Pass group_size=group_size"),         # was blamed on "forgetting to divide by s"
], ids=["no-floor", "per-tensor"])
def test_awq_unfloored_or_ungrouped_search_is_named(kwargs, named):
    report = check("awq_scale_search", lambda *a: awq(*a, **kwargs))
    assert not report.passed
    assert named in report.hint
    assert "forgetting to divide" not in report.hint


def test_awq_scales_from_the_weight_are_named():
    report = check("awq_scale_search", lambda W, x, H, b, g: awq(W, x, H, b, g, stat=W.abs().mean(0)))
    assert "not from the size of the weights" in report.hint


@pytest.mark.parametrize("norm", ["mean", "max"])
def test_awq_other_normalisation_says_only_the_normalisation_is_off(norm):
    report = check("awq_scale_search", lambda *a: awq(*a, norm=norm))
    assert "the right α, but s is normalised differently" in report.to_dict()["problem"]


def test_gptq_missing_clamp_is_named_and_general_hint_gives_the_grid():
    def no_clamp(W, Hinv, scale, zero, qmax):
        W, Q = W.clone(), torch.zeros_like(W)
        s, z = scale[:, 0], zero[:, 0]
        for i in range(W.shape[1]):
            w = W[:, i]
            q = (torch.round(w / s) + z - z) * s
            Q[:, i] = q
            W[:, i:] -= ((w - q) / Hinv[i, i])[:, None] * Hinv[i, i:][None, :]
        return Q

    assert "clamp the codes" in check("gptq_columns", no_clamp).hint
    # a rounding mistake gets the general hint, which now spells out the quantization step too
    assert "clamp(round(W[:, i] / scale) + zero, 0, qmax)" in check("gptq_columns", lambda *a: gptq(
        *a, rnd=torch.floor)).hint


@pytest.mark.parametrize("kwargs,named", [
    ({"mask": "strict"}, "with >= and <=, not > and <"),
    ({"mask": "no zero point"}, "zero point included"),
    ({"mask": "x units, no zero point"}, "zero point included"),
    ({"clamp": False}, "the codes must stay in [qmin, qmax]"),
], ids=["strict", "no-zero-point", "x-units-no-zero-point", "forward-unclamped"])
def test_fake_quantize_mask_and_clamp_mistakes_are_named(kwargs, named):
    report = check("fake_quantize_ste", lambda *a: ste(*a, **kwargs))
    assert not report.passed
    assert named in report.hint


def test_pareto_scan_keeping_equal_errors_is_rejected():
    # passed before: no case had a larger model with exactly the error of a smaller one
    key = lambda s, e: lambda i: (s[i], e[i], i)  # noqa: E731
    report = check("pareto_front_indices", lambda s, e: pareto_scan(s, e, key=key, keep_equal=True))
    assert not report.passed
    assert "this looks like a sorted scan that keeps equal errors" in report.hint


def test_pareto_scan_sorted_by_size_alone_is_named():
    key = lambda s, e: lambda i: s[i]  # noqa: E731
    report = check("pareto_front_indices", lambda s, e: pareto_scan(s, e, key=key, keep_equal=False))
    assert "Sort by (size, error)" in report.hint


def test_pareto_right_models_in_wrong_order_says_so():
    report = check("pareto_front_indices", lambda s, e: pareto(s, e)[::-1])
    assert "right models, in the wrong order" in report.to_dict()["problem"]


# ── found by an audit of the exercises: each is caught and named ────────────────────────────


def gptq_as_written(W, Hinv, scale, zero, qmax, *, feedback="row", codes=False):
    W = W.clone()
    Q = torch.zeros_like(W)
    s, z = scale[:, 0], zero[:, 0]
    for i in range(W.shape[1]):
        w = W[:, i]
        c = torch.clamp(torch.round(w / s) + z, 0, qmax)
        q = (c - z) * s
        Q[:, i] = c if codes else q
        err = (w - q) / Hinv[i, i]
        if feedback == "row":
            W[:, i:] -= err[:, None] * Hinv[i, i:][None, :]
        elif feedback == "column":
            W[:, i:] -= err[:, None] * Hinv[i:, i][None, :]
    return Q


@pytest.mark.parametrize("feedback", ["column", "none"])
def test_gptq_feedback_along_the_column_is_told_to_use_the_row(feedback):
    """Hinv[i:, i] of the upper-triangular factor is zero below the diagonal: the answer is RTN,
    and the hint must say that the feedback never reached the later columns (true with none too)."""
    report = check("gptq_columns", lambda *a: gptq_as_written(*a, feedback=feedback))
    assert not report.passed and "never reached the later" in report.hint
    assert "row i of Hinv" in report.hint and "Hinv[i:, i]" in report.hint


def test_gptq_returning_the_codes_is_named_and_the_general_hint_asks_for_values():
    report = check("gptq_columns", lambda *a: gptq_as_written(*a, codes=True))
    assert not report.passed and "this looks like returning the codes" in report.hint
    assert "not the integer codes" in get_checker("gptq_columns").hint


def awq_as_written(W, xs, H, bits, gs, *, alphas=None, give="s"):
    best_err, best_s, best_alpha = float("inf"), None, None
    for alpha in [k / 20 for k in range(20)] if alphas is None else alphas:
        s = xs.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        err = output_error(W, quantize_dequantize(W * s, bits, group_size=gs) / s, H).item()
        if err < best_err:
            best_err, best_s, best_alpha = err, s, alpha
    return best_s if give == "s" else best_alpha


@pytest.mark.parametrize("alphas", [
    torch.linspace(0, 1, 20),
    torch.linspace(0, 1, 20).tolist(),
    [k / 19 for k in range(20)],
], ids=["linspace", "linspace-list", "k-over-19"])
def test_awq_linspace_grid_is_named(alphas):
    report = check("awq_scale_search", lambda *a: awq_as_written(*a, alphas=alphas))
    assert not report.passed and "torch.linspace(0, 1, 20)" in report.hint and "k/20" in report.hint


def test_awq_returning_alpha_is_named():
    """It got only "expected a torch.Tensor but got float" and the general hint."""
    report = check("awq_scale_search", lambda *a: awq_as_written(*a, give="alpha"))
    assert not report.passed and "returning α instead of the scales" in report.hint
