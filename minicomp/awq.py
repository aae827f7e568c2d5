"""AWQ: protect the weights that meet large activations by scaling, not by mixed precision (lesson 08).

Lin, Tang, Tang, Yang, Dang, Gan & Han, "AWQ: Activation-aware Weight Quantization for LLM
Compression and Acceleration" (MLSys 2024). The loop follows mit-han-lab/llm-awq's `auto_scale`
and `auto_clip`.

A few input channels carry much larger activations than the rest, so the error of their weights
matters most. Multiplying input channel j of W by s_j > 1 (and dividing the input by s_j) leaves
the layer's output unchanged in float, but shrinks channel j's relative rounding error:

    y = x Wᵀ = (x · diag(s)⁻¹) (W · diag(s))ᵀ  ≈  (x / s) Q(W · s)ᵀ                     (AWQ eq. 4)

with s = s_x^α, s_x = mean |x| per input channel, and α ∈ [0, 1) found by a grid search that
minimises the output error ‖X Wᵀ − (X / s) Q(W s)ᵀ‖² on calibration inputs (eq. 5). α = 0 is
plain round-to-nearest, so the search never does worse than RTN on its objective. Then, per
group, the clipping range is shrunk where that lowers the group's output error (`auto_clip`).

Where the scale goes. The division x / s is exact and free when it can be folded into the op
before: a LayerNorm/RMSNorm whose output feeds only this layer (divide its weight and bias by s),
or a previous linear whose output feeds only this layer (divide its output rows by s). In a
pre-LN GPT, ln_1 feeds only c_attn and ln_2 only c_fc. In a post-LN BERT block (MiniLM), each
LayerNorm's output feeds the next linears *and* the residual connection, so dividing it by s
would change the residual stream: there only the value projection → attention output projection
pair folds exactly (attention mixes value rows linearly, per channel). `quantize_model` quantizes
one layer at a time without knowing the graph, so `awq` returns `AWQLinear`, which divides its
input by s explicitly: always exact, one elementwise op per call.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from minicomp.calibrate import register_method
from minicomp.gptq import input_hessian
from minicomp.quant import (
    QuantizedWeight,
    check_bits,
    check_finite,
    dequantize_weight,
    group_len,
    qparams_from_range,
    qrange,
)
from minicomp.rtn import QuantLinear


def activation_scales(inputs) -> torch.Tensor:
    """s_x: mean |x| over all calibration tokens, per input channel. inputs: [tokens, in] tensors."""
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise ValueError("inputs is empty; expected at least one [tokens, in] tensor")
    total = sum(x.reshape(-1, x.shape[-1]).abs().float().sum(0) for x in inputs)  # [in]
    n = sum(x.reshape(-1, x.shape[-1]).shape[0] for x in inputs)
    return total / n


def _quantize_groups(W: torch.Tensor, g: int, bits: int, symmetric: bool, ratio: torch.Tensor | float = 1.0):
    """RTN per group of g inputs with the range shrunk by `ratio` ([out, in/g] or a number).

    Returns (codes [out, in] int32 signed as in `qrange`, scale [out, in/g], zero [out, in/g])."""
    out, n_in = W.shape
    Wg = W.reshape(out, n_in // g, g)  # [out, G, g]
    lo, hi = Wg.amin(-1), Wg.amax(-1)  # [out, G]
    scale, zero = qparams_from_range(lo * ratio, hi * ratio, bits, symmetric)
    qmin, qmax = qrange(bits, symmetric)
    codes = torch.clamp(torch.round(Wg / scale[..., None]) + zero[..., None], qmin, qmax)
    return codes.reshape(out, n_in).to(torch.int32), scale, zero


def _dq(codes, scale, zero, g):
    out, n_in = codes.shape
    return ((codes.reshape(out, n_in // g, g) - zero[..., None]) * scale[..., None]).reshape(out, n_in)


def output_error(W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """‖X Wᵀ − X Ŵᵀ‖² / n through H = 2XᵀX/n: Σ_rows ΔW H ΔWᵀ / 2 (no need to keep X)."""
    D = W - W_hat  # [out, in]
    return ((D @ H) * D).sum() / 2


@torch.no_grad()
def awq_search_scale(weight: torch.Tensor, x_scale: torch.Tensor, hessian: torch.Tensor, bits: int = 4,
                     group_size: int = 128, symmetric: bool = False, n_grid: int = 20):
    """The AWQ scale s [in] for one layer, and the search curve [(α, error), ...].

    s = x_scale^α normalised to sqrt(max·min) = 1, for α = 0, 1/n_grid, ..., (n_grid−1)/n_grid;
    the error of each α is ‖X Wᵀ − (X/s) Q(W s)ᵀ‖², measured through `hessian` (H = 2XᵀX/n).
    """
    W = weight.detach().float()  # [out, in]
    g = group_len(W, group_size)
    H = hessian.to(W)
    x_scale = x_scale.to(W).clamp(min=1e-8)
    curve, best = [], (float("inf"), None)
    for k in range(n_grid):
        alpha = k / n_grid
        s = x_scale.pow(alpha).clamp(min=1e-4)  # [in]                                    (eq. 5)
        s = s / (s.max() * s.min()).sqrt()
        codes, scale, zero = _quantize_groups(W * s, g, bits, symmetric)
        W_hat = _dq(codes, scale, zero, g) / s  # the effective weight of (x / s) Q(W s)ᵀ
        err = output_error(W, W_hat, H).item()
        curve.append((alpha, err))
        if err < best[0]:
            best = (err, s)
    return best[1], curve


@torch.no_grad()
def awq_search_clip(weight: torch.Tensor, hessian: torch.Tensor, bits: int = 4, group_size: int = 128,
                    symmetric: bool = False, n_grid: int = 20, max_shrink: float = 0.5) -> torch.Tensor:
    """Per (row, group) range ratio r ∈ {1, 1 − 1/n_grid, ...} ≥ 1 − max_shrink with the least output
    error of that group, Δw_g H_gg Δw_gᵀ (auto_clip). Returns ratios [out, in / g]; r = 1 is min-max."""
    W = weight.detach().float()
    out, n_in = W.shape
    g = group_len(W, group_size)
    G = n_in // g
    Hg = torch.stack([hessian[i * g:(i + 1) * g, i * g:(i + 1) * g] for i in range(G)]).to(W)  # [G, g, g]
    best_err = torch.full((out, G), float("inf"), device=W.device)
    best_r = torch.ones(out, G, device=W.device)
    for k in range(int(max_shrink * n_grid) + 1):
        r = 1.0 - k / n_grid
        codes, scale, zero = _quantize_groups(W, g, bits, symmetric, r)
        D = (W - _dq(codes, scale, zero, g)).reshape(out, G, g)  # [out, G, g]
        err = torch.einsum("ogi,gij,ogj->og", D, Hg, D)  # each group's share of the output error
        better = err < best_err
        best_err, best_r = torch.where(better, err, best_err), torch.where(better, r, best_r)
    return best_r


@torch.no_grad()
def awq_quantize(weight: torch.Tensor, inputs, bits: int = 4, group_size: int = 128, symmetric: bool = False,
                 n_grid: int = 20, clip: bool = True):
    """AWQ for one layer: (QuantizedWeight of W·s, s [in]). The layer computes (x / s) Q(W s)ᵀ.

    inputs: calibration inputs of this layer, a list of [tokens, in] tensors.
    """
    check_finite("weight", weight)
    if weight.dim() != 2:
        raise ValueError(f"weight has shape {tuple(weight.shape)}; expected a weight matrix [out, in]")
    bits = check_bits(bits)
    g = group_len(weight, group_size)
    H = input_hessian(inputs)  # [in, in]
    if H.shape[0] != weight.shape[1]:
        raise ValueError(f"inputs have {H.shape[0]} features; expected in_features={weight.shape[1]}")
    s, _ = awq_search_scale(weight, activation_scales(inputs), H, bits, g, symmetric, n_grid)
    Ws = weight.detach().float() * s  # [out, in]
    Hs = H / s[:, None] / s[None, :]  # the Hessian of the scaled input x / s
    ratio = awq_search_clip(Ws, Hs, bits, g, symmetric) if clip else 1.0
    codes, scale, zero = _quantize_groups(Ws, g, bits, symmetric, ratio)
    offset = -qrange(bits, symmetric)[0]
    return QuantizedWeight(codes + offset, scale, zero + offset, bits, g, symmetric=symmetric), s


class AWQLinear(QuantLinear):
    """y = (x / s) Q(W s)ᵀ + b: a QuantLinear that divides its input by the AWQ scale s [in] first."""

    def __init__(self, qweight: QuantizedWeight, input_scale: torch.Tensor, bias=None, **kwargs):
        super().__init__(qweight, bias, **kwargs)
        if tuple(input_scale.shape) != (self.in_features,):
            raise ValueError(f"input_scale has shape {tuple(input_scale.shape)}; expected [{self.in_features}]")
        self.register_buffer("input_scale", input_scale.detach().float().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The effective float weight [out, in] = Q(W s) / s."""
        w = dequantize_weight(self.codes, self.scale, self.zero, self.group_size, self.perm)
        return w / self.input_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x / self.input_scale.to(x.dtype))


@register_method("awq", needs_calibration=True,
                 description="AWQ: activation-aware per-channel scaling and clipping, then RTN (lesson 08)")
def _awq(layer: nn.Linear, inputs, *, bits, group_size, symmetric, **options):
    qw, s = awq_quantize(layer.weight, inputs, bits, group_size, symmetric, **options)
    return AWQLinear(qw, s, layer.bias).to(layer.weight.device)


__all__ = ["awq_quantize", "awq_search_scale", "awq_search_clip", "activation_scales", "output_error",
           "AWQLinear"]
