"""Tests for minicomp.kernels: PackedLinear, and every backend agreeing with `reference`.

Exact agreement: with integer inputs, power-of-two scales and small sizes every product and
partial sum is an integer below 2^24, so float32 arithmetic is exact in any order and all
backends must give bit-identical results. On random data they agree to float32 rounding.
"""

import json
import os
import subprocess
import sys

import numpy as np
import torch

# Without a GPU, the triton kernel is tested on the CPU by triton's interpreter, which must be
# switched on before triton is first imported (minicomp imports it only when a kernel first runs).
TRITON_ON_CPU = not torch.cuda.is_available() and "triton" not in sys.modules
if TRITON_ON_CPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
from torch import nn

from minicomp import hardware
from minicomp.kernels import (
    BACKENDS,
    PackedLinear,
    available_backends,
    pack_bits_for,
    pack_model,
    packed_layers,
    set_backend,
)
from minicomp.kernels import cpu as cpu_backend
from minicomp.kernels import triton as triton_backend
from minicomp.kernels.reference import dequantize_packed
from minicomp.kernels.triton import ptx, sass
from minicomp.pack import pack
from minicomp.quant import QuantizedWeight
from minicomp.rtn import QuantLinear, rtn_quantize

# triton runs on a GPU, or here on the CPU under TRITON_INTERPRET=1 (slow, same kernel source).
HAS_TRITON = triton_backend.available()
FAST = (["cpu"] if cpu_backend.available() else []) + (["triton"] if HAS_TRITON else [])
needs_numba = pytest.mark.skipif(not cpu_backend.available(), reason="numba is not installed")


def test_available_backends():
    assert available_backends()[0] == "reference"


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def exact_layer(out, n_in, bits, group_size, *, perm=False, seed=0, bias=True):
    """A PackedLinear whose every output is an exactly representable float32 integer sum."""
    g = _gen(seed)
    qmax = 2**bits - 1
    n_groups = n_in // group_size
    codes = torch.randint(0, qmax + 1, (out, n_in), generator=g)
    zero = torch.randint(0, qmax + 1, (out, n_groups), generator=g)
    scale = 2.0 ** torch.randint(-2, 2, (out, n_groups), generator=g).float()  # 1/4 .. 2
    p = torch.randperm(n_in, generator=g) if perm else None
    qw = QuantizedWeight(codes, scale, zero, bits, group_size, perm=p)
    b = torch.randint(-4, 5, (out,), generator=g).float() if bias else None
    return PackedLinear.from_quantized(qw, b)


def int_input(m, n_in, seed=1):
    return torch.randint(-3, 4, (m, n_in), generator=_gen(seed)).float()


def run(layer, x, backend):
    """layer(x) with `backend`, on the device that backend needs; the result comes back on CPU."""
    device = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
    layer.to(device).backend = backend
    why = BACKENDS[backend].unsupported(layer, x.to(device))
    if why is not None:
        pytest.skip(f"{backend}: {why}")
    with torch.no_grad():
        return layer(x.to(device)).cpu()


# ------------------------------------------------------------------ exact agreement

CASES = [  # out, in, bits, group_size
    (64, 64, 4, 32),
    (200, 128, 4, 128),   # out not a multiple of the kernel's block of rows
    (130, 256, 4, 64),
    (64, 96, 8, 32),
    (48, 128, 2, 64),
    (40, 64, 3, 16),      # 3-bit codes in 4-bit slots
    (40, 64, 6, 32),      # 6-bit codes in bytes
    (33, 64, 4, 64),      # one group per row
]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("m", [1, 3, 20])
def test_backends_agree_exactly_with_reference(backend, case, m):
    out, n_in, bits, gs = case
    layer = exact_layer(out, n_in, bits, gs, perm=(m == 3))
    x = int_input(m, n_in)
    expected = run(layer, x, "reference")
    got = run(layer, x, backend)
    assert got.dtype == expected.dtype == torch.float32
    assert torch.equal(got, expected)


@pytest.mark.parametrize("backend", ["reference", *FAST])
def test_each_call_adds_its_bias_into_a_new_tensor(backend):
    """forward adds the bias in place (fewer torch calls): into the backend's new output, never
    into a tensor an earlier call returned, and with a float16 bias (after .half()) as well."""
    layer = exact_layer(64, 128, 4, 64)
    x = int_input(2, 128)
    first = run(layer, x, backend)
    kept = first.clone()
    second = run(layer, x, backend)
    assert torch.equal(first, kept) and torch.equal(second, kept)
    assert first.data_ptr() != second.data_ptr()
    half = run(layer.half(), x.half(), backend)   # small integers: exact in float16 too
    assert half.dtype == torch.float16 and torch.equal(half.float(), kept)


@pytest.mark.parametrize("backend", ["reference", *FAST])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_no_rows_of_x_give_no_rows_of_y_in_x_dtype(backend, dtype):
    """x with no rows ([0, in], or [2, 0, in]) skips the kernels: y has no rows, x's dtype and shape."""
    layer = exact_layer(64, 128, 4, 64)   # with a bias, added to nothing
    for shape in ((0, 128), (2, 0, 128)):
        y = run(layer, torch.zeros(shape, dtype=dtype), backend)
        assert y.shape == (*shape[:-1], 64) and y.dtype == dtype, (shape, y.shape, y.dtype)


def test_reference_matches_hand_computation():
    # one row, codes [1, 2, 3, 4], group_size 2: groups (1, 2) and (3, 4)
    qw = QuantizedWeight(torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0.5, 2.0]]),
                         torch.tensor([[1, 3]]), 4, 2)
    layer = PackedLinear.from_quantized(qw)
    assert layer.qweight.tolist() == [[0x21, 0x43]]
    w = dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=4, group_size=2)
    assert w.tolist() == [[0.0, 0.5, 0.0, 2.0]]  # (1-1)·.5, (2-1)·.5, (3-3)·2, (4-3)·2
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert run(layer, x, "reference").tolist() == [[9.0]]  # 0.5·2 + 2·4


@pytest.mark.parametrize("backend", ["reference", *FAST])
def test_permutation_is_undone(backend):
    """With act-order, column j of the codes is input perm[j]; the output must not care."""
    g = _gen(3)
    codes = torch.randint(0, 16, (32, 64), generator=g)
    scale, zero = torch.ones(32, 1), torch.randint(0, 16, (32, 1), generator=g)
    perm = torch.randperm(64, generator=g)
    plain = QuantizedWeight(codes, scale, zero, 4, 64)
    permuted = QuantizedWeight(codes[:, perm], scale, zero, 4, 64, perm=perm)  # the same weight
    x = int_input(5, 64)
    a = run(PackedLinear.from_quantized(plain), x, backend)
    assert torch.equal(run(PackedLinear.from_quantized(permuted), x, backend), a)
    # with groups, which follow the permuted order: compare with QuantizedWeight.dequantize()
    grouped = exact_layer(32, 64, 4, 16, perm=True, bias=False)
    want = x @ grouped.quantized_weight().dequantize().T
    assert torch.equal(run(grouped, x, backend), want)


needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (or no GPU)")


def _triton_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


@needs_triton
@pytest.mark.parametrize("m,dtype,bits", [(1, torch.float32, 4), (3, torch.float32, 4), (1, torch.float16, 4),
                                          (3, torch.float16, 4),
                                          (20, torch.float32, 4), (20, torch.float16, 4), (16, torch.bfloat16, 4),
                                          (20, torch.bfloat16, 8), (16, torch.float16, 8), (20, torch.float16, 2),
                                          (1, torch.float32, 2), (1, torch.float16, 8), (2, torch.float32, 8),
                                          (70, torch.float16, 4), (64, torch.bfloat16, 8)])
def test_every_triton_candidate_agrees_exactly(m, dtype, bits):
    """Whatever `tune` picks on a GPU computes the same numbers: every candidate (the GEMV kernel
    and the tile kernel, row blocks, split-K, scales after each step or dequantize-first, tensor
    cores) against the reference."""
    triton_backend._import()
    layer = exact_layer(72, 512, bits, 128, bias=False)  # 72 rows: no multiple of a row block
    x = int_input(m, 512)
    expected = run(layer, x, "reference")
    cands = triton_backend.candidates(m, 72, 512, bits, 128)
    kernels = {c["KERNEL"] for c in cands}
    if m == 1:
        assert cands[0]["KERNEL"] == "gemv"
    if m < 16:
        assert kernels == {"gemv", "tile"} | ({"half2"} if bits == 4 else set())
        assert any(c.get("USE_DOT") for c in cands) == (m > 1)    # 16-row tensor-core tiles, rows past m empty
        assert len({c["SPLIT_K"] for c in cands}) > 1 and 1 in {c["SPLIT_K"] for c in cands}  # split-K or not
    else:
        assert kernels == {"tile"} | ({"dequant"} if m >= 64 else set())   # from 64 rows, or cuBLAS
        assert all(c["USE_DOT"] for c in cands if c["KERNEL"] == "tile")
    layer.to(_triton_device())
    if TRITON_ON_CPU:  # the interpreter runs no PTX: an ASM configuration runs its plain twin, as tested;
        # and it runs a program's warps as one, so twins that differ in num_warps alone run once
        twins = {json.dumps({k: v for k, v in c.items() if k != "num_warps"}, sort_keys=True): c
                 for c in cands if not c.get("ASM")}
        cands = list(twins.values())
    for cfg in cands:
        got = triton_backend.linear(layer, x.to(_triton_device(), dtype), config=cfg).cpu()
        # no bias: x's dtype, from kept sums with split-K, except over more than SUMS_ROWS rows
        assert got.dtype == (torch.float32 if cfg["SPLIT_K"] > 1 and m > triton_backend.SUMS_ROWS else dtype)
        assert torch.equal(got.float(), _stored(expected, got.dtype, cfg["KERNEL"] != "dequant")), cfg


def _stored(y: torch.Tensor, dtype: torch.dtype, by_triton: bool = True) -> torch.Tensor:
    """float32 y as a kernel stores it in `dtype`, back in float32: rounded to nearest, except that
    triton's interpreter (TRITON_INTERPRET) truncates float32 to bf16 (it keeps the top 16 bits).
    by_triton=False: y stored by torch (the 'dequant' configuration's matmul), rounded to nearest."""
    if dtype == torch.bfloat16 and triton_backend.interpreting() and by_triton:
        return (y.float().view(torch.int32) & -65536).view(torch.float32)
    return y.to(dtype).float()


@needs_triton
def test_triton_writes_into_a_given_output_and_rejects_a_step_that_does_not_divide_the_input():
    """`_launch(out=...)` (used to time the kernel alone) adds into the tensor it is given; a
    configuration whose step does not divide in_features is refused, naming the fix."""
    triton_backend._import()
    layer = exact_layer(72, 512, 4, 128, bias=False).to(_triton_device())
    x = int_input(1, 512).to(_triton_device())
    expected = run(layer.cpu(), x.cpu(), "reference")
    layer.to(_triton_device())
    cfg = triton_backend._config(1, 72, 512, 4, 128) | {"SPLIT_K": 2}
    out = torch.full((1, 72), 1.0, device=_triton_device())
    got = triton_backend._launch(layer, x, cfg, out=out)
    assert got is out and torch.equal(out.cpu() - 1.0, expected)
    with pytest.raises(ValueError, match="BLOCK_W=64 covers 512 inputs per step, which must divide in_features=384"):
        small = exact_layer(8, 384, 4, 128, bias=False).to(_triton_device())
        triton_backend._launch(small, int_input(1, 384).to(_triton_device()), cfg | {"BLOCK_W": 64})


@needs_triton
def test_steps_first_layout_puts_each_step_in_one_block_and_agrees():
    """STEPS_FIRST reads a copy of the codes [steps, out, BLOCK_W] (and the scales and zeros
    transposed) in which a program's step is one contiguous block; by hand, then exactly against
    the reference for a step of one group, of half a group (group 256) and of two groups
    (BLOCK_W 32), with split-K and without, in the GEMV and the half2 kernel; the copy is remade
    when the layer's buffers change, and is refused a step that does not divide a row. The tile
    kernel (4 to 16 rows of x) reads the same copy."""
    triton_backend._import()
    layer = exact_layer(3, 256, 4, 128, bias=False)
    words, scales, zeros = triton_backend.steps_first_layout(layer, 16, "cpu")
    rows = layer.qweight.view(torch.int32)                          # [3, 32]: two steps of 16 words
    assert words.shape == (2, 3, 16) and words.is_contiguous()
    assert torch.equal(words[1, 2], rows[2, 16:32]) and torch.equal(words[0, 1], rows[1, :16])
    assert torch.equal(scales, layer.scales.t()) and torch.equal(zeros, layer.zeros.t())
    assert triton_backend.steps_first_layout(layer, 16, "cpu")[0] is words     # kept, not remade
    with pytest.raises(ValueError, match="block_w=12 words must divide a row's 32 words"):
        triton_backend.steps_first_layout(layer, 12, "cpu")
    for group, block_w, kernels in ((128, None, ("gemv", "half2")), (256, 16, ("gemv", "half2")),
                                    (128, 32, ("gemv",))):
        layer = exact_layer(72, 512, 4, group, bias=False).to(_triton_device())
        for m, dtype in ((1, torch.float16), (2, torch.float32)):
            x = int_input(m, 512)
            expected = run(layer, x, "reference")
            layer.to(_triton_device())
            for kernel in kernels:
                for target in (1, 2048):   # one program a row block, and split-K
                    cfg = (triton_backend._gemv(72, 512, 4, group, 32, 1, target, block_w, steps_first=True)
                           if kernel == "gemv" else
                           triton_backend._half2(72, 512, group, 32, 1, target, False, steps_first=True))
                    got = triton_backend.linear(layer, x.to(_triton_device(), dtype), config=cfg).cpu()
                    assert torch.equal(got.float(), _stored(expected, dtype)), (group, m, cfg)
    # the tile kernel reads the same copy as bytes (its 64-byte step is the GEMV's 16 words)
    for m, dtype, bits in ((4, torch.float16, 4), (16, torch.float32, 4), (16, torch.bfloat16, 8), (5, torch.float16, 2)):
        layer = exact_layer(72, 512, bits, 128, bias=False)
        x = int_input(m, 512)
        expected = run(layer, x, "reference")
        layer.to(_triton_device())
        cfg = triton_backend._config(m, 72, 512, bits, 128) | {"STEPS_FIRST": True}
        assert cfg in triton_backend.candidates(m, 72, 512, bits, 128)
        for split in (cfg, cfg | {"SPLIT_K": 1}):
            got = triton_backend.linear(layer, x.to(_triton_device(), dtype), config=split).cpu()
            assert torch.equal(got.float(), _stored(expected, dtype)), (m, dtype, bits, split)
    layer = exact_layer(72, 512, 4, 128, bias=False).to(_triton_device())
    x = int_input(1, 512).to(_triton_device())
    cfg = triton_backend._gemv(72, 512, 4, 128, 32, 1, 1, 32, steps_first=True)
    before = triton_backend.linear(layer, x, config=cfg)           # makes the copy
    with torch.no_grad():   # new codes in place: the copy follows
        layer.qweight.copy_(layer.qweight.flip(0))
    after = triton_backend.linear(layer, x, config=cfg).cpu()
    assert not torch.equal(after, before.cpu()) and torch.equal(after, run(layer, x.cpu(), "reference"))


@needs_triton
def test_split_k_sums_are_kept_zeroed_between_calls(monkeypatch):
    """With split-K and up to SUMS_ROWS rows of x, the partial sums go into float32 zeros kept on
    the layer, with one int32 counter per block of y; the last program of each block stores y in
    x's dtype from them and zeroes its sums and counter (`common.finish_tile`), so a call is one
    launch. The sums and counters must be zero after every call, the same tensors call after
    call, and zero even when the launch fails part-way."""
    triton_backend._import()
    layer = exact_layer(72, 512, 4, 128, bias=False).to(_triton_device())
    x = int_input(1, 512).to(_triton_device(), torch.float16)
    expected = _stored(run(layer.cpu(), x.float().cpu(), "reference"), torch.float16)
    layer.to(_triton_device())
    cfg = triton_backend._config(1, 72, 512, 4, 128) | {"SPLIT_K": 4}
    assert not any("split-K" in str(k) for k in layer._kernel_cache)   # nothing kept before the first call
    kept = []
    for _ in range(3):
        y = triton_backend._launch(layer, x, cfg)
        assert y.dtype == torch.float16 and torch.equal(y.float().cpu(), expected)
        ((sums, counts),) = [v for k, v in layer._kernel_cache.items() if "split-K" in str(k)]
        assert sums.shape == (triton_backend.SUMS_ROWS, 72) and not sums.any()
        grid = triton_backend.launch_grid(cfg, 1, 72)
        assert counts.dtype == torch.int32 and counts.numel() >= grid[0] * grid[1] and not counts.any()
        kept.append((sums.data_ptr(), counts.data_ptr()))
    assert len(set(kept)) == 1                            # the same tensors, call after call
    # every kernel, with more rows of x (more blocks of y: more counters), and the rows past m
    for m, c in ((3, triton_backend._config(3, 72, 512, 4, 128)),
                 (3, {"KERNEL": "half2", "BLOCK_N": 32, "BLOCK_W": 16, "SPLIT_K": 4, "num_warps": 1,
                      "BLOCK_M": 2, "PREFETCH": False}),
                 (5, triton_backend._tile(5, 72, 512, 4, 128, 16, 32, 512, use_dot=True))):
        xm = int_input(m, 512).to(_triton_device(), torch.float16)
        want = _stored(run(layer.cpu(), xm.float().cpu(), "reference"), torch.float16)
        layer.to(_triton_device())
        for _ in range(2):
            got = triton_backend._launch(layer, xm, c | {"SPLIT_K": 4})
            assert torch.equal(got.float().cpu(), want), c
        ((sums, counts),) = [v for k, v in layer._kernel_cache.items() if "split-K" in str(k)]
        assert not sums.any() and not counts.any(), c
    layer.to(_triton_device())                            # moving the layer drops them
    assert not any("split-K" in str(k) for k in layer._kernel_cache)
    # more rows than SUMS_ROWS: fresh float32 zeros each call, returned as float32 (the layer casts)
    many = int_input(triton_backend.SUMS_ROWS + 1, 512).to(_triton_device(), torch.float16)
    assert triton_backend._launch(layer, many, cfg).dtype == torch.float32
    # the launch fails after some programs added and counted: sums and counts are zeroed all the
    # same, and the error comes through
    triton_backend._launch(layer, x, cfg)
    ((sums, counts),) = [v for k, v in layer._kernel_cache.items() if "split-K" in str(k)]

    def broken(layer, x, cfg, grid, y, finish):
        y.add_(1.0)
        finish[1].add_(1)
        raise RuntimeError("no launch")

    monkeypatch.setattr(triton_backend, "_run_kernel", broken)
    with pytest.raises(RuntimeError, match="no launch"):
        triton_backend._launch(layer, x, cfg)
    assert not sums.any() and not counts.any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the race it looks for needs a GPU running programs at once")
def test_split_k_finish_on_a_gpu_stores_every_block_once_and_leaves_zeros():
    """On a GPU the programs of a split-K call run at once, and the last of each block of y
    stores it (`common.finish_tile`): if its counter or its reads of the sums were not ordered
    after the other programs' adds, some call would store a partial sum. Thousands of blocks, each
    of 8 or 16 programs, called 200 times (in a CUDA graph, as served, and eagerly) must give
    the exact integer answer every time, and leave the sums and counters zero."""
    triton_backend._import()
    n, k = 4096, 4096
    layer = exact_layer(n, k, 4, 128, bias=False)
    x = int_input(1, k)
    expected = _stored(run(layer.cpu(), x, "reference"), torch.float16).cuda()
    layer.cuda()
    x = x.cuda().half()
    for cfg in (triton_backend._gemv(n, k, 4, 128, 32, 1, 2048),
                triton_backend._half2(n, k, 128, 32, 1, 4096, False)):
        assert cfg["SPLIT_K"] > 1
        graph = hardware.cuda_graph(lambda c=cfg: triton_backend._launch(layer, x, c))
        for call in (graph, lambda c=cfg: triton_backend._launch(layer, x, c)):
            wrong = sum(not torch.equal(call().float(), expected.float()) for _ in range(100))
            assert wrong == 0, (cfg, wrong)
        ((sums, counts),) = [v for key, v in layer._kernel_cache.items() if "split-K" in str(key)]
        assert not sums.any() and not counts.any(), cfg


@needs_triton
def test_dequant_configuration_decodes_the_whole_weight_then_multiplies():
    """The 'dequant' configuration (prompts: decode the weight into x's dtype, then one dense
    matmul) gives the reference's answer, with and without a bias, for 2-, 4- and 8-bit codes."""
    triton_backend._import()
    for bits, bias in ((4, False), (4, True), (8, True), (2, False)):
        layer = exact_layer(72, 512, bits, 128, bias=bias)
        x = int_input(70, 512)
        expected = run(layer, x, "reference")
        layer.to(_triton_device())
        cfg = triton_backend._dequant(bits, 128)
        assert cfg in triton_backend.candidates(70, 72, 512, bits, 128)
        got = triton_backend.linear(layer, x.to(_triton_device(), torch.float16), config=cfg).float().cpu()
        if bias:   # the layer adds the bias to float32 y
            got = got + layer.bias.detach().float().cpu()
        assert torch.allclose(got, expected, rtol=2e-3, atol=1e-3 * expected.abs().max().item()), (bits, bias)


@needs_triton
def test_triton_rounds_a_biased_16_bit_output_once():
    """With a bias, the kernel keeps y in float32 so that y + bias is rounded to x's dtype once."""
    triton_backend._import()
    layer = exact_layer(72, 512, 4, 128, bias=True).to(_triton_device())
    x = (int_input(1, 512) / 3).to(_triton_device(), torch.float16)
    with torch.no_grad():
        assert triton_backend.linear(layer, x, config=triton_backend._config(1, 72, 512, 4, 128) | {"SPLIT_K": 1}).dtype == torch.float32
        layer.backend = "triton"
        got = layer(x)
        layer.backend = "reference"
        want = layer(x)
    assert got.dtype == torch.float16 and torch.allclose(got.float(), want.float(), rtol=1e-3, atol=1e-2)


@needs_triton
@pytest.mark.parametrize("m,scale", [(1, 1.0), (1, 300.0), (1, 1e-3), (3, 1.0)])
def test_half2_kernel_agrees_on_random_fp16_input(m, scale):
    """The two-codes-per-instruction kernel sums products in fp16, eight to a half: on real-valued
    fp16 x, large and small, it must agree with the reference kernel to fp16 rounding, as `tune`
    requires of every candidate. (Off a GPU this runs the kernel's plain-triton twin of its PTX.)"""
    triton_backend._import()
    layer = PackedLinear.from_linear(nn.Linear(512, 72, bias=False), bits=4, group_size=128).to(_triton_device())
    x = (torch.randn(m, 512, generator=_gen(4)) * scale).half().to(_triton_device())
    w = dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=4, group_size=128)
    expected = x.float() @ w.T
    half2 = [c for c in triton_backend.candidates(m, 72, 512, 4, 128) if c["KERNEL"] == "half2"]
    assert {c["PREFETCH"] for c in half2} == {False, True}
    assert {c["BLOCK_M"] for c in half2} == ({1} if m == 1 else {1, 4})  # 4 rows a program: one left over
    if TRITON_ON_CPU:  # the interpreter is slow: a few, the multi-row ones included
        half2 = half2[:3] + [c for c in half2 if c["BLOCK_M"] > 1][:1]
    for cfg in half2 + [half2[0] | {"SPLIT_K": 1}]:  # split-K and not
        y = triton_backend._launch(layer, x, cfg)
        assert triton_backend._agrees(y, expected), (cfg, (y.float() - expected).abs().max())


@needs_triton
@pytest.mark.parametrize("m,dtype", [(4, torch.float16), (16, torch.float16), (16, torch.bfloat16)])
def test_tensor_core_tiles_agree_on_random_input(m, dtype):
    """Every tensor-core tile `tune` may pick (on a GPU, those with the inline-PTX nibbles too), on
    real-valued x of both 16-bit types, agrees with the reference kernel as `tune` requires; with
    4 rows of x, 12 of the tile's 16 rows are empty. (Off a GPU the ASM ones run their twin.)"""
    triton_backend._import()
    layer = PackedLinear.from_linear(nn.Linear(512, 72, bias=False), bits=4, group_size=128).to(_triton_device())
    x = torch.randn(m, 512, generator=_gen(5)).to(_triton_device(), dtype)
    w = dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=4, group_size=128)
    expected = x.float() @ w.T
    tiles = [c for c in triton_backend.candidates(m, 72, 512, 4, 128) if c.get("USE_DOT")]
    assert {c["ASM"] for c in tiles} == {False, True} and {c["BLOCK_M"] for c in tiles} == {16}
    if TRITON_ON_CPU:
        tiles = tiles[:2]
    for cfg in tiles:
        y = triton_backend._launch(layer, x, cfg)
        assert triton_backend._agrees(y, expected), (cfg, (y.float() - expected).abs().max())


@needs_triton
def test_half2_kernel_with_act_order_and_a_bias():
    """Through `linear`, which undoes act-order's permutation of the columns, and with a bias,
    which keeps y in float32 until it is added: the half2 kernel gives the reference's answer."""
    triton_backend._import()
    layer = exact_layer(72, 512, 4, 128, perm=True, bias=True)
    x = int_input(3, 512)
    expected = run(layer, x, "reference")                 # float32, exact (small integers)
    layer.to(_triton_device())
    for cfg in [c for c in triton_backend.candidates(3, 72, 512, 4, 128) if c["KERNEL"] == "half2"][:1] + \
            [triton_backend._half2(72, 512, 128, 32, 1, 512, False, block_m=4)]:
        y = triton_backend.linear(layer, x.half().to(_triton_device()), config=cfg)
        assert y.dtype == torch.float32                   # the bias is still to be added
        assert torch.equal((y.cpu() + layer.bias.cpu()), expected), cfg


@needs_triton
def test_half2_kernel_is_for_fp16_and_4_bits_only():
    """For other inputs `_exact` turns a 'half2' configuration into the same 'gemv' one; asked
    directly, the kernel refuses, naming what it needs."""
    triton_backend._import()
    cfg = triton_backend._half2(72, 512, 128, 32, 1, 512, prefetch=False)
    assert triton_backend._exact(cfg, torch.float16) is cfg
    plain = triton_backend._exact(cfg, torch.bfloat16)
    assert plain["KERNEL"] == "gemv" and "PREFETCH" not in plain and plain["BLOCK_N"] == 32
    # what `tune` times: half2 for fp16 x only, and no configuration twice
    for dtype in (torch.float16, torch.float32):
        timed = triton_backend.timed_configs(1, 72, 512, 4, 128, dtype)
        assert len({str(c) for c in timed}) == len(timed)
        assert any(c["KERNEL"] == "half2" for c in timed) == (dtype == torch.float16)
    assert len(triton_backend.timed_configs(1, 72, 512, 4, 128, torch.float32)) < \
        len(triton_backend.candidates(1, 72, 512, 4, 128))
    layer = exact_layer(72, 512, 8, 128, bias=False).to(_triton_device())
    with pytest.raises(ValueError, match="KERNEL='half2' needs float16 x, 4-bit codes"):
        triton_backend._launch(layer, int_input(1, 512).half().to(_triton_device()), cfg)
    four_bit = exact_layer(72, 512, 4, 128, bias=False).to(_triton_device())
    with pytest.raises(ValueError, match="BLOCK_M=8: the 'half2' kernel takes 1, 2 or 4 rows of x"):
        triton_backend._launch(four_bit, int_input(8, 512).half().to(_triton_device()), cfg | {"BLOCK_M": 8})
    # an x that starts half-way through an int32 (an odd offset into its storage) is still read in pairs
    flat = torch.cat([torch.zeros(1), int_input(1, 512)[0]]).half().to(_triton_device())
    odd = flat[1:].view(1, 512)
    assert odd.storage_offset() == 1
    expected = run(four_bit.cpu(), odd.float().cpu(), "reference")
    four_bit.to(_triton_device())
    got = triton_backend._launch(four_bit, odd, cfg).cpu()
    assert got.dtype == torch.float16 and torch.equal(got.float(), _stored(expected, torch.float16))


@pytest.mark.skipif(not sass.compiler_available(), reason="needs triton with its NVIDIA compiler (ptxas)")
def test_every_triton_candidate_compiles_for_real_gpus():
    """The interpreter runs code that the GPU compiler may reject; compile every batch-1 candidate
    for an H100 (sm_90), the default configurations for it and an A100 (sm_80), and one of each
    kind of kernel (inline PTX included) for a T4 (sm_75, Colab's free GPU); and check the GEMV
    loop's machine code: 16-byte loads, almost no shuffles between threads, no spills, few
    instructions."""
    def one_of_each_kind(configs):
        kinds = {}
        for cfg in configs:
            kinds.setdefault((cfg["KERNEL"], cfg.get("USE_DOT"), cfg.get("ASM")), cfg)
        return list(kinds.values())

    # every compilation first, in one process on all cores (`sass.profile_many`); the checks after
    sweep = []
    for m, dtype, bits in [(1, torch.float16, 4), (1, torch.bfloat16, 8), (4, torch.float16, 4),
                           (16, torch.float16, 4), (32, torch.bfloat16, 4), (16, torch.bfloat16, 8),
                           (20, torch.float32, 2)]:
        cands = triton_backend.candidates(m, 4096, 4096, bits, 128)
        for arch in (75, 80, 90):
            configs = cands if (m, arch) == (1, 90) else one_of_each_kind(cands) if arch == 75 else cands[:1]
            sweep.append({"configs": configs, "bits": bits, "group_size": 128, "x_dtype": dtype, "arch": arch,
                          "m": m})
    cands = triton_backend.candidates(1, 8192, 8192, 4, 128)
    gemv, half2 = cands[0], next(c for c in cands if c["KERNEL"] == "half2")
    staged = next(c for c in cands if c["KERNEL"] == "half2" and c["STAGES"] == 3)
    cands4 = triton_backend.candidates(4, 8192, 8192, 4, 128)
    rows4 = next(c for c in cands4 if c["KERNEL"] == "half2" and c["BLOCK_M"] == 4)
    fma4 = next(c for c in cands4 if c["KERNEL"] == "tile" and not c["USE_DOT"])
    tc = triton_backend.candidates(16, 8192, 8192, 4, 128)[0]
    cands256 = triton_backend.candidates(256, 8192, 8192, 4, 128)
    tall = [c for c in cands256 if c.get("BLOCK_M", 0) >= 64]
    short = next(c for c in cands256 if c.get("BLOCK_M") == 32 and not c["ASM"])
    (dq,) = [c for c in cands256 if c["KERNEL"] == "dequant"]
    tall8 = [c for c in triton_backend.candidates(256, 4096, 4096, 8, 128) if c.get("BLOCK_M") == 128]
    h100 = {"bits": 4, "group_size": 128, "arch": 90}
    *swept, (loop, loop2, loop3), (loop4, fma_loop, dot_loop, asm_loop), (loop16, asm16), \
        (short_loop, *tall_loops), (dq_loop,), (loop8,), fp32_gemv, fp32_tile, fp32_dq = sass.profile_many([
            *sweep,
            {"configs": [gemv, half2, staged], **h100},
            {"configs": [rows4, fma4, cands4[0] | {"ASM": False}, cands4[0]], **h100, "m": 4},
            {"configs": [tc | {"ASM": False}, tc], **h100, "m": 16},
            {"configs": [short, *tall], **h100, "m": 256},
            {"configs": [dq], **h100, "m": 256},
            {"configs": tall8[:1], "bits": 8, "group_size": 128, "x_dtype": torch.bfloat16, "arch": 80, "m": 256},
            # a layer from from_quantized (GPTQ, AWQ) keeps float32 scales: its own compilations
            {"configs": [gemv, half2], **h100, "scale_dtype": torch.float32},
            {"configs": [cands4[0]], **h100, "m": 4, "scale_dtype": torch.float32},
            {"configs": [dq], **h100, "m": 256, "scale_dtype": torch.float32},
        ])
    fp16_scales = (loop, loop2)   # (`loop` is reused by a for below)
    for job, loops in zip(sweep, swept, strict=True):
        assert len(loops) == len(job["configs"]) and all(loop["instructions"] > 0 for loop in loops)
    assert sum(len(job["configs"]) for job in sweep) > 20
    assert loop["ops"].get("LDG.E.128", 0) >= 1, loop["ops"]  # 16-byte loads of the codes
    assert loop["ops"].get("SHFL.BFLY", 0) <= 4, loop["ops"]   # Σ x per word only; the first version: 204
    assert loop["spilled"] == 0 and loop["per_weight"] < 0.2, loop  # the first version: 0.65
    # two codes per instruction: packed fp16 arithmetic, and a third fewer instructions (0.136 -> 0.09)
    assert sum(n for op, n in loop2["ops"].items() if op.startswith("HFMA2")) >= 64, loop2["ops"]
    assert loop2["spilled"] == 0 and loop2["per_weight"] < 0.75 * loop["per_weight"], (loop2, loop)
    # with pipeline stages, the codes of later steps are copied into shared memory asynchronously
    # (LDGSTS: cp.async), at no more instructions and no more registers
    assert sum(n for op, n in loop3["ops"].items() if op.startswith("LDGSTS")) >= 4, loop3["ops"]
    assert loop3["spilled"] == 0 and loop3["registers"] <= loop2["registers"], (loop3, loop2)
    assert loop3["per_weight"] < 1.1 * loop2["per_weight"], (loop3, loop2)
    # at batch 4, per weight and row: four rows of x sharing each q − z (half2), and tensor-core
    # tiles (the default from 4 rows on), each issue fewer instructions than the FMA tile kernel
    # that ran batch 4 on the H200 (0.6x fp16); the PTX nibbles fewer still
    assert cands4[0]["USE_DOT"] and cands4[0]["ASM"]   # the PTX nibbles: the default since an H200 ran them
    for loop in (loop4, dot_loop, asm_loop):
        assert loop["spilled"] == 0 and loop["per_weight"] < 0.75 * fma_loop["per_weight"], (loop, fma_loop)
    assert asm_loop["per_weight"] < 0.75 * dot_loop["per_weight"], (asm_loop, dot_loop)
    # from 16 rows on, tensor cores: ~512 programs (split-K; the first version had 128, one to most
    # of an H100's SMs), codes made fp16 from their bits (no int-to-float conversion per weight: the
    # first version had 64 I2F a loop) and x copied asynchronously in 16-byte pieces
    assert tc["USE_DOT"] and -(-8192 // tc["BLOCK_N"]) * tc["SPLIT_K"] >= 512, tc
    count = lambda prefix: sum(n for op, n in loop16["ops"].items() if op.startswith(prefix))  # noqa: E731
    assert count("HMMA") >= 16 and count("I2F") <= 4 and count("LDGSTS") >= 4, loop16["ops"]
    assert loop16["spilled"] == 0 and loop16["per_weight"] < 0.0145, loop16  # the first version: 0.0157
    # the 4-bit codes made fp16 by inline PTX (8 instructions for 8 codes): a third fewer instructions
    assert asm16["spilled"] == 0 and asm16["per_weight"] < 0.75 * loop16["per_weight"], (asm16, loop16)
    # from 64 rows on, taller tiles too: each code decoded once for 64 or 128 rows of x. Each
    # compiles for an H100 without spilling, and at 256 rows the best issues under half the
    # instructions per weight and row of the 32-row tile (counted: 0.0024 against 0.0080); one of
    # them is the default there
    assert {(c["BLOCK_M"], c["BLOCK_N"], c["ASM"]) for c in tall} == {
        (bm, bn, asm) for bm, bn in ((64, 64), (64, 128), (128, 64)) for asm in (False, True)}
    assert cands256[0] in tall
    assert all(loop["spilled"] == 0 for loop in tall_loops), tall_loops
    assert min(loop["per_weight"] for loop in tall_loops) < 0.5 * short_loop["per_weight"], (tall_loops, short_loop)
    # or the whole weight decoded (16-byte stores), then cuBLAS: each 4-bit code decoded once for
    # all 256 rows, in well under the tiles' instructions per weight and row
    assert dq_loop["spilled"] == 0 and dq_loop["ops"].get("STG.E.128", 0) >= 1, dq_loop["ops"]
    assert dq_loop["per_weight"] < min(loop["per_weight"] for loop in tall_loops), (dq_loop, tall_loops)
    assert loop8["spilled"] == 0, loop8   # converted codes, bf16, for an A100
    # float32 scales: one 4-byte load a group instead of 2, so about the same loop (within 10%; counted
    # 0.1353, 0.0828, 0.0347, 0.0011 per weight against 0.1355, 0.0830, 0.0353, 0.0011 with float16)
    for loop32, loop16_ in zip(fp32_gemv + fp32_tile + fp32_dq, (*fp16_scales, asm_loop, dq_loop), strict=True):
        assert loop32["spilled"] == 0 and loop32["per_weight"] < 1.1 * loop16_["per_weight"], (loop32, loop16_)


def test_profile_many_compiles_each_configuration_once_and_keeps_the_order(monkeypatch):
    """`profile_many` sends its child each distinct compilation once and hands every job its own
    list back, in order; a job with a wrong key is refused, naming it."""
    sent = {}

    def fake_run(cmd, input, **kwargs):
        todo = json.loads(input)
        sent["todo"] = todo
        out = json.dumps([{"instructions": 10 + i, "ops": {}, "registers": 32, "spilled": 0, "shared": 0,
                           "warps": 4} for i in range(len(todo))])
        return subprocess.CompletedProcess(cmd, 0, stdout=out + "\n", stderr="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    a, b = triton_backend.candidates(1, 512, 512, 4, 128)[:2]
    first, second = sass.profile_many([{"configs": [a, b], "bits": 4, "group_size": 128},
                                       {"configs": [b, a, a], "bits": 4, "group_size": 128, "m": 4}])
    assert len(sent["todo"]) == 2
    assert [loop["instructions"] for loop in first] == [10, 11]
    assert [loop["instructions"] for loop in second] == [11, 10, 10]
    assert first[0]["per_weight"] == sass.instructions_per_weight(first[0], a, 4, 1)
    assert second[1]["per_weight"] == sass.instructions_per_weight(second[1], a, 4, 4)
    with pytest.raises(ValueError, match=r"jobs\[0\] has keys .*'dtype'"):
        sass.profile_many([{"configs": [a], "bits": 4, "group_size": 128, "dtype": torch.float16}])


# ------------------------------------------------------------------ the half2 kernel's PTX, run here

def _run_ptx(code: str, n_out: int, inputs: list[int]) -> list:
    """Run one of the half2 kernel's inline-PTX blocks on the CPU: a small interpreter for exactly
    the instructions they use (shr, lop3, prmt, mov, f16x2 sub/mul/fma, cvt.f32.f16, add.f32), so
    that the operand numbering, masks, selectors and constants the GPU will run are checked here
    against what each block is meant to compute. $0 … are the outputs, then the inputs; registers
    hold 32-bit patterns (Python ints), f32 results hold numpy float32."""
    import re

    regs = {f"${n_out + i}": v for i, v in enumerate(inputs)}

    def val(a):
        a = a.strip()
        return int(a, 0) if re.fullmatch(r"-?(0x[0-9A-Fa-f]+|\d+)", a) else regs[a]

    def halves(v):
        return np.array([v & 0xFFFF, v >> 16], dtype=np.uint16).view(np.float16).astype(np.float64)

    def pair(lo_hi):
        return int(np.array(lo_hi, dtype=np.float64).astype(np.float16).view(np.uint16).astype(np.uint32) @ [1, 1 << 16])

    for stmt in code.strip()[1:-1].split(";"):
        stmt = stmt.strip()
        if not stmt or stmt.startswith(".reg"):
            continue
        op, rest = stmt.split(None, 1)
        d, *a = [s.strip() for s in re.split(r",(?![^{]*})", rest)]
        if op == "mov.b32" and d.startswith("{"):          # split a register into its 16-bit halves
            lo, hi = (s.strip() for s in d[1:-1].split(","))
            regs[lo], regs[hi] = val(a[0]) & 0xFFFF, val(a[0]) >> 16
        elif op == "mov.b32":
            regs[d] = val(a[0]) & 0xFFFFFFFF
        elif op == "shr.u32":
            regs[d] = val(a[0]) >> val(a[1])
        elif op == "lop3.b32":                              # bit i: lut[(a << 2) | (b << 1) | c]
            x, y, z, lut = (val(s) & 0xFFFFFFFF for s in a)
            regs[d] = sum(((lut >> (((x >> i & 1) << 2) | ((y >> i & 1) << 1) | (z >> i & 1))) & 1) << i
                          for i in range(32))
        elif op == "prmt.b32":                              # byte i of d: byte sel_i of {b, a}
            x, y, sel = val(a[0]), val(a[1]), val(a[2])
            both = x | (y << 32)
            regs[d] = sum(((both >> (8 * ((sel >> (4 * i)) & 7))) & 0xFF) << (8 * i) for i in range(4))
        elif op in ("sub.f16x2", "mul.f16x2", "fma.rn.f16x2"):
            x, y = halves(val(a[0])), halves(val(a[1]))
            r = x - y if op == "sub.f16x2" else x * y if op == "mul.f16x2" else x * y + halves(val(a[2]))
            regs[d] = pair(r)                               # rounded once, to nearest
        elif op == "cvt.f32.f16":
            regs[d] = np.float32(np.array([val(a[0])], dtype=np.uint16).view(np.float16)[0])
        elif op == "add.f32":
            regs[d] = np.float32(regs[a[0]] + regs[a[1]])
        else:
            raise AssertionError(f"the interpreter does not know {op!r}")
    return [regs[f"${i}"] for i in range(n_out)]


def test_half2_ptx_computes_what_it_should():
    """Each PTX block of `packed_gemv_half2` (`ptx.py`), run by `_run_ptx`, on random words and
    inputs: `CODES` gives q − z of codes (0, 4) (1, 5) (2, 6) (3, 7); `X_PAIRS` regroups the inputs
    the same way, divided by 16; `DOT` adds the 16 products. With small integer inputs every
    fp16 step is exact, so the answers must be exact."""
    magic, sixteenth, minus64 = ptx.PAIR_MAGIC, ptx.PAIR_SIXTEENTH, ptx.PAIR_MINUS_64
    rng = np.random.default_rng(0)
    f16 = lambda v: np.array(v, dtype=np.float16).view(np.uint16).astype(np.uint32)  # noqa: E731
    for _ in range(20):
        q, z = rng.integers(0, 16, 8), int(rng.integers(0, 16))
        word = int(sum(int(c) << (4 * k) for k, c in enumerate(q)))
        za = (z | z << 16) | magic
        zb = ((z << 4) | (z << 20)) | (minus64 & 0xFFFFFFFF)
        got = _run_ptx(ptx.CODES, 4, [word, za, zb, sixteenth])
        for k, reg in enumerate(got):                     # register k holds codes k and k + 4, as q − z
            assert (np.array([reg & 0xFFFF, reg >> 16], dtype=np.uint16).view(np.float16).tolist()
                    == [q[k] - z, q[k + 4] - z]), (k, q, z)
        x = rng.integers(-8, 9, 8)
        pairs = [int(f16(x[2 * i]) | f16(x[2 * i + 1]) << 16) for i in range(4)]   # (x0, x1) (x2, x3) ...
        xp = _run_ptx(ptx.X_PAIRS, 4, pairs)
        for k, reg in enumerate(xp):
            assert (np.array([reg & 0xFFFF, reg >> 16], dtype=np.uint16).view(np.float16).tolist()
                    == [x[k] / 16, x[k + 4] / 16]), (k, x)
        (dot,) = _run_ptx(ptx.DOT, 1, got + got + xp + xp)  # the same word twice
        assert dot == 2 * sum((q - z) * x) / 16


def test_tile_nibbles_ptx_computes_what_it_should():
    """The tensor-core tiles' PTX (`ptx.nibbles`), run by `_run_ptx` on random words: 4 bytes in,
    the 16-bit patterns MAGIC | q of their low nibbles (bytes 0 and 1, then 2 and 3), then of
    their high nibbles, for fp16 (MAGIC = 1024) and bf16 (128); as numbers, MAGIC + q."""
    rng = np.random.default_rng(1)
    for magic, value in ((0x6400, 1024.0), (0x4300, 128.0)):
        code = ptx.nibbles(magic)
        for _ in range(50):
            b = rng.integers(0, 256, 4)
            word = int(sum(int(v) << (8 * i) for i, v in enumerate(b)))
            got = _run_ptx(code, 4, [word])
            halves = [r >> (16 * h) & 0xFFFF for r in got for h in (0, 1)]
            assert halves == [magic | int(v) & 15 for v in b] + [magic | int(v) >> 4 for v in b], (magic, b)
            # as 16-bit floats: fp16 1024 + q, or bf16 (the top half of a float32) 128 + q
            as_float = (np.array(halves, dtype=np.uint16).view(np.float16).astype(np.float64) if magic == 0x6400
                        else (np.array(halves, dtype=np.uint32) << 16).view(np.float32).astype(np.float64))
            assert as_float.tolist() == [value + (v & 15) for v in b] + [value + (v >> 4) for v in b]


def _fresh_tuning(monkeypatch):
    """Nothing tuned yet, and a 72 x 512 4-bit layer with an x [1, 512] to tune it on."""
    triton_backend._import()
    monkeypatch.setattr(triton_backend, "_tuned", {})
    return exact_layer(72, 512, 4, 128, bias=False).to(_triton_device()), int_input(1, 512).to(_triton_device())


def _timed(x):
    """What `tune` times for x [1, 512] and a 72 x 512 4-bit layer."""
    return triton_backend.timed_configs(1, 72, 512, 4, 128, x.dtype)


@needs_triton
def test_tune_keeps_the_fastest_candidate_and_remembers_it(monkeypatch):
    layer, x = _fresh_tuning(monkeypatch)
    outputs = []

    def timer(fn):  # a fake clock: the third candidate is the fastest
        outputs.append(fn().cpu())
        return 0.5e-6 if len(outputs) == 3 else 1e-6

    cfg = triton_backend.tune(layer, x, timer=timer)
    n = len(outputs)
    assert n == len(_timed(x)) > 3
    assert cfg == _timed(x)[2]
    assert all(torch.equal(y, outputs[0]) for y in outputs)  # every candidate ran, and agreed
    assert triton_backend.tune(layer, x, timer=timer) is cfg and len(outputs) == n  # timed once
    (record,) = triton_backend.tuned()
    assert record["config"] == cfg and record["us"] == pytest.approx(0.5)
    assert (record["batch"], record["out"], record["in"], record["bits"]) == (1, 72, 512, 4)
    assert len(record["candidates"]) == n and record["dtype"] == "float32"
    assert all(c["us"] is not None and "error" not in c for c in record["candidates"])



@needs_triton
def test_tune_names_an_x_that_is_not_a_matrix(monkeypatch):
    layer, x = _fresh_tuning(monkeypatch)   # before: "too many values to unpack (expected 2)"
    with pytest.raises(ValueError, match=r"x must be a \[M, in_features\] tensor, as linear\(\) passes it, got \(1, 1, 512\)"):
        triton_backend.tune(layer, x[None], timer=lambda fn: 1e-6)


@needs_triton
@pytest.mark.parametrize("steps_first_wins", [False, True])
def test_tune_keeps_a_steps_first_copy_only_if_the_winner_reads_it(monkeypatch, steps_first_wins):
    """Timing the steps-first candidates makes a copy of the codes; when another candidate wins,
    tune drops it again, so the layer pays the memory only where it buys speed."""
    layer, x = _fresh_tuning(monkeypatch)
    timed = _timed(x)
    assert any(c.get("STEPS_FIRST") for c in timed)
    winner = next(c for c in timed if bool(c.get("STEPS_FIRST")) == steps_first_wins)
    fake = iter(0.5e-6 if c is winner else 1e-6 for c in timed)
    cfg = triton_backend.tune(layer, x, timer=lambda fn: (fn(), next(fake))[1])
    assert cfg == winner
    copies = [key for key in layer._kernel_cache if key[0] == "triton steps-first"]
    assert len(copies) == (1 if steps_first_wins else 0), copies


def test_gpus_older_than_volta_are_refused_with_a_reason(monkeypatch):
    """Triton's compiler fails for GPUs before compute capability 7.0 (Kaggle's P100 is 6.0, and
    ptxas crashes there, checked offline): the backend says why, so that a packed layer falls
    back to 'reference' on its own, and an explicit backend='triton' raises that reason."""
    import types

    caps = {0: (6, 0), 1: (7, 5)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: caps[device])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: ["Tesla P100-PCIE-16GB", "Tesla T4"][device])
    triton_backend.gpu_too_old.cache_clear()
    try:
        why = triton_backend.gpu_too_old(0)
        assert "Tesla P100-PCIE-16GB has compute capability 6.0" in why and "7.0 and newer" in why
        assert "'reference'" in why
        assert triton_backend.gpu_too_old(1) is None
        layer = exact_layer(72, 512, 4, 128, bias=False)
        on = lambda index: types.SimpleNamespace(device=torch.device("cuda", index), requires_grad=False)  # noqa: E731
        assert triton_backend.unsupported(layer, on(0)) == why
        assert triton_backend.unsupported(layer, on(1)) is None
        layer.backend = None                                 # automatic: the fastest that can run
        assert layer.choose_backend(on(0)) == "reference" and layer.choose_backend(on(1)) == "triton"
    finally:
        triton_backend.gpu_too_old.cache_clear()   # forget the fake GPUs


def test_a_call_runs_on_the_gpu_that_holds_x(monkeypatch):
    """Triton launches on the current CUDA device: with x on another GPU, `linear` makes x's GPU
    current for the call (faked here: no GPU needed), and leaves things alone otherwise."""
    import contextlib
    import types

    entered = []

    @contextlib.contextmanager
    def device(d):
        entered.append(d)
        yield

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", device)
    on = lambda index: types.SimpleNamespace(is_cuda=True, device=torch.device("cuda", index))  # noqa: E731
    with triton_backend._device_of(on(1)):
        pass
    with triton_backend._device_of(on(0)), triton_backend._device_of(torch.zeros(1)):
        pass
    assert entered == [torch.device("cuda", 1)]


def test_batch_classes():
    assert [triton_backend.batch_class(m) for m in (1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 65, 300, 512, 513,
                                                    4096)] == [
        1, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 512, 512, 512, 512]


@needs_triton
def test_tune_times_once_per_batch_class(monkeypatch):
    """3 and 4 rows of x share one tuning (timed with the first batch seen, 3 rows); 5 rows is
    the next class and is timed anew, with its own candidates. The winner for 3 rows runs with
    4 and agrees with the reference."""
    layer, _ = _fresh_tuning(monkeypatch)
    full = triton_backend.timed_configs
    monkeypatch.setattr(triton_backend, "timed_configs", lambda *a: full(*a)[:3])  # 3 candidates a class
    timed = []

    def timer(fn):
        timed.append(fn)
        return len(timed) * 1e-6   # each candidate slower than the one before: the first wins

    x3, x4, x5 = (int_input(m, 512).to(_triton_device()) for m in (3, 4, 5))
    cfg3 = triton_backend.tune(layer, x3, timer=timer)
    assert len(timed) == 3 and cfg3 == triton_backend._exact(triton_backend._config(3, 72, 512, 4, 128), x3.dtype)
    assert triton_backend.tune(layer, x4, timer=timer) is cfg3 and len(timed) == 3
    got = triton_backend.linear(layer, x4, config=cfg3).cpu()
    want = x4.cpu() @ dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=4, group_size=128).cpu().T
    assert torch.equal(got.float(), want)
    cfg5 = triton_backend.tune(layer, x5, timer=timer)
    assert len(timed) == 6 and cfg5 == triton_backend._exact(triton_backend._config(5, 72, 512, 4, 128), x5.dtype)
    assert [(r["batch"], r["batch_class"]) for r in triton_backend.tuned()] == [(3, 4), (5, 8)]


@needs_triton
def test_tune_leaves_out_candidates_that_fail_or_disagree(monkeypatch):
    """On a real GPU a large tile can exceed the registers; a miscompiled one could be wrong."""
    layer, x = _fresh_tuning(monkeypatch)
    cands = _timed(x)
    broken, wrong = cands[1], cands[2]
    launch = triton_backend._launch

    def faulty_launch(layer, x, cfg):
        if cfg == broken:
            raise RuntimeError("out of resources: shared memory")
        y = launch(layer, x, cfg)
        return -y if cfg == wrong else y

    monkeypatch.setattr(triton_backend, "_launch", faulty_launch)
    clock = iter(range(100, 0, -1))  # each candidate timed is faster than the one before
    cfg = triton_backend.tune(layer, x, timer=lambda fn: next(clock) * 1e-6)
    (record,) = triton_backend.tuned()
    errors = {str(c["config"]): c.get("error") for c in record["candidates"]}
    assert errors[str(broken)] == "RuntimeError: out of resources: shared memory"
    assert "differs from the reference kernel" in errors[str(wrong)]
    assert [c["us"] is None for c in record["candidates"]] == [c in (broken, wrong) for c in cands]
    assert cfg == cands[-1]  # the last one timed, the fastest of those that ran and agreed


# ------------------------------------------------------------------ random data: float32 rounding

@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("m", [1, 7, 40])
def test_backends_agree_on_random_data(backend, m):
    torch.manual_seed(0)
    lin = nn.Linear(512, 384)
    layer = PackedLinear.from_linear(lin, bits=4, group_size=128)
    x = torch.randn(m, 512, generator=_gen(2))
    ref, got = run(layer, x, "reference"), run(layer, x, backend)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["reference", *FAST])
def test_matches_quantlinear(backend):
    """PackedLinear computes the same function as the simulated QuantLinear it replaces."""
    torch.manual_seed(0)
    lin = nn.Linear(256, 96)
    qw = rtn_quantize(lin.weight.detach(), 4, 64)
    sim = QuantLinear(qw, lin.bias)
    packed = PackedLinear.from_quantized(qw, lin.bias)
    x = torch.randn(3, 256)
    with torch.no_grad():
        assert torch.allclose(run(packed, x, backend), sim(x), rtol=1e-5, atol=1e-5)


def test_from_linear_is_close_to_the_float_layer():
    torch.manual_seed(0)
    lin = nn.Linear(256, 64)
    layer = PackedLinear.from_linear(lin, bits=8, group_size=64)
    x = torch.randn(4, 256)
    with torch.no_grad():
        rel = (layer(x) - lin(x)).norm() / lin(x).norm()
    assert rel < 0.01


# ------------------------------------------------------------------ what it stores

def test_stores_nothing_in_full_precision():
    layer = PackedLinear.from_linear(nn.Linear(1024, 256, bias=False), bits=4, group_size=128)
    assert list(layer.parameters()) == []
    state = layer.state_dict()
    assert set(state) == {"qweight", "scales", "zeros"}
    assert state["qweight"].dtype == torch.uint8 and state["qweight"].shape == (256, 512)
    assert state["scales"].dtype == torch.float16 and state["scales"].shape == (256, 8)
    assert state["zeros"].dtype == torch.uint8


def test_packed_bytes_are_at_least_7_5x_smaller_than_float32():
    layer = PackedLinear.from_linear(nn.Linear(1024, 1024, bias=False), bits=4, group_size=128)
    ratio = 1024 * 1024 * 4 / layer.weight_nbytes
    assert ratio >= 7.5, ratio  # 512 B of float32 per group of 128 vs 64 + 2 + 1 B


def test_pack_bits_for():
    assert [pack_bits_for(b) for b in range(1, 9)] == [2, 2, 4, 4, 8, 8, 8, 8]
    with pytest.raises(ValueError, match="bits=9"):
        pack_bits_for(9)


def test_quantized_weight_round_trip():
    layer = exact_layer(16, 64, 4, 32, perm=True)
    qw = layer.quantized_weight()
    again = PackedLinear.from_quantized(qw)
    assert torch.equal(again.qweight, layer.qweight) and torch.equal(again.perm, layer.perm)


def test_fp16_scale_overflow_is_refused():
    qw = QuantizedWeight(torch.zeros(1, 4, dtype=torch.uint8), torch.tensor([[1e6]]),
                         torch.zeros(1, 1, dtype=torch.uint8), 4, 4)
    with pytest.raises(ValueError, match="scale_dtype"):
        PackedLinear.from_quantized(qw, scale_dtype=torch.float16)


# ------------------------------------------------------------------ choosing the backend

@needs_numba
def test_automatic_choice_on_cpu():
    layer = exact_layer(16, 64, 4, 32)
    x = int_input(2, 64)
    assert layer.choose_backend(x) == "cpu"
    assert layer.choose_backend(x.requires_grad_()) == "reference"  # only reference has gradients


@needs_numba
def test_unsupported_shapes_fall_back_to_reference():
    qw = rtn_quantize(torch.randn(8, 12), 4, -1)  # 12 inputs: not a whole 32-bit word of codes
    layer = PackedLinear.from_quantized(qw)
    x = torch.randn(2, 12)
    assert layer.choose_backend(x) == "reference"
    layer.backend = "cpu"
    with pytest.raises(ValueError, match="backend='cpu' cannot run"):
        layer(x)


def test_reference_is_differentiable_in_x():
    layer = exact_layer(8, 32, 4, 16)
    x = torch.randn(2, 32, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@needs_numba
def test_forced_fast_backend_refuses_grad():
    layer = exact_layer(8, 32, 4, 16, bias=False)
    layer.backend = "cpu"
    with pytest.raises(ValueError, match="inference-only"):
        layer(torch.randn(2, 32, requires_grad=True))


def test_bad_backend_name():
    with pytest.raises(ValueError, match="backend='gpu'"):
        PackedLinear.from_linear(nn.Linear(32, 8), group_size=16, backend="gpu")


def test_bad_packed_buffers_name_the_argument():
    layer = exact_layer(8, 32, 4, 16)
    common = dict(scales=layer.scales, zeros=layer.zeros, group_size=16)
    with pytest.raises(ValueError, match="pack_bits=3 must be 2, 4 or 8"):
        dequantize_packed(layer.qweight, pack_bits=3, **common)
    with pytest.raises(TypeError, match=r"qweight must be a 2-D torch.uint8 tensor .* got torch.int32 of shape \(8, 16\)"):
        dequantize_packed(layer.qweight.int(), pack_bits=4, **common)
    with pytest.raises(TypeError, match="qweight must be .* got list"):
        dequantize_packed([[1, 2]], pack_bits=4, **common)
    with pytest.raises(ValueError, match=r"qweight must be 2-D .* got shape \(1, 8, 16\)"):
        PackedLinear(layer.qweight[None], layer.scales, layer.zeros, in_features=32, bits=4, group_size=16)
    with pytest.raises(TypeError, match="qweight must be a 2-D torch.uint8 tensor .* got torch.float32"):
        PackedLinear(layer.qweight.float(), layer.scales, layer.zeros, in_features=32, bits=4, group_size=16)


def test_shapes_and_dtypes():
    layer = exact_layer(24, 64, 4, 32)
    x = torch.randn(2, 3, 64)
    with torch.no_grad():
        y = layer(x)
        assert y.shape == (2, 3, 24)
        assert layer(x.to(torch.bfloat16)).dtype == torch.bfloat16
        assert layer(torch.randn(0, 64)).shape == (0, 24)
    with pytest.raises(ValueError, match=r"expected \[..., 64\]"):
        layer(torch.randn(2, 63))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(2, 64, dtype=torch.int64))


def test_constructor_checks_shapes():
    q = pack(torch.zeros(4, 8, dtype=torch.uint8), 4)
    s, z = torch.ones(4, 2), torch.zeros(4, 2, dtype=torch.uint8)
    PackedLinear(q, s, z, in_features=8, bits=4, group_size=4)
    with pytest.raises(ValueError, match="in_features=16"):
        PackedLinear(q, s, z, in_features=16, bits=4, group_size=4)
    with pytest.raises(ValueError, match="group_size=3"):
        PackedLinear(q, s, z, in_features=8, bits=4, group_size=3)
    with pytest.raises(ValueError, match="scales"):
        PackedLinear(q, torch.ones(4, 3), z, in_features=8, bits=4, group_size=4)
    with pytest.raises(TypeError, match="uint8"):
        PackedLinear(q.int(), s, z, in_features=8, bits=4, group_size=4)


# ------------------------------------------------------------------ state and caches

@needs_numba
def test_load_state_dict_refreshes_the_kernel_layout():
    a, b = exact_layer(16, 64, 4, 32, seed=1), exact_layer(16, 64, 4, 32, seed=2)
    x = int_input(1, 64)
    run(a, x, "cpu")  # builds and caches a's layout
    a.load_state_dict(b.state_dict())
    assert torch.equal(run(a, x, "cpu"), run(b, x, "reference"))


@needs_numba
def test_in_place_edit_of_perm_refreshes_the_kernel_layout():
    """The layout is stamped with every buffer's `_version`: writing into perm (not only into
    qweight, scales and zeros) must rebuild it, or the cpu backend reads the old column order."""
    layer = exact_layer(16, 64, 4, 32, perm=True, bias=False)
    x = int_input(1, 64)
    run(layer, x, "cpu")                                       # builds and caches the layout
    with torch.no_grad():
        layer.perm.copy_(torch.randperm(64, generator=_gen(5)))
    assert torch.equal(run(layer, x, "cpu"), run(layer, x, "reference"))


def test_kept_layout_stamp_tells_apart_a_new_tensor_at_the_same_address():
    """A stamp of (address, _version) alone would take a new tensor that lands at a freed one's
    address, also at version 0, for the old one: the stamp holds the tensor (weakly) as well."""
    from minicomp.kernels import _same_tensors, _stamp

    a = torch.zeros(4)
    b = a.detach()                      # another tensor object: same address, same version
    assert b.data_ptr() == a.data_ptr() and b._version == a._version
    stamp = _stamp((a, None))
    assert _same_tensors(stamp, (a, None))
    assert not _same_tensors(stamp, (b, None))
    assert not _same_tensors(stamp, (a, a))                    # perm added
    a.add_(1)
    assert not _same_tensors(stamp, (a, None))                 # written in place


@needs_numba
def test_a_layer_with_kernel_caches_pickles_and_deep_copies():
    """torch.save / copy.deepcopy of a layer that has run: its caches (whose stamps hold weak
    references) are left behind and remade on first use."""
    import copy
    import io

    layer = exact_layer(16, 64, 4, 32, perm=True)
    x = int_input(2, 64)
    want = run(layer, x, "cpu")
    assert layer.kernel_cache_nbytes > 0
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    for again in (torch.load(buf, weights_only=False), copy.deepcopy(layer)):
        assert again.kernel_cache_nbytes == 0
        assert torch.equal(run(again, x, "cpu"), want)
    assert layer.kernel_cache_nbytes > 0                       # the original keeps its own


def test_quantized_weight_keeps_symmetric():
    lin = nn.Linear(64, 8, bias=False)
    qw = rtn_quantize(lin.weight.detach(), 4, 32, symmetric=True, scale_dtype=torch.float16)
    layer = PackedLinear.from_quantized(qw)
    assert layer.symmetric
    back = layer.quantized_weight()
    assert back.symmetric and back.nbytes == qw.nbytes          # no zero points counted
    assert torch.equal(back.zero, torch.full_like(back.zero, 8))
    assert PackedLinear.from_linear(lin, 4, 32, symmetric=True).quantized_weight().symmetric
    assert not PackedLinear.from_linear(lin, 4, 32).quantized_weight().symmetric


def test_constructor_checks_symmetric_and_bits():
    q = pack(torch.zeros(4, 8, dtype=torch.uint8), 4)
    s = torch.ones(4, 2)
    mid = torch.full((4, 2), 8, dtype=torch.uint8)             # 2^(4-1): the symmetric zero point
    assert PackedLinear(q, s, mid, in_features=8, bits=4, group_size=4, symmetric=True).symmetric
    with pytest.raises(ValueError, match=r"symmetric=True needs every zero point to be 2\^\(bits-1\) = 8"):
        PackedLinear(q, s, mid - 1, in_features=8, bits=4, group_size=4, symmetric=True)
    with pytest.raises(TypeError, match="symmetric must be True or False"):
        PackedLinear(q, s, mid, in_features=8, bits=4, group_size=4, symmetric="yes")
    with pytest.raises(ValueError, match="bits=None must be an int from 1 to 8"):
        PackedLinear(q, s, mid, in_features=8, bits=None, group_size=4)


def test_scale_dtype_must_be_a_float_dtype():
    lin = nn.Linear(64, 8)
    with pytest.raises(TypeError, match=r"scale_dtype=torch\.int8 must be a floating-point torch\.dtype"):
        PackedLinear.from_linear(lin, 4, 32, scale_dtype=torch.int8)
    qw = rtn_quantize(lin.weight.detach(), 4, 32)
    with pytest.raises(TypeError, match="scale_dtype='float16'"):
        PackedLinear.from_quantized(qw, scale_dtype="float16")


# ------------------------------------------------------------------ long groups on the cpu

@needs_numba
def test_cpu_layout_cuts_long_groups_into_chunks():
    """Groups of at most CHUNK_CODES codes keep one scale each (layout as it always was); a longer
    group is cut into equal chunks of at most CHUNK_CODES codes, its scale repeated per chunk."""
    assert cpu_backend.CHUNK_CODES == 128
    assert [cpu_backend.chunk_words(w, 4) for w in (4, 16, 32, 512, 1376, 37)] == [4, 16, 16, 16, 16, 1]
    assert [cpu_backend.chunk_words(w, 8) for w in (32, 64)] == [32, 32]        # 128 codes: 32 words
    assert [cpu_backend.chunk_words(w, 2) for w in (8, 16, 688)] == [8, 8, 8]  # 128 codes: 8 words
    for bits, gs, n_chunks in ((4, 128, 8), (8, 128, 8), (2, 128, 8), (4, 64, 16), (4, -1, 8), (8, -1, 8)):
        layer = PackedLinear.from_linear(nn.Linear(1024, 8), bits, gs)
        lay = cpu_backend.layout(layer)
        assert lay.scales.shape[1] == lay.zeros.shape[1] == n_chunks, (bits, gs)
        per_group = n_chunks // layer.scales.shape[1]
        np.testing.assert_array_equal(lay.scales[0, :, :8].T, np.repeat(layer.scales.float().numpy(), per_group, 1))


@needs_numba
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("m", [1, 3])
def test_cpu_keeps_float32_precision_with_long_groups_and_positive_inputs(bits, m):
    """One group per row of 8192 inputs, all positive (as after a ReLU): the fused kernel's sums
    end in a subtraction of two nearly equal numbers, 2^bits·(Σ f·x − Σ x) or Σ q·x − z·Σ x. Over a
    whole row in float32 that lost 1.5e-4 to 8e-4 (relative); in chunks of 128 codes it is
    at most ~1e-5 (the reference's matmul: ~1e-6)."""
    lin = nn.Linear(8192, 64, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(64, 8192, generator=_gen(bits)))
    layer = PackedLinear.from_linear(lin, bits, -1)
    w = dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=layer.pack_bits,
                          group_size=layer.group_size).double()
    x = torch.randn(m, 8192, generator=_gen(m)).relu()
    exact = x.double() @ w.T
    got = run(layer, x, "cpu").double()
    assert (got - exact).abs().max() / exact.abs().max() < 3e-5


# ------------------------------------------------------------------ whole models

def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10))


def test_pack_model_swaps_quantlinears():
    from minicomp.calibrate import quantize_model

    model = quantize_model(_tiny_model(), "rtn", bits=4, group_size=32, progress=False)
    x = torch.randn(5, 64)
    with torch.no_grad():
        simulated = model(x)
        pack_model(model)
        assert len(packed_layers(model)) == 3
        assert not any(isinstance(m, QuantLinear) for m in model.modules())
        for backend in ["reference", *FAST]:
            set_backend(model, backend)
            assert torch.allclose(model(x), simulated, rtol=1e-4, atol=1e-5)


def test_pack_model_can_quantize_plain_linears():
    model = _tiny_model()
    x = torch.randn(3, 64)
    with torch.no_grad():
        before = model(x)
        pack_model(model, linear_bits=8, group_size=64)  # 32 and 128 inputs: one group per row
        assert len(packed_layers(model)) == 3
        after = model(x)
    assert (after - before).norm() / before.norm() < 0.02


# ------------------------------------------------------------------ the packed_gemv exercise

from minicomp.grading import check, get_checker  # noqa: E402
from minicomp.pack import unpack_int4  # noqa: E402


def test_each_known_gemv_mistake_is_named():
    for mistake in get_checker("packed_gemv").mistakes:
        report = check("packed_gemv", mistake.fn)
        assert not report.passed
        assert report.hint == f"this looks like {mistake.name}. {mistake.hint}", mistake.name


def _dequant(packed, scales, zeros, group_size, how):
    q = unpack_int4(packed).float()
    out, n_in = q.shape
    q = q.reshape(out, n_in // group_size, group_size)
    return how(q, scales.float()[..., None], zeros.float()[..., None]).reshape(out, n_in)


FURTHER_WRONG_GEMVS = {
    "divides by the scale": lambda p, s, z, x, g: _dequant(p, s, z, g, lambda q, s, z: (q - z) / s) @ x,
    "returns the weight, not y": lambda p, s, z, x, g: _dequant(p, s, z, g, lambda q, s, z: (q - z) * s),
    "multiplies by the transposed weight":
        lambda p, s, z, x, g: x @ _dequant(p, s, z, g, lambda q, s, z: (q - z) * s).T.T.T.sum(0, keepdim=True).T,
    "takes group_size as the number of groups":
        lambda p, s, z, x, g: _dequant(p, s, z, g, lambda q, s, z: (q - z) * s) @ x * (g / p.shape[1]),
    "ignores the high nibbles":
        lambda p, s, z, x, g: ((p & 15).float() - z.float().repeat_interleave(g // 2, 1)) * s.repeat_interleave(g // 2, 1) @ x[0::2],
    "returns float64": lambda p, s, z, x, g: (_dequant(p, s, z, g, lambda q, s, z: (q - z) * s) @ x).double() + 1e-3,
}




def test_fused_formula_passes_the_gemv_checker():
    """The zero-point trick of the fused kernels, s·(Σ q·x − z·Σ x), is a correct answer."""
    def fused(packed, scales, zeros, x, group_size):
        q = unpack_int4(packed).float()
        out, n_in = q.shape
        qx = (q * x).reshape(out, -1, group_size).sum(-1)     # [out, groups]  Σ q·x
        xs = x.reshape(-1, group_size).sum(-1)                # [groups]       Σ x
        return (scales.float() * (qx - zeros.float() * xs)).sum(-1)

    assert check("packed_gemv", fused).passed


# ------------------------------------------------------------------ the two_codes_fp16 exercise

FURTHER_WRONG_TWO_CODES = {
    "returns the int32 bits": lambda w: (w & 0x000F000F) | 0x64006400,
    "returns [2, ...] (halves first)": lambda w: ((w & 0x000F000F) | 0x64006400).view(torch.float16)
    .reshape(*w.shape, 2).movedim(-1, 0),
    "flattens the pairs": lambda w: ((w & 0x000F000F) | 0x64006400).view(torch.float16),
    "arithmetic instead of bits, in float32":
        lambda w: torch.stack((1024 + (w & 15), 1024 + ((w >> 16) & 15)), dim=-1).float(),
}


FURTHER_WRONG = [("packed_gemv", name, fn) for name, fn in FURTHER_WRONG_GEMVS.items()] + \
    [("two_codes_fp16", name, fn) for name, fn in FURTHER_WRONG_TWO_CODES.items()]


@pytest.mark.parametrize("exercise,name,wrong", FURTHER_WRONG, ids=[f"{e}: {n}" for e, n, _ in FURTHER_WRONG])
def test_further_wrong_answers_are_rejected(exercise, name, wrong):
    report = check(exercise, wrong)
    assert not report.passed and report.status == "failed", name
    assert "Traceback" not in str(report)


def test_two_codes_fp16_accepts_arithmetic_with_the_right_values():
    """Any way to the right fp16 values passes: the check compares values (and the dtype)."""
    assert check("two_codes_fp16", lambda w: torch.stack((1024 + (w & 15), 1024 + ((w >> 16) & 15)), dim=-1)
                 .to(torch.float16)).passed


# ------------------------------------------------------------------ minicomp bench (smoke test)

def test_bench_writes_a_results_file(tmp_path, capsys):
    import json

    from minicomp.bench import check_targets, main
    from minicomp.hardware import copies_beyond_cache

    assert main(["--device", "cpu", "--sizes", "256x128", "--batches", "1,3", "--repeats", "1",
                 "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("bench-cpu-*.json")
    result = json.loads(path.read_text())
    assert result["machine"]["cpu"] and result["settings"]["repeats"] == 1
    assert result["settings"]["cpu_kernel_threads"] == cpu_backend.describe_threads()
    assert result["settings"]["triton_tuned"] == triton_backend.tuned()  # [] where nothing was tuned
    if cpu_backend.available():
        want = "PyTorch's OpenMP threads" if cpu_backend._openmp() is not None else "a thread pool of its own"
        assert cpu_backend.describe_threads() == want
    variants = {r["variant"] for r in result["rows"]}
    assert {"fp32", "int4-reference", "int8-fused" if cpu_backend.available() else "fp32"} <= variants
    for r in result["rows"]:
        assert r["median_s"] > 0 and r["speedup_vs_fp32"] > 0
        # what a PackedLinear's backend keeps beside its weight: the cpu kernel's blocked copy
        assert ("kernel_cache_bytes" in r) == (r["variant"] in ("int8-fused", "int4-reference", "int4-fused"))
        if r["variant"] == "int4-fused" and cpu_backend.available():
            assert r["kernel_cache_bytes"] >= 256 * 128 // 2      # the codes once more, at least
        if r["variant"] == "int4-reference":
            assert r["kernel_cache_bytes"] == 0                    # it keeps nothing
    assert check_targets(result["rows"])[-1]["what"].startswith("packed INT4")  # bytes target found
    assert "int4-reference" in capsys.readouterr().out
    assert all(r["copies"] == copies_beyond_cache(256 * 128 * 4) for r in result["rows"])
    path.unlink()
    assert main(["--device", "cpu", "--sizes", "256x128", "--batches", "1", "--repeats", "1", "--warm-cache",
                 "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("bench-cpu-*.json")
    assert {r["copies"] for r in json.loads(path.read_text())["rows"]} == {1}


def test_kernel_cache_nbytes_counts_what_a_backend_keeps_beside_the_weight():
    layer = exact_layer(72, 512, 4, 128, bias=False)
    assert layer.kernel_cache_nbytes == 0                      # nothing until it runs
    if cpu_backend.available():
        run(layer, int_input(1, 512), "cpu")
        lay = cpu_backend.layout(layer)
        assert layer.kernel_cache_nbytes == lay.words.nbytes + lay.scales.nbytes + lay.zeros.nbytes
        assert layer.kernel_cache_nbytes > layer.qweight.numel()   # the codes once more, scales in float32
    layer._kernel_cache["t"] = (("stamp", 1), (torch.zeros(3, dtype=torch.int32), [torch.zeros(2)]))
    assert layer.kernel_cache_nbytes == (0 if not cpu_backend.available() else lay.words.nbytes
                                         + lay.scales.nbytes + lay.zeros.nbytes) + 12 + 8
    layer.to("cpu")                                            # `.to()` drops them
    assert layer.kernel_cache_nbytes == 0


def test_bench_contestants_compute_the_same_layer():
    """Every contestant times the same y = x Wᵀ (int4 ones with the same codes)."""
    import warnings

    from minicomp.bench import contestants

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fns, sizes = contestants(256, 512, torch.device("cpu"))
        x = torch.randn(3, 512, generator=_gen(5))
        with torch.no_grad():
            out = {name: f(x).float() for name, f in fns.items()}
    for name, y in out.items():
        assert (y - out["fp32"]).norm() / out["fp32"].norm() < 0.15, name
        if name.startswith("int4"):
            assert torch.allclose(y, out["int4-reference"], rtol=1e-3, atol=1e-3), name
    assert sizes["fp32"] / sizes["int4-reference"] > 7.5


@pytest.mark.skipif(not cpu_backend.available(), reason="numba is not installed")
def test_run_shared_does_not_wait_for_a_paused_thread():
    """A helper thread that stalls mid-block (the OS paused it) must not stall the call: the
    calling thread computes that block itself, and every block is computed."""
    import threading
    import time

    caller = threading.current_thread()
    done = np.zeros(37, np.int64)

    def run(done, todo, state):  # the `run` protocol of kernels(bits)[0], in Python
        mine = 0
        while True:
            c = int(state[0])
            state[0] += 1  # one step under the GIL: atomic enough here
            if c >= len(todo):
                return mine
            if threading.current_thread() is not caller:
                time.sleep(1.0)  # paused mid-block
            done[todo[c]] += 1
            state[1 + c] = 1
            mine += 1

    t0 = time.perf_counter()
    finished = cpu_backend._run_shared(run, (done,), n_blocks=37, threads=3)
    assert time.perf_counter() - t0 < 0.9, "the call waited for the paused threads"
    assert not finished  # so `linear` copies its output before returning it
    assert (done >= 1).all()


@pytest.mark.skipif(not cpu_backend.available(), reason="numba is not installed")
@pytest.mark.parametrize("m", [1, 5])
def test_cpu_run_computes_exactly_the_listed_blocks(m):
    """`run` on a list of blocks (how `_run_shared` redoes a paused thread's blocks) writes those
    blocks' rows, right, marks each done, and leaves every other row alone."""
    layer = PackedLinear.from_linear(nn.Linear(256, 4 * cpu_backend.BLOCK_ROWS, bias=False), bits=4,
                                     group_size=64)
    lay = cpu_backend.layout(layer)
    x = torch.randn(m, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.backend = "reference"
        want = layer(x)
    y = np.full((m, 4 * cpu_backend.BLOCK_ROWS), -7.0, np.float32)
    todo, state = np.array([2, 0], np.int64), np.zeros(3, np.int64)
    run, _ = cpu_backend.kernels(4)
    assert run(lay.words, lay.scales, lay.zeros, x.numpy().reshape(m, -1, 8), y, todo, state) == 2
    assert state.tolist() == [3, 1, 1]  # every claim taken (one past the end), both blocks done
    rows = cpu_backend.BLOCK_ROWS
    for b in (0, 2):
        np.testing.assert_allclose(y[:, b * rows:(b + 1) * rows], want[:, b * rows:(b + 1) * rows].numpy(),
                                   atol=1e-4, rtol=1e-4)
    for b in (1, 3):
        assert (y[:, b * rows:(b + 1) * rows] == -7.0).all()


@pytest.mark.skipif(not cpu_backend.available(), reason="numba is not installed")
@pytest.mark.parametrize("threading", ["openmp", "pool"])
@pytest.mark.parametrize("m", [1, 3])
def test_cpu_backend_threaded_path_matches_reference(m, threading, monkeypatch):
    """Big enough (≥ 8M multiply-adds) for the work to be split across threads, on PyTorch's
    OpenMP threads where it can and on a thread pool otherwise."""
    monkeypatch.setenv("MINICOMP_CPU_THREADS", "2")
    monkeypatch.setattr(cpu_backend, "THREADING", "auto" if threading == "openmp" else "pool")
    if threading == "openmp" and cpu_backend._openmp() is None:
        pytest.skip("PyTorch does not run on an OpenMP runtime minicomp can find here")
    layer = PackedLinear.from_linear(nn.Linear(2048, 4096), bits=4, group_size=128)
    assert cpu_backend._threads(layer.out_features // cpu_backend.BLOCK_ROWS, 2048 * 4096,
                               openmp=cpu_backend._openmp() is not None) == 2
    x = torch.randn(m, 2048, generator=torch.Generator().manual_seed(m))
    with torch.no_grad():
        layer.backend = "reference"
        want = layer(x)
        layer.backend = "cpu"
        got = layer(x)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


@needs_numba
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_cpu_slabs_agree_exactly_with_reference(case, monkeypatch):
    """Many rows of x: dequantized slabs times BLAS. Several slabs (a tiny SLAB_BYTES), the last
    one short and still holding the previous slab's values, and act-order too: exact anyway."""
    out, n_in, bits, gs = case
    monkeypatch.setattr(cpu_backend, "SLAB_BYTES", 4 * n_in * cpu_backend.BLOCK_ROWS)  # 1 block a slab
    layer = exact_layer(3 * cpu_backend.BLOCK_ROWS + out, n_in, bits, gs, perm=True)  # 4 or 5 blocks
    x = int_input(cpu_backend.GEMM_ROWS + 3, n_in)
    expected = run(layer, x, "reference")
    assert torch.equal(run(layer, x, "cpu"), expected)            # through `linear` and `forward`
    monkeypatch.setattr(cpu_backend, "SLAB_BYTES", 3 * 4 * n_in * cpu_backend.BLOCK_ROWS)  # 3, then 1 or 2
    with torch.no_grad():
        assert torch.equal(cpu_backend.slab_linear(layer, x) + layer.bias, expected)


@needs_numba
@pytest.mark.parametrize("threading", ["openmp", "pool"])
def test_cpu_slabs_decoded_on_threads_agree_exactly(threading, monkeypatch):
    """Slabs big enough (1M weights) to be decoded by two threads of PyTorch's OpenMP team, each
    claiming pieces of blocks; on a thread pool one thread decodes. Exact either way."""
    monkeypatch.setenv("MINICOMP_CPU_THREADS", "2")
    monkeypatch.setattr(cpu_backend, "THREADING", "auto" if threading == "openmp" else "pool")
    monkeypatch.setattr(cpu_backend, "SLAB_BYTES", 4 << 20)    # 8 blocks of 1024 inputs a slab
    if threading == "openmp" and cpu_backend._openmp() is None:
        pytest.skip("PyTorch does not run on an OpenMP runtime minicomp can find here")
    assert cpu_backend._threads(8 * cpu_backend.PIECES, 1024 * 1024, openmp=True) == 2
    layer = exact_layer(1000, 1024, 4, 128, perm=True)
    x = int_input(cpu_backend.GEMM_ROWS, 1024)
    assert torch.equal(run(layer, x, "cpu"), run(layer, x, "reference"))


@needs_numba
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_dequantize_blocks_is_the_reference_dequantization(bits):
    """`dequantize_blocks` writes W's rows of the blocks asked for, transposed, and nothing else;
    asked for a block that does not exist it raises instead of reading past the codes."""
    rows = cpu_backend.BLOCK_ROWS
    layer = PackedLinear.from_linear(nn.Linear(256, 3 * rows - 5), bits=bits, group_size=64)
    w = dequantize_packed(layer.qweight, layer.scales, layer.zeros, pack_bits=layer.pack_bits,
                          group_size=64)                                       # [out, in]
    lay = cpu_backend.layout(layer)
    dequantize, _ = cpu_backend.dequantizer(layer.pack_bits)
    out = np.full((256, 3 * rows), -7.0, np.float32)
    state = np.zeros(1, np.int64)
    dequantize(lay.words, lay.scales, lay.zeros, 1, 2, out, state)             # blocks 1 and 2
    assert state[0] >= 2 * cpu_backend.PIECES                                   # every piece claimed
    np.testing.assert_array_equal(out[:, :2 * rows - 5], w[rows:].T.numpy())
    assert (out[:, 2 * rows - 5:2 * rows] == 0).all()                          # padding rows: scale 0
    assert (out[:, 2 * rows:] == -7.0).all()                                   # not asked for
    for first, n in ((2, 2), (-1, 1)):
        with pytest.raises(ValueError, match="out of range"):
            dequantize(lay.words, lay.scales, lay.zeros, first, n, out, np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="out of range"):                      # too few input rows
        dequantize(lay.words, lay.scales, lay.zeros, 0, 1, out[:128], np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="out of range"):                      # the OpenMP path's check
        cpu_backend.pack_dequantize(lay.words, lay.scales, lay.zeros, 2, 2, out, np.zeros(1, np.int64),
                                    32 // layer.pack_bits)


@needs_numba
def test_cpu_backend_fuses_below_gemm_rows_and_uses_slabs_from_there(monkeypatch):
    layer = exact_layer(16, 64, 4, 32)
    calls = []
    monkeypatch.setattr(cpu_backend, "fused_linear", lambda lay, x, check: calls.append(("fused", len(x))))
    monkeypatch.setattr(cpu_backend, "slab_linear", lambda lay, x, check: calls.append(("slab", len(x))))
    for m in (1, cpu_backend.GEMM_ROWS - 1, cpu_backend.GEMM_ROWS, 4 * cpu_backend.GEMM_ROWS):
        cpu_backend.linear(layer, torch.zeros(m, 64))
    rows = cpu_backend.GEMM_ROWS
    assert calls == [("fused", 1), ("fused", rows - 1), ("slab", rows), ("slab", 4 * rows)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OpenMP path is found on Linux")
def test_openmp_runtime_is_pytorchs_own(monkeypatch):
    """On Linux with an OpenMP PyTorch (the PyPI wheels) the kernel runs on PyTorch's own
    OpenMP runtime, even when another package has loaded a copy of its own (scikit-learn does):
    opening it again must not map a new library."""
    import ctypes

    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this PyTorch does not use OpenMP")

    def runtimes():
        with open("/proc/self/maps") as f:
            return {line.split()[-1] for line in f if "libgomp" in line or "libiomp5" in line}

    torch_dir = os.path.dirname(torch.__file__)
    ours = [p for p in runtimes() if p.startswith(torch_dir)]
    if not ours:
        pytest.skip("this PyTorch's OpenMP runtime is not in its own folder")
    try:  # scikit-learn (a course dependency) loads its own libgomp: the case to get right
        import sklearn.cluster  # noqa: F401
    except ImportError:
        pass
    before = runtimes()
    cpu_backend._torch_openmp.cache_clear()
    gomp_parallel = cpu_backend._torch_openmp()
    assert gomp_parallel is not None
    assert runtimes() == before, "a second OpenMP runtime was loaded"
    assert ctypes.cast(gomp_parallel, ctypes.c_void_p).value == ctypes.cast(
        ctypes.CDLL(ours[0]).GOMP_parallel, ctypes.c_void_p).value


@pytest.mark.skipif(not cpu_backend.available(), reason="numba is not installed")
def test_cpu_kernels_are_cached_on_disk():
    """A fresh process must load the compiled kernel from numba's disk cache, not compile it again
    (seconds per bit width). Closures over objects numba cannot pickle silently disable the cache."""
    import subprocess

    code = ("import torch, torch.nn as nn\n"
            "from minicomp.kernels import PackedLinear, cpu\n"
            "layer = PackedLinear.from_linear(nn.Linear(64, 64), bits=4, group_size=32, backend='cpu')\n"
            "with torch.no_grad():\n"
            "    layer(torch.randn(1, 64))\n"
            "print(sum(cpu.kernels(4)[0].stats.cache_hits.values()), cpu.kernels(4)[1].cache_hits)\n")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    run_hits, openmp_hits = map(int, runs[1].stdout.split()[-2:])
    assert run_hits >= 1, "the second process compiled the kernel again"
    assert openmp_hits >= 1, "the second process compiled the OpenMP kernel again"


def test_quantlinear_packed_is_the_same_layer_and_refuses_w8a8():
    lin = nn.Linear(64, 16)
    sim = QuantLinear.from_linear(lin, bits=4, group_size=32)
    packed = sim.packed(backend="reference")
    assert isinstance(packed, PackedLinear) and packed.backend == "reference"
    x = torch.randn(3, 64)
    with torch.no_grad():
        torch.testing.assert_close(packed(x), sim(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="act_bits=8.*weight-only"):
        QuantLinear.from_linear(lin, bits=4, group_size=32, act_bits=8).packed()


@pytest.mark.skipif(not hasattr(os, "fork") or not cpu_backend.available(), reason="needs fork and numba")
def test_cpu_backend_runs_in_a_forked_child(monkeypatch):
    """After the parent ran on OpenMP threads, a forked child has none: the kernel must not wait
    for them (it would hang forever) but run on threads of its own."""
    import multiprocessing

    monkeypatch.setenv("MINICOMP_CPU_THREADS", "2")
    layer = PackedLinear.from_linear(nn.Linear(2048, 4096), bits=4, group_size=128)
    x = torch.randn(1, 2048, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = layer(x)  # the parent's threaded path

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child():
        with torch.no_grad():
            queue.put(layer(x).numpy())

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(60)
    if proc.is_alive():
        proc.kill()
        pytest.fail("the kernel hung in a forked child")
    assert proc.exitcode == 0
    torch.testing.assert_close(torch.from_numpy(queue.get(timeout=5)), want)


@needs_triton
def test_tune_checks_the_default_configuration_against_the_reference_too(monkeypatch):
    """A wrong default must not win either: every candidate is checked against the reference
    kernel, on real-valued fp16 inputs (the 16-bit store's rounding is allowed for)."""
    triton_backend._import()
    monkeypatch.setattr(triton_backend, "_tuned", {})
    layer = PackedLinear.from_linear(nn.Linear(512, 72, bias=False), bits=4, group_size=128,
                                     backend="triton").to(_triton_device())
    x = torch.randn(1, 512, generator=torch.Generator().manual_seed(3)).to(_triton_device(), torch.float16)
    default = triton_backend.candidates(1, 72, 512, 4, 128)[0]
    launch = triton_backend._launch

    def faulty_launch(layer, x, cfg):
        y = launch(layer, x, cfg)
        return y * 1.01 if cfg == default else y

    monkeypatch.setattr(triton_backend, "_launch", faulty_launch)
    cfg = triton_backend.tune(layer, x, timer=lambda fn: 1e-6)
    (record,) = triton_backend.tuned()
    assert "differs from the reference kernel" in record["candidates"][0]["error"]
    assert cfg != default and all(c["us"] is not None for c in record["candidates"][1:])


@needs_triton
def test_the_kernel_modules_import_by_name_and_are_what_the_backend_launches():
    """`from minicomp.kernels.triton import tile` in a fresh process, before the backend's first
    call, gives the kernel module (an early version kept a None placeholder under that name), and
    the backend then launches those very modules' kernels."""
    import subprocess

    code = ("from minicomp.kernels.triton import common, gemv, half2, tile\n"
            "from minicomp.kernels import triton as backend\n"
            "backend._import()\n"
            "assert (backend.common, backend.gemv, backend.half2, backend.tile) == (common, gemv, half2, tile)\n"
            "print(gemv.packed_gemv.fn.__name__, half2.packed_gemv_half2.fn.__name__, tile.packed_matmul.fn.__name__,"
            " common.finish_tile.fn.__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["packed_gemv", "packed_gemv_half2", "packed_matmul", "finish_tile"]


def test_programs_per_sm_and_the_launch_grid():
    """The occupancy arithmetic `benchmarks/triton_static.py` reports: registers are given 256 to
    a warp at a time, and registers, warps, programs and shared memory each cap the programs one
    SM holds. And the launch grid: the tensor-core default puts ~512 programs on an 8192-row layer."""
    tile = {"registers": 96, "warps": 4, "shared": 16384}           # the batch-16 default on sm_90
    assert sass.programs_per_sm(tile) == 5                 # 65536 // (3072 · 4)
    assert sass.programs_per_sm({**tile, "registers": 95}) == 5   # 95·32 = 3040 rounds up to 3072
    assert sass.programs_per_sm({**tile, "shared": 100_000}) == 2  # 228 KB // 100 KB
    assert sass.programs_per_sm({**tile, "shared": 100_000}, arch=80) == 1  # 164 KB
    assert sass.programs_per_sm({"registers": 32, "warps": 1, "shared": 0}) == 32  # the program cap
    assert sass.programs_per_sm({"registers": 24, "warps": 16, "shared": 0}) == 4  # the warp cap
    gemv = triton_backend._gemv(8192, 8192, 4, 128, 32, 1, 2048)
    assert triton_backend.launch_grid(gemv, 1, 8192) == (1, 256, 8)
    half2 = triton_backend._half2(8192, 8192, 128, 32, 1, 2048, False, block_m=4)
    assert triton_backend.launch_grid(half2, 6, 8192) == (2, 256, 8)
    tc = triton_backend._config(16, 8192, 8192, 4, 128)
    assert triton_backend.launch_grid(tc, 16, 8192) == (128, 1, 4)


@pytest.mark.parametrize("broken", [False, True], ids=["missing", "broken"])
def test_without_numba_the_library_still_runs_and_says_why(tmp_path, broken):
    """numba missing (no wheel for this Python yet, say) or installed but unimportable (built for
    another NumPy): the library still imports, PackedLinear runs the reference backend with the
    same numbers, and the cpu backend says which it was and what to do. A broken install also
    warns once, instead of quietly running slowly."""
    if broken:
        (tmp_path / "numba").mkdir()
        (tmp_path / "numba" / "__init__.py").write_text("raise ImportError('Numba needs NumPy 2.3 or less')\n")
    else:   # a finder that says numba does not exist, as it does where it is not installed
        (tmp_path / "sitecustomize.py").write_text(
            "import sys\nclass _NoNumba:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('numba', 'llvmlite'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, _NoNumba())\n")
    code = ("import warnings\nwarnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    import torch\n"
            "    from minicomp.kernels import PackedLinear, cpu\n"
            "torch.manual_seed(0)\n"
            "layer = PackedLinear.from_linear(torch.nn.Linear(256, 64), bits=4, group_size=128)\n"
            "x = torch.randn(2, 256)\n"
            "auto = layer.choose_backend(x)\n"
            "y = layer(x)\n"
            "layer.backend = 'reference'\n"
            "print(cpu.available(), cpu.UNAVAILABLE, auto, torch.equal(y, layer(x)), sep='|')\n"
            "print(sum('fused CPU kernels are off' in str(w.message) for w in seen))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    first, warned = done.stdout.strip().splitlines()[-2:]
    ok, why, auto, same = first.split("|")
    assert (ok, auto, same) == ("False", "reference", "True"), first
    if broken:
        assert "installed but does not import" in why and "NumPy 2.3" in why and "pip install -U numba" in why
        assert warned == "1"
    else:
        assert why == "numba is not installed (pip install numba)" and warned == "0"



@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_numba)])
def test_a_layer_checks_x_once_and_a_direct_call_checks_it_too(monkeypatch, backend):
    """PackedLinear.forward checks x, then calls the backend with check=False: x is not checked
    twice on the hot path. A backend's linear called directly (lesson 09 does) still checks."""
    from minicomp.kernels import reference as reference_backend
    layer = exact_layer(16, 64, 4, 32)
    layer.backend = backend
    calls = []
    real = reference_backend.check_call
    monkeypatch.setattr(reference_backend, "check_call", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(cpu_backend, "check_call", reference_backend.check_call)
    x = torch.randn(3, 64)
    y = layer(x)
    assert calls == []
    module = reference_backend if backend == "reference" else cpu_backend
    assert torch.allclose(module.linear(layer, x) + layer.bias, y, atol=1e-5) and calls == [1]
    with pytest.raises(ValueError, match=r"x has shape \(3, 65\); expected \[..., 64\]"):
        module.linear(layer, torch.randn(3, 65))
