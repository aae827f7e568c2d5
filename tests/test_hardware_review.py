"""Regression tests for defects found in review: hardware (roofline, model_bytes,
copies_beyond_cache), timelimit and pipeline (pareto_front, plot_pareto). No wall-clock asserts."""

import math
import threading

import pytest
import torch
from torch import nn

from minicomp import hardware as hw
from minicomp.pipeline import Result, pareto_front, plot_pareto
from minicomp.timelimit import active, time_limit

# ------------------------------------------------------------------ roofline


def test_roofline_rejects_nan_intensity_instead_of_returning_the_peak():
    # min(peak, nan) is the peak: a plausible number for an intensity nobody measured
    with pytest.raises(ValueError, match="intensity=nan must be >= 0"):
        hw.roofline(100, 10, math.nan)
    with pytest.raises(ValueError, match="intensity=nan"):
        hw.roofline(100, 10, [1.0, math.nan])


def test_roofline_rejects_a_string_instead_of_reading_its_digits():
    # "12" is iterable: it gave [10.0, 20.0], the rooflines of intensities 1 and 2
    with pytest.raises(TypeError, match="intensity must be a number or an iterable of numbers, got str"):
        hw.roofline(100, 10, "12")


# ------------------------------------------------------------------ model_bytes


def test_model_bytes_counts_a_view_over_part_of_a_parameter_once():
    class Fused(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Parameter(torch.zeros(30, 10))  # [3 * 10, 10]
            self.register_buffer("q", self.qkv.data[:10])  # [10, 10], the first third of qkv's memory

    assert hw.model_bytes(Fused()) == 30 * 10 * 4
    assert hw.model_bytes(Fused(), include_buffers=False) == 30 * 10 * 4


def test_model_bytes_counts_an_expanded_buffer_by_its_memory():
    m = nn.Module()
    m.register_buffer("row", torch.zeros(1, 8).expand(100, 8))  # 8 floats in memory, 800 elements
    assert hw.model_bytes(m) == 8 * 4


def test_model_bytes_counts_interleaved_views_and_separate_tensors_in_full():
    base = torch.zeros(10, 10)
    m = nn.Module()
    m.register_buffer("even", base[:, ::2])  # [10, 5] each, together all of base
    m.register_buffer("odd", base[:, 1::2])
    m.register_buffer("other", torch.zeros(7))
    assert hw.model_bytes(m) == (100 + 7) * 4


# ------------------------------------------------------------------ copies_beyond_cache


@pytest.mark.parametrize("kwargs, pattern", [
    ({"factor": math.nan}, "factor=nan must be a positive number"),
    ({"factor": -1.0}, r"factor=-1.0 must be a positive number"),
    ({"factor": 0}, "factor=0 must be a positive number"),
    ({"most": 0}, "most=0 must be a positive int"),
])
def test_copies_beyond_cache_checks_factor_and_most(monkeypatch, kwargs, pattern):
    monkeypatch.setattr(hw.timing, "cache_bytes", lambda: 32 << 20)
    with pytest.raises(ValueError, match=pattern):
        hw.copies_beyond_cache(1 << 20, **kwargs)


# ------------------------------------------------------------------ time_limit


@pytest.mark.parametrize("alarm", [True, False])
def test_time_limit_of_infinity_is_no_limit(alarm):
    # setitimer raised OverflowError, and the watchdog thread died of one in the background;
    # check(..., timeout=math.inf) reported the OverflowError as the learner's own error
    threads = threading.active_count()
    with time_limit(math.inf, alarm=alarm):
        assert active()
        assert threading.active_count() == threads  # no watchdog started
    assert not active()


@pytest.mark.parametrize("seconds, exc, pattern", [
    ("5", TypeError, "seconds must be a number of seconds.*got str '5'"),
    (None, TypeError, "seconds must be a number of seconds.*got NoneType"),
    (True, TypeError, "got bool"),
    (0, ValueError, "seconds=0 must be a positive number"),
    (math.nan, ValueError, "seconds=nan must be a positive number"),
])
def test_time_limit_names_a_bad_seconds(seconds, exc, pattern):
    with pytest.raises(exc, match=pattern), time_limit(seconds):
        pass
    assert not active()


# ------------------------------------------------------------------ pareto_front, plot_pareto


def _row(name, ms, ppl=2.0, nbytes=100, acc=0.5):
    return Result(name, "quantized", 10, nbytes, ppl, acc, ms)


def test_plot_pareto_draws_rows_that_were_not_timed():
    # measure(..., timed=[]) gives every row latency_ms = nan: the latency panel has nothing to show
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [_row("a", math.nan, ppl=2.0, nbytes=100), _row("b", math.nan, ppl=1.5, nbytes=400)]
    fig = plot_pareto(rows)
    try:
        assert len(fig.axes[0].collections) >= 1  # the bytes panel is drawn
        assert any("no model measured" in t.get_text() for t in fig.axes[1].texts)
    finally:
        plt.close(fig)


def test_pareto_front_of_no_rows_is_empty_and_fields_are_checked_without_rows():
    assert pareto_front([], "latency_ms") == []
    assert pareto_front([_row("a", math.nan)], "latency_ms") == []
    with pytest.raises(ValueError, match="'size' must be a numeric field of Result"):
        pareto_front([], "size")
    with pytest.raises(ValueError, match="'name' must be a numeric field"):
        pareto_front([_row("a", 1.0)], "name")


def test_pareto_front_refuses_accuracy_whose_best_is_the_highest():
    # lower is better on both axes: with accuracy it would keep the least accurate models
    rows = [_row("good", 1.0, acc=0.9, nbytes=100), _row("bad", 1.0, acc=0.1, nbytes=100)]
    with pytest.raises(ValueError, match="'accuracy' is higher-is-better.*'perplexity'"):
        pareto_front(rows, "bytes", "accuracy")


def test_ratios_name_a_timing_the_clock_could_not_see():
    """A median of 0.0 s (a coarse clock, a trivial function) gave a ZeroDivisionError."""
    from minicomp.hardware import Timing, ratios

    timings = {"a": Timing.from_times([0.0, 0.0]), "b": Timing.from_times([1e-3, 1e-3])}
    with pytest.raises(ValueError, match=r"\['a'\] took 0 s"):
        ratios(timings, "b")
    assert ratios({"b": timings["b"]}, "b") == {"b": 1.0}
