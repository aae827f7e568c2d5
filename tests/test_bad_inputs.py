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
    ("check_bits: 1 bit", lambda: quant.check_bits(1), "bits"),
    ("check_bits: 16 bits", lambda: quant.check_bits(16), "bits"),
    ("check_bits: float bits", lambda: quant.check_bits(4.5), "bits"),
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
    ("make_observer: unknown kind", lambda: observers.make_observer("median"), "observer"),
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
]


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
