"""Bad input to the packed kernels and to file export: each case here was found by a sweep of
their public entry points (2026-12) and failed without a clear word before. Each comment says
what happened then; now each raises a ValueError or TypeError naming the argument, or agrees
with the reference backend."""

import pytest
import torch
from torch import nn

from minicomp import export, kernels
from minicomp.kernels import PackedLinear, cpu, reference
from minicomp.kernels import triton as triton_backend


def _layer(out=16, n_in=64, group_size=32):
    torch.manual_seed(0)
    return PackedLinear.from_linear(nn.Linear(n_in, out), group_size=group_size)


def _dq(**kw):
    p = _layer()
    args = dict(qweight=p.qweight, scales=p.scales, zeros=p.zeros, pack_bits=4, group_size=32)
    return reference.dequantize_packed(**{**args, **kw})


X = torch.randn(3, 64)

BAD = [
    # ── a backend's linear, called directly (lesson 09 calls cpu.fused_linear / slab_linear) ──
    # silently wrong: the kernel read past x's rows (triton) or only its first 64 columns (cpu)
    ("triton.linear: x too wide", lambda: triton_backend.linear(_layer(), torch.randn(3, 128)), TypeError, r"x has shape \(3, 128\); expected \[\.\.\., 64\]"),
    ("triton.linear: x too narrow", lambda: triton_backend.linear(_layer(), torch.randn(3, 63)), TypeError, r"x has shape \(3, 63\)"),
    ("cpu.fused_linear: x too wide", lambda: cpu.fused_linear(_layer(), torch.randn(3, 128)), TypeError, r"x has shape \(3, 128\)"),
    # ValueError 'too many values to unpack' / RuntimeError 'self must be a matrix'
    ("triton.linear: 3-D x", lambda: triton_backend.linear(_layer(), torch.randn(2, 3, 64)), TypeError, r"x has shape \(2, 3, 64\).*x\.reshape\(-1, 64\)"),
    ("cpu.slab_linear: 3-D x", lambda: cpu.slab_linear(_layer(), torch.randn(2, 3, 64)), TypeError, r"x has shape \(2, 3, 64\).*x\.reshape"),
    ("cpu.linear: 1-D x", lambda: cpu.linear(_layer(), torch.randn(64)), TypeError, r"x has shape \(64,\)"),
    # RuntimeError 'mat1 and mat2 shapes cannot be multiplied'
    ("cpu.slab_linear: x too narrow", lambda: cpu.slab_linear(_layer(), torch.randn(3, 63)), TypeError, r"x has shape \(3, 63\)"),
    ("reference.linear: x too narrow", lambda: reference.linear(_layer(), torch.randn(3, 63)), TypeError, r"x has shape \(3, 63\)"),
    # AttributeError: 'NoneType' / 'numpy.ndarray' / 'Linear' object has no attribute ...
    ("cpu.linear: x None", lambda: cpu.linear(_layer(), None), TypeError, "x must be a floating-point tensor"),
    ("cpu.fused_linear: x numpy", lambda: cpu.fused_linear(_layer(), X.numpy()), TypeError, "x must be a floating-point tensor.*ndarray"),
    ("reference.linear: x None", lambda: reference.linear(_layer(), None), TypeError, "x must be a floating-point tensor"),
    ("triton.linear: x None", lambda: triton_backend.linear(_layer(), None), TypeError, "x must be a floating-point tensor"),
    ("cpu.fused_linear: an nn.Linear", lambda: cpu.fused_linear(nn.Linear(64, 16), X), TypeError, "layer must be a minicomp.kernels.PackedLinear, got Linear"),
    ("triton.linear: layer None", lambda: triton_backend.linear(None, X), TypeError, "layer must be a minicomp.kernels.PackedLinear"),
    # KeyError: 'KERNEL' (a tuned() record, or an empty dict, for config)
    ("triton.linear: config {}", lambda: triton_backend.linear(_layer(), X, config={}), TypeError, "config must be None .* candidates"),
    ("triton.linear: a tuned() record", lambda: triton_backend.linear(_layer(), X, config={"config": {}, "us": 1.0}), TypeError, "config.*under 'config'"),
    ("triton.linear: config lacks BLOCK_W", lambda: triton_backend.linear(_layer(), X, config={"KERNEL": "gemv", "BLOCK_N": 32, "SPLIT_K": 1, "num_warps": 1}), TypeError, r"config.*missing \['BLOCK_W'\]"),
    # ── reference.dequantize_packed ──────────────────────────────────────────────────────
    # silently wrong: one scale a row broadcast over both groups
    ("dequantize_packed: scales [out, 1] for two groups", lambda: _dq(scales=_layer().scales[:, :1]), TypeError, r"scales must be a tensor of shape \[out, in / group_size\] = \[16, 2\]"),
    # silently wrong: columns gathered by a perm that is not a permutation
    ("dequantize_packed: perm not a permutation", lambda: _dq(perm=torch.zeros(64, dtype=torch.long)), TypeError, "perm must be None or an integer permutation"),
    ("dequantize_packed: group_size 0 (was ZeroDivisionError)", lambda: _dq(group_size=0), TypeError, "group_size=0 must divide in_features=64"),
    ("dequantize_packed: group_size 48 (was RuntimeError)", lambda: _dq(group_size=48), TypeError, "group_size=48 must divide"),
    ("dequantize_packed: pack_bits 8 for 4-bit codes (was RuntimeError)", lambda: _dq(pack_bits=8), TypeError, "scales must be .* check pack_bits"),
    # ── whole models ─────────────────────────────────────────────────────────────────────
    ("packed_layers: None (was AttributeError)", lambda: kernels.packed_layers(None), TypeError, "model must be a torch.nn.Module"),
    # accepted without a word when no layer needed it
    ("pack_model: scale_dtype a str", lambda: kernels.pack_model(nn.Sequential(nn.ReLU()), scale_dtype="float16"), TypeError, "scale_dtype='float16' must be a floating-point torch.dtype"),
    # ── GGUF blocks ──────────────────────────────────────────────────────────────────────
    ("dequantize_q4_0: 0-d (was IndexError)", lambda: export.dequantize_q4_0(torch.tensor(1, dtype=torch.uint8)), TypeError, r"blocks must be uint8 .* got a torch.uint8 tensor of shape \(\)"),
    ("dequantize_q8_0: 0-d (was IndexError)", lambda: export.dequantize_q8_0(torch.tensor(1, dtype=torch.uint8)), TypeError, "blocks must be uint8"),
]


@pytest.mark.parametrize("call, error, match", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_refused_by_name(call, error, match):
    # (TypeError stands for "TypeError or ValueError": the catalogue's rule)
    with pytest.raises((TypeError, ValueError), match=match):
        call()


def test_a_layer_of_no_outputs_runs_on_many_rows():
    """A layer with out_features=0 on GEMM_ROWS rows or more: ZeroDivisionError in slab_linear."""
    p = _layer()
    empty = PackedLinear(p.qweight[:0], p.scales[:0], p.zeros[:0], in_features=64, bits=4, group_size=32)
    for backend in kernels.available_backends():
        if backend != "triton":
            empty.backend = backend
            assert empty(torch.randn(100, 64)).shape == (100, 0)


def test_valid_inputs_still_run_directly():
    """The new checks refuse only bad input: non-contiguous and float64 x still agree with the reference."""
    layer = _layer()
    x = torch.randn(64, 3).t()   # non-contiguous
    expected = reference.linear(layer, x.contiguous())
    x3 = torch.randn(2, 3, 64)   # the reference still takes [..., in], as before
    assert torch.allclose(reference.linear(layer, x3), reference.linear(layer, x3.reshape(6, 64)).reshape(2, 3, 16))
    if cpu.available():
        for f in (cpu.linear, cpu.fused_linear, cpu.slab_linear):
            assert torch.allclose(f(layer, x), expected, atol=1e-5)
            assert torch.allclose(f(layer, x.double()), expected, atol=1e-5)


# ── files ──────────────────────────────────────────────────────────────────────────────────
def _model():
    m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    return kernels.pack_model(m, linear_bits=4, group_size=32)


@pytest.fixture
def saved(tmp_path):
    return export.save_quantized(_model(), tmp_path / "m.safetensors")


def test_save_quantized_paths(tmp_path):
    # SafetensorError 'I/O error: Is a directory' / 'No such file or directory'
    with pytest.raises(ValueError, match="path=.* is a folder; give a file in it"):
        export.save_quantized(_model(), tmp_path)
    with pytest.raises(FileNotFoundError, match="the folder .*nope' does not exist; create it first") as info:
        export.save_quantized(_model(), tmp_path / "nope" / "m.safetensors")
    assert isinstance(info.value, ValueError)
    # TypeError 'expected str, bytes or os.PathLike object, not NoneType'
    with pytest.raises(TypeError, match="path must be a file path"):
        export.save_quantized(_model(), None)


def test_save_quantized_metadata(tmp_path):
    # silently replaced the entries load_quantized reads: a file that would not load, or loaded wrong
    for key in ("format", "packed_layers"):
        with pytest.raises(ValueError, match=rf"metadata\['{key}'\] is written by save_quantized itself"):
            export.save_quantized(_model(), tmp_path / "m.safetensors", metadata={key: "x"})
    # TypeError from safetensors: "argument 'metadata': 'int' object is not an instance of 'str'"
    with pytest.raises(TypeError, match=r"metadata must be None or a dict \{str: str\}"):
        export.save_quantized(_model(), tmp_path / "m.safetensors", metadata={"step": 1})
    assert not (tmp_path / "m.safetensors").exists()


def test_load_quantized_bad_files(tmp_path, saved):
    fresh = lambda: nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))   # noqa: E731
    # FileNotFoundError from safetensors, not naming the argument
    with pytest.raises(ValueError, match="path=.*nope.safetensors' does not exist") as info:
        export.load_quantized(fresh(), tmp_path / "nope.safetensors")
    assert isinstance(info.value, FileNotFoundError)
    # OSError 'No such device (os error 19)'
    with pytest.raises(ValueError, match="is a folder"):
        export.load_quantized(fresh(), tmp_path)
    # SafetensorError 'Error while deserializing header: header too large'
    (tmp_path / "junk.bin").write_bytes(b"not a safetensors file" * 8)
    gguf_file = export.save_gguf(tmp_path / "w.gguf", {"w": torch.randn(4, 32)})
    for path in (tmp_path / "junk.bin", gguf_file):
        with pytest.raises(ValueError, match="path=.* is not a safetensors file"):
            export.load_quantized(fresh(), path)
    # ValueError about layer '0' ("this model has no such layer"), not about model
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        export.load_quantized(None, saved)
    assert isinstance(export.load_quantized(fresh(), saved)[0], PackedLinear)


def test_save_gguf_bad_arguments(tmp_path):
    w = {"w": torch.randn(4, 32)}
    # IsADirectoryError / FileNotFoundError from open()
    with pytest.raises(ValueError, match="path=.* is a folder"):
        export.save_gguf(tmp_path, w)
    with pytest.raises(ValueError, match="the folder .* does not exist"):
        export.save_gguf(tmp_path / "nope" / "w.gguf", w)
    # TypeError "object of type 'int' has no len()" from deep in gguf
    with pytest.raises(TypeError, match=r"tensors must be keyed by str names.*\[1\]"):
        export.save_gguf(tmp_path / "w.gguf", {1: torch.randn(4, 32)})
    with pytest.raises(TypeError, match="arch must be a str"):
        export.save_gguf(tmp_path / "w.gguf", w, arch=5)


def test_save_gguf_refuses_empty_tensors(tmp_path):
    """An empty tensor was written, and load_gguf then failed on the file ('cannot reshape array of size 0')."""
    for shape in ((0, 32), (4, 0)):
        with pytest.raises(ValueError, match=rf"tensors\['w'\] has no values \(shape \({shape[0]}, {shape[1]}\)\)"):
            export.save_gguf(tmp_path / "w.gguf", {"w": torch.zeros(shape)})


@pytest.mark.parametrize("reader", [export.load_gguf, export.read_gguf])
def test_reading_a_gguf_file_that_is_not_one(tmp_path, reader):
    # FileNotFoundError / IsADirectoryError from numpy's memmap
    with pytest.raises(ValueError, match="path=.*nope.gguf' does not exist") as info:
        reader(tmp_path / "nope.gguf")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(ValueError, match="is a folder"):
        reader(tmp_path)
    with pytest.raises(TypeError, match="path must be a file path"):
        reader(None)   # looked for a file named 'None'
    # 'GGUF magic invalid' (not naming the file); a file cut short: IndexError from the reader
    (tmp_path / "junk.bin").write_bytes(b"not a gguf file" * 8)
    whole = export.save_gguf(tmp_path / "w.gguf", {"w": torch.randn(4, 32)}).read_bytes()
    (tmp_path / "cut.gguf").write_bytes(whole[:200])
    for name in ("junk.bin", "cut.gguf"):
        with pytest.raises(ValueError, match=f"path=.*{name}' is not a GGUF file"):
            reader(tmp_path / name)
