"""Affine quantization from scratch: the map, its parameters and `QuantizedWeight`.

The whole lesson in two lines (lesson 04). With a float `scale` > 0 and an *integer* zero point,

    q  = clamp(round(x / scale) + zero_point, qmin, qmax)       # quantize:   float -> integer code
    x̂ = (q − zero_point) · scale                                 # dequantize: integer code -> float

* asymmetric: codes in [0, 2^b − 1]; scale = (hi − lo) / (2^b − 1), zero_point = −round(lo / scale)
* symmetric:  codes in [−2^(b−1), 2^(b−1) − 1]; scale = max|x| / (2^(b−1) − 1), zero_point = 0

where [lo, hi] = [min(x.min(), 0), max(x.max(), 0)] always contains 0, so 0.0 is exactly the code
`zero_point`. `round` is `torch.round`: halves go to the even neighbour, as in PyTorch's own
fake-quantize ops. Granularity (lesson 05): one (scale, zero_point) per tensor, per channel
(`axis=`) or per group of `group_size` consecutive inputs of a weight row (`group_size=`).

Every weight quantizer (rtn, gptq, awq) returns a `QuantizedWeight`; packing, kernels and export
consume it. Ranges for activations, watched over calibration batches, are in `minicomp.observers`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from minicomp.checks import check_bits, check_finite, check_flag, check_fraction, is_int

# ── checking input ───────────────────────────────────────────────────────────────────────────


def check_input(x, in_features: int, name: str = "x", device: torch.device | None = None) -> None:
    """Raise TypeError unless `x` is a floating-point tensor, ValueError unless it is [..., in_features]
    (and on `device`, the layer's, if given): the check at the top of every quantized layer's forward."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        given = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor [..., {in_features}], got {given}; "
                        "convert it with .float()")
    if x.dim() == 0 or x.shape[-1] != in_features:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; expected [..., {in_features}] "
                         f"(the layer's in_features)")
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on device {x.device} but the layer is on {device}; move one of them, "
                         f"e.g. {name}.to('{device}') or layer.to('{x.device}')")


def check_qrange(qmin, qmax) -> tuple[int, int]:
    for name, v in (("qmin", qmin), ("qmax", qmax)):
        if not is_int(v):
            raise TypeError(f"{name}={v!r} must be an int")
    if qmin >= qmax:
        raise ValueError(f"qmin={qmin} must be smaller than qmax={qmax}")
    return int(qmin), int(qmax)


def _to_tensor(name: str, v) -> torch.Tensor:
    """v as a tensor (a number, list or numpy array is converted), or TypeError naming `name`."""
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, (str, bytes)) or v is None:
        raise TypeError(f"{name}={v!r} must be a number or a tensor")
    try:
        return torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number or a tensor, got {type(v).__name__}") from None


def _as_tensor(name: str, v, like: torch.Tensor) -> torch.Tensor:
    t = _to_tensor(name, v)
    try:
        ok = t.dim() <= like.dim() and torch.broadcast_shapes(t.shape, like.shape) == like.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, which does not broadcast to shape "
                         f"{tuple(like.shape)}; per-channel {name} needs shape [rows, 1], per-group "
                         "[rows, in / group_size] with group_size=...")
    return t.to(like.device)


def _check_scale(scale: torch.Tensor, name: str = "scale") -> None:
    if not scale.is_floating_point():
        raise TypeError(f"{name} must hold floats, got dtype {scale.dtype}")
    if not (torch.isfinite(scale).all() and (scale > 0).all()):
        raise ValueError(f"{name} must be positive and finite; its smallest value is {scale.min().item()!r}")


def _check_zero(zero: torch.Tensor, name: str = "zero_point") -> torch.Tensor:
    if zero.is_floating_point():
        if not torch.equal(zero, zero.round()):
            raise ValueError(f"{name} must hold integers (an integer zero point represents 0.0 "
                             f"exactly); got values such as {zero.flatten()[0].item()!r}")
    return zero.to(torch.int32)


def check_perm(perm, n_in: int, values: bool = True) -> None:
    """Raise unless `perm` is None or an integer permutation of range(n_in) (GPTQ's act-order).
    values=False checks its type and shape only, with no device sync: cheap enough for every forward."""
    if perm is not None and (not isinstance(perm, torch.Tensor) or perm.is_floating_point()
                             or tuple(perm.shape) != (n_in,)
                             or (values and not torch.equal(perm.sort().values.cpu().long(), torch.arange(n_in)))):
        raise ValueError(f"perm must be None or an integer permutation of range(in_features={n_in}), shape [{n_in}]")


def check_scale_dtype(scale_dtype, none_means: str = "float32") -> None:
    """scale_dtype must be None (meaning `none_means`) or a floating-point torch.dtype."""
    if scale_dtype is not None and not (isinstance(scale_dtype, torch.dtype) and scale_dtype.is_floating_point):
        raise TypeError(f"scale_dtype={scale_dtype!r} must be a floating-point torch.dtype (torch.float16, "
                        f"torch.bfloat16, torch.float32) or None ({none_means})")


def check_group_size(group_size) -> None:
    """Raise unless group_size is a positive int or -1 (one group per row)."""
    if not is_int(group_size) or not (
            group_size > 0 or group_size == -1):
        raise ValueError(f"group_size={group_size!r} must be a positive int (e.g. 128) or -1 (one group per row)")


def qrange(bits: int, symmetric: bool = False) -> tuple[int, int]:
    """(qmin, qmax): [0, 2^b − 1] for asymmetric, [−2^(b−1), 2^(b−1) − 1] for symmetric."""
    bits = check_bits(bits)
    check_flag("symmetric", symmetric)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)


# ── granularity: which elements share one (scale, zero_point) ────────────────────────────────


def group_len(x: torch.Tensor, group_size) -> int:
    """The number of inputs per group along x's last dimension (group_size=-1: the whole row)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor [..., in_features], got {type(x).__name__}")
    n_in = x.shape[-1] if x.dim() else 1
    g = n_in if group_size == -1 else group_size
    if not is_int(g) or g <= 0 or n_in % g:
        raise ValueError(f"group_size={group_size!r} must divide in_features={n_in} "
                         "(or be -1 for one group per row)")
    return int(g)


def _rows(x: torch.Tensor, axis: int | None, group_size: int | None) -> tuple[torch.Tensor, tuple]:
    """View `x` as [R, n]: each row shares one (scale, zero). Also return the qparams' shape.

    per-tensor: [1, numel] -> shape ();  per-channel (axis=a): [x.shape[a], rest] -> [1, .., C, .., 1]
    per-group: x [..., in] -> [numel / g, g] -> [..., in / g]  (group_size=-1: g = in, one per row)
    """
    if axis is not None and group_size is not None:
        raise ValueError(f"give axis={axis} or group_size={group_size}, not both")
    if x.numel() == 0:
        raise ValueError(f"x is empty (shape {tuple(x.shape)}); expected at least one value")
    if group_size is not None:
        g = group_len(x, group_size)
        return x.reshape(-1, g), (*x.shape[:-1], x.shape[-1] // g)
    if axis is not None:
        if not is_int(axis):
            raise TypeError(f"axis={axis!r} must be an int (0: one range per row of a weight [out, in]) or None")
        if not -x.dim() <= axis < x.dim():
            raise ValueError(f"axis={axis} is out of range for a tensor with {x.dim()} dimensions")
        axis %= x.dim()
        shape = tuple(n if d == axis else 1 for d, n in enumerate(x.shape))
        return x.movedim(axis, 0).reshape(x.shape[axis], -1), shape
    return x.reshape(1, -1), ()


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool = False):
    """(scale, zero_point) for values in [lo, hi] (tensors of any shape, or numbers; they are
    widened to hold 0). Needs lo ≤ hi, element by element.

    The zero point is an int32 tensor. A zero-width range (all zeros) gets scale 1, never 0.
    """
    for name, v in (("lo", lo), ("hi", hi)):
        _to_tensor(name, v)  # a TypeError naming it for None, a string, ...
    lo, hi = (torch.as_tensor(v, dtype=torch.float32 if isinstance(v, numbers.Number) else None) for v in (lo, hi))
    check_finite("lo", lo.float())
    check_finite("hi", hi.float())
    try:
        torch.broadcast_shapes(lo.shape, hi.shape)
    except RuntimeError:
        raise ValueError(f"lo has shape {tuple(lo.shape)} and hi {tuple(hi.shape)}: they must broadcast "
                         "(the same shape, or one of them a single value)") from None
    bad = lo > hi
    if bad.any():
        lo_b, hi_b = torch.broadcast_tensors(lo, hi)
        raise ValueError(f"lo must be ≤ hi (the range [lo, hi] of the values); got lo={lo_b[bad][0].item():g} > "
                         f"hi={hi_b[bad][0].item():g} ({int(bad.sum())} of {bad.numel()} ranges reversed)")
    return _qparams(lo, hi, bits, symmetric)


def _qparams(lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool):
    """`qparams_from_range` on ranges already known to be finite (the library's own callers)."""
    qmin, qmax = qrange(bits, symmetric)
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)  # the range always contains 0
    if symmetric:
        scale = torch.maximum(-lo, hi) / qmax  # max|x| maps to qmax
    else:
        scale = (hi - lo) / (qmax - qmin)  # 2^b − 1 steps between lo and hi
    scale = torch.where(scale > torch.finfo(scale.dtype).tiny, scale, torch.ones_like(scale))
    if symmetric:
        zero = torch.zeros_like(scale, dtype=torch.int32)
    else:
        zero = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax).to(torch.int32)
    return scale, zero


def compute_qparams(x: torch.Tensor, bits: int = 8, symmetric: bool = False, *,
                    axis: int | None = None, group_size: int | None = None, clip: str = "minmax"):
    """(scale, zero_point) for `x` by min-max: per tensor, per channel or per group.

    axis=None, group_size=None  per-tensor: 0-dim scale and zero_point
    axis=0 on a weight [out, in]  per-channel (per output row): shapes [out, 1]
    group_size=g                groups of g consecutive inputs: w [out, in] -> [out, in / g]
                                (group_size=-1: one group per row, [out, 1])
    clip="mse" shrinks each range to the one that minimises the squared error (see `mse_range`).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        check_finite("x", x)  # raises the TypeError
    bits = check_bits(bits)
    if clip not in ("minmax", "mse"):
        raise ValueError(f"clip={clip!r} must be 'minmax' or 'mse'")
    rows, shape = _rows(x.detach().float(), axis, group_size)  # [R, n], in (at least) float32
    lo, hi = rows.amin(dim=1), rows.amax(dim=1)  # [R]; NaN or Inf anywhere shows up here
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        check_finite("x", x)  # raises, naming how many values are bad
    if clip == "mse":
        lo, hi = mse_range(rows, bits, symmetric)
    scale, zero = _qparams(lo, hi, bits, symmetric)
    return scale.reshape(shape), zero.reshape(shape)


def mse_range(rows: torch.Tensor, bits: int, symmetric: bool = False, grid: int = 100,
              maxshrink: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of `rows` [R, n], the clipping range p·[lo, hi] with the least squared error.

    Tries p = 1, 1 − 1/grid, ... down to 1 − maxshrink, like the grid search of GPTQ's quantizer
    (which scores |error|^2.4 and stops one step short of 1 − maxshrink; this one scores squared
    error, the objective lessons 04 and 06 use). p = 1 is min-max, so the result is never worse
    than min-max on these values. Returns lo, hi [R].
    """
    check_finite("rows", rows)
    if rows.dim() != 2 or rows.shape[1] == 0:
        raise ValueError(f"rows has shape {tuple(rows.shape)}; expected [R, n] with n >= 1 (one range per row)")
    if not is_int(grid) or grid < 1:
        raise ValueError(f"grid={grid!r} must be a positive int")
    check_fraction("maxshrink", maxshrink, "[0, 1)", ": the largest fraction of a range cut")
    rows = rows.float()
    lo, hi = rows.amin(dim=1).clamp(max=0), rows.amax(dim=1).clamp(min=0)  # [R]
    qmin, qmax = qrange(bits, symmetric)
    best_err = torch.full_like(lo, float("inf"))
    best_p = torch.ones_like(lo)
    for i in range(int(maxshrink * grid) + 1):
        p = 1.0 - i / grid
        scale, zero = _qparams(p * lo, p * hi, bits, symmetric)  # [R]
        s, z = scale[:, None], zero[:, None]
        err = ((torch.clamp(torch.round(rows / s) + z, qmin, qmax) - z) * s - rows).pow(2).sum(dim=1)  # [R]
        better = err < best_err
        best_err, best_p = torch.where(better, err, best_err), torch.where(better, p, best_p)
    return best_p * lo, best_p * hi


# ── the map itself ───────────────────────────────────────────────────────────────────────────


def _prepare(x: torch.Tensor, scale, zero_point, group_size: int | None):
    """Checked (x, scale, zero_point), shaped so that they broadcast.

    Without group_size they broadcast as given. With it, x [..., in] is viewed as
    [..., in/g, g] and the qparams [..., in/g] as [..., in/g, 1]: one pair per group of g inputs.
    """
    if group_size is not None:
        g = group_len(x, group_size)
        x = x.reshape(*x.shape[:-1], x.shape[-1] // g, g)
    like = x if group_size is None else x[..., 0]
    scale = _as_tensor("scale", scale, like)
    zero = _check_zero(_as_tensor("zero_point", zero_point, like))
    _check_scale(scale)
    if group_size is not None:
        scale, zero = scale[..., None], zero[..., None]
    return x, scale, zero


def quantize(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int, *, group_size: int | None = None):
    """Integer codes q = clamp(round(x / scale) + zero_point, qmin, qmax), as int32.

    `scale` and `zero_point` broadcast against `x` (per-channel: shape [rows, 1]). With
    `group_size`, x [..., in] pairs with qparams [..., in / group_size] (one per group).
    """
    check_finite("x", x)
    qmin, qmax = check_qrange(qmin, qmax)
    xg, s, z = _prepare(x, scale, zero_point, group_size)
    _check_zero_in_range(z, qmin, qmax)
    q = torch.clamp(torch.round(xg / s) + z, qmin, qmax)  # torch.round: halves go to even
    return q.to(torch.int32).reshape(x.shape)


def dequantize(q: torch.Tensor, scale, zero_point, *, group_size: int | None = None) -> torch.Tensor:
    """x̂ = (q − zero_point) · scale, in scale's float dtype (at least float32), the shape of q.

    As in `quantize`: scale and zero_point broadcast against q (per-channel: [rows, 1]), or with
    `group_size`, q [..., in] pairs with them as [..., in / group_size]."""
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor of integer codes, got {type(q).__name__}")
    if q.is_floating_point() and not torch.equal(q, q.round()):
        raise ValueError(f"q holds non-integer codes such as {q[q != q.round()][0].item()!r}; dequantize takes the "
                         "integer codes that quantize returns (for a float round trip, use fake_quantize)")
    qg, s, z = _prepare(q, scale, zero_point, group_size)
    dtype = torch.promote_types(s.dtype, torch.float32)
    return ((qg.to(torch.int32) - z).to(dtype) * s.to(dtype)).reshape(q.shape)


def fake_quantize(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int, *,
                  group_size: int | None = None) -> torch.Tensor:
    """dequantize(quantize(x)) in x's dtype and shape, with the straight-through estimator for training.
    scale and zero_point as in `quantize` (broadcasting, or [..., in / group_size] with group_size).

    Forward: the rounded values. Backward: the gradient passes through unchanged where x was inside
    the representable range and is 0 where the clamp cut it (as torch.fake_quantize_* do):
        ∂x̂/∂x ≈ 1[qmin ≤ round(x/s) + z ≤ qmax]        (STE, Bengio et al. 2013)
    """
    check_finite("x", x)
    qmin, qmax = check_qrange(qmin, qmax)
    return _fake_quantize(x, scale, zero_point, qmin, qmax, group_size, given_zero=True)


def _check_zero_in_range(z: torch.Tensor, qmin: int, qmax: int) -> None:
    """The zero point is the code that stands for 0.0, so it must be a code: in [qmin, qmax]
    (as torch.fake_quantize_* require). Outside, every x would clamp to one end."""
    if z.numel() and (int(z.min()) < qmin or int(z.max()) > qmax):
        raise ValueError(f"zero_point must lie in [qmin, qmax] = [{qmin}, {qmax}] (it is the code for 0.0), "
                         f"got values from {int(z.min())} to {int(z.max())}")


def _fake_quantize(x, scale, zero_point, qmin, qmax, group_size, given_zero=False):
    """given_zero: the caller's zero point, checked; one from compute_qparams (quantize_dequantize, every
    QAT step) is a code by construction, and the check would cost a device sync per call."""
    xg, s, z = _prepare(x.detach(), scale, zero_point, group_size)
    if given_zero:
        _check_zero_in_range(z, qmin, qmax)
    q = torch.round(xg / s) + z  # not yet clamped
    x_hat = ((torch.clamp(q, qmin, qmax) - z) * s).reshape(x.shape).to(x.dtype)
    if not (x.requires_grad and torch.is_grad_enabled()):
        return x_hat
    inside = ((q >= qmin) & (q <= qmax)).reshape(x.shape)
    x_pass = torch.where(inside, x, x.detach())  # gradient 1 inside the range, 0 outside
    return x_pass + (x_hat - x_pass).detach()


def quantize_dequantize(x: torch.Tensor, bits: int = 8, symmetric: bool = False, *,
                        axis: int | None = None, group_size: int | None = None, clip: str = "minmax"):
    """Fake-quantize `x` with min-max (or MSE) qparams computed from `x` itself, in x's dtype and
    shape; STE gradient. One range for all of x, per slice along `axis`, or per group of
    `group_size` along the last dimension (as `compute_qparams`)."""
    scale, zero = compute_qparams(x, bits, symmetric, axis=axis, group_size=group_size, clip=clip)
    qmin, qmax = qrange(bits, symmetric)
    return _fake_quantize(x, scale, zero, qmin, qmax, group_size)


# ── QuantizedWeight: what every weight quantizer returns ────────────────────────────────────


@dataclass(eq=False)
class QuantizedWeight:
    """A weight matrix [out, in] stored as b-bit integer codes plus per-group scale and zero point.

    codes  [out, in]       uint8, always unsigned: 0 ≤ codes ≤ 2^bits − 1
    scale  [out, n_groups] float, > 0              (n_groups = in / group_size)
    zero   [out, n_groups] uint8, in [0, 2^bits − 1] (symmetric: the constant 2^(bits−1))
    bits, group_size       group_size = in for per-channel (one group per row)
    perm   [in] or None    column order used while quantizing (GPTQ act-order): column j of codes
                           holds original column perm[j], and groups are consecutive in that order
    symmetric              zero is the constant 2^(bits−1), so it costs no storage

    W ≈ dequantize() = (codes − zero) · scale, group by group, columns put back in original order.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int
    perm: torch.Tensor | None = None
    symmetric: bool = False

    def __post_init__(self):
        self.bits = check_bits(self.bits)
        self.symmetric = check_flag("symmetric", self.symmetric)
        for name in ("codes", "scale", "zero"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(getattr(self, name)).__name__}")
        if self.codes.dim() != 2 or self.codes.is_floating_point():
            raise TypeError(f"codes must be a 2-D integer tensor [out, in], got a {self.codes.dtype} tensor "
                            f"of shape {tuple(self.codes.shape)}")
        out, n_in = self.codes.shape
        g = self.group_size = group_len(self.codes, self.group_size)
        if tuple(self.scale.shape) != (out, n_in // g) or tuple(self.zero.shape) != (out, n_in // g):
            raise ValueError(f"scale and zero must have shape [out, in / group_size] = {[out, n_in // g]}, "
                             f"got {list(self.scale.shape)} and {list(self.zero.shape)}")
        _check_scale(self.scale)
        if self.codes.numel() and (self.codes.min() < 0 or self.codes.max() > self.qmax):
            raise ValueError(f"codes must lie in [0, {self.qmax}] for bits={self.bits}; got "
                             f"[{self.codes.min().item()}, {self.codes.max().item()}]")
        check_perm(self.perm, n_in)
        zero = _check_zero(self.zero, "zero")
        if zero.numel() and (zero.min() < 0 or zero.max() > self.qmax):
            raise ValueError(f"zero must lie in [0, {self.qmax}] for bits={self.bits} (codes are stored unsigned); "
                             f"got [{zero.min().item()}, {zero.max().item()}]")
        mid = 2 ** (self.bits - 1)
        if self.symmetric and zero.numel() and not bool((zero == mid).all()):
            raise ValueError(f"symmetric=True needs every zero to be 2^(bits-1) = {mid} (the zero point 0 of "
                             f"symmetric codes, stored unsigned; nbytes stores no zeros then); got values in "
                             f"[{zero.min().item()}, {zero.max().item()}]. Use symmetric=False to keep these zeros")
        self.codes, self.zero = self.codes.to(torch.uint8), zero.to(torch.uint8)

    qmin = 0

    @property
    def qmax(self) -> int:
        return 2**self.bits - 1

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)

    @property
    def n_groups(self) -> int:
        return self.codes.shape[1] // self.group_size

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight [out, in] that these codes stand for, in the original column order."""
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype={dtype!r} must be a floating-point torch.dtype such as torch.float32")
        return dequantize_weight(self.codes, self.scale, self.zero, self.group_size, self.perm, dtype)

    @property
    def nbytes(self) -> int:
        """Storage with codes packed at `bits` bits: codes + scales (their dtype) + zeros (at `bits`
        bits, none if symmetric) + the permutation if any."""
        codes = math.ceil(self.codes.numel() * self.bits / 8)
        scales = self.scale.numel() * self.scale.element_size()
        zeros = 0 if self.symmetric else math.ceil(self.zero.numel() * self.bits / 8)
        perm = 0 if self.perm is None else self.perm.numel() * self.perm.element_size()
        return codes + scales + zeros + perm

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.nbytes / self.codes.numel()

    def to(self, device) -> QuantizedWeight:
        """The same weight with every tensor on `device` ('cpu', 'cuda', a torch.device, a GPU's index)."""
        if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
            raise TypeError(f"device={device!r} must be a str or torch.device such as 'cpu' or 'cuda'")
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device={device!r} is not a device name such as 'cpu' or 'cuda:0'") from None
        move = lambda t: None if t is None else t.to(device)
        return QuantizedWeight(move(self.codes), move(self.scale), move(self.zero), self.bits,
                               self.group_size, move(self.perm), self.symmetric)

    def __repr__(self) -> str:
        out, n_in = self.shape
        return (f"QuantizedWeight([{out}, {n_in}], bits={self.bits}, group_size={self.group_size}, "
                f"{'symmetric' if self.symmetric else 'asymmetric'}{', permuted' if self.perm is not None else ''}, "
                f"{self.nbytes} bytes = {self.bits_per_weight:.3f} bits/weight)")


def dequantize_weight(codes, scale, zero, group_size: int, perm=None, dtype=torch.float32) -> torch.Tensor:
    """W [out, in] from the fields of a QuantizedWeight, without re-checking their values (fast path:
    only their types and shapes are checked). group_size=-1: one group per row."""
    for name, t in (("codes", codes), ("scale", scale), ("zero", zero)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if codes.dim() != 2:
        raise ValueError(f"codes has shape {tuple(codes.shape)}; expected a 2-D [out, in] tensor of codes")
    out, n_in = codes.shape
    group_size = group_len(codes, group_size)
    if tuple(scale.shape) != (out, n_in // group_size) or tuple(zero.shape) != (out, n_in // group_size):
        raise ValueError(f"scale and zero must have shape [out, in / group_size] = {[out, n_in // group_size]}, "
                         f"got {list(scale.shape)} and {list(zero.shape)}")
    if perm is not None and not isinstance(perm, torch.Tensor):
        raise TypeError(f"perm must be None or an integer tensor [in], got {type(perm).__name__}")
    check_perm(perm, n_in, values=False)   # (whether it is a permutation: checked where it was made)
    q = codes.reshape(out, n_in // group_size, group_size).to(torch.int32)  # [out, groups, g]
    ct = torch.promote_types(scale.dtype, torch.float32)  # fp16 scales are multiplied in float32
    w = ((q - zero[..., None].to(torch.int32)).to(ct) * scale[..., None].to(ct)).reshape(out, n_in)
    if perm is not None:
        w = w[:, torch.argsort(perm)]  # undo the column permutation: column perm[j] is w[:, j]
    return w.to(dtype)


__all__ = [
    "check_qrange", "qrange", "qparams_from_range", "compute_qparams",
    "group_len", "mse_range", "quantize", "dequantize", "dequantize_weight", "fake_quantize",
    "quantize_dequantize", "QuantizedWeight",
]
