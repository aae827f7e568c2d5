"""Observers: a quantization range for activations, from calibration batches (lesson 06).

A weight is known before the model runs, so its range is read off the tensor (`quant.compute_qparams`).
An activation is not: static quantization runs a few calibration batches through the model, and an
observer watches one layer's input and proposes a range. They differ in what they do with the
rare extreme values:

* `MinMaxObserver`: the smallest and largest value ever seen (every value fits, outliers stretch the grid);
* `MovingAverageMinMaxObserver`: an exponential moving average of each batch's min and max;
* `PercentileObserver`: percentiles, so the rarest extremes are clipped;
* `MSEObserver`: the clipping range with the least squared error on the values seen.

    obs = make_observer("minmax", bits=8); [obs(x) for x in batches]; scale, zero = obs.qparams()

Everything is per tensor. `calibrate.observe_inputs` puts one on each layer's input with a hook.
"""

from __future__ import annotations

import inspect
import math

import torch

from minicomp.checks import check_bits, check_finite, check_flag, is_int, is_real
from minicomp.quant import mse_range, qparams_from_range

__all__ = ["Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PercentileObserver", "MSEObserver",
           "OBSERVERS", "check_observer", "make_observer"]


class Observer:
    """Watches activations and proposes a quantization range. Call it on each batch, then `qparams()`.

        obs = MinMaxObserver(bits=8); [obs(x) for x in batches]; scale, zero = obs.qparams()

    Subclasses define `observe(x)` and `range()`. Everything is per tensor.
    """

    def __init__(self, bits: int = 8, symmetric: bool = False):
        self.bits, self.symmetric = check_bits(bits), check_flag("symmetric", symmetric)
        self.batches = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_finite("x", x)
        if x.numel() == 0:
            raise ValueError(f"x has shape {tuple(x.shape)}, no values; an observer needs at least one value a batch")
        with torch.no_grad():
            self.observe(x.detach().float())
        self.batches += 1
        return x

    def observe(self, x: torch.Tensor) -> None:
        """Update the statistics with one batch x (any shape, float32, no NaN or Inf)."""
        raise NotImplementedError

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The proposed range (lo, hi), two 0-d tensors."""
        raise NotImplementedError

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero_point), two 0-d tensors, for the range seen so far at `bits`."""
        if self.batches == 0:
            raise ValueError(f"{type(self).__name__} has seen no data; call it on calibration batches first")
        lo, hi = self.range()
        return qparams_from_range(lo, hi, self.bits, self.symmetric)

    def __repr__(self) -> str:
        rng = "no data" if self.batches == 0 else "[{:.4g}, {:.4g}]".format(*(v.item() for v in self.range()))
        return f"{type(self).__name__}(bits={self.bits}, {rng}, batches={self.batches})"


class MinMaxObserver(Observer):
    """The smallest and largest value ever seen."""

    def observe(self, x):
        lo, hi = x.min(), x.max()
        self.lo = lo if self.batches == 0 else torch.minimum(self.lo, lo)
        self.hi = hi if self.batches == 0 else torch.maximum(self.hi, hi)

    def range(self):
        return self.lo, self.hi


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of each batch's min and max: lo ← lo + c · (min(x) − lo)."""

    def __init__(self, bits: int = 8, symmetric: bool = False, averaging_constant: float = 0.01):
        super().__init__(bits, symmetric)
        if not is_real(averaging_constant) or not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant={averaging_constant!r} must be in (0, 1]")
        self.c = averaging_constant

    def observe(self, x):
        if self.batches == 0:
            return super().observe(x)
        self.lo = self.lo + self.c * (x.min() - self.lo)
        self.hi = self.hi + self.c * (x.max() - self.hi)


class PercentileObserver(Observer):
    """The `percentile`-th and (100 − `percentile`)-th percentiles, averaged over batches.

    Ignores the rarest extreme values, at the price of clipping them."""

    def __init__(self, bits: int = 8, symmetric: bool = False, percentile: float = 99.99):
        super().__init__(bits, symmetric)
        if not is_real(percentile) or not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile={percentile!r} must be in (50, 100]")
        self.percentile = percentile
        self.lo = self.hi = torch.tensor(0.0)

    def observe(self, x):
        v = x.flatten()
        k_hi = max(1, min(v.numel(), math.ceil(self.percentile / 100 * v.numel())))
        k_lo = max(1, v.numel() - k_hi + 1)
        lo, hi = v.kthvalue(k_lo).values, v.kthvalue(k_hi).values
        n = self.batches
        self.lo, self.hi = (self.lo * n + lo) / (n + 1), (self.hi * n + hi) / (n + 1)  # running mean

    def range(self):
        return self.lo, self.hi


class MSEObserver(MinMaxObserver):
    """The clipping range with the least squared quantization error on the values seen.

    Keeps a uniform random sample of up to `max_samples` of all the values seen (each value
    equally likely to be kept, whichever batch it came from), plus the smallest and largest value
    ever seen, then searches ranges p·[lo, hi] (see `mse_range`). The sample is drawn with a
    generator seeded with `seed`, so the same batches always give the same range.
    """

    def __init__(self, bits: int = 8, symmetric: bool = False, max_samples: int = 2**16, seed: int = 0):
        super().__init__(bits, symmetric)
        if not is_int(max_samples) or max_samples < 16:
            raise ValueError(f"max_samples={max_samples!r} must be an int >= 16 (values kept for the search)")
        if not is_int(seed):
            raise TypeError(f"seed={seed!r} must be an int (it seeds the choice of the values kept)")
        self.max_samples = int(max_samples)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.samples = torch.empty(0)  # [≤ max_samples] the values kept
        self.tags = torch.empty(0, dtype=torch.float64)  # [≤ max_samples] their random tags

    def observe(self, x):
        super().observe(x)  # the extremes, kept apart (MinMaxObserver): the sample may miss them
        v = x.flatten()  # [n]
        # Every value gets a random tag, and the max_samples values with the smallest tags are kept:
        # a uniform sample of all the values so far (a reservoir sample), one batch at a time.
        tags = torch.rand(v.numel(), generator=self.generator, dtype=torch.float64)  # [n]
        self.samples = torch.cat([self.samples.to(v.device), v])
        self.tags = torch.cat([self.tags, tags])
        if self.tags.numel() > self.max_samples:
            keep = self.tags.topk(self.max_samples, largest=False).indices
            self.samples, self.tags = self.samples[keep.to(v.device)], self.tags[keep]

    def range(self):
        values = torch.cat([self.samples, self.lo[None], self.hi[None]])  # [≤ max_samples + 2]
        lo, hi = mse_range(values[None], self.bits, self.symmetric)
        return lo[0], hi[0]


OBSERVERS = {"minmax": MinMaxObserver, "moving_average": MovingAverageMinMaxObserver,
             "percentile": PercentileObserver, "mse": MSEObserver}


def check_observer(kind, name: str = "observer") -> None:
    """Raise ValueError naming `name` unless `kind` is one of the observers' names."""
    if not isinstance(kind, str) or kind not in OBSERVERS:
        raise ValueError(f"{name}={kind!r} is not one of {', '.join(map(repr, OBSERVERS))}")


def make_observer(kind: str = "minmax", bits: int = 8, symmetric: bool = False, **options) -> Observer:
    """An observer by name: 'minmax', 'moving_average', 'percentile' or 'mse'; `options` are its
    own (percentile=99.9 for 'percentile'), and one it does not take is named with those it does."""
    check_observer(kind, "kind")
    cls = OBSERVERS[kind]
    takes = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "bits", "symmetric")]
    unknown = [k for k in options if k not in takes]
    if unknown:
        raise TypeError(f"the {kind!r} observer takes no option {unknown[0]!r}; its options: "
                        f"{', '.join(takes) or 'none'}")
    return cls(bits, symmetric, **options)
