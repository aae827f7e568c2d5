"""Saving quantized weights: safetensors (minicomp's own files) and GGUF (llama.cpp's format).

**safetensors.** `save_quantized(model, path)` writes every tensor of a model whose linear layers
are `PackedLinear` (or `QuantLinear`, packed on the way out): packed codes, scales, zeros, perm,
and the float parameters of everything else. A JSON entry in the file's metadata lists the packed
layers and their format, so `load_quantized(model, path)` can rebuild them inside a fresh float
model of the same architecture.

**GGUF.** llama.cpp stores weights in blocks of 32 values, each block with its own float16 scale:

    Q8_0  34 bytes per block: d (fp16), then 32 signed bytes q;          x = q · d
    Q4_0  18 bytes per block: d (fp16), then 16 bytes of 4-bit codes;    x = (q − 8) · d
          byte j holds element j in its low nibble and element j + 16 in its high nibble

The Q4_0 nibble order is not minicomp's (`pack_int4` puts elements 2j and 2j+1 in byte j), so
the conversion below re-packs. `save_gguf` accepts

* float tensors, quantized here with GGUF's own rounding rules (written from scratch; the tests
  check they are byte-identical to the `gguf` package's quantizers), and
* `QuantizedWeight` / `PackedLinear` whose codes already *are* a GGUF format: symmetric,
  group_size 32, float16 scales (e.g. `rtn_quantize(w, 4, 32, symmetric=True,
  scale_dtype=torch.float16)`). Their codes are copied exactly, nothing is re-rounded.

1-D tensors (biases, norms) are stored as F32, as llama.cpp does. A `PackedLinear` is a whole
layer: its bias is written too, as an F32 tensor named by GGUF's convention, "blk.0.attn_q.bias"
beside "blk.0.attn_q.weight" (so name a layer with a bias "….weight"; see `save_gguf`).
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from minicomp.checks import check_finite
from minicomp.kernels import PackedLinear

__all__ = ["save_quantized", "load_quantized", "quantize_q4_0", "quantize_q8_0", "dequantize_q4_0",
           "dequantize_q8_0", "q4_0_from_codes", "q8_0_from_codes", "save_gguf", "load_gguf",
           "read_gguf", "GGUF_BLOCK", "GGUF_QTYPES"]

FORMAT = "minicomp.packed.v1"
GGUF_BLOCK = 32
GGUF_QTYPES = ("Q4_0", "Q8_0", "F16", "F32")
FP16_MAX = 65504.0  # float16's largest finite value


def _check_path(path, *, writing: bool, example: str) -> Path:
    """`path` as a Path, once it names a file that exists (reading) or a file in a folder that
    exists (writing); else an error naming it, rather than one from deep inside safetensors or
    gguf. A missing file or folder raises `ModelFileNotFoundError`: a FileNotFoundError and a ValueError."""
    from minicomp.models import ModelFileNotFoundError

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"path must be a file path (a str or pathlib.Path), got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path={str(path)!r} is a folder; give a file in it, e.g. {str(path / example)!r}")
    if writing and not path.parent.is_dir():
        raise ModelFileNotFoundError(f"path={str(path)!r}: the folder {str(path.parent)!r} does not exist; "
                                     f"create it first with Path({str(path.parent)!r}).mkdir(parents=True)")
    if not writing and not path.exists():
        raise ModelFileNotFoundError(f"path={str(path)!r} does not exist")
    return path


# ── safetensors ──────────────────────────────────────────────────────────────────────────────
def _packed_layers(model: nn.Module) -> dict[str, PackedLinear]:
    from minicomp.rtn import QuantLinear

    layers = {}
    for name, m in model.named_modules():
        if isinstance(m, PackedLinear):
            layers[name] = m
        elif isinstance(m, QuantLinear):
            if m.act_bits is not None:
                raise ValueError(f"layer {name!r} quantizes activations (act_bits={m.act_bits}); "
                                 "only weight-only layers can be saved packed")
            layers[name] = m.packed()  # an AWQLinear keeps its input scale
    return layers


def save_quantized(model: nn.Module, path, *, metadata: Mapping[str, str] | None = None) -> Path:
    """Write `model`'s tensors to a .safetensors file, linear layers packed. Returns the path.

    Tensors shared by several modules (tied weights) are written once.
    """
    from safetensors.torch import save_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    path = _check_path(path, writing=True, example="model.safetensors")
    if metadata is not None and not (isinstance(metadata, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError(f"metadata must be None or a dict {{str: str}} (safetensors metadata holds only "
                        f"strings), got {metadata!r:.100}")
    for key in ("format", "packed_layers"):
        if key in (metadata or {}):
            raise ValueError(f"metadata[{key!r}] is written by save_quantized itself (load_quantized reads it); "
                             "give your entry another key")
    layers = _packed_layers(model)
    tensors, seen = {}, {}
    for name, t in model.state_dict().items():
        owner = name.rpartition(".")[0]
        if owner in layers:
            continue  # written below, in packed form
        key = (t.data_ptr(), t.dtype, tuple(t.shape)) if t.numel() else None
        if key is not None and key in seen:
            continue  # a tied weight: load_state_dict fills both names from one tensor
        seen[key] = name
        tensors[name] = t.detach().cpu().contiguous()
    info = {}
    for name, layer in layers.items():
        prefix = f"{name}." if name else ""
        for buf in ("qweight", "scales", "zeros", "perm", "bias", "input_scale"):
            t = getattr(layer, buf, None)  # input_scale: AWQ layers whose scale did not fold
            if t is not None:
                tensors[prefix + buf] = t.detach().cpu().contiguous()
        info[name] = {"in_features": layer.in_features, "out_features": layer.out_features,
                      "bits": layer.bits, "pack_bits": layer.pack_bits, "group_size": layer.group_size,
                      "symmetric": layer.symmetric}
    meta = {"format": FORMAT, "packed_layers": json.dumps(info), **dict(metadata or {})}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_quantized(model: nn.Module, path, *, backend: str | None = None) -> nn.Module:
    """Load a `save_quantized` file into `model` (same architecture, float), in place.

    The layers listed in the file become PackedLinear (PackedAWQLinear where the file holds an
    AWQ input scale); every other tensor must match `model`.
    """
    from safetensors import SafetensorError, safe_open

    from minicomp.awq import PackedAWQLinear
    from minicomp.calibrate import set_module

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (a float model of the architecture the file was saved "
                        f"from), got {type(model).__name__}")
    path = _check_path(path, writing=False, example="model.safetensors")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as err:
        raise ValueError(f"path={str(path)!r} is not a safetensors file ({err}); load_quantized reads the "
                         "files save_quantized writes") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"path={str(path)!r} is not a minicomp packed file (format "
                         f"{meta.get('format')!r}, expected {FORMAT!r})")
    try:
        info = json.loads(meta["packed_layers"])
    except (KeyError, ValueError) as err:
        raise ValueError(f"path={str(path)!r} has no readable list of packed layers in its metadata "
                         f"({type(err).__name__}: {err}); write it again with save_quantized") from err
    for name, spec in info.items():
        prefix = f"{name}." if name else ""
        get = lambda buf, prefix=prefix: tensors.pop(prefix + buf, None)
        input_scale = get("input_scale")
        cls, extra = (PackedLinear, {}) if input_scale is None else (PackedAWQLinear, {"input_scale": input_scale})
        layer = cls(get("qweight"), get("scales"), get("zeros"),
                    in_features=spec["in_features"], bits=spec["bits"],
                    group_size=spec["group_size"], perm=get("perm"), bias=get("bias"),
                    symmetric=spec.get("symmetric", False),   # (files written before it was saved: False)
                    backend=backend, **extra)
        if name == "":
            raise ValueError("the file holds a single packed layer; build it with PackedLinear(...)")
        _check_fits(model, name, layer, path)
        set_module(model, name, layer)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k.rpartition(".")[0] not in info and not _is_tied(model, k, tensors)]
    if missing or unexpected:
        raise ValueError(f"path={str(path)!r} does not fit this model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model


def _check_fits(model: nn.Module, name: str, layer: PackedLinear, path) -> None:
    """Raise unless `model` has a linear layer `name` of the packed layer's shape."""
    try:
        old = model.get_submodule(name)
    except AttributeError:
        old = None
    shape = (getattr(old, "in_features", None), getattr(old, "out_features", None))
    if shape != (layer.in_features, layer.out_features):
        here = "no such layer" if old is None else f"{type(old).__name__} {shape[0]}→{shape[1]}"
        raise ValueError(f"path={str(path)!r} holds layer {name!r} as {layer.in_features}→{layer.out_features} "
                         f"features, but this model has {here}; load the file into the architecture it was "
                         "saved from")


def _is_tied(model: nn.Module, key: str, loaded: Mapping[str, torch.Tensor]) -> bool:
    """True if parameter `key` shares its tensor with one that was loaded (tied weights)."""
    state = model.state_dict(keep_vars=True)
    t = state.get(key)
    return t is not None and any(state[k] is t for k in loaded if k in state)


# ── GGUF blocks, from scratch ────────────────────────────────────────────────────────────────
def _blocks(w: torch.Tensor, name: str = "w") -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {getattr(w, 'dtype', type(w).__name__)}")
    if w.dim() == 0 or w.shape[-1] % GGUF_BLOCK:
        raise ValueError(f"{name}.shape[-1] must be a multiple of {GGUF_BLOCK} for GGUF blocks, got "
                         f"shape {tuple(w.shape)}")
    check_finite(name, w)
    return w.detach().cpu().to(torch.float32).reshape(-1, GGUF_BLOCK)  # [n_blocks, 32]


def _fp16_bytes(d: torch.Tensor) -> torch.Tensor:
    """[n_blocks, 1] float -> [n_blocks, 2] uint8: the float16 bit pattern, little-endian."""
    if d.numel() and d.abs().max() > FP16_MAX:
        raise ValueError(f"a block needs the scale {d.abs().max().item():.4g}, beyond float16's largest value "
                         f"({FP16_MAX:g}), and GGUF blocks store float16 scales; scale the tensor down first")
    h = d.to(torch.float16).numpy().astype("<f2")   # (callers pass CPU tensors)
    return torch.from_numpy(h.view(np.uint8).reshape(-1, 2).copy())


def _q4_0_pack(q: torch.Tensor) -> torch.Tensor:
    """Codes [n_blocks, 32] in 0..15 -> [n_blocks, 16] bytes, element j low, element j+16 high."""
    q = q.to(torch.uint8)
    return q[:, :16] | (q[:, 16:] << 4)


def quantize_q4_0(w: torch.Tensor) -> torch.Tensor:
    """GGUF Q4_0 of `w` [..., n] (n a multiple of 32): uint8 [..., n / 32 · 18].

    Per block: m = the value with the largest magnitude (sign kept), d = m / −8, and
    q = min(15, trunc(x / d + 8.5)), so m itself gets code 0 and the codes run 0..15, x ≈ (q − 8)·d.
    All in float32 and in this order, as ggml's quantize_row_q4_0_ref does.
    """
    b = _blocks(w)
    i = b.abs().argmax(dim=1, keepdim=True)              # first index of the largest |x|
    d = b.gather(1, i) / -8                              # [n_blocks, 1]
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc(b * inv + 8.5).clamp(0, 15)          # [n_blocks, 32]
    out = torch.cat([_fp16_bytes(d), _q4_0_pack(q)], dim=1)  # [n_blocks, 18]
    return out.reshape(*w.shape[:-1], w.shape[-1] // GGUF_BLOCK * 18)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's roundf: halves away from zero (torch.round sends them to even). Exact in float32."""
    a = x.abs()
    f = torch.floor(a)
    return torch.sign(x) * (f + torch.floor(2 * (a - f)))


def quantize_q8_0(w: torch.Tensor) -> torch.Tensor:
    """GGUF Q8_0 of `w` [..., n]: uint8 [..., n / 32 · 34]. d = max|x| / 127, q = roundf(x / d)."""
    b = _blocks(w)
    d = b.abs().amax(dim=1, keepdim=True) / 127          # [n_blocks, 1]
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = _round_half_away(b * inv).to(torch.int8)         # [n_blocks, 32] in -127..127
    out = torch.cat([_fp16_bytes(d), q.view(torch.uint8)], dim=1)
    return out.reshape(*w.shape[:-1], w.shape[-1] // GGUF_BLOCK * 34)


def _split(blocks: torch.Tensor, size: int, name: str) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    if (not isinstance(blocks, torch.Tensor) or blocks.dtype != torch.uint8 or blocks.dim() == 0
            or blocks.shape[-1] % size):
        given = (f"a {blocks.dtype} tensor of shape {tuple(blocks.shape)}" if isinstance(blocks, torch.Tensor)
                 else type(blocks).__name__)
        raise ValueError(f"{name} must be uint8 with a last dimension that is a multiple of {size}, got {given}")
    flat = blocks.detach().cpu().reshape(-1, size)   # (GGUF blocks are bytes: read on the CPU)
    d = torch.from_numpy(flat[:, :2].contiguous().numpy().view("<f2").astype(np.float32))  # [n, 1]
    return d, flat[:, 2:], (*blocks.shape[:-1], blocks.shape[-1] // size * GGUF_BLOCK)


def dequantize_q4_0(blocks: torch.Tensor) -> torch.Tensor:
    """Inverse of the Q4_0 layout: uint8 [..., k · 18] -> float32 [..., k · 32], on the CPU."""
    d, qs, shape = _split(blocks, 18, "blocks")
    q = torch.cat([qs & 0x0F, qs >> 4], dim=1).to(torch.float32)   # elements 0..15, then 16..31
    return ((q - 8) * d).reshape(shape)


def dequantize_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    """Inverse of the Q8_0 layout: uint8 [..., k · 34] -> float32 [..., k · 32], on the CPU."""
    d, qs, shape = _split(blocks, 34, "blocks")
    return (qs.contiguous().view(torch.int8).to(torch.float32) * d).reshape(shape)


# ── minicomp codes -> GGUF blocks, exactly ───────────────────────────────────────────────────
def _gguf_ready(qw, bits: int, qtype: str):
    """codes [out, in] and fp16-exact scale [out, in / 32] of a QuantizedWeight already in `qtype`."""
    mid = 2 ** (bits - 1)
    problems = []
    if qw.bits != bits:
        problems.append(f"bits={qw.bits} (needs {bits})")
    if qw.group_size != GGUF_BLOCK:
        problems.append(f"group_size={qw.group_size} (needs {GGUF_BLOCK})")
    if not bool((qw.zero == mid).all()):
        problems.append(f"zero points other than {mid} (needs symmetric=True)")
    if qw.perm is not None:
        problems.append("an act-order perm (GGUF has none)")
    if not torch.equal(qw.scale.to(torch.float16).to(qw.scale.dtype), qw.scale):
        problems.append("scales that float16 cannot hold exactly (use scale_dtype=torch.float16)")
    if problems:
        raise ValueError(f"this QuantizedWeight is not already {qtype}: it has {', '.join(problems)}. "
                         f"Pass the float weight instead (save_gguf quantizes it with GGUF's rules), or "
                         f"quantize with rtn_quantize(w, {bits}, {GGUF_BLOCK}, symmetric=True, "
                         "scale_dtype=torch.float16)")
    return qw.codes, qw.scale


def _check_codes(codes, scale, bits: int) -> None:
    """Raise unless codes [out, in] are integers in 0 .. 2^bits − 1, in a multiple of 32, and
    scale [out, in / 32] holds finite floats: the arguments of `q4_0_from_codes` / `q8_0_from_codes`."""
    top = 2**bits - 1
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex() \
            or codes.dtype == torch.bool:
        raise TypeError(f"codes must be an integer torch.Tensor of {bits}-bit codes [out, in], got "
                        f"{f'a {codes.dtype} tensor' if isinstance(codes, torch.Tensor) else type(codes).__name__}")
    if codes.dim() != 2 or codes.shape[1] % GGUF_BLOCK:
        raise ValueError(f"codes must be 2-D [out, in] with in a multiple of {GGUF_BLOCK} (whole GGUF blocks), "
                         f"got shape {tuple(codes.shape)}")
    if codes.numel() and (codes.min() < 0 or codes.max() > top):
        raise ValueError(f"codes must lie in [0, {top}] ({bits}-bit codes, stored unsigned); got "
                         f"[{codes.min().item()}, {codes.max().item()}]")
    want = (codes.shape[0], codes.shape[1] // GGUF_BLOCK)
    if not isinstance(scale, torch.Tensor) or tuple(scale.shape) != want:
        raise ValueError(f"scale must be a tensor of shape [out, in / {GGUF_BLOCK}] = {list(want)} (one per "
                         f"block), got {list(scale.shape) if isinstance(scale, torch.Tensor) else type(scale).__name__}")
    check_finite("scale", scale)


def q4_0_from_codes(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Q4_0 blocks [out, in / 32 · 18] uint8 (on the CPU) from 4-bit codes [out, in] (integers 0..15, standing
    for (q − 8)·scale; in a multiple of 32) and scale [out, in / 32] (one float per block, stored as
    float16: a scale float16 cannot hold is rounded here; `save_gguf` refuses such scales)."""
    _check_codes(codes, scale, 4)
    codes, scale = codes.detach().cpu(), scale.detach().cpu()   # GGUF blocks are bytes, made on the CPU
    out, n_in = codes.shape
    q = codes.reshape(-1, GGUF_BLOCK)                         # [n_blocks, 32]
    d = scale.reshape(-1, 1)
    return torch.cat([_fp16_bytes(d), _q4_0_pack(q)], dim=1).reshape(out, n_in // GGUF_BLOCK * 18)


def q8_0_from_codes(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Q8_0 blocks [out, in / 32 · 34] uint8 (on the CPU) from 8-bit codes [out, in] (integers 0..255, standing
    for (q − 128)·scale; in a multiple of 32) and scale [out, in / 32] (one float per block, stored as
    float16: a scale float16 cannot hold is rounded here; `save_gguf` refuses such scales)."""
    _check_codes(codes, scale, 8)
    codes, scale = codes.detach().cpu(), scale.detach().cpu()   # GGUF blocks are bytes, made on the CPU
    out, n_in = codes.shape
    q = (codes.reshape(-1, GGUF_BLOCK).to(torch.int16) - 128).to(torch.int8)
    d = scale.reshape(-1, 1)
    return torch.cat([_fp16_bytes(d), q.view(torch.uint8)], dim=1).reshape(out, n_in // GGUF_BLOCK * 34)


def _to_gguf(name: str, value, qtype: str):
    """(numpy array to write, GGMLQuantizationType) for one entry of save_gguf's `tensors`."""
    from gguf import GGMLQuantizationType as T

    from minicomp.quant import QuantizedWeight

    if isinstance(value, PackedLinear):   # (its bias is written by save_gguf, under its own name)
        scale = getattr(value, "input_scale", None)   # an AWQ layer whose scale did not fold
        if scale is not None and not bool((scale == 1).all()):
            raise ValueError(f"tensors[{name!r}] is a PackedAWQLinear that divides x by its input_scale "
                             "first, and a GGUF weight has no place for that scale: fold it into the op "
                             "before the layer (minicomp.awq.fold_awq_scales, before packing), or save the "
                             "model with save_quantized, which keeps it")
        value = value.quantized_weight()
    if isinstance(value, (torch.Tensor, QuantizedWeight)) and 0 in value.shape:
        raise ValueError(f"tensors[{name!r}] has no values (shape {tuple(value.shape)}); a GGUF reader cannot "
                         "read an empty tensor back: leave it out")
    if isinstance(value, QuantizedWeight):
        if qtype not in ("Q4_0", "Q8_0"):
            raise ValueError(f"tensors[{name!r}] is quantized; qtype={qtype!r} must be 'Q4_0' or 'Q8_0'")
        bits = 4 if qtype == "Q4_0" else 8
        codes, scale = _gguf_ready(value, bits, qtype)
        make = q4_0_from_codes if bits == 4 else q8_0_from_codes
        return make(codes, scale).numpy(), getattr(T, qtype)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(f"tensors[{name!r}] must be a float tensor, QuantizedWeight or PackedLinear, "
                        f"got {getattr(value, 'dtype', type(value).__name__)}")
    w = value.detach().cpu().float()
    blocks = qtype in ("Q4_0", "Q8_0")
    if w.dim() < 2 or qtype == "F32" or (blocks and w.shape[-1] % GGUF_BLOCK):
        return w.numpy(), T.F32          # biases and norms stay float, as in llama.cpp; rows of no whole block too
    check_finite(f"tensors[{name!r}]", w)
    if qtype == "F16":
        if w.numel() and w.abs().max() > FP16_MAX:
            raise ValueError(f"tensors[{name!r}] holds values up to {w.abs().max().item():.4g} in magnitude, "
                             f"beyond float16's largest ({FP16_MAX:g}): F16 would store them as inf. Use "
                             "qtype='F32', or scale the tensor down first")
        return w.half().numpy(), T.F16
    quantize = quantize_q4_0 if qtype == "Q4_0" else quantize_q8_0
    return quantize(w).numpy(), getattr(T, qtype)


def _bias_name(name: str) -> str:
    """GGUF's name for the bias of the layer whose weight is `name`: "blk.0.attn_q.weight" ->
    "blk.0.attn_q.bias"."""
    if not name.endswith(".weight"):
        raise ValueError(f"tensors[{name!r}] is a PackedLinear with a bias, and save_gguf writes its bias as "
                         "a tensor of its own, named as GGUF names them: the layer's name must end in '.weight' "
                         "(e.g. 'blk.0.attn_q.weight', whose bias becomes 'blk.0.attn_q.bias'). Rename it, or "
                         "pass the two separately: {'w': layer.quantized_weight(), 'b': layer.bias}")
    return name[: -len("weight")] + "bias"


def _add_metadata(writer, key, value) -> None:
    """One metadata entry, typed as GGUF types it: bool -> BOOL, int -> UINT32 (INT32 if negative;
    64 bits if it does not fit), float -> FLOAT32 (as llama.cpp reads e.g. its epsilons), str -> STRING.
    numpy scalars count as the Python type they stand for."""
    if not isinstance(key, str):
        raise TypeError(f"metadata keys must be str, got {key!r}")
    if isinstance(value, (bool, np.bool_)):
        writer.add_bool(key, bool(value))
    elif isinstance(value, numbers.Integral):
        v = int(value)
        if 0 <= v < 2**32:
            writer.add_uint32(key, v)
        elif -(2**31) <= v < 0:
            writer.add_int32(key, v)
        elif -(2**63) <= v < 2**63:
            writer.add_int64(key, v)
        elif 0 <= v < 2**64:
            writer.add_uint64(key, v)
        else:
            raise ValueError(f"metadata[{key!r}]={value!r} does not fit GGUF's 64-bit integers")
    elif isinstance(value, numbers.Real):
        writer.add_float32(key, float(value))
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        raise TypeError(f"metadata[{key!r}] is a {type(value).__name__}; GGUF metadata values here must be "
                        "a str, bool, int or float")


RESERVED_KEYS = {"general.architecture": "arch=", "minicomp.qtype": "qtype="}  # set by save_gguf's arguments


def save_gguf(path, tensors: Mapping[str, object], qtype: str = "Q4_0", *, arch: str = "minicomp",
              metadata: Mapping[str, str | int | float | bool] | None = None) -> Path:
    """Write `tensors` {name: float tensor | QuantizedWeight | PackedLinear} as a GGUF file.

    qtype: "Q4_0" or "Q8_0" for the 2-D (and larger) float tensors whose rows are whole blocks of
    32 (other rows stay F32); "F16" or "F32" to keep the 2-D ones in float (F16 refuses values
    float16 cannot hold). 1-D tensors (biases, norms) are always F32, as in llama.cpp. A
    PackedLinear's bias is written too, as F32, under GGUF's name for it: "blk.0.attn_q.weight"'s
    bias is "blk.0.attn_q.bias" (so the name of a layer with a bias must end in ".weight").
    metadata: {key: str | bool | int | float}, beside "general.name" (the file's stem, unless
    metadata gives one) and "minicomp.qtype". Returns the path. Read it back with `load_gguf`,
    or `gguf.GGUFReader(path)` directly.
    """
    import gguf

    if qtype not in GGUF_QTYPES:
        raise ValueError(f"qtype={qtype!r} must be one of {GGUF_QTYPES}")
    if not isinstance(tensors, Mapping) or not tensors:
        raise ValueError("tensors must be a non-empty dict {name: tensor}")
    if not all(isinstance(name, str) for name in tensors):
        raise TypeError(f"tensors must be keyed by str names (e.g. 'blk.0.attn_q.weight'), got "
                        f"{[name for name in tensors if not isinstance(name, str)][:3]}")
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a str (GGUF's general.architecture, e.g. 'llama'), got {arch!r}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict {{key: value}} or None, got {type(metadata).__name__}")
    metadata = dict(metadata or {})
    for key, arg in RESERVED_KEYS.items():
        if key in metadata:
            raise ValueError(f"metadata[{key!r}] is written by save_gguf itself; pass it as {arg} instead")
    entries = {}                                      # name -> what to write: the bias of a layer too
    for name, value in tensors.items():
        entries[name] = value
        if isinstance(value, PackedLinear) and value.bias is not None:
            bias = _bias_name(name)
            if bias in tensors:
                raise ValueError(f"tensors[{bias!r}] is given, and tensors[{name!r}] is a PackedLinear whose bias "
                                 "would be written under that name too; give the bias once")
            entries[bias] = value.bias
    path = _check_path(path, writing=True, example="model.gguf")
    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_string("general.name", str(metadata.pop("general.name", path.stem)))
    writer.add_string("minicomp.qtype", qtype)
    for key, value in metadata.items():
        _add_metadata(writer, key, value)
    for name, value in entries.items():
        data, kind = _to_gguf(name, value, qtype)
        writer.add_tensor(name, data, raw_dtype=kind if data.dtype == np.uint8 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def read_gguf(path) -> dict[str, dict]:
    """What a GGUF file holds, read by the `gguf` package: {name: {type, shape, nbytes, data}}.

    `shape` is in PyTorch order ([out, in]); `data` is the raw block bytes (or floats).
    """
    reader = _gguf_reader(path)
    return {t.name: {"type": t.tensor_type.name, "shape": tuple(int(s) for s in reversed(t.shape)),
                     "nbytes": int(t.n_bytes), "data": t.data} for t in reader.tensors}


def load_gguf(path) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file as float32, dequantized by the `gguf` package itself."""
    import gguf

    out = {}
    for t in _gguf_reader(path).tensors:
        values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        shape = tuple(int(s) for s in reversed(t.shape))
        out[t.name] = torch.from_numpy(np.array(values, dtype=np.float32)).reshape(shape)  # a copy
    return out


def _gguf_reader(path):
    """`gguf.GGUFReader` of `path`, after checking that the file exists; a file it cannot read
    (not GGUF, or cut short) raises a ValueError naming it."""
    import gguf

    path = _check_path(path, writing=False, example="model.gguf")
    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, IndexError) as err:
        raise ValueError(f"path={str(path)!r} is not a GGUF file the gguf package can read "
                         f"({type(err).__name__}: {err}); write one with save_gguf") from err
