"""Regression tests from a bad-input sweep of the quantization library.

Each argument of each public function of quant, rtn, observers, pack, gptq, awq, blockwise and
calibrate was replaced, one at a time, by None, a string, a bool, 0, -1, NaN, a list, a numpy
array, a tensor of the wrong shape, dtype or device, ... Every test below is one defect that
sweep found: the comment says what happened before. (tests/test_bad_inputs.py holds the rest.)
"""

import numpy as np
import pytest
import torch
from torch import nn

from minicomp import awq, calibrate, gptq, observers, pack, quant, rtn

W = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))  # [out, in]
X = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))  # [tokens, in]


def _mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


# ── quant ───────────────────────────────────────────────────────────────────────────────────


def test_group_len_of_a_list():
    """was AttributeError: 'list' object has no attribute 'dim'"""
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        quant.group_len(W.tolist(), 32)


@pytest.mark.parametrize("arg", ["scale", "zero_point"])
@pytest.mark.parametrize("bad", [None, "0.1"])
def test_quantize_scale_or_zero_point_none_or_a_string(arg, bad):
    """was RuntimeError: Could not infer dtype of NoneType / TypeError: new(): invalid data type 'str'"""
    kwargs = {"scale": 0.1, "zero_point": 0, arg: bad}
    with pytest.raises(TypeError, match=f"{arg}=.* must be a number or a tensor"):
        quant.quantize(W, qmin=-8, qmax=7, **kwargs)
    with pytest.raises(TypeError, match=arg):
        quant.dequantize(torch.zeros(3, dtype=torch.int32), **kwargs)


def test_qparams_from_range_none():
    """was RuntimeError: Could not infer dtype of NoneType"""
    with pytest.raises(TypeError, match="lo=None must be a number or a tensor"):
        quant.qparams_from_range(None, 1.0, 8)
    with pytest.raises(TypeError, match="hi='1'"):
        quant.qparams_from_range(-1.0, "1", 8)


@pytest.mark.parametrize("bad", [None, "0.8", False])
def test_mse_range_maxshrink_not_a_number(bad):
    """None or a str: was TypeError "'<=' not supported between instances of 'int' and 'NoneType'";
    False was taken as 0"""
    with pytest.raises(ValueError, match=r"maxshrink=.* must be a number in \[0, 1\)"):
        quant.mse_range(W, 4, maxshrink=bad)


@pytest.mark.parametrize("call", [
    lambda: quant.compute_qparams(W, 4, "no", group_size=32),
    lambda: quant.quantize_dequantize(W, 4, symmetric=None),
    lambda: quant.qrange(4, "False"),
    lambda: rtn.rtn_quantize(W, 4, 32, symmetric="no"),
    lambda: rtn.QATLinear(64, 8, symmetric="no"),
    lambda: observers.MinMaxObserver(8, symmetric="False"),
    lambda: quant.QuantizedWeight(*_qw_fields(), symmetric=None),
])
def test_symmetric_must_be_a_bool(call):
    """was taken by truth value without a word: symmetric="no" or "False" gave symmetric codes"""
    with pytest.raises(TypeError, match="symmetric=.* must be True or False"):
        call()


def _qw_fields():
    qw = rtn.rtn_quantize(W, 4, 32)
    return qw.codes, qw.scale, qw.zero, 4, 32


def test_a_numpy_bool_is_a_bool():
    assert quant.qrange(4, np.bool_(True)) == (-8, 7)


def test_dequantize_weight_group_size_0():
    """was ZeroDivisionError: integer division or modulo by zero"""
    qw = rtn.rtn_quantize(W, 4, 32)
    with pytest.raises(ValueError, match="group_size=0 must divide in_features=64"):
        quant.dequantize_weight(qw.codes, qw.scale, qw.zero, 0)


def test_dequantize_weight_group_size_minus_1_means_one_group_per_row():
    """was RuntimeError: invalid shape dimension -64; -1 means one group per row everywhere else"""
    qw = rtn.rtn_quantize(W, 4, -1)
    torch.testing.assert_close(quant.dequantize_weight(qw.codes, qw.scale, qw.zero, -1), qw.dequantize())


def test_dequantize_weight_scale_of_another_shape():
    """was RuntimeError: The size of tensor a (8) must match the size of tensor b (4)"""
    qw = rtn.rtn_quantize(W, 4, 32)
    with pytest.raises(ValueError, match=r"scale and zero must have shape \[out, in / group_size\] = \[8, 2\]"):
        quant.dequantize_weight(qw.codes, qw.scale[:4], qw.zero, 32)
    with pytest.raises(TypeError, match="zero must be a torch.Tensor"):
        quant.dequantize_weight(qw.codes, qw.scale, qw.zero.tolist(), 32)


@pytest.mark.parametrize("bad", ["float16", True, 0])
def test_quantized_weight_dequantize_dtype(bad):
    """'float16' and 0: was a RuntimeError from Tensor.to (read as device names); True gave a bool tensor"""
    with pytest.raises(TypeError, match="dtype=.* must be a floating-point torch.dtype"):
        rtn.rtn_quantize(W, 4, 32).dequantize(bad)


def test_quantized_weight_to_a_bad_device():
    """'gpu': was RuntimeError: Expected one of cpu, cuda, ...; True: TypeError 'scale must hold floats'
    (Tensor.to(True) had turned every tensor into bools)"""
    qw = rtn.rtn_quantize(W, 4, 32)
    with pytest.raises(ValueError, match="device='gpu' is not a device name"):
        qw.to("gpu")
    with pytest.raises(TypeError, match="device=True must be a str or torch.device"):
        qw.to(True)
    assert qw.to("cpu").codes.device.type == "cpu"


# ── rtn ─────────────────────────────────────────────────────────────────────────────────────


def test_rtn_quantize_empty_weight_names_w():
    """was ValueError naming x, an argument rtn_quantize does not have"""
    with pytest.raises(ValueError, match=r"w has shape \(0, 64\)"):
        rtn.rtn_quantize(torch.zeros(0, 64), 4)


@pytest.mark.parametrize("bias", [[0.0] * 8, np.zeros(8, dtype=np.float32), 0.0])
def test_quant_linear_bias_not_a_tensor(bias):
    """was AttributeError: 'list' object has no attribute 'shape' ('numpy.ndarray' ... 'detach')"""
    with pytest.raises(TypeError, match=r"bias must be a torch.Tensor \[8\] or None"):
        rtn.QuantLinear(rtn.rtn_quantize(W, 4, 32), bias)


def test_quant_linear_act_bits_is_named():
    """was "bits=16 must be an int from 2 to 8", naming the weights' bits (which were fine)"""
    with pytest.raises(ValueError, match="act_bits=16 must be an int from 2 to 8"):
        rtn.QuantLinear(rtn.rtn_quantize(W, 4, 32), act_bits=16)
    with pytest.raises(ValueError, match="act_bits=16"):
        calibrate.quantize_model(_mlp(), group_size=32, act_bits=16, progress=False)


def test_quant_linear_act_scale_a_string():
    """was TypeError: new(): invalid data type 'str'"""
    with pytest.raises(TypeError, match="act_scale='0.1' must be a number or a tensor"):
        rtn.QuantLinear(rtn.rtn_quantize(W, 4, 32), act_bits=8, act_scale="0.1", act_zero=0)


@pytest.mark.parametrize("cls", [rtn.QuantLinear, rtn.QATLinear])
@pytest.mark.parametrize("bad", [None, nn.Conv1d(4, 4, 1), W])
def test_from_linear_not_a_linear(cls, bad):
    """was AttributeError: 'NoneType' object has no attribute 'weight' (or 'in_features')"""
    with pytest.raises(TypeError, match="linear must be an nn.Linear"):
        cls.from_linear(bad)


def test_qat_linear_given_a_linear():
    """was TypeError: empty(): argument 'size' failed to unpack the object at pos 2 ..."""
    with pytest.raises(TypeError, match=r"in_features must be a positive int, got Linear; .*QATLinear.from_linear"):
        rtn.QATLinear(nn.Linear(64, 8), 8)


def test_qat_linear_negative_size():
    """was RuntimeError: Trying to create tensor with negative dimension -1: [8, -1]"""
    with pytest.raises(ValueError, match="in_features=-1 must be a positive int"):
        rtn.QATLinear(-1, 8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_qat_linear_float64_input_computes_like_quant_linear(dtype):
    """was RuntimeError: mat1 and mat2 must have the same dtype, but got Double and Float
    (QuantLinear, what convert_qat makes of it, takes any float dtype)"""
    layer = rtn.QATLinear(64, 8, group_size=32)
    x = torch.randn(3, 64)
    y = layer(x.to(dtype))
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), layer(x), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("make", [
    lambda: rtn.QuantLinear.from_linear(nn.Linear(64, 8), 4, 32),
    lambda: rtn.QuantLinear.from_linear(nn.Linear(64, 8), 4, 32, act_bits=8),
    lambda: rtn.QATLinear(64, 8, group_size=32),
    lambda: awq.AWQLinear(*awq.awq_quantize(W, X, 4, 32, n_grid=4)),
], ids=["QuantLinear", "QuantLinear W8A8", "QATLinear", "AWQLinear"])
def test_input_on_another_device(make):
    """was RuntimeError: Tensor on device cpu is not on the expected device meta! (or, dynamic
    W8A8: Tensor.item() cannot be called on meta tensors); a CUDA input to a CPU layer is the same"""
    with pytest.raises(ValueError, match="x is on device meta but the layer is on cpu"):
        make()(torch.randn(3, 64, device="meta"))


def test_quantize_input_checks_x():
    """was AttributeError: 'list' object has no attribute 'reshape'; a 0-d x: IndexError"""
    layer = rtn.QuantLinear.from_linear(nn.Linear(64, 8), 4, 32, act_bits=8)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        layer.quantize_input(torch.randn(3, 64).tolist())
    with pytest.raises(ValueError, match=r"x has shape \(\)"):
        layer.quantize_input(torch.tensor(1.0))


def test_convert_qat_not_a_module():
    """was AttributeError: 'str' object has no attribute 'named_modules'"""
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        rtn.convert_qat("model")


# ── observers and pack ──────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("bad", [None, "0.1", True])
def test_moving_average_constant_not_a_number(bad):
    """None or a str: was TypeError "'<' not supported ..."; True was taken as 1.0"""
    with pytest.raises(ValueError, match=r"averaging_constant=.* must be in \(0, 1\]"):
        observers.MovingAverageMinMaxObserver(averaging_constant=bad)


def test_pack_bits_a_numpy_int():
    """was ValueError: bits=np.int64(4) is not supported; expected one of (2, 4, 8)"""
    q = torch.randint(0, 16, (2, 8), dtype=torch.uint8)
    assert torch.equal(pack.unpack(pack.pack(q, np.int64(4)), np.int64(4)), q)


# ── gptq ────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("fn", [gptq.input_hessian, awq.activation_scales,
                                lambda inputs: awq.awq_quantize(W, inputs, 4, 32, n_grid=4)],
                         ids=["input_hessian", "activation_scales", "awq_quantize"])
@pytest.mark.parametrize("inputs", [X.tolist(), X.numpy(), [X.numpy()], "x"], ids=["list", "numpy", "[numpy]", "str"])
def test_calibration_inputs_not_tensors(fn, inputs):
    """was AttributeError: 'list' object has no attribute 'shape' (activation_scales: 'reshape', 'abs'),
    or a TypeError from promote_types() that named no argument"""
    with pytest.raises(TypeError, match="inputs"):
        fn(inputs)


@pytest.mark.parametrize("fn", [gptq.input_hessian, awq.activation_scales])
@pytest.mark.parametrize("x", [torch.zeros(0, 0), torch.tensor(1.0)], ids=["empty", "0-d"])
def test_calibration_inputs_without_features(fn, x):
    """was RuntimeError: cannot reshape tensor of 0 elements into shape [-1, 0]; 0-d: IndexError"""
    with pytest.raises(ValueError, match=r"inputs\[0\] has shape .*; expected \[tokens, in\] with in >= 1"):
        fn(x)


def test_quantize_model_calibration_0d():
    """was IndexError: tuple index out of range (in the hook that captures a layer's input)"""
    with pytest.raises(ValueError, match=r"input of shape \(\); expected \[..., in_features\] \(check calibration\)"):
        calibrate.quantize_model(nn.Sequential(nn.Identity(), nn.Linear(64, 8)), "gptq", group_size=32,
                                 calibration=[torch.tensor(1.0)], progress=False)


def test_inverse_hessian_factor_float16():
    """was NotImplementedError: "cholesky_cpu" not implemented for 'Half'"""
    H = gptq.input_hessian(X)
    U = gptq.inverse_hessian_factor(H.half())
    torch.testing.assert_close(U, gptq.inverse_hessian_factor(H.half().float()))


@pytest.mark.parametrize("flag", ["act_order", "static_groups"])
def test_gptq_flags_must_be_bools(flag):
    """was taken by truth value: act_order="no" reordered the columns"""
    with pytest.raises(TypeError, match=f"{flag}='no' must be True or False"):
        gptq.gptq_quantize(W, gptq.input_hessian(X), 4, 32, **{flag: "no"})


# ── awq ─────────────────────────────────────────────────────────────────────────────────────


def test_awq_clip_must_be_a_bool():
    """was taken by truth value: clip="minmax" (rtn's spelling for no clipping) searched clipping ranges"""
    with pytest.raises(TypeError, match="clip='minmax' must be True or False"):
        awq.awq_quantize(W, X, 4, 32, clip="minmax")


def test_awq_search_scale_without_x_scale():
    """was AttributeError: 'NoneType' object has no attribute 'to'"""
    with pytest.raises(TypeError, match="x_scale must be a floating-point torch.Tensor, got NoneType"):
        awq.awq_search_scale(W, None, gptq.input_hessian(X), 4, 32)


@pytest.mark.parametrize("bad", [None, "0.5"])
def test_awq_search_clip_max_shrink_not_a_number(bad):
    """was TypeError: '<=' not supported between instances of 'int' and 'NoneType'"""
    with pytest.raises(ValueError, match=r"max_shrink=.* must be a number in \[0, 1\)"):
        awq.awq_search_clip(W, gptq.input_hessian(X), 4, 32, max_shrink=bad)


def test_output_error_float64_w_hat():
    """was RuntimeError: expected m1 and m2 to have the same dtype, but got: double != float"""
    H = gptq.input_hessian(X)
    W_hat = rtn.rtn_quantize(W, 4, 32).dequantize()
    err = awq.output_error(W, W_hat.double(), H)
    assert err.dtype == torch.float64
    assert err.item() == pytest.approx(awq.output_error(W, W_hat, H).item(), rel=1e-5)


def test_output_error_checks_its_arguments():
    """were RuntimeErrors from deep inside (size mismatch, shapes cannot be multiplied) or TypeErrors
    for an operator ('unsupported operand type(s) for @')"""
    H = gptq.input_hessian(X)
    with pytest.raises(ValueError, match=r"W_hat has shape \(8, 32\); expected the shape of W"):
        awq.output_error(W, W[:, :32], H)
    with pytest.raises(ValueError, match=r"H has shape \(32, 64\); expected \[in, in\] = \[64, 64\]"):
        awq.output_error(W, W, H[:32])
    with pytest.raises(TypeError, match="H must be a floating-point torch.Tensor"):
        awq.output_error(W, W, None)


@pytest.mark.parametrize("bad", [torch.ones(64).tolist(), None])
def test_awq_linear_input_scale_not_a_tensor(bad):
    """was AttributeError: 'list' object has no attribute 'shape'"""
    qw, _ = awq.awq_quantize(W, X, 4, 32, n_grid=4)
    with pytest.raises(ValueError, match=r"input_scale must be a tensor of shape \[in_features\] = \[64\]"):
        awq.AWQLinear(qw, bad)


def test_awq_linear_input_scale_zero():
    """was accepted: the layer divides x by it, so every output was inf or NaN"""
    qw, _ = awq.awq_quantize(W, X, 4, 32, n_grid=4)
    with pytest.raises(ValueError, match="input_scale must be positive and finite"):
        awq.AWQLinear(qw, torch.zeros(64))


# ── calibrate ───────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("call", [
    lambda: calibrate.storage_bytes(None),
    lambda: calibrate.tied_parameters("model"),
    lambda: calibrate.run_batches(None, [X]),
    lambda: calibrate.capture_inputs("model", nn.Linear(64, 8), X),
    lambda: calibrate.observe_inputs([1], {"0": nn.Linear(64, 8)}, X),
])
def test_model_not_a_module(call):
    """was AttributeError: 'NoneType' object has no attribute 'modules' (or 'training', ...)"""
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        call()


def test_capture_inputs_layer_not_a_module():
    """was AttributeError: 'str' object has no attribute 'register_forward_pre_hook' (observe_inputs: 'items')"""
    m = _mlp()
    with pytest.raises(TypeError, match="layer must be a torch.nn.Module, got str"):
        calibrate.capture_inputs(m, "0", X)
    with pytest.raises(TypeError, match="layers must be a torch.nn.Module, got str"):
        calibrate.capture_shared_inputs(m, ["0"], X)
    with pytest.raises(TypeError, match=r"layers must be a dict \{name: module\}"):
        calibrate.observe_inputs(m, "0", X)


def test_run_batches_forward_not_callable():
    """was TypeError: 'str' object is not callable, raised from inside the loop"""
    with pytest.raises(TypeError, match="forward must be None or a function forward"):
        calibrate.run_batches(_mlp(), [X], forward="model")


def test_quantize_model_progress_must_be_a_bool():
    """was taken by truth value: progress="no" showed the progress bar"""
    with pytest.raises(TypeError, match="progress='no' must be True or False"):
        calibrate.quantize_model(_mlp(), group_size=32, progress="no")
