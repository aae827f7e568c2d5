"""Checker for lesson 06 ("PTQ and QAT"):

    fake_quantize_ste(x, scale, zero_point, qmin, qmax)
        forward:  x̂ = (clamp(round(x / scale) + zero_point, qmin, qmax) − zero_point) · scale
        backward: the straight-through estimator, ∂x̂/∂x = 1 where the code was not clamped,
                  0 where it was (as torch.fake_quantize_per_tensor_affine does)

The check calls the function on an x that requires grad, back-propagates a fixed upstream
gradient through it, and compares both the values and x's gradient. Every x sits away from the
rounding ties and from the half-step just outside the clamp's edges, so each usual way of
writing the estimator passes: on x, on x / scale or through torch.clamp, with the mask taken
from the rounded code or the unrounded one.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from minicomp.grading import Case, Mistake, compare_values, register
from minicomp.quant import fake_quantize


def _codes_away_from_edges(shape, qmin: int, qmax: int, seed: int, spill: int = 6) -> torch.Tensor:
    """Unrounded codes u = x / scale + zero_point, from `spill` codes below qmin to `spill` above
    qmax, each at least 0.1 from a tie, and none in the half-step just outside [qmin, qmax]."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(qmin - spill, qmax + spill + 1, shape, generator=g).float()
    frac = torch.rand(shape, generator=g) * 0.8 - 0.4               # in [-0.4, 0.4]
    frac = torch.where(k == qmin, frac.abs(), torch.where(k == qmax, -frac.abs(), frac))
    return k + frac


def _x(shape, scale, zero_point, qmin, qmax, seed, spill=6):
    """x whose codes are `_codes_away_from_edges`, for per-tensor or [rows, 1] scale and zero point."""
    return (_codes_away_from_edges(shape, qmin, qmax, seed, spill) - zero_point) * scale


def _cases():
    s4 = torch.tensor([[0.5], [0.25], [0.125], [1.0]])                  # [4, 1]
    z4 = torch.tensor([[8], [3], [0], [15]], dtype=torch.int32)
    return [
        Case("a hand example: scale 0.5, zero point 2, codes 0..7, both ends clamped",
             (torch.tensor([-2.0, -0.6, 0.1, 0.9, 1.6, 3.1]), 0.5, 2, 0, 7)),
        Case("nothing clamped: the gradient passes unchanged everywhere",
             (_x((5, 6), 0.1, 8, 0, 15, seed=1, spill=0), 0.1, 8, 0, 15)),
        Case("symmetric int8 (zero point 0, codes -128..127), some values clamped",
             (_x((40,), 0.02, 0, -128, 127, seed=2), torch.tensor(0.02), 0, -128, 127)),
        Case("per-channel: scale and zero_point of shape [rows, 1], 4 bits",
             (_x((4, 10), s4, z4, 0, 15, seed=3), s4, z4, 0, 15)),
        Case("2 bits, most values clamped", (_x((6, 8), 0.3, 1, 0, 3, seed=4), torch.tensor(0.3), 1, 0, 3)),
    ]


def upstream(shape) -> torch.Tensor:
    """The gradient the check sends back into x̂: distinct values, none 0 or 1, so that a gradient
    scaled by something, or not masked, shows."""
    n = math.prod(shape)
    return torch.linspace(0.5, 2.0, n).reshape(shape) if n > 1 else torch.full(shape, 1.5)


class Result(NamedTuple):
    """What the check compares: x̂ and the gradient that reached x (named in the report)."""

    x_hat: torch.Tensor
    grad_x: torch.Tensor


def values_and_gradient(fn, x, *args, **kwargs):
    """(x̂, ∂(Σ upstream · x̂)/∂x) for x̂ = fn(x, ...), x made a leaf that requires grad. Without
    a path from x̂ back to x the gradient is all zeros (what rounding alone gives)."""
    x = x.detach().clone().requires_grad_(True)
    y = fn(x, *args, **kwargs)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return y                                   # `_compare` says what is wrong with it
    grad = None
    if y.requires_grad:
        (grad,) = torch.autograd.grad(y, x, upstream(y.shape), allow_unused=True)
    return Result(y.detach(), torch.zeros_like(x) if grad is None else grad)


def _compare(got, expected) -> str | None:
    if not isinstance(got, Result):   # fn returned no tensor of x's shape (a tuple, a number, ...)
        shape = tuple(expected[0].shape)
        what = f"shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
        return f"expected x̂, a tensor of x's shape {shape}, but got {what}"
    problem = compare_values(got[0], expected[0])
    if problem:
        return f"the values x̂ are wrong: {problem}"
    problem = compare_values(got[1], expected[1])
    if problem:
        return f"the values x̂ are right, but the gradient that reaches x is not: {problem}"
    return None


def _stopped(x, s, z, lo, hi):
    return (torch.clamp(torch.round(x / s) + z, lo, hi) - z) * s


def _ste(x, x_hat, inside):
    """x̂ forward, the upstream gradient to x where `inside` (the standard trick)."""
    x_pass = torch.where(inside, x, x.detach())
    return x_pass + (x_hat - x_pass).detach()


def _inside(x, s, z, lo, hi):
    q = torch.round(x / s) + z
    return (q >= lo) & (q <= hi)


register(
    "fake_quantize_ste",
    params=("x", "scale", "zero_point", "qmin", "qmax"),
    reference=lambda x, scale, zero_point, qmin, qmax: fake_quantize(x, scale, zero_point, qmin, qmax),
    cases=_cases,
    compare=_compare,
    call=values_and_gradient,
    mistakes=[
        Mistake("no straight-through estimator",
                _stopped,
                "torch.round has a zero gradient (almost everywhere), so no gradient reaches x and a "
                "model trained through it never learns. Keep x̂ for the forward pass and take the "
                "gradient from x: x_pass + (x̂ - x_pass).detach()."),
        Mistake("the gradient passing where the code was clamped",
                lambda x, s, z, lo, hi: x + (_stopped(x, s, z, lo, hi) - x).detach(),
                "Where the clamp cut the code off, x̂ stays put however x moves, so its gradient there "
                "is 0: pass the gradient only where qmin <= round(x / scale) + zero_point <= qmax "
                "(torch.where(inside, x, x.detach()) as x_pass)."),
        Mistake("the range tested on x instead of on its code",
                lambda x, s, z, lo, hi: _ste(x, _stopped(x, s, z, lo, hi), (x >= lo) & (x <= hi)),
                "qmin and qmax bound the integer code, not x: test q = round(x / scale) + zero_point, "
                "inside = (q >= qmin) & (q <= qmax)."),
        Mistake("the mask the wrong way round",
                lambda x, s, z, lo, hi: _ste(x, _stopped(x, s, z, lo, hi), ~_inside(x, s, z, lo, hi)),
                "The gradient passes where the code was *inside* [qmin, qmax] and is 0 where it was clamped."),
        Mistake("the estimator put on the code with x's gradient",
                lambda x, s, z, lo, hi: (torch.clamp(x + (torch.round(x / s) + z - x).detach(), lo, hi) - z) * s,
                "The code is x / scale + zero_point, so its straight-through gradient is 1 / scale, which "
                "x̂ = (q - zero_point) * scale turns back into 1. Round u = x / scale with the estimator "
                "(u + (round(u) - u).detach()), or put it on x̂ itself; not x + (code - x).detach()."),
        Mistake("floor instead of round",
                lambda x, s, z, lo, hi: _ste(x, (torch.clamp(torch.floor(x / s) + z, lo, hi) - z) * s,
                                             _inside(x, s, z, lo, hi)),
                "The gradient is right, but x̂ is not: floor always rounds down; use torch.round."),
        Mistake("a missing clamp",
                lambda x, s, z, lo, hi: x + (torch.round(x / s) * s - x).detach(),
                "Codes must stay in [qmin, qmax]: clamp round(x / scale) + zero_point before "
                "dequantizing, and pass no gradient where it was clamped."),
        Mistake("the zero point's sign flipped",
                lambda x, s, z, lo, hi: _ste(x, (torch.clamp(torch.round(x / s) - z, lo, hi) + z) * s,
                                             _inside(x, s, z, lo, hi)),
                "The zero point is added to make the code and subtracted to dequantize: "
                "q = round(x / scale) + zero_point, x̂ = (q - zero_point) * scale."),
        Mistake("returning the codes",
                lambda x, s, z, lo, hi: _ste(x, torch.clamp(torch.round(x / s) + z, lo, hi),
                                             _inside(x, s, z, lo, hi)),
                "Fake quantization returns floats on x's scale: dequantize the codes, "
                "x̂ = (q - zero_point) * scale."),
        Mistake("the ends qmin and qmax left out of the mask",
                lambda x, s, z, lo, hi: (lambda q: _ste(x, _stopped(x, s, z, lo, hi), (q > lo) & (q < hi)))(
                    torch.round(x / s) + z),
                "A code equal to qmin or qmax was not cut off by the clamp, so the gradient passes there "
                "too: inside = (q >= qmin) & (q <= qmax), with >= and <=, not > and <."),
        Mistake("the zero point left out of the mask",
                lambda x, s, z, lo, hi: _ste(x, _stopped(x, s, z, lo, hi),
                                             (torch.round(x / s) >= lo) & (torch.round(x / s) <= hi)),
                "The clamp acts on the code q = round(x / scale) + zero_point, so the mask must test the "
                "same q, zero point included: inside = (q >= qmin) & (q <= qmax)."),
        Mistake("the clamp left out of the forward pass",
                lambda x, s, z, lo, hi: _ste(x, (torch.round(x / s) + z - z) * s, _inside(x, s, z, lo, hi)),
                "The gradient is right, but x̂ is not: the codes must stay in [qmin, qmax], "
                "x̂ = (clamp(q, qmin, qmax) - zero_point) * scale, so that far-out values land on the "
                "grid's ends."),
    ],
    hint="x̂ = (clamp(q, qmin, qmax) - zero_point) * scale with the code q = round(x / scale) + zero_point "
         "for the forward pass; for the backward pass x_pass = torch.where(inside, x, x.detach()) with "
         "inside = (q >= qmin) & (q <= qmax), and return x_pass + (x̂ - x_pass).detach().",
)
