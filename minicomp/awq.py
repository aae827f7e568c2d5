"""AWQ: protect the weights that meet large activations by scaling, not by mixed precision (lesson 08).

Lin, Tang, Tang, Yang, Dang, Gan & Han, "AWQ: Activation-aware Weight Quantization for LLM
Compression and Acceleration" (MLSys 2024). The loop follows mit-han-lab/llm-awq's `auto_scale`
and `auto_clip`, with these differences, each kept simple on purpose: the scale search scores
each layer's own output (llm-awq scores a whole block's for some layers), on inputs from the model
quantized so far (as GPTQ does here; llm-awq calibrates on the float model); and the clipping
search shrinks each group's [min, max] range toward its ends, by up to 50 % in steps of 1/n_grid,
for every layer, q and k included (llm-awq clamps to ±max|w|·r, down to 55 %, and skips q and k).

A few input channels carry much larger activations than the rest, so the error of their weights
matters most. Multiplying input channel j of W by s_j > 1 (and dividing the input by s_j) leaves
the layer's output unchanged in float, but shrinks channel j's relative rounding error:

    y = x Wᵀ = (x · diag(s)⁻¹) (W · diag(s))ᵀ  ≈  (x / s) Q(W · s)ᵀ                     (AWQ eq. 4)

with s = s_x^α, s_x = mean |x| per input channel, and α ∈ [0, 1) found by a grid search that
minimises the output error ‖X Wᵀ − (X / s) Q(W s)ᵀ‖² on calibration inputs (eq. 5). α = 0 is
plain round-to-nearest, so the search never does worse than RTN on its objective. Then, per
group, the clipping range is shrunk where that lowers the group's output error (`auto_clip`).

Where the scale goes. Layers that receive the very same input tensor (q, k and v of a BERT block)
get one s, searched on their stacked weights (`quantize_model` calls the method once per such
group), so that x / s can move into the op that computes x:

    a LayerNorm / RMSNorm   y = norm(x) · w + b       →  divide w and b by s
    a previous linear       y = x Wᵀ + b              →  divide its output rows (a QuantLinear's
                                                         row scales, since Ŵ = (codes − zero) · scale)

after which the layer is a plain QuantLinear. `fold_awq_scales`, which `quantize_model` runs last
(fold=False skips it), finds the op with forward hooks: the module whose output *is* the layer's
input tensor, or, where no module made it, the previous linear, whose rows the input may be a
linear mix of (attention mixes value rows per channel: o_proj's s goes into v_proj's rows; a fused
q|k|v projection holds them in its last third; a ReLU in between also commutes with s > 0).
A hook cannot see whether the same tensor also feeds a residual connection, so each fold is
checked: the model's output on a few calibration examples must not change (to `tol`), else it is
undone and the layer keeps `AWQLinear`, which divides its input by s explicitly (one elementwise op).

In a pre-LN GPT, ln_1 takes c_attn's s, ln_2 takes c_fc's, c_attn's value rows take attn.c_proj's;
mlp.c_proj (after a GELU) stays explicit. In a post-LN BERT block (MiniLM) each LayerNorm's output
also feeds the residual, so only the value → attention-output pair folds.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from minicomp.calibrate import _batches, _head, default_forward, register_method, set_module
from minicomp.checks import (
    check_bits,
    check_finite,
    check_flag,
    check_fraction,
    check_module,
    is_int,
)
from minicomp.gptq import check_inputs, input_hessian
from minicomp.kernels import PackedLinear, pack_model
from minicomp.quant import (
    QuantizedWeight,
    _check_scale,
    check_input,
    dequantize_weight,
    group_len,
    qparams_from_range,
    qrange,
)
from minicomp.rtn import QuantLinear


def activation_scales(inputs) -> torch.Tensor:
    """s_x: mean |x| over all calibration tokens, per input channel. inputs: [tokens, in] tensors."""
    inputs = check_inputs(inputs)
    total = sum(x.reshape(-1, x.shape[-1]).abs().float().sum(0) for x in inputs)  # [in]
    n = sum(x.reshape(-1, x.shape[-1]).shape[0] for x in inputs)
    if n == 0:
        raise ValueError("inputs hold no rows (0 tokens); expected calibration data")
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
    """‖X Wᵀ − X Ŵᵀ‖² / n through H = 2XᵀX/n: Σ_rows ΔW H ΔWᵀ / 2 (no need to keep X), a 0-d tensor;
    W and W_hat [out, in], H [in, in]."""
    _check_shapes(W, H, names=("W", "H"))
    check_finite("W_hat", W_hat)
    if W_hat.shape != W.shape:
        raise ValueError(f"W_hat has shape {tuple(W_hat.shape)}; expected the shape of W, {tuple(W.shape)}")
    dtype = torch.promote_types(torch.promote_types(W.dtype, W_hat.dtype), H.dtype)
    D = (W - W_hat).to(dtype)  # [out, in]
    return ((D @ H.to(dtype)) * D).sum() / 2


def _check_grid(n_grid) -> None:
    if not is_int(n_grid) or n_grid < 1:
        raise ValueError(f"n_grid={n_grid!r} must be a positive int (the number of points searched)")


def _check_shapes(weight: torch.Tensor, hessian: torch.Tensor, x_scale: torch.Tensor | None = None, *,
                  names: tuple[str, str] = ("weight", "hessian")) -> None:
    """weight [out, in], hessian [in, in] and (if given) x_scale [in], all finite floats."""
    w_name, h_name = names
    check_finite(w_name, weight)
    if weight.dim() != 2:
        raise ValueError(f"{w_name} has shape {tuple(weight.shape)}; expected a weight matrix [out, in]")
    n_in = weight.shape[1]
    if x_scale is not None:
        check_finite("x_scale", x_scale)
        if tuple(x_scale.shape) != (n_in,):
            raise ValueError(f"x_scale has shape {tuple(x_scale.shape)}; expected [in] = [{n_in}], one mean |x| "
                             "per input channel (see activation_scales)")
    check_finite(h_name, hessian)
    if tuple(hessian.shape) != (n_in, n_in):
        raise ValueError(f"{h_name} has shape {tuple(hessian.shape)}; expected [in, in] = [{n_in}, {n_in}] to "
                         f"match {w_name} {list(weight.shape)}")


@torch.no_grad()
def awq_search_scale(weight: torch.Tensor, x_scale: torch.Tensor, hessian: torch.Tensor, bits: int = 4,
                     group_size: int = 128, symmetric: bool = False, n_grid: int = 20):
    """The AWQ scale s [in] for one layer, and the search curve [(α, error), ...], from its weight
    [out, in], x_scale [in] (mean |x| per input channel, `activation_scales`) and hessian [in, in].

    s = x_scale^α normalised to sqrt(max·min) = 1, for α = 0, 1/n_grid, ..., (n_grid−1)/n_grid;
    the error of each α is ‖X Wᵀ − (X/s) Q(W s)ᵀ‖² / n, measured through `hessian` (H = 2XᵀX/n).
    """
    _check_grid(n_grid)
    check_finite("x_scale", x_scale)  # required here (_check_shapes takes None as "not given")
    if isinstance(x_scale, torch.Tensor) and bool((x_scale < 0).any()):
        raise ValueError("x_scale must be >= 0 everywhere: it is mean |x| per input channel "
                         "(activation_scales), and a negative value has no power s_x^α")
    _check_shapes(weight, hessian, x_scale)
    W = weight.detach().float()  # [out, in]
    g = group_len(W, group_size)
    H = hessian.to(W)
    x_scale = x_scale.to(W)   # a dead channel (0) gets s = 1e-4 from the clamp below, as in llm-awq
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
    error of that group, Δw_g H_gg Δw_gᵀ (auto_clip); weight [out, in], hessian [in, in] (2XᵀX/n).
    Returns ratios [out, in / g]; r = 1 is min-max."""
    _check_grid(n_grid)
    check_fraction("max_shrink", max_shrink, "[0, 1)", ": the largest fraction of a group's range cut")
    _check_shapes(weight, hessian)
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
    """AWQ for one layer: weight [out, in] -> (QuantizedWeight of W·s, s [in]). The layer computes
    (x / s) Q(W s)ᵀ.

    inputs: calibration inputs of this layer, a [tokens, in] tensor or an iterable of them.
    n_grid: points of both searches, α's (`awq_search_scale`) and the clipping ratio's
    (`awq_search_clip`). clip=False: min-max ranges after scaling.
    """
    inputs = check_inputs(inputs)  # a list: used twice below, a generator would be empty the second time
    clip = check_flag("clip", clip)
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
    ratio = awq_search_clip(Ws, Hs, bits, g, symmetric, n_grid) if clip else 1.0
    codes, scale, zero = _quantize_groups(Ws, g, bits, symmetric, ratio)
    offset = -qrange(bits, symmetric)[0]
    return QuantizedWeight(codes + offset, scale, zero + offset, bits, g, symmetric=symmetric), s


class AWQLinear(QuantLinear):
    """y = (x / s) Q(W s)ᵀ + b: a QuantLinear that divides its input by the AWQ scale s [in] first."""

    def __init__(self, qweight: QuantizedWeight, input_scale: torch.Tensor, bias=None, **kwargs):
        super().__init__(qweight, bias, **kwargs)
        if not isinstance(input_scale, torch.Tensor) or tuple(input_scale.shape) != (self.in_features,):
            raise ValueError(f"input_scale must be a tensor of shape [in_features] = [{self.in_features}], "
                             f"got {getattr(input_scale, 'shape', type(input_scale).__name__)}")
        _check_scale(input_scale.float(), "input_scale")  # x / s: a 0 or NaN would make every output inf or NaN
        self.register_buffer("input_scale", input_scale.detach().float().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The effective float weight [out, in] = Q(W s) / s."""
        w = dequantize_weight(self.codes, self.scale, self.zero, self.group_size, self.perm)
        return w / self.input_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_features, device=self.codes.device)
        return super().forward(x / self.input_scale.to(x.dtype))

    def packed(self, **kwargs) -> PackedAWQLinear:
        """This layer as a PackedAWQLinear: packed codes, and the same input scale."""
        return PackedAWQLinear.from_awq(self, **kwargs)


class PackedAWQLinear(PackedLinear):
    """A PackedLinear that divides its input by the AWQ scale s [in] first: a packed layer whose s
    did not fold (`quantize_model(..., pack=True)`, `kernels.pack_model`, `export.load_quantized`).

    Takes PackedLinear's arguments plus `input_scale` [in_features] (None: all ones).
    """

    def __init__(self, *args, input_scale: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if input_scale is None:
            input_scale = torch.ones(self.in_features)
        if not isinstance(input_scale, torch.Tensor) or tuple(input_scale.shape) != (self.in_features,):
            raise ValueError(f"input_scale must be a tensor of shape [in_features] = [{self.in_features}], "
                             f"got {getattr(input_scale, 'shape', type(input_scale).__name__)}")
        _check_scale(input_scale.float(), "input_scale")  # x / s: a 0 or NaN would make every output inf or NaN
        self.register_buffer("input_scale", input_scale.detach().float().clone())

    @classmethod
    def from_awq(cls, layer: AWQLinear, **kwargs) -> PackedAWQLinear:
        """Pack an AWQLinear; `kwargs` (scale_dtype, backend) go to `PackedLinear.from_quantized`."""
        if not isinstance(layer, AWQLinear):
            raise TypeError(f"layer must be an AWQLinear, got {type(layer).__name__}")
        packed = cls.from_quantized(layer.qweight, layer.bias, **kwargs)
        packed.input_scale.copy_(layer.input_scale)
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = (x / input_scale) Ŵᵀ + b: x [..., in_features] -> y [..., out_features], on the packed kernels."""
        check_input(x, self.in_features, device=self.qweight.device)
        return super().forward(x / self.input_scale.to(x.dtype))


# ── folding s into the op before ────────────────────────────────────────────────────────────


def _tensors(out) -> list[torch.Tensor]:
    """The floating-point tensors in a model's output (a tensor, tuple, list or dict of them)."""
    if isinstance(out, torch.Tensor):
        return [out.detach().float()] if out.is_floating_point() else []
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _run(model: nn.Module, batch, forward) -> list[torch.Tensor]:
    was_training = model.training
    model.eval()
    try:
        return _tensors((forward or default_forward)(model, batch))
    finally:
        model.train(was_training)


def _close(a: list[torch.Tensor], b: list[torch.Tensor], tol: float) -> bool:
    """Every output tensor agrees to tol relative to its largest entry."""
    return len(a) == len(b) and all(
        x.shape == y.shape and bool((x - y).abs().max() <= tol * y.abs().max().clamp(min=1e-30))
        for x, y in zip(a, b))


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, QuantLinear))


def _is_norm(m: nn.Module, n: int) -> bool:
    """LayerNorm / RMSNorm-like: a per-channel `weight` [n] (and `bias` [n]) applied last."""
    w, b = getattr(m, "weight", None), getattr(m, "bias", None)
    return (not _is_linear(m) and isinstance(w, torch.Tensor) and tuple(w.shape) == (n,)
            and (b is None or (isinstance(b, torch.Tensor) and tuple(b.shape) == (n,))))


def _trace(model: nn.Module, batch, forward, names: list[str]):
    """One forward pass: the input tensor of each AWQ layer, and which module produced each tensor."""
    inputs, made_by, alive = {}, {}, []

    def out_hook(name):
        def hook(module, args, out):
            if isinstance(out, torch.Tensor) and id(out) not in made_by:  # innermost module first
                made_by[id(out)] = name
                alive.append(out)  # keeps ids unique until we are done
        return hook

    def in_hook(name):
        def hook(module, args):
            inputs.setdefault(name, args[0])
        return hook

    handles = [m.register_forward_hook(out_hook(n)) for n, m in model.named_modules()]
    handles += [model.get_submodule(n).register_forward_pre_hook(in_hook(n)) for n in names]
    try:
        _run(model, batch, forward)
    finally:
        for h in handles:
            h.remove()
    return inputs, made_by


def _candidates(model, producer: str | None, before: str, n_in: int) -> list[tuple[str, slice | None]]:
    """Where x / s could go: (module name, None) for a norm, (name, output rows) for a linear."""
    m = model.get_submodule(producer) if producer is not None else None
    if m is not None and _is_norm(m, n_in):
        return [(producer, None)]
    if m is not None and _is_linear(m):
        return [(producer, slice(0, n_in))] if m.out_features == n_in else []
    # x is no module's output (or a GELU's): it may be a linear mix of a previous linear's rows, as
    # attention mixes the value rows (a fused q|k|v projection holds them in one slice of its rows)
    names = [n for n, mod in model.named_modules() if _is_linear(mod)]
    prev = names[names.index(before) - 1] if names.index(before) > 0 else None
    if prev is None or model.get_submodule(prev).out_features % n_in:
        return []
    k = model.get_submodule(prev).out_features // n_in
    return [(prev, slice(j * n_in, (j + 1) * n_in)) for j in reversed(range(k))]  # v is last in q|k|v


def _fold_into(m: nn.Module, rows: slice | None, s: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Divide the output channels of `m` (rows of a linear) by s in place; returns what to undo."""
    if rows is None:  # norm: y = norm(x) · w + b  →  y / s = norm(x) · (w / s) + b / s
        targets = [(m.weight, None), (getattr(m, "bias", None), None)]   # (an RMSNorm has no bias)
    else:  # linear: row i of W (QuantLinear: of its scales, W = (codes − zero) · scale) and b_i
        targets = [(m.scale if isinstance(m, QuantLinear) else m.weight, rows), (m.bias, rows)]
    undo = []
    for t, r in targets:
        if t is None:
            continue
        view = t.data if r is None else t.data[r]
        undo.append((view, view.clone()))
        view.div_(s.to(view).reshape(-1, *[1] * (view.dim() - 1)))
    return undo


@torch.no_grad()
def fold_awq_scales(model: nn.Module, calibration, forward=None, *, tol: float = 1e-4,
                    pack: bool = False, check_examples: int = 4) -> dict[str, str | None]:
    """Move each AWQLinear's x / s into the op that computes x, where that is exact; in place.

    Returns {AWQ layer name: where its s went ("h.0.ln_1", or "h.0.attn.c_attn[256:384]" for output
    rows of a linear), or None where the layer keeps dividing its input explicitly}. Folded layers
    become QuantLinear; pack=True then runs `kernels.pack_model`, so every weight-only QuantLinear
    becomes a PackedLinear (an AWQ layer whose s stayed explicit, a PackedAWQLinear).

    Each fold is tried and kept only if the model's outputs agree with the unfolded model's to
    `tol` (relative to their largest entry), on the first `check_examples` examples of the first
    calibration batch (all of it if the batch cannot be cut: see `_head`). A wrong fold changes
    the outputs of almost any input, so a few examples show it, at a fraction of the cost of a
    whole batch: the check runs the model once per candidate.
    """
    check_module(model)
    check_fraction("tol", tol, "(0, 1)")
    names = [n for n, m in model.named_modules() if isinstance(m, AWQLinear)]
    if not names:
        raise ValueError("model has no AWQLinear layers; quantize it with quantize_model(model, 'awq', "
                         "calibration=..., fold=False) first")
    if not is_int(check_examples) or check_examples < 1:
        raise ValueError(f"check_examples={check_examples!r} must be a positive int")
    batches = _batches(calibration)
    if not batches:
        raise ValueError("calibration=None; fold_awq_scales needs a calibration batch to check each fold")
    try:
        batch = _head(batches[0], check_examples)
        ref = _run(model, batch, forward)
    except Exception:  # a forward that needs the whole batch: check on all of it
        batch = batches[0]
        ref = _run(model, batch, forward)
    inputs, made_by = _trace(model, batch, forward, names)
    groups: dict[int, list[str]] = {}  # layers fed the very same tensor
    for n in names:
        if n in inputs:
            groups.setdefault(id(inputs[n]), []).append(n)
    report: dict[str, str | None] = dict.fromkeys(names)
    for group in groups.values():
        layers = [model.get_submodule(n) for n in group]
        s = layers[0].input_scale.clone()  # [in]
        if not all(torch.equal(layer.input_scale, s) for layer in layers):
            continue  # one tensor, several scales: no single op can take them
        for target, rows in _candidates(model, made_by.get(id(inputs[group[0]])), group[0], s.numel()):
            undo = _fold_into(model.get_submodule(target), rows, s)
            for layer in layers:
                layer.input_scale.fill_(1.0)
            out = _run(model, batch, forward)
            if _close(out, ref, tol):
                ref = out
                for n, layer in zip(group, layers):
                    report[n] = target if rows is None else f"{target}[{rows.start}:{rows.stop}]"
                    set_module(model, n, QuantLinear(layer.qweight, layer.bias).to(layer.codes.device))
                break
            for view, saved in undo:
                view.copy_(saved)
            for layer in layers:
                layer.input_scale.copy_(s)
    if pack:
        pack_model(model)
    return report


def _finish(model: nn.Module, batches, forward, *, pack: bool, progress: bool, fold: bool = True, **options):
    names = [n for n, m in model.named_modules() if isinstance(m, AWQLinear)]
    if names and fold:
        report = fold_awq_scales(model, batches, forward, pack=pack)
        if progress:
            done = [n for n, to in report.items() if to]
            print(f"awq: folded s of {len(done)}/{len(report)} layers into the op before; "
                  f"the others divide their input explicitly")
    elif names and pack:
        pack_model(model)


@register_method("awq", needs_calibration=True, joint=True, finish=_finish, weight_only=True,
                 description="AWQ: activation-aware per-channel scaling and clipping, then RTN (lesson 08)")
def _awq(layers: list[nn.Linear], inputs, *, bits, group_size, symmetric, fold: bool = True, **options):
    """One s for all `layers`, which receive the same input (q, k, v), so that it can fold into the
    op before them: searched on their stacked weights [Σ out, in], which minimises the summed output
    error Σ_layers ‖X Wᵀ − (X / s) Q(W s)ᵀ‖² (as llm-awq does for q, k, v)."""
    if not isinstance(fold, bool):
        raise TypeError(f"fold={fold!r} must be True (fold s into the op before, where exact) or False")
    W = torch.cat([layer.weight.detach().float() for layer in layers])  # [Σ out, in]
    qw, s = awq_quantize(W, inputs, bits, group_size, symmetric, **options)
    modules, r = [], 0
    for layer in layers:
        rows = slice(r, r + layer.out_features)
        r = rows.stop
        part = QuantizedWeight(qw.codes[rows].clone(), qw.scale[rows].clone(), qw.zero[rows].clone(),
                               qw.bits, qw.group_size, symmetric=qw.symmetric)
        modules.append(AWQLinear(part, s, layer.bias).to(layer.weight.device))
    return modules


__all__ = ["awq_quantize", "awq_search_scale", "awq_search_clip", "activation_scales", "output_error",
           "AWQLinear", "PackedAWQLinear", "fold_awq_scales"]
