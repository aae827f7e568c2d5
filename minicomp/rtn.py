"""Round-to-nearest (RTN) weight quantization, the layer that runs it, and QAT (lessons 05 and 06).

RTN is the baseline every smarter method (GPTQ, AWQ) is measured against: compute a scale and zero
point per group of weights, round each weight to its nearest code, done. No data needed.

* `rtn_quantize(w, bits, group_size)` -> `QuantizedWeight`
* `QuantLinear`: a drop-in for nn.Linear holding a `QuantizedWeight`. Weight-only (W8A16, W4A16:
  activations stay in float) or W8A8, where activations are quantized too, either *dynamically*
  (qparams computed from each input, per token) or *statically* (one scale fixed in advance by
  an observer on calibration data).
* QAT: `prepare_qat` swaps nn.Linear for `QATLinear`, which trains with fake-quantized weights
  (straight-through estimator); `convert_qat` turns the result into `QuantLinear`s.

The arithmetic is simulated: weights are dequantized to float and multiplied in float. Lesson 09's
kernels do the integer arithmetic for real; the numbers they produce are the same.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from minicomp.checks import check_bits, check_finite, check_flag, check_module, is_int
from minicomp.quant import (
    QuantizedWeight,
    _check_scale,
    _check_zero,
    _fake_quantize,
    _to_tensor,
    check_group_size,
    check_input,
    check_scale_dtype,
    compute_qparams,
    dequantize_weight,
    group_len,
    qrange,
    quantize,
    quantize_dequantize,
)


def rtn_quantize(w: torch.Tensor, bits: int = 4, group_size: int = -1, symmetric: bool = False, *,
                 clip: str = "minmax", scale_dtype: torch.dtype | None = None) -> QuantizedWeight:
    """Round-to-nearest quantization of a weight w [out, in], one (scale, zero) per group.

    group_size=-1 gives one group per output row (per-channel). `clip="mse"` shrinks each group's
    range to minimise squared error. `scale_dtype` (e.g. torch.float16, as GPTQ and GGUF store
    them) rounds the scales first, and the codes are computed with the rounded scales.
    """
    check_finite("w", w)
    if w.dim() != 2 or w.numel() == 0:
        raise ValueError(f"w has shape {tuple(w.shape)}; expected a weight matrix [out, in] with at least one value")
    bits = check_bits(bits)
    check_scale_dtype(scale_dtype)
    scale, zero = compute_qparams(w, bits, symmetric, group_size=group_size, clip=clip)  # [out, in/g]
    if scale_dtype is not None:
        scale = scale.to(scale_dtype)
        scale = torch.where(scale > 0, scale, torch.finfo(scale_dtype).smallest_normal)
        if not torch.isfinite(scale).all():
            raise ValueError(f"scale_dtype={scale_dtype} cannot hold these scales (up to "
                             f"{scale.float().max().item():.3g}); use torch.float32")
    qmin, qmax = qrange(bits, symmetric)
    g = w.shape[1] if group_size == -1 else group_size
    codes = quantize(w.detach(), scale.float(), zero, qmin, qmax, group_size=g)  # [out, in]
    offset = -qmin  # store codes unsigned: symmetric [-8, 7] becomes [0, 15] with zero 8
    return QuantizedWeight(codes + offset, scale, zero + offset, bits, g, symmetric=symmetric)


def _check_linear(linear) -> None:
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")


class QuantLinear(nn.Module):
    """y = x Ŵᵀ + b with Ŵ = qweight.dequantize(): a drop-in replacement for nn.Linear.

    act_bits=None                    weight-only (W8A16, W4A16): x stays in float
    act_bits=8, act_scale=None       W8A8 dynamic: x quantized per token with its own min-max
    act_bits=8, act_scale, act_zero  W8A8 static: one per-tensor (scale, zero) fixed by calibration
    """

    def __init__(self, qweight: QuantizedWeight, bias: torch.Tensor | None = None, *,
                 act_bits: int | None = None, act_symmetric: bool = False,
                 act_scale: torch.Tensor | None = None, act_zero: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(qweight, QuantizedWeight):
            raise TypeError(f"qweight must be a QuantizedWeight, got {type(qweight).__name__}")
        self.out_features, self.in_features = qweight.shape
        self.bits, self.group_size, self.symmetric = qweight.bits, qweight.group_size, qweight.symmetric
        self.register_buffer("codes", qweight.codes)  # [out, in] uint8
        self.register_buffer("scale", qweight.scale)  # [out, in / group_size]
        self.register_buffer("zero", qweight.zero)  # [out, in / group_size] uint8
        self.register_buffer("perm", qweight.perm)  # [in] or None
        if bias is not None and not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias must be a torch.Tensor [{self.out_features}] or None, got {type(bias).__name__}")
        if bias is not None and tuple(bias.shape) != (self.out_features,):
            raise ValueError(f"bias has shape {tuple(bias.shape)}; expected [{self.out_features}]")
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.act_bits = None if act_bits is None else check_bits(act_bits, "act_bits")
        self.act_symmetric = check_flag("act_symmetric", act_symmetric)
        if (act_scale is None) != (act_zero is None):
            raise ValueError("give both act_scale and act_zero (static) or neither (dynamic)")
        if act_scale is not None and act_bits is None:
            raise ValueError("act_scale needs act_bits (e.g. act_bits=8)")
        if act_scale is not None:   # as a weight's (scale, zero point) are checked
            act_scale, act_zero = _to_tensor("act_scale", act_scale).float(), _to_tensor("act_zero", act_zero)
            for name, t in (("act_scale", act_scale), ("act_zero", act_zero)):
                if t.numel() != 1:   # static activations here are per-tensor: one (scale, zero) pair
                    raise ValueError(f"{name} must be a single value (per-tensor, static), got shape "
                                     f"{tuple(t.shape)}; for per-token ranges leave act_scale and act_zero None")
            _check_scale(act_scale, "act_scale")
            act_zero = _check_zero(act_zero, "act_zero")
            qmin, qmax = qrange(self.act_bits, self.act_symmetric)
            if act_zero.numel() and (act_zero.min() < qmin or act_zero.max() > qmax):
                raise ValueError(f"act_zero={act_zero.tolist()} must lie in [{qmin}, {qmax}], the codes of "
                                 f"act_bits={self.act_bits}, act_symmetric={self.act_symmetric}: it is the code "
                                 "that stands for 0.0")
        self.register_buffer("act_scale", act_scale)
        self.register_buffer("act_zero", act_zero)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 4, group_size: int = -1, symmetric: bool = False,
                    **kwargs) -> QuantLinear:
        """RTN-quantize an nn.Linear's weight; activation options (act_bits=...) pass through."""
        _check_linear(linear)
        qw = rtn_quantize(linear.weight, bits, group_size, symmetric)
        return cls(qw, linear.bias, **kwargs)

    @property
    def qweight(self) -> QuantizedWeight:
        return QuantizedWeight(self.codes, self.scale, self.zero, self.bits, self.group_size,
                               self.perm, self.symmetric)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight [out, in] (computed on each access)."""
        return dequantize_weight(self.codes, self.scale, self.zero, self.group_size, self.perm,
                                 torch.promote_types(self.scale.dtype, torch.float32))

    def packed(self, **kwargs):
        """This layer as a `kernels.PackedLinear` (bit-packed codes, fused kernels); kwargs
        (scale_dtype, backend) go to `PackedLinear.from_quantized`. Weight-only layers only."""
        from minicomp.kernels import PackedLinear

        if self.act_bits is not None:
            raise ValueError(f"this layer quantizes activations (act_bits={self.act_bits}); the packed "
                             "kernels are weight-only")
        return PackedLinear.from_quantized(self.qweight, self.bias, **kwargs)

    @property
    def act_mode(self) -> str:
        return "none" if self.act_bits is None else "dynamic" if self.act_scale is None else "static"

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """x as the W8A8 layer sees it (fake-quantized), or x unchanged for weight-only."""
        check_input(x, self.in_features)
        if self.act_bits is None:
            return x
        qmin, qmax = qrange(self.act_bits, self.act_symmetric)
        if self.act_scale is not None:  # static: the calibrated per-tensor range, checked in __init__
            return _fake_quantize(x, self.act_scale, self.act_zero, qmin, qmax, None)
        rows = x.reshape(-1, x.shape[-1])  # dynamic: one range per token, [tokens, in]
        return quantize_dequantize(rows, self.act_bits, self.act_symmetric, axis=0).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = q(x) Ŵᵀ + b: x [..., in] -> [..., out] in x's dtype, with Ŵ the dequantized weight
        and q(x) = `quantize_input(x)`."""
        check_input(x, self.in_features, device=self.codes.device)
        w = dequantize_weight(self.codes, self.scale, self.zero, self.group_size, self.perm, x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(self.quantize_input(x), w, b)

    def extra_repr(self) -> str:
        act = "" if self.act_bits is None else f", act_bits={self.act_bits} ({self.act_mode})"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}{act}, bias={self.bias is not None}")


# ── quantization-aware training ─────────────────────────────────────────────────────────────


class QATLinear(nn.Linear):
    """nn.Linear that trains through RTN: y = x · fq(W)ᵀ + b, fq = fake-quantize with the STE.

    The scale and zero point are recomputed from the current weights at every step (min-max per
    group), exactly as `rtn_quantize` will compute them at the end, so what trains is what ships.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, bits: int = 4,
                 group_size: int = -1, symmetric: bool = False):
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if not is_int(n):
                hint = "; to wrap an nn.Linear use QATLinear.from_linear(linear)" if isinstance(n, nn.Module) else ""
                raise TypeError(f"{name} must be a positive int, got {type(n).__name__}{hint}")
            if n < 1:
                raise ValueError(f"{name}={n!r} must be a positive int")
        super().__init__(in_features, out_features, bias)
        check_group_size(group_size)  # a positive int or -1, as rtn_quantize will need
        group_len(self.weight, group_size)  # and a divisor of in_features
        self.bits, self.group_size, self.symmetric = check_bits(bits), group_size, check_flag("symmetric", symmetric)

    @classmethod
    def from_linear(cls, linear: nn.Linear, **kwargs) -> QATLinear:
        """A QATLinear starting from `linear`'s weight and bias (copied); kwargs: bits, group_size,
        symmetric."""
        _check_linear(linear)
        qat = cls(linear.in_features, linear.out_features, linear.bias is not None, **kwargs)
        qat.to(linear.weight.device, linear.weight.dtype)
        with torch.no_grad():
            qat.weight.copy_(linear.weight)
            if linear.bias is not None:
                qat.bias.copy_(linear.bias)
        return qat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x Ŵᵀ + b with Ŵ = fake_quantize(W): x [..., in] -> [..., out]. The rounding's gradient
        is the straight-through estimator's, so W keeps training."""
        check_input(x, self.in_features, device=self.weight.device)
        w_hat = quantize_dequantize(self.weight, self.bits, self.symmetric, group_size=self.group_size)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w_hat.to(x.dtype), b)  # in x's float dtype, as QuantLinear computes

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bits={self.bits}, group_size={self.group_size}"


def prepare_qat(model: nn.Module, bits: int = 4, group_size: int = -1, symmetric: bool = False, *,
                include=None, skip=None) -> nn.Module:
    """Swap the selected nn.Linear layers of `model` for QATLinear, in place; returns `model`.
    Every layer is converted before any is swapped in, so a bad argument (a group_size that does
    not divide some layer's inputs) leaves the model as it was."""
    from minicomp.calibrate import find_linears, set_module

    swaps = {name: QATLinear.from_linear(layer, bits=bits, group_size=group_size, symmetric=symmetric)
             for name, layer in find_linears(model, include=include, skip=skip).items()}
    for name, new in swaps.items():
        set_module(model, name, new)
    return model


def convert_qat(model: nn.Module) -> nn.Module:
    """Swap every QATLinear for the QuantLinear with the same (RTN) weights, in place."""
    from minicomp.calibrate import set_module

    check_module(model)
    for name, layer in list(model.named_modules()):
        if isinstance(layer, QATLinear):
            check_finite(f"{name}.weight", layer.weight)
            set_module(model, name, QuantLinear.from_linear(layer, layer.bits, layer.group_size, layer.symmetric))
    return model


__all__ = ["rtn_quantize", "QuantLinear", "QATLinear", "prepare_qat", "convert_qat"]
