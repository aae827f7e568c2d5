"""Helpers shared by the checker modules (this module registers no exercise)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from minicomp.grading import compare_values


def noting_half_precision(atol: float, rtol: float, fix: str, close: tuple[float, float] = (2e-2, 2e-2)
                          ) -> Callable[[object, object], str | None]:
    """A compare: `compare_values` at (atol, rtol), and a miss as small as half-precision rounding
    (within `close`, an (rtol, atol) pair) named as such, arithmetic done in float16 or bfloat16,
    followed by `fix`, which says how to stay in float32."""
    def compare(got, expected) -> str | None:
        problem = compare_values(got, expected, atol=atol, rtol=rtol)
        if problem is None or not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor) \
                or got.shape != expected.shape or not got.is_floating_point():
            return problem
        rtol_close, atol_close = close
        if not torch.allclose(got.detach().double(), expected.detach().double(), rtol=rtol_close, atol=atol_close):
            return problem
        where = f"your answer is {got.dtype}" if got.dtype in (torch.float16, torch.bfloat16) else \
            "the differences are as small as float16 or bfloat16 rounding"
        return f"{problem}. Close, but {where}: {fix}"
    return compare
