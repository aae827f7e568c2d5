"""A catalogue of bad inputs across the library.

DESIGN.md: bad input raises ValueError or TypeError, and the message names the argument, what
was given and what was expected. Each entry below is (id, call, the argument's name); the test
asserts a ValueError or TypeError whose message contains that name.
"""

import math

import pytest
import torch
from torch import nn

from minicomp import (
    calibrate,
    checks,
    data,
    distill,
    export,
    hardware,
    kernels,
    models,
    observers,
    pack,
    quant,
    rtn,
)

LOGITS = torch.randn(4, 10)
LABELS = torch.tensor([0, 1, 2, 3])
W = torch.randn(8, 64)  # [out, in]


def _qw():
    return rtn.rtn_quantize(W, bits=4, group_size=32)


def _mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


CATALOGUE = [
    # ── distillation: shapes, dtypes, temperatures, NaN ───────────────────────────────────────
    ("soft_targets: logits not a tensor", lambda: distill.soft_targets([[1.0, 2.0]], 2.0), "logits"),
    ("soft_targets: integer logits", lambda: distill.soft_targets(torch.ones(2, 3, dtype=torch.long), 2.0), "logits"),
    ("soft_targets: temperature 0", lambda: distill.soft_targets(LOGITS, 0.0), "temperature"),
    ("soft_targets: negative temperature", lambda: distill.soft_targets(LOGITS, -1.0), "temperature"),
    ("soft_targets: temperature inf", lambda: distill.soft_targets(LOGITS, math.inf), "temperature"),
    ("soft_targets: temperature NaN", lambda: distill.soft_targets(LOGITS, math.nan), "temperature"),
    ("soft_targets: temperature a string", lambda: distill.soft_targets(LOGITS, "4"), "temperature"),
    ("kd_loss: shapes differ", lambda: distill.kd_loss(LOGITS, torch.randn(4, 9)), "teacher_logits"),
    ("distillation_loss: alpha > 1", lambda: distill.distillation_loss(LOGITS, LOGITS, LABELS, alpha=1.5), "alpha"),
    ("distillation_loss: float labels", lambda: distill.distillation_loss(LOGITS, LOGITS, LABELS.float()), "labels"),
    ("distillation_loss: label out of range", lambda: distill.distillation_loss(LOGITS, LOGITS, LABELS + 10), "labels"),
    ("hint_loss: shapes differ", lambda: distill.hint_loss(torch.randn(4, 16), torch.randn(4, 32)), "student_feature"),
    ("Distiller: empty losses", lambda: distill.Distiller(_mlp(), _mlp(), {}), "losses"),
    ("Distiller: lr 0", lambda: distill.Distiller(_mlp(), _mlp(), {"kd": (1.0, distill.KD(4.0))}, lr=0.0), "lr"),
    # ── quantization: bits, group sizes, NaN/Inf, qranges ────────────────────────────────────
    ("check_bits: 1 bit", lambda: checks.check_bits(1), "bits"),
    ("check_bits: 16 bits", lambda: checks.check_bits(16), "bits"),
    ("check_bits: float bits", lambda: checks.check_bits(4.5), "bits"),
    ("compute_qparams: NaN", lambda: quant.compute_qparams(torch.tensor([1.0, math.nan]), 8), "x"),
    ("compute_qparams: Inf", lambda: quant.compute_qparams(torch.tensor([1.0, math.inf]), 8), "x"),
    ("compute_qparams: integer tensor", lambda: quant.compute_qparams(torch.arange(4), 8), "x"),
    ("compute_qparams: bad clip", lambda: quant.compute_qparams(W, 8, clip="max"), "clip"),
    ("quantize: qmin >= qmax", lambda: quant.quantize(W, 0.1, 0, 7, -8), "qmin"),
    ("quantize: zero scale", lambda: quant.quantize(W, 0.0, 0, -8, 7), "scale"),
    ("quantize_dequantize: group_size does not divide", lambda: quant.quantize_dequantize(W, 4, group_size=48), "group_size"),
    ("dequantize: q not a tensor", lambda: quant.dequantize([1, 2], 0.1, 0), "q"),
    ("rtn_quantize: 1-D weight", lambda: rtn.rtn_quantize(torch.randn(64), bits=4), "w"),
    ("rtn_quantize: bits 9", lambda: rtn.rtn_quantize(W, bits=9), "bits"),
    ("rtn_quantize: group_size 100", lambda: rtn.rtn_quantize(W, bits=4, group_size=100), "group_size"),
    ("make_observer: unknown kind", lambda: observers.make_observer("median"), "kind='median'"),
    ("QuantLinear: not a QuantizedWeight", lambda: rtn.QuantLinear(W), "qweight"),
    # ── calibrate.quantize_model ─────────────────────────────────────────────────────────────
    ("quantize_model: unknown method", lambda: calibrate.quantize_model(_mlp(), "magic", progress=False), "method"),
    ("quantize_model: group_size 0", lambda: calibrate.quantize_model(_mlp(), group_size=0, progress=False), "group_size"),
    ("quantize_model: group_size does not divide", lambda: calibrate.quantize_model(_mlp(), group_size=48, progress=False), "group_size"),
    ("quantize_model: empty calibration", lambda: calibrate.quantize_model(_mlp(), bits=8, group_size=-1, act_bits=8, act_mode="static", calibration=[], progress=False), "calibration"),
    ("quantize_model: not a module", lambda: calibrate.quantize_model("model", progress=False), "model"),
    ("quantize_model: bad act_mode", lambda: calibrate.quantize_model(_mlp(), act_mode="always", progress=False), "act_mode"),
    # ── packing and kernels: odd lengths, dtypes, bits ───────────────────────────────────────
    ("pack_int4: odd length", lambda: pack.pack_int4(torch.zeros(3, 7, dtype=torch.uint8)), "q"),
    ("pack_int4: float codes", lambda: pack.pack_int4(torch.zeros(2, 8)), "q"),
    ("pack_int4: code 16", lambda: pack.pack_int4(torch.full((2, 8), 16, dtype=torch.uint8)), "q"),
    ("pack_int2: length not a multiple of 4", lambda: pack.pack_int2(torch.zeros(2, 6, dtype=torch.uint8)), "q"),
    ("pack: 3 bits", lambda: pack.pack(torch.zeros(2, 8, dtype=torch.uint8), 3), "bits"),
    ("unpack_int4: not bytes", lambda: pack.unpack_int4(torch.zeros(2, 4, dtype=torch.int32)), "packed"),
    ("pack_bits_for: 0 bits", lambda: kernels.pack_bits_for(0), "bits"),
    ("PackedLinear.from_linear: not a Linear", lambda: kernels.PackedLinear.from_linear(nn.Conv1d(4, 4, 1)), "linear"),
    ("PackedLinear.from_linear: group_size does not divide", lambda: kernels.PackedLinear.from_linear(nn.Linear(64, 8), group_size=48), "group_size"),
    ("PackedLinear.from_linear: unknown backend", lambda: kernels.PackedLinear.from_linear(nn.Linear(64, 8), group_size=32, backend="cuda"), "backend"),
    ("PackedLinear: wrong input width", lambda: kernels.PackedLinear.from_linear(nn.Linear(64, 8), group_size=32)(torch.randn(2, 63)), "x"),
    ("PackedLinear: integer input", lambda: kernels.PackedLinear.from_linear(nn.Linear(64, 8), group_size=32)(torch.ones(2, 64, dtype=torch.long)), "x"),
    ("PackedLinear.from_quantized: not a QuantizedWeight", lambda: kernels.PackedLinear.from_quantized(W), "qw"),
    # ── export ───────────────────────────────────────────────────────────────────────────────
    ("quantize_q4_0: row not a multiple of 32", lambda: export.quantize_q4_0(torch.randn(4, 48)), "w"),
    ("quantize_q8_0: integer tensor", lambda: export.quantize_q8_0(torch.ones(4, 32, dtype=torch.long)), "w"),
    ("save_gguf: unknown qtype", lambda: export.save_gguf("/tmp/never-written.gguf", {"w": W}, qtype="Q5_K"), "qtype"),
    ("save_gguf: no tensors", lambda: export.save_gguf("/tmp/never-written.gguf", {}), "tensors"),
    ("save_quantized: not a module", lambda: export.save_quantized("model", "/tmp/never-written.safetensors"), "model"),
    # ── hardware ─────────────────────────────────────────────────────────────────────────────
    ("weight_bytes: float bits", lambda: hardware.weight_bytes(1000, 4.0), "bits"),
    ("weight_bytes: negative num_params", lambda: hardware.weight_bytes(-1, 8), "num_params"),
    ("human_bytes: NaN", lambda: hardware.human_bytes(math.nan), "n"),
    ("pick_device: unknown device", lambda: hardware.pick_device("tpu"), "prefer"),
    ("measure: zero repeats", lambda: hardware.measure(lambda: None, repeats=0), "repeats"),
    ("format_machine: not a dict", lambda: hardware.format_machine("a machine"), "desc"),
    # ── data ─────────────────────────────────────────────────────────────────────────────────
    ("load_digits: val_fraction 1.5", lambda: data.load_digits(val_fraction=1.5), "val_fraction"),
    ("load_digits: float seed", lambda: data.load_digits(seed=0.5), "seed"),
    ("batches: batch_size 0", lambda: list(data.batches(torch.zeros(4, 2), torch.zeros(4), batch_size=0)), "batch_size"),
    ("batches: x and y differ in length", lambda: list(data.batches(torch.zeros(4, 2), torch.zeros(3), batch_size=2)), "y"),
    ("text_sentences: unknown split", lambda: data.text_sentences("train"), "split"),
    ("text_sentences: n too large", lambda: data.text_sentences("all", n=10**9), "n"),
    ("as_images: wrong shape", lambda: data.as_images(torch.zeros(4, 65)), "x"),
    # ── models: unknown names and missing files ─────────────────────────────────────────────
    ("load_pretrained: unknown name", lambda: models.load_pretrained("gpt5"), "name"),
    ("load_minilm: missing model path", lambda: models.load_minilm("/no/such/dir/all-MiniLM-L6-v2"), "name_or_path"),
    # ── found by probing every public function (2026-11-30): each raised from deep in torch,
    #    hung, or returned a wrong answer without a word ─────────────────────────────────────────
    ("TinyGPT: 1-D idx", lambda: _gpt()(torch.tensor([1, 2, 3])), "idx[None]"),
    ("TinyGPT: id past the vocabulary", lambda: _gpt()(torch.tensor([[1, 200]])), "vocab_size"),
    ("TinyGPT: float idx", lambda: _gpt()(torch.ones(1, 3)), "idx"),
    ("TinyGPT: no tokens", lambda: _gpt()(torch.zeros(1, 0, dtype=torch.long)), "idx"),
    ("TinyGPT: targets of another shape", lambda: _gpt()(torch.ones(2, 3, dtype=torch.long), torch.ones(6, dtype=torch.long)), "targets"),
    ("TinyGPT.generate: negative max_new_tokens", lambda: _gpt().generate(torch.ones(1, 2, dtype=torch.long), -1), "max_new_tokens"),
    ("TinyGPT.generate: temperature NaN", lambda: _gpt().generate(torch.ones(1, 2, dtype=torch.long), 2, temperature=math.nan), "temperature"),
    ("TinyGPT: n_head 0", lambda: models.TinyGPT(models.GPTConfig(n_head=0)), "n_head"),
    ("MLP: one example without a batch dimension", lambda: models.digits_mlp_student()(torch.randn(64)), "x[None]"),
    ("MLP: wrong width", lambda: models.digits_mlp_student()(torch.randn(5, 63)), "x"),
    ("MLP: hidden an int", lambda: models.MLP(hidden=256), "hidden"),
    ("CNN: wrong width", lambda: models.digits_cnn_student()(torch.randn(5, 63)), "x"),
    ("load_pretrained: device 'gpu'", lambda: models.load_pretrained("tinygpt", device="gpu"), "device"),
    ("load_digits: device 'gpu'", lambda: data.load_digits(device="gpu"), "device"),
    ("QuantLinear: wrong input width", lambda: rtn.QuantLinear.from_linear(nn.Linear(8, 4))(torch.randn(2, 7)), "x"),
    ("QuantLinear: integer input", lambda: rtn.QuantLinear.from_linear(nn.Linear(8, 4))(torch.ones(2, 8, dtype=torch.long)), "x"),
    ("QATLinear: wrong input width", lambda: rtn.QATLinear(8, 4)(torch.randn(2, 7)), "x"),
    ("kd_loss: NaN teacher (was 0.0)", lambda: distill.kd_loss(LOGITS, torch.full((4, 10), math.nan)), "teacher_logits"),
    ("kd_loss: +inf teacher (was 0.0)", lambda: distill.kd_loss(LOGITS, LOGITS.index_fill(1, torch.tensor([0]), math.inf)), "teacher_logits"),
    ("soft_targets: +inf logit (was NaN)", lambda: distill.soft_targets(torch.tensor([[math.inf, 1.0]])), "logits"),
    ("Distiller: student None", lambda: distill.Distiller(None, None, {"ce": (1.0, distill.CE())}), "student"),
    ("Distiller: lr a string", lambda: distill.Distiller(_mlp(), None, {"ce": (1.0, distill.CE())}, lr="1e-3"), "lr"),
    ("Distiller: device 'gpu'", lambda: distill.Distiller(_mlp(), None, {"ce": (1.0, distill.CE())}, device="gpu"), "device"),
    ("Distiller.fit: numpy x", lambda: _distiller().fit(torch.randn(8, 64).numpy(), LABELS.repeat(2), steps=1), "x"),
    ("Distiller.fit: y [N, 1]", lambda: _distiller().fit(torch.randn(8, 64), LABELS.repeat(2)[:, None], steps=1), "y"),
    ("Distiller.fit: x_val and y_val differ", lambda: _distiller().fit(torch.randn(8, 64), LABELS.repeat(2), steps=1, x_val=torch.randn(3, 64), y_val=LABELS), "x_val"),
    ("quantize_model: calibration=(x, y)", lambda: calibrate.quantize_model(_mlp(), "gptq", group_size=32, calibration=(torch.randn(8, 64), LABELS.repeat(2)), progress=False), "calibration"),
    ("quantize_model: NaN calibration, awq", lambda: calibrate.quantize_model(_mlp(), "awq", group_size=32, calibration=torch.full((8, 64), math.nan), progress=False), "inputs"),
    ("inverse_hessian_factor: damp -1 (hung)", lambda: __import__("minicomp.gptq").gptq.inverse_hessian_factor(torch.eye(4), damp=-1), "damp"),
    ("inverse_hessian_factor: not square", lambda: __import__("minicomp.gptq").gptq.inverse_hessian_factor(torch.ones(4, 3)), "H"),
    ("awq_search_scale: n_grid 0", lambda: __import__("minicomp.awq").awq.awq_search_scale(W, torch.ones(64), torch.eye(64), group_size=32, n_grid=0), "n_grid"),
    ("dequantize: non-integer codes (were truncated)", lambda: quant.dequantize(torch.tensor([1.5]), 1.0, 0), "q"),
    ("QuantizedWeight: zero -1 (became 255)", lambda: quant.QuantizedWeight(_qw().codes, _qw().scale, torch.full_like(_qw().zero, -1, dtype=torch.int32), 4, 32), "zero"),
    ("QuantizedWeight: 1-D codes", lambda: quant.QuantizedWeight(torch.zeros(8, dtype=torch.uint8), torch.ones(1, 1), torch.zeros(1, 1), 4, 8), "codes"),
    ("PackedLinear: zero point past 15", lambda: _packed(zeros=200), "zeros"),
    ("PackedLinear: NaN scale", lambda: _packed(scales=math.nan), "scales"),
    ("PackedLinear: perm not a permutation", lambda: _packed(perm=torch.zeros(64, dtype=torch.long)), "perm"),
    ("pack_model: group_size 0", lambda: kernels.pack_model(_mlp(), linear_bits=4, group_size=0), "group_size"),
    ("observer: empty batch", lambda: observers.MinMaxObserver()(torch.zeros(0)), "x"),
    ("MSEObserver: max_samples 0", lambda: observers.MSEObserver(max_samples=0), "max_samples"),
    ("quantize_q8_0: scale past float16", lambda: export.quantize_q8_0(torch.full((1, 32), 1e7)), "float16"),
    ("quantize_q4_0: NaN", lambda: export.quantize_q4_0(torch.full((1, 32), math.nan)), "w"),
    ("qparams_from_range: NaN (zero point was -2**31)", lambda: quant.qparams_from_range(math.nan, 1.0, 8), "lo"),
    ("mse_range: 1-D rows", lambda: quant.mse_range(torch.randn(8), 4), "rows"),
    ("mse_range: grid 0", lambda: quant.mse_range(torch.randn(2, 8), 4, grid=0), "grid"),
    ("kd_loss: numpy temperature is fine, a list is not", lambda: distill.kd_loss(LOGITS, LOGITS, [4.0]), "temperature"),
    ("accuracy: empty x", lambda: models.accuracy(_mlp(), torch.zeros(0, 64), torch.zeros(0)), "x"),
    ("accuracy: batch_size 0", lambda: models.accuracy(_mlp(), torch.zeros(4, 64), LABELS, batch_size=0), "batch_size"),
    ("quantize_model: act_mode static without act_bits", lambda: calibrate.quantize_model(_mlp(), group_size=32, act_mode="static", progress=False), "act_bits"),
    ("quantize_model: unknown observer", lambda: calibrate.quantize_model(_mlp(), group_size=32, observer="foo", progress=False), "observer"),
    ("quantize_model: symmetric 'yes'", lambda: calibrate.quantize_model(_mlp(), group_size=32, symmetric="yes", progress=False), "symmetric"),
    ("Corpus.decode: a float tensor", lambda: data.CharCorpus("abc").decode(torch.tensor([1.5])), "ids"),
    ("Corpus.decode: a list of strings", lambda: data.CharCorpus("abc").decode(["a"]), "ids"),
    ("mean_pool: a mask holding -1", lambda: __import__("minicomp.sentence").sentence.mean_pool(torch.randn(2, 3, 4), torch.tensor([[1, 1, -1], [1, 0, 0]])), "attention_mask"),
    ("nearest_neighbours: NaN", lambda: __import__("minicomp.sentence").sentence.nearest_neighbours(torch.full((3, 4), math.nan)), "emb"),
    ("hint_loss: features swapped", lambda: distill.hint_loss(torch.randn(4, 32), torch.randn(4, 16), nn.Linear(16, 32)), "student_feature"),
    ("rkd_distance_loss: 1-D", lambda: distill.rkd_distance_loss(torch.randn(8), torch.randn(8)), "student_embedding"),
    ("DKD: negative alpha", lambda: distill.DKD(alpha=-1), "alpha"),
    ("dkd_loss: beta NaN", lambda: distill.dkd_loss(LOGITS, LOGITS, LABELS, beta=math.nan), "beta"),
    ("RKD: negative weight", lambda: distill.RKD("hidden", "hidden", distance_weight=-1), "distance_weight"),
    ("Taps: names None", lambda: distill.Taps(_mlp(), None), "names"),
    ("quantize_model: include an int", lambda: calibrate.quantize_model(_mlp(), group_size=32, include=5, progress=False), "include"),
    ("bench.run: sizes one pair, not a list of them", lambda: __import__("minicomp.bench").bench.run(sizes=(64, 64), log=None), "sizes"),
    ("perplexity: a string for the corpus", lambda: models.perplexity(_gpt(), "some text"), "corpus"),
    ("QuantLinear: negative act_scale", lambda: rtn.QuantLinear(_qw(), act_bits=8, act_scale=-0.1, act_zero=0), "act_scale"),
    ("QuantLinear: act_zero 0.5", lambda: rtn.QuantLinear(_qw(), act_bits=8, act_scale=0.1, act_zero=0.5), "act_zero"),
    ("compute_qparams: axis a string", lambda: quant.compute_qparams(W, 8, axis="0"), "axis"),
    ("save_gguf: a list in metadata", lambda: export.save_gguf("/tmp/never-written.gguf", {"w": W}, metadata={"k": [1.5]}), "metadata"),
]


def _gpt():
    return models.TinyGPT(models.GPTConfig(vocab_size=96, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=0)


def _distiller():
    return distill.Distiller(models.digits_mlp_student(), models.digits_mlp_teacher(),
                             {"kd": (1.0, distill.KD(4.0))}, progress=False)


def _packed(zeros=None, scales=None, perm=None):
    p = kernels.PackedLinear.from_linear(nn.Linear(64, 8), group_size=32)
    z = p.zeros if zeros is None else torch.full_like(p.zeros, zeros)
    s = p.scales if scales is None else torch.full_like(p.scales, scales)
    return kernels.PackedLinear(p.qweight, s, z, in_features=64, bits=4, group_size=32, perm=perm)


def test_the_catalogue_is_big_enough():
    assert len(CATALOGUE) >= 30
    assert len({entry[0] for entry in CATALOGUE}) == len(CATALOGUE)  # unique ids


@pytest.mark.parametrize("call, argument", [e[1:] for e in CATALOGUE], ids=[e[0] for e in CATALOGUE])
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert argument in message, f"{type(info.value).__name__}: {message!r} does not name {argument!r}"


@pytest.mark.parametrize("missing", ["json", "safetensors"])
def test_missing_shipped_model_file(tmp_path, monkeypatch, missing):
    """A shipped model whose file is missing: a ValueError (and FileNotFoundError) naming it."""
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path)
    if missing == "safetensors":
        (tmp_path / "tinygpt.json").write_text('{"arch": "TinyGPT", "config": {}}')
    with pytest.raises(ValueError, match=rf"name='tinygpt': .*tinygpt\.{missing} is missing") as info:
        models.load_pretrained("tinygpt")
    assert isinstance(info.value, FileNotFoundError)  # what callers caught before still works


def test_a_model_error_during_calibration_says_which_batch():
    """The model's own error, with a note naming the calibration batch and how batches are fed."""
    with pytest.raises(ValueError, match="x has shape") as info:
        calibrate.quantize_model(models.digits_mlp_student(), "gptq", group_size=32,
                                 calibration=[torch.randn(4, 64), torch.randn(4, 7)], progress=False)
    notes = " ".join(getattr(info.value, "__notes__", []))
    if hasattr(info.value, "add_note"):  # Python 3.11+
        assert "calibration batch" in notes and "tensor [4, 7]" in notes


def test_load_quantized_into_another_architecture_names_the_layer(tmp_path):
    """It used to swap in a packed layer of the file's shape without a word (or add a new child)."""
    m = calibrate.quantize_model(models.digits_mlp_student(), "rtn", group_size=32, pack=True, progress=False)
    path = export.save_quantized(m, tmp_path / "m.safetensors")
    for other in (models.MLP(64, (64,), 10), nn.Sequential(nn.Linear(64, 32))):
        with pytest.raises(ValueError, match="'hidden.fc1' as 64→32"):
            export.load_quantized(other, path)
    assert isinstance(export.load_quantized(models.digits_mlp_student(), path).hidden.fc1, kernels.PackedLinear)


def test_one_method_or_bit_width_may_be_given_alone():
    """methods='rtn' once ran methods 'r', 't', 'n'; a single value now means that one."""
    from minicomp.pipeline import quantize_variants

    variants = quantize_variants(_mlp(), None, methods="rtn", bits=4, group_size=32, progress=False)
    assert list(variants) == ["RTN INT4"]


def test_calibration_helpers_refuse_what_they_would_silently_get_wrong():
    """From an audit of the library: each of these ran without a word and did the wrong thing."""
    from minicomp.calibrate import capture_inputs, observe_inputs, run_batches, set_module

    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="name='5' is not a submodule"):   # added a module nothing calls
        set_module(m, "5", nn.Identity())
    with pytest.raises(ValueError, match="did you mean '2'"):
        set_module(m, "2.", nn.Identity())
    assert [n for n, _ in m.named_children()] == ["0", "1", "2"]
    set_module(m, "1", nn.Identity())
    assert isinstance(m[1], nn.Identity)
    with pytest.raises(ValueError, match="layer is not a module of model"):   # returned []
        capture_inputs(m, nn.Linear(4, 4), [torch.randn(2, 4)])
    with pytest.raises(TypeError, match="stop_early='no' must be True or False"):   # counted as True
        capture_inputs(m, m[0], [torch.randn(2, 4)], stop_early="no")
    with pytest.raises(TypeError, match=r"batches must be a list of batches.*\[batch\]"):   # one batch per row
        run_batches(m, torch.randn(3, 4))
    obs = observe_inputs(m, {"0": m[0]}, [torch.randn(8, 4)], observer="percentile", percentile=90.0)
    assert obs["0"].percentile == 90.0


def test_quantize_model_passes_observer_options_and_prepare_qat_changes_all_or_nothing():
    from minicomp.calibrate import quantize_model
    from minicomp.rtn import QATLinear, prepare_qat

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    x = [torch.randn(16, 8)]
    quantize_model(m, "rtn", bits=8, group_size=-1, act_bits=8, act_mode="static", calibration=x,
                   observer="percentile", observer_options={"percentile": 99.0}, progress=False)
    # was: rtn_quantize() got an unexpected keyword argument 'percentile' (through **options)
    with pytest.raises(TypeError, match="observer_options must be a dict"):
        quantize_model(nn.Sequential(nn.Linear(8, 8)), act_bits=8, act_mode="static", calibration=x,
                       observer_options=99.0, progress=False)
    m = nn.Sequential(nn.Linear(8, 8), nn.Linear(6, 4))
    with pytest.raises(ValueError):
        prepare_qat(m, group_size=4)            # divides 8, not 6
    assert not any(isinstance(layer, QATLinear) for layer in m)   # was: the first layer swapped


def test_dequantize_weight_checks_perm_and_losses_check_devices():
    from minicomp.distill import hint_loss, rkd_distance_loss
    from minicomp.quant import dequantize_weight

    codes, scale, zero = torch.randint(0, 16, (4, 8)), torch.ones(4, 1), torch.full((4, 1), 8)
    with pytest.raises(ValueError, match=r"perm must be .* shape \[8\]"):   # was a [4, 3] weight
        dequantize_weight(codes, scale, zero, -1, perm=torch.tensor([2, 0, 1]))
    with pytest.raises(ValueError, match="perm must be"):
        dequantize_weight(codes, scale, zero, -1, perm=torch.rand(8))
    assert dequantize_weight(codes, scale, zero, -1, perm=torch.arange(8)).shape == (4, 8)
    s, t = torch.randn(4, 3), torch.randn(4, 3, device="meta")
    with pytest.raises(ValueError, match="student_feature is on cpu but teacher_feature is on meta"):
        hint_loss(s, t)
    with pytest.raises(ValueError, match="student_embedding is on cpu but teacher_embedding is on meta"):
        rkd_distance_loss(s, t)


def test_dequantize_packed_wants_integer_zeros_and_float_scales():
    from minicomp.kernels.reference import dequantize_packed
    from minicomp.pack import pack_int4

    qweight = pack_int4(torch.randint(0, 16, (2, 8), dtype=torch.uint8))
    ones, eights = torch.ones(2, 1), torch.full((2, 1), 8, dtype=torch.uint8)
    with pytest.raises(TypeError, match="zeros must be an integer tensor"):   # 0.5 gave a shifted weight
        dequantize_packed(qweight, ones, torch.full((2, 1), 0.5), pack_bits=4, group_size=-1)
    with pytest.raises(TypeError, match="scales must be a floating-point tensor"):
        dequantize_packed(qweight, eights, eights, pack_bits=4, group_size=-1)
    assert dequantize_packed(qweight, ones, eights, pack_bits=4, group_size=-1).shape == (2, 8)


def test_tinygpt_data_batches_and_accuracy_check_devices():
    """A tensor left on another device (meta stands for a GPU here) gave torch's raw error."""
    from minicomp.data import batches
    from minicomp.models import GPTConfig, TinyGPT

    gpt = TinyGPT(GPTConfig(n_layer=1), seed=0)
    with pytest.raises(ValueError, match=r"idx is on meta but the model is on cpu; move it: idx.to\('cpu'\)"):
        gpt(torch.zeros(1, 4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match="x is on cpu but y is on meta"):
        list(batches(torch.zeros(4, 2), torch.zeros(4, device="meta"), 2))


def test_an_observer_option_it_does_not_take_is_named_with_those_it_does():
    from minicomp.observers import make_observer

    with pytest.raises(TypeError, match="the 'minmax' observer takes no option 'percentile'; its options: none"):
        make_observer("minmax", 8, False, percentile=99.0)   # was Observer.__init__() got an unexpected keyword
    with pytest.raises(TypeError, match="its options: percentile"):
        make_observer("percentile", 8, False, pct=99.0)
    assert make_observer("moving_average", 8, False, averaging_constant=0.1).c == 0.1


def test_nested_linears_single_layer_models_and_generators_in_calibration():
    """From a review of the checks above: each case they made fail, or fail confusingly."""
    from minicomp.calibrate import find_linears, quantize_model, run_batches, set_module
    from minicomp.quant import dequantize_weight
    from minicomp.rtn import QATLinear, prepare_qat

    class LoRA(nn.Linear):   # a linear layer holding another one
        def __init__(self):
            super().__init__(8, 8)
            self.a = nn.Linear(8, 8, bias=False)

    m = nn.Sequential(LoRA(), nn.Linear(8, 4))
    assert list(find_linears(m)) == ["0", "1"]       # 0.a goes with its parent
    prepare_qat(m, group_size=-1)                    # was: name '0.a' is not a submodule, half converted
    assert all(isinstance(layer, QATLinear) for layer in m)
    with pytest.raises(ValueError, match="name='' is the model itself"):
        set_module(m, "", nn.Identity())

    def boom(model, batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):   # was: 'generator' has no len()
        run_batches(nn.Linear(2, 2), (torch.randn(1, 2) for _ in range(2)), boom)
    with pytest.raises(ValueError, match="observer_options are for the activation observer"):
        quantize_model(nn.Sequential(nn.Linear(8, 8)), observer_options={"percentile": 99.0}, progress=False)
    with pytest.raises(TypeError, match="takes no option 'pct'"):   # before any weight is quantized
        quantize_model(nn.Sequential(nn.Linear(8, 8)), bits=8, group_size=-1, act_bits=8, act_mode="static",
                       calibration=[torch.randn(4, 8)], observer="percentile", observer_options={"pct": 9},
                       progress=False)
    with pytest.raises(TypeError, match="perm must be None or an integer tensor"):
        dequantize_weight(torch.zeros(2, 4, dtype=torch.uint8), torch.ones(2, 1), torch.zeros(2, 1), -1,
                          perm=[0, 1, 2, 3])
