"""Compares shared by the checker modules (this module registers no exercise)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from minicomp.grading import compare_values


def noting_half_precision(atol: float, rtol: float, fix: str, *, close_atol: float = 2e-2,
                          close_rtol: float = 2e-2) -> Callable[[object, object], str | None]:
    """A compare: `compare_values` at (atol, rtol), and a miss as small as half-precision rounding
    (within close_atol and close_rtol) named as such, arithmetic done in float16 or bfloat16,
    followed by `fix`, which says how to stay in float32."""
    def compare(got, expected) -> str | None:
        problem = compare_values(got, expected, atol=atol, rtol=rtol)
        if problem is None or not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor) \
                or got.shape != expected.shape or not got.is_floating_point():
            return problem
        if not torch.allclose(got.detach().double(), expected.detach().double(), rtol=close_rtol, atol=close_atol):
            return problem
        where = f"your answer is {got.dtype}" if got.dtype in (torch.float16, torch.bfloat16) else \
            "the differences are as small as float16 or bfloat16 rounding"
        return f"{problem}. Close, but {where}: {fix}"
    return compare


def exactly_as(dtype: torch.dtype, meaning: str, fix: str, *, values_first: bool = False
               ) -> Callable[[object, object], str | None]:
    """A compare that wants exact values in `dtype` (saying what the dtype means and how to get
    it). A numpy answer is held to the same dtype (an int64 array is not uint8 codes). The dtype
    is checked first, unless values_first: then a wrong answer is told (and diagnosed) by its
    values, and only a right one by its dtype."""
    def compare(got, expected) -> str | None:
        if values_first:
            problem = compare_values(got, expected, atol=0.0, rtol=0.0)
            if problem is not None:
                return problem
        given = _dtype(got)
        if given is not None and given != dtype:
            return f"expected dtype {dtype} ({meaning}) but got {given}; {fix}"
        return None if values_first else compare_values(got, expected, atol=0.0, rtol=0.0)
    return compare


def _dtype(x) -> torch.dtype | str | None:
    """x's dtype as torch names it (a numpy array's too), or None for what has no dtype."""
    if isinstance(x, torch.Tensor):
        return x.dtype
    if isinstance(x, np.ndarray):
        try:
            return torch.from_numpy(np.zeros(0, x.dtype)).dtype
        except TypeError:   # a dtype torch has no name for (objects, strings): numpy's own name
            return f"numpy {x.dtype}"
    return None
