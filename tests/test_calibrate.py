"""minicomp.calibrate: picking layers, hooks, the sequential driver and quantize_model."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minicomp.calibrate import (
    METHODS,
    capture_inputs,
    find_linears,
    get_method,
    observe_inputs,
    quantize_model,
    register_method,
    storage_bytes,
)
from minicomp.models import GPTConfig, TinyGPT
from minicomp.quant import compute_qparams
from minicomp.rtn import QuantLinear, rtn_quantize


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))


def _gpt():
    return TinyGPT(GPTConfig(vocab_size=96, block_size=16, n_layer=2, n_head=2, n_embd=32), seed=0)


def _batches(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(10, 8, generator=g) for _ in range(n)]


def test_find_linears_in_order_with_filters_and_tied_weights():
    gpt = _gpt()
    names = list(find_linears(gpt))
    assert names[:4] == ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
                         "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"]
    assert "lm_head" not in names  # tied to the token embedding
    assert len(names) == 8
    assert list(find_linears(gpt, include="lm_head")) == ["lm_head"]
    assert all(".mlp." in n for n in find_linears(gpt, include="*.mlp.*"))
    assert not any(".attn." in n for n in find_linears(gpt, skip=["*.attn.*"]))
    assert list(find_linears(gpt, include=lambda n, m: m.weight is gpt.transformer.wte.weight)) == ["lm_head"]


def test_quantize_model_rtn_swaps_linears_in_place():
    model = _mlp()
    x = torch.randn(5, 8)
    ref = model(x)
    w0 = model[0].weight.detach().clone()
    out = quantize_model(model, bits=8, group_size=-1, progress=False)
    assert out is model
    assert all(isinstance(model[i], QuantLinear) for i in (0, 2, 4))
    assert torch.equal(model[0].codes, rtn_quantize(w0, 8, -1).codes)
    assert torch.allclose(model(x), ref, atol=0.02)


def test_quantize_model_on_tinygpt_keeps_the_tied_head():
    gpt = _gpt()
    idx = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(0))
    ref = gpt(idx)[0]
    quantize_model(gpt, bits=8, group_size=32, progress=False)
    assert isinstance(gpt.transformer.h[1].mlp.c_proj, QuantLinear)
    assert gpt.transformer.h[1].mlp.c_proj.group_size == 32
    assert isinstance(gpt.lm_head, nn.Linear) and gpt.lm_head.weight is gpt.transformer.wte.weight
    assert torch.allclose(gpt(idx)[0], ref, atol=0.05)


def test_bad_group_size_names_the_layer_and_changes_nothing():
    model = _mlp()
    with pytest.raises(ValueError, match=r"group_size=16 must divide in_features=8 of layer '0'"):
        quantize_model(model, bits=4, group_size=16, progress=False)
    assert not any(isinstance(m, QuantLinear) for m in model.modules())
    with pytest.raises(ValueError, match="group_size=0"):
        quantize_model(model, group_size=0)
    with pytest.raises(ValueError, match="bits=9"):
        quantize_model(model, bits=9)
    with pytest.raises(ValueError, match="method='nonexistent'"):
        quantize_model(model, method="nonexistent")
    with pytest.raises(ValueError, match="no nn.Linear layers"):
        quantize_model(model, include="nothing*", group_size=-1)
    with pytest.raises(ValueError, match="needs calibration"):
        quantize_model(model, group_size=-1, act_bits=8, act_mode="static")
    with pytest.raises(ValueError, match="single nn.Linear"):
        quantize_model(nn.Linear(8, 4), group_size=-1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        find_linears("not a model")


def test_capture_inputs_records_layer_inputs_and_stops_early():
    model = _mlp()
    batches = _batches()
    calls = []
    h = model[4].register_forward_hook(lambda m, i, o: calls.append(1))
    got = capture_inputs(model, model[2], batches)
    h.remove()
    assert calls == []  # the forward pass stopped at model[2]; the last layer never ran
    expected = [F.relu(model[0](b)).detach() for b in batches]
    assert len(got) == 3 and all(torch.allclose(a, e) for a, e in zip(got, expected))
    got_3d = capture_inputs(model, model[0], [torch.randn(2, 5, 8)])
    assert got_3d[0].shape == (10, 8)  # [batch, tokens, in] -> [tokens, in]


def test_sequential_driver_feeds_each_layer_the_quantized_model_so_far():
    seen = {}

    @register_method("_record", needs_calibration=True)
    def record(layer, inputs, *, bits, group_size, symmetric, **options):
        seen[id(layer)] = torch.cat(inputs)
        return rtn_quantize(layer.weight, bits, group_size, symmetric)

    try:
        model = _mlp()
        first = model[2]
        batches = _batches()
        float_inputs = torch.cat([F.relu(model[0](b)) for b in batches]).detach()
        quantize_model(model, "_record", bits=2, group_size=-1, calibration=batches, progress=False)
        quantized_inputs = torch.cat([F.relu(model[0](b)) for b in batches]).detach()  # model[0] is now 2-bit
        assert torch.allclose(seen[id(first)], quantized_inputs)
        assert not torch.allclose(seen[id(first)], float_inputs)
        assert get_method("_record").needs_calibration
        with pytest.raises(ValueError, match="needs calibration"):
            quantize_model(_mlp(), "_record", group_size=-1)
    finally:
        METHODS.pop("_record")


def test_layers_never_reached_by_calibration_stay_float():
    @register_method("_needs_data", needs_calibration=True)
    def needs_data(layer, inputs, *, bits, group_size, symmetric, **options):
        return rtn_quantize(layer.weight, bits, group_size, symmetric)

    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(8, 4), nn.Linear(8, 4)

        def forward(self, x):
            return self.used(x)

    try:
        model = quantize_model(WithUnused(), "_needs_data", group_size=-1, calibration=_batches(), progress=False)
        assert isinstance(model.used, QuantLinear) and type(model.unused) is nn.Linear
    finally:
        METHODS.pop("_needs_data")


def test_static_w8a8_takes_ranges_from_an_observer():
    model = _mlp()
    batches = _batches()
    first_inputs = torch.cat(batches)
    quantize_model(model, bits=8, group_size=-1, act_bits=8, act_mode="static", calibration=batches,
                   progress=False)
    s, z = compute_qparams(first_inputs, 8)
    assert model[0].act_mode == "static"
    assert torch.allclose(model[0].act_scale, s) and model[0].act_zero == z
    dyn = quantize_model(_mlp(), bits=8, group_size=-1, act_bits=8, progress=False)
    assert dyn[0].act_mode == "dynamic"


def test_observe_inputs_with_every_observer_kind():
    model = _mlp()
    layers = find_linears(model)
    for kind in ("minmax", "moving_average", "percentile", "mse"):
        observers = observe_inputs(model, layers, _batches(), observer=kind, bits=8)
        assert set(observers) == set(layers) and all(o.batches == 3 for o in observers.values())
        lo, hi = observers["0"].range()
        data = torch.cat(_batches())
        assert data.min() - 1e-6 <= lo <= 0 <= hi <= data.max() + 1e-6


def test_default_forward_handles_tuples_dicts_and_custom_forward():
    model = _mlp()
    pairs = [(b, torch.zeros(len(b), dtype=torch.long)) for b in _batches()]  # (inputs, labels)
    assert len(capture_inputs(model, model[0], pairs)) == 3
    assert len(capture_inputs(model, model[0], [{"input": b} for b in _batches()],
                              forward=lambda m, b: m(b["input"]))) == 3
    with pytest.raises(TypeError, match="forward="):
        capture_inputs(model, model[0], [["some", "strings"]])


def test_storage_bytes_by_hand():
    model = nn.Sequential(nn.Linear(64, 16), nn.LayerNorm(16))
    quantize_model(model, bits=4, group_size=32, progress=False)
    # codes 16*64*4/8 = 512, scales 16*2 float32 = 128, zeros 32 * 4 bits = 16, bias 16*4 = 64
    # LayerNorm weight + bias: 2 * 16 * 4 = 128
    assert storage_bytes(model) == {"quantized": 512 + 128 + 16 + 64, "float": 128, "total": 848}


def test_storage_bytes_counts_every_buffer_of_a_quantized_layer():
    from minicomp.awq import AWQLinear

    model = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 8))
    batches = [torch.randn(16, 64, generator=torch.Generator().manual_seed(0))]
    quantize_model(model, "awq", bits=4, group_size=32, calibration=batches, progress=False, fold=False)
    layers = [model[0], model[2]]
    assert all(isinstance(layer, AWQLinear) for layer in layers)
    # each layer: packed weight + float32 bias [out] + float32 input_scale [in]
    expected = sum(layer.qweight.nbytes + 4 * layer.out_features + 4 * layer.in_features for layer in layers)
    assert storage_bytes(model) == {"quantized": expected, "float": 0, "total": expected}

    model = _mlp()
    quantize_model(model, bits=8, group_size=-1, act_bits=8, act_mode="static", calibration=_batches(),
                   progress=False)
    layers = [m for m in model if isinstance(m, QuantLinear)]
    # static W8A8: + act_scale (float32) and act_zero (int32), 4 bytes each
    expected = sum(layer.qweight.nbytes + 4 * layer.out_features + 4 + 4 for layer in layers)
    assert storage_bytes(model)["quantized"] == expected


def test_quantize_model_on_minilm_keeps_embeddings_close():
    from minicomp.models import load_minilm

    st = load_minilm()
    sentences = ["Quantization stores weights in fewer bits.", "The cat sat on the mat."]
    ref = st.encode(sentences, convert_to_tensor=True)
    query = next(m for n, m in find_linears(st).items() if n.endswith("layer.2.attention.self.query"))
    got = capture_inputs(st, query, [sentences], forward=lambda m, b: m.encode(b, batch_size=len(b)))
    assert len(got) == 1 and got[0].shape[1] == 384  # [tokens, 384], stopped early inside encode()
    assert torch.allclose(st.encode(sentences, convert_to_tensor=True), ref)  # the model still works
    quantize_model(st, bits=8, group_size=-1, progress=False)
    got = st.encode(sentences, convert_to_tensor=True)
    assert sum(isinstance(m, QuantLinear) for m in st.modules()) >= 36  # 6 layers x (q, k, v, o, up, down)
    assert F.cosine_similarity(ref, got).min() > 0.99


def test_quantize_model_pack_runs_on_packed_kernels():
    """pack=True swaps in PackedLinear; the packed model computes what the QuantLinear model does."""
    import copy

    from minicomp.calibrate import quantize_model, storage_bytes
    from minicomp.kernels import PackedLinear

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 16))
    x = torch.randn(3, 256)
    plain = quantize_model(copy.deepcopy(model), bits=4, group_size=128, progress=False)
    packed = quantize_model(copy.deepcopy(model), bits=4, group_size=128, progress=False, pack=True)
    assert sum(isinstance(m, PackedLinear) for m in packed.modules()) == 2
    assert not any(isinstance(m, nn.Linear) for m in packed.modules())
    with torch.no_grad():
        torch.testing.assert_close(packed(x), plain(x), atol=1e-3, rtol=1e-3)
    fp32 = sum(p.numel() * 4 for p in model.parameters())
    assert storage_bytes(packed)["total"] * 5 < fp32
    with pytest.raises(ValueError, match="act_bits"):
        quantize_model(copy.deepcopy(model), bits=4, pack=True, act_bits=8, progress=False)


# ── block by block (minicomp.blockwise) ─────────────────────────────────────────────────────


def _gpt_batches(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 96, (2, 16), generator=g) for _ in range(n)]


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_block_by_block_gives_the_same_model_as_running_the_whole_model(method):
    from minicomp.blockwise import block_inputs, find_blocks

    model, batches = _gpt(), _gpt_batches()
    blocks, per_block = find_blocks(model, list(find_linears(model)))
    assert blocks == list(model.transformer.h) and all(len(names) == 4 for names in per_block)
    assert block_inputs(model, blocks, batches) is not None  # chained: the fast path runs
    fast = quantize_model(_gpt(), method, bits=3, group_size=16, calibration=batches, progress=False)
    slow = quantize_model(_gpt(), method, bits=3, group_size=16, calibration=batches, progress=False, by_block=False)
    a, b = fast.state_dict(), slow.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Scaled(nn.Module):
    """Blocks that are not chained: the model doubles the hidden states between them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)) for _ in range(3))

    def forward(self, x):
        for block in self.blocks:
            x = 2 * block(x)
        return x


def test_unchained_blocks_fall_back_to_the_whole_model():
    from minicomp.blockwise import Blockwise

    batches = [torch.randn(4, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    model = _Scaled()
    flow = Blockwise(model, list(find_linears(model)), batches)
    assert flow.source("blocks.1.0")[0] is model and not flow.chained
    fast = quantize_model(_Scaled(), "gptq", bits=3, group_size=-1, calibration=batches, progress=False)
    slow = quantize_model(_Scaled(), "gptq", bits=3, group_size=-1, calibration=batches, progress=False,
                          by_block=False)
    assert all(torch.equal(fast.state_dict()[k], v) for k, v in slow.state_dict().items())
    with pytest.raises(TypeError, match="by_block="):
        quantize_model(_Scaled(), "gptq", calibration=batches, by_block="yes")



class _Block(nn.Module):
    """A residual block, written in place (x += f(x)) or not (x = x + f(x)).

    after="block": x += fc2(relu(fc1(x))), return x   (the block changes its own input)
    after="fc1":   x += fc1(x), return relu(fc2(x))   (fc1's input changes after fc1 has run)
    """

    def __init__(self, in_place: bool, after: str):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 16), nn.Linear(16, 16)
        self.in_place, self.after = in_place, after

    def _add(self, x, y):
        if not self.in_place:
            return x + y
        x += y
        return x

    def forward(self, x):
        if self.after == "block":
            return self._add(x, self.fc2(F.relu(self.fc1(x))))
        return F.relu(self.fc2(self._add(x, self.fc1(x))))


class _Residual(nn.Module):
    def __init__(self, in_place: bool, after: str):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(8, 16)
        self.blocks = nn.ModuleList(_Block(in_place, after) for _ in range(3))

    def forward(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return h


@pytest.mark.parametrize("after", ["block", "fc1"])
def test_blocks_that_change_their_input_in_place(after):
    from minicomp.blockwise import block_inputs

    batches = [torch.randn(12, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    model = _Residual(in_place=True, after=after)
    cached = block_inputs(model, list(model.blocks), batches)  # copies, not the tensors block 0 changed
    assert all(torch.equal(args[0], model.embed(b)) for (args, _), b in zip(cached, batches))
    # every layer calibrated on its true inputs: the same model as with out-of-place residuals
    expected = quantize_model(_Residual(False, after), "gptq", bits=3, group_size=-1, calibration=batches,
                              progress=False).state_dict()
    for by_block in (True, False):
        got = quantize_model(_Residual(True, after), "gptq", bits=3, group_size=-1, calibration=batches,
                             progress=False, by_block=by_block).state_dict()
        assert all(torch.equal(got[k], v) for k, v in expected.items()), f"by_block={by_block}"


def test_calibration_batches_made_in_inference_mode():
    # such tensors keep no count of in-place changes (x._version), which the capture looks at
    with torch.inference_mode():
        batches = [torch.randn(12, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    expected = quantize_model(_mlp(), "gptq", bits=4, group_size=-1, calibration=[b.clone() for b in batches],
                              progress=False).state_dict()
    got = quantize_model(_mlp(), "gptq", bits=4, group_size=-1, calibration=batches, progress=False).state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())


def test_storage_bytes_counts_shared_memory_once():
    """Two Parameter objects over the same memory (a tie made with .data) were counted twice: 320."""
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = nn.Parameter(model[0].weight.data)
    assert storage_bytes(model) == {"quantized": 0, "float": 10 * 4 * 4, "total": 160}


def test_observe_inputs_names_its_observer_argument():
    from minicomp.calibrate import observe_inputs

    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="observer='pct' is not one of"):
        observe_inputs(model, {"0": model[0]}, [torch.randn(2, 4)], observer="pct")
