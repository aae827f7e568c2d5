"""Pieces the triton kernels share: `halves`, and `finish_split_k`, the small kernel that ends a
split-K call. Imported (with triton) on the backend's first use."""

import triton
import triton.language as tl


@triton.jit
def halves(x):          # [R, 2n] -> columns 0, 2, ... and 1, 3, ... as two [R, n]
    return tl.split(tl.reshape(x, [x.shape[0], x.shape[1] // 2, 2]))


@triton.jit
def finish_split_k(sums_ptr, y_ptr, total, BLOCK: tl.constexpr):
    """Split-K's last step: y = sums in y's dtype, and the sums zeroed for the next call (flat:
    both are contiguous [M, N]; the backend keeps the sums on the layer, `_kept_sums`)."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < total
    tl.store(y_ptr + i, tl.load(sums_ptr + i, mask=ok).to(y_ptr.dtype.element_ty), mask=ok)
    tl.store(sums_ptr + i, tl.zeros([BLOCK], dtype=tl.float32), mask=ok)
