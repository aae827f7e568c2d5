"""`PackedLinear`: a linear layer that keeps only packed codes, and the kernels that run it.

    layer = PackedLinear.from_linear(nn.Linear(4096, 4096), bits=4, group_size=128)  # RTN
    layer = PackedLinear.from_quantized(qw, bias)        # any QuantizedWeight: rtn, gptq, awq
    y = layer(x)                                         # backend chosen for x, or forced:
    layer.backend = "reference"                          # "reference" | "cpu" | "triton" | None

What it stores (buffers, so `state_dict`, `.to()` and `export` see them):

    qweight [out, in · pack_bits / 8] uint8   codes packed by `minicomp.pack` (interchange layout)
    scales  [out, n_groups]           float16 from `from_linear`; from `from_quantized`, the
                                      QuantizedWeight's dtype unless scale_dtype is given
    zeros   [out, n_groups]           uint8   integer zero points
    perm    [in] int64 or None        GPTQ act-order: column j of the codes is input perm[j]
    bias    [out] or None             kept as given (one vector, 1/in of the weight's size)

and `symmetric` (a plain attribute): the zero points are the constant 2^(bits−1), so a format
that knows this (GGUF's Q4_0, `QuantizedWeight.nbytes`) stores none.

Nothing is stored as a full-precision weight. `pack_bits` is 2, 4 or 8; a QuantizedWeight of 3
bits is stored in 4-bit slots, one of 5 to 7 bits in bytes (the codes are unchanged).

Backends (each agrees with `reference` up to the rounding of the arithmetic it does; the result
always comes back in x's dtype; see each module):

    reference  plain PyTorch: unpack, dequantize the whole weight, matmul. Written to be read.
               All in float32, whatever x's dtype.
    cpu        numba kernel that dequantizes inside the multiply loop; never builds the weight.
               From `cpu.GEMM_ROWS` rows of x on, it dequantizes one slab of rows at a time
               and multiplies it with BLAS instead (faster once arithmetic, not memory, rules).
               All in float32 (x is converted first).
    triton     GPU kernel for GEMV and small-batch GEMM (W4A16), when CUDA and triton exist.
               Float32 x: all in float32. 16-bit x is *not* all float32: the half2 kernel (fp16
               x, 4-bit codes) multiplies in fp16 and adds eight products at a time in fp16
               before adding them into float32 sums; the tensor-core tiles multiply 16-bit
               q − z (exact) by x and sum in float32; and the 'dequant' configuration (prompts)
               decodes the weight into x's dtype, rounding (q − z)·s to fp16 or bf16, for a
               dense matmul in that dtype. Expect fp16-sized differences there.

`backend=None` (the default) picks, per call: triton for CUDA inputs, cpu for CPU inputs, and
reference when the fast one cannot run this layer (or x needs a gradient: only reference is
differentiable). `pack_model(model)` swaps a model's QuantLinear layers for PackedLinear.
"""

from __future__ import annotations

import dataclasses
import numbers
import weakref

import numpy as np
import torch
from torch import nn

from minicomp.checks import check_module, is_int
from minicomp.kernels import cpu, reference
from minicomp.kernels import triton as triton_backend
from minicomp.pack import pack
from minicomp.quant import (
    _check_scale,
    check_group_size,
    check_input,
    check_perm,
    check_scale_dtype,
)

__all__ = ["PackedLinear", "BACKENDS", "available_backends", "pack_model", "set_backend",
           "pack_bits_for", "packed_layers"]

BACKENDS = {"reference": reference, "cpu": cpu, "triton": triton_backend}


def available_backends() -> list[str]:
    """The backends this machine can run: reference always, cpu with numba, triton with CUDA."""
    names = ["reference"]
    if cpu.available():
        names.append("cpu")
    if triton_backend.available():
        names.append("triton")
    return names


def pack_bits_for(bits: int) -> int:
    """The slot width codes of `bits` bits are packed in: 2 -> 2, 3..4 -> 4, 5..8 -> 8."""
    if not is_int(bits) or not 1 <= bits <= 8:
        raise ValueError(f"bits={bits!r} must be an int from 1 to 8")
    return 2 if bits <= 2 else 4 if bits <= 4 else 8


def _check_backend(backend) -> str | None:
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} must be None (automatic) or one of {list(BACKENDS)}")
    return backend


class PackedLinear(nn.Module):
    """y = x Ŵᵀ + b where Ŵ = (codes − zero)·scale per group, computed from packed codes.

    Build it with `from_linear` or `from_quantized`; the constructor takes the packed buffers
    themselves (that is how `minicomp.export` loads a saved layer): qweight [out, in · pack_bits / 8]
    uint8, scales [out, in / group_size] float, zeros [out, in / group_size] uint8, perm [in] or
    None (GPTQ's act-order), bias [out] or None.
    """

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, *,
                 in_features: int, bits: int, group_size: int, perm: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, backend: str | None = None, symmetric: bool = False):
        super().__init__()
        self.pack_bits = pack_bits_for(bits)   # checks bits (an int from 1 to 8) first
        self.bits = int(bits)
        reference.check_qweight(qweight)
        out = qweight.shape[0]
        if not is_int(in_features) or in_features <= 0:
            raise ValueError(f"in_features={in_features!r} must be a positive int")
        if qweight.shape[1] * 8 != in_features * self.pack_bits:
            raise ValueError(f"qweight has shape {tuple(qweight.shape)}; expected [{out}, "
                             f"{in_features * self.pack_bits / 8:g}] for in_features={in_features} at "
                             f"{self.pack_bits} bits per code")
        g = in_features if group_size == -1 else group_size
        if not is_int(g) or g <= 0 or in_features % g:
            raise ValueError(f"group_size={group_size!r} must divide in_features={in_features} (or be -1)")
        n_groups = in_features // g
        for name, t in (("scales", scales), ("zeros", zeros)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (out, n_groups):
                raise ValueError(f"{name} must be a tensor of shape [out, in / group_size] = "
                                 f"{[out, n_groups]}, got {getattr(t, 'shape', type(t).__name__)}")
        _check_scale(scales, "scales")
        if zeros.dtype != torch.uint8:
            raise TypeError(f"zeros must be torch.uint8 integer zero points, got {zeros.dtype}")
        if zeros.numel() and zeros.max() > 2**self.bits - 1:
            raise ValueError(f"zeros must lie in [0, {2**self.bits - 1}] for bits={self.bits}; got up to "
                             f"{zeros.max().item()}")
        if not isinstance(symmetric, (bool, np.bool_)):
            raise TypeError(f"symmetric must be True or False, got {symmetric!r}")
        mid = 2 ** (self.bits - 1)   # symmetric codes are stored unsigned: signed code + mid
        if symmetric and not bool((zeros == mid).all()):
            raise ValueError(f"symmetric=True needs every zero point to be 2^(bits-1) = {mid} (codes are stored "
                             f"unsigned, offset by {mid}); got values from {zeros.min().item()} to "
                             f"{zeros.max().item()}. Pass symmetric=False for asymmetric codes")
        check_perm(perm, in_features)
        if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (out,)):
            raise ValueError(f"bias must be None or a tensor of shape [{out}], got "
                             f"{getattr(bias, 'shape', type(bias).__name__)}")
        self.in_features, self.out_features, self.group_size = int(in_features), int(out), int(g)
        self.symmetric = bool(symmetric)   # zero is the constant 2^(bits-1): see `quantized_weight`
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        self.register_buffer("zeros", zeros)
        self.register_buffer("perm", None if perm is None else perm.to(torch.int64))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.backend = _check_backend(backend)
        self._kernel_cache: dict = {}  # backend name -> (stamp, layout); see cpu.layout

    # ── constructors ────────────────────────────────────────────────────────────────────────
    @classmethod
    def from_quantized(cls, qw, bias: torch.Tensor | None = None, *,
                       scale_dtype: torch.dtype | None = None, backend: str | None = None,
                       ) -> PackedLinear:
        """Pack any `QuantizedWeight` (rtn, gptq, awq; with or without an act-order `perm`).

        The scales keep their dtype unless `scale_dtype` is given (torch.float16 halves them).
        """
        from minicomp.quant import QuantizedWeight

        if not isinstance(qw, QuantizedWeight):
            raise TypeError(f"qw must be a minicomp.quant.QuantizedWeight, got {type(qw).__name__}")
        check_scale_dtype(scale_dtype, "keep the scales' dtype")
        scales = qw.scale.detach()
        if scale_dtype is not None:
            scales = _cast_scales(scales, scale_dtype)
        out, n_in = qw.shape
        per = 8 // pack_bits_for(qw.bits)
        if n_in % per:
            raise ValueError(f"in_features={n_in} must be a multiple of {per} to pack {qw.bits}-bit "
                             f"codes {per} to a byte")
        return cls(pack(qw.codes, pack_bits_for(qw.bits)), scales, qw.zero.to(torch.uint8),
                   in_features=n_in, bits=qw.bits, group_size=qw.group_size, perm=qw.perm,
                   bias=bias, backend=backend, symmetric=qw.symmetric)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 4, group_size: int = 128, *,
                    symmetric: bool = False, scale_dtype: torch.dtype = torch.float16,
                    backend: str | None = None) -> PackedLinear:
        """Round-to-nearest quantize an nn.Linear and pack it. Scales are float16 by default and
        the codes are rounded with the float16 scales, so no extra error comes from storing them."""
        from minicomp.rtn import rtn_quantize

        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        gs = group_size
        if gs != -1 and isinstance(gs, numbers.Integral) and gs > 0 and linear.in_features % gs:
            raise ValueError(f"group_size={gs} must divide in_features={linear.in_features} (or be -1)")
        qw = rtn_quantize(linear.weight.detach().float(), bits, gs, symmetric, scale_dtype=scale_dtype)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls.from_quantized(qw, bias, backend=backend)

    def quantized_weight(self):
        """The `QuantizedWeight` these buffers hold (codes unpacked), `symmetric` flag included
        (so its `nbytes` counts no zero points for a symmetric layer, as when it was quantized)."""
        from minicomp.pack import unpack
        from minicomp.quant import QuantizedWeight

        return QuantizedWeight(unpack(self.qweight, self.pack_bits), self.scales, self.zeros,
                               self.bits, self.group_size, self.perm, symmetric=self.symmetric)

    # ── running ─────────────────────────────────────────────────────────────────────────────
    def choose_backend(self, x: torch.Tensor) -> str:
        """The backend a call with input x uses: `self.backend` if set, else the fastest that can."""
        if self.backend is not None:
            return self.backend
        if x.requires_grad and torch.is_grad_enabled():
            return "reference"
        fast = "triton" if x.device.type == "cuda" else "cpu"
        return fast if BACKENDS[fast].unsupported(self, x) is None else "reference"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x Ŵᵀ + b: x [..., in_features] -> y [..., out_features] in x's dtype, on the backend
        `choose_backend(x)` names."""
        check_input(x, self.in_features, device=self.qweight.device)
        name = self.choose_backend(x)
        backend = BACKENDS[_check_backend(name)]
        why = backend.unsupported(self, x) if self.backend is not None else None  # (auto: checked)
        if why is not None:
            raise ValueError(f"backend={name!r} cannot run this layer: {why}")
        if name != "reference" and x.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"backend={name!r} is inference-only but x requires grad; wrap the call "
                             "in torch.no_grad() or use backend='reference'")
        x2 = x if x.dim() == 2 else x.reshape(-1, self.in_features)  # [M, in]
        if x2.shape[0] and self.out_features:
            y = backend.linear(self, x2, check=False)   # (x is checked above)
        else:   # nothing to compute (no rows of x, or a layer of no outputs): the kernels need some
            y = x2.new_zeros(x2.shape[0], self.out_features, dtype=torch.float32)   # (as a backend's)
        # y is new and on x's device (a backend computes where x is): the bias is added in place,
        # and y only changes dtype if it must (each torch call saved here is µs on a small layer)
        if self.bias is not None:
            y.add_(self.bias)   # (y is float32 here: only without a bias is triton's y 16-bit)
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], self.out_features)

    # ── sizes ───────────────────────────────────────────────────────────────────────────────
    @property
    def weight_nbytes(self) -> int:
        """Bytes of the packed weight: codes + scales + zeros (+ perm). The bias is not counted."""
        ts = [self.qweight, self.scales, self.zeros] + ([] if self.perm is None else [self.perm])
        return sum(t.numel() * t.element_size() for t in ts)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.weight_nbytes / (self.in_features * self.out_features)

    @property
    def kernel_cache_nbytes(self) -> int:
        """Bytes the backends keep on the layer beside its buffers, made on first use and not
        counted in `weight_nbytes`: the cpu kernel's blocked layout (the codes once more, and the
        scales and zeros in float32), triton's split-K sums and its steps-first copy of the codes.
        0 until the layer has run on a fast backend; `.to()` and friends drop them."""
        return _nbytes(list(self._kernel_cache.values()))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, symmetric={self.symmetric}, "
                f"scales={str(self.scales.dtype).replace('torch.', '')}, "
                f"perm={self.perm is not None}, bias={self.bias is not None}, backend={self.backend}")

    def kept_layout(self, key, make):
        """make(), a backend's own arrangement of this layer's buffers, kept under `key` and made
        again when the buffers have changed since: replaced (`layer.perm = ...`), or written in
        place (load_state_dict, `layer.perm.copy_(...)`, which bump a tensor's `_version`)."""
        b = self._buffers   # (read directly: nn.Module's attribute lookup costs ~1 µs a name)
        buffers = (b["qweight"], b["scales"], b["zeros"], b["perm"])   # all a layout is made of
        cached = self._kernel_cache.get(key)
        if cached is None or not _same_tensors(cached[0], buffers):
            cached = self._kernel_cache[key] = (_stamp(buffers), make())
        return cached[1]

    def _apply(self, fn, *args, **kwargs):
        self._kernel_cache.clear()  # .to(), .cuda(), .half(): layouts are rebuilt on next use
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        """Pickling (torch.save of the module) and copy.deepcopy leave the kernel caches behind: they
        are remade on first use, and their stamps hold weak references, which cannot be pickled."""
        return {**super().__getstate__(), "_kernel_cache": {}}


def _stamp(tensors) -> tuple:
    """What `kept_layout` remembers of each tensor (None stays None): the tensor itself, by a weak
    reference (so a new tensor that happens to land at a freed one's address is not taken for
    it, and the cache does not keep old buffers alive), where its data is, and its `_version`,
    which PyTorch bumps on every in-place write."""
    return tuple(None if t is None else (weakref.ref(t), t.data_ptr(), t._version) for t in tensors)


def _same_tensors(stamp: tuple, tensors) -> bool:
    """Whether `tensors` are, unchanged, the ones `stamp` (from `_stamp`) was taken of."""
    if len(stamp) != len(tensors):
        return False
    for s, t in zip(stamp, tensors):   # (a plain loop: this runs on every call of the layer)
        if s is None or t is None:
            if s is not t:
                return False
        elif s[0]() is not t or s[1] != t.data_ptr() or s[2] != t._version:
            return False
    return True


def _cast_scales(scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    cast = scales.to(dtype)
    if not torch.isfinite(cast).all() or bool(((cast == 0) & (scales != 0)).any()):
        big, small = scales.abs().max().item(), scales.abs().min().item()
        raise ValueError(f"scale_dtype={dtype} cannot hold these scales (from {small:.3g} to "
                         f"{big:.3g}); use scale_dtype=torch.float32")
    return cast


# ── whole models ─────────────────────────────────────────────────────────────────────────────
def pack_model(model: nn.Module, *, linear_bits: int | None = None, group_size: int = 128,
               scale_dtype: torch.dtype | None = None, backend: str | None = None) -> nn.Module:
    """Swap every weight-only `QuantLinear` in `model` for a `PackedLinear`, in place.

    With `linear_bits` (e.g. 4), plain nn.Linear layers are RTN-quantized and packed too, with
    `group_size` (falling back to one group per row where it does not divide in_features).
    QuantLinears that quantize activations (W8A8) are left alone: these kernels are weight-only.
    An AWQ layer whose scale did not fold (`AWQLinear`) becomes a `PackedAWQLinear`, which keeps
    its input scale. Returns `model`.
    """
    from minicomp.calibrate import set_module, tied_parameters
    from minicomp.rtn import QuantLinear

    check_module(model)
    _check_backend(backend)
    check_group_size(group_size)
    check_scale_dtype(scale_dtype, "keep the scales' dtype; float16 for plain nn.Linear layers")
    tied = tied_parameters(model)
    swaps = {}
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear) and m.act_bits is None:  # AWQLinear -> PackedAWQLinear
            swaps[name] = m.packed(scale_dtype=scale_dtype, backend=backend)
        elif isinstance(m, nn.Linear) and linear_bits is not None and id(m.weight) not in tied:
            gs = group_size if group_size != -1 and m.in_features % group_size == 0 else -1
            swaps[name] = PackedLinear.from_linear(m, linear_bits, gs, backend=backend,
                                                   scale_dtype=scale_dtype or torch.float16)
    for name, new in swaps.items():
        if name == "":
            raise ValueError("model is itself a single layer; use PackedLinear.from_quantized / from_linear")
        old = model.get_submodule(name)
        device = next(iter(old.buffers()), next(iter(old.parameters()), None))
        set_module(model, name, new.to(device.device) if device is not None else new)
    return model


def set_backend(model: nn.Module, backend: str | None) -> nn.Module:
    """Set `backend` on every PackedLinear in `model` (None: automatic). Returns `model`."""
    check_module(model)
    _check_backend(backend)
    for m in model.modules():
        if isinstance(m, PackedLinear):
            m.backend = backend
    return model


def packed_layers(model: nn.Module) -> dict[str, PackedLinear]:
    """{name: layer} of every PackedLinear in `model`."""
    check_module(model)
    return {n: m for n, m in model.named_modules() if isinstance(m, PackedLinear)}


def _nbytes(obj) -> int:
    """Bytes of the tensors and arrays in obj (nested tuples, lists, dicts and dataclasses)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()   # as weight_nbytes counts
    if isinstance(obj, np.ndarray):   # the cpu kernel's layout
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return _nbytes(list(obj.values()))
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(_nbytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0
