"""Tests for minicomp.hardware: devices, timing helpers, byte counting, throughput helpers.

No wall-clock asserts: timings are only checked to be positive, finite and consistent.
"""

import math

import pytest
import torch
from torch import nn

from minicomp import hardware as hw
from minicomp.hardware import (
    Timing,
    available_devices,
    compare,
    describe_machine,
    dtype_bytes,
    format_machine,
    gemv_vs_gemm,
    human_bytes,
    linear_cost,
    make_matmul,
    matmul_flops,
    measure,
    measure_bandwidth,
    model_bytes,
    num_threads,
    pick_device,
    ratios,
    roofline,
    tensor_bytes,
    weight_bytes,
)

# ------------------------------------------------------------------ devices and the machine


def test_pick_device_env_override_cpu(monkeypatch):
    monkeypatch.setenv("MINICOMP_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


def test_pick_device_default_is_available(monkeypatch):
    monkeypatch.delenv("MINICOMP_DEVICE", raising=False)
    dev = pick_device()
    assert dev.type in ("cpu", "cuda", "mps")
    if torch.cuda.is_available():
        assert dev.type == "cuda"


def test_pick_device_cpu_only_falls_back_to_cpu(monkeypatch):
    monkeypatch.delenv("MINICOMP_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hw.machine, "_mps_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert available_devices() == ["cpu"]


def test_pick_device_unavailable_override_names_env_var(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("MINICOMP_DEVICE", "cuda:1")
    with pytest.raises(ValueError, match=r"MINICOMP_DEVICE='cuda:1'.*available.*'cpu'"):
        pick_device()


def test_pick_device_garbage_override_names_env_var(monkeypatch):
    monkeypatch.setenv("MINICOMP_DEVICE", "gpu-please")
    with pytest.raises(ValueError, match=r"MINICOMP_DEVICE='gpu-please'.*cpu"):
        pick_device()


def test_pick_device_prefer_beats_env(monkeypatch):
    monkeypatch.setenv("MINICOMP_DEVICE", "gpu-please")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(TypeError, match="prefer must be a str or torch.device"):
        pick_device(3)


def test_describe_machine_keys_and_format(monkeypatch):
    monkeypatch.setenv("MINICOMP_DEVICE", "nonsense")  # must not crash the description
    desc = describe_machine()
    for key in ("cpu", "physical_cores", "logical_cores", "torch_threads", "ram_bytes", "os",
                "python", "torch", "cuda_available", "gpus", "mps_available", "device"):
        assert key in desc
    assert desc["torch"] == torch.__version__
    assert desc["torch_threads"] == torch.get_num_threads()
    assert "invalid override" in desc["device"]
    assert set(desc["compilers"]) == {"numba", "llvmlite", "triton"}
    assert desc["compilers"]["numba"] == __import__("numba").__version__
    text = format_machine(desc)
    assert isinstance(text, str) and "PyTorch" in text and "\n" not in text
    assert f"numba {desc['compilers']['numba']}" in text
    assert format_machine({})  # missing keys are tolerated
    with pytest.raises(TypeError, match="desc must be the dict"):
        format_machine("AMD")


def test_describe_machine_survives_missing_proc(monkeypatch):
    monkeypatch.setattr(hw.machine, "_read", lambda path: "")
    monkeypatch.setattr(hw.machine, "_ram_bytes", lambda: None)
    desc = describe_machine()
    assert desc["cpu"]
    assert "RAM: unknown" in format_machine(desc)


# ------------------------------------------------------------------ timing


def test_measure_returns_sane_timing():
    calls = []
    t = measure(lambda: calls.append(1), warmup=2, repeats=5)
    assert isinstance(t, Timing)
    assert len(calls) == 7
    assert t.repeats == 5 and len(t.times) == 5
    assert all(x >= 0 and math.isfinite(x) for x in t.times)
    assert t.min <= t.median <= max(t.times)
    assert t.min <= t.mean <= max(t.times)
    assert "ms median" in str(t)


def test_timing_from_times_is_exact():
    t = Timing.from_times([3.0, 1.0, 2.0, 10.0])
    assert (t.median, t.mean, t.min, t.repeats) == (2.5, 4.0, 1.0, 4)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"repeats": 0}, ValueError, r"repeats=0 must be >= 1"),
        ({"warmup": -1}, ValueError, r"warmup=-1 must be >= 0"),
        ({"repeats": 2.5}, TypeError, r"repeats must be an int, got float"),
        ({"device": "tpu"}, ValueError, r"device='tpu'"),
    ],
)
def test_measure_validates_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        measure(lambda: None, **kwargs)


def test_num_threads_sets_and_restores():
    before = torch.get_num_threads()
    with num_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), num_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n=0 must be >= 1"), num_threads(0):
        pass
    with pytest.raises(TypeError, match="n must be an int"), num_threads(1.5):
        pass


def test_measure_rejects_non_callable():
    with pytest.raises(TypeError, match="fn must be callable"):
        measure(42)


def test_compare_interleaves_round_robin():
    order = []
    fns = {name: (lambda name=name: order.append(name)) for name in "abc"}
    timings = compare(fns, warmup=1, repeats=3)
    assert list(timings) == ["a", "b", "c"]
    assert all(t.repeats == 3 for t in timings.values())
    # every block of len(fns) consecutive calls runs each function exactly once,
    # and the starting position rotates so none is always first
    assert order == list("abc" "bca" "cab" "abc")
    for i in range(0, len(order), 3):
        assert sorted(order[i:i + 3]) == ["a", "b", "c"]


def test_compare_validates_arguments():
    with pytest.raises(ValueError, match=r"baseline='fp16' is not one of the names in fns"):
        compare({"fp32": lambda: None}, baseline="fp16", repeats=1)
    with pytest.raises(TypeError, match=r"fns\['x'\] must be callable"):
        compare({"x": 1}, repeats=1)
    with pytest.raises(ValueError, match="fns must hold at least one function"):
        compare({}, repeats=1)
    with pytest.raises(TypeError, match="fns must be a dict"):
        compare([lambda: None], repeats=1)
    with pytest.raises(ValueError, match="repeats=0"):
        compare({"x": lambda: None}, repeats=0)


def test_cuda_graph_checks_its_arguments_and_needs_cuda():
    with pytest.raises(TypeError, match="fn must be callable"):
        hw.cuda_graph(3)
    with pytest.raises(ValueError, match="warmup=-1"):
        hw.cuda_graph(lambda: None, warmup=-1)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            hw.cuda_graph(lambda: None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replays_the_kernels_into_the_same_output():
    x = torch.ones(4, device="cuda")
    replay = hw.cuda_graph(lambda: x * 2)
    out = replay()
    assert out.tolist() == [2.0] * 4
    x.fill_(3.0)  # the graph reads x's memory: a replay sees the new values
    assert replay() is out and out.tolist() == [6.0] * 4


def test_bench_times_a_call_eagerly_when_it_cannot_be_captured(monkeypatch):
    from minicomp import bench

    def fake_graph(fn):
        if fn is calls["syncs"]:
            raise RuntimeError("operation not permitted when stream is capturing")
        return lambda: ("replayed", fn())

    calls = {"fp16": lambda: "a", "syncs": lambda: "b"}
    monkeypatch.setattr(hw, "cuda_graph", fake_graph)
    logged = []
    graphed, launch = bench._graphed(calls, logged.append)
    assert graphed["fp16"]() == ("replayed", "a") and graphed["syncs"] is calls["syncs"]
    assert launch["fp16"] == "cuda graph"
    assert launch["syncs"].startswith("eager (RuntimeError: operation not permitted")
    assert len(logged) == 1 and "syncs" in logged[0] and "timed eagerly" in logged[0]


def test_ratios_are_speedups_against_baseline():
    timings = {"slow": Timing.from_times([4.0]), "fast": Timing.from_times([1.0])}
    assert ratios(timings, "slow") == {"slow": 1.0, "fast": 4.0}
    assert ratios(timings, "fast") == {"slow": 0.25, "fast": 1.0}
    with pytest.raises(ValueError, match="baseline='mid'"):
        ratios(timings, "mid")
    with pytest.raises(TypeError, match="timings must be the dict"):
        ratios({"a": 1.0}, "a")


# ------------------------------------------------------------------ bytes


@pytest.mark.parametrize(
    "dtype, size",
    [(torch.float32, 4), (torch.float16, 2), (torch.bfloat16, 2), (torch.int8, 1),
     (torch.int32, 4), (torch.float64, 8), (torch.bool, 1)],
)
def test_dtype_bytes(dtype, size):
    assert dtype_bytes(dtype) == size


def test_dtype_and_tensor_bytes_reject_wrong_types():
    with pytest.raises(TypeError, match="dtype must be a torch.dtype.*got str 'float32'"):
        dtype_bytes("float32")
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        tensor_bytes([1, 2, 3])


def test_tensor_bytes():
    assert tensor_bytes(torch.zeros(10, 3)) == 120
    assert tensor_bytes(torch.zeros(1000, dtype=torch.float16)) == 2000
    assert tensor_bytes(torch.zeros(0)) == 0


def test_model_bytes_counts_params_and_buffers():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    params = 3 * 4 + 4 + 4 + 4  # linear weight+bias, bn weight+bias
    buffers = 4 * 4 + 4 * 4 + 8  # running mean, running var (float32), num_batches_tracked (int64)
    assert model_bytes(model, include_buffers=False) == params * 4
    assert model_bytes(model) == params * 4 + buffers


class _TiedLM(nn.Module):
    def __init__(self, vocab=100, dim=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)  # [vocab, dim]
        self.head = nn.Linear(dim, vocab, bias=False)  # [vocab, dim]
        self.head.weight = self.emb.weight


def test_model_bytes_counts_tied_weights_once():
    model = _TiedLM()
    assert model_bytes(model) == 100 * 8 * 4
    untied = _TiedLM()
    untied.head.weight = nn.Parameter(untied.emb.weight.detach().clone())
    assert model_bytes(untied) == 2 * 100 * 8 * 4


def test_model_bytes_counts_shared_memory_once_even_as_separate_parameters():
    model = _TiedLM()
    model.head.weight = nn.Parameter(model.emb.weight.data)  # new Parameter, same memory
    assert model.head.weight is not model.emb.weight
    assert model_bytes(model) == 100 * 8 * 4


def test_model_bytes_on_meta_device_counts_every_tensor():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(1000, 1000), nn.Linear(1000, 1000))
    assert model_bytes(model) == 2 * (1000 * 1000 + 1000) * 4


def test_model_bytes_rejects_non_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got dict"):
        model_bytes({})


def test_weight_bytes_seven_billion():
    n = 7_000_000_000
    assert weight_bytes(n, 32) == 28_000_000_000
    assert weight_bytes(n, 16) == 14_000_000_000
    assert weight_bytes(n, 8) == 7_000_000_000
    assert weight_bytes(int(7e9), 4) == 3_500_000_000
    assert weight_bytes(0, 4) == 0


def test_weight_bytes_rounds_up():
    assert weight_bytes(1, 4) == 1
    assert weight_bytes(3, 4) == 2
    assert weight_bytes(3, 3) == 2  # 9 bits -> 2 bytes
    assert weight_bytes(1, 1) == 1


@pytest.mark.parametrize(
    "args, exc, pattern",
    [
        ((7e9, 4), TypeError, r"num_params must be an int, got float .*int\("),
        ((-1, 4), ValueError, r"num_params=-1 must be >= 0"),
        ((10, 0), ValueError, r"bits=0 must be a positive"),
        ((10, 4.5), TypeError, r"bits must be an int, got float"),
        ((10, True), TypeError, r"bits must be an int, got bool"),
    ],
)
def test_weight_bytes_validates(args, exc, pattern):
    with pytest.raises(exc, match=pattern):
        weight_bytes(*args)


def test_human_bytes():
    assert human_bytes(28e9) == "28.0 GB"
    assert human_bytes(3.5e9) == "3.5 GB"
    assert human_bytes(28e9, binary=True) == "26.1 GiB"
    assert human_bytes(512) == "512 B"
    assert human_bytes(0) == "0 B"
    assert human_bytes(1536, binary=True) == "1.5 KiB"
    assert human_bytes(999_999) == "1.0 MB"
    with pytest.raises(ValueError, match="n must be a finite number of bytes >= 0, got -1"):
        human_bytes(-1)


# ------------------------------------------------------------------ throughput helpers


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int8])
def test_matmul_flops_runs_every_dtype_on_cpu(dtype):
    r = matmul_flops(32, 48, 16, dtype, "cpu", warmup=1, repeats=2)
    assert r["flops"] == 2 * 32 * 48 * 16
    assert r["device"] == "cpu"
    assert r["dtype"] == str(dtype).replace("torch.", "")
    if r["supported"]:
        assert r["gflops"] > 0 and r["seconds"] > 0
        assert r["gflops"] == pytest.approx(r["flops"] / r["seconds"] / 1e9)
    else:
        assert math.isnan(r["gflops"]) and r["note"]


def test_make_matmul_int8_is_exact_or_says_it_fell_back():
    fn, info = make_matmul(20, 16, 8, torch.int8, "cpu", seed=1)
    out = fn()
    if "_int_mm" in info["backend"]:
        assert out.dtype == torch.int32
    else:
        assert "fallback" in info["backend"] and info["note"]


def test_make_matmul_int8_falls_back_without_int_mm(monkeypatch):
    monkeypatch.delattr(torch, "_int_mm", raising=False)
    fn, info = make_matmul(4, 4, 4, torch.int8, "cpu")
    assert fn().shape == (4, 4)
    assert "fallback" in info["backend"] and "no torch._int_mm" in info["note"]


def test_make_matmul_is_seeded():
    fn1, _ = make_matmul(8, 8, 8, torch.float32, "cpu", seed=3)
    fn2, _ = make_matmul(8, 8, 8, torch.float32, "cpu", seed=3)
    assert torch.equal(fn1(), fn2())


def test_matmul_validates_arguments():
    with pytest.raises(ValueError, match="m=0 must be >= 1"):
        matmul_flops(0, 4, 4)
    with pytest.raises(TypeError, match="k must be an int, got float"):
        matmul_flops(4, 4.0, 4)
    with pytest.raises(ValueError, match="dtype=torch.float64 is not supported"):
        matmul_flops(4, 4, 4, torch.float64)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype.*got str"):
        make_matmul(4, 4, 4, "bf16")


def test_linear_cost_by_hand():
    c = linear_cost(1, 2048, 2048)
    assert c["flops"] == 2 * 2048 * 2048
    assert c["weight_bytes"] == 2048 * 2048 * 4
    assert c["activation_bytes"] == (2048 + 2048) * 4
    assert c["intensity"] == pytest.approx(c["flops"] / (2048 * 2048 * 4 + 4096 * 4))
    assert c["intensity"] < 0.5  # batch-1 GEMV in fp32: under half a FLOP per byte
    # int4 weights: about 8x the intensity at batch 1
    c4 = linear_cost(1, 2048, 2048, weight_itemsize=0.5)
    assert 7 < c4["intensity"] / c["intensity"] < 8
    # intensity grows with batch
    assert linear_cost(256, 2048, 2048)["intensity"] > 50 * c["intensity"]
    with pytest.raises(ValueError, match="weight_itemsize=0 must be a finite, positive"):
        linear_cost(1, 2, 2, weight_itemsize=0)
    with pytest.raises(ValueError, match="act_itemsize=inf must be a finite"):   # was an inf intensity of 0
        linear_cost(1, 2, 2, act_itemsize=math.inf)


def test_gemv_vs_gemm_rows():
    rows = gemv_vs_gemm([1, 4], 64, 32, warmup=1, repeats=2)
    assert [r["batch"] for r in rows] == [1, 4]
    for r in rows:
        assert r["flops"] == 2 * r["batch"] * 64 * 32
        assert r["gflops"] > 0 and r["gbytes_per_s"] > 0
    with pytest.raises(ValueError, match="batches must hold at least one"):
        gemv_vs_gemm([], 8, 8)
    with pytest.raises(ValueError, match=r"batches\[1\]=0 must be >= 1"):
        gemv_vs_gemm([1, 0], 8, 8)
    with pytest.raises(ValueError, match=r"batches=\[1, 1\] must not repeat"):
        gemv_vs_gemm([1, 1], 8, 8)
    with pytest.raises(ValueError, match="dtype=torch.int8 must be a floating"):
        gemv_vs_gemm([1], 8, 8, dtype=torch.int8)


@pytest.mark.parametrize("method, factor", [("read", 1), ("copy", 2)])
def test_measure_bandwidth(method, factor):
    r = measure_bandwidth(400_000, method=method, warmup=1, repeats=2)
    assert r["nbytes"] == 400_000 and r["bytes_moved"] == factor * 400_000
    assert r["gbytes_per_s"] > 0
    with pytest.raises(ValueError, match="method='write' must be 'read' or 'copy'"):
        measure_bandwidth(1000, method="write")


def test_roofline():
    assert roofline(100.0, 40.0, 0.5) == 20.0  # memory-bound: bandwidth x intensity
    assert roofline(100.0, 40.0, 10) == 100.0  # compute-bound: the peak
    assert roofline(100, 40, [0.5, 2.5, 10]) == [20.0, 100.0, 100.0]
    with pytest.raises(ValueError, match="bandwidth=0 must be a positive number"):
        roofline(100, 0, 1)
    with pytest.raises(ValueError, match="intensity=-1"):
        roofline(100, 1, -1)
    with pytest.raises(TypeError, match="intensity must be a number or an iterable"):
        roofline(100, 1, None)


def test_cache_bytes_and_copies_beyond_cache(monkeypatch):
    cache = hw.cache_bytes()
    assert cache is None or (isinstance(cache, int) and cache >= 1 << 16)
    monkeypatch.setattr(hw.timing, "cache_bytes", lambda: 32 << 20)  # a 32 MiB cache
    assert hw.copies_beyond_cache(64 << 20) == 1  # one 64 MiB weight already exceeds 2 x 32 MiB
    assert hw.copies_beyond_cache(8 << 20) == 8  # 8 x 8 MiB = 2 x 32 MiB
    assert hw.copies_beyond_cache(1, most=5) == 5
    monkeypatch.setattr(hw.timing, "cache_bytes", lambda: None)
    assert hw.copies_beyond_cache(8 << 20) == 1
    with pytest.raises(ValueError, match="nbytes=0 must be a positive int"):
        hw.copies_beyond_cache(0)


def test_round_robin_calls_each_in_turn():
    calls = []
    f = hw.round_robin([lambda: calls.append("a"), lambda: calls.append("b")])
    for _ in range(5):
        f()
    assert calls == ["a", "b", "a", "b", "a"]
    with pytest.raises(ValueError, match="at least one"):
        hw.round_robin([])
    with pytest.raises(TypeError, match=r"fns\[1\] must be callable"):
        hw.round_robin([print, 3])


def test_flush_and_hold_are_for_gpus_and_leave_a_cpu_timing_alone():
    """`flush` (evict the GPU's L2 cache before each timed call) and `hold` (queue the call behind
    a spinning kernel) only act on CUDA devices; on a CPU the function is called as often as
    without them, and the timings are real."""
    calls = []
    t = hw.measure(lambda: calls.append(1), warmup=2, repeats=5, flush=True, hold=True)
    assert len(calls) == 7 and t.repeats == 5 and t.min >= 0
    got = hw.compare({"a": lambda: calls.append("a"), "b": lambda: None}, warmup=1, repeats=3, flush=True)
    assert calls.count("a") == 4 and set(got) == {"a", "b"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_flush_l2_reads_twice_the_cache_and_writes_nothing():
    """The flush reads a buffer of twice the L2 size (a write would leave dirty lines for the
    timed call to write back), made once per device."""
    dev = torch.device("cuda", 0)
    hw.flush_l2(dev)
    buf = hw.timing._flush_buffers[dev]
    l2 = torch.cuda.get_device_properties(dev).L2_cache_size
    assert buf.numel() * buf.element_size() >= 2 * l2 and not buf.any()
    hw.flush_l2(dev)
    assert hw.timing._flush_buffers[dev] is buf


def test_roofline_refuses_strings_and_none_among_intensities():
    from minicomp.hardware import roofline

    assert roofline(10, 1, torch.tensor([1.0, 20.0])) == [1.0, 10.0]
    for bad in (["3"], [1, None]):
        with pytest.raises(TypeError, match=r"intensity\[\d\]=.* must be a number"):
            roofline(10, 1, bad)
