"""Checker for lesson 08 ("AWQ"): the scale search for one layer.

    awq_scale_search(W, x_scale, H, bits, group_size) -> s [in]

For α = 0, 1/20, ..., 19/20: s = x_scale^α (at least 1e-4), normalised by sqrt(max(s)·min(s));
the candidate weight is Q(W·s) / s with Q = RTN min-max per group
(`minicomp.quant.quantize_dequantize(W * s, bits, group_size=group_size)`); its error is the
output error `minicomp.awq.output_error(W, W_hat, H)`. Return the s with the least error.

The last two cases hold the grid's ends: one where α = 0 (plain RTN) wins, one where α = 19/20
wins and α = 1 would do better still, with an almost silent channel that needs the floor 1e-4.
An s off from the expected one by the same factor in every channel has the right α and another
normalisation, and the report says so.
"""

from __future__ import annotations

import numpy as np
import torch

from minicomp.awq import activation_scales, awq_search_scale, output_error
from minicomp.gptq import input_hessian
from minicomp.grading import Case, Mistake, compare_values, register
from minicomp.quant import quantize_dequantize


def search(W, x_scale, H, bits, group_size, *, measure="output", undo=True, normalise=True, invert=False,
           grid=range(20), clamp=True, statistic=None, grouped=True, alphas=None, give="s"):
    """A transcription of the search; the keyword arguments produce the known mistakes (`alphas`,
    the α themselves, replaces the grid of k in α = k/20)."""
    best, best_s, best_alpha = float("inf"), None, None
    base = x_scale if statistic is None else statistic(W, x_scale)
    for alpha in ([k / 20 for k in grid] if alphas is None else alphas):
        s = base.pow(alpha)
        if clamp:
            s = s.clamp(min=1e-4)
        if normalise:
            s = s / (s.max() * s.min()).sqrt()
        groups = {"group_size": group_size} if grouped else {}
        if invert:
            W_hat = quantize_dequantize(W / s, bits, **groups) * s
        else:
            W_hat = quantize_dequantize(W * s, bits, **groups)
            if undo:
                W_hat = W_hat / s
        err = output_error(W, W_hat, H).item() if measure == "output" else (W - W_hat).pow(2).sum().item()
        if err < best:
            best, best_s, best_alpha = err, s, alpha
    return best_s if give == "s" else best_alpha


def reference(W, x_scale, H, bits, group_size):
    return awq_search_scale(W, x_scale, H, bits, group_size)[0]


def _case(out, n_in, bits, group_size, seed, loud=4, factor=20.0, silent=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n_in, generator=g) * 0.1
    X = torch.randn(256, n_in, generator=g)
    channels = torch.randperm(n_in, generator=g)
    X[:, channels[:loud]] *= factor  # a few salient input channels
    X[:, channels[loud:loud + silent]] *= 1e-6  # and almost silent ones: x_scale**α needs its floor 1e-4
    return (W, activation_scales([X]), input_hessian([X]), bits, group_size)


def _cases():
    return [
        Case("4 x 8, 3 bits, one group per row", _case(4, 8, 3, 8, seed=0, loud=1)),
        Case("16 x 64, 3 bits, groups of 32", _case(16, 64, 3, 32, seed=1)),
        Case("32 x 128, 4 bits, groups of 64", _case(32, 128, 4, 64, seed=2)),
        Case("8 x 64, 2 bits, strong outliers", _case(8, 64, 2, 64, seed=3, factor=50.0)),
        Case("24 x 96, 3 bits, groups of 32, mild outliers", _case(24, 96, 3, 32, seed=4, factor=4.0)),
        # the two ends of the grid: α = 0 must be tried, α = 1 must not (it would beat 19/20 here);
        # each wins by more than 10 % over any other α, so float64 or another RTN cannot flip it
        Case("8 x 32, 8 bits, no outlier channels: scaling does not pay, α = 0 (plain RTN) wins",
             _case(8, 32, 8, 32, seed=12, factor=1.0)),
        Case("4 x 16, 2 bits, one very loud channel and one almost silent one (mean |x| ≈ 1e-6): "
             "α = 19/20 wins", _case(4, 16, 2, 16, seed=11, loud=1, factor=100.0, silent=1)),
    ]


def _compare(got, expected):
    """`compare_values`, and when every channel is off by the same factor, the α is right and
    only the normalisation is not: say so."""
    problem = compare_values(got, expected, 1e-5, 1e-4)
    if problem is None or not isinstance(got, (torch.Tensor, np.ndarray)):
        return problem
    got = torch.as_tensor(got)
    if got.shape != expected.shape or not got.is_floating_point():
        return problem
    ratio = got.detach().double() / expected.double()
    c = ratio.mean()
    if torch.isfinite(ratio).all() and c > 0 and torch.allclose(ratio, c.expand_as(ratio), rtol=1e-4, atol=0):
        return (f"{problem}; every channel is the expected s times {c.item():.4g}: the right α, but s is "
                "normalised differently (divide by sqrt(s.max() * s.min()), so that max(s) · min(s) = 1)")
    return problem


register(
    "awq_scale_search",
    params=("W", "x_scale", "H", "bits", "group_size"),
    reference=reference,
    cases=_cases,
    compare=_compare,
    mistakes=[
        Mistake("measuring the weight error instead of the output error",
                lambda *a: search(*a, measure="weight"),
                "AWQ minimises the error of the layer's output, output_error(W, W_hat, H), which weighs "
                "each input channel by its activations; ‖W − Ŵ‖² ignores them and favours α = 0."),
        Mistake("forgetting to divide by s after quantizing", lambda *a: search(*a, undo=False),
                "The layer computes (x / s) · Q(W s)ᵀ, so the effective weight is Q(W · s) / s."),
        Mistake("dividing the weight by s instead of multiplying", lambda *a: search(*a, invert=True),
                "Salient channels get *larger* weights before rounding (W · s, s > 1 where |x| is "
                "large), and the input is divided by s."),
        Mistake("not normalising s", lambda *a: search(*a, normalise=False),
                "Normalise s by sqrt(max(s) · min(s)) so that the scales sit around 1, as AWQ does."),
        Mistake("returning the worst scale",
                lambda W, x, H, b, g: _worst(W, x, H, b, g),
                "Keep the α with the *smallest* output error."),
        Mistake("an α grid shifted by one step", lambda *a: search(*a, grid=range(1, 21)),
                "The grid is α = k/20 for k = 0, 1, …, 19 (range(20)): it starts at α = 0, plain "
                "round-to-nearest, so the search never does worse than RTN, and it stops at 19/20, "
                "before α = 1."),
        Mistake("an α grid of k/19 (torch.linspace(0, 1, 20))", lambda *a: search(*a, alphas=torch.linspace(0, 1, 20)),
                "torch.linspace(0, 1, 20), like k / 19, steps by 1/19 and ends at α = 1. The grid is α = k/20 "
                "for k = 0, 1, …, 19: [k / 20 for k in range(20)], or torch.arange(20) / 20."),
        Mistake("returning α instead of the scales", lambda *a: search(*a, give="alpha"),
                "Return the scales s of the best α (a tensor of shape [in], x_scale ** α, floored and "
                "normalised), not α itself."),
        Mistake("no floor of 1e-4 on s", lambda *a: search(*a, clamp=False),
                "An almost silent input channel (mean |x| ≈ 0) gives x_scale ** α ≈ 0, and "
                "sqrt(s.max() * s.min()) with it: clamp s to at least 1e-4 before normalising."),
        Mistake("the scales taken from the weight", lambda *a: search(*a, statistic=lambda W, x: W.abs().mean(0)),
                "AWQ protects the weights that meet *large activations*: s = x_scale ** α, from the mean "
                "|x| of each input channel (x_scale), not from the size of the weights."),
        Mistake("one scale for the whole tensor (group_size not passed)", lambda *a: search(*a, grouped=False),
                "Pass group_size=group_size: quantize_dequantize(W * s, bits) alone quantizes the whole "
                "tensor with one scale and zero point, not each group of group_size inputs of a row."),
    ],
    hint="for α = k/20 with k = 0, 1, …, 19: s = x_scale**α (at least 1e-4), s /= sqrt(s.max()·s.min()); "
         "W_hat = quantize_dequantize(W * s, bits, group_size=g) / s; keep the s of least output_error "
         "(the first on a tie).",
)


def _worst(W, x_scale, H, bits, group_size):
    worst, worst_s = -1.0, None
    for k in range(20):
        s = x_scale.pow(k / 20).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        err = output_error(W, quantize_dequantize(W * s, bits, group_size=group_size) / s, H).item()
        if err > worst:
            worst, worst_s = err, s
    return worst_s
