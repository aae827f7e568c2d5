"""Checker for lesson 07 ("GPTQ"): the inner loop, column by column with error feedback.

    gptq_columns(W, Hinv, scale, zero, qmax) -> the quantized weight Q [out, in] (dequantized floats)

W [out, in] is the weight; Hinv [in, in] the upper Cholesky factor of the (damped) inverse Hessian
(`minicomp.gptq.inverse_hessian_factor`); scale, zero [out, 1] the per-row quantization grid, codes
in [0, qmax]. For each column i: quantize the *current* column, then spread its error over the
columns not yet quantized with row i of Hinv:

    q_i = (clamp(round(w_i / scale) + zero, 0, qmax) − zero) · scale
    err = (w_i − q_i) / Hinv[i, i]
    W[:, i:] −= err · Hinv[i, i:]                         (GPTQ, eq. 2 with the Cholesky rows)
"""

from __future__ import annotations

import torch

from minicomp.gptq import input_hessian, inverse_hessian_factor
from minicomp.grading import Case, Mistake, register
from minicomp.quant import compute_qparams


def _code(w, scale, zero, qmax, clamp=True):  # the codes of one column [out], per-row [out, 1] params
    code = torch.round(w / scale[:, 0]) + zero[:, 0]
    return torch.clamp(code, 0, qmax) if clamp else code


def _q(w, scale, zero, qmax, clamp=True):  # quantize-dequantize one column [out] with per-row [out, 1] params
    return (_code(w, scale, zero, qmax, clamp) - zero[:, 0]) * scale[:, 0]


def gptq_columns(W, Hinv, scale, zero, qmax, *, sign=1.0, divide=True, propagate="row", clamp=True, codes=False):
    """The reference loop; the keyword arguments produce the known mistakes."""
    W = W.clone()
    Q = torch.zeros_like(W)
    for i in range(W.shape[1]):
        w = W[:, i]
        q = _q(w, scale, zero, qmax, clamp)
        Q[:, i] = _code(w, scale, zero, qmax, clamp) if codes else q
        d = Hinv[i, i]
        err = (w - q) / d if divide else (w - q)
        if propagate == "row":
            W[:, i:] -= sign * err[:, None] * Hinv[i, i:][None, :]
        elif propagate == "inverse":  # the rows of H⁻¹ itself, never updated
            Hi = Hinv.T @ Hinv
            err = (w - q) / Hi[i, i]
            W[:, i:] -= err[:, None] * Hi[i, i:][None, :]
        elif propagate == "next":
            if i + 1 < W.shape[1]:
                W[:, i + 1] -= err * Hinv[i, i + 1]
    return Q


def reference(W, Hinv, scale, zero, qmax):
    return gptq_columns(W, Hinv, scale, zero, qmax)


def _case(out, n_in, bits, seed, tokens=256, identity=False):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n_in, generator=g)
    X = torch.randn(tokens, n_in, generator=g) @ torch.randn(n_in, n_in, generator=g)
    H = torch.eye(n_in) if identity else input_hessian([X])
    Hinv = inverse_hessian_factor(H, 0.01)
    scale, zero = compute_qparams(W, bits, axis=0)  # per row, [out, 1]
    return (W, Hinv, scale, zero, 2**bits - 1)


def _cases():
    hand_W = torch.tensor([[0.9, 0.5], [-0.3, 1.2]])
    hand_Hinv = torch.tensor([[1.0, 0.5], [0.0, 0.8]])  # upper triangular, as the factor is
    hand_scale, hand_zero = torch.tensor([[0.5], [0.5]]), torch.tensor([[1], [1]], dtype=torch.int32)
    return [
        Case("a 2x2 example by hand: scale 0.5, zero point 1, 2 bits", (hand_W, hand_Hinv, hand_scale, hand_zero, 3)),
        Case("4 bits, 4 rows x 8 columns", _case(4, 8, 4, seed=1)),
        Case("3 bits, 16 x 32, correlated inputs", _case(16, 32, 3, seed=2)),
        Case("an identity Hessian: nothing to propagate (this is RTN)", _case(3, 6, 4, seed=3, identity=True)),
        Case("2 bits, 8 x 64", _case(8, 64, 2, seed=4)),
    ]


register(
    "gptq_columns",
    params=("W", "Hinv", "scale", "zero", "qmax"),
    reference=reference,
    cases=_cases,
    atol=1e-4,
    rtol=1e-4,
    mistakes=[
        # (these numbers come from no feedback at all, from quantizing each *original* column while
        # updating W, and from feedback along the column Hinv[i:, i], which the upper-triangular
        # factor holds zero below the diagonal: in all three the later columns are rounded as they
        # were; one mistake, one hint for all of them)
        Mistake("no error feedback reaching the later columns (that is RTN)",
                lambda W, Hinv, s, z, m: torch.stack([_q(W[:, i], s, z, m) for i in range(W.shape[1])], 1),
                "Each column was rounded as it was, so the error of column i never reached the later ones. "
                "After quantizing column i, subtract err · Hinv[i, i:] (row i of Hinv: its column Hinv[i:, i] "
                "is zero below the diagonal) from the columns not yet quantized, and quantize each column as "
                "those updates left it (the current W[:, i], not the original)."),
        Mistake("the update's sign flipped", lambda *a: gptq_columns(*a, sign=-1.0),
                "err = (w − q) / Hinv[i, i] is what column i lost; the later columns compensate by "
                "W[:, i:] -= err · Hinv[i, i:] (minus, not plus)."),
        Mistake("not dividing by the diagonal Hinv[i, i]", lambda *a: gptq_columns(*a, divide=False),
                "Scale the error by 1 / Hinv[i, i] before spreading it: err = (w − q) / Hinv[i, i]."),
        Mistake("rows of H⁻¹ instead of its Cholesky factor", lambda *a: gptq_columns(*a, propagate="inverse"),
                "Once column i is quantized the inverse Hessian of the remaining columns changes; the rows "
                "of its upper Cholesky factor Hinv already account for that. Use Hinv[i, i:], not H⁻¹[i, i:]."),
        Mistake("propagating only to the next column", lambda *a: gptq_columns(*a, propagate="next"),
                "The error goes to *every* column not yet quantized: W[:, i:] -= err · Hinv[i, i:]."),
        Mistake("returning the codes", lambda *a: gptq_columns(*a, codes=True),
                "Q holds the quantized weight: store q = (code − zero) · scale, the values on the grid, not "
                "the codes."),
        Mistake("no clamp to [0, qmax]", lambda *a: gptq_columns(*a, clamp=False),
                "The error feedback can push a later column past its row's original min and max, where "
                "the grid ends: clamp the codes, q = (clamp(round(w / scale) + zero, 0, qmax) − zero) · scale."),
    ],
    hint="For each column i: q = (clamp(round(W[:, i] / scale) + zero, 0, qmax) − zero) · scale, with "
         "scale and zero of shape [out] (scale[:, 0]); err = (W[:, i] − q) / Hinv[i, i]; "
         "W[:, i:] -= err[:, None] * Hinv[i, i:][None, :]. Return Q, the dequantized q's (the values on the "
         "grid, not the integer codes), as floats.",
)
