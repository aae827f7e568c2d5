"""Checker for lesson 08 ("AWQ"): the scale search for one layer.

    awq_scale_search(W, x_scale, H, bits, group_size) -> s [in]

For α = 0, 1/20, ..., 19/20: s = x_scale^α (at least 1e-4), normalised by sqrt(max(s)·min(s));
the candidate weight is Q(W·s) / s with Q = RTN min-max per group
(`minicomp.quant.quantize_dequantize(W * s, bits, group_size=group_size)`); its error is the
output error `minicomp.awq.output_error(W, W_hat, H)`. Return the s with the least error.
"""

from __future__ import annotations

import torch

from minicomp.awq import activation_scales, awq_search_scale, output_error
from minicomp.gptq import input_hessian
from minicomp.grading import Case, Mistake, register
from minicomp.quant import quantize_dequantize


def search(W, x_scale, H, bits, group_size, *, measure="output", undo=True, normalise=True, invert=False):
    """A transcription of the search; the keyword arguments produce the known mistakes."""
    best, best_s = float("inf"), None
    for k in range(20):
        s = x_scale.pow(k / 20).clamp(min=1e-4)
        if normalise:
            s = s / (s.max() * s.min()).sqrt()
        if invert:
            W_hat = quantize_dequantize(W / s, bits, group_size=group_size) * s
        else:
            W_hat = quantize_dequantize(W * s, bits, group_size=group_size)
            if undo:
                W_hat = W_hat / s
        err = output_error(W, W_hat, H).item() if measure == "output" else (W - W_hat).pow(2).sum().item()
        if err < best:
            best, best_s = err, s
    return best_s


def reference(W, x_scale, H, bits, group_size):
    return awq_search_scale(W, x_scale, H, bits, group_size)[0]


def _case(out, n_in, bits, group_size, seed, loud=4, factor=20.0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n_in, generator=g) * 0.1
    X = torch.randn(256, n_in, generator=g)
    X[:, torch.randperm(n_in, generator=g)[:loud]] *= factor  # a few salient input channels
    return (W, activation_scales([X]), input_hessian([X]), bits, group_size)


def _cases():
    return [
        Case("4 x 8, 3 bits, one group per row", _case(4, 8, 3, 8, seed=0, loud=1)),
        Case("16 x 64, 3 bits, groups of 32", _case(16, 64, 3, 32, seed=1)),
        Case("32 x 128, 4 bits, groups of 64", _case(32, 128, 4, 64, seed=2)),
        Case("8 x 64, 2 bits, strong outliers", _case(8, 64, 2, 64, seed=3, factor=50.0)),
        Case("24 x 96, 3 bits, groups of 32, mild outliers", _case(24, 96, 3, 32, seed=4, factor=4.0)),
    ]


register(
    "awq_scale_search",
    params=("W", "x_scale", "H", "bits", "group_size"),
    reference=reference,
    cases=_cases,
    atol=1e-5,
    rtol=1e-4,
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
    ],
    hint="for α in k/20: s = x_scale**α (clamp 1e-4), s /= sqrt(s.max()·s.min()); "
         "W_hat = quantize_dequantize(W * s, bits, group_size=g) / s; keep the s of least output_error.",
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
