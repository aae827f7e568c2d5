"""Tests for minicomp.export: GGUF blocks identical to the gguf package's, files it reads back,
and safetensors round trips of packed models."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from minicomp.export import (
    dequantize_q4_0,
    dequantize_q8_0,
    load_gguf,
    load_quantized,
    q4_0_from_codes,
    q8_0_from_codes,
    quantize_q4_0,
    quantize_q8_0,
    read_gguf,
    save_gguf,
    save_quantized,
)
from minicomp.kernels import PackedLinear, pack_model
from minicomp.rtn import rtn_quantize

gguf = pytest.importorskip("gguf")
T = gguf.GGMLQuantizationType
OURS = {"Q4_0": quantize_q4_0, "Q8_0": quantize_q8_0}
DEQ = {"Q4_0": dequantize_q4_0, "Q8_0": dequantize_q8_0}


def _awkward_weight():
    """Random values plus the blocks where rounding rules differ: ties, zeros, exact halves."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 128, generator=g) * 0.05
    w[0, :32] = 0                                  # an all-zero block: d = 0
    w[1, :32] = torch.linspace(-1, 1, 32)          # +1 and -1 tie for the largest magnitude
    w[2, :32] = torch.arange(32) - 16.0            # -16 is the largest: d = 2
    w[3, :32] = torch.arange(-16, 16) * 127 / 16 / 2  # many values at exactly half a step (Q8_0)
    w[4, 32:64] = 1e-30                            # tiny
    w[5, 64:96] = -3e4                             # large, constant
    return w


@pytest.mark.parametrize("qtype", ["Q4_0", "Q8_0"])
def test_blocks_identical_to_gguf_quantizers(qtype):
    w = _awkward_weight()
    ours = OURS[qtype](w)
    theirs = gguf.quants.quantize(w.numpy(), getattr(T, qtype))
    assert ours.dtype == torch.uint8 and ours.shape == theirs.shape
    assert np.array_equal(ours.numpy(), theirs)


@pytest.mark.parametrize("qtype", ["Q4_0", "Q8_0"])
def test_property_identical_to_gguf(qtype):
    # values of magnitude >= 1e-30 (or 0): below ~1e-38, 1/d overflows and gguf's own result is a
    # float->uint8 cast of NaN, which is undefined
    finite = st.floats(-1e4, 1e4, width=32).filter(lambda v: v == 0 or abs(v) >= 1e-30)

    @settings(max_examples=60, deadline=None)
    @given(arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 3).map(lambda k: 32 * k)),
                  elements=finite))
    def same(w):
        assert np.array_equal(OURS[qtype](torch.from_numpy(w)).numpy(),
                              gguf.quants.quantize(w, getattr(T, qtype)))

    same()


@pytest.mark.parametrize("qtype", ["Q4_0", "Q8_0"])
def test_dequantize_matches_gguf(qtype):
    blocks = OURS[qtype](_awkward_weight())
    theirs = gguf.quants.dequantize(blocks.numpy(), getattr(T, qtype))
    assert np.array_equal(DEQ[qtype](blocks).numpy(), theirs)


def test_q4_0_layout_by_hand():
    # one block: codes 0..15 then 15..0, scale 0.5 -> d bytes, then byte j = q[j] | q[j+16] << 4
    codes = torch.cat([torch.arange(16), torch.arange(15, -1, -1)]).reshape(1, 32)
    blocks = q4_0_from_codes(codes, torch.tensor([[0.5]]))
    assert blocks.shape == (1, 18)
    assert blocks[0, :2].tolist() == [0x00, 0x38]           # float16 0.5 = 0x3800, little-endian
    assert blocks[0, 2:].tolist() == [j | (15 - j) << 4 for j in range(16)]
    assert dequantize_q4_0(blocks)[0, :3].tolist() == [-4.0, -3.5, -3.0]  # (q - 8) · 0.5


def test_minicomp_codes_convert_exactly():
    """A symmetric group-32 fp16 QuantizedWeight *is* Q4_0: its codes survive unchanged."""
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    qw = rtn_quantize(w, 4, 32, symmetric=True, scale_dtype=torch.float16)
    blocks = q4_0_from_codes(qw.codes, qw.scale)
    assert torch.equal(dequantize_q4_0(blocks), qw.dequantize())
    assert np.array_equal(gguf.quants.dequantize(blocks.numpy(), T.Q4_0), qw.dequantize().numpy())


def test_bad_block_shapes():
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_q4_0(torch.randn(2, 48))
    with pytest.raises(TypeError, match="floating-point"):
        quantize_q8_0(torch.ones(2, 32, dtype=torch.int64))


# ------------------------------------------------------------------ GGUF files

@pytest.mark.parametrize("qtype", ["Q4_0", "Q8_0"])
def test_save_gguf_reads_back_with_gguf(tmp_path, qtype):
    w, b = _awkward_weight(), torch.randn(16)
    qw4 = rtn_quantize(torch.randn(4, 64), 4, 32, symmetric=True, scale_dtype=torch.float16)
    qw8 = rtn_quantize(torch.randn(4, 64), 8, 32, symmetric=True, scale_dtype=torch.float16)
    ready = qw4 if qtype == "Q4_0" else qw8
    path = save_gguf(tmp_path / "m.gguf", {"w": w, "b": b, "q": ready}, qtype)
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["w"].tensor_type == getattr(T, qtype)
    assert tensors["b"].tensor_type == T.F32
    assert np.array_equal(np.asarray(tensors["w"].data), gguf.quants.quantize(w.numpy(), getattr(T, qtype)))
    info = read_gguf(path)
    assert info["w"]["shape"] == (16, 128) and info["b"]["shape"] == (16,)
    back = load_gguf(path)
    assert torch.equal(back["b"], b)
    assert torch.equal(back["q"], ready.dequantize())  # copied exactly, not re-rounded
    assert (back["w"] - w).abs().max() < 0.2 * w.abs().max()


def test_save_gguf_packed_linear(tmp_path):
    qw = rtn_quantize(torch.randn(8, 64), 4, 32, symmetric=True, scale_dtype=torch.float16)
    layer = PackedLinear.from_quantized(qw)
    back = load_gguf(save_gguf(tmp_path / "p.gguf", {"layer": layer}))
    assert torch.equal(back["layer"], qw.dequantize())


def test_save_gguf_refuses_codes_that_are_not_gguf(tmp_path):
    qw = rtn_quantize(torch.randn(8, 256), 4, 128)  # asymmetric, group 128, float32 scales
    with pytest.raises(ValueError, match="group_size=128.*symmetric"):
        save_gguf(tmp_path / "x.gguf", {"w": qw}, "Q4_0")
    with pytest.raises(ValueError, match="qtype='Q5_K'"):
        save_gguf(tmp_path / "x.gguf", {"w": torch.randn(2, 32)}, "Q5_K")


@pytest.mark.parametrize("qtype", ["Q4_0", "Q8_0"])
def test_save_gguf_writes_a_packed_linears_bias_by_gguf_names(tmp_path, qtype):
    lin = nn.Linear(64, 8)
    layer = PackedLinear.from_linear(lin, 4 if qtype == "Q4_0" else 8, 32, symmetric=True)
    path = save_gguf(tmp_path / "p.gguf", {"blk.0.attn_q.weight": layer}, qtype)
    info = read_gguf(path)
    assert list(info) == ["blk.0.attn_q.weight", "blk.0.attn_q.bias"]
    assert info["blk.0.attn_q.bias"]["type"] == "F32" and info["blk.0.attn_q.bias"]["shape"] == (8,)
    back = load_gguf(path)
    assert torch.equal(back["blk.0.attn_q.bias"], lin.bias.detach())
    assert torch.equal(back["blk.0.attn_q.weight"], layer.quantized_weight().dequantize())
    with pytest.raises(ValueError, match=r"must end in '\.weight'.*quantized_weight\(\)"):
        save_gguf(tmp_path / "x.gguf", {"layer": layer}, qtype)        # where would its bias go?
    with pytest.raises(ValueError, match="give the bias once"):
        save_gguf(tmp_path / "x.gguf", {"l.weight": layer, "l.bias": lin.bias.detach()}, qtype)


def test_save_gguf_refuses_an_awq_layer_whose_input_scale_did_not_fold(tmp_path):
    from minicomp.awq import PackedAWQLinear

    qw = rtn_quantize(torch.randn(8, 64), 4, 32, symmetric=True, scale_dtype=torch.float16)
    plain = PackedLinear.from_quantized(qw)
    args = (plain.qweight, plain.scales, plain.zeros)
    kw = dict(in_features=64, bits=4, group_size=32, symmetric=True)
    ones = PackedAWQLinear(*args, **kw)                                # scale 1: nothing is lost
    assert torch.equal(load_gguf(save_gguf(tmp_path / "a.gguf", {"w": ones}))["w"], qw.dequantize())
    scaled = PackedAWQLinear(*args, input_scale=torch.full((64,), 2.0), **kw)
    with pytest.raises(ValueError, match="input_scale"):
        save_gguf(tmp_path / "b.gguf", {"w": scaled})


@pytest.mark.parametrize("bad", [1e5, -7e4, float("inf"), float("nan")])
def test_save_gguf_f16_refuses_values_float16_cannot_hold(tmp_path, bad):
    w = torch.randn(2, 32)
    w[1, 3] = bad
    with pytest.raises(ValueError, match=r"tensors\['w'\] (holds values up to|contains NaN or Inf)"):
        save_gguf(tmp_path / "x.gguf", {"w": w}, "F16")
    w[1, 3] = 65504.0                                                  # float16's largest: fine
    assert torch.equal(load_gguf(save_gguf(tmp_path / "ok.gguf", {"w": w}, "F16"))["w"], w.half().float())


def test_save_gguf_f16_keeps_any_width_in_f16(tmp_path):
    w, b = torch.randn(3, 20), torch.randn(3)         # rows of 20: not whole blocks of 32, fine for F16
    tensors = {t.name: t for t in gguf.GGUFReader(str(save_gguf(tmp_path / "f.gguf", {"w": w, "b": b}, "F16"))).tensors}
    assert tensors["w"].tensor_type == T.F16 and tensors["b"].tensor_type == T.F32
    q4 = {t.name: t for t in gguf.GGUFReader(str(save_gguf(tmp_path / "q.gguf", {"w": w}, "Q4_0"))).tensors}
    assert q4["w"].tensor_type == T.F32               # Q4_0 needs whole blocks: such rows stay float32


def test_from_codes_check_their_arguments():
    ones = torch.ones(2, 2)
    codes = torch.full((2, 64), 8, dtype=torch.uint8)
    assert q4_0_from_codes(codes, ones).shape == (2, 36) and q8_0_from_codes(codes, ones).shape == (2, 68)
    for make, top in ((q4_0_from_codes, 15), (q8_0_from_codes, 255)):
        for value in (top + 1, -1):
            wrong = codes.to(torch.int32).clone()
            wrong[1, 5] = value
            with pytest.raises(ValueError, match=rf"codes must lie in \[0, {top}\]"):
                make(wrong, ones)
        with pytest.raises(ValueError, match="codes must be 2-D"):
            make(codes[0], ones[0])
        with pytest.raises(ValueError, match="multiple of 32"):
            make(codes[:, :48], ones)
        with pytest.raises(ValueError, match=r"scale must be a tensor of shape \[out, in / 32\] = \[2, 2\]"):
            make(codes, torch.ones(2, 1))
        with pytest.raises(TypeError, match="codes must be an integer"):
            make(codes.float(), ones)
        with pytest.raises(ValueError, match="scale contains NaN"):
            make(codes, torch.full((2, 2), float("nan")))


def test_save_gguf_metadata_types(tmp_path):
    meta = {"a.np_int": np.int64(3), "a.int": 7, "a.neg": -2, "a.big": 2**40, "a.float": 0.5,
            "a.np_float": np.float32(1e-5), "a.bool": True, "a.np_bool": np.bool_(False), "a.str": "hi",
            "general.name": "tiny"}
    path = save_gguf(tmp_path / "m.gguf", {"w": torch.randn(2, 32)}, metadata=meta)
    fields = gguf.GGUFReader(str(path)).fields
    want = {"a.np_int": ("UINT32", 3), "a.int": ("UINT32", 7), "a.neg": ("INT32", -2),
            "a.big": ("INT64", 2**40), "a.float": ("FLOAT32", 0.5),
            "a.np_float": ("FLOAT32", np.float32(1e-5)), "a.bool": ("BOOL", True), "a.np_bool": ("BOOL", False)}
    for key, (kind, value) in want.items():
        f = fields[key]
        assert f.types[0].name == kind, key
        assert f.parts[f.data[0]][0] == value, key
    name = fields["general.name"]
    assert bytes(name.parts[name.data[0]]).decode() == "tiny"          # metadata's, not the file's stem
    for bad in (None, [1, 2], {"x": 1}):
        with pytest.raises(TypeError, match=r"metadata\['k'\] is a"):
            save_gguf(tmp_path / "x.gguf", {"w": torch.randn(2, 32)}, metadata={"k": bad})
    with pytest.raises(ValueError, match="pass it as arch="):
        save_gguf(tmp_path / "x.gguf", {"w": torch.randn(2, 32)}, metadata={"general.architecture": "llama"})


# ------------------------------------------------------------------ safetensors

def _quantized_mlp():
    from minicomp.calibrate import quantize_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.LayerNorm(32))
    return quantize_model(model, "rtn", bits=4, group_size=32, progress=False)


def test_safetensors_round_trip(tmp_path):
    model = pack_model(_quantized_mlp())
    x = torch.randn(3, 64)
    with torch.no_grad():
        before = model(x)
    path = save_quantized(model, tmp_path / "m.safetensors")
    fresh = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.LayerNorm(32))
    load_quantized(fresh, path)
    assert isinstance(fresh[0], PackedLinear) and isinstance(fresh[2], PackedLinear)
    with torch.no_grad():
        assert torch.equal(fresh(x), before)


def test_safetensors_keeps_symmetric(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 8))
    model[0] = PackedLinear.from_linear(model[0], 4, 32, symmetric=True)
    model[2] = PackedLinear.from_linear(model[2], 4, 16)
    path = save_quantized(model, tmp_path / "m.safetensors")
    fresh = load_quantized(nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 8)), path)
    assert fresh[0].symmetric and not fresh[2].symmetric
    assert fresh[0].quantized_weight().nbytes == model[0].quantized_weight().nbytes


def test_safetensors_packs_quantlinears_on_save(tmp_path):
    model = _quantized_mlp()  # QuantLinear layers, codes one per byte
    x = torch.randn(2, 64)
    with torch.no_grad():
        before = model(x)
    path = save_quantized(model, tmp_path / "m.safetensors")
    fresh = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.LayerNorm(32))
    with torch.no_grad():
        assert torch.allclose(load_quantized(fresh, path)(x), before, atol=1e-5)


def test_safetensors_tiny_gpt_with_tied_weights(tmp_path):
    from minicomp.calibrate import quantize_model
    from minicomp.models import GPTConfig, TinyGPT

    cfg = GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=64)
    model = pack_model(quantize_model(TinyGPT(cfg, seed=0), "rtn", bits=4, group_size=64, progress=False))
    idx = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(idx)[0]
    path = save_quantized(model, tmp_path / "gpt.safetensors")
    fresh = load_quantized(TinyGPT(cfg, seed=1), path)
    assert fresh.lm_head.weight is fresh.transformer.wte.weight  # still tied
    with torch.no_grad():
        assert torch.equal(fresh(idx)[0], before)


def test_load_refuses_a_plain_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a minicomp packed file"):
        load_quantized(nn.Linear(2, 2), tmp_path / "plain.safetensors")
